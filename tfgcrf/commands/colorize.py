"""`tfgcrf colorize`: N diverse colorizations of each photo at its own resolution."""

import glob
import os
import sys

from tfgcrf.errors import InputError, UserError

HELP = "colorize photos: N diverse colorizations of each, at its own resolution, and a contact sheet"

_GLOB_CHARACTERS = "*?["


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (their images, not recursive) or glob patterns")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="colorizations per photo (default: 8, or the model's mixture "
                        "components in --mode top if it has fewer)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of --mode draw (default: 0)")
    parser.add_argument("--out", default="out", metavar="DIR",
                        help="output folder for <stem>_s<k>.png and <stem>_grid.png (default: out)")
    add_model_argument(parser)
    parser.add_argument("--mode", choices=("top", "draw"), default="top",
                        help="top: the N most probable mixture components, best first (default); "
                        "draw: N random draws from the mixture")


def add_model_argument(parser):
    parser.add_argument("--model", default="default", metavar="PATH|PRESET",
                        help="a .keras model file or an installed preset name (default: default)")
    add_dtype_argument(parser)


def add_dtype_argument(parser):
    parser.add_argument("--dtype", default=None, metavar="POLICY",
                        help="Keras dtype policy of the network's layers, e.g. mixed_bfloat16 or "
                        "bfloat16 (default: float32); the G-CRF solves and color conversions "
                        "stay float32")


def check_samples(count):
    """--samples must be a positive count (checked before anything slow happens)."""
    if count is not None and count < 1:
        raise InputError(f"--samples must be at least 1, got {count}")


def load_colorizer(spec, dtype=None):
    """The `Colorizer` of a `.keras` path or preset name, its layers in the Keras dtype policy
    `dtype` (None: float32) (imports TensorFlow)."""
    from tfgcrf.colorizer import Colorizer

    return Colorizer.load(spec, dtype=dtype)


def expand_inputs(specs):
    """Input arguments -> `(image files, problems)`: folders and glob patterns are expanded.

    A missing plain file is kept (its reading reports the error); a folder without images or a
    pattern without matches becomes a problem message. Duplicates are dropped, also when they are
    spelled differently (`a.png`, `./a.png`, a symlink to it): files are compared by real path
    and the first spelling is kept.
    """
    from tfgcrf.imageio import IMAGE_EXTENSIONS

    files, problems, seen = [], [], set()
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(spec, name)
                for name in os.listdir(spec)
                # Hidden files are skipped as in training folders (macOS writes `._IMG.jpg`
                # metadata beside every photo on some disks).
                if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(spec, name))
            )
            if not found:
                problems.append(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder: {spec}")
        elif not os.path.exists(spec) and any(c in spec for c in _GLOB_CHARACTERS):
            found = sorted(path for path in glob.glob(spec) if os.path.isfile(path))
            if not found:
                problems.append(f"no files match: {spec}")
        else:
            found = [spec]
        for path in found:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                files.append(path)
    return files, problems


def output_stems(files):
    """A distinct output name stem per input file (`photo`, `photo-2`, ... for equal names)."""
    stems, used = [], set()
    for path in files:
        stem = base = os.path.splitext(os.path.basename(path))[0]
        number = 1
        while stem in used:
            number += 1
            stem = f"{base}-{number}"
        used.add(stem)
        stems.append(stem)
    return stems


def make_folder(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {folder}: {err.strerror}") from None


def colorize_file(colorizer, path, out_dir, stem, num_samples, seed, mode):
    """Colorizes one photo; writes its samples and contact sheet and returns their paths."""
    from tfgcrf import imageio, render

    rgb = imageio.read_image(path)
    images, scores = colorizer.colorize(rgb, num_samples, seed=seed, mode=mode, return_scores=True)
    written = []
    for index, image in enumerate(images):
        written.append(os.path.join(out_dir, f"{stem}_s{index}.png"))
        imageio.write_image(written[-1], image)
    # Labels: the mixture weight of the component each sample comes from.
    labels = ["input"] + [f"s{index}  weight {score:.2f}" for index, score in enumerate(scores)]
    written.append(os.path.join(out_dir, f"{stem}_grid.png"))
    imageio.write_image(written[-1], render.contact_sheet([rgb, *images], labels))
    return written


def report_failures(failures, total):
    """Lists the inputs that failed (one line each) and raises the summary error."""
    if not failures:
        return
    if total == 1 and len(failures) == 1:
        raise UserError(failures[0])
    for message in failures:
        print(f"tfgcrf: error: {message}", file=sys.stderr)
    raise UserError(f"{len(failures)} of {total} inputs failed (listed above)")


def run(args):
    from tqdm import tqdm

    check_samples(args.samples)
    files, failures = expand_inputs(args.inputs)
    total = len(files) + len(failures)
    colorizer = load_colorizer(args.model, args.dtype)
    args.samples = colorizer.sample_count(args.samples, args.mode, flags=("--samples", "--mode"))
    if files:
        make_folder(args.out)
    written = []
    bar = tqdm(files, unit="photo", disable=len(files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
    for path, stem in zip(bar, output_stems(files)):
        try:
            written += colorize_file(colorizer, path, args.out, stem, args.samples, args.seed, args.mode)
        except InputError as err:
            failures.append(str(err))
            continue
        if stem != os.path.splitext(os.path.basename(path))[0]:  # say which input it was
            print(f"{path} -> {os.path.join(args.out, stem)}_*.png")
    if written:
        print(f"wrote {len(written)} files for {total - len(failures)} photo(s) to {args.out}/")
    report_failures(failures, total)
    return 0
