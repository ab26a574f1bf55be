"""Warm wall time of `Colorizer.colorize` (8 samples), `Colorizer.edit` and an edit session on a 1024x768 photo.

Splits both into their stages (model network, similarity S, G-CRF solve, chroma upsampling,
recombination) and compares with baselines measured in the same run: the VAE-MDN without the
G-CRF, and plain bilinear upsampling with per-channel gamut clipping.

    .venv/bin/python benchmarks/colorize_latency.py [--model default|PATH] [--repeats 5]

Without an installed preset or model file it times an untrained model of the default
architecture and says so (the timings do not depend on the weights).
"""

import argparse
import importlib.resources
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfgcrf import color, fullres  # noqa: E402
from tfgcrf.colorizer import Colorizer  # noqa: E402
from tfgcrf.errors import UserError  # noqa: E402
from tfgcrf.layers import edit_terms  # noqa: E402

WIDTH, HEIGHT = 1024, 768
NUM_SAMPLES = 8


def _photo():
    """The bundled example photo resized to 1024x768."""
    from PIL import Image

    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    with importlib.resources.as_file(examples.joinpath("pagoda.jpg")) as path:
        image = Image.open(path).convert("RGB").resize((WIDTH, HEIGHT), Image.BICUBIC)
    return np.asarray(image)


def _colorizer(spec):
    try:
        return Colorizer.load(spec), f"model: {spec}"
    except UserError as err:
        from tfgcrf.config import ModelConfig
        from tfgcrf.models import GCRFColorizer

        note = f"model: UNTRAINED default architecture ({err})"
        return Colorizer(GCRFColorizer(ModelConfig())), note


