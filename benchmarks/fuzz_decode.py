"""Mutation fuzzer of the one decode rule (`tfgcrf.decode`), both ways it is called.

Small seed files of every format the rule reads are made with Pillow (and by hand where Pillow
cannot write them: 4-bit, RLE, top-down and OS/2 BMPs, 16-bit RGB PNGs), mutated (bit flips,
header fields overwritten with boundary values, length fields inflated, truncation, chunks /
segments duplicated, removed or swapped, junk inserted, spans spliced from another seed) and
decoded in a worker process with a memory limit (RLIMIT_AS) and a per-case timeout, by

- `tfgcrf.imageio.decode_data` (what `read_image` runs: the per-format compiled graphs), and
- `decode.decode_image` traced with every format's branch (the SavedModel's `sample`/`edit` graph).

A case fails when the worker dies (signal: segfault, abort), does not answer in time (hang),
grows its peak memory by more than `--memory-growth-mb`, raises anything but `InputError` /
`InvalidArgumentError`, gives an error message that is not one printable line, returns an
image above `MAX_PIXELS`, when the two paths disagree (one decodes, the other refuses, or other
pixels), or (category `pillow`, to triage by hand: corrupt data legitimately differs between
decoders) when Pillow reads the same bytes to another size.

    .venv/bin/python benchmarks/fuzz_decode.py --cases 2000 --seed 1 --out /tmp/fuzz
    .venv/bin/python benchmarks/fuzz_decode.py --replay /tmp/fuzz/cases/crash-*.bin

Every failing input is kept in `<out>/cases/` with its category; `<out>/summary.json` counts them.
"""

import argparse
import hashlib
import io
import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import time
import zlib

# --------------------------------------------------------------------------------------- seeds


