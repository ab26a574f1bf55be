"""Colorization metrics: accuracy, diversity, structural consistency, colorfulness, PSNR.

Units (one convention for every metric here):
- chroma `ab` is in the model's units, ab / 110 (`tfgcrf.color.AB_SCALE`), so roughly [-1, 1];
  this is the scale the paper's Table 2 numbers appear to be reported in (Deshpande et al.'s
  code, whose eob the paper reuses, divides 8-bit ab by 128).
- gray `l` is L* / 100, in [0, 1].
- RGB renderings are float in [0, 1] (SSIM) or 8-bit (PSNR, colorfulness accepts either).

All functions take numpy arrays for a single image (a sample set `[N, H, W, C]` or one image
`[H, W, C]`) and return Python floats, so the harness can average them over images.
"""

import itertools
import math

import numpy as np
from scipy import ndimage

# Hasler & Suesstrunk colorfulness: one home, in the data filter that also uses it (the data
# package must not import evaluation).
from tfgcrf.data.photo_filter import colorfulness  # noqa: F401

# A gray pixel is "flat" when the L* gradient magnitude everywhere in its 3x3 neighbourhood stays
# below 4 L* units per pixel: chroma changes there are not explained by a luminance edge. On 64x64
# photos this keeps about a quarter of the pixels (2 units: an eighth, often none at all).
FLAT_THRESHOLD = 0.04

# Identical 8-bit images have zero error, but an 8-bit image is only known up to its rounding
# noise (uniform on +-0.5, variance 1/12): PSNR is capped at that bound, about 58.92 dB, which
# keeps averages finite and JSON-serializable.
PSNR_CAP_DB = 10.0 * math.log10(255.0**2 * 12.0)


def _as_samples(samples, truth=None):
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 4:
        raise ValueError(f"samples must be [N, H, W, C], got shape {samples.shape}")
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float64)
        if truth.shape != samples.shape[1:]:
            raise ValueError(f"truth shape {truth.shape} does not match samples {samples.shape}")
    return samples, truth


def eob(samples_ab, truth_ab):
    """Error-of-best per pixel.

    For every pixel, the squared ab error (mean over the a and b channels, in ab / 110 units) of
    the sample closest to the ground truth at that pixel; averaged over pixels.

    Args:
      samples_ab: `[N, H, W, 2]` sampled chroma.
      truth_ab: `[H, W, 2]` ground-truth chroma.

    Returns:
      The error, a float >= 0 (0 when some sample matches every pixel).
    """
    samples_ab, truth_ab = _as_samples(samples_ab, truth_ab)
    per_pixel = np.mean((samples_ab - truth_ab[None]) ** 2, axis=-1)  # [N, H, W]
    return float(np.mean(np.min(per_pixel, axis=0)))


# Thresholds of the AuC of Zhang, Isola & Efros (2016), "Colorful Image Colorization", Sec. 3.1:
# the fraction of pixels whose ab error is within t, for t = 0, 1, ..., 150 (CIE ab units).
AUC_THRESHOLDS = np.arange(0, 151)


def auc(samples_ab, truth_ab, thresholds=AUC_THRESHOLDS):
    """Area under the cumulative per-pixel ab-error curve (Zhang et al. 2016's "AuC"), in [0, 1].

    For each pixel the Euclidean ab distance to the truth in CIE ab units (model units x
    `AB_SCALE`); with several samples, the distance of the sample closest to the truth at that
    pixel (pass one sample for the AuC of that sample). The accuracy at threshold t is the
    fraction of pixels within t; the AuC is its mean over `thresholds` (0..150 by 1: the curve's
    area normalized by its width; a perfect colorization scores 1).

    Args:
      samples_ab: `[N, H, W, 2]` chroma in model units.
      truth_ab: `[H, W, 2]` ground-truth chroma in model units.
      thresholds: the ab-distance thresholds, increasing.

    Returns:
      The AuC, a float in [0, 1].
    """
    from tfgcrf.color import AB_SCALE

    samples_ab, truth_ab = _as_samples(samples_ab, truth_ab)
    distance = np.sqrt(np.sum((samples_ab - truth_ab[None]) ** 2, axis=-1)) * AB_SCALE
    best = np.min(distance, axis=0).ravel()
    within = np.searchsorted(np.sort(best), np.asarray(thresholds, np.float64), side="right")
    return float(np.mean(within / best.size))


def variance(samples_ab):
    """Variance across samples: per pixel and channel (population variance over N), averaged.

    Args:
      samples_ab: `[N, H, W, 2]` sampled chroma (ab / 110 units).

    Returns:
      The mean variance, a float >= 0.
    """
    samples_ab, _ = _as_samples(samples_ab)
    return float(np.mean(np.var(samples_ab, axis=0)))


