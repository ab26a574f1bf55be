"""`evaluate`: every metric, for every method, on the same images in the same run.

Methods, per evaluated model (one or several models side by side):
- `gcrf`: the model; samples through the G-CRF, control through its edit path.
- `vae_mdn`: the same model with the G-CRF bypassed (decoder unary used directly), sampled with
  the same seeds: the paper's VAE-MDN baseline as an ablation.
and once per run:
- `levin`: Levin et al. 2004 (control only).
- `gray`: ab = 0, the floor.

With one model the method keys are `gcrf` and `vae_mdn`; with several, `gcrf/<model name>` and
`vae_mdn/<model name>`.

Every model runs through the compiled functions of `tfgcrf.Colorizer` (`similarity`,
`sample_grid`, `edit_session_grid`), the ones the API and the CLI run; the similarity S of an image is
computed once per model and reused by both diverse methods and all control edits.

Diversity, consistency and colorfulness are measured at the model resolution (the image resized as
in training); control at 256x256, every method being composed with the photo's own lightness by
`tfgcrf.fullres.compose` and scored against the 256x256 ground truth. When the data folder's
`manifest.csv` has a `domain` column (faces / scenes / objects), every metric is also reported per
domain.
"""

import collections
import concurrent.futures
import csv
import itertools
import logging
import os
import time

import numpy as np
import tensorflow as tf

from tfgcrf import color, fullres, hints
from tfgcrf.errors import InputError, UserError
from tfgcrf.evaluation import control, levin, metrics
from tfgcrf.evaluation.report import SHEET_POINTS
from tfgcrf.layers import edit_terms
from tfgcrf.layers.gcrf_edit_session import one_blas_thread
from tfgcrf.models.points import grid_index, mean_by_cell

logger = logging.getLogger("tfgcrf.evaluation")

DIVERSE_METHODS = {"gcrf": True, "vae_mdn": False}  # name -> use_gcrf
# Images evaluated at once (`evaluate`): two keep both cores of a 2-core machine busy.
IMAGES_IN_FLIGHT = 2
# Per-image values averaged over images; energies are summed and divided (see `_summary`).
_MEAN_METRICS = ("eob", "variance", "ssim_pairwise", "colorfulness", "auc", "auc_best")

# One evaluation image: its name (path relative to the data folder, or its index), its domain
# (None when unknown), `grids` {model size: (l [1, s, s, 1], ab [1, s, s, 2])} and `control`
# (l [1, 256, 256, 1], ab [1, 256, 256, 2]), all in model units.
Example = collections.namedtuple("Example", ["name", "domain", "grids", "control"])

# The per-image TensorFlow steps around the solves, compiled once per shape: run eagerly, their
# many small ops cost more than the solves. The same functions as `Colorizer.edit` (upsampling,
# point refinement, recombination) and `Colorizer.colorize` (upsampling, recombination).
_to_rgb = tf.function(color.model_to_rgb, autograph=False, input_signature=[  # one trace
    tf.TensorSpec([None, None, None, 1], tf.float32), tf.TensorSpec([None, None, None, 2], tf.float32)])
_compose = tf.function(fullres.compose, autograph=False, reduce_retracing=True)
_to_photo = tf.function(fullres.to_photo, autograph=False, reduce_retracing=True)
_finish_edit = tf.function(hints.finish_edit, autograph=False, reduce_retracing=True)
_guide_statistics = tf.function(fullres.guide_statistics, autograph=False)  # once per photo


def _rgb_uint8(l, ab):
    return color.to_uint8(_to_rgb(l, ab)).numpy()


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
        denominator = self.sums.get(reference, 0.0)
        return self.sums[key] / denominator if denominator > 0 else None


def _truth(l, ab_truth):
    """Ground-truth references of one image at one grid size."""
    truth = ab_truth[0].numpy()
    flat = metrics.flat_region(l[0].numpy())
    return {
        "ab": truth,
        "flat": flat,
        "colorfulness": metrics.colorfulness(_to_rgb(l, ab_truth)[0].numpy()),
        "energy": metrics.chroma_gradient_energy(truth),
        "energy_flat": metrics.chroma_gradient_energy(truth, flat),
    }


