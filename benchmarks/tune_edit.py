"""Chooses the edit path's constants on the VALIDATION split (never the test split).

Scores the control protocol of `tfgcrf evaluate` (PSNR vs |H| revealed 7x7 patches at 256x256,
every patch pixel a point as in `evaluate`, Levin et al. in the same run) for a grid of local
smoothness weights x model prior weights (one factorization each per image, nested hint sets by
Woodbury updates) and, for the best of those, the weights of the G-CRF answer in the
full-resolution propagation (`hints.Propagation`, `--propagation`) and a grid of refinement kernel
widths:

    nice .venv/bin/python benchmarks/tune_edit.py --model default --data offline --limit 20
    nice .venv/bin/python benchmarks/tune_edit.py --limit 6 --local= --prior= --sigma-cells= \
        --propagation 1e-4,3e-4,1e-3,3e-3

`--hint-prior W1,W2` also scores the prior fitted to each hint set (`GCRFBackbone.hint_prior`, the
harness's `gcrf_fitted`) at those weights, with each `--propagation` weight (default 1e-3):

    nice .venv/bin/python benchmarks/tune_edit.py --limit 6 --local= --prior= --sigma-cells= \
        --hint-prior 0.003,0.01,0.03 --propagation 1e-3,3e-3
"""

import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfgcrf import Colorizer, color, fullres, hints  # noqa: E402
from tfgcrf.evaluation import control, harness, levin, metrics  # noqa: E402
from tfgcrf.models.loading import load_model  # noqa: E402
from tfgcrf.models.points import grid_index, mean_by_cell  # noqa: E402


