"""The one decode rule (`tfgcrf.decode`): the parity matrix and the small-file-huge-header bombs.

Every input kind of the issue goes through the Python API (`tfgcrf.Colorizer`) and through the
exported SavedModel loaded by plain TensorFlow in another process: the colorizations must have
the same size and agree within one level; the decoded pixels must match Pillow's reading (the
independent reference: EXIF transpose, alpha composited on white). Small files declaring huge
images, one per container and per declared size, are refused from their headers with the
process's peak memory measured.
"""

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tfgcrf import decode, imageio
from tfgcrf.errors import InputError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from fuzz_decode import pillow_reference  # noqa: E402  (the fuzzer's reference; benchmarks never import tests)


def _encoded(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _photo():
    """A real photo, 40 x 56 (portrait-sized differences show in the orientation cases)."""
    return Image.fromarray(skimage.data.coffee()).resize((56, 40), Image.LANCZOS)


def _with_exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(_photo(), "JPEG", quality=95, exif=exif)


def _rgba():
    rgba = np.asarray(_photo().convert("RGBA")).copy()
    rgba[:, 28:, 3] = 0  # right half transparent
    rgba[:, 20:28, 3] = 100  # a half-transparent band
    return Image.fromarray(rgba, "RGBA")


def _animated(image_format, **options):
    frames = [_photo(), Image.new("RGB", (56, 40), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, image_format, save_all=True, append_images=frames[1:], **options)
    return buffer.getvalue()


def _gif_with_transparency():
    palette = _photo().quantize(64)
    pixels = np.asarray(palette).copy()
    pixels[:10] = 63  # the top rows transparent
    image = Image.fromarray(pixels, "P")
    image.putpalette(palette.getpalette())
    return _encoded(image, "GIF", transparency=63)


def _with_junk_before_a_marker(data):
    """`data` (a JPEG) with 5 bytes of junk after its first segment, as in Pillow's test image
    junk_jpeg_header.jpg: libjpeg and Pillow skip them (a warning), so the rule must too."""
    end = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:end] + b"hello" + data[end:]


# name -> encoded file: every input kind of the parity matrix.
MATRIX = {
    "jpeg_junk_before_marker": _with_junk_before_a_marker(_with_exif(6)),
    **{f"exif{orientation}": _with_exif(orientation) for orientation in range(1, 9)},
    "png_rgb": _encoded(_photo(), "PNG"),
    "png_rgba": _encoded(_rgba(), "PNG"),
    "png_la": _encoded(_rgba().convert("LA"), "PNG"),
    "png_p_trns": _encoded(_photo().quantize(32), "PNG", transparency=5),
    "png_16bit_gray": _encoded(Image.fromarray(np.asarray(_photo().convert("L")).astype(np.uint16) * 257 + 77), "PNG"),
    "png_gray": _encoded(_photo().convert("L"), "PNG"),
    "jpeg_gray": _encoded(_photo().convert("L"), "JPEG", quality=95),
    "jpeg_cmyk": _encoded(_photo().convert("CMYK"), "JPEG", quality=95),
    "gif_transparent": _gif_with_transparency(),
    "gif_animated": _animated("GIF"),
    "webp_rgba": _encoded(_rgba(), "WEBP", lossless=True),
    "webp_lossy_alpha": _encoded(_rgba(), "WEBP", quality=90),
    "webp_animated": _animated("WEBP", lossless=True),
    "bmp_palette": _encoded(_photo().quantize(16), "BMP"),
    "bmp_rgb": _encoded(_photo(), "BMP"),
}


# Pillow's view of a file: first frame, EXIF transposed, transparency composited on white (the
# fuzzer's reference too).
_pillow_reference = pillow_reference


@pytest.mark.parametrize("name", MATRIX)
def test_decode_rule_matches_pillow(name):
    decoded = imageio.read_image(MATRIX[name])
    expected = _pillow_reference(MATRIX[name])
    assert decoded.shape == expected.shape and decoded.dtype == np.uint8
    # JPEG: both sides use libjpeg's accurate integer IDCT; allow a level for other builds.
    assert np.abs(decoded.astype(int) - expected).max() <= 1, name


def test_the_per_format_graphs_equal_the_full_rule():
    """`decode_bytes` traces only the sniffed format's branch (`decode_image(only=...)`); its
    pixels are the full rule's (the SavedModel's graph, every branch), and a wrong `only` is
    refused rather than decoded by another format's branch."""
    import tensorflow as tf

    full = tf.function(decode.decode_image, autograph=False,
                       input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)])
    limit = tf.constant(imageio.MAX_PIXELS, tf.int64)
    for name, data in MATRIX.items():
        expected = full(tf.constant(data), limit).numpy()
        assert np.array_equal(decode.decode_bytes(data), expected), name
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"only=JPEG\) was given data of another format"):
        decode.decode_image(tf.constant(MATRIX["png_rgb"]), only=decode.JPEG)
    # The header checks still come first: a small file declaring a huge image is refused by
    # them, not by its format's decoder (the memory is measured in the slow bomb test).
    for name, data in BOMBS.items():
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            decode.decode_bytes(data)
        assert decode.error_message(info.value).startswith("image too large"), name


