"""The one image decode rule, in TensorFlow ops: encoded bytes -> upright uint8 sRGB `[H, W, 3]`.

Every entry point decodes with this module: the Python API and the CLI (`tfgcrf.imageio`), the data
pipeline, evaluation and the exported SavedModel's signatures (so TF Serving applies the very same
rule). It reads PNG (and APNG: its default image), JPEG, GIF, BMP and WebP (lossy, lossless,
extended, animated):

- **pixel limit** (`MAX_PIXELS`, one constant): checked on the container headers *before* any
  pixel buffer is allocated, for every size the file declares: the PNG header and every APNG
  frame, the JPEG frame header, the GIF logical screen and every frame, the BMP header, the WebP
  canvas, every animation frame and every VP8/VP8L bitstream. A small file declaring a huge image
  costs no memory;
- **EXIF orientation** (JPEG APP1, PNG eXIf, WebP EXIF chunk; tags 1-8) is applied, so the array
  is upright as a viewer shows it;
- **transparency of any kind** (RGBA, gray + alpha, palette or single-color tRNS, GIF transparent
  index, WebP alpha, the alpha mask of a 32-bit BMP) is composited on white;
- 16-bit PNGs are rounded to 8 bits (v / 257); gray images get R = G = B; palettes are expanded
  (also 1/4/8-bit BMP palettes, decoded here with TF ops); CMYK/YCCK JPEGs are converted to RGB
  by TensorFlow's JPEG decoder (Adobe inverted CMYK);
- **animated** GIF and WebP give their first frame, on the animation's canvas: only the first
  frame's bytes are handed to the decoder (TensorFlow's decoders would otherwise decode every
  frame, and `tf.io.decode_webp` aborts the process on animated files);
- anything else fails with one clear `InvalidArgumentError` naming the format (TIFF, HEIF/AVIF,
  JPEG XL, ...), or the decoder's own message for corrupt data.

Differences from Pillow (the reference the tests compare against): JPEG pixels may differ by a
few levels (different libjpeg builds; the accurate integer IDCT is used on both sides), CMYK
JPEGs by a few more; 16-bit RGB PNGs are rounded rather than truncated (+-1); RLE-compressed and
16-bit BMPs, 24/32-bit BMPs with an OS/2 core header or bit fields other than B, G, R(, A), and
TIFF are refused.

`decode_image(data, max_pixels)` is the graph function (works eagerly too); `header_info(data)`
gives `(format code, height, width, declared pixels)` without decoding, for services that refuse
requests before doing any work.
"""

import functools
import re

import tensorflow as tf

from tfgcrf.imageio import MAX_PIXELS  # the one pixel limit (kept where no TensorFlow is needed)

FORMATS = ("unknown", "PNG", "JPEG", "GIF", "BMP", "WebP")
UNKNOWN, PNG, JPEG, GIF, BMP, WEBP = range(len(FORMATS))
ACCEPTED = "PNG, JPEG, GIF, BMP or WebP"

# Signatures of formats the rule does not read, named in the error message.
_OTHER_FORMATS = (
    (b"II*\x00", 0, "TIFF"), (b"MM\x00*", 0, "TIFF"), (b"ftypavif", 4, "AVIF"),
    (b"ftypheic", 4, "HEIF"), (b"ftypheix", 4, "HEIF"), (b"ftypmif1", 4, "HEIF"),
    (b"ftypmsf1", 4, "HEIF"), (b"\xff\x0a", 0, "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"), (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"8BPS", 0, "Photoshop PSD"), (b"\x00\x00\x01\x00", 0, "ICO"), (b"%PDF", 0, "PDF"),
    (b"qoif", 0, "QOI"), (b"v/1\x01", 0, "OpenEXR"), (b"<", 0, "SVG/XML/HTML text"),
    (b"P1", 0, "PNM"), (b"P2", 0, "PNM"), (b"P3", 0, "PNM"), (b"P4", 0, "PNM"), (b"P5", 0, "PNM"),
    (b"P6", 0, "PNM"), (b"RIFF", 0, "RIFF (not WebP)"),
)
_HEAD = 16  # bytes read for the format signatures
_PAD = 64  # zero bytes appended so that header reads past a truncated end stay in range
_BYTE_STRINGS = tf.constant([bytes([value]) for value in range(256)])
_WHITE = 255


# ------------------------------------------------------------------------------- byte reading


def _byte_array(data):
    """int32 `[len + _PAD]` byte values of a string scalar (zero padded)."""
    raw = tf.io.decode_raw(tf.strings.join([data, b"\0" * _PAD]), tf.uint8)
    return tf.cast(raw, tf.int32)


def _at(array, index):
    """`array[index]`, clamped to the array (reads past the end give the zero padding)."""
    return tf.gather(array, tf.clip_by_value(index, 0, tf.shape(array)[0] - 1))


def _uint(array, offset, size, big_endian=False):
    """Unsigned integer of `size` bytes at `offset` (int64, so 4-byte values stay positive)."""
    values = tf.cast(_at(array, offset + tf.range(size)), tf.int64)
    if big_endian:
        values = tf.reverse(values, [0])
    return tf.reduce_sum(values * tf.constant([256**k for k in range(size)], tf.int64))


def _int(value):
    return tf.cast(tf.minimum(value, 2**31 - 1), tf.int32)


def _bytes_of(values):
    """uint8-range int `[K]` values -> the string of those K bytes."""
    return tf.strings.reduce_join(tf.gather(_BYTE_STRINGS, values))


def _le_bytes(value, size):
    value = tf.cast(value, tf.int64)
    return _bytes_of(tf.cast((value // tf.constant([256**k for k in range(size)], tf.int64)) % 256, tf.int32))


def _starts_with(head, signature, offset=0):
    return tf.equal(tf.strings.substr(head, offset, len(signature)), signature)


def _substr(data, start, length):
    """`length` bytes of `data` from `start`, fewer past the end. The start is clamped to the
    string: TensorFlow's own error for a start past the end quotes the raw bytes of the whole
    file in its message (not UTF-8: Python got a UnicodeDecodeError instead of the error)."""
    start = tf.clip_by_value(tf.cast(start, tf.int32), 0, tf.strings.length(data))
    return tf.strings.substr(data, start, tf.cast(tf.maximum(length, 0), tf.int32))


# ------------------------------------------------------------------------------ format sniffing


def _head(data):
    """The first `_HEAD` bytes of `data`, zero padded (substr past the end is an error)."""
    return tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEAD), b"\0" * _HEAD]), 0, _HEAD)