def _encoded(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _photo(width=20, height=14):
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                    (x * 7 + y * 13) % 256], -1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16bit_rgb(width=9, height=7):
    rows = b"".join(b"\0" + bytes((x * 37 + y * 11 + c * 5) % 256 for x in range(width) for c in range(6))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def _bmp(width, height, bits, rows, palette=b"", compression=0, header_size=40, top_down=False):
    """A BMP from packed row bytes (already padded / RLE-coded) and a BGRX palette."""
    if header_size == 12:
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
        palette = b"".join(palette[k:k + 3] for k in range(0, len(palette), 4))
    else:
        info = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bits,
                           compression, len(rows), 2835, 2835, len(palette) // 4, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def _bmp_seeds():
    width, height = 11, 6
    palette16 = b"".join(bytes((k * 16, 255 - k * 16, k * 7, 0)) for k in range(16))
    palette256 = b"".join(bytes((k, 255 - k, (k * 7) % 256, 0)) for k in range(256))

    def packed(bits, index):
        rows = []
        for y in range(height):
            values = [index(x, y) for x in range(width)]
            bits_row = "".join(format(v, f"0{bits}b") for v in values)
            bits_row += "0" * (-len(bits_row) % 32)
            rows.append(int(bits_row, 2).to_bytes(len(bits_row) // 8, "big"))
        return rows

    seeds = {}
    rows4 = packed(4, lambda x, y: (x + y) % 16)
    seeds["bmp_4bit"] = _bmp(width, height, 4, b"".join(rows4), palette16)
    seeds["bmp_4bit_topdown"] = _bmp(width, height, 4, b"".join(rows4[::-1]), palette16, top_down=True)
    rows1 = packed(1, lambda x, y: (x ^ y) & 1)
    seeds["bmp_1bit"] = _bmp(width, height, 1, b"".join(rows1), palette16[:8])
    rows8 = packed(8, lambda x, y: (x * 20 + y) % 256)
    seeds["bmp_8bit_core"] = _bmp(width, height, 8, b"".join(rows8), palette256, header_size=12)
    rle = b"".join(bytes((width, (y * 30) % 256)) + b"\0\0" for y in range(height)) + b"\0\1"
    seeds["bmp_rle8"] = _bmp(width, height, 8, rle, palette256, compression=1)
    rle4 = b"".join(bytes((width, 0x12)) + b"\0\0" for y in range(height)) + b"\0\1"
    seeds["bmp_rle4"] = _bmp(width, height, 4, rle4, palette16, compression=2)
    rows24 = [bytes((x * 20 % 256, y * 40 % 256, 99) * 1)
              for y in range(height) for x in range(width)]
    stride = (24 * width + 31) // 32 * 4
    body = b"".join(b"".join(rows24[y * width:(y + 1) * width]).ljust(stride, b"\0") for y in range(height))
    seeds["bmp_24bit_topdown"] = _bmp(width, height, 24, body, top_down=True)
    return seeds


def _gif_animated_transparent():
    import numpy as np
    from PIL import Image

    frames = []
    for k in range(3):
        palette = _photo().quantize(16)
        pixels = np.asarray(palette).copy()
        pixels[: 3 + k] = 15
        image = Image.fromarray(pixels, "P")
        image.putpalette(palette.getpalette())
        frames.append(image)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], transparency=15, disposal=2,
                   duration=50, loop=0)
    return buffer.getvalue()


def make_seeds():
    """name -> small encoded file, every kind the rule reads."""
    from PIL import Image

    photo = _photo()
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    seeds = {
        "png_rgb": _encoded(photo, "PNG"),
        "png_rgba": _encoded(rgba, "PNG"),
        "png_la": _encoded(rgba.convert("LA"), "PNG"),
        "png_p": _encoded(photo.quantize(16), "PNG"),
        "png_p_trns": _encoded(photo.quantize(16), "PNG", transparency=3),
        "png_gray": _encoded(photo.convert("L"), "PNG"),
        "png_1bit": _encoded(photo.convert("1"), "PNG"),
        "png_16bit_gray": _encoded(photo.convert("L").convert("I;16"), "PNG"),
        "png_16bit_rgb": _png_16bit_rgb(),
        "apng": _encoded(photo, "PNG", save_all=True, append_images=[rgba, photo.rotate(90)], duration=40),
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds["png_exif6"] = _encoded(photo, "PNG", exif=exif)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        seeds[f"jpeg_exif{orientation}"] = _encoded(photo, "JPEG", quality=90, exif=exif)
    exif = Image.Exif()
    exif[0x0112] = 3
    seeds["jpeg_progressive_exif3"] = _encoded(photo, "JPEG", quality=90, progressive=True, exif=exif)
    seeds["jpeg_baseline"] = _encoded(photo, "JPEG", quality=75)
    seeds["jpeg_progressive"] = _encoded(photo, "JPEG", quality=75, progressive=True)
    seeds["jpeg_gray"] = _encoded(photo.convert("L"), "JPEG")
    seeds["jpeg_cmyk"] = _encoded(photo.convert("CMYK"), "JPEG")
    seeds["jpeg_444"] = _encoded(photo, "JPEG", subsampling=0)
    seeds["gif_animated_transparent"] = _gif_animated_transparent()
    seeds["gif_still"] = _encoded(photo.quantize(32), "GIF")
    seeds["bmp_8bit"] = _encoded(photo.quantize(64), "BMP")
    seeds["bmp_1bit_pil"] = _encoded(photo.convert("1"), "BMP")
    seeds["bmp_24bit"] = _encoded(photo, "BMP")
    seeds["bmp_32bit"] = _encoded(rgba, "BMP")
    seeds.update(_bmp_seeds())
    seeds["webp_lossy"] = _encoded(photo, "WEBP", quality=60)
    seeds["webp_lossless"] = _encoded(photo, "WEBP", lossless=True)
    seeds["webp_lossy_alpha"] = _encoded(rgba, "WEBP", quality=60)
    exif = Image.Exif()
    exif[0x0112] = 8
    seeds["webp_exif8"] = _encoded(photo, "WEBP", quality=60, exif=exif)
    seeds["webp_animated"] = _encoded(photo, "WEBP", save_all=True, lossless=True,
                                      append_images=[rgba, photo.rotate(180)], duration=40)
    seeds["webp_animated_lossy"] = _encoded(photo, "WEBP", save_all=True, quality=50,
                                            append_images=[rgba], duration=40)
    return seeds


# ----------------------------------------------------------------------------------- structure


def _fmt(data):
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"GIF"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith(b"RIFF"):
        return "webp"
    return "?"


def structure(data):
    """`(spans, fields)`: chunk / segment / block spans `(start, end)` and integer fields
    `(offset, size, big_endian)` worth overwriting with boundary values."""
    kind, spans, fields = _fmt(data), [], []
    try:
        if kind == "png":
            position = 8
            while position + 12 <= len(data):
                length = struct.unpack(">I", data[position:position + 4])[0]
                name = data[position + 4:position + 8]
                fields.append((position, 4, True))
                if name == b"IHDR":
                    fields += [(position + 8, 4, True), (position + 12, 4, True), (position + 16, 1, True),
                               (position + 17, 1, True), (position + 20, 1, True)]
                if name == b"fcTL":
                    fields += [(position + 8 + k, 4, True) for k in (0, 4, 8, 12, 16)]
                if name == b"acTL":
                    fields += [(position + 8, 4, True), (position + 12, 4, True)]
                end = min(position + 12 + length, len(data))
                spans.append((position, end))
                position = end
        elif kind == "jpeg":
            position = 2
            while position + 4 <= len(data) and data[position] == 0xFF:
                marker = data[position + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    spans.append((position, position + 2))
                    position += 2
                    continue
                length = struct.unpack(">H", data[position + 2:position + 4])[0]
                fields.append((position + 2, 2, True))
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    fields += [(position + 5, 2, True), (position + 7, 2, True), (position + 9, 1, True),
                               (position + 4, 1, True)]
                if marker == 0xE1:
                    fields += [(position + 14, 4, False), (position + 14, 4, True), (position + 18, 2, False),
                               (position + 18, 2, True)]
                spans.append((position, min(position + 2 + length, len(data))))
                if marker == 0xDA:
                    spans.append((position + 2 + length, max(position + 2 + length, len(data) - 2)))
                    spans.append((len(data) - 2, len(data)))
                    break
                position += 2 + length
        elif kind == "gif":
            fields += [(6, 2, False), (8, 2, False), (10, 1, False), (11, 1, False)]
            packed = data[10]
            position = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
            spans.append((0, position))
            while position < len(data):
                start = position
                if data[position] == 0x21:
                    fields += [(position + 1, 1, False), (position + 2, 1, False), (position + 3, 1, False),
                               (position + 6, 1, False)]
                    position += 2
                elif data[position] == 0x2C:
                    fields += [(position + k, 2, False) for k in (1, 3, 5, 7)] + [(position + 9, 1, False)]
                    local = data[position + 9]
                    position += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0)
                    fields.append((position, 1, False))  # LZW minimum code size
                    position += 1
                else:
                    spans.append((position, len(data)))
                    break
                while position < len(data) and data[position]:
                    fields.append((position, 1, False))
                    position += data[position] + 1
                position += 1
                spans.append((start, min(position, len(data))))
        elif kind == "bmp":
            fields += [(2, 4, False), (10, 4, False), (14, 4, False), (18, 4, False), (22, 4, False),
                       (18, 2, False), (20, 2, False), (26, 2, False), (28, 2, False), (30, 4, False),
                       (34, 4, False), (46, 4, False), (24, 2, False)]
            offset = struct.unpack("<I", data[10:14])[0]
            spans += [(0, 14), (14, min(offset, len(data))), (min(offset, len(data)), len(data))]
        elif kind == "webp":
            fields.append((4, 4, False))

            def walk(position, end):
                while position + 8 <= end:
                    name = data[position:position + 4]
                    length = struct.unpack("<I", data[position + 4:position + 8])[0]
                    fields.append((position + 4, 4, False))
                    payload = position + 8
                    if name == b"VP8X":
                        fields.extend([(payload, 1, False), (payload + 4, 3, False), (payload + 7, 3, False)])
                    elif name == b"VP8 ":
                        fields.extend([(payload + 6, 2, False), (payload + 8, 2, False), (payload, 3, False)])
                    elif name == b"VP8L":
                        fields.extend([(payload + 1, 4, False), (payload, 1, False)])
                    elif name == b"ANMF":
                        fields.extend([(payload + k, 3, False) for k in (0, 3, 6, 9, 12)] + [(payload + 15, 1, False)])
                    elif name == b"ANIM":
                        fields.extend([(payload, 4, False), (payload + 4, 2, False)])
                    elif name == b"ALPH":
                        fields.append((payload, 1, False))
                    elif name == b"EXIF":
                        fields.extend([(payload + 4, 4, False), (payload + 8, 2, False)])
                    stop = min(payload + length + (length & 1), len(data))
                    spans.append((position, stop))
                    if name == b"ANMF":
                        walk(payload + 16, min(payload + length, len(data)))
                    position = stop

            walk(12, len(data))
    except (struct.error, IndexError):
        pass
    return spans, fields


# ------------------------------------------------------------------------------------ mutation

BOUNDARY = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFFF, 0x7FFFFFFF,
            0x80000000, 0xFFFFFFFF, 0x7FFFFFF0, 0x7FFFFFE9, 0x7FFFFFFF - 8, 0x7FFFFFFF - 12, 5001, 16000, 65500)


def _put(data, offset, size, big_endian, value):
    if offset < 0 or offset + size > len(data):
        return data
    value &= (1 << (8 * size)) - 1
    data[offset:offset + size] = value.to_bytes(size, "big" if big_endian else "little")
    return data


def mutate(data, rng, others):
    """One to three stacked mutations of `data` (bytes) -> (bytes, description)."""
    data = bytearray(data)
    notes = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        spans, fields = structure(bytes(data))
        if not data:
            break
        choice = rng.random()
        if choice < 0.12:  # bit flips, mostly in the headers
            for _ in range(rng.randint(1, 4)):
                where = rng.randrange(min(len(data), 96)) if rng.random() < 0.6 else rng.randrange(len(data))
                data[where] ^= 1 << rng.randrange(8)
            notes.append("bitflip")
        elif choice < 0.22:  # byte overwrite with a boundary value
            where = rng.randrange(min(len(data), 128)) if rng.random() < 0.7 else rng.randrange(len(data))
            data[where] = rng.choice((0, 1, 0x7F, 0x80, 0xFE, 0xFF))
            notes.append(f"byte@{where}")
        elif choice < 0.50 and fields:  # a header field set to a boundary value / inflated
            offset, size, big = rng.choice(fields)
            original = int.from_bytes(data[offset:offset + size], "big" if big else "little")
            value = rng.choice(BOUNDARY + (original + 1, original - 1, original * 2, original + len(data),
                                           len(data), len(data) - offset, original + 0x10000,
                                           original | (1 << (8 * size - 1))))
            _put(data, offset, size, big, value)
            notes.append(f"field@{offset}/{size}={value:#x}")
        elif choice < 0.62:  # truncation
            if spans and rng.random() < 0.6:  # at a chunk's ends, or in its header
                start, end = rng.choice(spans)
                cut = rng.choice((start, end)) + rng.randint(-2, 2) if rng.random() < 0.5 else \
                    start + rng.randint(1, 32)
            else:
                cut = rng.randrange(len(data))
            cut = max(1, min(cut, len(data)))
            del data[cut:]
            notes.append(f"cut@{cut}")
        elif choice < 0.80 and len(spans) > 1:  # chunk duplication / removal / swap
            start, end = rng.choice(spans[1:] if _fmt(bytes(data)) == "gif" else spans)
            piece = bytes(data[start:end])
            action = rng.choice(("dup", "remove", "move", "dup_first"))
            if action == "dup":
                data[end:end] = piece
            elif action == "remove":
                del data[start:end]
            elif action == "move":
                del data[start:end]
                target = rng.choice(spans)[0]
                target = min(target, len(data))
                data[target:target] = piece
            else:
                first = spans[0][0]
                data[first:first] = piece
            notes.append(f"{action}[{start}:{end}]")
        elif choice < 0.88:  # junk inserted
            where = rng.randrange(len(data) + 1)
            if spans and rng.random() < 0.6:
                where = rng.choice(spans)[0]
            junk = rng.choice((b"\xff\x00", b"\xff", b"\x00", b"\xff\xff\x00\x00", b"hello",
                               bytes(rng.randrange(256) for _ in range(rng.randint(1, 9))),
                               b"\xff\xc0\x00\x11\x08\x3e\x80\x3e\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01",
                               b"\xff\xd9", b"\xff\xda", b"\x21\xf9\x04\x01\x00\x00\x05\x00", b"\x2c"))
            data[where:where] = junk
            notes.append(f"junk@{where}+{len(junk)}")
        elif choice < 0.94 and others:  # splice a span of another seed of the same format
            other = rng.choice(others)
            other_spans, _ = structure(other)
            if other_spans and spans:
                start, end = rng.choice(other_spans)
                target = rng.choice(spans)[0]
                data[target:target] = other[start:end]
                notes.append(f"splice[{start}:{end}]@{target}")
        else:  # a random multi-byte value anywhere in the first bytes
            size = rng.choice((2, 4))
            where = rng.randrange(max(1, min(len(data), 160)))
            value = rng.choice(BOUNDARY)
            _put(data, where, size, rng.random() < 0.5, value)
            notes.append(f"int@{where}/{size}={value:#x}")
    return bytes(data), " ".join(notes)


# ------------------------------------------------------------------------------- the reference


def pillow_reference(data):
    """Pillow's view of a file (the independent reference of the decode rule's tests too):
    first frame, EXIF transposed, 16-bit gray rounded to 8 bits, transparency composited on
    white. Raises what Pillow raises."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I"):
            gray = np.round(np.asarray(image, np.float64) / 257.0).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=-1)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.asarray(image.convert("RGB"))


# -------------------------------------------------------------------------------------- worker

WORKER = r"""
import io, json, os, resource, sys, traceback
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
limit = int(sys.argv[1])
import numpy as np
import tensorflow as tf
from PIL import Image
from tfgcrf import decode, imageio
Image.MAX_IMAGE_PIXELS = imageio.MAX_PIXELS // 2  # refused above the rule's limit
from tfgcrf.errors import InputError

full = tf.function(decode.decode_image, autograph=False,
                   input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)])
