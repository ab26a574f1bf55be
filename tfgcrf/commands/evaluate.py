"""`tfgcrf evaluate`: the paper's tables (diversity, consistency, control) with baselines side by side."""

import json
import os
import sys

from tfgcrf.errors import UserError

HELP = "measure a model against the VAE-MDN, Levin et al. and gray baselines on a data set"

# Images whose renderings go into the report's sheets.
REPORT_IMAGES = 4


def add_arguments(parser):
    from tfgcrf.commands.colorize import add_dtype_argument

    add = parser.add_argument
    add("--model", required=True, action="append", metavar="[NAME=]PATH|PRESET",
        help="model file/folder or preset name (e.g. default); repeat to evaluate several models "
        "side by side on the same images (NAME labels a model, default: the preset name or the "
        "file's folder name)")
    add("--data", required=True, metavar="SOURCE",
        help="data source: image folder, tfds:NAME[/config] or offline")
    add("--split", default="test",
        help="split of the data source, sliceable as in TFDS: test, test[:50], validation[:10%%] (default: test)")
    add("--samples", type=int, default=8, metavar="N", help="samples per image, >= 2 (default: 8)")
    add("--mode", default="top", choices=("top", "draw"),
        help="sampling: the N most probable mixture components (top, the paper's) or random draws")
    add("--limit", type=int, default=None, metavar="K", help="evaluate at most K images")
    add("--seed", type=int, default=0, metavar="S", help="seed of the sampling and of the hint locations")
    add("--tables", choices=("all", "diversity"), default="all",
        help="all: diversity/consistency and control (default); diversity: skip the control "
        "protocol (Levin et al. and the edits, most of the time per image)")
    add("--json", dest="json_path", default=None, metavar="FILE", help="write the results to this JSON file")
    add("--ablation", action="store_true",
        help="also score the steps of the G-CRF edit path (learned S alone, + local smoothness, "
        "+ model prior) in the control table")
    add("--report", default=None, metavar="DIR", help="folder for sample sheets and the PSNR plot")
    add_dtype_argument(parser)


def model_names(specs):
    """`[NAME=]SPEC` arguments -> `{name: spec}`; names default to the preset / folder name."""
    import os

    named = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name or os.path.exists(spec):
            name, path = None, spec
        if name is None:
            stem = os.path.basename(os.path.normpath(path))
            if stem.endswith(".keras"):
                parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
                stem = parent if stem == "model.keras" and parent else stem[: -len(".keras")]
            name = stem or path
        base, number = name, 1
        while name in named:
            number += 1
            name = f"{base}-{number}"
        named[name] = path
    return named


def _check(args):
    if args.samples < 2:
        raise UserError(
            f"--samples must be at least 2 (diversity is measured between samples), got {args.samples}"
        )
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of images, got {args.limit}")


def _prepare_outputs(args):
    """Creates the folders of `--json` and `--report` and checks they can be written, before the
    run: a long evaluation must not end in "No such file or directory" with its numbers lost."""
    from tfgcrf.commands.colorize import make_folder

    if args.json_path:
        if os.path.isdir(args.json_path):
            raise UserError(f"--json must name a file, not a folder: {args.json_path}")
        parent = os.path.dirname(args.json_path) or "."
        make_folder(parent)
        if not os.access(parent, os.W_OK):
            raise UserError(f"cannot write --json file {args.json_path}: folder {parent} is not writable")
    if args.report:
        make_folder(args.report)
        if not os.access(args.report, os.W_OK):
            raise UserError(f"cannot write --report folder {args.report}: it is not writable")


def run(args):
    _check(args)
    _prepare_outputs(args)
    from tfgcrf.colorizer import Colorizer
    from tfgcrf.evaluation import harness, report

    specs = model_names(args.model)
    colorizers = {name: Colorizer.load(spec, dtype=args.dtype) for name, spec in specs.items()}
    sizes = [colorizer.grid_size for colorizer in colorizers.values()]

    def progress(index, seconds, name):
        print(f"image {index + 1} ({name}): {seconds:.1f} s", file=sys.stderr)

    results, kept = harness.evaluate(
        colorizers,
        harness.examples(args.data, args.split, sizes, args.limit),
        args.samples,
        args.seed,
        mode=args.mode,
        keep_images=REPORT_IMAGES if args.report else 0,
        on_image=progress,
        with_control=args.tables == "all",
        ablation=args.ablation,
    )
    if len(specs) > 1:
        results["models"] = specs
    if args.json_path:  # first: the numbers of a long run are kept whatever happens next
        try:
            with open(args.json_path, "w") as handle:
                json.dump(results, handle, indent=2, allow_nan=False)
        except OSError as err:  # (checked before the run; e.g. a disk that filled up since)
            print(report.markdown_tables(results))
            raise UserError(f"cannot write --json file {args.json_path}: {err.strerror} (the tables "
                            "above are the run's numbers)") from None
    print(report.markdown_tables(results))
    seconds = results["seconds_per_image"]
    print(f"{seconds['run']:.1f} s per image ({harness.IMAGES_IN_FLIGHT} at once, each "
          f"{seconds['total']:.1f} s)", file=sys.stderr)
    if args.report:
        report.write_report(args.report, results, kept)
    return 0
