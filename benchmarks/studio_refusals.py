"""How fast `tfgcrf studio` refuses a bad upload while the model is busy.

    .venv/bin/python benchmarks/studio_refusals.py [--model default]

A new user's 40 kB PNG declaring 6000x5000 (30 MP) was refused after 9.3 s and a garbage upload
after 3.1 s: the upload was decoded under the model's lock, so it waited for other work (the
session the studio prepares after each open) and for the decoder's first tracing. Now the header
check of the one decode rule (`tfgcrf.imageio.check_data`) refuses it before the lock. A file
that passes the header check but is corrupt (a truncated PNG) was still decoded, and refused,
under the model's lock; now uploads are decoded apart from the model's work.

In one process, for each file: a photo is opened (its session is prepared in the background,
holding the model), then the file is refused the old way (decoded under the lock: the baseline)
and, after another open, by the route `POST /api/open`. Prints wall seconds and the ratio.
"""

import argparse
import importlib.resources
import io
import os
import struct
import time
import zlib

from PIL import Image
from werkzeug.test import Client

from tfgcrf.colorizer import Colorizer
from tfgcrf.errors import InputError
from tfgcrf.studio import StudioApp


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width, height):
    """A valid PNG header declaring `width x height` (8-bit gray), with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    photo = examples.joinpath("pagoda.jpg").read_bytes()
    app = StudioApp(Colorizer.load(args.model), num_samples=2)
    client = Client(app)
    from tfgcrf import imageio

    def open_photo(tab):
        response = client.post(f"/api/open?tab={tab}", data=photo, headers={"X-Filename": "p.jpg"})
        assert response.status_code == 200, response.get_json()

    print("| upload | before: decoded under the model's lock, s | after: POST /api/open, s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buffer, "PNG")
    truncated = buffer.getvalue()[:len(buffer.getvalue()) // 2]
    for name, data in (("40 kB PNG declaring 30 MP", bomb_png(6000, 5000)),
                       ("40 kB of random bytes", os.urandom(40_000)),
                       ("a PNG cut in half (valid headers)", truncated)):
        open_photo("tab-baseline")
        started = time.perf_counter()
        try:
            with app._compute:
                imageio.decode_data(data, "x.png")
        except InputError:
            pass
        before = time.perf_counter() - started
        open_photo("tab-current")
        started = time.perf_counter()
        response = client.post("/api/open?tab=tab-refused", data=data, headers={"X-Filename": "x.png"})
        after = time.perf_counter() - started
        assert response.status_code == 400, response.get_json()
        print(f"| {name} | {before:.2f} | {after:.3f} | {after / before:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
