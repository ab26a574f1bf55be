"""The served edit's grid solver: dense Cholesky (before) against conjugate gradients (after).

    .venv/bin/python benchmarks/served_edit_solver.py [--model default|PATH.keras] [--repeats 5] \
        [--sizes 256x256 1024x768] [--saved-model] [--no-breakdown]

A served edit is stateless: every request solves the grid system of its photo anew. With
`edit_solver="cholesky"` (before) the request forms (I - S)^T (I - S) densely (a 4096^3 product at
64 x 64) and factors it; with "cg" (after, `export.signatures.EDIT_SOLVER`) it runs the model's
preconditioned conjugate gradients on products with S. Both `ServingModule`s are built from the
same loaded model and their `edit` / `edit_links` functions (the SavedModel's signatures; with
`--saved-model` both are exported and loaded back with `tf.saved_model.load`) are called
alternately, request by request, so a change of the machine's load hits both. Rows: median wall
and process CPU seconds per request, the ratios after / before, and how far the two answers' PNGs
are apart (largest difference in 8-bit levels over the pixels and channels, and the share of
pixels more than one level apart).

Then (unless `--no-breakdown`) where a request's time goes: the stages of one `edit` request
timed separately as traced functions (median wall and CPU seconds): the similarity S, the grid
solve with each solver (`GCRFColorizer.edit`, S given), and the full-resolution finish
(`hints.finish_edit` with the TensorFlow propagation). The load average is printed at the start
and the end: on this project's shared 2-core machine wall times follow the load, CPU times much
less.
"""

import argparse
import io
import os
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
POINTS = [(0.3, 0.3), (0.7, 0.6), (0.5, 0.85)]
COLORS = [(220, 30, 30), (20, 40, 200), (30, 180, 40)]
LINK = (0.1, 0.1, 0.9, 0.8)
SOLVERS = ("cholesky", "cg")  # before, after


def _size(text):
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def _photo(size):
    return np.asarray(Image.open(PHOTO).convert("RGB").resize(size, Image.BICUBIC))


def _requests(size):
    """`{row label: (signature, inputs)}`: points only, on sample 0, points and a link."""
    png = tf.io.encode_png(_photo(size)).numpy()
    edit = dict(image_bytes=tf.constant([png]), points=tf.constant([POINTS], tf.float32),
                colors=tf.constant([COLORS], tf.uint8), num_points=tf.constant([len(POINTS)]),
                seed=tf.constant([0], tf.int64), from_sample=tf.constant([-1]))
    return {
        "edit, 3 points": ("edit", edit),
        "edit, 3 points on sample 0": ("edit", {**edit, "from_sample": tf.constant([0])}),
        "edit_links, 3 points + 1 link": ("edit_links", {
            **edit, "links": tf.constant([[LINK]], tf.float32), "num_links": tf.constant([1])}),
    }


def _timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def _pixels(png):
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def _signatures(model, saved_model):
    """`{solver: function(signature name) -> callable}` of the two `ServingModule`s (each
    function keeps its module alive: a traced method holds its module only weakly)."""
    from tfgcrf.export.saved_model import export_saved_model
    from tfgcrf.export.signatures import ServingModule

    found = {}
    for solver in SOLVERS:
        if saved_model:
            path = export_saved_model(model, os.path.join(tempfile.mkdtemp(prefix="edit_solver_"),
                                                          solver, "1"), edit_solver=solver)
            loaded = tf.saved_model.load(path)
            found[solver] = lambda name, loaded=loaded: loaded.signatures[name]
        else:
            module = ServingModule(model, 8, edit_solver=solver)
            found[solver] = lambda name, module=module: getattr(module, name)
    return found