def ssim_pairwise(samples_rgb):
    """Mean SSIM over all unordered pairs of samples: `tf.image.ssim`'s definition (11x11
    Gaussian window, sigma 1.5, "valid" windows only, K1 = 0.01, K2 = 0.03, max value 1, the
    mean over windows and channels), computed in float64 NumPy with the window as two 1-D passes
    and each sample's local means computed once (not once per pair).

    Args:
      samples_rgb: `[N, H, W, 3]` RGB renderings, float in [0, 1], N >= 2, H and W >= 11.

    Returns:
      The mean SSIM, 1.0 when all samples are identical.

    Raises:
      ValueError: fewer than 2 samples.
    """
    samples_rgb, _ = _as_samples(samples_rgb)
    count = samples_rgb.shape[0]
    if count < 2:
        raise ValueError("pairwise SSIM needs at least 2 samples")
    images = np.asarray(samples_rgb, np.float32).astype(np.float64)  # TF compares float32 images
    first, second = (list(side) for side in zip(*itertools.combinations(range(count), 2)))
    means, squares = _window_mean(images), _window_mean(images * images)
    products = _window_mean(images[first] * images[second])
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2
    mean_x, mean_y = means[first], means[second]
    luminance = (2.0 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1)
    structure = ((2.0 * (products - mean_x * mean_y) + c2)
                 / (squares[first] + squares[second] - mean_x**2 - mean_y**2 + c2))
    return float(np.mean(luminance * structure))


_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_SIZE, _SSIM_SIGMA = 11, 1.5


def _window_mean(images):
    """`[M, H, W, C]` -> the Gaussian-weighted means of its 11x11 "valid" windows
    `[M, H - 10, W - 10, C]` (the window normalized to sum 1, as `tf.image.ssim`'s)."""
    offsets = np.arange(_SSIM_SIZE) - (_SSIM_SIZE - 1) / 2.0
    window = np.exp(-0.5 * offsets**2 / _SSIM_SIGMA**2)
    window /= window.sum()
    rows = np.lib.stride_tricks.sliding_window_view(images, _SSIM_SIZE, axis=1) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, _SSIM_SIZE, axis=2) @ window


def chroma_gradient_energy(ab, region=None):
    """Mean squared chroma gradient, the speckle measure's numerator and denominator.

    Forward differences on the `[H-1, W-1]` grid: `|a(x+1)-a(x)|^2 + |a(y+1)-a(y)|^2` summed over
    the two channels, averaged over the pixels of `region` (all pixels when None).

    Args:
      ab: `[H, W, 2]` chroma (ab / 110 units).
      region: optional boolean `[H-1, W-1]` mask (e.g. `flat_region(l)`).

    Returns:
      The mean energy; 0.0 when `region` is empty.
    """
    ab = np.asarray(ab, dtype=np.float64)
    dx = ab[:-1, 1:] - ab[:-1, :-1]
    dy = ab[1:, :-1] - ab[:-1, :-1]
    energy = np.sum(dx**2 + dy**2, axis=-1)
    if region is None:
        return float(np.mean(energy))
    region = np.asarray(region, dtype=bool)
    if region.shape != energy.shape:
        raise ValueError(f"region must be {energy.shape}, got {region.shape}")
    return float(np.mean(energy[region])) if region.any() else 0.0


def flat_region(l, threshold=FLAT_THRESHOLD):
    """Where the gray image is flat: `[H-1, W-1]` mask on the chroma-gradient grid.

    A position is flat when the forward-difference gradient magnitude of `l` is below `threshold`
    everywhere in its 3x3 neighbourhood (so chroma next to a luminance edge is not counted).

    Args:
      l: `[H, W]` or `[H, W, 1]` gray, L* / 100.
      threshold: gradient magnitude bound in L* / 100 units per pixel.

    Returns:
      Boolean `[H-1, W-1]` array.
    """
    l = np.asarray(l, dtype=np.float64)
    if l.ndim == 3:
        l = l[..., 0]
    dx = l[:-1, 1:] - l[:-1, :-1]
    dy = l[1:, :-1] - l[:-1, :-1]
    magnitude = np.sqrt(dx**2 + dy**2)
    return ndimage.maximum_filter(magnitude, size=3, mode="nearest") < threshold


def psnr(rgb, truth_rgb):
    """PSNR in dB between two 8-bit RGB images, capped at `PSNR_CAP_DB` (identical images).

    Args:
      rgb: `[H, W, 3]` uint8 image.
      truth_rgb: `[H, W, 3]` uint8 reference.

    Returns:
      `10 log10(255^2 / MSE)`, at most `PSNR_CAP_DB`.
    """
    rgb, truth_rgb = np.asarray(rgb), np.asarray(truth_rgb)
    if rgb.dtype != np.uint8 or truth_rgb.dtype != np.uint8:
        raise ValueError(f"psnr expects uint8 images, got {rgb.dtype} and {truth_rgb.dtype}")
    if rgb.shape != truth_rgb.shape:
        raise ValueError(f"psnr shapes differ: {rgb.shape} vs {truth_rgb.shape}")
    mse = np.mean((rgb.astype(np.float64) - truth_rgb.astype(np.float64)) ** 2)
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(10.0 * math.log10(255.0**2 / mse), PSNR_CAP_DB))
