"""G-CRF solver benchmark: lu (reference) vs cholesky vs cg, time, peak memory, error, scaling.

    .venv/bin/python benchmarks/gcrf_solvers.py [--sizes 32,48,64,96,128] [--lu-max-size 96]

Every case runs the real path through `tfgcrf.layers.gaussian_crf`, with S built from stand-in
pixel embeddings of real fixture photos (a bilateral (L, x, y) affinity written as a row-softmax of
query/key inner products, the form of the structure branch), so CG sees a realistic spectrum:
  * sample: one 64x64 image, N = 8 samples (K = 16 columns), beta = 5 on every pixel (the paper's
    test-time beta); timed from embeddings (S is built inside) to the G-CRF answer;
  * HOC step: forward + backward of the stage-2 training step, batch 8, beta = 1, 25 % of the
    pixels revealed, L2 loss on the G-CRF mean, gradients into the embeddings and the unary;
  * edit +1: 10 user points (beta = 5) solved, then one more point re-solved; `cg` warm-starts from
    the previous answer, `lu` refactors, an `EditSession` (Cholesky of the image's prior system
    cached) adds the point as a Woodbury update;
  * 128x128 sample path (P = 16384) and the scaling over sizes with fitted exponents in P.
Times are medians of `--repeats` runs after a warm-up run (one run for cases slower than 5 s); peak
memory is TensorFlow's CPU allocator high-water mark during the timed runs
(`tf.config.experimental.get_memory_info`), inputs included. Ratios use `lu` measured in this run.
"""

import argparse
import os
import pathlib
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from tfgcrf import color  # noqa: E402
from tfgcrf.layers.gaussian_crf import GaussianCRF  # noqa: E402
from tfgcrf.layers.gcrf_edit_session import EditSession  # noqa: E402

PHOTOS = pathlib.Path(__file__).parents[1] / "tests" / "data" / "photos"
EMBEDDING_DIM = 16
SPATIAL_SIGMA = 0.08  # of the image side
LIGHTNESS_SIGMA = 8.0  # L* units
SOLVERS = {
    "lu": dict(solver="lu"),
    "cholesky": dict(solver="cholesky"),
    "cg": dict(solver="cg"),
    "cg+jacobi": dict(solver="cg", preconditioner="jacobi"),
    "cg+two_level": dict(solver="cg", preconditioner="two_level"),
}
# The two-level setup (about four passes over S with 64 columns) only pays off when few pixels are
# revealed (training, edits), not on the sample path where CG needs 4 iterations anyway.
SAMPLE_SOLVERS = ["lu", "cholesky", "cg", "cg+jacobi"]
# The HOC step also runs CG at the looser tolerance a training config might pick, to show its error.
TRAINING_SOLVERS = {"cg+jacobi tol 1e-3": dict(solver="cg", preconditioner="jacobi", cg_tol=1e-3)}
SLOW_SECONDS = 5.0


def load_photos(count, size):
    """`count` fixture photos at size x size: model-unit gray l [B,P] and chroma ab [B,P,2]."""
    paths = sorted(PHOTOS.glob("*.png"))[:count]
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
                    for p in paths])
    l, ab = color.rgb_to_model(tf.constant(rgb))
    return tf.reshape(l, [count, size * size]), tf.reshape(ab, [count, size * size, 2])


def stand_in_embeddings(l, size):
    """[B, P, EMBEDDING_DIM]: (L, x, y) scaled by the affinity bandwidths, then zero channels."""
    y, x = np.mgrid[0:size, 0:size].reshape(2, -1) / (size * SPATIAL_SIGMA)
    position = tf.constant(np.stack([x, y], axis=-1), tf.float32)
    position = tf.broadcast_to(position, [l.shape[0], size * size, 2])
    features = [l[..., None] * color.L_SCALE / LIGHTNESS_SIGMA, position]
    padding = tf.zeros([l.shape[0], size * size, EMBEDDING_DIM - 3])
    return tf.concat(features + [padding], axis=-1)


def similarity_from_embeddings(embeddings):
    """Row-softmax of query/key inner products = exp(-|e_i - e_j|^2 / 2) normalized per row."""
    ones = tf.ones_like(embeddings[..., :1])
    queries = tf.concat([embeddings, ones], axis=-1)
    keys = tf.concat([embeddings, -0.5 * tf.reduce_sum(tf.square(embeddings), -1, keepdims=True)],
                     axis=-1)
    return tf.nn.softmax(tf.linalg.matmul(queries, keys, adjoint_b=True), axis=-1)


