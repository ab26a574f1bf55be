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

import functools

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

# The constants of the authors' reference code (getColorExact.m), which produced the published
# Levin et al. numbers: the exponent's denominator is 0.6 times the window variance (the paper
# prints 2 sigma_r^2, which bleeds color across edges ~10x more), every neighbour weight stays
# above 1% of the closest neighbour's (no pixel is cut off from the hints), and perfectly flat
# windows get a floor.
_VARIANCE_SCALE = 0.6
_MIN_RELATIVE_WEIGHT = 0.01
_MIN_DENOMINATOR = 2e-6

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shifted(image, dy, dx):
    """`image[y + dy, x + dx]` with NaN outside the image."""
    height, width = image.shape
    padded = np.pad(image, 1, constant_values=np.nan)
    return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]


def affinities(luminance):
    """Normalized 3x3 affinity weights of every pixel to its 8 neighbours.

    Args:
      luminance: `[H, W]` float luminance.

    Returns:
      `[8, H, W]` weights (offsets in `_OFFSETS` order), 0 for neighbours outside the image, each
      pixel's weights summing to 1.
    """
    luminance = np.asarray(luminance, dtype=np.float64)
    neighbours = np.stack([_shifted(luminance, dy, dx) for dy, dx in _OFFSETS])
    window = np.concatenate([neighbours, luminance[None]])
    squared_diff = (neighbours - luminance[None]) ** 2
    closest = np.nanmin(squared_diff, axis=0)
    denominator = np.maximum.reduce(
        [
            _VARIANCE_SCALE * np.nanvar(window, axis=0),
            closest / -np.log(_MIN_RELATIVE_WEIGHT),
            np.full_like(closest, _MIN_DENOMINATOR),
        ]
    )
    weights = np.exp(-squared_diff / denominator[None])
    weights = np.where(np.isnan(weights), 0.0, weights)
    return weights / np.sum(weights, axis=0, keepdims=True)


def dissection_order(height, width, leaf=4):
    """A nested-dissection ordering of the pixels of a `height x width` grid (George 1973).

    The grid is split in two by one row or column of pixels (a separator: with 3x3 windows, the
    pixels on either side of a full row or column are not neighbours), recursively, until the
    blocks have at most `leaf * leaf` pixels; each block's pixels come first, its separator last.
    A sparse LU of the permuted system fills in O(n log n) entries instead of the O(n^1.5) of a
    general ordering: at 256x256 half the fill of SuperLU's COLAMD and about 2.5x less time.

    Returns:
      int64 `[height * width]` permutation of the row-major pixel indices.
    """
    return _dissection_order(int(height), int(width), int(leaf)).copy()


@functools.lru_cache(maxsize=8)
def _dissection_order(height, width, leaf):
    index = np.arange(height * width).reshape(height, width)
    parts = []
    stack = [(0, height, 0, width, False)]
    while stack:  # depth-first, left block, right block, then the separator
        top, bottom, left, right, separator = stack.pop()
        rows, cols = bottom - top, right - left
        if separator or rows * cols <= leaf * leaf or min(rows, cols) < 3:
            parts.append(index[top:bottom, left:right].ravel())
        elif cols >= rows:
            middle = (left + right) // 2
            stack += [(top, bottom, middle, middle + 1, True), (top, bottom, middle + 1, right, False),
                      (top, bottom, left, middle, False)]
        else:
            middle = (top + bottom) // 2
            stack += [(middle, middle + 1, left, right, True), (middle + 1, bottom, left, right, False),
                      (top, middle, left, right, False)]
    return np.concatenate(parts)


class Propagation:
    """Levin et al.'s system of one image, for any number of hint sets.

    The affinities and the sparse entries of every pixel's row are computed once per image; each
    hint set then only replaces the hinted rows by identity rows and is solved by one sparse LU
    in the nested-dissection order of `dissection_order`, without pivoting: the system is a
    nonsingular M-matrix (free rows: 1 on the diagonal, -w_rs summing to -1; hinted rows: the
    identity; every pixel connected to every other), whose LU needs no pivoting.

    Args:
      luminance: `[H, W]` luminance (L* / 100).
    """

    def __init__(self, luminance):
        luminance = np.asarray(luminance, dtype=np.float64)
        if luminance.ndim != 2:
            raise ValueError(f"luminance must be [H, W], got shape {luminance.shape}")
        self.shape = luminance.shape
        height, width = self.shape
        order = dissection_order(height, width)
        position = np.empty_like(order)
        position[order] = np.arange(order.size)  # pixel -> row/column of the permuted system
        index = np.arange(height * width).reshape(height, width)
        rows, cols, values = [index.ravel()], [index.ravel()], [np.ones(height * width)]
        for (dy, dx), weight in zip(_OFFSETS, affinities(luminance)):
            neighbour = _shifted(index.astype(np.float64), dy, dx)
            use = weight > 0
            rows.append(index[use])
            cols.append(neighbour[use].astype(np.int64))
            values.append(-weight[use])
        rows, cols, values = (np.concatenate(part) for part in (rows, cols, values))
        self._order = order
        # Entries in permuted coordinates; a hinted row keeps only its diagonal.
        self._rows, self._cols, self._values = position[rows], position[cols], values
        self._row_pixel = rows  # the pixel whose row holds each entry
        self._diagonal = rows == cols

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
        keep = self._diagonal | ~hint_mask.ravel()[self._row_pixel]
        system = sparse.csc_matrix(
            (self._values[keep], (self._rows[keep], self._cols[keep])), shape=(count, count)
        )
        right_hand_side = np.where(hint_mask[..., None], hint_ab, 0.0).reshape(count, -1)
        factors = sparse_linalg.splu(system, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                     options=dict(SymmetricMode=True))
        solution = np.empty_like(right_hand_side)
        solution[self._order] = factors.solve(right_hand_side[self._order])
        return solution.reshape(height, width, -1)


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
