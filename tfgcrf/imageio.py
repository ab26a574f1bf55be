"""Reading and writing image files as uint8 RGB numpy arrays (Pillow).

`read_image` is the one decoder used by the data pipeline, the CLI and the Python API. It turns
every input Pillow can open into `[H, W, 3]` uint8 sRGB:
- EXIF orientation is applied, so the array is upright as a viewer shows it;
- gray, bilevel and palette images become RGB with R = G = B (or the palette colors);
- transparency (RGBA, LA, palette with transparency) is composited on white, as a viewer shows it;
- 16-bit and 32-bit integer gray images (`I;16`, `I`) are scaled from the 16-bit range to 8 bits,
  float images (`F`) are taken as values in [0, 1];
- animated files (GIF, WebP) give their first frame.
Files larger than `max_pixels` are refused before they are decoded (decompression-bomb guard).
Every failure is an `InputError` with a one-line message.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tfgcrf.errors import InputError

# Decompression-bomb limit: 40 megapixels (a 7300x5500 photo) is 120 MB as uint8 RGB, well above
# any camera photo we colorize (the model sees 64x64) and far below what would exhaust memory.
MAX_PIXELS = 40_000_000

# Extensions of the files treated as images when scanning folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

_WHITE = (255, 255, 255)
_UINT16_TO_UINT8 = 65535.0 / 255.0


def _check_path(path):
    if not os.path.exists(path):
        raise InputError(f"no such image file: {path}")
    if os.path.isdir(path):
        raise InputError(f"expected an image file, got a directory: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"empty image file: {path}")


def _check_size(image, path, max_pixels):
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            f"image too large: {path} is {width}x{height} = {width * height / 1e6:.1f} megapixels, "
            f"the limit is {max_pixels / 1e6:g} megapixels"
        )
    if width == 0 or height == 0:
        raise InputError(f"image has no pixels: {path}")


def _has_alpha(image):
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _to_rgb_array(image):
    """Any Pillow mode -> uint8 [H, W, 3] RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        gray = np.round(np.clip(values, 0, 65535) / _UINT16_TO_UINT8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        gray = np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _describe(source):
    """A short name of an image source for messages: its path, or the kind of object."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def read_bytes(source):
    """The encoded bytes of an image source: a path, bytes-like data or a binary file object.

    Raises:
      InputError: a missing path, a directory, an empty file or empty data, a text-mode or
        unreadable file object, or a source of another type.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            raise InputError("image paths must be str or os.PathLike, not bytes (bytes are taken "
                             "as the encoded image itself)")
        _check_path(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise InputError(f"cannot read image file {path}: {err.strerror}") from None
    elif callable(getattr(source, "read", None)):
        try:
            data = source.read()
        except OSError as err:
            raise InputError(f"cannot read image from {_describe(source)}: {_one_line(err)}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(
                f"image file objects must be opened in binary mode ('rb'); {_describe(source)} "
                f"returned {type(data).__name__}"
            )
        data = bytes(data)
    else:
        raise InputError(
            "expected an image path, encoded image bytes or a binary file object, got "
            f"{type(source).__name__}"
        )
    if not data:
        raise InputError(f"empty image data: {_describe(source)}")
    return data


def read_image(source, max_pixels=MAX_PIXELS):
    """Reads an image file (or encoded image data) as an upright uint8 sRGB array.

    Args:
      source: path of a JPEG, PNG, WebP, BMP, GIF, TIFF (or any other Pillow-readable) file,
        the encoded bytes of such a file (`bytes`, `bytearray`, `memoryview`), or a binary
        file object (anything with `read()` returning bytes, e.g. `open(path, "rb")`,
        `io.BytesIO`; read from its current position).
      max_pixels: refuse images with more pixels than this (checked from the header, before
        decoding).

    Returns:
      `[H, W, 3]` uint8 numpy array.

    Raises:
      InputError: the file is missing, a directory, empty, not an image, truncated or corrupt, or
        larger than `max_pixels`; the source is of an unsupported type.
    """
    data = read_bytes(source)
    name = _describe(source)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_size(image, name, max_pixels)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _to_rgb_array(upright)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"not an image file (unknown format): {name}") from None
    except Image.DecompressionBombError:
        raise InputError(f"image too large (decompression-bomb limit): {name}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        # Pillow reports truncated data and corrupt streams with these exception types.
        raise InputError(f"cannot decode image {name}: {_one_line(err)}") from None


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def write_image(path, rgb):
    """Writes a uint8 `[H, W, 3]` (or `[H, W]` gray) array; the format follows the extension.

    Creates missing parent folders. Raises `InputError` for an extension Pillow cannot write.
    """
    path = os.fspath(path)
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InputError(f"write_image expects a uint8 [H, W, 3] array, got {array.dtype} {array.shape}")
    extension = os.path.splitext(path)[1].lower()
    if extension not in Image.registered_extensions():
        raise InputError(f"unknown image file extension {extension!r} for {path}")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        Image.fromarray(array).save(path)
    except OSError as err:
        raise InputError(f"cannot write image {path}: {_one_line(err)}") from None


def luminance(rgb):
    """CIE L* of a uint8 RGB array: `[..., 3]` -> float32 `[...]` in [0, 100].

    Uses `tfgcrf.color.lightness`, the same op the model and the exported SavedModel use.
    """
    from tfgcrf import color  # TensorFlow is only needed here, not for decoding.

    return color.lightness(np.asarray(rgb)).numpy()[..., 0]