max_pixels = tf.constant(imageio.MAX_PIXELS, tf.int64)

sys.path.insert(0, os.path.dirname(sys.argv[2]))
from fuzz_decode import pillow_reference

def pillow(data):
    try:
        return pillow_reference(data)
    except Exception as err:  # Pillow's refusals are not ours to judge
        return type(err).__name__

def run(call):
    try:
        value = call()
        return ("ok", value)
    except InputError as err:
        return ("InputError", str(err))
    except tf.errors.InvalidArgumentError as err:
        return ("InvalidArgument", decode.error_message(err))
    except BaseException as err:
        return ("uncaught", type(err).__name__ + ": " + "".join(traceback.format_exception_only(err))[-400:])

# warm: every format's graphs traced before the memory baseline
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    run(lambda: imageio.decode_data(data, "x"))
    run(lambda: full(tf.constant(data), max_pixels).numpy())
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    path = line.strip()
    data = open(path, "rb").read()
    err_path = path + ".stderr"
    saved = os.dup(2)
    handle = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(handle, 2)
    os.close(handle)
    def stage(name):
        with open(path + ".stage", "w") as handle:
            handle.write(name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stage("api")
    api = run(lambda: imageio.decode_data(data, "x"))
    stage("graph")
    graph = run(lambda: full(tf.constant(data), max_pixels).numpy())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stage("pillow")
    # Pillow (pure-Python decoders for some formats) only where there is something to compare.
    ref = pillow(data) if api[0] == "ok" else "not run"
    os.dup2(saved, 2)
    os.close(saved)
    stderr = open(err_path, "rb").read().decode("utf-8", "replace")
    os.unlink(err_path)
    out = {"growth_mb": (after - before) / 1024.0, "stderr": stderr[-600:]}
    for name, (kind, value) in (("api", api), ("graph", graph)):
        if kind == "ok":
            out[name] = ["ok", list(value.shape), value.dtype.name]
        else:
            out[name] = [kind, value]
    if api[0] == "ok" and graph[0] == "ok":
        out["same"] = bool(api[1].shape == graph[1].shape and np.array_equal(api[1], graph[1]))
    if isinstance(ref, np.ndarray):
        out["pillow"] = list(ref.shape)
        if api[0] == "ok" and api[1].shape == ref.shape:
            out["pillow_diff"] = float(np.abs(api[1].astype(int) - ref).max())
    else:
        out["pillow"] = ref
    print(json.dumps(out), flush=True)
"""


class Worker:
    def __init__(self, seed_paths, memory_limit, env, stderr):
        self.seed_paths, self.memory_limit, self.env, self.stderr = seed_paths, memory_limit, env, stderr
        self.process = None
        self.starts = 0

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(self.memory_limit), os.path.abspath(__file__), *self.seed_paths],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=self.env)
        self.starts += 1
        line = self._read(600)
        if line is None or not json.loads(line).get("ready"):
            raise RuntimeError("worker did not start (see worker.stderr)")

    def _read(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return line.decode() if line else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def run(self, path, timeout):
        """-> (status, result dict or None); status: ok / hang / died."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.process.stdin.write((path + "\n").encode())
        self.process.stdin.flush()
        line = self._read(timeout)
        if line is None:
            self.stop()
            try:
                stage = open(path + ".stage").read()
            except OSError:
                stage = "?"
            return "hang", {"stage": stage}
        if line == "":
            code = self.process.wait()
            self.process = None
            try:
                stderr = open(path + ".stderr", "rb").read().decode("utf-8", "replace")[-1500:]
            except OSError:
                stderr = ""
            return "died", {"returncode": code, "stderr": stderr}
        return "ok", json.loads(line)


def judge(result, max_pixels, growth_limit, lossy=False):
    """Failure categories of one case's worker result."""
    found = []
    for name in ("api", "graph"):
        kind, value = result[name][0], result[name][1]
        if kind == "uncaught":
            found.append(f"uncaught-{name}")
        elif kind in ("InputError", "InvalidArgument"):
            if "\n" in value or len(value) > 400 or not value.isprintable():
                found.append(f"message-{name}")
        elif kind == "ok":
            height, width = value[0], value[1]
            if height * width > max_pixels or height == 0 or width == 0:
                found.append(f"size-{name}")
    if (result["api"][0] == "ok") != (result["graph"][0] == "ok"):
        found.append("paths-disagree")
    elif result.get("same") is False:
        found.append("paths-differ")
    if result["growth_mb"] > growth_limit:
        found.append("memory")
    if result["api"][0] == "ok" and isinstance(result.get("pillow"), list):
        if result["pillow"] != result["api"][1]:
            found.append("pillow-size")
        elif result.get("pillow_diff", 0) > (8 if lossy else 1):
            found.append("pillow-pixels")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/fuzz_decode")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--memory-limit-mb", type=int, default=0,
                        help="RLIMIT_AS of the worker (0: its address space after warm-up + 3 GB)")
    parser.add_argument("--memory-growth-mb", type=float, default=300.0,
                        help="peak-memory growth of one case flagged (the limit's output is 75 MB)")
    parser.add_argument("--cpu-seconds", type=float, default=0, help="stop after this much worker CPU")
    parser.add_argument("--formats", default="", help="comma-separated seed name prefixes")
    parser.add_argument("--replay", nargs="*", help="run these files instead of mutations")
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tfgcrf.imageio import MAX_PIXELS

    os.makedirs(os.path.join(args.out, "cases"), exist_ok=True)
    seeds = make_seeds()
    if args.formats:
        seeds = {k: v for k, v in seeds.items() if k.startswith(tuple(args.formats.split(",")))}
    seed_dir = os.path.join(args.out, "seeds")
    os.makedirs(seed_dir, exist_ok=True)
    seed_paths = []
    for name, data in seeds.items():
        seed_paths.append(os.path.join(seed_dir, name))
        with open(seed_paths[-1], "wb") as handle:
            handle.write(data)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    limit = args.memory_limit_mb * 2**20 if args.memory_limit_mb else 2**62  # set below
    if not args.memory_limit_mb:
        probe = subprocess.run([sys.executable, "-c", "import resource, tensorflow, tfgcrf.decode;"
                                "print(open('/proc/self/status').read())"], capture_output=True, text=True,
                               env=env)
        vm = [line for line in probe.stdout.splitlines() if line.startswith("VmSize")]
        limit = (int(vm[0].split()[1]) * 1024 if vm else 2**33) + 3 * 2**30
    worker = Worker(seed_paths, limit, env, open(os.path.join(args.out, "worker.stderr"), "ab"))

    if args.replay is not None:
        cases = [(os.path.basename(path), open(path, "rb").read(), "replay") for path in args.replay]
    else:
        cases = None
    rng = random.Random(args.seed)
    names = sorted(seeds)
    counts, failures, examples = {}, {}, {}
    started = time.time()
    log = open(os.path.join(args.out, "log.jsonl"), "a")
    total = len(cases) if cases is not None else args.cases
    for index in range(total):
        if cases is not None:
            name, data, note = cases[index]
        else:
            name = rng.choice(names)
            others = [seeds[k] for k in names if k[:3] == name[:3] and k != name]
            data, note = mutate(seeds[name], rng, others)
        path = os.path.join(args.out, "current.bin")
        with open(path, "wb") as handle:
            handle.write(data)
        status, result = worker.run(path, args.timeout)
        found = []
        if status == "hang":
            found = [f"hang-{result['stage']}"]
        elif status == "died":
            found = [f"died-{result['returncode']}"]
        else:
            found = judge(result, MAX_PIXELS, args.memory_growth_mb, lossy="jpeg" in name or "lossy" in name)
            if "memory" in found:
                worker.stop()  # a fresh peak-memory baseline
            for key in ("api", "graph"):
                counts[f"{key}:{result[key][0]}"] = counts.get(f"{key}:{result[key][0]}", 0) + 1
        for category in found:
            failures[category] = failures.get(category, 0) + 1
            digest = hashlib.sha1(data).hexdigest()[:10]
            keep = os.path.join(args.out, "cases", f"{category}-{name}-{digest}.bin")
            with open(keep, "wb") as handle:
                handle.write(data)
            examples.setdefault(category, []).append(os.path.basename(keep))
        log.write(json.dumps({"i": index, "seed": name, "mutation": note, "status": status,
                              "found": found, "result": result}) + "\n")
        log.flush()
        if found:
            print(f"[{index}] {name} {note}: {found} {json.dumps(result)[:300]}", flush=True)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime
        if index % 200 == 0:
            print(f"{index}/{total} cases, {time.time() - started:.0f} s, worker CPU (finished workers) "
                  f"{cpu:.0f} s, failures {failures}", flush=True)
        if args.cpu_seconds and _worker_cpu(worker) + cpu > args.cpu_seconds:
            total = index + 1
            break
    worker.stop()
    summary = {"cases": total, "outcomes": counts, "failures": failures,
               "examples": {k: v[:20] for k, v in examples.items()}, "worker_starts": worker.starts,
               "wall_s": time.time() - started}
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    print(json.dumps(summary, indent=1))


def _worker_cpu(worker):
    """CPU seconds of the running worker (from /proc), 0 when none."""
    if worker.process is None:
        return 0.0
    try:
        fields = open(f"/proc/{worker.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


if __name__ == "__main__":
    main()
