"""Training throughput (images/s) and peak memory of each stage's train_step at 64 x 64.

Each row runs in its own process (so peak RSS is per row) on real fixture photos:

    .venv/bin/python benchmarks/train_throughput.py [--steps 4]

Ratios are against the first row (the VAE stage) measured in the same run. "step peak" is the
process's peak RSS minus its RSS just before the first training step (model, data and TF runtime
excluded).
"""

import argparse
import json
import os
import subprocess
import sys

ROWS = [
    # name, stage, batch size, hoc_window (0 = whole grid)
    ("vae", "vae", 32, 0),
    ("hoc whole 64x64 grid", "hoc", 16, 0),
    ("hoc 32x32 windows", "hoc", 16, 32),
    ("mdn", "mdn", 32, 0),
]
PHOTOS = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "photos")


def measure(stage, batch_size, window, steps):
    import resource
    import time

    import tensorflow as tf

    from tfgcrf.config import ModelConfig, TrainingConfig
    from tfgcrf.data import make_dataset
    from tfgcrf.models import GCRFColorizer

    def rss_gb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9

    data = make_dataset(PHOTOS, "train", image_size=64, batch_size=batch_size, training=True)
    data = data.take(1).cache().repeat()
    model = GCRFColorizer(ModelConfig(), training=TrainingConfig(hoc_window=window))
    # An untrained decoder outputs gray (zero-initialized top layer): give the G-CRF real work.
    kernel = model.backbone.decoder.top_out.kernel
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[0, 1]))
    model.compile_stage(stage)
    model.reveal_fraction.assign(0.1)
    before = rss_gb()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"images_per_s": steps * batch_size / seconds, "peak_gb": peak, "step_gb": peak - before}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per row")
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row is not None:
        _, stage, batch_size, window = ROWS[args.row]
        print(json.dumps(measure(stage, batch_size, window, args.steps)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    results = []
    for index, row in enumerate(ROWS):
        out = subprocess.run(
            [sys.executable, __file__, "--row", str(index), "--steps", str(args.steps)],
            capture_output=True, text=True, env=env, check=True,
        )
        results.append((row, json.loads(out.stdout.strip().splitlines()[-1])))
    baseline = results[0][1]["images_per_s"]
    print(f"{'row':24} {'batch':>5} {'img/s':>8} {'vs vae':>7} {'peak GB':>8} {'step peak GB':>12}")
    for (name, _, batch_size, _), result in results:
        print(
            f"{name:24} {batch_size:5d} {result['images_per_s']:8.2f} "
            f"{result['images_per_s'] / baseline:7.3f} {result['peak_gb']:8.2f} "
            f"{result['step_gb']:12.2f}"
        )


if __name__ == "__main__":
    main()