def sniff(data):
    """Format code (`FORMATS` index, int32 scalar) from the first bytes of `data`."""
    head = _head(data)
    checks = [
        (_starts_with(head, b"\x89PNG\r\n\x1a\n"), PNG),
        (_starts_with(head, b"\xff\xd8\xff"), JPEG),
        (_starts_with(head, b"GIF87a") | _starts_with(head, b"GIF89a"), GIF),
        (_starts_with(head, b"BM"), BMP),
        (_starts_with(head, b"RIFF") & _starts_with(head, b"WEBP", 8), WEBP),
    ]
    code = tf.constant(UNKNOWN)
    for matches, value in reversed(checks):
        code = tf.where(matches, value, code)
    return code


def format_name(data):
    """A name for the format of `data` (string scalar), for error messages: "PNG", "TIFF", ..."""
    head = _head(data)
    name = tf.constant("unknown format")
    for signature, offset, label in reversed(_OTHER_FORMATS):
        name = tf.where(_starts_with(head, signature, offset), label, name)
    code = sniff(data)
    return tf.where(code == UNKNOWN, name, tf.gather(tf.constant(FORMATS), code))


# --------------------------------------------------------------------------------- EXIF


def _tiff_orientation(array, start, end):
    """EXIF orientation (1-8; 1 when absent or invalid) of the TIFF structure at `start`, in
    the metadata segment / chunk ending at `end`.

    Invalid, as for Pillow (and other EXIF readers): a TIFF header other than "II*\0" or
    "MM\0*", an orientation entry that is not SHORT (or LONG) values held in the entry (the
    first is the orientation), or one past the end of the segment (the bytes after it are
    other data); corrupt bytes there were read as an orientation and turned the image.
    """
    little = tf.equal(_at(array, start), 0x49)  # "II"; "MM" is big-endian
    head = _at(array, start + tf.range(4))
    header = (tf.reduce_all(tf.equal(head, tf.constant(list(b"II*\0"))))
              | tf.reduce_all(tf.equal(head, tf.constant(list(b"MM\0*")))))

    def read(offset, size):
        return tf.where(little, _uint(array, offset, size), _uint(array, offset, size, big_endian=True))

    ifd = start + _int(read(start + 4, 4))
    count = tf.minimum(_int(read(ifd, 2)), 256)
    entries = ifd + 2 + 12 * tf.range(256)
    first, second = _at(array, entries), _at(array, entries + 1)
    tags = tf.where(little, first + 256 * second, 256 * first + second)
    found = (tags == 0x0112) & (tf.range(256) < count)
    entry = tf.gather(entries, tf.argmax(tf.cast(found, tf.int32)))
    kind, values = read(entry + 2, 2), read(entry + 4, 4)  # 3: SHORT, 4: LONG
    value = _int(tf.where(kind == 4, read(entry + 8, 4), read(entry + 8, 2)))
    inline = ((kind == 3) & (values >= 1) & (values <= 2)) | ((kind == 4) & (values == 1))  # in 4 bytes
    valid = (tf.reduce_any(found) & header & inline
             & (value >= 1) & (value <= 8) & (entry + 12 <= end))
    return tf.where(valid, value, 1)


def _tiff_start_of_exif_payload(array, payload):
    """Offset of the TIFF header in an EXIF payload (skips an "Exif\\0\\0" prefix)."""
    prefix = tf.reduce_all(tf.equal(_at(array, payload + tf.range(6)), tf.constant(list(b"Exif\0\0"))))
    return payload + tf.where(prefix, 6, 0)


def _jpeg_walk(array):
    """JPEG markers up to the start of scan, walked once: everything the rule needs of a JPEG.

    Returns a dict of scalars: `exif` (int32 offset of the APP1 "Exif" segment's TIFF header,
    -1 when absent), `exif_end` (the end of that segment), `height` and `width` (int64, from
    the first SOFn frame header: read here, not by libjpeg, so that a truncated file declaring
    a huge frame is still measured; 0 x 0 when there is none), `scan` (int32 offset of the start-of-scan marker, -1 when the
    markers end before one) and `complete` (bool: a start of scan followed somewhere by the
    end-of-image marker FF D9). In the entropy-coded data a 0xFF byte is followed by 0x00 or a
    restart marker, so FF D9 after the start of scan is the image's end (an EXIF thumbnail's
    ends before). A file cut short lacks it: `decode_image` refuses it before libjpeg runs,
    which would print its own "Premature end of JPEG data" / "Improper call to JPEG library"
    line on the process's stderr before the error. The file's bytes are compared with 0xFF
    once: the marker walk and the end-of-image search share the offsets.
    """
    size = tf.shape(array)[0] - _PAD
    exif_tag = tf.constant(list(b"Exif\0\0"))

    # Offsets of every 0xFF byte, then the end: libjpeg skips extraneous bytes before a marker
    # (with a warning; Pillow's test image junk_jpeg_header.jpg has "hello" between two
    # segments), so the walk jumps to the next 0xFF instead of stopping there. Searched, not
    # stepped byte by byte: a file of junk costs one vectorized pass, not one loop per byte.
    ffs = tf.concat([tf.cast(tf.reshape(tf.where(tf.equal(array[:size], 0xFF)), [-1]), tf.int32),
                     tf.reshape(size, [1])], 0)

    def more(position, found, found_end, shape, start):
        return position + 4 <= size

    def step(position, found, found_end, shape, start):
        at_marker = tf.equal(_at(array, position), 0xFF)
        next_ff = tf.gather(ffs, tf.searchsorted(ffs, tf.reshape(position, [1]))[0])
        marker = _at(array, position + 1)
        # FF 00 where a marker belongs is junk that libjpeg (and Pillow) skip, like any byte
        # that is no marker: two bytes, then on to the next 0xFF. Read as a segment, its next
        # two bytes were a length that could jump over the frame header: 0 x 0 declared, a
        # 700-byte file decoded to 8000 x 8000 past the pixel limit.
        standalone = ((marker == 0xD8) | (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD7))
                      | (marker == 0xFF) | (marker == 0x00))
        length = _int(_uint(array, position + 2, 2, big_endian=True))
        is_exif = (marker == 0xE1) & tf.reduce_all(tf.equal(_at(array, position + 4 + tf.range(6)), exif_tag))
        # (A segment shorter than its "Exif\0\0" header holds no EXIF: libjpeg and Pillow
        # read the bytes after it as the next segments.)
        first_exif = at_marker & is_exif & (length >= 8) & (found < 0)
        found = tf.where(first_exif, position + 10, found)
        found_end = tf.where(first_exif, position + 2 + length, found_end)
        # SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC).
        frame = (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8) & (marker != 0xCC)
        dims = tf.stack([_uint(array, position + 5, 2, big_endian=True), _uint(array, position + 7, 2, big_endian=True)])
        shape = tf.where(at_marker & frame & (shape[0] + shape[1] == 0), dims, shape)
        stop = at_marker & (marker == 0xDA)  # start of scan: no metadata after it
        step_size = tf.where(marker == 0xFF, 1, tf.where(standalone, 2, 2 + length))
        position_after = tf.where(at_marker, position + step_size, next_ff)
        return (tf.where(stop, size, position_after), found, found_end, shape,
                tf.where(stop, position, start))

    _, found, found_end, shape, start = tf.while_loop(
        more, step, (tf.constant(2), tf.constant(-1), tf.constant(-1), tf.zeros([2], tf.int64),
                     tf.constant(-1)))
    # FF D9 after the start of scan, within the file: looked up at the 0xFF offsets only.
    offsets = ffs[:-1]
    ends = tf.equal(_at(array, offsets + 1), 0xD9) & (offsets > start) & (offsets + 2 <= size)
    complete = (start >= 0) & tf.reduce_any(ends)
    return dict(exif=found, exif_end=found_end, height=shape[0], width=shape[1], scan=start,
                complete=complete)