def _loops(concrete):
    """Number of while loops in a concrete function's graph, its branches' functions included."""
    graph = concrete.graph.as_graph_def()
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    return sum(node.op in ("While", "StatelessWhile") for node in nodes)


def test_a_jpeg_s_markers_are_walked_once_per_decode():
    """The size (pixel limit), EXIF orientation and start of scan (truncation check) of a JPEG
    come from one marker walk: the traced JPEG rule holds exactly one loop (it held three)."""
    import tensorflow as tf

    concrete = tf.function(lambda data: decode.decode_image(data, only=decode.JPEG), autograph=False)
    assert _loops(concrete.get_concrete_function(tf.TensorSpec([], tf.string))) == 1
    # The one walk still gives all three: an upright EXIF photo, its header size, a cut file refused.
    rotated = decode.decode_bytes(_with_exif(6))
    assert rotated.shape == (56, 40, 3)
    assert decode.read_header(_with_exif(6)) == ("JPEG", 40, 56, 40 * 56)
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated JPEG"):
        decode.decode_bytes(_with_exif(6)[:-2])
    # Junk between two segments is skipped (as libjpeg does), not taken for the end of the
    # markers: same size, orientation and pixels; cut short, still refused.
    junk = _with_junk_before_a_marker(_with_exif(6))
    assert decode.read_header(junk) == ("JPEG", 40, 56, 40 * 56)
    assert np.array_equal(decode.decode_bytes(junk), rotated)
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated JPEG"):
        decode.decode_bytes(junk[:-2])