def _references(values, name, truth):
    """Each method's own ground-truth references (its grid size), for its ratios."""
    for key in ("colorfulness", "energy", "energy_flat"):
        values[f"{name}/truth_{key}"] = truth[key]


def _diversity(colorizers, example, num_samples, seed, mode, values, keep):
    """Samples each model's diverse methods on one image; adds the Table 2 metrics to `values`.

    Returns `(samples_by_method, similarities)`: the kept samples (for the report) and each
    model's S of the image, reused by the control edits.
    """
    samples_by_method, similarities = {}, {}
    truths = {size: _truth(l, ab) for size, (l, ab) in example.grids.items()}
    first_size = min(example.grids)
    for key in ("colorfulness", "energy", "energy_flat"):
        values[f"ground_truth/{key}"] = truths[first_size][key]
    for model_name, colorizer in colorizers.items():
        l, _ = example.grids[colorizer.grid_size]
        truth = truths[colorizer.grid_size]
        start = time.perf_counter()
        similarity = colorizer.similarity(l)
        values[f"seconds/{_key('similarity', model_name, colorizers)}"] = time.perf_counter() - start
        similarities[model_name] = similarity
        for method, use_gcrf in DIVERSE_METHODS.items():
            name = _key(method, model_name, colorizers)
            start = time.perf_counter()
            ab, _ = colorizer.sample_grid(
                l, num_samples, seed=seed, mode=mode, use_gcrf=use_gcrf,
                similarity=similarity if use_gcrf else None,
            )
            ab = ab[0]  # [N, h, w, 2]
            samples = ab.numpy()
            values[f"seconds/{name}_sample"] = time.perf_counter() - start
            renders = _to_rgb(tf.repeat(l, num_samples, axis=0), ab).numpy()
            values[f"{name}/eob"] = metrics.eob(samples, truth["ab"])
            values[f"{name}/variance"] = metrics.variance(samples)
            values[f"{name}/ssim_pairwise"] = metrics.ssim_pairwise(renders)
            values[f"{name}/colorfulness"] = np.mean([metrics.colorfulness(r) for r in renders])
            values[f"{name}/auc"] = metrics.auc(samples[:1], truth["ab"])
            values[f"{name}/auc_best"] = metrics.auc(samples, truth["ab"])
            values[f"{name}/energy"] = np.mean([metrics.chroma_gradient_energy(s) for s in samples])
            values[f"{name}/energy_flat"] = np.mean(
                [metrics.chroma_gradient_energy(s, truth["flat"]) for s in samples]
            )
            _references(values, name, truth)
            if keep:
                samples_by_method[name] = ab
    l, _ = example.grids[first_size]
    truth = truths[first_size]
    gray = np.zeros_like(truth["ab"])
    values["gray/eob"] = metrics.eob(gray[None], truth["ab"])
    values["gray/auc"] = metrics.auc(gray[None], truth["ab"])
    values["gray/colorfulness"] = metrics.colorfulness(_to_rgb(l, gray[None])[0].numpy())
    for key in ("energy", "energy_flat"):
        values[f"gray/{key}"] = 0.0
    _references(values, "gray", truth)
    return samples_by_method, similarities


