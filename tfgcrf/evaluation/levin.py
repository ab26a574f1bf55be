"""Levin, Lischinski & Weiss (SIGGRAPH 2004), "Colorization using optimization".

The control baseline of the paper's Table 3, implemented from the paper. Each chroma channel U
minimizes `J(U) = sum_r (U(r) - sum_{s in N(r)} w_rs U(s))^2` with the hinted pixels fixed, where
N(r) is the 3x3 window around r and `w_rs ∝ exp(-(Y(r) - Y(s))^2 / (2 sigma_r^2))`, normalized to
sum to one over N(r), sigma_r^2 being the variance of the luminance in the window (with the
constants of the authors' code, see below). The minimum
solves the sparse linear system `U(r) - sum_s w_rs U(s) = 0` for free pixels and `U(r) = hint(r)`
for hinted ones. Here the luminance is L* / 100 and the channels are a*, b* (the paper uses YUV;
only the luminance affinities matter and both are opponent-chroma spaces).
"""

import numpy as np
from scipy import sparse

from tfgcrf import grid_lu

from tfgcrf.layers import edit_terms

# The affinities' rules and constants (those of the authors' reference code, getColorExact.m) have
# one home, `tfgcrf.layers.edit_terms.local_affinities`, shared with the edits and the
# full-resolution propagation of `tfgcrf.hints`.
_OFFSETS = list(edit_terms.OFFSETS)


def _shifted(image, dy, dx):
    """`image[y + dy, x + dx]` with NaN outside the image."""
    height, width = image.shape
    padded = np.pad(image, 1, constant_values=np.nan)
    return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]


def affinities(luminance):
    """Normalized 3x3 affinity weights of every pixel to its 8 neighbours.

    `edit_terms.local_affinities` in float64 (the constants of the authors' code: the exponent's
    denominator is 0.6 times the window variance, every neighbour weight stays above 1% of the
    closest neighbour's, flat windows get a floor).

    Args:
      luminance: `[H, W]` float luminance.

    Returns:
      float64 `[8, H, W]` weights (offsets in `_OFFSETS` order), 0 for neighbours outside the
      image, each pixel's weights summing to 1.
    """
    import tensorflow as tf

    luminance = np.asarray(luminance, dtype=np.float64)
    weights = edit_terms.local_affinities(luminance[None], dtype=tf.float64)[0].numpy()
    return np.moveaxis(weights, -1, 0)


class Propagation:
    """Levin et al.'s system of one image, for any number of hint sets.

    The affinities and the sparse entries of every pixel's row are computed once per image; each
    hint set then only replaces the hinted rows by identity rows and is solved by one sparse LU
    (`tfgcrf.grid_lu.solve`: nested-dissection order, no pivoting): the system is a nonsingular
    M-matrix (free rows: 1 on the diagonal, -w_rs summing to -1; hinted rows: the identity; every
    pixel connected to every other), whose LU needs no pivoting.

    Args:
      luminance: `[H, W]` luminance (L* / 100).
    """

    def __init__(self, luminance):
        luminance = np.asarray(luminance, dtype=np.float64)
        if luminance.ndim != 2:
            raise ValueError(f"luminance must be [H, W], got shape {luminance.shape}")
        self.shape = luminance.shape
        height, width = self.shape
        index = np.arange(height * width).reshape(height, width)
        rows, cols, values = [index.ravel()], [index.ravel()], [np.ones(height * width)]
        for (dy, dx), weight in zip(_OFFSETS, affinities(luminance)):
            neighbour = _shifted(index.astype(np.float64), dy, dx)
            use = weight > 0
            rows.append(index[use])
            cols.append(neighbour[use].astype(np.int64))
            values.append(-weight[use])
        rows, cols, values = (np.concatenate(part) for part in (rows, cols, values))
        count = height * width
        # The system without hints (row-major pixels); a hint set replaces its hinted rows by
        # the identity's (the diagonal is already 1).
        self._systems = grid_lu.HintedSystems(
            sparse.csr_matrix((values, (rows, cols)), shape=(count, count)), self.shape)

    def colorize(self, hint_mask, hint_ab):
        """Propagates hinted chroma over the image (see `colorize`).

        Args:
          hint_mask: `[H, W]` boolean, True at hinted pixels (at least one).
          hint_ab: `[H, W, C]` chroma, read at hinted pixels only.

        Returns:
          `[H, W, C]` float64 chroma, equal to `hint_ab` at hinted pixels (when all hints have one
          color: that color everywhere, without a factorization).
        """
        hint_mask = np.asarray(hint_mask, dtype=bool)
        hint_ab = np.asarray(hint_ab, dtype=np.float64)
        height, width = self.shape
        if hint_mask.shape != self.shape or hint_ab.shape[:2] != self.shape:
            raise ValueError(
                f"hint_mask {hint_mask.shape} and hint_ab {hint_ab.shape} must match the "
                f"luminance {self.shape}"
            )
        if not hint_mask.any():
            raise ValueError("Levin colorization needs at least one hinted pixel")
        values = hint_ab[hint_mask]  # [n, C]
        if np.all(values == values[:1]):
            # One color in every hint (e.g. one 7x7 patch): the rows of W sum to 1, so that color
            # everywhere solves the system, whose solution is unique. No factorization needed.
            return np.array(np.broadcast_to(values[0], hint_ab.shape))
        count = height * width
        right_hand_side = np.where(hint_mask[..., None], hint_ab, 0.0).reshape(count, -1)
        return self._systems.solve(np.flatnonzero(hint_mask), right_hand_side).reshape(
            height, width, -1)


def colorize(luminance, hint_mask, hint_ab):
    """Propagates hinted chroma over the image by Levin et al.'s optimization.

    One hint set; `Propagation` answers several hint sets of one image.

    Args:
      luminance: `[H, W]` luminance (L* / 100).
      hint_mask: `[H, W]` boolean, True at hinted pixels (at least one).
      hint_ab: `[H, W, C]` chroma, read at hinted pixels only.

    Returns:
      `[H, W, C]` float64 chroma, equal to `hint_ab` at hinted pixels.

    Raises:
      ValueError: shapes that do not match, or no hinted pixel.
    """
    luminance = np.asarray(luminance, dtype=np.float64)
    hint_mask = np.asarray(hint_mask, dtype=bool)
    if hint_mask.shape != luminance.shape:  # checked before the affinities are computed
        hint_ab = np.asarray(hint_ab)
        raise ValueError(
            f"hint_mask {hint_mask.shape} and hint_ab {hint_ab.shape} must match the "
            f"luminance {luminance.shape}"
        )
    return Propagation(luminance).colorize(hint_mask, hint_ab)
