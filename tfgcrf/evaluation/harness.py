"""`evaluate`: every metric, for every method, on the same images in the same run.

Methods:
- `gcrf`: the model; samples through the G-CRF, control through its edit path.
- `vae_mdn`: the same model with the G-CRF bypassed (decoder unary used directly), sampled with
  the same seeds: the paper's VAE-MDN baseline as an ablation.
- `levin`: Levin et al. 2004 (control only).
- `gray`: ab = 0, the floor.

Diversity, consistency and colorfulness are measured at the model resolution (the image resized as
in training); control at 256x256, every method being composed with the photo's own lightness by
`tfgcrf.fullres.compose` and scored against the 256x256 ground truth.
"""

import time

import numpy as np
import tensorflow as tf

from tfgcrf import color, fullres
from tfgcrf.errors import UserError
from tfgcrf.evaluation import control, levin, metrics
from tfgcrf.evaluation.report import SHEET_POINTS
from tfgcrf.models import points_to_grid

DIVERSE_METHODS = {"gcrf": True, "vae_mdn": False}  # name -> use_gcrf


def _rgb_uint8(l, ab):
    return color.to_uint8(color.model_to_rgb(l, ab)).numpy()


class _Totals:
    """Running sums over images: per-method metric sums, and speckle energies for ratios."""

    def __init__(self):
        self.sums = {}
        self.count = 0

    def add(self, key, value):
        self.sums[key] = self.sums.get(key, 0.0) + value

    def mean(self, key):
        return self.sums[key] / self.count

    def ratio(self, key, reference):
        """Ratio of summed energies over the data set (robust to images with ~0 energy)."""
        denominator = self.sums[reference]
        return self.sums[key] / denominator if denominator > 0 else None


def _diversity(model, l, ab_truth, num_samples, seed, mode, totals, keep):
    """Samples each diverse method on one image and adds its Table 2 metrics to `totals`."""
    truth = ab_truth[0].numpy()
    flat = metrics.flat_region(l[0].numpy())
    truth_rgb = color.model_to_rgb(l, ab_truth)[0].numpy()
    totals.add("ground_truth/colorfulness", metrics.colorfulness(truth_rgb))
    totals.add("ground_truth/energy", metrics.chroma_gradient_energy(truth))
    totals.add("ground_truth/energy_flat", metrics.chroma_gradient_energy(truth, flat))
    samples_by_method = {}
    for name, use_gcrf in DIVERSE_METHODS.items():
        start = time.perf_counter()
        ab, _ = model.sample(l, num_samples, seed=seed, mode=mode, use_gcrf=use_gcrf)
        ab = ab[0]  # [N, h, w, 2]
        totals.add(f"seconds/{name}_sample", time.perf_counter() - start)
        samples = ab.numpy()
        renders = color.model_to_rgb(tf.repeat(l, num_samples, axis=0), ab).numpy()
        totals.add(f"{name}/eob", metrics.eob(samples, truth))
        totals.add(f"{name}/variance", metrics.variance(samples))
        totals.add(f"{name}/ssim_pairwise", metrics.ssim_pairwise(renders))
        totals.add(f"{name}/colorfulness", np.mean([metrics.colorfulness(r) for r in renders]))
        totals.add(f"{name}/energy", np.mean([metrics.chroma_gradient_energy(s) for s in samples]))
        totals.add(
            f"{name}/energy_flat", np.mean([metrics.chroma_gradient_energy(s, flat) for s in samples])
        )
        if keep:
            samples_by_method[name] = ab
    gray = np.zeros_like(truth)
    totals.add("gray/eob", metrics.eob(gray[None], truth))
    totals.add("gray/colorfulness", metrics.colorfulness(color.model_to_rgb(l[0], gray).numpy()))
    for key in ("energy", "energy_flat"):
        totals.add(f"gray/{key}", 0.0)
    return samples_by_method


