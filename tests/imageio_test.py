"""tfgcrf.imageio: every odd input kind decodes to upright uint8 RGB; bad files give InputError."""

import io

import numpy as np
import pytest
import skimage.color
import skimage.data
from PIL import Image

from tfgcrf import imageio
from tfgcrf.errors import InputError

EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photo():
    """A small real photo with an asymmetric layout, [48, 64, 3] uint8."""
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((64, 48), Image.LANCZOS))


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("extension", [".png", ".bmp", ".webp", ".gif"])
def test_lossless_formats_round_trip_exactly(tmp_path, photo, extension):
    kwargs = {"lossless": True} if extension == ".webp" else {}
    image = Image.fromarray(photo)
    if extension == ".gif":
        # GIF is palette-only: compare against the quantized image Pillow writes.
        image = image.quantize(256)
        photo = np.asarray(image.convert("RGB"))
    path = _save(tmp_path / f"photo{extension}", image, **kwargs)
    np.testing.assert_array_equal(imageio.read_image(path), photo)


def test_jpeg_decodes_close_to_source(tmp_path, photo):
    path = _save(tmp_path / "photo.jpg", Image.fromarray(photo), quality=95, subsampling=0)
    decoded = imageio.read_image(path)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - photo).mean() < 4


# EXIF orientation tag -> how a viewer shows the stored pixels.
ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    6: lambda a: np.rot90(a, -1),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_exif_orientation_is_applied(tmp_path, photo, orientation):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = _save(tmp_path / "rotated.jpg", Image.fromarray(photo), quality=95, subsampling=0, exif=exif)
    decoded = imageio.read_image(path)
    upright = ORIENTATIONS[orientation](photo)
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(int) - upright).mean() < 4


def test_gray_image_becomes_equal_channels(tmp_path, photo):
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    decoded = imageio.read_image(_save(tmp_path / "gray.png", Image.fromarray(gray)))
    assert decoded.shape == photo.shape
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_bilevel_image(tmp_path, photo):
    image = Image.fromarray(photo).convert("1")
    decoded = imageio.read_image(_save(tmp_path / "bilevel.png", image))
    assert set(np.unique(decoded)) <= {0, 255}
    np.testing.assert_array_equal(decoded[..., 0] > 0, np.asarray(image))


def test_palette_image_gives_palette_colors(tmp_path, photo):
    image = Image.fromarray(photo).quantize(16)
    decoded = imageio.read_image(_save(tmp_path / "palette.png", image))
    np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))


