import os
import struct
import zlib

import pytest

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


@pytest.fixture(scope="session")
def smoke_model_file(smoke_run):
    """The session's smoke-trained model as the `.keras` file the CLI takes with --model."""
    return os.path.join(smoke_run.run_dir, "model.keras")


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width, height):
    """A valid PNG header declaring a huge image, with (almost) no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


@pytest.fixture
def bad_inputs(tmp_path):
    """Every kind of bad input of the issue: name -> (argument, regex of its error message)."""
    with open(os.path.join(DATA, "photos", "opencv_fruits.png"), "rb") as handle:
        png = handle.read()
    files = {
        "not_an_image.png": b"this is text, not pixels\n",
        "truncated.png": png[: len(png) // 2],
        "empty.png": b"",
        "bomb.png": bomb_png(9000, 9000),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "notes.txt").write_text("no pictures here")
    return {
        "missing": (str(tmp_path / "missing.jpg"), "no such image file"),
        "folder_without_images": (str(tmp_path / "no_images"), "no images .* in folder"),
        "not_an_image": (str(tmp_path / "not_an_image.png"), "unsupported image format"),
        "truncated": (str(tmp_path / "truncated.png"), "cannot decode image"),
        "empty": (str(tmp_path / "empty.png"), "empty image file"),
        "too_large": (str(tmp_path / "bomb.png"), "image too large: 9000x9000 PNG declaring 81 megapixels, the limit is 25 megapixels"),
    }