def test_a_jpeg_s_bytes_are_compared_with_0xff_once_per_decode():
    """The marker walk and the end-of-image search (truncation check) share one comparison of
    the file's bytes with 0xFF: the traced JPEG rule holds one elementwise Equal over a slice of
    the bytes (it held three: the walk's, and FF and D9 over the whole file for the end)."""
    import tensorflow as tf

    concrete = tf.function(lambda data: decode.decode_image(data, only=decode.JPEG),
                           autograph=False).get_concrete_function(tf.TensorSpec([], tf.string))
    byte_scans = [op for op in concrete.graph.get_operations()
                  if op.type == "Equal" and op.outputs[0].shape.rank == 1
                  and any(t.op.type == "StridedSlice" for t in op.inputs)]
    assert len(byte_scans) == 1
    # The end-of-image check still refuses a cut file and accepts a whole one, junk or not.
    for data in (_with_exif(6), _with_junk_before_a_marker(_with_exif(6)), MATRIX["jpeg_cmyk"]):
        decode.decode_bytes(data)
        for cut in (2, 1, len(data) // 2):
            with pytest.raises(tf.errors.InvalidArgumentError, match="truncated JPEG"):
                decode.decode_bytes(data[:-cut])


TRUNCATED_PROBE = r"""
import sys
from tfgcrf import cli, imageio
from tfgcrf.errors import InputError
cli._import_tensorflow_quietly()  # the CLI's start-up filter (TensorFlow's own start-up lines)
for path in sys.argv[1:]:
    try:
        imageio.read_image(path)
    except InputError as err:
        print(err)
"""


def test_a_truncated_jpeg_is_one_error_and_nothing_on_stderr(tmp_path):
    """libjpeg prints its own line ("Premature end of JPEG data", "Improper call to JPEG library
    in state 201") on fd 2 before TensorFlow's error: the rule refuses a JPEG without its
    end-of-image marker first, so the CLI's one error line is all a user sees."""
    data = MATRIX["jpeg_gray"]
    paths = []
    for cut in (300, len(data) // 2, len(data) - 2):  # in the tables, in the scan, before EOI
        paths.append(tmp_path / f"cut{cut}.jpg")
        paths[-1].write_bytes(data[:cut])
    run = subprocess.run([sys.executable, "-c", TRUNCATED_PROBE, *map(str, paths)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3 and all("truncated JPEG" in line for line in lines), lines
    assert imageio.read_image(data).shape == (40, 56, 3)  # the whole file still decodes


TF_ONLY = r"""
import json, os, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
sample = loaded.signatures["sample"]
out = {}
for path in sys.argv[3:]:
    with open(path, "rb") as handle:
        data = handle.read()
    pngs = sample(image_bytes=tf.constant([data]), seed=tf.constant([0], tf.int64))["colorized_bytes"]
    name = os.path.basename(path)
    for k, png in enumerate(pngs.numpy()[0]):
        with open(os.path.join(sys.argv[2], f"{name}_{k}.png"), "wb") as handle:
            handle.write(png)
    out[name] = len(pngs.numpy()[0])
print(json.dumps({"outputs": out, "modules": sorted(m for m in sys.modules if m.startswith("tfgcrf"))}))
"""


@pytest.fixture(scope="module")
def served(exported_model, tmp_path_factory):
    """Every matrix file colorized by the SavedModel in a process that imports only TensorFlow."""
    folder = tmp_path_factory.mktemp("matrix")
    paths = []
    for name, data in MATRIX.items():
        paths.append(str(folder / name))
        with open(paths[-1], "wb") as handle:
            handle.write(data)
    out = folder / "out"
    out.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", TF_ONLY, exported_model.path, str(out), *paths],
                         capture_output=True, text=True, env=env, timeout=900, cwd=str(folder))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    return out, result["outputs"]


@pytest.fixture(scope="module")
def colorizer(exported_model):
    from tfgcrf import Colorizer

    return Colorizer(exported_model.model)


@pytest.mark.slow
@pytest.mark.parametrize("name", MATRIX)
def test_api_and_saved_model_give_the_same_pixels(name, served, colorizer, exported_model):
    out, counts = served
    assert counts[name] == exported_model.num_samples
    api = colorizer.colorize(MATRIX[name], num_samples=exported_model.num_samples)
    upright = _pillow_reference(MATRIX[name])
    for k in range(exported_model.num_samples):
        with Image.open(out / f"{name}_{k}.png") as image:
            saved = np.asarray(image)
        assert saved.shape == api[k].shape == upright.shape, name
        assert np.abs(saved.astype(int) - api[k]).max() <= 1, (name, k)


# ------------------------------------------------------------------ small files, huge headers


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width, height, extra=b""):
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + extra
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def _patched(data, marker, offset, packed, nth=0):
    data = bytearray(data)
    position = -1
    for _ in range(nth + 1):
        position = data.index(marker, position + 1)
    data[position + offset : position + offset + len(packed)] = packed
    return bytes(data)


def _gif_descriptor(data, nth):
    """Offset of the nth image descriptor of a GIF (walks its blocks)."""
    packed = data[10]
    position = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    count = 0
    while True:
        if data[position] == 0x21:
            position += 2
        elif data[position] == 0x2C:
            if count == nth:
                return position
            count += 1
            local = data[position + 9]
            position += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            raise ValueError("no such frame")
        while data[position]:
            position += data[position] + 1
        position += 1


def _gif_frame_size(data, nth, width, height):
    data = bytearray(data)
    position = _gif_descriptor(data, nth)
    data[position + 5 : position + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _gif_frames(count=2):
    frames = [Image.new("RGB", (8, 8), color) for color in [(255, 0, 0), (0, 0, 255), (0, 255, 0)][:count]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _webp_animated():
    frames = [Image.new("RGB", (8, 8), color) for color in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return buffer.getvalue()


def _webp_lossless(width, height):
    payload = b"\x2f" + struct.pack("<I", (width - 1) | ((height - 1) << 14)) + b"\0" * 8
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_extended(width, height):
    still = _encoded(Image.new("RGBA", (8, 8), (10, 20, 30, 128)), "WEBP", quality=80)
    body = still[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x10\0\0\0" + struct.pack("<I", width - 1)[:3] + struct.pack(
        "<I", height - 1)[:3]
    if body.startswith(b"VP8X"):
        body = body[18:]
    body = b"WEBP" + vp8x + body
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _u24(value):
    return struct.pack("<I", value)[:3]


# name -> a small file declaring at least 16000 x 16000 somewhere (256 megapixels).
BOMBS = {
    "png_header": _png(16000, 16000),
    "apng_frame": _png(8, 8, _png_chunk(b"acTL", struct.pack(">II", 1, 0)) + _png_chunk(
        b"fcTL", struct.pack(">IIIIIHHBB", 0, 16000, 16000, 0, 0, 1, 1, 0, 0))),
    "jpeg_sof": _patched(_encoded(Image.new("RGB", (8, 8)), "JPEG"), b"\xff\xc0", 5, struct.pack(">HH", 16000, 16000)),
    "jpeg_sof_only": b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 17, 8, 16000, 16000, 3) + bytes(9) + b"\xff\xd9",
    "gif_screen": _patched(_gif_frames(1), b"GIF8", 6, struct.pack("<HH", 16000, 16000)),
    "gif_first_frame": _gif_frame_size(_gif_frames(1), 0, 16000, 16000),
    "gif_later_frame": _gif_frame_size(_gif_frames(3), 2, 16000, 16000),
    "bmp": _patched(_encoded(Image.new("RGB", (8, 8)), "BMP"), b"BM", 18, struct.pack("<ii", 16000, 16000)),
    "bmp_palette": _patched(_encoded(Image.new("P", (8, 8)), "BMP"), b"BM", 18, struct.pack("<ii", 16000, -16000)),
    "webp_lossy": _patched(_encoded(Image.new("RGB", (8, 8)), "WEBP", quality=50), b"VP8 ", 14,
                           struct.pack("<HH", 16000, 16000)),
    "webp_lossless": _webp_lossless(16000, 16000),
    "webp_extended": _webp_extended(16000, 16000),
    "webp_animation_frame": _patched(_webp_animated(), b"ANMF", 14, _u24(15999) + _u24(15999), nth=1),
    "webp_frame_bitstream": _patched(_webp_animated(), b"VP8L", 9, struct.pack("<I", 15999 | (15999 << 14))),
}

MEMORY_PROBE = r"""
import json, resource, sys
import tensorflow as tf
from tfgcrf import decode
with open(sys.argv[1], "rb") as handle:
    bombs = json.load(handle)
for small in bombs.pop("_small"):  # every format's graph traced and warm (one graph per format)
    decode.decode_bytes(bytes.fromhex(small))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = {}
for name, data in bombs.items():
    try:
        decode.decode_bytes(bytes.fromhex(data))
        errors[name] = None
    except tf.errors.InvalidArgumentError as err:
        errors[name] = decode.error_message(err)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
print(json.dumps({"errors": errors, "growth_mb": growth}))
"""


@pytest.mark.slow
def test_bombs_are_refused_from_the_header_without_memory_growth(tmp_path):
    assert max(len(data) for data in BOMBS.values()) < 1000
    path = tmp_path / "bombs.json"
    small = [_encoded(Image.new("RGB", (8, 8)), kind).hex() for kind in ("PNG", "JPEG", "GIF", "BMP", "WEBP")]
    path.write_text(json.dumps({"_small": small,
                                **{name: data.hex() for name, data in BOMBS.items()}}))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name, message in result["errors"].items():
        assert message is not None and message.startswith("image too large"), (name, message)
        assert "limit is 25 megapixels" in message and "\n" not in message
    # 256 megapixels decoded would be 768 MB of uint8 RGB alone.
    assert result["growth_mb"] < 50, result


@pytest.mark.parametrize("name", BOMBS)
def test_headers_declare_the_huge_sizes(name):
    code, _, _, declared = decode.read_header(BOMBS[name])
    assert code != "unknown" and declared >= 15999 * 15999, (name, declared)


def test_the_header_check_refuses_as_the_decoder_without_decoding():
    """`check_data` (the studio's refusal before it waits for the model or decodes) gives the
    decoder's own InputError for every file the headers refuse, and lets decodable files pass."""
    refused = {**BOMBS, "tiff": _encoded(_photo(), "TIFF"), "pdf": b"%PDF-1.7", "text": b"hello\n",
               "empty": b""}
    for name, data in refused.items():
        with pytest.raises(InputError) as checked:
            imageio.check_data(data, "x.png")
        with pytest.raises(InputError) as decoded:
            imageio.decode_data(data, "x.png")
        assert str(checked.value) == str(decoded.value), name
    for name, data in MATRIX.items():
        imageio.check_data(data, name)
        assert decode.check_bytes(data) == 40 * 56, name
    # Corrupt data under a valid header is for the decoder to refuse.
    imageio.check_data(MATRIX["png_rgb"][:60], "cut.png")
    with pytest.raises(InputError, match="25 megapixels"):
        imageio.check_data(_png(5001, 5000), "x.png")
    imageio.check_data(_png(5000, 5000), "x.png")  # the limit itself passes
    with pytest.raises(InputError, match="image too large: 56x40 PNG"):
        imageio.check_data(MATRIX["png_rgb"], "x.png", max_pixels=1000)


def test_header_info_of_ordinary_files():
    for name, data in MATRIX.items():
        code, height, width, declared = decode.read_header(data)
        assert (height, width, declared) == (40, 56, 40 * 56), name
    assert decode.read_header(b"\x89PN")[0] == "unknown"
    assert decode.read_header(b"") == ("unknown", 0, 0, 0)


def test_unreadable_bytes_name_their_format():
    cases = {
        _encoded(_photo(), "TIFF"): "unsupported image format: TIFF",
        b"%PDF-1.7": "unsupported image format: PDF",
        MATRIX["png_rgb"][:60]: "cannot decode image <60 bytes>: .*PNG",
        MATRIX["jpeg_gray"][:300]: "cannot decode image <300 bytes>: .*JPEG",
        MATRIX["gif_animated"][:30]: "cannot decode image <30 bytes>: GIF",
        MATRIX["webp_rgba"][:40] + bytes(30): "cannot decode image <70 bytes>: .*WebP",
    }
    for data, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            imageio.read_image(data)
        assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_a_gif_without_an_image_is_one_clear_error():
    """The GIF reads waited for nothing: a 6-byte "GIF89a" gave TensorFlow's "pos 10 out of range
    for string b'GIF89a' at index 0" instead of the rule's own message."""
    for data in (b"GIF89a", b"GIF89a" + bytes(7), MATRIX["gif_animated"][:13]):
        with pytest.raises(InputError) as info:
            imageio.read_image(data)
        assert str(info.value) == (f"cannot decode image <{len(data)} bytes>: GIF: no complete image "
                                   "in the file (truncated or corrupt)")


def test_a_bmp_with_an_unknown_info_header_is_corrupt_not_huge():
    """"BM" and garbage was refused as a 1734435442x1918986085 image of 3.3e12 megapixels."""
    garbage = b"BM" + b"garbage" * 50
    assert decode.read_header(garbage) == ("BMP", 0, 0, 0)
    with pytest.raises(InputError) as info:
        imageio.read_image(garbage)
    assert str(info.value) == (f"cannot decode image <{len(garbage)} bytes>: corrupt BMP: unknown "
                               "info header size (BMP has (12, 16, 40, 52, 56, 64, 108, 124)); got "
                               f"{int.from_bytes(garbage[14:18], 'little', signed=True)}")
    assert imageio.read_image(MATRIX["bmp_rgb"]).shape == (40, 56, 3)


def test_a_png_without_its_header_chunk_is_corrupt_not_huge():
    """The bytes after the PNG signature are a size only inside the IHDR chunk: garbage there is
    a corrupt file (it was refused as a 1634886241x1734698849 image of 2.8e12 megapixels)."""
    garbage = b"\x89PNG\r\n\x1a\n" + b"garbage" * 50
    renamed = bytearray(MATRIX["png_rgb"])
    renamed[12:16] = b"IHDX"
    for data in (garbage, bytes(renamed)):
        assert decode.read_header(data) == ("PNG", 0, 0, 0)
        with pytest.raises(InputError) as info:
            imageio.read_image(data)
        assert str(info.value) == (f"cannot decode image <{len(data)} bytes>: corrupt PNG: the "
                                   "signature is not followed by the IHDR header chunk")
    assert imageio.read_image(MATRIX["png_rgb"]).shape == (40, 56, 3)


# ------------------------------------------------------------- found by benchmarks/fuzz_decode.py


def _jpeg_hiding_its_frame_header(width, height):
    """A JPEG with FF 00 right after its start marker: junk that libjpeg and Pillow skip. Read
    as a segment, its next two bytes were a length jumping straight to the start of scan, over
    the frame header: the rule's walk saw no size (0 x 0) while libjpeg decoded `width x height`
    (8000 x 8000 from 700 bytes: 192 MB past the pixel limit)."""
    data = bytearray(_encoded(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5: frame + 9] = struct.pack(">HH", height, width)
    scan = data.index(b"\xff\xda")
    return bytes(data[:2]) + b"\xff\x00" + struct.pack(">H", scan) + bytes(data[2:])


def _animated_webp_cut_in_its_frame_header(cut):
    """The animated WebP of the bombs cut `cut` bytes into its first ANMF chunk's payload (its
    16-byte frame header)."""
    data = _webp_animated()
    return data[: data.index(b"ANMF") + 8 + cut]


def _bmp_v4(pixels_bgra, width, height, masks):
    """A 32-bit BI_BITFIELDS BMP with a V4 header (masks R, G, B, A), bottom-up rows."""
    rows = bytes(pixels_bgra)
    header = (struct.pack("<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(rows), 2835, 2835, 0, 0)
              + struct.pack("<IIII", *masks) + b"BGRs" + bytes(48))
    return b"BM" + struct.pack("<IHHI", 14 + 108 + len(rows), 0, 0, 14 + 108) + header + rows


def _bmp_v4_with_alpha():
    """5 x 3, left two columns transparent, a half-transparent middle column (B, G, R, A)."""
    pixels = [(200, 100, 50 * x, (0, 0, 128, 255, 255)[x]) for y in range(3) for x in range(5)]
    return _bmp_v4([value for pixel in pixels for value in pixel], 5, 3,
                   (0xFF0000, 0xFF00, 0xFF, 0xFF000000))


def _with_bytes(data, offset, packed):
    data = bytearray(data)
    data[offset: offset + len(packed)] = packed
    return bytes(data)


def _core_bmp_24bit():
    """24-bit BMP with the OS/2 1.x core header (12 bytes: 16-bit width and height)."""
    rows = bytes(range(4 * 3 * 2)).ljust(2 * 12, b"\0")  # 4 x 2 pixels, rows of 12 bytes
    return b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) + struct.pack("<IHHHH", 12, 4, 2, 1, 24) + rows


# name -> (bytes, the message `read_image` must give: regular expression of its end).
REFUSED = {
    # A length near 2**31 in IHDR-sized fields: the declared area wrapped around int64.
    "png_4g_by_4g": (_png(0xFFFFFFFF, 0xFFFFFFFF), r"image too large: 4294967295x4294967295 PNG"),
    "jpeg_ff00_over_the_frame_header": (_jpeg_hiding_its_frame_header(8000, 8000),
                                        r"image too large: 8000x8000 JPEG declaring 64 megapixels"),
    **{f"webp_cut_{cut}_into_its_frame_header": (
        _animated_webp_cut_in_its_frame_header(cut),
        r"WebP: the first animation frame is truncated \(its ANMF header is cut short\)")
       for cut in (0, 1, 8, 15)},
    # An offset of the pixel data near 2**31: the reads were clamped to the end of the file.
    "bmp_pixels_at_2g": (_with_bytes(MATRIX["bmp_palette"], 10, struct.pack("<I", 0x7FFFFFFF)),
                         r"BMP: pixel data is truncated"),
    "bmp_rgba_masks": (_bmp_v4(bytes(4 * 15), 5, 3, (0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
                       r"bit fields in B, G, R\(, A\) order, are supported \(save the image as PNG\); got "
                       r"compression 3 and masks 255 65280 16711680 4278190080"),
    "bmp_jpeg_compressed": (_with_bytes(MATRIX["bmp_rgb"], 30, struct.pack("<I", 4)),
                            r"got compression 4 and masks"),
    "bmp_24bit_core_header": (_core_bmp_24bit(), r"BMP: 24/32-bit bitmaps with an OS/2 core header are "
                                                 r"not supported \(save the image as PNG\)"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_inputs_found_by_the_fuzzer_are_refused_in_one_line(name):
    """Each was decoded wrong, past the pixel limit, or gave an exception other than the
    rule's; now one clear line, the same from the SavedModel's graph (every branch)."""
    import tensorflow as tf

    data, message = REFUSED[name]
    with pytest.raises(InputError, match=message) as info:
        imageio.read_image(data)
    assert "\n" not in str(info.value) and str(info.value).isprintable(), name
    full = tf.function(decode.decode_image, autograph=False,
                       input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)])
    with pytest.raises(tf.errors.InvalidArgumentError) as graph:
        full(tf.constant(data), tf.constant(imageio.MAX_PIXELS, tf.int64))
    assert decode.error_message(graph.value) in str(info.value), name


def test_a_jpeg_with_ff00_before_a_marker_declares_its_size_and_decodes_as_pillow():
    """FF 00 between segments is skipped, as libjpeg and Pillow do: the frame header after it
    is read (size and pixel limit), and the pixels are Pillow's."""
    assert decode.read_header(_jpeg_hiding_its_frame_header(8000, 8000)) == ("JPEG", 8000, 8000, 64_000_000)
    small = _jpeg_hiding_its_frame_header(16, 16)
    assert decode.read_header(small) == ("JPEG", 16, 16, 256)
    decoded = imageio.read_image(small)
    assert np.abs(decoded.astype(int) - _pillow_reference(small)).max() <= 1
    plain = _encoded(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG")
    assert np.array_equal(decoded, imageio.read_image(plain))  # the pixels of the file without junk


def test_a_32_bit_bmp_with_an_alpha_mask_is_composited_on_white_as_pillow():
    """TensorFlow's BMP decoder drops the fourth byte; with a V4/V5 alpha mask it is the alpha
    (Pillow reads RGBA): composited on white like every other transparency."""
    data = _bmp_v4_with_alpha()
    decoded = imageio.read_image(data)
    expected = _pillow_reference(data)
    assert decoded.shape == expected.shape == (3, 5, 3)
    assert np.abs(decoded.astype(int) - expected).max() <= 1
    assert (decoded[:, :2] == 255).all() and not (decoded[:, 3:] == 255).all()
    # The same bytes without the alpha mask: B, G, R and an unused byte (BGRX), as Pillow.
    opaque = _with_bytes(data, 66, struct.pack("<I", 0))
    assert np.array_equal(imageio.read_image(opaque), _pillow_reference(opaque))


HANG_AND_BOMB_PROBE = r"""
import resource, sys
from tfgcrf import decode, imageio
from tfgcrf.errors import InputError
imageio.read_image(bytes.fromhex(sys.argv[1]))  # the BMP graph traced before the limit
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))  # 1 GB more at most
for data in sys.argv[2:]:
    data = bytes.fromhex(data)
    print(decode.read_header(data)[3], flush=True)
    try:
        imageio.read_image(data)
    except InputError as err:
        print(err, flush=True)
"""


def test_inputs_that_hung_or_took_gigabytes_are_refused(tmp_path):
    """In a process with 1 GB of address space to spare, and a timeout (these used to run
    forever or to take gigabytes; fine, they take milliseconds):

    - a PNG chunk length of 0x7FFFFFE9: `position + length` wrapped around int32 back to the
      same chunk, and the header walk (`read_header`, `check_header`, `decode_image`) looped
      forever on 74 bytes;
    - a palette BMP of 0 rows and 2**31 - 1 columns declares no pixels; the columns sized the
      decoder's index arrays (8 GB; the kernel's OOM killer ended the process).
    """
    png = _png(20, 14)
    second_chunk = 8 + 25
    looping = png[:second_chunk] + struct.pack(">I", 0x7FFFFFE9) + png[second_chunk + 4:]
    flat = _patched(_encoded(Image.new("P", (8, 8)), "BMP"), b"BM", 18, struct.pack("<ii", 2**31 - 1, 0))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-c", HANG_AND_BOMB_PROBE, MATRIX["bmp_palette"].hex(), looping.hex(), flat.hex()],
        capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [
        str(20 * 14), f"cannot decode image <{len(looping)} bytes>: Invalid PNG data, size {len(looping)}",
        "0", f"cannot decode image <{len(flat)} bytes>: corrupt BMP: the width and height must be "
             "positive; got 2147483647 x 0",
    ], run.stdout


def _exif_variants():
    """name -> a JPEG of orientation 6 whose EXIF Pillow (and other readers) finds invalid: the
    rule read an orientation from each and turned the image."""
    data = _with_exif(6)
    app1 = data.index(b"\xff\xe1")
    tiff = app1 + 10
    entry = tiff + 10  # the first IFD entry (Pillow writes the orientation alone)
    assert data[entry: entry + 2] == b"\x01\x12" and data[tiff: tiff + 4] == b"MM\x00*"
    return {
        "app1_shorter_than_its_exif_header": _with_bytes(data, app1 + 2, struct.pack(">H", 3)),
        "app1_ending_before_the_entry": _with_bytes(data, app1 + 2, struct.pack(">H", 8 + 18)),
        "tiff_magic_corrupt": _with_bytes(data, tiff + 2, b"\x00\x00"),
        "tiff_byte_order_corrupt": _with_bytes(data, tiff, b"Mm"),
        "entry_of_no_type": _with_bytes(data, entry + 2, struct.pack(">H", 0x4003)),
        # Three SHORT values do not fit in the entry: at an offset (here past the segment).
        "entry_of_three_values": _with_bytes(data, entry + 4, struct.pack(">I", 3)),
    }


@pytest.mark.parametrize("name", list(_exif_variants()))
def test_an_invalid_exif_orientation_is_ignored_as_pillow_does(name):
    data = _exif_variants()[name]
    decoded = imageio.read_image(data)
    expected = _pillow_reference(data)
    assert decoded.shape == expected.shape == (40, 56, 3), name  # not turned
    assert np.abs(decoded.astype(int) - expected).max() <= 1, name


def test_a_webp_s_exif_counts_in_the_extended_format_only():
    """A WebP starting with its bitstream is a simple file: no metadata (libwebp, Pillow), even
    with an EXIF chunk after it; with the VP8X header first, the orientation applies."""
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6
    extended = _encoded(photo, "WEBP", quality=90, exif=exif)
    assert extended[12:16] == b"VP8X"
    chunks = {}
    position = 12
    while position + 8 <= len(extended):
        length = struct.unpack("<I", extended[position + 4: position + 8])[0]
        chunks[extended[position: position + 4]] = extended[position: position + 8 + length + length % 2]
        position += 8 + length + length % 2
    simple_body = b"WEBP" + chunks[b"VP8 "] + chunks[b"EXIF"]
    simple = b"RIFF" + struct.pack("<I", len(simple_body)) + simple_body
    for data, shape in ((extended, (56, 40, 3)), (simple, (40, 56, 3))):
        decoded = imageio.read_image(data)
        assert decoded.shape == _pillow_reference(data).shape == shape


CANVAS_PROBE = r"""
import json, resource, sys
from tfgcrf import decode
data = bytes.fromhex(sys.argv[1])
decode.decode_bytes(bytes.fromhex(sys.argv[2]))  # the WebP graph traced and warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shape = decode.decode_bytes(data).shape
print(json.dumps({"shape": list(shape), "growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


@pytest.mark.slow
def test_a_small_frame_on_a_canvas_at_the_limit_costs_a_few_bytes_a_pixel():
    """An animated WebP of 8 x 8 frames whose canvas declares 5000 x 5000 (the limit: decoded,
    white around the frame). The canvas was padded in float32, rounded and cast: 680 MB of
    peak growth here (27 bytes a pixel); padded in uint8, 220 MB (the 75-MB output and copies)."""
    data = _patched(_webp_animated(), b"VP8X", 12, _u24(4999) + _u24(4999))
    assert decode.read_header(data) == ("WebP", 5000, 5000, 25_000_000)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", CANVAS_PROBE, data.hex(), _webp_animated().hex()],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["shape"] == [5000, 5000, 3]
    assert result["growth_mb"] < 300, result


@pytest.mark.parametrize("where", ["unset", "at_the_color_table"])
def test_a_palette_bmp_s_pixel_offset_is_read_as_pillow_reads_it(where):
    """A pixel data offset of 0 (unset) means right after the color table, and one pointing at
    the color table means past it (Pillow): the rule read the headers / the table as pixels."""
    data = MATRIX["bmp_palette"]
    header = struct.unpack("<I", data[14:18])[0]
    moved = _with_bytes(data, 10, struct.pack("<I", 0 if where == "unset" else 14 + header))
    decoded = imageio.read_image(moved)
    assert np.array_equal(decoded, _pillow_reference(moved))
    assert np.array_equal(decoded, imageio.read_image(data))