# G-CRF control variants: name -> (`edit_session` arguments, hints given to the grid, refinement at
# the patch centers at 256 px, full-resolution propagation). "gcrf" is the full edit path: the
# defaults of `edit_terms` (no local smoothness and no model prior for the current preset), every
# pixel of each 7x7 hint patch as a point (the hints at the photo's resolution, as Levin et al. get
# them), the point refinement and the propagation of `Colorizer.edit` (`hints.Propagation`: Levin
# et al.'s local propagation at 256 px with the patches as hard constraints and the G-CRF answer as
# a weak data term). The others are its ablation steps (`ablation=True`): the learned S alone with
# one point per patch (its center, the protocol before), + local smoothness 0.3, + the model's own
# prior (weight 0.002, off by default: it lowered the validation PSNR at every |H|), + the patches'
# pixels, + the point refinement; and `gcrf_fitted`, the full path with the decoder's colors of a
# latent fitted to the hints (`GCRFBackbone.hint_prior`) as the prior, weight 0.003 (off by
# default: below no prior at 5-100 hints on validation). The last entry names the propagation's local
# term (`hints.LOCAL_TERMS`; True: the default `hints.PROPAGATION_LOCAL`): `gcrf_levin` and
# `gcrf_matting` are the full path with Levin et al.'s 2004 affinities and with the matting
# Laplacian (Levin et al. 2008); the one equal to the default is copied from `gcrf`, not computed.
CONTROL_VARIANTS = {
    "gcrf_grid": (dict(prior_weight=0.0, local_weight=0.0), "center", False, False),
    "gcrf_local": (dict(prior_weight=0.0, local_weight=0.3), "center", False, False),
    "gcrf_prior": (dict(prior_weight=0.002, local_weight=0.3), "center", False, False),
    "gcrf_patch": (dict(), "patch", False, False),
    "gcrf_points": (dict(), "patch", True, False),
    "gcrf_fitted": (dict(hint_prior=0.003), "patch", True, True),
    "gcrf_levin": (dict(), "patch", True, "levin"),
    "gcrf_matting": (dict(), "patch", True, "matting"),
    "gcrf": (dict(), "patch", True, True),
}


def _hint_points(corners, colors, count, hints_as):
    """The first `count` hints as points: `(relative (x, y) [n, 2], chroma [n, 2])`."""
    if hints_as == "center":
        return control.patch_centers_xy(corners[:count]), colors[:count]
    dy, dx = np.mgrid[0:control.PATCH_SIZE, 0:control.PATCH_SIZE]
    offsets = np.stack([dy, dx], axis=-1).reshape(-1, 2)
    pixels = (corners[:count, None, :] + offsets[None]).reshape(-1, 2)  # (y, x)
    return (pixels[:, ::-1] + 0.5) / control.CONTROL_SIZE, np.repeat(colors[:count], len(offsets), 0)


def _session_options(options):
    """A variant's `edit_session` options with the defaults filled in (variants that resolve to
    the same energy share one factorization), and `fit`: whether its prior is fitted to each hint
    set (`hint_prior=w`: weight w on `Colorizer.hint_prior_grid`'s colors)."""
    fitted = options.get("hint_prior", 0.0)  # the edit path has no fitted prior
    return {"prior_weight": fitted or options.get("prior_weight", edit_terms.MODEL_PRIOR_WEIGHT),
            "local_weight": options.get("local_weight", edit_terms.LOCAL_WEIGHT),
            "fit": fitted > 0}