def test_rgba_is_composited_on_white(tmp_path, photo):
    alpha = np.zeros(photo.shape[:2], np.uint8)
    alpha[:, : photo.shape[1] // 2] = 255  # left half opaque
    alpha[:, -4:] = 128  # a half-transparent strip at the right
    rgba = np.concatenate([photo, alpha[..., None]], axis=-1)
    decoded = imageio.read_image(_save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA")))
    half = photo.shape[1] // 2
    np.testing.assert_array_equal(decoded[:, :half], photo[:, :half])
    np.testing.assert_array_equal(decoded[:, half:-4], 255)
    expected_strip = (photo[:, -4:].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(decoded[:, -4:] - expected_strip).max() <= 1


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (8, 4), 0)
    image.putpalette([200, 10, 10] + [10, 200, 10] + [0, 0, 0] * 254)
    image.paste(1, (4, 0, 8, 4))
    image.info["transparency"] = 1
    decoded = imageio.read_image(_save(tmp_path / "transparent.png", image, transparency=1))
    np.testing.assert_array_equal(decoded[:, :4], np.broadcast_to([200, 10, 10], (4, 4, 3)))
    np.testing.assert_array_equal(decoded[:, 4:], 255)


def test_gray_alpha_image(tmp_path):
    gray_alpha = np.stack([np.full((4, 4), 60, np.uint8), np.full((4, 4), 0, np.uint8)], -1)
    gray_alpha[:2, :, 1] = 255
    decoded = imageio.read_image(_save(tmp_path / "la.png", Image.fromarray(gray_alpha, "LA")))
    np.testing.assert_array_equal(decoded[:2], 60)
    np.testing.assert_array_equal(decoded[2:], 255)


def test_16_bit_gray_is_scaled_to_8_bits(tmp_path):
    values = np.linspace(0, 65535, 64 * 8).round().astype(np.uint16).reshape(8, 64)
    path = _save(tmp_path / "gray16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    decoded = imageio.read_image(path)
    expected = np.round(values / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(decoded[..., 0], expected)
    assert decoded[0, 0, 0] == 0 and decoded[-1, -1, 2] == 255


@pytest.mark.parametrize("save, name", [
    (lambda image, buffer: image.save(buffer, "TIFF"), "TIFF"),
    (lambda image, buffer: buffer.write(b"%PDF-1.4 not really"), "PDF"),
    (lambda image, buffer: buffer.write(b"just some text"), "unknown format"),
])
def test_other_formats_are_refused_by_name(photo, save, name):
    buffer = io.BytesIO()
    save(Image.fromarray(photo), buffer)
    with pytest.raises(InputError, match=f"unsupported image format: {name} .accepted: PNG, JPEG") as info:
        imageio.read_image(buffer.getvalue())
    assert "\n" not in str(info.value)


def test_cmyk_jpeg(tmp_path, photo):
    path = _save(tmp_path / "cmyk.jpg", Image.fromarray(photo).convert("CMYK"), quality=95)
    decoded = imageio.read_image(path)
    assert decoded.shape == photo.shape
    assert np.abs(decoded.astype(int) - photo).mean() < 6


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), color) for color in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(imageio.read_image(path), np.broadcast_to([255, 0, 0], (4, 6, 3)))


def _write(path, data):
    path.write_bytes(data)
    return path


def _encoded(photo, image_format):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, image_format)
    return buffer.getvalue()


# name -> (makes the bad input in a tmp folder, expected message)
BAD_INPUTS = {
    "missing": (lambda tmp, photo: tmp / "missing.png", "no such image file"),
    "directory": (lambda tmp, photo: tmp, "got a directory"),
    "empty": (lambda tmp, photo: _write(tmp / "empty.jpg", b""), "empty image file"),
    "not-an-image": (lambda tmp, photo: _write(tmp / "notes.png", b"not an image"), "unsupported image format"),
    "truncated-jpeg": (
        lambda tmp, photo: _write(tmp / "cut.jpg", _encoded(photo, "JPEG")[:1000]),
        "cannot decode image",
    ),
    "truncated-png": (
        lambda tmp, photo: _write(tmp / "cut.png", _encoded(photo, "PNG")[:-200]),
        "cannot decode image",
    ),
    "corrupt-webp": (
        lambda tmp, photo: _write(tmp / "bad.webp", _encoded(photo, "WEBP")[:40] + bytes(200)),
        "cannot decode image",
    ),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_files_raise_one_line_input_error(tmp_path, photo, kind):
    make, message = BAD_INPUTS[kind]
    with pytest.raises(InputError, match=message) as info:
        imageio.read_image(make(tmp_path, photo))
    assert "\n" not in str(info.value)


def test_too_large_image_is_refused_before_decoding(tmp_path, photo):
    path = _save(tmp_path / "photo.png", Image.fromarray(photo))
    with pytest.raises(InputError, match="image too large: 64x48 PNG declaring 0.003072 megapixels, the limit "
                       "is 0.001 megapixels"):
        imageio.read_image(path, max_pixels=1000)
    assert imageio.read_image(path, max_pixels=64 * 48).shape == (48, 64, 3)
    assert imageio.MAX_PIXELS == 25_000_000


def test_write_image_round_trip_and_errors(tmp_path, photo):
    path = tmp_path / "nested" / "out.png"
    imageio.write_image(path, photo)
    np.testing.assert_array_equal(imageio.read_image(path), photo)
    with pytest.raises(InputError, match="unknown image file extension"):
        imageio.write_image(tmp_path / "out.xyz", photo)
    with pytest.raises(InputError, match="uint8"):
        imageio.write_image(tmp_path / "out.png", photo.astype(np.float32))


def test_luminance_is_lab_lightness(photo):
    lightness = imageio.luminance(photo)
    assert lightness.shape == photo.shape[:2] and lightness.dtype == np.float32
    np.testing.assert_allclose(lightness, skimage.color.rgb2lab(photo)[..., 0], atol=5e-4)
