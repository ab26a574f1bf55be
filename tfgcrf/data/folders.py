"""Image folder trees: listing the photos and the deterministic train/validation/test split.

No TensorFlow here, so the offline collection builder and the CLI can use it cheaply.

Split rule: a file belongs to a split by the SHA-256 of its path relative to the folder root
('/'-separated), read as a number in [0, 1) and compared with the cumulative split ratios. The
assignment of a file never depends on the other files, on the machine or on the listing order, so
adding photos to a folder does not move existing ones between splits. Frames sampled from one video
clip are stored in a folder named `<clip>.frames` (`FRAMES_SUFFIX`): the hash reads the path up to
that folder, so all frames of a clip fall in one split and near-identical frames never straddle
two splits.
"""

import hashlib
import os
import re

from tfgcrf.errors import UserError
from tfgcrf.imageio import PHOTO_EXTENSIONS

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation"}
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)
FRAMES_SUFFIX = ".frames"

# The offline photo collection (`tfgcrf data build-offline`), relative to the working directory.
DEFAULT_OFFLINE_DIR = os.path.join("data", "offline")
OFFLINE_DIR_ENV = "TFGCRF_OFFLINE_DIR"


def offline_dir(override=None):
    """The offline collection folder: `override`, else $TFGCRF_OFFLINE_DIR, else data/offline."""
    return os.fspath(override or os.environ.get(OFFLINE_DIR_ENV) or DEFAULT_OFFLINE_DIR)


def canonical_split(split):
    """'train' | 'validation' (alias 'val') | 'test'; raises UserError otherwise."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise UserError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)} (or 'val')")
    return name


_SPLIT_SPEC = re.compile(r"\s*([A-Za-z_]+)\s*(\[[^\]]*\])?\s*")


def parse_split(spec):
    """A split string -> `(canonical split name, slice or "")`.

    Accepts the TFDS split syntax for one split: `train`, `val`/`validation`, `test`, optionally
    sliced by example counts or percentages: `train[:90%]`, `train[90%:]`, `test[:50]`,
    `train[10:20]`. Raises UserError otherwise.
    """
    match = _SPLIT_SPEC.fullmatch(str(spec))
    if not match:
        raise UserError(
            f"unknown split {spec!r}: expected train, validation (or val) or test, optionally "
            "sliced as in TFDS (train[:90%], test[:50])"
        )
    return canonical_split(match.group(1)), match.group(2) or ""


def slice_split(items, name, slicing):
    """The part of `items` (all examples of split `name`, in order) that `name + slicing` selects.

    Uses TFDS's own split arithmetic (`tfds.core.ReadInstruction`, percentages rounded to the
    closest example), so a folder split and a TFDS split of the same size slice alike.
    """
    if not slicing:
        return list(items)
    import types

    import tensorflow_datasets as tfds  # only for sliced splits: a heavy import

    spec = f"{name}{slicing}"
    try:
        (absolute,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(
            {name: types.SimpleNamespace(num_examples=len(items))}
        )
    except (ValueError, AssertionError) as err:
        raise UserError(f"split {spec!r}: {str(err).splitlines()[0]}") from None
    return list(items)[absolute.from_ : absolute.to]


def check_split_ratios(ratios):
    """Validates (train, validation, test) ratios and returns them normalized to sum to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise UserError(f"split ratios must be 3 non-negative numbers (train, validation, test), got {ratios}")
    total = sum(ratios)
    return tuple(r / total for r in ratios)


def list_images(folder):
    """All image files below `folder` (recursive), sorted by their relative path.

    Image files are those with an extension in `tfgcrf.imageio.PHOTO_EXTENSIONS` (any case; not GIF,
    whose palette posterizes the colors).
    Hidden files and folders (name starting with '.') are ignored. Symbolic links are followed,
    but a folder already listed (by real path: a link loop, or two links to one folder) is not
    entered again (the first path of a sorted walk is kept), and a file reached by several paths
    is listed once, under its smallest relative path, so one photo never lands in two splits.

    Returns:
      List of paths (str), each `os.path.join(folder, relative_path)`.

    Raises:
      UserError: `folder` does not exist or is not a folder.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise UserError(f"image folder not found: {folder}")
    by_real, seen_dirs = {}, set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real_root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # a deterministic walk
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(PHOTO_EXTENSIONS):
                path = os.path.join(root, name)
                real = os.path.realpath(path)
                if real not in by_real or relative_key(path, folder) < relative_key(by_real[real], folder):
                    by_real[real] = path
    return sorted(by_real.values(), key=lambda path: relative_key(path, folder))


def relative_key(path, folder):
    """The '/'-separated path of `path` relative to `folder`: what the split hash reads."""
    return os.path.relpath(path, folder).replace(os.sep, "/")


def split_key(relative_path):
    """What the split hash reads: the path, cut after its first `<clip>.frames` folder if any."""
    parts = relative_path.split("/")
    for index, part in enumerate(parts[:-1]):
        if part.endswith(FRAMES_SUFFIX):
            return "/".join(parts[: index + 1])
    return relative_path


def split_of(relative_path, ratios=DEFAULT_SPLIT_RATIOS):
    """The split ('train', 'validation' or 'test') a relative path belongs to."""
    ratios = check_split_ratios(ratios)
    digest = hashlib.sha256(split_key(relative_path).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    cumulative = 0.0
    for name, ratio in zip(SPLITS, ratios):
        cumulative += ratio
        if position < cumulative:
            return name
    return next(name for name, ratio in reversed(list(zip(SPLITS, ratios))) if ratio > 0)


def split_images(folder, split, ratios=DEFAULT_SPLIT_RATIOS):
    """The image files of `folder` that belong to `split`, sorted by relative path.

    `split` may be sliced as in TFDS (`train[:90%]`, `test[:50]`): the slice applies to the
    split's files in this order.
    """
    name, slicing = parse_split(split)
    files = [path for path in list_images(folder) if split_of(relative_key(path, folder), ratios) == name]
    return slice_split(files, name, slicing)
