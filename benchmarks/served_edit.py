"""Served edit latency with and without the full-resolution propagation, in one process.

    .venv/bin/python benchmarks/served_edit.py [--model default|PATH.keras] [--repeats 5] \
        [--propagation-only]

Exports the model twice (`export_saved_model(..., propagate=False)`: the `edit` signature before
the propagation was added; `propagate=True`: today's default), loads both with plain
`tf.saved_model.load` and times the `edit` signature (3 points, one photo per request) on photos
of three sizes, the two exports alternating request by request (so a change of the machine's load
hits both). Rows: median wall seconds and process CPU seconds per request, and the ratio
after / before. Then the propagation alone at the same sizes: the SavedModel's TensorFlow solver
(`hints.propagation_correction`, traced, BiCGSTAB iterations) against the Python API's sparse LU
(`hints.Propagation(...).correction`, factorization included, as one `Colorizer.edit` does), and
the size of both SavedModel folders. The load average is printed at the start and the end.
The propagation table has one row per local term (`hints.LOCAL_TERMS`, the default first);
`--propagation-only` prints it alone (no export).
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from tfgcrf import color, hints  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "tests", "data", "fullres", "skimage_astronaut.jpg")
# (width, height): non-square at its own resolution, the largest photo propagated at its own
# resolution (256^2), and a 1024x768 photo (propagated at 128^2 px).
SIZES = [(200, 150), (256, 256), (1024, 768)]
POINTS = [(0.3, 0.3), (0.7, 0.6), (0.5, 0.85)]
COLORS = [(220, 30, 30), (20, 40, 200), (30, 180, 40)]


def _photo(size):
    return np.asarray(Image.open(PHOTO).convert("RGB").resize(size, Image.BICUBIC))


def _request(size):
    png = tf.io.encode_png(_photo(size)).numpy()
    return dict(image_bytes=tf.constant([png]), points=tf.constant([POINTS], tf.float32),
                colors=tf.constant([COLORS], tf.uint8), num_points=tf.constant([len(POINTS)]),
                seed=tf.constant([0], tf.int64), from_sample=tf.constant([-1]))


def _timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _folder_bytes(path):
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="preset name or .keras file")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per row and export")
    parser.add_argument("--propagation-only", action="store_true",
                        help="only the propagation table (no export)")
    args = parser.parse_args(argv)

    from tfgcrf.export.saved_model import export_saved_model
    from tfgcrf.models.loading import load_model

    print("load average at start:", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    if args.propagation_only:
        _propagation_table(args.repeats)
        print("load average at end:", " ".join(f"{v:.1f}" for v in os.getloadavg()))
        return
    model = load_model(args.model)
    base = tempfile.mkdtemp(prefix="served_edit_")
    paths = {"before (no propagation)": export_saved_model(model, os.path.join(base, "a", "1"),
                                                           propagate=False),
             "after (propagation)": export_saved_model(model, os.path.join(base, "b", "1"))}
    edits = {name: tf.saved_model.load(path).signatures["edit"] for name, path in paths.items()}

    print("\n| photo | working res. | before wall s | after wall s | ratio | before CPU s "
          "| after CPU s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in SIZES:
        request = _request(size)
        times = {name: [] for name in edits}
        for name, edit in edits.items():  # warm-up (tracing of the loaded functions)
            edit(**request)
        for _ in range(args.repeats):
            for name, edit in edits.items():
                times[name].append(_timed(lambda: edit(**request)))
        before, after = (np.median(np.array(times[name]), axis=0) for name in edits)
        work = tuple(int(v) for v in hints.propagation_shape(size[1], size[0]))
        print(f"| {size[0]}x{size[1]} | {work[1]}x{work[0]} | {before[0]:.2f} | {after[0]:.2f} "
              f"| {after[0] / before[0]:.2f}x | {before[1]:.2f} | {after[1]:.2f} "
              f"| {after[1] / before[1]:.2f}x |")

    _propagation_table(args.repeats)

    sizes = {name: _folder_bytes(path) for name, path in paths.items()}
    print("\nSavedModel size: " + ", ".join(f"{name} {value / 1e6:.3f} MB"
                                            for name, value in sizes.items())
          + f" ({(sizes['after (propagation)'] - sizes['before (no propagation)']) / 1e3:+.0f} kB)")
    print("load average at end:", " ".join(f"{v:.1f}" for v in os.getloadavg()))


def _propagation_table(repeats):
    """The propagation alone, for every local term (`hints.LOCAL_TERMS`, the default first): the
    SavedModel's TF solver vs the API's sparse LU."""
    terms = [hints.PROPAGATION_LOCAL] + [
        t for t in hints.LOCAL_TERMS if t != hints.PROPAGATION_LOCAL]
    print("\n| photo | local term | TF solver wall s | TF CPU s | BiCGSTAB iterations "
          "| sparse LU wall s | LU CPU s | TF / LU wall | max abs diff (model units) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in SIZES:
        for term in terms:
            _propagation_row(size, term, repeats)


def _propagation_row(size, term, repeats):
    """One row of `_propagation_table`: `size` (width, height), local term `term`."""
    rng = np.random.default_rng(0)
    traced = tf.function(lambda *args: hints.propagation_correction(*args, local=term),
                         autograph=False)
    rgb = _photo(size)
    lightness = color.lightness(tf.image.convert_image_dtype(rgb, tf.float32))[..., 0].numpy()
    ab_small = rng.uniform(-0.2, 0.2, (1, 64, 64, 2)).astype(np.float32)
    points = (np.array(POINTS) * size).astype(np.int32)
    chroma = rng.uniform(-0.5, 0.5, (len(POINTS), 2)).astype(np.float32)
    traced(ab_small, lightness, points, chroma)  # tracing
    tf_times, lu_times = [], []
    for _ in range(repeats):
        tf_times.append(_timed(lambda: traced(ab_small, lightness, points, chroma).numpy()))
        lu_times.append(_timed(lambda: hints.Propagation(lightness, local=term).correction(
            ab_small, points, chroma)))
    got = traced(ab_small, lightness, points, chroma).numpy()
    propagation = hints.Propagation(lightness, local=term)
    want = propagation.correction(ab_small, points, chroma)
    mask, targets = propagation.hint_mask(points, chroma)
    prior = hints._prior(ab_small, propagation.lightness)
    _, iterations = tf.function(hints.propagation_solve, autograph=False)(
        hints.local_stencil(propagation.lightness, term), prior, mask, targets,
        weight=hints.propagation_weight(term))
    tf_median, lu_median = np.median(tf_times, axis=0), np.median(lu_times, axis=0)
    print(f"| {size[0]}x{size[1]} | {term} | {tf_median[0]:.2f} | {tf_median[1]:.2f} "
          f"| {int(iterations)} | {lu_median[0]:.2f} | {lu_median[1]:.2f} "
          f"| {tf_median[0] / lu_median[0]:.2f}x | {np.abs(got - want).max():.1e} |")


if __name__ == "__main__":
    main()