def _gcrf_control(colorizer, l, similarity, lightness, corners, colors, variants):
    """One model's answers to the nested hint sets: {variant: uint8 [len(POINT_COUNTS), 256, 256, 3]}.

    Every distinct edit energy is factored once per image (`Colorizer.edit_session_grid`) and
    answers the nested point sets by Woodbury updates: the same answers as `GCRFColorizer.edit`
    with those points. The grid answers are finished at 256x256 by the compiled functions of
    `Colorizer.edit` (`hints.finish_edit`: with the point refinement, and for `gcrf` the
    correction of the full-resolution propagation `hints.Propagation`, one LU per hint set) or
    `colorize` (`fullres.to_photo`: without).
    """
    size = control.CONTROL_SIZE
    centers = np.floor(control.patch_centers_xy(corners) * size).astype(np.int32)
    sessions, outputs, propagations, fitted = {}, {}, {}, {}
    statistics = _guide_statistics(lightness, colorizer.grid_size, colorizer.grid_size)
    answered = {}  # what a variant computes -> its name (variants equal to another are copied)
    for name in variants:
        options, hints_as, refine, propagate = CONTROL_VARIANTS[name]
        options = _session_options(options)
        if propagate is True:
            propagate = hints.PROPAGATION_LOCAL
        recipe = (tuple(sorted(options.items())), hints_as, refine, propagate)
        if recipe in answered:
            outputs[name] = outputs[answered[recipe]]
            continue
        answered[recipe] = name
        fit = options.pop("fit")
        hint_sets = []
        for count in control.POINT_COUNTS:
            relative, chroma = _hint_points(corners, colors, count, hints_as)
            cells = grid_index(relative, colorizer.grid_size).numpy()
            hint_sets.append((cells, chroma, *mean_by_cell(cells, chroma)))
        key = tuple(sorted(options.items()))
        if key not in sessions:  # the nested hint sets factored last: no Woodbury columns
            sessions[key] = colorizer.edit_session_grid(
                l, similarity=similarity, last=_factored_last([h[2] for h in hint_sets]),
                **options)
        images = []
        for count, (cells, chroma, pixels, means) in zip(control.POINT_COUNTS, hint_sets):
            prior = None
            if fit:  # the decoder's colors of the latent fitted to these hints, once per set
                if (hints_as, count) not in fitted:
                    fitted[(hints_as, count)] = colorizer.hint_prior_grid(l, cells, chroma)[0]
                prior = fitted[(hints_as, count)]
            grid = sessions[key].solve(pixels, means, prior_unary=prior)
            grid = tf.reshape(grid, [1, colorizer.grid_size, colorizer.grid_size, 2])
            correction = None
            if propagate:  # at 256 px: the working resolution is the photo's
                if propagate not in propagations:
                    propagations[propagate] = hints.Propagation(np.asarray(lightness),
                                                                local=propagate)
                correction = propagations[propagate].correction_from_mask(
                    grid, *control.hint_image(corners[:count], colors[:count]))
            if refine:
                image = _finish_edit(grid, lightness, centers[:count], colors[:count],
                                     colorizer.grid_size, statistics=statistics,
                                     correction=correction)
            else:
                image = _to_photo(grid, lightness)[0]
            images.append(image.numpy())
        outputs[name] = np.stack(images)
    return outputs


def _factored_last(pixel_sets):
    """The edit session's `last` pixels for nested grid pixel sets (each holding the one
    before): the largest set's own pixels first, the smallest set's last, so that every set is a
    trailing block of the factor; None when the sets are not nested."""
    last, seen = [], set()
    for pixels in pixel_sets:
        pixels = [int(p) for p in pixels]
        if not seen <= set(pixels):
            return None
        last = [p for p in pixels if p not in seen] + last
        seen.update(pixels)
    return last


def _patches(example, seed, index):
    """The control hints of one image: `(corners [K, 2], colors [K, 2] float32)`."""
    corners = control.patch_corners(seed, index)
    colors = control.patch_colors(example.control[1][0].numpy(), corners).astype(np.float32)
    return corners, colors


def _levin_control(luminance, corners, colors):
    """Levin et al.'s chroma for the nested hint sets: `(float32 [len(POINT_COUNTS), H, W, 2],
    seconds)`. NumPy/SciPy only (the sparse LU releases the GIL): it runs in a background thread
    while TensorFlow runs the models on the same image."""
    start = time.perf_counter()
    propagation = levin.Propagation(luminance)  # the image's system, once
    levin_ab = []
    for count in control.POINT_COUNTS:
        mask, hint_ab = control.hint_image(corners[:count], colors[:count])
        levin_ab.append(propagation.colorize(mask, hint_ab))
    return np.stack(levin_ab).astype(np.float32), time.perf_counter() - start


