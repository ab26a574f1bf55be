"""Offline collection builder on a fake source (no apt, pip, npm or network), and its rules."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from tfgcrf.cli import main
from tfgcrf.data import offline, offline_sources
from tfgcrf.data.offline_sources import Candidate, Source, parse_credits
from tfgcrf.errors import UserError


def noisy_scene(seed, size=(80, 120)):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    base = np.stack([220 * x + 20, 200 * (1 - y) + 30, 120 + 100 * np.cos(5 * x + seed)], -1)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def encoded(rgb_or_image, fmt, **options):
    image = rgb_or_image if isinstance(rgb_or_image, Image.Image) else Image.fromarray(rgb_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def fake_candidates(fetcher):
    scene = noisy_scene(0)
    rgba = np.zeros((100, 150, 4), np.uint8)
    rgba[10:90, 15:135, :3] = noisy_scene(5)
    rgba[10:90, 15:135, 3] = 255
    pictures = [
        ("a/photo.jpg", encoded(scene, "JPEG", quality=95), None),
        ("a/photo.webp", encoded(noisy_scene(1), "WEBP", quality=90), None),
        ("b/gray.png", encoded(scene.mean(-1).astype(np.uint8), "PNG"), None),
        ("b/cartoon.png", encoded(np.full((80, 120, 3), (200, 40, 40), np.uint8), "PNG"), None),
        ("b/mirror.png", encoded(scene[:, ::-1], "PNG"), None),
        ("b/corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", None),
        ("b/painting.png", encoded(noisy_scene(2), "PNG"), "painting"),
        ("c/cutout.png", encoded(Image.fromarray(rgba, "RGBA"), "PNG"), None),
    ]
    for name, data, excluded in pictures:
        yield Candidate(name, "fake-pkg", "1.0", f"/usr/share/fake/{name}", data, "CC0-1.0", "someone", excluded)


@pytest.fixture
def fake_source(monkeypatch):
    monkeypatch.setattr(offline, "SOURCES", {"fake": Source("test fake-pkg", fake_candidates)})


def build(out_dir):
    return offline.build_offline(out_dir, cache_dir=out_dir.parent / "cache", install=False, log=lambda _: None)


def test_build_keeps_photos_and_says_why_others_are_rejected(tmp_path, fake_source):
    report = build(tmp_path / "collection")
    assert report.kept == {"fake": 3} and report.rejected == {"fake": 5}
    rows = offline.read_manifest(tmp_path / "collection" / offline.MANIFEST)
    assert [row["file"] for row in rows] == ["fake/a/photo.jpg", "fake/a/photo.webp", "fake/c/cutout.png"]
    # Originals that decode to opaque RGB are copied byte for byte; the cut-out is flattened.
    originals = {candidate.name: candidate.data for candidate in fake_candidates(None)}
    assert (tmp_path / "collection/fake/a/photo.jpg").read_bytes() == originals["a/photo.jpg"]
    assert (tmp_path / "collection/fake/a/photo.webp").read_bytes() == originals["a/photo.webp"]
    cutout = rows[2]
    assert (cutout["width"], cutout["height"]) == ("120", "80")  # cropped to the opaque part
    assert Image.open(tmp_path / "collection" / cutout["file"]).mode == "RGB"
    assert all(row["license"] == "CC0-1.0" and row["package"] == "fake-pkg" for row in rows)

    with open(tmp_path / "collection" / offline.REJECTED, newline="") as fh:
        reasons = {row["original_path"].removeprefix("/usr/share/fake/"): row["reason"] for row in csv.DictReader(fh)}
    assert reasons["b/gray.png"].startswith("near-grayscale")
    assert reasons["b/cartoon.png"].startswith("non-photo")
    assert reasons["b/mirror.png"] == "duplicate of fake/a/photo.jpg"
    assert reasons["b/corrupt.jpg"].startswith("undecodable")
    assert reasons["b/painting.png"] == "painting"


def test_build_keeps_only_what_the_package_decode_rule_reads(tmp_path, fake_source, monkeypatch):
    """A picture Pillow reads but `tfgcrf.decode` refuses would be skipped by training: rejected."""
    from tfgcrf import imageio
    from tfgcrf.errors import InputError

    calls = []
    real = imageio.decode_data

    def decode_data(data, name, *args):
        calls.append(name)
        if name.endswith(".webp"):
            raise InputError(f"cannot decode image {name}: truncated WebP")
        return real(data, name, *args)

    monkeypatch.setattr(offline.imageio, "decode_data", decode_data)
    report = build(tmp_path / "collection")
    assert report.kept == {"fake": 2} and report.rejected == {"fake": 6}
    assert calls == ["fake/a/photo.jpg", "fake/a/photo.webp", "fake/c/cutout.png"]
    with open(tmp_path / "collection" / offline.REJECTED, newline="") as fh:
        reasons = {row["original_path"]: row["reason"] for row in csv.DictReader(fh)}
    assert reasons["/usr/share/fake/a/photo.webp"] == (
        "refused by tfgcrf.decode: cannot decode image fake/a/photo.webp: truncated WebP")


def test_build_is_deterministic_and_replaces_an_earlier_collection(tmp_path, fake_source):
    out = tmp_path / "collection"
    build(out)
    first = (out / offline.MANIFEST).read_bytes(), (out / offline.REJECTED).read_bytes()
    (out / "fake" / "stale.png").write_bytes(b"left over")
    build(out)
    assert ((out / offline.MANIFEST).read_bytes(), (out / offline.REJECTED).read_bytes()) == first
    assert not (out / "fake" / "stale.png").exists()
    assert not (tmp_path / "collection.building").exists()


def test_build_refuses_a_folder_that_is_not_a_collection(tmp_path, fake_source):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not an offline collection"):
        build(out)
    assert (out / "thesis.tex").read_text() == "precious"


def test_unknown_sources_and_missing_packages_are_one_line_cli_errors(tmp_path, capsys):
    assert main(["data", "build-offline", str(tmp_path / "x"), "--sources", "gcompris,nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tfgcrf: error: unknown source(s) nope: choose from " + ", ".join(offline_sources.SOURCES)
    )
    args = ["data", "build-offline", str(tmp_path / "x"), "--sources", "foolbox", "--no-install",
            "--cache-dir", str(tmp_path / "empty-cache")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfgcrf: error: pip download foolbox==") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


GCOMPRIS_README = """\
Copyright: Timothee Giet, 2018
License: CC-BY-SA 4.0
Files:
question.svg