def noisy_samples(ab, num_samples, seed):
    """Stand-in decoder samples: the true chroma plus independent noise, stacked as K columns."""
    noise = tf.random.stateless_normal([num_samples] + ab.shape.as_list(), [seed, 0], stddev=0.1)
    return tf.concat(tf.unstack(ab[None] + noise), axis=-1)


def measure(fn, args, repeats):
    """Median wall and CPU seconds of fn(*args) after a warm-up run, TF allocator peak MiB, output.

    CPU seconds (all threads of this process) are reported next to wall time because the machine
    may be shared: they show the work a path does, independent of how much CPU it was given.
    """
    start = time.perf_counter()
    output = tf.nest.map_structure(np.asarray, fn(*args))
    first = time.perf_counter() - start
    tf.config.experimental.reset_memory_stats("CPU:0")
    times, cpu_times = [], []
    for _ in range(1 if first > SLOW_SECONDS else repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        output = tf.nest.map_structure(np.asarray, fn(*args))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    return Timing(statistics.median(times), statistics.median(cpu_times)), peak, output


class Timing:
    def __init__(self, wall, cpu):
        self.wall, self.cpu = wall, cpu

    def cells(self, baseline):
        """time, cpu time, and the wall-time speedup over `baseline` (a Timing or None)."""
        speedup = "n/a (no lu)" if baseline is None else f"{baseline.wall / self.wall:.1f}x"
        return f"{self.wall:.3g}", f"{self.cpu:.3g}", speedup


def sample_path(solver_kwargs):
    layer = GaussianCRF(**solver_kwargs)

    @tf.function(jit_compile=False)  # tf.linalg.lu has no XLA kernel
    def run(embeddings, unary, weights):
        x, info = layer(similarity_from_embeddings(embeddings), unary, weights, return_info=True)
        return x, info["iterations"]

    return run


def training_step(solver_kwargs):
    layer = GaussianCRF(**solver_kwargs)

    @tf.function(jit_compile=False)
    def run(embeddings, unary, weights, target):
        with tf.GradientTape() as tape:
            tape.watch([embeddings, unary])
            x, info = layer(similarity_from_embeddings(embeddings), unary, weights,
                            return_info=True)
            loss = tf.reduce_mean(tf.square(x - target))
        gradients = tape.gradient(loss, [embeddings, unary])
        return x, info["iterations"], gradients

    return run


def edit_solve(solver_kwargs):
    layer = GaussianCRF(**solver_kwargs)

    @tf.function(jit_compile=False)
    def run(similarity, unary, weights, initial):
        x, info = layer(similarity, unary, weights, initial=initial, return_info=True)
        return x, info["iterations"]

    return run


def relative_error(x, reference):
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


class Table:
    def __init__(self, title, columns):
        self.title, self.columns, self.rows = title, columns, []

    def add(self, *cells):
        self.rows.append([c if isinstance(c, str) else f"{c:.3g}" for c in cells])
        print("  " + " | ".join(self.rows[-1]), flush=True)

    def markdown(self):
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in self.rows])


def run_sample_case(size, num_samples, solvers, repeats, table, label):
    """The N-sample inference path for one image; returns {solver: (Timing, peak MiB)}."""
    l, ab = load_photos(1, size)
    embeddings = stand_in_embeddings(l, size)
    unary = noisy_samples(ab, num_samples, seed=1)
    weights = tf.fill([1, size * size], 5.0)
    results, reference = {}, None
    for name in solvers:
        timing, peak, (x, iterations) = measure(sample_path(SOLVERS[name]),
                                                (embeddings, unary, weights), repeats)
        reference = x if name == "lu" else reference
        results[name] = (timing, peak)
        error = "-" if reference is None else relative_error(x, reference)
        lu_timing = results["lu"][0] if "lu" in results else None
        table.add(label, name, *timing.cells(lu_timing), peak, error, str(int(iterations.max())))
    return results


def run_training_case(size, batch, solvers, repeats, table):
    l, ab = load_photos(batch, size)
    embeddings = stand_in_embeddings(l, size)
    unary = noisy_samples(ab, 1, seed=2)
    revealed = tf.random.stateless_uniform([batch, size * size], [3, 0]) < 0.25
    weights = tf.cast(revealed, tf.float32)  # beta = 1 during training
    reference, lu_timing = None, None
    for name in solvers:
        timing, peak, (x, iterations, gradients) = measure(
            training_step(TRAINING_SOLVERS.get(name, SOLVERS.get(name))),
            (embeddings, unary, weights, ab), repeats)
        if name == "lu":
            reference, lu_timing = (x, gradients), timing
        x_error = relative_error(x, reference[0])
        grad_error = max(relative_error(g, r) for g, r in zip(gradients, reference[1]))
        table.add(f"HOC step {size}x{size}, batch {batch}", name, *timing.cells(lu_timing), peak,
                  f"{x_error:.2g} (grad {grad_error:.2g})", str(int(iterations.max())))


