"""Hints at the photo's resolution: each point's chroma reproduced at its own pixel (TF ops).

The G-CRF solves on the model grid (64 x 64 for the default model), so two points inside one grid
cell share one grid pixel and are blended, and a point's color is only approached by the guided
upsampling. `refine_at_points` corrects the upsampled chroma at full resolution with the hints as
constraints: the residual r_k = c_k - ab(p_k) at every point is spread by an edge-aware kernel

    k_j(x) = exp(-|x - p_j|^2 / (2 sigma_j^2) - (L(x) - L(p_j))^2 / (2 sigma_L^2)),

truncated to a (2R + 1)^2 window, with weights w solving K w = r at the points (K_ij = k_j(p_i)),
so the result equals c_k exactly at every point p_k (interpolation by the kernel). sigma_j is
`sigma_cells` grid cells, shrunk to half the distance to the nearest other point, so that points
closer than a cell (8 px apart on a 1024 px photo) keep their own colors instead of turning into a
blend and K stays diagonally dominant. The lightness term keeps a correction from crossing
luminance edges.

`check_points` is the single validation of user points and links in pixels (API, CLI, session).
"""

import math

import numpy as np
import tensorflow as tf

from tfgcrf.errors import InputError

# Reach of the correction around a point, in model-grid cells, and its lightness scale (L* units);
# chosen on the validation split (README, "Control").
SIGMA_CELLS = 0.5
SIGMA_LIGHTNESS = 10.0
# Smallest kernel width, in pixels (points on neighbouring pixels).
_MIN_SIGMA = 0.5
# Window half-side in kernel widths.
_WINDOW_SIGMAS = 3.0


def correction_radius(cell, sigma_cells=SIGMA_CELLS):
    """Half-side R (pixels, int) of the correction window for grid cells of `cell` pixels."""
    return max(1, int(math.ceil(_WINDOW_SIGMAS * max(sigma_cells * cell, _MIN_SIGMA))))


def refine_at_points(ab_full, L_full, points_px, colors_ab, cell, sigma_cells=SIGMA_CELLS,
                     sigma_lightness=SIGMA_LIGHTNESS):
    """Corrects full-resolution chroma so that every point gets exactly its color.

    Args:
      ab_full: `[H, W, 2]` chroma in model units (e.g. the guided upsampling of the G-CRF answer).
      L_full: `[H, W]` CIE L* of the photo (0-100).
      points_px: `[K, 2]` int `(x, y)` pixels of the points, inside the image (K may be 0).
      colors_ab: `[K, 2]` chroma of the points (model units). Of several points on one pixel the
        last one counts (callers refuse conflicting colors on one pixel, see `check_points`).
      cell: size of a model-grid cell in photo pixels (float scalar).
      sigma_cells: reach of the correction in grid cells (at most; shrunk near other points).
      sigma_lightness: lightness scale of the edge-aware kernel, in L* units.

    Returns:
      `[H, W, 2]` chroma, equal to `colors_ab` at the points (up to float32 round-off).
    """
    ab_full = tf.convert_to_tensor(ab_full, tf.float32)
    L_full = tf.convert_to_tensor(L_full, tf.float32)
    points = tf.cast(points_px, tf.int32)
    colors = tf.cast(colors_ab, tf.float32)
    sigma = tf.maximum(tf.cast(cell, tf.float32) * sigma_cells, _MIN_SIGMA)
    radius = tf.maximum(1, tf.cast(tf.math.ceil(_WINDOW_SIGMAS * sigma), tf.int32))
    count = tf.shape(points)[0]
    yx = tf.reverse(points, axis=[-1])
    position = tf.cast(points, tf.float32)

    # The last point of every pixel counts; earlier duplicates are switched off.
    same = tf.reduce_all(tf.equal(points[:, None], points[None]), axis=-1)
    later = tf.range(count)[None, :] > tf.range(count)[:, None]
    keep = tf.logical_not(tf.reduce_any(same & later, axis=1))  # [K]
    pair_kept = keep[:, None] & keep[None, :] & tf.logical_not(tf.eye(count, dtype=tf.bool))

    offset = position[:, None] - position[None]  # [K, K, 2]: p_i - p_j
    squared = tf.reduce_sum(tf.square(offset), axis=-1)
    nearest = tf.reduce_min(tf.where(pair_kept, squared, tf.fill(tf.shape(squared), math.inf)),
                            axis=0)  # [K] per kernel j
    widths = tf.clip_by_value(0.5 * tf.sqrt(nearest), _MIN_SIGMA, sigma)  # sigma_j
    lightness = tf.gather_nd(L_full, yx)
    radius_f = tf.cast(radius, tf.float32)
    inside = tf.reduce_all(tf.abs(offset) <= radius_f, axis=-1)

    def kernel(squared_distance, lightness_difference, width):
        return tf.exp(-squared_distance / (2.0 * tf.square(width))
                      - tf.square(lightness_difference) / (2.0 * sigma_lightness**2))

    matrix = kernel(squared, lightness[:, None] - lightness[None], widths[None])
    matrix = tf.where(inside & keep[:, None] & keep[None], matrix, 0.0)
    matrix = tf.where(tf.eye(count, dtype=tf.bool), 1.0, matrix)
    residual = tf.where(keep[:, None], colors - tf.gather_nd(ab_full, yx), 0.0)
    weights = tf.linalg.solve(matrix, residual)  # [K, 2]

    # Every point's window of (2R + 1)^2 pixels, on the image padded by R on each side.
    steps = tf.range(-radius, radius + 1)
    dy, dx = tf.meshgrid(steps, steps, indexing="ij")
    window = tf.reshape(tf.stack([dy, dx], axis=-1), [-1, 2])  # [S, 2]
    padded_yx = yx[:, None] + radius + window[None]  # [K, S, 2] in the padded image
    pad = [[radius, radius], [radius, radius]]
    L_padded = tf.pad(L_full, pad)
    values = kernel(tf.cast(tf.reduce_sum(tf.square(window), axis=-1), tf.float32)[None],
                    tf.gather_nd(L_padded, padded_yx) - lightness[:, None], widths[:, None])
    spread = values[..., None] * tf.where(keep[:, None], weights, 0.0)[:, None]  # [K, S, 2]
    shape = tf.shape(ab_full)
    canvas = tf.scatter_nd(tf.reshape(padded_yx, [-1, 2]), tf.reshape(spread, [-1, 2]),
                           tf.stack([shape[0] + 2 * radius, shape[1] + 2 * radius, 2]))
    return ab_full + canvas[radius:radius + shape[0], radius:radius + shape[1]]


