"""Reading and writing image files as uint8 RGB numpy arrays.

`read_image` decodes with the one decode rule of the package, `tfgcrf.decode` (TensorFlow ops,
the same rule the exported SavedModel carries): PNG, JPEG, GIF, BMP and WebP files become upright
`[H, W, 3]` uint8 sRGB (EXIF orientation applied; gray, palette, 16-bit, CMYK converted;
transparency composited on white; animations give their first frame). Files declaring more
than `MAX_PIXELS` pixels are refused from their headers, before decoding. Every failure is an
`InputError` with a one-line message.

This module itself imports no TensorFlow (only `read_image` does, when called), so that folder
listings and the offline collection builder stay light. Writing uses Pillow.
"""

import io
import os

import numpy as np
from PIL import Image

from tfgcrf.errors import InputError

# The one pixel limit (decompression-bomb guard) of every entry point: the API, the CLI, the data
# pipeline, evaluation and the exported SavedModel (its default). 25 megapixels covers 24-MP
# camera photos (6000x4000) and is 75 MB as uint8 RGB.
MAX_PIXELS = 25_000_000

# Extensions of the files treated as training photos when scanning folders. GIF is left out on
# purpose: at most 256 colors per frame, so its chroma is posterized and would teach false colors.
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Extensions of the files colorized when a folder is given: everything the decode rule reads.
IMAGE_EXTENSIONS = PHOTO_EXTENSIONS + (".gif",)


def _check_path(path):
    if not os.path.exists(path):
        raise InputError(f"no such image file: {path}")
    if os.path.isdir(path):
        raise InputError(f"expected an image file, got a directory: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"empty image file: {path}")


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
      source: path of a PNG, JPEG, GIF, BMP or WebP file, the encoded bytes of such a file
        (`bytes`, `bytearray`, `memoryview`), or a binary file object (anything with `read()`
        returning bytes, e.g. `open(path, "rb")`, `io.BytesIO`; read from its current position).
      max_pixels: refuse images declaring more pixels than this (checked from the headers,
        before decoding; see `tfgcrf.decode`).

    Returns:
      `[H, W, 3]` uint8 numpy array.

    Raises:
      InputError: the file is missing, a directory, empty, of another format (named), truncated
        or corrupt, or larger than `max_pixels`; the source is of an unsupported type.
    """
    data = read_bytes(source)
    return decode_data(data, _describe(source), max_pixels)


def decode_data(data, name, max_pixels=MAX_PIXELS):
    """Encoded image bytes -> uint8 `[H, W, 3]` by `tfgcrf.decode`; `InputError` naming `name`."""
    import tensorflow as tf

    from tfgcrf import decode

    try:
        return decode.decode_bytes(data, max_pixels)
    except tf.errors.InvalidArgumentError as err:
        raise _decode_error(err, name) from None


def check_data(data, name, max_pixels=MAX_PIXELS):
    """The `InputError` `decode_data` would raise for a file its headers refuse (an unknown or
    unsupported format, more than `max_pixels` pixels declared), raised without decoding
    (`tfgcrf.decode.check_bytes`); other files pass (and may still fail to decode)."""
    import tensorflow as tf

    from tfgcrf import decode

    try:
        decode.check_bytes(data, max_pixels)
    except tf.errors.InvalidArgumentError as err:
        raise _decode_error(err, name) from None


def _decode_error(err, name):
    """A decode `InvalidArgumentError` -> the one-line `InputError` naming `name`."""
    from tfgcrf import decode

    message = decode.error_message(err)
    if message.startswith(("image too large", "unsupported image format")):
        return InputError(f"{message}: {name}")
    return InputError(f"cannot decode image {name}: {message}")


def pil_to_rgb(image, max_pixels=MAX_PIXELS):
    """A PIL image -> uint8 `[H, W, 3]` by the same rule: stored losslessly as PNG (with its EXIF
    orientation) and decoded by `tfgcrf.decode`. Modes PNG cannot hold are converted to RGB by
    Pillow first."""
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            f"image too large: {width}x{height} = {width * height / 1e6:.1f} megapixels, the limit "
            f"is {max_pixels / 1e6:g} megapixels"
        )
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    exif = image.getexif()
    image.save(buffer, format="PNG", compress_level=1, **({"exif": exif} if exif else {}))
    return decode_data(buffer.getvalue(), f"<PIL {image.mode} image>", max_pixels)


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def check_output_path(path):
    """Raises `InputError` unless Pillow can write an image to `path` (by its extension); callers
    check before long work, so a mistyped output name does not cost the whole run."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in Image.registered_extensions():
        raise InputError(f"unknown image file extension {extension!r} for {os.fspath(path)}")


def write_image(path, rgb):
    """Writes a uint8 `[H, W, 3]` (or `[H, W]` gray) array; the format follows the extension.

    Creates missing parent folders. Raises `InputError` for an extension Pillow cannot write.
    """
    path = os.fspath(path)
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InputError(f"write_image expects a uint8 [H, W, 3] array, got {array.dtype} {array.shape}")
    check_output_path(path)
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
