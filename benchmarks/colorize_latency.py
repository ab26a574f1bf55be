"""Warm wall time of `Colorizer.colorize` (8 samples), `Colorizer.edit` and an edit session on a 1024x768 photo (or --size).

Splits them into their stages (model network, similarity S, G-CRF solve, chroma upsampling,
recombination; for the session the grid's Woodbury update and the full-resolution finish) and
compares with baselines measured in the same run: the VAE-MDN without the G-CRF, plain bilinear
upsampling with per-channel gamut clipping, the stateless edit and the stateless full-resolution
finish, and the session's previous data flow (the propagation's correction resized to the photo in
numpy and passed in at full resolution). Session rows also give the process CPU time (less inflated
than the wall time when other processes share the cores); the load average is printed at the start
and the end.

    .venv/bin/python benchmarks/colorize_latency.py [--model default|PATH] [--repeats 5] [--edit-only]
        [--size 4000x3000] [--no-terms]

`--size` resizes the bundled photo (e.g. 4000x3000, a 12-MP camera photo; the points scale with
it); `--no-terms` leaves out the rows of the propagation's other local term (a session each).

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

from tfgcrf import color, fullres, hints  # noqa: E402
from tfgcrf.colorizer import Colorizer  # noqa: E402
from tfgcrf.errors import UserError  # noqa: E402

WIDTH, HEIGHT = 1024, 768
NUM_SAMPLES = 8


def _photo(width=WIDTH, height=HEIGHT):
    """The bundled example photo resized to `width` x `height` (1024x768 by default)."""
    from PIL import Image

    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    with importlib.resources.as_file(examples.joinpath("pagoda.jpg")) as path:
        image = Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC)
    return np.asarray(image)


def _size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def _colorizer(spec):
    try:
        return Colorizer.load(spec), f"model: {spec}"
    except UserError as err:
        from tfgcrf.config import ModelConfig
        from tfgcrf.models import GCRFColorizer

        note = f"model: UNTRAINED default architecture ({err})"
        return Colorizer(GCRFColorizer(ModelConfig())), note


def _time(function, repeats, cpu=False):
    """Median wall time in ms of `function()` after one warm-up call (and, with `cpu`, the median
    process CPU time in ms: all threads, close to the wall time on an idle machine for the
    single-threaded XLA kernels, and much less inflated than the wall time by other processes)."""
    function()
    walls, cpus = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        # Results are tensors or arrays; make sure the work is done.
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        walls.append((time.perf_counter() - start) * 1000.0)
        cpus.append((time.process_time() - start_cpu) * 1000.0)
    return (statistics.median(walls), statistics.median(cpus)) if cpu else statistics.median(walls)


def _load():
    return "load average " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + " (1/5/15 min)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="preset name or .keras file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--edit-only", action="store_true",
                        help="only the edit rows (stateless edit and session), not colorize")
    parser.add_argument("--size", type=_size, default=(WIDTH, HEIGHT),
                        help="photo size WIDTHxHEIGHT (default 1024x768), e.g. 4000x3000")
    parser.add_argument("--no-terms", action="store_true",
                        help="leave out the rows of the propagation's other local term")
    args = parser.parse_args()
    width, height = args.size

    load_before = _load()
    colorizer, note = _colorizer(args.model)
    model = colorizer.model
    config = model.model_config
    rgb = _photo(width, height)
    lightness, l_small = colorizer._prepare(rgb)
    size = config.image_size
    pixels = size * size
    similarity = colorizer._similarity(l_small)
    r = args.repeats

    def fresh(call):
        """Times `call` on a photo the colorizer has not seen (its kept S forgotten)."""
        def run():
            colorizer._last = None
            return call()
        return run

    rows = []  # (name, ms, cpu ms or None, index of the row it is a share of)
    if not args.edit_only:
        rows += _colorize_rows(colorizer, rgb, lightness, l_small, similarity, fresh, r)

    # One stateless edit: two points, from the points alone.
    def scaled(x, y):  # a place of the 1024x768 photo on this one
        return int(x * width / WIDTH), int(y * height / HEIGHT)

    points = [scaled(800, 100), scaled(200, 650)]
    colors = [(250, 150, 60), (40, 110, 40)]
    points_rel = colorizer._relative_points(points, height, width)
    chroma = colorizer._point_chroma(colors, len(points))
    from tfgcrf.models import points_to_grid

    # What `Colorizer.edit` solves on the grid: the photo's edit system factored once
    # (`edit_session_grid`, sparse/dense factor of the prior system), then the points' cells
    # answered on that factor (`EditSession.solve`), as `tfgcrf.edit_session.EditSession` does.
    mask, target = points_to_grid(points_rel[None], chroma[None], [len(points)], size)
    cells = np.flatnonzero(tf.reshape(mask, [pixels]).numpy())
    cell_colors = tf.gather(tf.reshape(target, [pixels, 2]), cells)

    def grid_solve():
        return colorizer.edit_session_grid(l_small, similarity=similarity).solve(
            cells, cell_colors)
    edit = len(rows)
    rows += [
        ("edit, end to end (Colorizer.edit, 2 points)",
         *_time(fresh(lambda: colorizer.edit(rgb, points, colors)), r, cpu=True), edit),
        ("  similarity S (structure branch)", _time(lambda: colorizer._similarity(l_small), r), None, edit),
        ("  G-CRF: the photo's edit system factored + 2 points solved (model.edit_session)",
         _time(grid_solve, r), None, edit),
    ]
    again = _time(lambda: colorizer.edit(rgb, points, colors), r)
    rows.append(("  edit again on the same photo (S kept from the last call)", again, None, edit))

    # The interactive path: one session, then one more point at a new place each time (a new
    # grid pixel: one new Woodbury column), answered at full resolution.
    session_ms = _time(lambda: colorizer.session(rgb), r)
    session = colorizer.session(rgb)
    for (x, y), rgb_color in zip(points, colors):
        session.add_point(x, y, rgb_color)
    session.result()
    places = iter([scaled(40 + 37 * i % 940, 60 + 53 * i % 650) for i in range(20 * r + 20)])

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
    guide = session._guide
    no_links = np.zeros([0, 2, 2], np.int32)
    # What the session passes: the correction at the propagation's working resolution, resized to
    # the photo inside the upsampling's XLA kernel; the previous data flow resized it in numpy.
    correction = session._propagation.correction(grid, point_px, point_ab, at_photo=False)
    correction_at_photo = session._propagation.correction(grid, point_px, point_ab)

    def propagation_update(at_photo=False):  # the session's points + one at a new place
        place = np.array([next(places)], np.int32)
        return session._propagation.correction(grid, np.concatenate([point_px, place]),
                                               np.concatenate([point_ab, point_ab[:1]]),
                                               at_photo=at_photo)

    session_id = tf.constant(session._id, tf.int64)

    def finish(correction_):
        return colorizer._finish_edit[session._jit](grid, lightness, point_px, point_ab, guide,
                                                    no_links, correction_, session_id)

    def previous_flow():  # the correction resized to the photo in numpy, then the finish
        return finish(propagation_update(at_photo=True))

    def current_flow():
        return finish(propagation_update())

    ab_full = fullres.upsample_guided(grid, guide, jit=True, extra=correction[None])
    cell = hints.grid_cell(height, width, size)
    refine = tf.function(lambda ab, l, p, c: hints.refine_at_points(ab, l, p, c, cell), autograph=False)
    stateless_finish = tf.function(
        lambda ab, l, p, c: hints.finish_edit(ab, l, p, c, size), autograph=False)
    one = len(rows) + 1
    rows += [
        ("edit session: create (Colorizer.session: S, factors, guide)", session_ms, None, None),
        ("edit session: one more point, end to end (add + result)",
         *_time(one_more_point, r, cpu=True), one),
        ("  grid: Woodbury update, one new column (add + grid_result)",
         *_time(grid_update, r, cpu=True), one),
        ("  propagation (hints.Propagation, 128^2 px): one new column + solve",
         *_time(propagation_update, r, cpu=True), one),
        ("  full resolution: upsampling + refinement + recombination",
         *_time(lambda: finish(correction), r, cpu=True), one),
        ("    upsampling + the correction resized (XLA, the session's guide statistics)",
         *_time(lambda: fullres.upsample_guided(grid, guide, jit=True, extra=correction[None]),
                r, cpu=True), one),
        ("    point refinement (hints.refine_at_points)",
         *_time(lambda: refine(ab_full[0], lightness, point_px, point_ab), r, cpu=True), one),
        ("    recombination: L-preserving gamut fit + RGB (XLA)",
         *_time(lambda: fullres.compose(lightness, ab_full, jit=True), r, cpu=True), one),
        ("  stateless full resolution (guide statistics, no XLA)",
         *_time(lambda: stateless_finish(grid, lightness, point_px, point_ab), r, cpu=True), one),
        ("  propagation + full resolution, as the session does",
         *_time(current_flow, r, cpu=True), one),
        ("  the same, previous flow (correction resized in numpy, passed in)",
         *_time(previous_flow, r, cpu=True), one),
    ]
    # The propagation's local terms side by side (`hints.LOCAL_TERMS`, the default first): its
    # factorization (paid once per photo, at the session's first result) and one more point of a
    # session using it (the same points and places as above).
    terms = [hints.PROPAGATION_LOCAL] + [
        t for t in hints.LOCAL_TERMS if t != hints.PROPAGATION_LOCAL and not args.no_terms]
    by_term = []  # (label, index of its one-more-point row)
    for term in terms:
        label = f"`{term}`" + (", the default" if term == hints.PROPAGATION_LOCAL else ", option")
        other = colorizer.session(rgb)
        for (x, y), rgb_color in zip(points, colors):
            other.add_point(x, y, rgb_color)
        other._propagation = hints.Propagation(np.asarray(lightness), local=term)
        other.result()

        def more(session_=other):
            key = session_.add_point(*next(places), (200, 60, 60))
            image = session_.result()
            session_.remove_point(key)
            return image

        def factor(term_=term):
            return hints.Propagation(np.asarray(lightness), local=term_).correction(
                grid, point_px, point_ab)

        by_term.append((label, len(rows) + 1))
        rows += [
            (f"propagation {label}: factor (once per photo, first result)",
             *_time(factor, r, cpu=True), None),
            ("  session with it: one more point, end to end", *_time(more, r, cpu=True), None),
        ]
    load_after = _load()

    print(f"{note}; grid {size}x{size}, photo {width}x{height}, {NUM_SAMPLES} samples, median of {r} "
          f"warm runs, {os.cpu_count()} CPU cores; {load_before} at the start, {load_after} at the end")
    print(f"| {'stage':<64} | {'wall ms':>8} | {'CPU ms':>8} | {'share':>6} |")
    print(f"| {'-' * 64} | {'-' * 8}:| {'-' * 8}:| {'-' * 6}:|")
    for name, ms, cpu_ms, total in rows:
        cpu_text = "" if cpu_ms is None else f"{cpu_ms:8.1f}"
        share = "" if total is None else f"{100 * ms / rows[total][1]:5.0f}%"
        print(f"| {name:<64} | {ms:8.1f} | {cpu_text:>8} | {share:>6} |")
    by_name = {name.strip(): (ms, cpu_ms) for name, ms, cpu_ms, _ in rows}
    if not args.edit_only:
        guided = by_name["upsampling: guided, 8 samples"][0] + by_name[
            "recombination: L-preserving gamut fit + RGB (XLA)"][0]
        print(f"\nguided upsampling + L-preserving recombination vs the bilinear + clip baseline: "
              f"{guided / by_name['baseline: bilinear upsampling + clip + RGB'][0]:.2f}x the time")
        print(f"G-CRF colorize (model + S + solve) vs the VAE-MDN baseline: "
              f"{by_name['model + G-CRF together (GCRFColorizer.sample)'][0] / by_name['model: trunk + MDN + decoder (VAE-MDN baseline)'][0]:.2f}x the time")
    more_ms, more_cpu = rows[one][1], rows[one][2]
    edit_ms, edit_cpu = rows[edit][1], rows[edit][2]
    full_ms = rows[one + 3][1]
    stateless_ms = rows[one + 7][1]
    print(f"\none more point in a session vs the stateless 2-point edit (same process): "
          f"{more_ms / edit_ms:.3f}x the wall time, {more_cpu / edit_cpu:.3f}x the CPU time")
    print(f"session full resolution vs the stateless full resolution (same grid answer): "
          f"{full_ms / stateless_ms:.2f}x the wall time")
    current, previous = rows[one + 8], rows[one + 9]
    print(f"propagation + full resolution, session's flow vs the previous flow (same process): "
          f"{current[1] / previous[1]:.2f}x the wall time, {current[2] / previous[2]:.2f}x the CPU "
          f"time")
    print(f"one more point at {width}x{height}: {more_ms:.0f} ms wall, {more_cpu:.0f} ms CPU "
          f"(target at 1024x768: 150 ms)")
    for label, index in by_term:
        print(f"one more point, propagation {label}: {rows[index][1]:.0f} ms wall, "
              f"{rows[index][2]:.0f} ms CPU (target 150 ms)")


def _colorize_rows(colorizer, rgb, lightness, l_small, similarity, fresh, r):
    """`Colorizer.colorize` (8 samples) and its stages, with the same-run baselines."""
    model = colorizer.model
    config = model.model_config
    seed = tf.constant(0, tf.int64)
    mode = "top" if NUM_SAMPLES <= config.num_components else "draw"
    size = config.image_size
    pixels = size * size
    unary_only = tf.function(lambda l: model.sample(l, NUM_SAMPLES, seed, mode, use_gcrf=False),
                             autograph=False)
    alpha = unary_only(l_small)[0]
    unary = tf.reshape(tf.transpose(alpha, [0, 2, 3, 1, 4]), [1, pixels, NUM_SAMPLES * 2])
    solve = tf.function(lambda s, u, w: model.crf(s, u, w, initial=u), autograph=False)
    sample_weights = tf.fill([1, pixels], config.beta_train)
    ab_small = colorizer._sample(l_small, NUM_SAMPLES, seed, mode)[0][0]
    ab_full = fullres.upsample_chroma(ab_small, lightness, jit=True)
    compose = tf.function(lambda l, ab: fullres.compose(l, ab, jit=True), autograph=False)

    @tf.function(autograph=False)
    def bilinear_and_clip(ab, l_full):
        ab = tf.image.resize(ab, tf.shape(l_full))
        l_full = tf.broadcast_to(l_full[tf.newaxis, :, :, tf.newaxis], tf.concat([tf.shape(ab)[:-1], [1]], 0))
        return color.to_uint8(color.model_to_rgb(l_full / color.L_SCALE, ab))

    rows = [
        ("colorize, end to end (Colorizer.colorize)", _time(fresh(lambda: colorizer.colorize(rgb, NUM_SAMPLES)), r)),
        ("  prepare: lightness + grid input", _time(lambda: colorizer._prepare(rgb), r)),
        ("  model: trunk + MDN + decoder (VAE-MDN baseline)", _time(lambda: unary_only(l_small), r)),
        ("  similarity S (structure branch)", _time(lambda: colorizer._similarity(l_small), r)),
        (f"  G-CRF solve ({config.solver}, {NUM_SAMPLES * 2} right-hand sides)",
         _time(lambda: solve(similarity, unary, sample_weights), r)),
        ("  model + G-CRF together (GCRFColorizer.sample)",
         _time(lambda: colorizer._sample(l_small, NUM_SAMPLES, seed, mode), r)),
        ("  upsampling: guided, 8 samples",
         _time(lambda: fullres.upsample_chroma(ab_small, lightness, jit=True), r)),
        ("  recombination: L-preserving gamut fit + RGB (XLA)", _time(lambda: compose(lightness, ab_full), r)),
        ("  baseline: bilinear upsampling + clip + RGB", _time(lambda: bilinear_and_clip(ab_small, lightness), r)),
    ]
    return [(name, ms, None, 0) for name, ms in rows]


if __name__ == "__main__":
    main()