def _control(model, l, l_full, ab_full, corners, totals, keep):
    """Reveals the same patches to every method on one 256x256 image; adds PSNR per |H|."""
    lightness = l_full[0, ..., 0] * color.L_SCALE
    truth = _rgb_uint8(l_full, ab_full)[0]
    colors = control.patch_colors(ab_full[0].numpy(), corners)
    outputs = {}

    start = time.perf_counter()
    levin_ab = []
    for count in control.POINT_COUNTS:
        mask, hints = control.hint_image(corners[:count], colors[:count])
        levin_ab.append(levin.colorize(l_full[0, ..., 0].numpy(), mask, hints))
    outputs["levin"] = fullres.compose(lightness, np.stack(levin_ab)).numpy()
    totals.add("seconds/levin_control", time.perf_counter() - start)

    start = time.perf_counter()
    batch = len(control.POINT_COUNTS)
    points = np.broadcast_to(control.patch_centers_xy(corners), (batch,) + corners.shape)
    mask, target = points_to_grid(
        tf.constant(points, tf.float32),
        tf.constant(np.broadcast_to(colors, (batch,) + colors.shape), tf.float32),
        tf.constant(control.POINT_COUNTS, tf.int32),
        l.shape[1],
    )
    edited = model.edit(tf.repeat(l, batch, axis=0), mask, target)
    outputs["gcrf"] = fullres.compose(lightness, fullres.upsample_chroma(edited, lightness)).numpy()
    totals.add("seconds/gcrf_control", time.perf_counter() - start)

    gray = fullres.compose(lightness, tf.zeros_like(ab_full)).numpy()
    outputs["gray"] = np.repeat(gray, batch, axis=0)
    for name, images in outputs.items():
        for count, image in zip(control.POINT_COUNTS, images):
            totals.add(f"{name}/psnr/{count}", metrics.psnr(image, truth))
    if keep:
        index = control.POINT_COUNTS.index(SHEET_POINTS)
        mask, hints = control.hint_image(corners[:SHEET_POINTS], colors[:SHEET_POINTS])
        hinted = np.where(mask[None, ..., None], hints[None], 0.0).astype(np.float32)
        shown = fullres.compose(lightness, hinted).numpy()[0]
        return {"truth": truth, "hints": shown, **{k: v[index] for k, v in outputs.items()}}
    return None


def _summary(totals, num_samples, seed):
    methods = {}
    for name in ("gcrf", "vae_mdn", "levin", "gray"):
        entry = {}
        for key in ("eob", "variance", "ssim_pairwise", "colorfulness"):
            if f"{name}/{key}" in totals.sums:
                entry[key] = totals.mean(f"{name}/{key}")
        if f"{name}/energy" in totals.sums:
            for key, energy in (("speckle", "energy"), ("speckle_flat", "energy_flat")):
                value = totals.ratio(f"{name}/{energy}", f"ground_truth/{energy}")
                if value is not None:
                    entry[key] = value
        if f"{name}/psnr/1" in totals.sums:
            entry["psnr_points"] = {
                str(count): totals.mean(f"{name}/psnr/{count}") for count in control.POINT_COUNTS
            }
        methods[name] = entry
    seconds = {
        key.split("/")[1]: totals.mean(key) for key in totals.sums if key.startswith("seconds/")
    }
    return {
        "methods": methods,
        "images": totals.count,
        "samples": num_samples,
        "seed": seed,
        "ground_truth": {"colorfulness": totals.mean("ground_truth/colorfulness")},
        "seconds_per_image": seconds,
    }


def image_pairs(source, split, size, limit=None):
    """The `pairs` of `evaluate` from a data source (folder, `tfds:NAME`, `offline`).

    Both resolutions come from `tfgcrf.data.make_dataset` in evaluation mode: the same centered
    square crop of each photo, resized to the model size as in training and to 256x256.
    """
    from tfgcrf.data import make_dataset

    datasets = [
        make_dataset(source, split, image_size=side, batch_size=1, training=False)
        for side in (size, control.CONTROL_SIZE)
    ]
    pairs = tf.data.Dataset.zip(tuple(datasets))
    return pairs.take(limit) if limit else pairs


def evaluate(model, pairs, num_samples, seed, mode="top", keep_images=0, on_image=None):
    """Runs every method on every image and aggregates the metrics.

    Args:
      model: a trained `GCRFColorizer` (`sample` and `edit` on its grid).
      pairs: iterable of `((l, ab), (l_full, ab_full))` single-image batches: the image at the
        model resolution `[1, h, w, 1|2]` and at `CONTROL_SIZE` `[1, 256, 256, 1|2]`.
      num_samples: N >= 2 samples per image for the diverse methods.
      seed: seed of the model's sampling (offset by the image index) and of the hint locations.
      mode: the model's sampling mode ("top" mixture components, or "draw").
      keep_images: how many images to keep renderings of, for the report's sheets.
      on_image: optional callback `(index, seconds)` after each image.

    Returns:
      `(results, kept)`: the JSON-ready results dict (see `tfgcrf evaluate`) and a list of
      per-image renderings for the first `keep_images` images.
    """
    if num_samples < 2:
        raise UserError(f"evaluation needs at least 2 samples per image, got {num_samples}")
    totals = _Totals()
    kept = []
    for index, ((l, ab), (l_full, ab_full)) in enumerate(pairs):
        start = time.perf_counter()
        keep = index < keep_images
        samples = _diversity(model, l, ab, num_samples, seed + index, mode, totals, keep)
        corners = control.patch_corners(seed, index)
        controlled = _control(model, l, l_full, ab_full, corners, totals, keep)
        if keep:
            kept.append({"samples": samples, "l": l, "l_full": l_full, "control": controlled})
        totals.count += 1
        seconds = time.perf_counter() - start
        totals.add("seconds/total", seconds)
        if on_image:
            on_image(index, seconds)
    if not totals.count:
        raise UserError("the data source has no images to evaluate (check --data and --split)")
    return _summary(totals, num_samples, seed), kept