def _control(colorizers, example, similarities, patches, levin_job, values, keep, ablation=False):
    """Reveals the same patches to every method on one 256x256 image; adds PSNR per |H|.

    `levin_job` is the future of `_levin_control` for this image.
    """
    l_full, ab_full = example.control
    lightness = l_full[0, ..., 0] * color.L_SCALE
    truth = _rgb_uint8(l_full, ab_full)[0]
    corners, colors = patches
    outputs = {}

    variants = list(CONTROL_VARIANTS) if ablation else ["gcrf"]
    for model_name, colorizer in colorizers.items():
        start = time.perf_counter()
        l, _ = example.grids[colorizer.grid_size]
        answers = _gcrf_control(colorizer, l, similarities[model_name], lightness, corners, colors,
                                variants)
        for variant, images in answers.items():
            outputs[_key(variant, model_name, colorizers)] = images
        values[f"seconds/{_key('gcrf', model_name, colorizers)}_control"] = (
            time.perf_counter() - start)

    levin_ab, values["seconds/levin_control"] = levin_job.result()
    # Levin et al.'s answers and gray (ab = 0) recombined in one call (one trace, one run).
    composed = _compose(lightness, np.concatenate([levin_ab, np.zeros_like(levin_ab[:1])])).numpy()
    outputs["levin"] = composed[:-1]
    outputs["gray"] = np.repeat(composed[-1:], len(control.POINT_COUNTS), axis=0)
    for name, images in outputs.items():
        for count, image in zip(control.POINT_COUNTS, images):
            values[f"{name}/psnr/{count}"] = metrics.psnr(image, truth)
    if keep:
        index = control.POINT_COUNTS.index(SHEET_POINTS)
        mask, hint_ab = control.hint_image(corners[:SHEET_POINTS], colors[:SHEET_POINTS])
        hinted = np.where(mask[None, ..., None], hint_ab[None], 0.0).astype(np.float32)
        shown = _compose(lightness, hinted).numpy()[0]
        return {"truth": truth, "hints": shown, **{k: v[index] for k, v in outputs.items()}}
    return None


def _key(method, model_name, colorizers):
    """The results key of a per-model method: `gcrf`, or `gcrf/<model>` with several models."""
    return method if len(colorizers) == 1 else f"{method}/{model_name}"


def _method_names(colorizers, ablation=False):
    names = [_key(method, model, colorizers) for model in colorizers for method in DIVERSE_METHODS]
    if ablation:
        names += [_key(variant, model, colorizers) for model in colorizers
                  for variant in CONTROL_VARIANTS if variant != "gcrf"]
    return names + ["levin", "gray"]


def _methods(totals, names):
    methods = {}
    for name in names:
        entry = {}
        for key in _MEAN_METRICS:
            if f"{name}/{key}" in totals.sums:
                entry[key] = totals.mean(f"{name}/{key}")
        if "colorfulness" in entry:
            value = totals.ratio(f"{name}/colorfulness", f"{name}/truth_colorfulness")
            if value is not None:
                entry["colorfulness_ratio"] = value
        if f"{name}/energy" in totals.sums:
            for key, energy in (("speckle", "energy"), ("speckle_flat", "energy_flat")):
                value = totals.ratio(f"{name}/{energy}", f"{name}/truth_{energy}")
                if value is not None:
                    entry[key] = value
        if f"{name}/psnr/1" in totals.sums:
            entry["psnr_points"] = {
                str(count): totals.mean(f"{name}/psnr/{count}") for count in control.POINT_COUNTS
            }
        if entry:
            methods[name] = entry
    return methods


def _summary(totals, by_domain, names, num_samples, seed):
    seconds = {
        key.split("/", 1)[1]: totals.mean(key) for key in totals.sums if key.startswith("seconds/")
    }
    results = {
        "methods": _methods(totals, names),
        "images": totals.count,
        "samples": num_samples,
        "seed": seed,
        "ground_truth": {"colorfulness": totals.mean("ground_truth/colorfulness")},
        "seconds_per_image": seconds,
    }
    if by_domain:
        results["domains"] = {
            domain: {
                "images": part.count,
                "methods": _methods(part, names),
                "ground_truth": {"colorfulness": part.mean("ground_truth/colorfulness")},
            }
            for domain, part in sorted(by_domain.items())
        }
    return results


def _manifest_domains(folder):
    """`{relative path: domain}` from the folder's `manifest.csv`, if it has a `domain` column."""
    path = os.path.join(folder, "manifest.csv")
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "domain"} <= set(reader.fieldnames):
            return {}
        return {row["file"]: row["domain"] for row in reader if row.get("domain")}


def _to_model(rgb, size):
    from tfgcrf.data.pipeline import evaluation_crop

    return color.rgb_to_model(evaluation_crop(rgb, size)[tf.newaxis])