# ----------------------------------------------------------------------------------- PNG


def _area(height, width):
    """`height * width` of two 4-byte sizes (int64), each taken at most 2**31: the product of
    two sizes near 2**32 wrapped around int64 to a negative area, below any limit."""
    return tf.minimum(height, 2**31) * tf.minimum(width, 2**31)


def _png_has_header(array):
    """Whether the PNG signature is followed by its IHDR chunk (length 13): without it the
    width and height bytes are not a size (a corrupt file, not a huge image)."""
    return (tf.equal(_uint(array, 8, 4, True), 13)
            & tf.reduce_all(tf.equal(_at(array, 12 + tf.range(4)), tf.constant(list(b"IHDR")))))


def _png_walk(array):
    """PNG chunks: `(largest APNG frame area, (offset of the eXIf payload or -1, its end), has
    tRNS)`."""
    size = tf.shape(array)[0] - _PAD
    fctl, exif, trns = (tf.constant(list(name)) for name in (b"fcTL", b"eXIf", b"tRNS"))

    def more(position, largest, found, found_end, transparency):
        return position + 12 <= size

    def step(position, largest, found, found_end, transparency):
        length = _int(_uint(array, position, 4, big_endian=True))
        kind = _at(array, position + 4 + tf.range(4))
        payload = position + 8
        area = _area(_uint(array, payload + 4, 4, big_endian=True),
                     _uint(array, payload + 8, 4, big_endian=True))
        largest = tf.where(tf.reduce_all(tf.equal(kind, fctl)), tf.maximum(largest, area), largest)
        first_exif = tf.reduce_all(tf.equal(kind, exif)) & (found < 0)
        found = tf.where(first_exif, payload, found)
        found_end = tf.where(first_exif, payload + tf.minimum(length, size - payload), found_end)
        transparency = transparency | tf.reduce_all(tf.equal(kind, trns))
        # A length beyond the file ends the walk (the decoder reports the corruption). Compared
        # before it is added: `payload + length + 4` wrapped around int32 for lengths near 2**31
        # and the walk went back to an earlier chunk (length 0x7FFFFFE9: forever).
        beyond = length > size - payload - 4
        return tf.where(beyond, size, payload + length + 4), largest, found, found_end, transparency

    _, largest, found, found_end, transparency = tf.while_loop(
        more, step,
        (tf.constant(8), tf.constant(0, tf.int64), tf.constant(-1), tf.constant(-1), tf.constant(False))
    )
    return largest, (found, found_end), transparency


def _composite_on_white(pixels, scale):
    """`[H, W, 4]` (or `[H, W, 2]` gray + alpha) integer pixels with max value `scale` ->
    uint8 RGB composited on white, rounded."""

    def blend():
        values = tf.cast(pixels, tf.float32)
        color, alpha = values[..., :-1], values[..., -1:] / scale
        rgb = tf.round((color * alpha + scale * (1.0 - alpha)) * (255.0 / scale))
        return tf.cast(tf.clip_by_value(rgb, 0.0, 255.0), tf.uint8)

    def opaque():
        if pixels.dtype == tf.uint8:
            return pixels[..., :-1]
        rgb = tf.round(tf.cast(pixels[..., :-1], tf.float32) * (255.0 / scale))
        return tf.cast(rgb, tf.uint8)

    rgb = tf.cond(tf.reduce_all(tf.equal(pixels[..., -1], tf.cast(scale, pixels.dtype))), opaque, blend)
    return tf.image.grayscale_to_rgb(rgb) if rgb.shape[-1] == 1 else rgb


def _decode_png(data, array, transparency):
    """PNG pixels: with an alpha channel or tRNS, decoded with alpha and composited on white;
    otherwise as RGB (TensorFlow fills a wrong alpha for 1/2/4-bit gray). 16-bit: v / 257."""
    depth, color_type = _at(array, 24), _at(array, 25)
    alpha = (color_type == 4) | (color_type == 6) | transparency

    def decode(dtype, scale):
        def with_alpha():
            return _composite_on_white(tf.io.decode_png(data, channels=4, dtype=dtype), scale)

        def without_alpha():
            rgb = tf.io.decode_png(data, channels=3, dtype=dtype)
            if dtype == tf.uint8:
                return rgb
            return tf.cast(tf.round(tf.cast(rgb, tf.float32) * (255.0 / scale)), tf.uint8)

        return lambda: tf.ensure_shape(tf.cond(alpha, with_alpha, without_alpha), [None, None, 3])

    return tf.cond(depth == 16, decode(tf.uint16, 65535.0), decode(tf.uint8, 255.0))


# ----------------------------------------------------------------------------------- GIF