# A link end whose refinement moved its chroma by less than this (model units, ~0.1 ab) passes
# nothing to the other end.
_LINK_CHANGE = 1e-3


def link_points(ab_full, refined, points_px, links_px):
    """The points' refinement carried across "same color" links (extra points for a second pass).

    On the grid a link makes its two places agree; at full resolution `refine_at_points` then
    moves the place near a point (at a point's own pixel: exactly to the point's color) and not
    the other. For every link, the end whose chroma the refinement moved more passes its refined
    chroma to the other end, as an extra point there (unless that pixel holds a user point: the
    point wins). Links are taken one at a time (a chain of links passes a correction one step).

    Args:
      ab_full: `[H, W, 2]` chroma before the refinement; refined `[H, W, 2]` after it.
      points_px: `[K, 2]` int `(x, y)` pixels of the user points.
      links_px: `[J, 2, 2]` int `(x, y)` pixels of the links' two ends.

    Returns:
      `(pixels [M, 2] int32, chroma [M, 2] float32)` of the extra points, M <= J.
    """
    ends = tf.cast(links_px, tf.int32)
    points = tf.cast(points_px, tf.int32)
    yx = tf.reverse(ends, axis=[-1])  # [J, 2, 2]
    after = tf.gather_nd(refined, yx)  # [J, 2 ends, 2]
    moved = tf.norm(after - tf.gather_nd(ab_full, yx), axis=-1)  # [J, 2]
    source = tf.cast(moved[:, 1] > moved[:, 0], tf.int32)  # the end that moved more
    chroma = tf.gather(after, source, batch_dims=1)
    target = tf.gather(ends, 1 - source, batch_dims=1)  # [J, 2]
    on_point = tf.reduce_any(tf.reduce_all(target[:, None] == points[None], axis=-1), axis=1)
    use = tf.logical_not(on_point) & (tf.reduce_max(moved, axis=1) > _LINK_CHANGE)
    return tf.boolean_mask(target, use), tf.boolean_mask(chroma, use)