Copyright: Kurt Kaiser
License: CC0-1.0
Source: https://commons.wikimedia.org/wiki/File:American_Bison_9.jpg
Files:
bison.webp

Copyright: 2000, 2008 Bruno Coudoin and others
License: CC-BY 4.0
EilanDonanCastle_0.webp
EilanDonanCastle_background.webp
Comment: based on a photo by Guillaume Piolle, license CC-BY 3.0, source at
 https://commons.wikimedia.org/wiki/File:Eilean_Donan_castle_-_95mm.jpg

Copyright: 2000, 2008 Bruno Coudoin and others
License: Public domain
Files:
Eglise_background.webp
Comment: based on an original painting by Van Gogh, Public domain image.

Copyright:
  Copyright 1989 NASA
License: GPLv3
Files:
  louis.webp
  braille.webp
Comment: braille.webp is based on a photo by Christophe Moustier
"""


def test_gcompris_credits_are_parsed_per_file():
    credits = parse_credits(GCOMPRIS_README)
    assert credits["bison.webp"]["source"].endswith("American_Bison_9.jpg")
    assert credits["bison.webp"]["license"] == "CC0-1.0"
    castle = credits["EilanDonanCastle_background.webp"]  # file names without a Files: header
    assert castle["license"] == "CC-BY 4.0" and castle["comment"].endswith("Eilean_Donan_castle_-_95mm.jpg")
    assert credits["louis.webp"]["copyright"] == "Copyright 1989 NASA"
    assert set(credits) == {"question.svg", "bison.webp", "EilanDonanCastle_0.webp",
                            "EilanDonanCastle_background.webp", "Eglise_background.webp", "louis.webp",
                            "braille.webp"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bison.webp", None),
        ("EilanDonanCastle_background.webp", None),
        ("Eglise_background.webp", "painting (per README)"),
        ("question.svg", "no photographic source in README (drawing or game art)"),
        ("braille.webp", None),
        ("louis.webp", "no photographic source in README (drawing or game art)"),  # comment names braille.webp
        ("unlisted.webp", "no provenance in the activity's README"),
    ],
)
def test_gcompris_photo_rule_reads_the_readme(name, expected):
    fields = parse_credits(GCOMPRIS_README).get(name, {})
    assert offline_sources._gcompris_photo_rule(fields, name) == expected


def test_package_pictures_have_the_package_s_one_pixel_limit(monkeypatch):
    from tfgcrf import imageio

    assert offline.MAX_PIXELS is imageio.MAX_PIXELS
    data = encoded(noisy_scene(0, size=(20, 30)), "PNG")
    assert offline._decode(data).size == (30, 20)
    monkeypatch.setattr(offline, "MAX_PIXELS", 599)  # the check reads the one constant
    with pytest.raises(ValueError, match=r"^too large \(30x20\)$"):
        offline._decode(data)