def _gif_walk(array):
    """GIF blocks: the largest frame area and the first frame's layout.

    Returns a dict of int32 scalars: `largest` (int64 area), `start` / `end` (the first image
    descriptor and the end of its data), `transparent` (index or -1, from the graphic control
    extension before it), `frames`.
    """
    size = tf.shape(array)[0] - _PAD
    packed = _at(array, 10)
    global_table = tf.where(packed >= 128, 3 * tf.bitwise.left_shift(2, packed % 8), 0)
    # mode 0: at a block; 1: in data sub-blocks.
    state = dict(
        position=13 + global_table, mode=tf.constant(0), largest=tf.constant(0, tf.int64),
        start=tf.constant(-1), end=tf.constant(-1), transparent=tf.constant(-1),
        pending=tf.constant(-1), frames=tf.constant(0), done=tf.constant(False),
    )

    def more(s):
        return tf.logical_not(s["done"]) & (s["position"] < size)

    def step(s):
        s = dict(s)
        position = s["position"]
        byte = _at(array, position)
        in_blocks = s["mode"] == 1
        # Sub-blocks: a length byte and its data; 0 ends the chain.
        end_of_chain = in_blocks & (byte == 0)
        first_end = end_of_chain & (s["frames"] == 1) & (s["end"] < 0)
        s["end"] = tf.where(first_end, position + 1, s["end"])
        # Blocks.
        is_extension = tf.logical_not(in_blocks) & (byte == 0x21)
        is_image = tf.logical_not(in_blocks) & (byte == 0x2C)
        is_control = is_extension & (_at(array, position + 1) == 0xF9)
        flags = _at(array, position + 3)
        s["pending"] = tf.where(
            is_control, tf.where(flags % 2 == 1, _at(array, position + 6), -1), s["pending"]
        )
        area = _uint(array, position + 5, 2) * _uint(array, position + 7, 2)
        local_packed = _at(array, position + 9)
        local_table = tf.where(local_packed >= 128, 3 * tf.bitwise.left_shift(2, local_packed % 8), 0)
        first_image = is_image & (s["frames"] == 0)
        s["start"] = tf.where(first_image, position, s["start"])
        s["transparent"] = tf.where(first_image, s["pending"], s["transparent"])
        s["largest"] = tf.where(is_image, tf.maximum(s["largest"], area), s["largest"])
        s["frames"] = s["frames"] + tf.cast(is_image, tf.int32)
        s["pending"] = tf.where(is_image, -1, s["pending"])
        s["done"] = tf.logical_not(in_blocks) & tf.logical_not(is_extension | is_image)  # trailer / junk
        s["position"] = tf.where(
            in_blocks,
            position + 1 + byte,
            tf.where(is_extension, position + 2, position + 10 + local_table + 1),
        )
        s["mode"] = tf.where(in_blocks, tf.where(byte == 0, 0, 1), tf.where(is_extension | is_image, 1, 0))
        return (s,)

    (state,) = tf.while_loop(more, step, (state,))
    return state


def _patched_palette(array, start, length, transparent):
    """The palette bytes at `start` with entry `transparent` (if >= 0) made white."""
    values = _at(array, start + tf.range(length))
    index = tf.range(length) // 3
    return _bytes_of(tf.where(index == transparent, _WHITE, values))


def _decode_gif(data, array):
    """The first frame of a GIF on its logical screen (uncovered pixels: background color, or
    white when the frame has a transparent index)."""
    walk = _gif_walk(array)
    start, end, transparent = walk["start"], walk["end"], walk["transparent"]
    checks = [
        tf.debugging.Assert(
            (start >= 0) & (end > start), ["GIF: no complete image in the file (truncated or corrupt)"]
        )
    ]
    with tf.control_dependencies(checks):  # every read of the file after the check
        data, array = tf.identity(data), tf.identity(array)
    packed = _at(array, 10)
    global_length = tf.where(packed >= 128, 3 * tf.bitwise.left_shift(2, packed % 8), 0)
    local_packed = _at(array, start + 9)
    local_length = tf.where(local_packed >= 128, 3 * tf.bitwise.left_shift(2, local_packed % 8), 0)
    has_local = local_length > 0
    width, height = _int(_uint(array, start + 5, 2)), _int(_uint(array, start + 7, 2))
    left, top = _int(_uint(array, start + 1, 2)), _int(_uint(array, start + 3, 2))
    screen_width, screen_height = _int(_uint(array, 6, 2)), _int(_uint(array, 8, 2))
    global_table = _patched_palette(array, 13, global_length, tf.where(has_local, -1, transparent))
    local_table = _patched_palette(array, start + 10, local_length, transparent)
    # One still GIF: the frame alone on a screen of its own size, at (0, 0), no extensions.
    still = tf.strings.join([
        b"GIF89a", _le_bytes(width, 2), _le_bytes(height, 2), _substr(data, 10, 3), global_table,
        b",", _le_bytes(0, 4), _le_bytes(width, 2), _le_bytes(height, 2), _substr(data, start + 9, 1),
        local_table, _substr(data, start + 10 + local_length, end - start - 10 - local_length), b";",
    ])
    frame = tf.io.decode_gif(still)[0]
    background_index = _at(array, 11)
    background = tf.where(
        (transparent < 0) & (global_length > 0),
        _at(array, 13 + 3 * background_index + tf.range(3)),
        tf.fill([3], _WHITE),
    )
    return _place(frame, None, top, left, screen_height, screen_width, background)


def _place(frame, alpha, top, left, height, width, background):
    """A frame `[h, w, 3]` (with optional alpha `[h, w, 1]` in [0, 1]) placed at (top, left) on a
    `height x width` canvas of `background` color (frames are clipped to the canvas)."""
    shape = tf.shape(frame)
    if alpha is None:  # a frame covering the whole canvas is the image
        covers = (top == 0) & (left == 0) & (shape[0] == height) & (shape[1] == width)
        return tf.cond(covers, lambda: frame, lambda: _place_on_canvas(frame, alpha, top, left, height,
                                                                          width, background))
    return _place_on_canvas(frame, alpha, top, left, height, width, background)


def _place_on_canvas(frame, alpha, top, left, height, width, background):
    shape = tf.shape(frame)
    top, left = tf.minimum(top, height), tf.minimum(left, width)
    frame_height = tf.minimum(shape[0], height - top)
    frame_width = tf.minimum(shape[1], width - left)
    frame = frame[:frame_height, :frame_width]
    if alpha is not None:  # blended on the frame's area only, in float
        alpha = alpha[:frame_height, :frame_width]
        pixels = tf.cast(frame, tf.float32) * alpha + tf.cast(background, tf.float32) * (1.0 - alpha)
        frame = tf.cast(tf.round(pixels), tf.uint8)
    # The canvas in uint8, the same values: padded in float32 (then rounded and cast), an 8 x 8
    # frame on a 5000 x 5000 canvas (the limit) took 680 MB of peak memory; now 220 MB.
    color = tf.cast(background, tf.uint8)
    paddings = [[top, height - top - frame_height], [left, width - left - frame_width]]
    channels = [tf.pad(frame[..., c], paddings, constant_values=color[c]) for c in range(3)]
    return tf.stack(channels, axis=-1)


# ---------------------------------------------------------------------------------- WebP