def check_points(points, width, height, what="point"):
    """Validates `(x, y)` pixel points: numbers inside the image. Returns float64 `[K, 2]`."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what}s must be (x, y) pairs of numbers, got {points!r}") from None
    if array.size == 0:
        return np.zeros([0, 2])
    if array.ndim != 2 or array.shape[1] != 2:
        raise InputError(f"{what}s must be a list of (x, y) pairs, got {points!r}")
    for x, y in array:
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"{what} ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(x must be in 0..{width - 1}, y in 0..{height - 1})")
    return array


def pixels_of(points, width, height):
    """The pixel `(x, y)` int `[K, 2]` holding each point: the one whose square contains the point's
    relative position (x + 0.5) / width, as the SavedModel's floor(x_rel * width) finds it."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return np.clip(np.floor(points + 0.5), 0, [width - 1, height - 1]).astype(np.int32)


def check_conflicts(points, chroma, width, height, tolerance=1e-3):
    """Refuses two points on one pixel with different colors (one line naming both)."""
    pixels = {}
    for index, ((x, y), ab) in enumerate(zip(pixels_of(points, width, height), chroma)):
        earlier = pixels.get((x, y))
        if earlier is not None and np.max(np.abs(chroma[earlier] - ab)) > tolerance:
            raise InputError(
                f"points {earlier + 1} and {index + 1} are on the same pixel ({x}, {y}) with "
                "different colors; move one of them or give them the same color")
        pixels[(x, y)] = index


def check_links(links, width, height):
    """Validates links `[((x1, y1), (x2, y2)), ...]` in pixels. Returns float64 `[J, 2, 2]`."""
    try:
        array = np.asarray(links, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"links must be ((x1, y1), (x2, y2)) pairs of points, got {links!r}") from None
    if array.size == 0:
        return np.zeros([0, 2, 2])
    if array.ndim != 3 or array.shape[1:] != (2, 2):
        raise InputError(f"links must be ((x1, y1), (x2, y2)) pairs of points, got {links!r}")
    for (x1, y1), (x2, y2) in array:
        check_points([(x1, y1), (x2, y2)], width, height, what="link end")
        first, second = pixels_of([(x1, y1), (x2, y2)], width, height)
        if np.array_equal(first, second):
            raise InputError(f"link from ({x1:g}, {y1:g}) to itself: a link needs two different "
                             "places")
    return array


def grid_cell(height, width, grid_size):
    """Side of a model-grid cell in photo pixels (geometric mean of its width and height)."""
    return math.sqrt(height * width) / grid_size


def finish_edit(ab_small, L_full, points_px, colors_ab, grid_size, jit=False, statistics=None,
                links_px=None):
    """Grid chroma of one edit -> uint8 `[H, W, 3]`: guided upsampling, point refinement, L-keeping
    recombination (`tfgcrf.fullres`), as TensorFlow ops (API, session, SavedModel, evaluation).

    Args:
      ab_small: `[1, h, w, 2]` G-CRF chroma on the grid.
      L_full: `[H, W]` CIE L* of the photo.
      points_px: `[K, 2]` int `(x, y)` pixels of the points; colors_ab `[K, 2]` their chroma.
      grid_size: the model grid's side.
      jit: XLA for the upsampling and the recombination (`fullres.upsample_guided`, `compose`).
      statistics: the photo's `fullres.guide_statistics` if already known (an edit session keeps
        them); computed here otherwise.
      links_px: optional `[J, 2, 2]` int `(x, y)` pixels of the "same color" links' ends: the
        refinement is carried across them (`link_points`, a second refinement pass).
    """
    from tfgcrf import fullres

    shape = tf.cast(tf.shape(L_full), tf.float32)
    cell = tf.sqrt(shape[0] * shape[1]) / grid_size
    if statistics is None:
        statistics = fullres.guide_statistics(L_full, grid_size, grid_size)
    ab_full = fullres.upsample_guided(ab_small, statistics, jit=jit)[0]
    refined = refine_at_points(ab_full, L_full, points_px, colors_ab, cell)
    if links_px is not None:
        def across_links():
            extra_px, extra_ab = link_points(ab_full, refined, points_px, links_px)
            return refine_at_points(
                ab_full, L_full, tf.concat([tf.cast(points_px, tf.int32), extra_px], 0),
                tf.concat([tf.cast(colors_ab, tf.float32), extra_ab], 0), cell)

        refined = tf.cond(tf.size(links_px) > 0, across_links, lambda: refined)
    return fullres.compose(L_full, refined[None], jit=jit)[0]