def _row(name, values):
    return f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="offline")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--local", default="0.3,1,3")
    parser.add_argument("--prior", default="0.01,0.05,0.2")
    parser.add_argument("--sigma-cells", default="0.25,0.5,1,2")
    parser.add_argument("--sigma-lightness", default="5,10,20")
    parser.add_argument("--propagation", default="",
                        help="weights of the G-CRF answer in hints.Propagation to score")
    parser.add_argument("--hint-prior", default="",
                        help="weights of the prior fitted to the hints (GCRFBackbone.hint_prior)")
    args = parser.parse_args()
    if args.split == "test":
        raise SystemExit("tune on the validation split, report on test")
    model = load_model(args.model)
    size = model.model_config.image_size
    def numbers(text):
        return [float(v) for v in text.split(",") if v.strip()]

    locals_, priors = numbers(args.local), numbers(args.prior)
    sigmas, ranges = numbers(args.sigma_cells), numbers(args.sigma_lightness)
    propagations = numbers(args.propagation)
    fitted_weights = numbers(args.hint_prior)
    fitted_propagations = propagations or [hints.PROPAGATION_WEIGHT]
    colorizer = Colorizer(model) if fitted_weights else None
    counts = control.POINT_COUNTS
    scores = {}  # key -> [images, counts]
    images = []

    def add(key, index, count_index, value):
        scores.setdefault(key, {}).setdefault(index, [0.0] * len(counts))[count_index] = value

    for index, example in enumerate(harness.examples(args.data, args.split, [size], args.limit)):
        (l, _), (l_full, ab_full) = example.grids[size], example.control
        lightness = l_full[0, ..., 0] * color.L_SCALE
        truth = color.to_uint8(color.model_to_rgb(l_full, ab_full))[0].numpy()
        corners = control.patch_corners(args.seed, index)
        colors = control.patch_colors(ab_full[0].numpy(), corners).astype(np.float32)
        relative = control.patch_centers_xy(corners)
        cells = grid_index(relative, size).numpy()
        pixels = np.floor(relative * control.CONTROL_SIZE).astype(np.int32)
        cell = hints.grid_cell(control.CONTROL_SIZE, control.CONTROL_SIZE, size)
        for c, count in enumerate(counts):
            mask, hint_ab = control.hint_image(corners[:count], colors[:count])
            ab = levin.colorize(l_full[0, ..., 0].numpy(), mask, hint_ab)
            add("levin", index, c, metrics.psnr(fullres.compose(lightness, ab[None]).numpy()[0], truth))
        grids = {}
        for local, prior in [(0.0, 0.0)] + list(itertools.product(locals_, priors)):
            session = model.edit_session(l, prior_weight=prior, local_weight=local)
            grids[(local, prior)] = []
            for c, count in enumerate(counts):
                relative_points, chroma = harness._hint_points(corners, colors, count, "patch")
                grid = session.solve(*mean_by_cell(grid_index(relative_points, size).numpy(),
                                                   chroma))
                ab = fullres.upsample_chroma(tf.reshape(grid, [1, size, size, 2]), lightness)[0]
                grids[(local, prior)].append(ab)
                image = fullres.compose(lightness, ab[None]).numpy()[0]
                add(("grid", local, prior), index, c, metrics.psnr(image, truth))
        images.append((lightness, truth, pixels, colors, cell, grids))
        fitted = {}  # weight -> upsampled grid answers with the prior fitted to each hint set
        for weight in fitted_weights:
            session = model.edit_session(l, prior_weight=weight, local_weight=0.0)
            fitted[weight] = []
            for c, count in enumerate(counts):
                relative_points, chroma = harness._hint_points(corners, colors, count, "patch")
                cells_points = grid_index(relative_points, size).numpy()
                prior = colorizer.hint_prior_grid(l, cells_points, chroma)[0]
                grid = session.solve(*mean_by_cell(cells_points, chroma), prior_unary=prior)
                fitted[weight].append(fullres.upsample_chroma(
                    tf.reshape(grid, [1, size, size, 2]), lightness)[0])
        for weight in sorted(set(propagations) | (set(fitted_propagations) if fitted else set())):
            propagation = hints.Propagation(lightness.numpy(), weight=weight)
            answers = [(("propagation", weight), grids[(0.0, 0.0)])] if weight in propagations else []
            answers += [(("fitted", prior, weight), fitted[prior]) for prior in fitted]
            for key, grid_answers in answers:
                for c, count in enumerate(counts):
                    ab = propagation.solve(grid_answers[c],
                                           *control.hint_image(corners[:count], colors[:count]))
                    image = fullres.compose(lightness, ab[None].astype(np.float32)).numpy()[0]
                    add(key, index, c, metrics.psnr(image, truth))
        print(f"image {index + 1} done", flush=True)

    def mean(key):
        return np.mean(list(scores[key].values()), axis=0)

    header = "| setting | " + " | ".join(f"\\|H\\|={c}" for c in counts) + " |"
    print(header)
    print("|" + " --- |" * (len(counts) + 1))
    print(_row("Levin et al. 2004", mean("levin")))
    grid_keys = [k for k in scores if k[0] == "grid"]
    for key in grid_keys:
        print(_row(f"local {key[1]:g}, prior {key[2]:g}", mean(key)))
    for weight in propagations:
        print(_row(f"local 0, prior 0 + propagation {weight:g}", mean(("propagation", weight))))
    for prior, weight in itertools.product(fitted_weights, fitted_propagations):
        print(_row(f"fitted prior {prior:g} + propagation {weight:g}",
                   mean(("fitted", prior, weight))))
    # Best grid setting by the mean margin over Levin, then the refinement widths on it.
    best = max(grid_keys, key=lambda k: np.mean(mean(k) - mean("levin")))
    print(f"\nbest grid setting: local {best[1]:g}, prior {best[2]:g}; refinement:")
    print(header)
    print("|" + " --- |" * (len(counts) + 1))
    for sigma, sigma_l in itertools.product(sigmas, ranges):
        key = ("refine", sigma, sigma_l)
        for index, (lightness, truth, pixels, colors, cell, grids) in enumerate(images):
            for c, count in enumerate(counts):
                ab = hints.refine_at_points(grids[best[1:]][c], lightness, pixels[:count],
                                            colors[:count], cell, sigma, sigma_l)
                image = fullres.compose(lightness, ab[None]).numpy()[0]
                add(key, index, c, metrics.psnr(image, truth))
        print(_row(f"sigma {sigma:g} cells, {sigma_l:g} L", mean(key)), flush=True)


if __name__ == "__main__":
    main()