def _webp_walk(array):
    """WebP chunks (nested ANMF frames included): sizes and the first animation frame."""
    size = tf.shape(array)[0] - _PAD

    def kind_is(kind, name):
        return tf.reduce_all(tf.equal(kind, tf.constant(list(name))))

    state = dict(
        position=tf.constant(12), largest=tf.constant(0, tf.int64), canvas=tf.zeros([2], tf.int64),
        animated=tf.constant(False), frame=tf.constant(-1), frame_end=tf.constant(-1),
        exif=tf.constant(-1), exif_end=tf.constant(-1), alpha=tf.constant(False),
        first=tf.zeros([2], tf.int64),
    )

    def more(s):
        return s["position"] + 8 <= size

    def step(s):
        s = dict(s)
        position = s["position"]
        kind = _at(array, position + tf.range(4))
        length = _int(_uint(array, position + 4, 4))
        payload = position + 8
        lossy_area = (_uint(array, payload + 6, 2) % 16384) * (_uint(array, payload + 8, 2) % 16384)
        bits = _uint(array, payload + 1, 4)
        lossless_area = (bits % 16384 + 1) * ((bits // 16384) % 16384 + 1)
        canvas = tf.stack([_uint(array, payload + 7, 3) + 1, _uint(array, payload + 4, 3) + 1])
        frame_area = (_uint(array, payload + 6, 3) + 1) * (_uint(array, payload + 9, 3) + 1)
        is_vp8, is_vp8l = kind_is(kind, b"VP8 "), kind_is(kind, b"VP8L")
        is_vp8x, is_anmf = kind_is(kind, b"VP8X"), kind_is(kind, b"ANMF")
        area = tf.where(is_vp8, lossy_area, tf.where(is_vp8l, lossless_area, tf.constant(0, tf.int64)))
        area = tf.where(is_vp8x, canvas[0] * canvas[1], tf.where(is_anmf, frame_area, area))
        s["largest"] = tf.maximum(s["largest"], area)
        lossy = tf.stack([_uint(array, payload + 8, 2) % 16384, _uint(array, payload + 6, 2) % 16384])
        lossless = tf.stack([(bits // 16384) % 16384 + 1, bits % 16384 + 1])
        bitstream = tf.where(is_vp8, lossy, lossless)
        s["first"] = tf.where((is_vp8 | is_vp8l) & (s["first"][0] == 0), bitstream, s["first"])
        s["canvas"] = tf.where(is_vp8x, canvas, s["canvas"])
        s["animated"] = s["animated"] | is_anmf | (is_vp8x & (_at(array, payload) // 2 % 2 == 1))
        s["alpha"] = s["alpha"] | (is_vp8x & (_at(array, payload) // 16 % 2 == 1))
        first = is_anmf & (s["frame"] < 0)
        s["frame"] = tf.where(first, payload, s["frame"])
        s["frame_end"] = tf.where(first, payload + length, s["frame_end"])
        first_exif = kind_is(kind, b"EXIF") & (s["exif"] < 0)
        s["exif"] = tf.where(first_exif, payload, s["exif"])
        s["exif_end"] = tf.where(first_exif, payload + tf.minimum(length, size - payload), s["exif_end"])
        # Into an ANMF frame's own chunks (their bitstream sizes are checked too).
        # A length beyond the file ends the walk; compared before it is added (no int32
        # wrap-around to an earlier position, as in `_png_walk`).
        beyond = length > size - payload
        next_chunk = tf.where(beyond, size, payload + length + length % 2)
        s["position"] = tf.where(is_anmf, payload + 16, next_chunk)
        return (s,)

    (state,) = tf.while_loop(more, step, (state,))
    return state


def _decode_still_webp(data):
    pixels = tf.io.decode_webp(data, channels=0)[0]
    return tf.cond(
        tf.shape(pixels)[-1] == 4,
        lambda: _composite_on_white(pixels, 255.0),
        lambda: tf.ensure_shape(pixels[..., :3], [None, None, 3]),
    )


def _decode_webp(data, array):
    walk = _webp_walk(array)

    def still():
        return _decode_still_webp(data)

    def first_frame():
        frame, end = walk["frame"], walk["frame_end"]
        with tf.control_dependencies([
            tf.debugging.Assert(frame >= 0, ["WebP: animated file without frames (ANMF chunks)"]),
            tf.debugging.Assert(frame + 16 <= tf.shape(array)[0] - _PAD, [
                "WebP: the first animation frame is truncated (its ANMF header is cut short)"]),
        ]):
            chunks = _substr(data, frame + 16, end - frame - 16)
        width = _int(_uint(array, frame + 6, 3) + 1)
        height = _int(_uint(array, frame + 9, 3) + 1)
        header = tf.strings.join([
            b"VP8X", _le_bytes(10, 4), _bytes_of(tf.constant([0x10, 0, 0, 0])),
            _le_bytes(width - 1, 3), _le_bytes(height - 1, 3),
        ])
        body = tf.strings.join([b"WEBP", header, chunks])
        still_file = tf.strings.join([b"RIFF", _le_bytes(tf.strings.length(body), 4), body])
        pixels = tf.io.decode_webp(still_file, channels=0)[0]
        pixels = tf.cond(
            tf.shape(pixels)[-1] == 4,
            lambda: pixels,
            lambda: tf.concat([pixels[..., :3], tf.fill(tf.concat([tf.shape(pixels)[:2], [1]], 0),
                                                        tf.constant(255, tf.uint8))], -1),
        )
        pixels = tf.ensure_shape(pixels, [None, None, 4])
        alpha = tf.cast(pixels[..., 3:], tf.float32) / 255.0
        left = _int(2 * _uint(array, frame, 3))
        top = _int(2 * _uint(array, frame + 3, 3))
        canvas = tf.cast(walk["canvas"], tf.int32)
        return _place(pixels[..., :3], alpha, top, left, canvas[0], canvas[1], tf.fill([3], _WHITE))

    return tf.cond(walk["animated"], first_frame, still)


# ----------------------------------------------------------------------------------- BMP


# The sizes of BMP's info headers: OS/2 core (12), OS/2 2.x (16, 64), BITMAPINFOHEADER (40) and
# its extensions (52, 56), V4 (108), V5 (124).
_BMP_HEADERS = (12, 16, 40, 52, 56, 64, 108, 124)


def _bmp_layout(array):
    header = _int(_uint(array, 14, 4))
    core = header == 12  # OS/2 BITMAPCOREHEADER: 16-bit sizes
    width = tf.where(core, _int(_uint(array, 18, 2)), _int(_uint(array, 18, 4)))
    raw_height = tf.where(core, _uint(array, 20, 2), _uint(array, 22, 4))
    raw_height = tf.where(raw_height >= 2**31, raw_height - 2**32, raw_height)
    bits = tf.where(core, _at(array, 24), _at(array, 28))
    compression = tf.where(core, 0, _int(_uint(array, 30, 4)))
    known = tf.reduce_any(tf.equal(header, _BMP_HEADERS))  # else the bytes are no size
    # BI_BITFIELDS: the red, green, blue (and from the 56-byte header on, alpha) masks at 54,
    # after a 40-byte header or inside a longer one.
    masks = tf.stack([_uint(array, 54 + 4 * k, 4) for k in range(4)])
    masks = tf.where(tf.range(4) < 3, masks, tf.where(header >= 56, masks, 0))
    return dict(header=header, core=core, width=width, height=_int(tf.abs(raw_height)),
                top_down=raw_height < 0, bits=bits, compression=compression, known=known,
                masks=masks)


def _decode_bmp_palette(data, array, layout):
    """1/4/8-bit uncompressed BMP: indices through the color table, in TF ops."""
    width, height, bits = layout["width"], layout["height"], layout["bits"]
    entry = tf.where(layout["core"], 3, 4)
    colors = tf.where(layout["core"], 0, _int(_uint(array, 46, 4)))
    colors = tf.where((colors <= 0) | (colors > 256), tf.bitwise.left_shift(1, bits), colors)
    table_start = 14 + layout["header"]
    index = tf.range(256)
    palette = tf.stack(
        [_at(array, table_start + entry * index + channel) for channel in (2, 1, 0)], axis=-1
    )  # BGR(x) -> RGB, [256, 3]
    palette = tf.where((index < colors)[:, None], palette, 0)
    # The pixel data offset as Pillow reads it: 0 (unset) is right after the color table, and
    # an offset pointing at the color table itself is taken for one past it (the header was
    # read as pixels: a wrong image).
    offset = _int(_uint(array, 10, 4))
    offset = tf.where(offset == table_start, offset + entry * colors, offset)
    offset = tf.where(offset == 0, table_start + entry * colors, offset)
    stride = (bits * width + 31) // 32 * 4
    # int64: in int32 a pixel data offset near 2**31 wrapped `needed` around to a negative
    # number, and the reads (clamped to the file) gave an image of padding silently.
    needed = tf.cast(offset, tf.int64) + tf.cast(stride, tf.int64) * tf.cast(height, tf.int64)
    checks = [tf.debugging.Assert(needed <= tf.cast(tf.shape(array)[0] - _PAD, tf.int64),
                                  ["BMP: pixel data is truncated"])]
    with tf.control_dependencies(checks):
        rows = tf.reshape(_at(array, offset + tf.range(stride * height)), [height, stride])
    column = tf.range(width)
    per_byte = 8 // bits
    byte = tf.gather(rows, column // per_byte, axis=1)
    shift = (per_byte - 1 - column % per_byte) * bits
    indices = tf.bitwise.right_shift(byte, shift[None, :]) % tf.bitwise.left_shift(1, bits)
    image = tf.gather(palette, indices)
    image = tf.cond(layout["top_down"], lambda: image, lambda: tf.reverse(image, [0]))
    return tf.cast(image, tf.uint8)


# BI_BITFIELDS masks TensorFlow's BMP decoder reads right (it ignores the masks: bytes B, G, R
# and for 32 bits one more, the alpha when the alpha mask says so).
_BMP_BGR_MASKS = (0xFF0000, 0xFF00, 0xFF)


def _decode_bmp(data, array):
    layout = _bmp_layout(array)
    bits, compression, masks = layout["bits"], layout["compression"], layout["masks"]
    bitfields = compression == 3
    standard_masks = tf.reduce_all(tf.equal(masks[:3], tf.constant(_BMP_BGR_MASKS, tf.int64)))
    alpha = (bits == 32) & bitfields & (masks[3] == 0xFF000000)
    checks = [
        tf.debugging.Assert(layout["known"], [
            f"corrupt BMP: unknown info header size (BMP has {_BMP_HEADERS}); got", layout["header"]]),
        # Zero rows or columns declare no pixels (no limit applies) while the other side, up to
        # 2**31 - 1, sized the palette decoder's index arrays: a 60-byte file took 8 GB.
        tf.debugging.Assert((layout["width"] > 0) & (layout["height"] > 0), [
            "corrupt BMP: the width and height must be positive; got", layout["width"], "x",
            layout["height"]]),
        tf.debugging.Assert(
            tf.logical_not((bits <= 8) & (compression != 0)),
            ["BMP: RLE-compressed bitmaps are not supported (save the image as PNG)"],
        ),
        tf.debugging.Assert(
            (bits == 1) | (bits == 4) | (bits == 8) | (bits == 24) | (bits == 32),
            ["BMP: only 1, 4, 8, 24 and 32 bits per pixel are supported; got", bits],
        ),
        # TensorFlow's decoder reads a 40-byte header's fields (an OS/2 core header's width
        # and height are elsewhere), the bytes as B, G, R(, A) whatever the masks say, and
        # JPEG/PNG-compressed bitmaps as pixels: refused rather than decoded wrong.
        tf.debugging.Assert((bits <= 8) | tf.logical_not(layout["core"]), [
            "BMP: 24/32-bit bitmaps with an OS/2 core header are not supported (save the image as PNG)"]),
        tf.debugging.Assert(
            (bits <= 8) | (compression == 0) | (bitfields & standard_masks),
            ["BMP: only uncompressed 24/32-bit bitmaps, or bit fields in B, G, R(, A) order, are "
             "supported (save the image as PNG); got compression", compression, "and masks", masks],
            summarize=4,
        ),
    ]
    with tf.control_dependencies(checks):
        palette = bits <= 8

    def direct():
        return tf.cond(
            alpha,
            lambda: _composite_on_white(
                tf.ensure_shape(tf.io.decode_bmp(data, channels=4), [None, None, 4]), 255.0),
            lambda: tf.ensure_shape(tf.io.decode_bmp(data, channels=3), [None, None, 3]),
        )

    return tf.cond(palette, lambda: _decode_bmp_palette(data, array, layout), direct)


# ---------------------------------------------------------------------------- header + rule


def _branch(code, branches, only):
    """`tf.switch_case(code, branches)`, or with `only` (a `FORMATS` index known before tracing)
    that format's branch alone: one format's ops traced instead of all five. Either way the
    branch's ops run after `code` (in `decode_image`, after the header checks: nothing is decoded
    from a file that declares too many pixels)."""
    if only is None:
        return tf.switch_case(code, branches)
    with tf.control_dependencies([code]):
        return branches[only]()


def _inspect(array, code, only):
    """The headers of the file whose bytes are `array` (`_byte_array`) and format `code`.

    Returns a dict of scalars: `height`, `width` (int64, the output image's; for animations the
    canvas / logical screen), `declared` (int64, the largest pixel count the file declares
    anywhere: the output, every frame, every bitstream), and from the JPEG marker walk (-1 for
    the other formats) `exif` (int32 offset of the EXIF TIFF header), `exif_end` (the end of
    its APP1 segment) and `complete` (bool: the JPEG has a start of scan and an end-of-image
    marker after it; False for the other formats). Unknown formats give zeros. `only`: as for `header_info`. The JPEG markers are
    walked here once; `decode_image` reuses the walk for orientation and the truncation check.
    """
    none, no = tf.constant(-1), tf.constant(False)

    def png():
        header = tf.cast(_png_has_header(array), tf.int64)  # no IHDR: no size (the decoder refuses)
        height, width = header * _uint(array, 20, 4, True), header * _uint(array, 16, 4, True)
        frames, _, _ = _png_walk(array)
        return height, width, header * tf.maximum(_area(height, width), frames), none, none, no

    def jpeg():
        walk = _jpeg_walk(array)
        height, width = walk["height"], walk["width"]
        return height, width, height * width, walk["exif"], walk["exif_end"], walk["complete"]

    def gif():
        height, width = _uint(array, 8, 2), _uint(array, 6, 2)
        largest = _gif_walk(array)["largest"]
        return height, width, tf.maximum(height * width, largest), none, none, no

    def bmp():
        layout = _bmp_layout(array)
        known = tf.cast(layout["known"], tf.int64)  # an unknown info header: no size (refused)
        height, width = known * tf.cast(layout["height"], tf.int64), known * tf.cast(layout["width"], tf.int64)
        return height, width, height * width, none, none, no

    def webp():
        walk = _webp_walk(array)
        # A still image without VP8X: its bitstream's size is the image's.
        canvas = tf.where(walk["canvas"][0] > 0, walk["canvas"], walk["first"])
        return canvas[0], canvas[1], walk["largest"], none, none, no

    def unknown():
        zero = tf.constant(0, tf.int64)
        return zero, zero, zero, none, none, no

    values = _branch(code, [unknown, png, jpeg, gif, bmp, webp], only)
    return dict(zip(("height", "width", "declared", "exif", "exif_end", "complete"), values))


@tf.autograph.experimental.do_not_convert
def header_info(data, only=None):
    """What a file declares, read without decoding any pixel.

    Args:
      data: string scalar, the encoded file.
      only: optional `FORMATS` index that `sniff(data)` gives (the caller sniffed it): only that
        format's header reader is built.

    Returns:
      `(code, height, width, declared)`: the `FORMATS` index (int32), the output image's height
      and width (int64; for animations the canvas / logical screen), and the largest pixel count
      the file declares anywhere (int64: the output, every frame, every bitstream). Unknown
      formats give zeros.
    """
    code = sniff(data)
    info = _inspect(_byte_array(data), code, only)
    return code, info["height"], info["width"], info["declared"]


def _header_checks(data, code, info, max_pixels):
    """Assert ops refusing unknown formats (`code`, a `FORMATS` index) and files declaring more
    than `max_pixels` pixels (`info` from `_inspect`). The messages name the format and sizes."""
    height, width, declared = info["height"], info["width"], info["declared"]
    name = format_name(data)
    limit = tf.cast(max_pixels, tf.int64)

    def megapixels(value):
        return tf.strings.as_string(tf.cast(value, tf.float64) / 1e6, shortest=True)

    return [
        tf.debugging.Assert(
            code != UNKNOWN,
            [tf.strings.join(["unsupported image format: ", name, " (accepted: ", ACCEPTED, ")"])],
        ),
        tf.debugging.Assert(
            declared <= limit,
            [tf.strings.join([
                "image too large: ", tf.strings.as_string(width), "x", tf.strings.as_string(height),
                " ", name, " declaring ", megapixels(declared), " megapixels, the limit is ",
                megapixels(limit), " megapixels (checked before decoding)",
            ])],
        ),
    ]


def _read_and_check_headers(data, max_pixels, only):
    """`(byte array, sniffed format code, _inspect's dict, the header Assert ops)` of `data`:
    every header walk of the file, once, and the refusals that need no decoding."""
    array = _byte_array(data)
    sniffed = sniff(data)
    info = _inspect(array, sniffed, only)
    return array, sniffed, info, _header_checks(data, sniffed, info, max_pixels)


@tf.autograph.experimental.do_not_convert
def check_header(data, max_pixels=MAX_PIXELS, only=None):
    """The refusals of `decode_image` that its headers decide, without decoding anything.

    The very checks `decode_image` runs first (an unknown or unsupported format; a file declaring
    more than `max_pixels` pixels anywhere), with the same messages: a service can refuse such a
    file before it spends time on decoding or waits for other work. A file passing them may still
    be refused by `decode_image` (corrupt or truncated data).

    `only`: as for `decode_image` (that format's header reader alone).

    Returns:
      int64 scalar: the largest pixel count the file declares.

    Raises:
      tf.errors.InvalidArgumentError (at run time), as `decode_image`.
    """
    data = tf.convert_to_tensor(data, tf.string)
    _, _, info, checks = _read_and_check_headers(data, max_pixels, only)
    with tf.control_dependencies(checks):
        return tf.identity(info["declared"])


@tf.autograph.experimental.do_not_convert
def decode_image(data, max_pixels=MAX_PIXELS, only=None):
    """Encoded image bytes -> upright uint8 sRGB `[H, W, 3]`, by the rule of this module.

    Args:
      data: string scalar (the file's bytes).
      max_pixels: the pixel limit (Python int or int64 scalar), checked on the headers before
        decoding (see the module docstring) and on the result.
      only: optional `FORMATS` index of `data` (from `sniff`), known before tracing: the graph
        holds that format's branch alone (the same ops; about a fifth of the tracing). The
        default builds every format's branch (the SavedModel's graph).

    Returns:
      uint8 `[H, W, 3]` tensor.

    Raises:
      tf.errors.InvalidArgumentError (at run time): unsupported or unknown format, a declared
        size above `max_pixels`, an image with no pixels, corrupt or truncated data (the
        decoder's message, which names its format).
    """
    data = tf.convert_to_tensor(data, tf.string)
    array, sniffed, info, checks = _read_and_check_headers(data, max_pixels, only)
    if only is not None:
        checks.append(tf.debugging.Assert(tf.equal(sniffed, only), [
            f"decode_image(only={FORMATS[only]}) was given data of another format"]))
    with tf.control_dependencies(checks):
        code = tf.identity(sniffed)

    def png():
        header = tf.debugging.Assert(_png_has_header(array), [
            "corrupt PNG: the signature is not followed by the IHDR header chunk"])
        with tf.control_dependencies([header]):
            _, (exif, exif_end), transparency = _png_walk(array)
        orientation = tf.cond(exif >= 0, lambda: _tiff_orientation(array, exif, exif_end),
                              lambda: tf.constant(1))
        return _decode_png(data, array, transparency), orientation

    def jpeg():
        complete = tf.debugging.Assert(info["complete"], [
            "truncated JPEG: the file ends before its image data does (no end-of-image marker)"])
        with tf.control_dependencies([complete]):
            pixels = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        exif = info["exif"]
        orientation = tf.cond(exif >= 0, lambda: _tiff_orientation(array, exif, info["exif_end"]),
                              lambda: tf.constant(1))
        return pixels, orientation

    def gif():
        return _decode_gif(data, array), tf.constant(1)

    def bmp():
        return _decode_bmp(data, array), tf.constant(1)

    def webp():
        # EXIF is a chunk of the extended format: a VP8X chunk first (libwebp, and so Pillow,
        # read a file starting with its VP8/VP8L bitstream as a simple one without metadata).
        extended = tf.reduce_all(tf.equal(_at(array, 12 + tf.range(4)), tf.constant(list(b"VP8X"))))
        walk = _webp_walk(array)
        exif = tf.where(extended, walk["exif"], -1)
        start = _tiff_start_of_exif_payload(array, exif)
        orientation = tf.cond(exif >= 0, lambda: _tiff_orientation(array, start, walk["exif_end"]),
                              lambda: tf.constant(1))
        return _decode_webp(data, array), orientation

    def unknown():
        return tf.zeros([0, 0, 3], tf.uint8), tf.constant(1)

    rgb, orientation = _branch(code, [unknown, png, jpeg, gif, bmp, webp], only)
    rgb = tf.ensure_shape(orient(rgb, orientation), [None, None, 3])
    shape = tf.shape(rgb, out_type=tf.int64)
    checks = [
        tf.debugging.Assert(
            (shape[0] > 0) & (shape[1] > 0) & (shape[0] * shape[1] <= tf.cast(max_pixels, tf.int64)),
            ["the decoded image has no pixels or more than the limit; its shape:", shape],
        )
    ]
    with tf.control_dependencies(checks):
        return tf.identity(rgb)


def orient(image, orientation):
    """Applies EXIF orientation `orientation` (1-8) to an `[H, W, C]` image: the upright view."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,  # 1
        lambda: tf.reverse(image, [1]),  # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),  # 3: rotated 180
        lambda: tf.reverse(image, [0]),  # 4: mirrored top-bottom
        lambda: transpose(image),  # 5: transposed
        lambda: tf.reverse(transpose(image), [1]),  # 6: rotated 90 clockwise to view
        lambda: tf.reverse(transpose(image), [0, 1]),  # 7: transversed
        lambda: tf.reverse(transpose(image), [0]),  # 8: rotated 90 counter-clockwise to view
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)


_SIGNATURE = [tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)]
_compiled_sniff = tf.function(sniff, input_signature=_SIGNATURE[:1], autograph=False)


def _per_format(function):
    """`{format code: function(data, max_pixels, only=code) compiled}`, each traced at its first
    call: one format's ops per graph."""
    return {
        code: tf.function(functools.partial(function, only=code), input_signature=_SIGNATURE,
                          autograph=False)
        for code in range(len(FORMATS))
    }


# `decode_image` compiled once per format, at the first file of that format (`decode_bytes`).
_compiled = _per_format(decode_image)


def error_message(error):
    """The one-line message of a decode `tf.errors.InvalidArgumentError` (assertion text or the
    decoder's own message), without TensorFlow's node and traceback decoration."""
    text = error.message if hasattr(error, "message") else str(error)
    text = text.split("\n\t [[")[0]
    last = [part for part in text.split("\n\n") if part.strip()][-1]
    if "assertion failed:" in last:  # without a "Detected at node ..." prefix of loaded graphs
        last = last[last.index("assertion failed:"):]
    pieces = re.findall(r"\[([^\[\]]*)\]", last) if last.startswith("assertion failed:") else []
    return " ".join(" ".join(pieces or [last]).split())


def decode_bytes(data, max_pixels=MAX_PIXELS):
    """Eager convenience: Python `bytes` -> uint8 numpy `[H, W, 3]` (the compiled rule).

    The format is sniffed first and `decode_image` runs with `only=` that format: the same ops as
    the full rule, but a process reading PNGs only traces the PNG branch (about 1 CPU-s instead
    of 4 at the first call).

    Raises `tf.errors.InvalidArgumentError` as `decode_image` does (see
    `tfgcrf.imageio.read_image` for the one-line `InputError` version).
    """
    data = tf.constant(data, tf.string)
    code = int(_compiled_sniff(data))
    return _compiled[code](data, tf.constant(max_pixels, tf.int64)).numpy()


def check_bytes(data, max_pixels=MAX_PIXELS):
    """Eager convenience: `check_header` of Python `bytes`; returns the declared pixels.

    Compiled per format as `decode_bytes` is (sniffed first), each graph traced at its format's
    first file (0.2-0.5 CPU-s), or ahead of time by `prepare_check`.

    Raises `tf.errors.InvalidArgumentError` with the message `decode_bytes` would give.
    """
    data = tf.constant(data, tf.string)
    code = int(_compiled_sniff(data))
    return int(_compiled_check[code](data, tf.constant(max_pixels, tf.int64)))


def prepare_check():
    """Traces every graph of `check_bytes` now (about 2 CPU-s in all; unknown formats, PNG and
    JPEG first), so that a later call only runs one."""
    _compiled_sniff.get_concrete_function()
    for code in (UNKNOWN, PNG, JPEG, GIF, BMP, WEBP):
        _compiled_check[code].get_concrete_function()


def read_header(data):
    """Eager convenience: `(format name, height, width, declared pixels)` of Python `bytes`."""
    code, height, width, declared = _compiled_header(tf.constant(data, tf.string))
    return FORMATS[int(code)], int(height), int(width), int(declared)


_compiled_header = tf.function(
    header_info, input_signature=[tf.TensorSpec([], tf.string)], autograph=False
)
_compiled_check = _per_format(check_header)
