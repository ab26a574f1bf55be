"""Class rebalancing of the VAE reconstruction loss (Zhang et al. 2016, used by VAE-MDN).

Rare (saturated) colors are up-weighted so that the decoder does not settle on desaturated averages:
the ab plane is cut into `BINS_PER_AXIS`^2 bins of `BIN_SIZE` ab units, the empirical distribution
p of the training pixels over the bins is smoothed with a Gaussian of `SMOOTHING` ab units, and a
pixel whose true color falls in bin q gets the weight

    w(q) proportional to 1 / ((1 - lambda) p(q) + lambda / Q),   normalized so that E_p[w] = 1,

with Q the number of bins that hold any color. lambda = 1 gives uniform weights (plain L2).
"""

import functools

import numpy as np
import tensorflow as tf

from tfgcrf.color import AB_SCALE, rgb_to_lab

BIN_SIZE = 10.0
BINS_PER_AXIS = 22  # [-110, 110) in both a and b
SMOOTHING = 5.0


def ab_bins(ab):
    """Flat bin index (a_bin * BINS_PER_AXIS + b_bin) of chroma `[..., 2]` in model units."""
    index = tf.cast(tf.floor((ab * AB_SCALE + AB_SCALE) / BIN_SIZE), tf.int32)
    index = tf.clip_by_value(index, 0, BINS_PER_AXIS - 1)
    return index[..., 0] * BINS_PER_AXIS + index[..., 1]


def ab_histogram(dataset, max_batches=200):
    """Pixel counts per bin `[BINS_PER_AXIS ** 2]` (float64) over `(l, ab)` batches."""
    counts = np.zeros(BINS_PER_AXIS**2, np.float64)
    for _, ab in dataset.take(max_batches):
        bins = tf.reshape(ab_bins(ab), [-1])
        counts += tf.math.bincount(bins, minlength=BINS_PER_AXIS**2, dtype=tf.float64).numpy()
    return counts


def _gaussian_smooth(grid, sigma_bins):
    radius = int(np.ceil(3 * sigma_bins))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_bins) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(grid, radius)
    rows = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])
    return np.stack([np.convolve(column, kernel, mode="valid") for column in rows.T]).T


def rebalancing_weights(counts, lam):
    """Per-bin weights `[BINS_PER_AXIS, BINS_PER_AXIS]` (float32) from bin `counts`.

    Args:
        counts: pixel counts per bin, `[BINS_PER_AXIS ** 2]` (e.g. from `ab_histogram`).
        lam: lambda in [0, 1]; 1 gives uniform weights.

    Returns:
        Weights with E_p[w] = 1 over the smoothed distribution p; bins no training pixel reaches
        (after smoothing) get weight 1.
    """
    counts = np.asarray(counts, np.float64).reshape(BINS_PER_AXIS, BINS_PER_AXIS)
    if counts.sum() <= 0:
        raise ValueError("rebalancing needs a non-empty color histogram")
    probability = _gaussian_smooth(counts / counts.sum(), SMOOTHING / BIN_SIZE)
    present = probability > 1e-12
    p = probability[present] / probability[present].sum()
    weights = 1.0 / ((1.0 - lam) * p + lam / present.sum())
    out = np.ones_like(probability)
    out[present] = weights / (p * weights).sum()
    return out.astype(np.float32)


@functools.lru_cache(maxsize=None)
def gamut_bins():
    """Flat indices (sorted) of the bins that hold an sRGB color at some lightness.

    The color-classification head (Zhang et al. 2016: 313 in-gamut bins of size 10) predicts a
    distribution over these Q bins. Computed from the 8-bit sRGB colors, converted to Lab with
    `tfgcrf.color` (float64).

    Returns:
        A tuple of Q ints in [0, BINS_PER_AXIS ** 2).
    """
    # The projection of the gamut solid onto the ab plane is the projection of its surface, so
    # the 6 faces of the 8-bit RGB cube (393 k colors) give exactly the bins of all 16.7 M colors.
    levels = np.arange(256, dtype=np.float64) / 255.0
    first, second = (grid.reshape(-1) for grid in np.meshgrid(levels, levels, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            columns = [first, second]
            columns.insert(axis, np.full_like(first, value))
            faces.append(np.stack(columns, axis=-1))
    ab = rgb_to_lab(tf.constant(np.concatenate(faces)))[:, 1:] / AB_SCALE
    present = np.zeros(BINS_PER_AXIS**2, bool)
    present[np.unique(ab_bins(tf.cast(ab, tf.float32)).numpy())] = True
    return tuple(int(i) for i in np.flatnonzero(present))


def bin_centers(bins):
    """Centers `[Q, 2]` (float32, model units ab / AB_SCALE) of flat bin indices `bins`."""
    bins = np.asarray(bins)
    index = np.stack([bins // BINS_PER_AXIS, bins % BINS_PER_AXIS], axis=-1)
    return ((index + 0.5) * BIN_SIZE - AB_SCALE).astype(np.float32) / AB_SCALE


def class_of_bin(bins):
    """Lookup `[BINS_PER_AXIS ** 2]` int32: flat bin -> index of the nearest of `bins`."""
    centers = bin_centers(bins)
    every = bin_centers(np.arange(BINS_PER_AXIS**2))
    distance = np.sum((every[:, None, :] - centers[None]) ** 2, axis=-1)
    return np.argmin(distance, axis=-1).astype(np.int32)
