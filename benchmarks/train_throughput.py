"""Training throughput (images/s) and peak memory of each stage's train_step at 64 x 64.

Each row runs in its own process (so peak RSS is per row) on real fixture photos:

    .venv/bin/python benchmarks/train_throughput.py [--steps 4]

Ratios are against the first row (the VAE stage) measured in the same run. "step peak" is the
process's peak RSS minus its RSS just before the first training step (model, data and TF runtime
excluded).

    .venv/bin/python benchmarks/train_throughput.py --compare REV [--steps 3] [--window 0]

times the HOC step of the `default64` model (hoc_window 0: the whole 64 x 64 grid, batch 16) with
the G-CRF chain of git revision REV (the G-CRF layer of `tfgcrf/layers/gaussian_crf.py` and the
similarity S of `StructureBranch.similarity_of` as they were there, the rest of the step this
tree's) against the working tree's, in one process: same weights (untrained, or
`--preset default`'s trained ones), same batch, the variants alternating step by step so that a
shared CPU slows all alike. It reports the median over the steps of wall img/s and of CPU seconds
per image (both cores; the work done, whatever share of the CPU the process got), TensorFlow's
allocator peak during the steps, and the ratios of the medians.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROWS = [
    # name, stage, batch size, hoc_window (0 = whole grid)
    ("vae", "vae", 32, 0),
    ("hoc whole 64x64 grid", "hoc", 16, 0),
    ("hoc 32x32 windows", "hoc", 16, 32),
    ("mdn", "mdn", 32, 0),
]
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PHOTOS = os.path.join(REPO, "tests", "data", "photos")
LAYER = "tfgcrf/layers/gaussian_crf.py"
STRUCTURE = "tfgcrf/layers/structure_branch.py"


def _give_real_work(model):
    """An untrained decoder outputs gray (zero-initialized top layer): give the G-CRF real work."""
    import tensorflow as tf

    kernel = model.backbone.decoder.top_out.kernel
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[0, 1]))


def measure(stage, batch_size, window, steps):
    import resource
    import time

    from tfgcrf.config import ModelConfig, TrainingConfig
    from tfgcrf.data import make_dataset
    from tfgcrf.models import GCRFColorizer

    def rss_gb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9

    data = make_dataset(PHOTOS, "train", image_size=64, batch_size=batch_size, training=True)
    data = data.take(1).cache().repeat()
    model = GCRFColorizer(ModelConfig(), training=TrainingConfig(hoc_window=window))
    _give_real_work(model)
    model.compile_stage(stage)
    model.reveal_fraction.assign(0.1)
    before = rss_gb()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"images_per_s": steps * batch_size / seconds, "peak_gb": peak, "step_gb": peak - before}


def _module_at(revision, path):
    """The module `path` of this repository as it was at a git revision."""
    import keras

    source = subprocess.run(["git", "-C", REPO, "show", f"{revision}:{path}"],
                            capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    name = f"{os.path.splitext(os.path.basename(path))[0]}_at_{revision}"
    spec = importlib.util.spec_from_file_location(name, handle.name)
    module = importlib.util.module_from_spec(spec)
    register = keras.saving.register_keras_serializable
    keras.saving.register_keras_serializable = lambda **_: (lambda cls: cls)  # name is taken
    try:
        spec.loader.exec_module(module)
    finally:
        keras.saving.register_keras_serializable = register
        os.unlink(handle.name)
    return module


def _chain_at(revision):
    """(GaussianCRF class, similarity_of function) of a git revision, callable as this tree's.

    An older layer knows no `log_partition` and an older `similarity_of` returns S only: the
    wrappers drop / add it (log Z None: the solve multiplies by S and S^T as it did there).
    """
    old_layer = _module_at(revision, LAYER).GaussianCRF
    old_similarity = _module_at(revision, STRUCTURE).StructureBranch.similarity_of

    class Layer(old_layer):
        def call(self, *args, log_partition=None, **kwargs):
            return super().call(*args, **kwargs)

    def similarity_of(structure, embeddings, return_log_partition=False):
        similarity = old_similarity(structure, embeddings)
        return (similarity, None) if return_log_partition else similarity

    return Layer, similarity_of


def compare(revision, steps, window, reveal, preset=None, tol=None):
    import tensorflow as tf

    from tfgcrf.config import load_config
    from tfgcrf.data import make_dataset
    from tfgcrf.models import GCRFColorizer
    from tfgcrf.models import gcrf_colorizer as colorizer_module

    experiment = load_config("default64")
    training = dataclasses.replace(experiment.training, hoc_window=window)
    batch_size = 16
    data = make_dataset(PHOTOS, "train", image_size=64, batch_size=batch_size, training=True)
    data = data.take(1).cache().repeat()
    variants, initial_weights = {}, None
    old_layer, old_similarity = _chain_at(revision)
    layers = [(f"G-CRF chain @ {revision}", old_layer, training.train_cg_tol, old_similarity),
              ("this tree", colorizer_module.GaussianCRF, training.train_cg_tol, None)]
    if tol is not None:
        layers.append((f"this tree, train_cg_tol {tol:g}", colorizer_module.GaussianCRF, tol,
                       None))
    for name, layer_class, train_cg_tol, similarity_of in layers:
        current, colorizer_module.GaussianCRF = colorizer_module.GaussianCRF, layer_class
        try:
            # Its G-CRF layers are built in __init__.
            model = GCRFColorizer(experiment.model, training=dataclasses.replace(
                training, train_cg_tol=train_cg_tol))
        finally:
            colorizer_module.GaussianCRF = current
        if initial_weights is not None:
            model.set_weights(initial_weights)
        else:
            if preset:
                from tfgcrf.models.loading import load_model

                model.set_weights(load_model(preset).get_weights())
            else:
                _give_real_work(model)
            initial_weights = model.get_weights()
        if similarity_of is not None:
            structure = model.backbone.structure
            structure.similarity_of = similarity_of.__get__(structure)
        model.compile_stage("hoc")
        model.reveal_fraction.assign(reveal)
        # Trace + warm up; its loss is from the same weights and batch for every variant.
        history = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
        variants[name] = {"model": model, "wall": [], "cpu": [], "peak": 0.0,
                          "loss": history.history["crf_l2"][0]}
    for _ in range(steps):
        for result in variants.values():
            tf.config.experimental.reset_memory_stats("CPU:0")
            wall, cpu = time.perf_counter(), time.process_time()
            result["model"].fit(data, steps_per_epoch=1, epochs=1, verbose=0)
            result["wall"].append(time.perf_counter() - wall)
            result["cpu"].append(time.process_time() - cpu)
            peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 1e9
            result["peak"] = max(result["peak"], peak)
    for result in variants.values():
        result["wall"] = statistics.median(result["wall"])
        result["cpu"] = statistics.median(result["cpu"])
    grid = "whole 64x64 grid" if window in (0, 64) else f"{window}x{window} windows"
    weights = f"{preset} preset's weights" if preset else "untrained"
    print(f"HOC step, default64 model ({weights}), {grid}, batch {batch_size}, "
          f"{reveal:.0%} revealed, {steps} steps each, alternating")
    print(f"{'G-CRF chain':34} {'img/s':>7} {'CPU s/img':>9} {'peak GB':>8} "
          f"{'speedup (wall)':>14} {'speedup (CPU)':>13} {'crf_l2 step 0':>13}")
    base = next(iter(variants.values()))
    for name, result in variants.items():
        print(f"{name:34} {batch_size / result['wall']:7.2f} {result['cpu'] / batch_size:9.3f} "
              f"{result['peak']:8.2f} {base['wall'] / result['wall']:13.2f}x "
              f"{base['cpu'] / result['cpu']:12.2f}x {result['loss']:13.5f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per row")
    parser.add_argument("--compare", metavar="REV",
                        help="HOC step: the G-CRF layer of git revision REV vs this tree's")
    parser.add_argument("--window", type=int, default=0, help="hoc_window for --compare")
    parser.add_argument("--reveal", type=float, default=0.1,
                        help="revealed fraction for --compare")
    parser.add_argument("--preset", help="--compare from this preset's weights (a trained S: more "
                        "CG iterations) instead of the untrained default64 model")
    parser.add_argument("--tol", type=float,
                        help="--compare: also this tree's layer at this train_cg_tol")
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
        try:
            compare(args.compare, args.steps, args.window, args.reveal, args.preset,
                    args.tol)
        except subprocess.CalledProcessError as err:
            sys.exit(f"train_throughput: cannot read {LAYER} at {args.compare!r}: "
                     f"{err.stderr.strip()}")
        return
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