def run_edit_case(size, repeats, table):
    """10 points, then one more: lu re-solves from scratch, cg cold vs warm from the 10-point x."""
    l, ab = load_photos(1, size)
    similarity = similarity_from_embeddings(stand_in_embeddings(l, size))
    rng = np.random.default_rng(4)
    points, spare_points = np.split(rng.choice(size * size, 11 + repeats, replace=False), [11])
    mask = np.zeros([1, size * size], np.float32)
    mask[0, points[:10]] = 1.0
    weights = 5.0 * tf.constant(mask)
    unary = ab * tf.constant(mask)[..., None]
    previous, _ = edit_solve(SOLVERS["cg+jacobi"])(similarity, unary, weights, tf.zeros_like(unary))
    mask[0, points[10]] = 1.0
    weights, unary = 5.0 * tf.constant(mask), ab * tf.constant(mask)[..., None]
    cold = tf.zeros_like(unary)
    cases = [("lu", "lu", cold), ("cholesky", "cholesky", cold), ("cg cold", "cg", cold),
             ("cg warm", "cg", previous), ("cg+jacobi cold", "cg+jacobi", cold),
             ("cg+jacobi warm", "cg+jacobi", previous), ("cg+two_level cold", "cg+two_level", cold),
             ("cg+two_level warm", "cg+two_level", previous)]
    reference, lu_timing = None, None
    for label, name, initial in cases:
        timing, peak, (x, iterations) = measure(
            edit_solve(SOLVERS[name]), (similarity, unary, weights, initial), repeats)
        if name == "lu":
            reference, lu_timing = x, timing
        table.add(f"edit +1 point {size}x{size}", label, *timing.cells(lu_timing), peak,
                  relative_error(x, reference), str(int(iterations.max())))
    # The interactive path: factor once per image, then every new point is a Woodbury update.
    start, cpu_start = time.perf_counter(), time.process_time()
    session = EditSession(similarity[0])
    session.solve(points[:10], tf.gather(ab[0], points[:10]))
    setup = Timing(time.perf_counter() - start, time.process_time() - cpu_start)
    table.add(f"edit session setup {size}x{size}", "cholesky once + 10 points",
              *setup.cells(lu_timing), "-", "-", "0")
    times, cpu_times = [], []
    for extra in list(spare_points[:repeats - 1]) + [points[10]]:  # a new, uncached pixel each time
        chosen = np.append(points[:10], extra)
        tf.config.experimental.reset_memory_stats("CPU:0")
        start, cpu_start = time.perf_counter(), time.process_time()
        x = session.solve(chosen, tf.gather(ab[0], chosen)).numpy()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    timing = Timing(statistics.median(times), statistics.median(cpu_times))
    table.add(f"edit +1 point {size}x{size}", "session (Woodbury)", *timing.cells(lu_timing), peak,
              relative_error(x[None], reference), "0")


def trained_embeddings(count, size):
    """The default preset's structure embeddings [B, P, D] and temperature, its decoder's unary
    alpha [B, P, 2] (at the encoder mean) and the true chroma ab [B, P, 2] of `count` photos."""
    from tfgcrf.models.loading import load_model

    model = load_model("default").backbone
    l, ab = load_photos(count, size)
    l = tf.reshape(l, [count, size, size, 1])
    ab = tf.reshape(ab, [count, size, size, 2])
    features = model.features(l)
    mean, _ = model.encoder(l, ab)
    alpha = tf.reshape(model.decoder(mean, features), [count, size * size, 2])
    embeddings = tf.cast(model.structure.embed(l, features), tf.float32)
    temperature = float(tf.exp(model.structure.log_temperature))
    return embeddings, temperature, alpha, tf.reshape(ab, [count, size * size, 2])


def hoc_gradients(solver_kwargs, temperature, recon_sigma):
    """The HOC step's loss (GCRFColorizer._hoc_losses, L2) and its gradients, CG warm-started."""
    layer = GaussianCRF(**solver_kwargs)

    @tf.function(jit_compile=False)
    def run(embeddings, unary, weights, target):
        with tf.GradientTape() as tape:
            tape.watch([embeddings, unary])
            logits = temperature * tf.linalg.matmul(embeddings, embeddings, adjoint_b=True)
            logits -= 1e9 * tf.eye(tf.shape(logits)[-1])  # as StructureBranch.similarity_of
            similarity = tf.nn.softmax(logits, axis=-1)
            x, info = layer(similarity, unary, weights, initial=unary, return_info=True)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(x - target), axis=[1, 2]))
            loss /= 2.0 * recon_sigma**2
        return x, info["iterations"], tape.gradient(loss, [embeddings, unary])

    return run