def examples(source, split, sizes, limit=None):
    """The evaluation images of a data source (folder, `offline`, `tfds:NAME`).

    Every image is cropped as `tfgcrf.data.make_dataset(..., training=False)` crops it: one
    centered square of the whole shorter side, resized (antialiased) to each model size in
    `sizes` and to `CONTROL_SIZE`.

    Args:
      source: an image folder, `offline` or `tfds:NAME[/CONFIG]`.
      split: the split to evaluate.
      sizes: the model grid sizes needed (one per distinct model size).
      limit: at most this many images.

    Yields:
      `Example`s, in the data source's order. Unreadable files are skipped with one warning.
    """
    from tfgcrf.data import folders, pipeline
    from tfgcrf.imageio import read_image

    sizes = sorted(set(sizes))
    folder = pipeline.source_folder(source)
    if folder is None:  # TFDS: no file names, no domains
        datasets = [
            pipeline.make_dataset(source, split, image_size=side, batch_size=1, training=False)
            for side in sizes + [control.CONTROL_SIZE]
        ]
        pairs = tf.data.Dataset.zip(tuple(datasets))
        for index, batches in enumerate(pairs.take(limit) if limit else pairs):
            yield Example(str(index), None, dict(zip(sizes, batches[:-1])), batches[-1])
        return
    paths = pipeline.split_paths(folder, split)
    domains = _manifest_domains(folder)
    produced, skipped = 0, []
    for path in paths:
        if limit and produced >= limit:
            break
        try:
            rgb = read_image(path)
        except InputError as err:
            skipped.append(str(err))
            continue
        name = folders.relative_key(path, folder)
        grids = {size: _to_model(rgb, size) for size in sizes}
        yield Example(name, domains.get(name), grids, _to_model(rgb, control.CONTROL_SIZE))
        produced += 1
    if skipped:
        logger.warning("skipped %d image files that could not be read (first: %s)", len(skipped), skipped[0])