def _time(function, repeats):
    """Median wall time in ms of `function()` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        # Results are tensors or arrays; make sure the work is done.
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="preset name or .keras file")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    colorizer, note = _colorizer(args.model)
    model = colorizer.model
    config = model.model_config
    rgb = _photo()
    lightness, l_small = colorizer._prepare(rgb)
    seed = tf.constant(0, tf.int64)
    mode = "top" if NUM_SAMPLES <= config.num_components else "draw"
    size = config.image_size
    pixels = size * size

    unary_only = tf.function(lambda l: model.sample(l, NUM_SAMPLES, seed, mode, use_gcrf=False),
                             autograph=False)
    alpha = unary_only(l_small)[0]
    unary = tf.reshape(tf.transpose(alpha, [0, 2, 3, 1, 4]), [1, pixels, NUM_SAMPLES * 2])
    similarity = colorizer._similarity(l_small)
    solve = tf.function(lambda s, u, w: model.crf(s, u, w, initial=u), autograph=False)
    edit_crf = model.crf_solver(config.edit_solver)
    edit_solve = tf.function(lambda s, u, w, e: edit_crf(s, u, w, extra=e), autograph=False)
    edit_extra = edit_terms.edit_precision(l_small)
    sample_weights = tf.fill([1, pixels], config.beta_train)
    ab_small = colorizer._sample(l_small, NUM_SAMPLES, seed, mode)[0][0]
    ab_full = fullres.upsample_chroma(ab_small, lightness)
    upsample = tf.function(fullres.upsample_chroma, autograph=False)
    compose = tf.function(lambda l, ab: fullres.compose(l, ab, jit=True), autograph=False)

    @tf.function(autograph=False)
    def bilinear_and_clip(ab, l_full):
        ab = tf.image.resize(ab, tf.shape(l_full))
        l_full = tf.broadcast_to(l_full[tf.newaxis, :, :, tf.newaxis], tf.concat([tf.shape(ab)[:-1], [1]], 0))
        return color.to_uint8(color.model_to_rgb(l_full / color.L_SCALE, ab))

    # One edit: two points, from the points alone.
    points, colors = [(800, 100), (200, 650)], [(250, 150, 60), (40, 110, 40)]
    points_rel = colorizer._relative_points(points, HEIGHT, WIDTH)
    chroma = colorizer._point_chroma(colors, len(points))
    from tfgcrf.models import points_to_grid

    mask, target = points_to_grid(points_rel[None], chroma[None], [len(points)], size)
    edit_weights = config.beta_edit * tf.reshape(mask, [1, pixels])
    edit_unary = tf.reshape(target, [1, pixels, 2])
    edit_small = colorizer._edit(l_small, mask, target, None)

    def fresh(call):
        """Times `call` on a photo the colorizer has not seen (its kept S forgotten)."""
        def run():
            colorizer._last = None
            return call()
        return run

    r = args.repeats
    rows = [
        ("colorize, end to end (Colorizer.colorize)", _time(fresh(lambda: colorizer.colorize(rgb, NUM_SAMPLES)), r)),
        ("  prepare: lightness + grid input", _time(lambda: colorizer._prepare(rgb), r)),
        ("  model: trunk + MDN + decoder (VAE-MDN baseline)", _time(lambda: unary_only(l_small), r)),
        ("  similarity S (structure branch)", _time(lambda: colorizer._similarity(l_small), r)),
        (f"  G-CRF solve ({config.solver}, {NUM_SAMPLES * 2} right-hand sides)",
         _time(lambda: solve(similarity, unary, sample_weights), r)),
        ("  model + G-CRF together (GCRFColorizer.sample)",
         _time(lambda: colorizer._sample(l_small, NUM_SAMPLES, seed, mode), r)),
        ("  upsampling: guided, 8 samples", _time(lambda: upsample(ab_small, lightness), r)),
        ("  recombination: L-preserving gamut fit + RGB (XLA)", _time(lambda: compose(lightness, ab_full), r)),
        ("  baseline: bilinear upsampling + clip + RGB", _time(lambda: bilinear_and_clip(ab_small, lightness), r)),
        ("edit, end to end (Colorizer.edit, 2 points)", _time(fresh(lambda: colorizer.edit(rgb, points, colors)), r)),
        ("  similarity S (structure branch)", _time(lambda: colorizer._similarity(l_small), r)),
        (f"  G-CRF solve ({config.edit_solver}, 2 right-hand sides)",
         _time(lambda: edit_solve(similarity, edit_unary, edit_weights, edit_extra), r)),
        ("  upsampling + recombination, 1 image",
         _time(lambda: colorizer._to_full(edit_small, lightness), r)),
    ]
    # The interactive path: one session, then one more point at a new place each time (a new
    # grid pixel: one new Woodbury column), answered at full resolution.
    session_ms = _time(lambda: colorizer.session(rgb), r)
    session = colorizer.session(rgb)
    for (x, y), rgb_color in zip(points, colors):
        session.add_point(x, y, rgb_color)
    session.result()
    places = iter([(40 + 37 * i % 940, 60 + 53 * i % 650) for i in range(10 * r + 10)])

    def one_more_point():
        key = session.add_point(*next(places), (200, 60, 60))
        image = session.result()
        session.remove_point(key)
        return image

    def grid_update():
        key = session.add_point(*next(places), (200, 60, 60))
        grid = session.grid_result()
        session.remove_point(key)
        return grid

    grid = session.grid_result()
    entries = list(session._points.values())
    point_px = np.array([xy for xy, _, _ in entries], np.int32)
    point_ab = np.array([ab for _, _, ab in entries], np.float32)
    rows += [
        ("edit session: create (Colorizer.session: S, prior, factors)", session_ms),
        ("edit session: one more point, end to end (add + result)", _time(one_more_point, r)),
        ("  grid: Woodbury update, one new column", _time(grid_update, r)),
        ("  full resolution: upsampling + point refinement + recombination (XLA)",
         _time(lambda: colorizer._finish_edit[True](grid, lightness, point_px, point_ab), r)),
    ]
    colorize_total, edit_total, session_total = rows[0][1], rows[9][1], rows[14][1]
    print(f"{note}; grid {size}x{size}, photo {WIDTH}x{HEIGHT}, {NUM_SAMPLES} samples ({mode}), "
          f"median of {r} warm runs, {os.cpu_count()} CPU cores")
    print(f"| {'stage':<58} | {'ms':>8} | {'share':>6} |")
    print(f"| {'-' * 58} | {'-' * 8}:| {'-' * 6}:|")
    for index, (name, ms) in enumerate(rows):
        total = colorize_total if index < 9 else edit_total if index < 13 else session_total
        print(f"| {name:<58} | {ms:8.1f} | {100 * ms / total:5.0f}% |")
    again = _time(lambda: colorizer.edit(rgb, points, colors), r)
    print(f"| {'edit again on the same photo (S kept from the last call)':<58} | {again:8.1f} | "
          f"{100 * again / edit_total:5.0f}% |")
    guided = rows[6][1] + rows[7][1]
    print(f"\nguided upsampling + L-preserving recombination vs the bilinear + clip baseline: "
          f"{guided / rows[8][1]:.2f}x the time")
    print(f"G-CRF colorize (model + S + solve) vs the VAE-MDN baseline: {rows[5][1] / rows[2][1]:.2f}x the time")
    print(f"one more point in a session vs a stateless 2-point edit: {rows[14][1] / edit_total:.3f}x "
          f"the time ({rows[14][1]:.0f} ms; target 150 ms)")


if __name__ == "__main__":
    main()