def _request_table(signatures, sizes, repeats):
    print("\n| photo | request | before (cholesky) wall s | after (cg) wall s | after / before "
          "| before CPU s | after CPU s | after / before | max diff (levels) | pixels > 1 level |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        for label, (name, inputs) in _requests(size).items():
            answers, times = {}, {solver: [] for solver in SOLVERS}
            for solver in SOLVERS:  # warm-up (tracing, first-call allocations)
                answers[solver] = signatures[solver](name)(**inputs)["colorized_bytes"][0].numpy()
            for _ in range(repeats):
                for solver in SOLVERS:
                    _, spent = _timed(lambda: signatures[solver](name)(**inputs)[
                        "colorized_bytes"].numpy())
                    times[solver].append(spent)
            before, after = (np.median(np.array(times[solver]), axis=0) for solver in SOLVERS)
            difference = np.abs(_pixels(answers["cg"]) - _pixels(answers["cholesky"]))
            print(f"| {size[0]}x{size[1]} | {label} | {before[0]:.2f} | {after[0]:.2f} "
                  f"| {after[0] / before[0]:.2f}x | {before[1]:.2f} | {after[1]:.2f} "
                  f"| {after[1] / before[1]:.2f}x | {difference.max()} "
                  f"| {np.mean(difference.max(-1) > 1):.4%} |", flush=True)


def _breakdown(model, sizes, repeats):
    """The stages of one 3-point `edit` request, each traced and timed on its own."""
    from tfgcrf.models.points import points_to_grid

    size_of_grid = int(model.model_config.image_size)
    similarity = tf.function(model.similarity)
    solve = {solver: tf.function(lambda l, mask, target, s, solver=solver: model.edit(
        l, mask, target, similarity=s, solver=solver)) for solver in SOLVERS}
    finish = tf.function(lambda ab, lightness, pixels, chroma: hints.finish_edit(
        ab, lightness, pixels, chroma, size_of_grid,
        correct=lambda p, c: hints.propagation_correction(ab, lightness, p, c)))
    print("\n| photo | stage of an edit request (3 points) | wall s | CPU s |")
    print("| --- | --- | ---: | ---: |")
    for size in sizes:
        lightness, l_small = model.preprocessor(tf.constant(_photo(size)))
        _, chroma = color.rgb_to_model(tf.constant(COLORS, tf.uint8))
        mask, target = points_to_grid(tf.constant([POINTS], tf.float32), chroma[None],
                                      tf.constant([len(POINTS)]), size_of_grid)
        s = similarity(l_small)
        ab = solve["cg"](l_small, mask, target, s)
        shape = tf.shape(lightness)
        pixels = tf.cast(tf.floor(tf.constant(POINTS) * tf.cast(
            tf.stack([shape[1], shape[0]]), tf.float32)), tf.int32)
        stages = [("similarity S (structure branch)", lambda: similarity(l_small)),
                  *((f"grid solve, {solver} (GCRFColorizer.edit, S given)",
                     lambda solver=solver: solve[solver](l_small, mask, target, s))
                    for solver in SOLVERS),
                  ("full-resolution finish with the propagation (hints.finish_edit)",
                   lambda: finish(ab, lightness, pixels, chroma))]
        for label, call in stages:
            call()  # tracing
            spent = np.median([_timed(lambda: call().numpy())[1] for _ in range(repeats)],
                              axis=0)
            print(f"| {size[0]}x{size[1]} | {label} | {spent[0]:.2f} | {spent[1]:.2f} |",
                  flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="preset name or .keras file")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per row and solver")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(256, 256), (1024, 768)],
                        help="photo sizes WxH (the astronaut photo resized)")
    parser.add_argument("--saved-model", action="store_true",
                        help="export both and call the loaded SavedModels' signatures")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the stage table")
    args = parser.parse_args(argv)

    from tfgcrf.models.loading import load_model

    print("load average at start:", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    model = load_model(args.model)
    _request_table(_signatures(model, args.saved_model), args.sizes, args.repeats)
    if not args.no_breakdown:
        _breakdown(model, args.sizes, args.repeats)
    print("load average at end:", " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