class _FirstTraces(logging.Filter):
    """Drops TF's "triggered tf.function retracing" warnings while the first image traces the
    models' compiled functions: from the `with` to `stop()` (or the `with`'s end).

    TF counts traces per Python code object, not per instance: each of N models side by side
    traces its own `sample` (G-CRF and VAE-MDN), so N >= 2 models reach TF's 5 traces in 10
    calls on the first image although no function is traced twice. Later images are not
    filtered: a retrace there is a real one (tests/evaluation/harness_test.py counts the traces)."""

    def __init__(self, active):
        super().__init__()
        self.active = active

    def __enter__(self):
        if self.active:
            logging.getLogger("tensorflow").addFilter(self)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        logging.getLogger("tensorflow").removeFilter(self)  # no-op if not added

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def evaluate(colorizers, images, num_samples, seed, mode="top", keep_images=0, on_image=None,
             with_control=True, ablation=False, images_in_flight=IMAGES_IN_FLIGHT):
    """Runs every method on every image and aggregates the metrics.

    Args:
      colorizers: `{model name: tfgcrf.Colorizer}` (or one `Colorizer`), evaluated side by side.
        Anything with `grid_size`, `similarity`, `sample_grid` and `edit_session_grid` works.
      images: iterable of `Example`s holding every model's grid size (see `examples`).
      num_samples: N >= 2 samples per image for the diverse methods.
      seed: seed of the models' sampling (offset by the image index) and of the hint locations.
      mode: the models' sampling mode ("top" mixture components, or "draw").
      keep_images: how many images to keep renderings of, for the report's sheets.
      on_image: optional callback `(index, seconds, name)` after each image (`name`: the
        `Example`'s, e.g. the photo's path in its folder).
      with_control: also run the control protocol (Levin et al. and the models' edits: most
        of the time per image); False gives the diversity table only.
      ablation: also score the steps of the G-CRF edit path in the control table
        (`CONTROL_VARIANTS`: learned S alone, + local smoothness, + model prior, + patches, +
        point refinement; `gcrf` adds the full-resolution propagation, `gcrf_fitted` a prior
        fitted to the hints).
      images_in_flight: images evaluated at once (worker threads); the numbers do not depend
        on it.

    Returns:
      `(results, kept)`: the JSON-ready results dict (see `tfgcrf evaluate`) and a list of
      per-image renderings for the first `keep_images` images.
    """
    if num_samples < 2:
        raise UserError(f"evaluation needs at least 2 samples per image, got {num_samples}")
    if images_in_flight < 1:
        raise UserError(f"images_in_flight must be >= 1, got {images_in_flight}")
    if not isinstance(colorizers, dict):
        colorizers = {"model": colorizers}
    names = _method_names(colorizers, ablation)
    totals, by_domain = _Totals(), {}
    kept = []
    # `images_in_flight` images are evaluated at once, each in a worker thread, and Levin et al.
    # (SciPy) runs beside the models (TensorFlow) on each: the phases of one image (compiled TF
    # functions, PARDISO, BLAS, all releasing the GIL) leave a core idle much of the time. Every
    # image's numbers depend on its index only; they are added up in index order, so the results
    # equal a one-image-at-a-time run's.
    pending = collections.deque()
    start = time.perf_counter()

    def collect():
        future, name = pending.popleft()
        values, domain, kept_item = future.result()
        _add_values(values, domain, totals, by_domain)
        if kept_item is not None:
            kept.append(kept_item)
        if on_image:
            on_image(totals.count - 1, values["seconds/total"], name)

    # The next image is read and resized in a thread of its own while the images in flight are
    # evaluated (one at a time: only that thread advances `images`).
    upcoming = iter(images)
    # One model: a warning on the first image would be a real retrace (the tests look for it).
    # BLAS (numpy, SciPy) on one thread for the whole run: the edit sessions set that limit
    # process-wide while they run, so with images in flight the other image's BLAS calls ran on 1
    # or 2 threads by timing, and OpenBLAS's Cholesky rounds differently with each (results
    # differed in the last bits between runs; the cores are busy with the images anyway).
    with _FirstTraces(active=len(colorizers) > 1) as first_traces, one_blas_thread(), \
            concurrent.futures.ThreadPoolExecutor(max_workers=images_in_flight) as background, \
            concurrent.futures.ThreadPoolExecutor(max_workers=images_in_flight) as workers, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as reader:
        following = reader.submit(next, upcoming, None)
        for index in itertools.count():
            example = following.result()
            if example is None:
                break
            following = reader.submit(next, upcoming, None)
            pending.append((workers.submit(
                _evaluate_image, colorizers, index, example, num_samples, seed, mode,
                index < keep_images, with_control, ablation, background), example.name))
            # The first image runs alone: it traces the compiled functions once, instead of
            # every thread tracing them at the same time (duplicate work and TF's retracing
            # warnings).
            while len(pending) >= (images_in_flight if index else 1):
                collect()
            first_traces.stop()
        while pending:
            collect()
    if not totals.count:
        raise UserError("the data source has no images to evaluate (check --data and --split)")
    results = _summary(totals, by_domain, names, num_samples, seed)
    # The run's wall time per image (images overlap, so each image's own "total" is longer).
    results["seconds_per_image"]["run"] = (time.perf_counter() - start) / totals.count
    return results, kept


def _evaluate_image(colorizers, index, example, num_samples, seed, mode, keep, with_control,
                    ablation, background):
    """Every method on one image (see `evaluate`): `(values, domain, kept renderings or None)`."""
    start = time.perf_counter()
    values = {}
    if with_control:
        patches = _patches(example, seed, index)
        levin_job = background.submit(_levin_control, example.control[0][0, ..., 0].numpy(),
                                      *patches)
    samples, similarities = _diversity(
        colorizers, example, num_samples, seed + index, mode, values, keep
    )
    controlled = None
    if with_control:
        controlled = _control(colorizers, example, similarities, patches, levin_job, values,
                              keep, ablation)
    del similarities
    kept_item = None
    if keep:
        first = example.grids[min(example.grids)][0]
        kept_item = {"samples": samples, "l": first, "l_full": example.control[0],
                     "truth": _rgb_uint8(*example.control)[0], "control": controlled}
    values["seconds/total"] = time.perf_counter() - start
    return values, example.domain, kept_item


def _add_values(values, domain, totals, by_domain):
    """Adds one image's values to `totals` and to its domain's totals."""
    groups = [totals]
    if domain:
        groups.append(by_domain.setdefault(domain, _Totals()))
    for group in groups:
        group.count += 1
        for key, value in values.items():
            group.add(key, value)
