"""Decompression bombs of every container sent to `tfgcrf serve` (a server process).

Each file is a few dozen bytes that declare far more pixels than the export's limit; the server
must refuse it from the header, before the decoder allocates anything: its peak resident memory
(VmHWM) may grow less than 50 MB per bomb, over gRPC and REST alike.
"""

import functools
import io
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tfgcrf.serving import Client, ServingError
from tfgcrf.serving.launcher import ServeProcess

pytestmark = pytest.mark.slow

HUGE = 20000  # pixels per side of the header-only bombs: 400 megapixels, 16x the default limit
MAX_GROWTH_MB = 50


BIG = 6000  # pixels per side of the valid bombs: 36 megapixels (above the 25-MP limit), decoding takes > 100 MB


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(apng=False):
    """A valid gray PNG of BIG x BIG zeros (about 35 kB); `apng`: two frames of that size."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", BIG, BIG, 8, 0, 0, 0, 0))
    compressor = zlib.compressobj(9)
    row = b"\0" * (BIG + 1)
    data = b"".join(compressor.compress(row) for _ in range(BIG)) + compressor.flush()

    def frame_control(sequence):
        return _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, BIG, BIG, 0, 0, 1, 10, 0, 0))

    if apng:  # the default image is frame 1; frame 2 follows as fdAT
        chunks = (_png_chunk(b"acTL", struct.pack(">II", 2, 0)) + frame_control(0)
                  + _png_chunk(b"IDAT", data) + frame_control(1)
                  + _png_chunk(b"fdAT", struct.pack(">I", 2) + data))
    else:
        chunks = _png_chunk(b"IDAT", data)
    return b"\x89PNG\r\n\x1a\n" + header + chunks + _png_chunk(b"IEND", b"")


def _gif(side):
    buffer = io.BytesIO()
    Image.new("P", (side, side), 0).save(buffer, format="GIF")
    return buffer.getvalue()


def _gif_blocks(data):
    """(header + logical screen + global color table, the blocks after it without the trailer)."""
    flags = data[10]
    table = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    return data[: 13 + table], data[13 + table: -1]


def gif_frame_bomb():
    """A BIG x BIG frame behind a 64 x 64 logical screen (the screen is all a naive check reads)."""
    head, blocks = _gif_blocks(_gif(BIG))
    return head[:6] + struct.pack("<HH", 64, 64) + head[10:] + blocks + b"\x3b"


def gif_second_frame_bomb():
    """A 64 x 64 GIF whose second frame is BIG x BIG."""
    small_head, small_blocks = _gif_blocks(_gif(64))
    return small_head + small_blocks + _gif_blocks(_gif(BIG))[1] + b"\x3b"


def webp_bomb(animated=False):
    """A valid lossless WebP of BIG x BIG (animated: two frames in a VP8X/ANIM container)."""
    image = Image.new("RGB", (BIG, BIG), (90, 120, 40))
    buffer = io.BytesIO()
    if animated:
        second = Image.new("RGB", (BIG, BIG), (40, 60, 200))
        image.save(buffer, format="WEBP", lossless=True, quality=0, method=0, save_all=True,
                   append_images=[second], duration=100)
    else:
        image.save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def jpeg_bomb():
    """A JPEG header (SOF0) declaring HUGE x HUGE."""
    start_of_frame = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, HUGE, HUGE, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + start_of_frame + b"\xff\xd9"


def bmp_bomb():
    """A BMP header declaring HUGE x HUGE 24-bit pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, HUGE, HUGE, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\0" * 16


def gif_screen_bomb():
    """A GIF whose logical screen and frame declare HUGE x HUGE."""
    out = b"GIF89a" + struct.pack("<HHBBB", HUGE, HUGE, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, HUGE, HUGE, 0) + b"\x02\x02\x44\x01\x00"
    return out + b"\x3b"


# Built when a test needs them (some take seconds and a few hundred MB in the test process).
BOMBS = {
    "png": png_bomb,
    "apng": lambda: png_bomb(apng=True),
    "gif-screen": gif_screen_bomb,
    "gif-frame": gif_frame_bomb,
    "gif-second-frame": gif_second_frame_bomb,
    "jpeg": jpeg_bomb,
    "bmp": bmp_bomb,
    "webp-lossless": webp_bomb,
    "webp-animated": lambda: webp_bomb(animated=True),
}


@functools.lru_cache(maxsize=None)
def bomb_bytes(name):
    return BOMBS[name]()


@pytest.fixture(scope="module")
def served(exported_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("bombs") / "tfgcrf"
    shutil.copytree(exported_model.base, base)
    server = ServeProcess(base, poll_seconds=5.0).start()
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, format="PNG")
    with Client(server.grpc_target, timeout=300) as client:
        client.sample(buffer.getvalue(), seed=0)  # warm: the baseline holds a normal request
    with Client(server.rest_url, timeout=300) as client:
        client.sample(buffer.getvalue(), seed=0)
    server.baseline_mb = _memory_mb(server.process.pid, "VmRSS")
    yield server
    assert server.stop() == 0, server.output[-3000:]


def _reset_peak(pid):
    """Resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0, as root/owner)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak only grows: a bomb still shows as growth past the previous peak


def _memory_mb(pid, field="VmHWM"):
    """VmHWM (peak resident memory) or VmRSS of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def _send(served, name, protocol):
    """Sends bomb `name`; returns the server's peak memory growth over its warm baseline (MB).

    Measured against the baseline, not the memory before this bomb: memory a bomb leaves
    resident (allocators keep freed pages) counts against every later bomb too.
    """
    bomb = bomb_bytes(name)
    target = served.grpc_target if protocol == "grpc" else served.rest_url
    _reset_peak(served.process.pid)
    with Client(target, timeout=300) as client, pytest.raises(ServingError) as info:
        client.sample(bomb, seed=0)
    growth = _memory_mb(served.process.pid) - served.baseline_mb
    assert info.value.code == "INVALID_ARGUMENT", info.value
    assert served.process.poll() is None
    return growth, info.value.message


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_from_its_header(served, name, protocol):
    """Every container's every declared size is read by the export's decode rule
    (`tfgcrf.decode`: all GIF frames, WebP canvas/frames/bitstreams, APNG frames)."""
    growth, message = _send(served, name, protocol)
    assert growth < MAX_GROWTH_MB, f"peak memory grew {growth:.0f} MB ({message})"
    assert message.count("image too large") == 1, message
