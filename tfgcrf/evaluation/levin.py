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


def colorize(luminance, hint_mask, hint_ab):
    """Propagates hinted chroma over the image by Levin et al.'s optimization.

    Args:
      luminance: `[H, W]` luminance (L* / 100).
      hint_mask: `[H, W]` boolean, True at hinted pixels (at least one).
      hint_ab: `[H, W, C]` chroma, read at hinted pixels only.

    Returns:
      `[H, W, C]` float64 chroma, equal to `hint_ab` at hinted pixels.
    """
    luminance = np.asarray(luminance, dtype=np.float64)
    hint_mask = np.asarray(hint_mask, dtype=bool)
    hint_ab = np.asarray(hint_ab, dtype=np.float64)
    height, width = luminance.shape
    if hint_mask.shape != (height, width) or hint_ab.shape[:2] != (height, width):
        raise ValueError(
            f"hint_mask {hint_mask.shape} and hint_ab {hint_ab.shape} must match the "
            f"luminance {luminance.shape}"
        )
    if not hint_mask.any():
        raise ValueError("Levin colorization needs at least one hinted pixel")
    count = height * width
    index = np.arange(count).reshape(height, width)
    free = ~hint_mask
    rows, cols, values = [index[free]], [index[free]], [np.ones(np.count_nonzero(free))]
    weights = affinities(luminance)
    for (dy, dx), weight in zip(_OFFSETS, weights):
        neighbour = _shifted(index.astype(np.float64), dy, dx)
        use = free & (weight > 0)
        rows.append(index[use])
        cols.append(neighbour[use].astype(np.int64))
        values.append(-weight[use])
    rows.append(index[hint_mask])
    cols.append(index[hint_mask])
    values.append(np.ones(np.count_nonzero(hint_mask)))
    system = sparse.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count)
    )
    right_hand_side = np.where(hint_mask[..., None], hint_ab, 0.0).reshape(count, -1)
    solution = sparse_linalg.splu(system).solve(right_hand_side)
    return solution.reshape(height, width, -1)
