"""How late a request's deadline is answered when the signature runs long kernels (a big photo).

    .venv/bin/python benchmarks/serving_deadline.py --model-dir models/tfgcrf/1 [--pixels 12e6]
        [--deadlines 5 15]

Loads the exported version like `tfgcrf serve` (`Servable`), makes a JPEG of `--pixels` pixels
(4:3, a smooth gradient with noise) and runs `sample` with each deadline twice in this process:
the way before this change (the signature called in the request's thread: its deadline error
comes when TensorFlow's cancellation takes effect, after the kernel that is running ends) and the
current `RequestScope.run` (answers at most `ABANDON_SECONDS` after the deadline; the work ends in
the background). Prints seconds after the deadline and the ratio.
"""

import argparse
import io
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from tfgcrf.serving import cancellation
from tfgcrf.serving.cancellation import RequestScope
from tfgcrf.serving.repository import Servable
from tfgcrf.serving.status import ServingError


class CallerThreadScope(RequestScope):
    """The baseline: the signature runs in the request's thread (`RequestScope.run` before)."""

    def run(self, function, **kwargs):
        self.check("before running the signature")
        manager = cancellation._tf_cancellation.CancellationManager()
        self._manager = manager
        cancellation._WATCHDOG.add(self)
        cancellation._local.manager = manager
        try:
            return function(**kwargs)
        except tf.errors.CancelledError:
            if self.poll():
                raise self.error("while running the signature") from None
            raise
        finally:
            cancellation._local.manager = None
            cancellation._WATCHDOG.remove(self)
            self._manager = None


def photo(pixels):
    width = int(round((pixels * 4 / 3) ** 0.5))
    height = int(round(pixels / width))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    image = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), width, height


def late(servable, inputs, deadline, scope_class):
    scope = scope_class(time.monotonic() + deadline)
    started = time.perf_counter()
    try:
        servable.predict("sample", inputs, scope=scope)
        outcome = "answered"
    except ServingError as err:
        outcome = err.code
    seconds = time.perf_counter() - started - deadline
    work = scope.abandoned
    if work is not None:
        work.join()  # the next measurement starts on an idle CPU
    return seconds, outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="an exported version folder")
    parser.add_argument("--pixels", type=float, default=12e6)
    parser.add_argument("--deadlines", type=float, nargs="+", default=[5.0, 15.0])
    args = parser.parse_args()
    servable = Servable(1, args.model_dir)
    data, width, height = photo(args.pixels)
    inputs = {"image_bytes": np.array([data], object), "seed": np.array([0], np.int64)}
    started = time.perf_counter()
    servable.predict("sample", inputs)
    print(f"{width}x{height} JPEG, sample without a deadline: {time.perf_counter() - started:.1f} s")
    print("| deadline s | before: answered s after it | now: s after it | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for deadline in args.deadlines:
        before, old_outcome = late(servable, inputs, deadline, CallerThreadScope)
        now, new_outcome = late(servable, inputs, deadline, RequestScope)
        print(f"| {deadline:g} | {before:.2f} ({old_outcome}) | {now:.2f} ({new_outcome}) | "
              f"{now / before:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