def run_gradient_case(size, batch, table):
    """Gradient accuracy of the HOC step against the float64 analytic implicit gradient."""
    from tfgcrf.layers.gcrf_reference import numpy_hoc_gradients

    recon_sigma = 0.1
    embeddings, temperature, unary, target = trained_embeddings(batch, size)
    cases = [("cholesky (float32)", dict(solver="cholesky"))] + [
        (f"cg+two_level tol {tol:g}", dict(solver="cg", preconditioner="two_level", cg_tol=tol))
        for tol in (1e-3, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)]
    for reveal in (0.1, 0.02):
        revealed = tf.random.stateless_uniform([batch, size * size], [5, 0]) < reveal
        weights = tf.cast(revealed, tf.float32)
        _, x_ref, de_ref, du_ref = numpy_hoc_gradients(
            embeddings, temperature, unary, weights, target, 1e-4,
            scale=1.0 / (2.0 * recon_sigma**2 * batch))
        for label, kwargs in cases:
            x, iterations, (de, du) = hoc_gradients(kwargs, temperature, recon_sigma)(
                embeddings, unary, weights, target)
            table.add(f"{size}x{size}, batch {batch}, {reveal:.0%} revealed", label,
                      str(int(np.max(iterations))), relative_error(x.numpy(), x_ref),
                      relative_error(de.numpy(), de_ref), relative_error(du.numpy(), du_ref))


def fitted_exponent(sizes, values):
    pixels = np.array(sizes, float) ** 2
    return float(np.polyfit(np.log(pixels), np.log(np.array(values, float)), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,48,64,96,128")
    parser.add_argument("--lu-max-size", type=int, default=96,
                        help="largest size at which the O(P^3) lu/cholesky paths run")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--large-size", type=int, default=128)
    parser.add_argument("--skip", default="", help="comma list of: targets,scaling,gradients")
    parser.add_argument("--gradient-batch", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(args.skip.split(","))
    columns = ["case", "solver", "wall s", "CPU s", "speedup vs lu (wall)", "peak MiB",
               "rel err vs lu", "CG iters"]
    tables = []
    if "targets" not in skip:
        targets = Table("Targets", columns)
        tables.append(targets)
        print(targets.title, flush=True)
        size, large = args.target_size, args.large_size
        run_sample_case(size, args.samples, SAMPLE_SOLVERS, args.repeats, targets,
                        f"sample {size}x{size}, N={args.samples}")
        run_training_case(size, args.batch, list(SOLVERS) + list(TRAINING_SOLVERS), args.repeats,
                          targets)
        run_edit_case(size, args.repeats, targets)
        run_sample_case(large, args.samples, ["cg", "cg+jacobi"], args.repeats, targets,
                        f"sample {large}x{large}, N={args.samples}")
    if "scaling" not in skip:
        scaling = Table(f"Scaling: sample path, N={args.samples}", columns)
        tables.append(scaling)
        print(scaling.title, flush=True)
        measured = {name: [] for name in SAMPLE_SOLVERS}
        for size in sizes:
            solvers = [n for n in SAMPLE_SOLVERS if size <= args.lu_max_size or n.startswith("cg")]
            for name, (timing, peak) in run_sample_case(size, args.samples, solvers, args.repeats,
                                                        scaling, f"{size}x{size}").items():
                measured[name].append((size, timing.wall, peak))
        exponents = Table("Fitted exponents in P (time ~ P^a, peak memory ~ P^b)",
                          ["solver", "sizes", "time exponent a", "peak memory exponent b"])
        tables.append(exponents)
        for name, rows in measured.items():
            used = [r[0] for r in rows]
            exponents.add(name, ",".join(map(str, used)),
                          fitted_exponent(used, [r[1] for r in rows]),
                          fitted_exponent(used, [r[2] for r in rows]))
    if "gradients" not in skip:
        gradients = Table("HOC step gradients vs the float64 analytic implicit gradient "
                          "(default preset's S, L2 loss)",
                          ["case", "solver", "CG iters (max)", "rel err x", "rel err dL/dE",
                           "rel err dL/dunary"])
        tables.append(gradients)
        print(gradients.title, flush=True)
        run_gradient_case(args.target_size, args.gradient_batch, gradients)
    print()
    for table in tables:
        print(table.markdown() + "\n")


if __name__ == "__main__":
    main()
