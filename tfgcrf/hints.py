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

`Propagation` refines the whole chroma field at the photo's resolution (at most
`PROPAGATION_PIXELS` pixels; larger photos at a reduced working resolution, the correction
upsampled): Levin, Lischinski & Weiss's (2004) edge-aware local propagation with the hints as hard
constraints and the G-CRF answer G as a weak data term (ideepcolor's idea: hints win where they
reach, the model fills the rest). Every free pixel r satisfies

    (1 + lam) U(r) - sum_s w_rs U(s) = lam G(r),          U(k) = c_k at hinted pixels k,

w_rs being Levin et al.'s normalized 3x3 affinities of the lightness
(`tfgcrf.evaluation.levin.affinities`, the constants of their code). lam = 0 is Levin et al.'s
colorization; lam -> infinity keeps G. float64 scipy.sparse: one LU factorization of
A0 = (1 + lam) I - W per photo, then hinted rows by a bordered (Woodbury) solve with one cached
column A0^-1 e_k per hinted pixel; many hinted pixels (the evaluation's 7x7 patches) factor the
hinted system directly. Not in the exported SavedModel (no sparse LU in TF ops).

`check_points` is the single validation of user points and links in pixels (API, CLI, session).
"""

import math

import numpy as np
import tensorflow as tf
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

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


# Weight lam of the G-CRF answer in the full-resolution propagation (`Propagation`), against the
# unit weight of the local term; chosen on the validation split (README, "Control").
PROPAGATION_WEIGHT = 1e-3
# Working resolution of the propagation (pixels): photos of at most PROPAGATION_PIXELS (the
# evaluation's 256 x 256) are refined at their own resolution; larger photos at LARGE_PHOTO_PIXELS
# (the correction upsampled), so that one more point stays cheap in an edit session (at 1024x768,
# loaded CPU: 23 ms per point at 128^2 pixels, 210 ms at 256^2).
PROPAGATION_PIXELS = 256 * 256
LARGE_PHOTO_PIXELS = 128 * 128
# Up to this many hinted pixels a solve borders the photo's factorization (one cached column per
# hinted pixel); beyond, it factors the hinted system (the evaluation's 7x7 patches).
_BORDERED_HINTS = 48
# Cached columns A0^-1 e_k beyond which the ones of pixels no longer hinted are dropped.
_MAX_COLUMNS = 320


def affinity_matrix(luminance):
    """Levin et al.'s row-normalized 3x3 affinities of a photo as a sparse matrix.

    Args:
      luminance: `[H, W]` float lightness (L* / 100).

    Returns:
      scipy.sparse CSR float64 `[P, P]`, P = H W row-major: row r holds w_rs of its (up to 8)
      neighbours s (`tfgcrf.evaluation.levin.affinities`), summing to 1.
    """
    from tfgcrf.evaluation import levin
    from tfgcrf.layers.edit_terms import OFFSETS  # the order of `levin.affinities`

    luminance = np.asarray(luminance, np.float64)
    height, width = luminance.shape
    weights = levin.affinities(luminance)
    y, x = np.mgrid[0:height, 0:width]
    rows, columns, values = [], [], []
    for (dy, dx), weight in zip(OFFSETS, weights):
        use = weight > 0  # neighbours outside the photo have weight 0
        rows.append((y * width + x)[use])
        columns.append(((y + dy) * width + x + dx)[use])
        values.append(weight[use])
    count = height * width
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows),
                                                       np.concatenate(columns))),
                             shape=(count, count))


class _Factors:
    """Sparse LU of one propagation system (a nonsingular M-matrix: free rows 1 + lam on the
    diagonal and -w_rs summing to -1, hinted rows the identity) in `levin.dissection_order`,
    without pivoting (as `tfgcrf.evaluation.levin.Propagation` factors Levin et al.'s system)."""

    def __init__(self, matrix, shape):
        from tfgcrf.evaluation import levin

        self._order = levin.dissection_order(*shape)
        permuted = sparse.csc_matrix(matrix)[self._order][:, self._order]
        self._lu = sparse_linalg.splu(sparse.csc_matrix(permuted), permc_spec="NATURAL",
                                      diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))

    def solve(self, right):
        solution = np.empty_like(right)
        solution[self._order] = self._lu.solve(right[self._order])
        return solution


class Propagation:
    """Edge-aware propagation of hints over one photo, with the G-CRF answer as a weak data term.

    The system of the module docstring at the photo's own resolution when it has at most
    `max_pixels` pixels, else at about min(`max_pixels`, `LARGE_PHOTO_PIXELS`) pixels. One object per photo: `solve` serves the evaluation
    (hint masks at the working resolution), `correction` the edit path (points in photo pixels,
    `tfgcrf.edit_session.EditSession`, `Colorizer.edit`).

    Args:
      lightness: `[H, W]` CIE L* of the photo (0-100).
      weight: lam, the weight of the G-CRF answer (> 0 for bordered solves; 0 gives Levin et
        al.'s colorization, every solve then factoring its hinted system).
      max_pixels: largest photo refined at its own resolution, in pixels.
    """

    def __init__(self, lightness, weight=PROPAGATION_WEIGHT, max_pixels=PROPAGATION_PIXELS):
        lightness = np.asarray(lightness, np.float64)
        self.shape = lightness.shape
        height, width = self.shape
        if height * width > max_pixels:
            max_pixels = min(max_pixels, LARGE_PHOTO_PIXELS)
        scale = min(1.0, math.sqrt(max_pixels / (height * width)))
        self.work_shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        if self.work_shape != self.shape:
            lightness = tf.image.resize(lightness[..., None], self.work_shape,
                                        antialias=True)[..., 0].numpy()
        self.lightness = lightness  # [h, w] L* at the working resolution
        self.weight = float(weight)
        count = self.work_shape[0] * self.work_shape[1]
        self._system = ((1.0 + self.weight) * sparse.identity(count, format="csr")
                        - affinity_matrix(lightness / 100.0)).tocsr()
        self._lu = None  # the factorization of A0, at the first bordered solve
        self._columns = {}  # hinted pixel -> A0^-1 e_k

    def solve(self, prior, mask, targets):
        """The propagated chroma at the working resolution.

        Args:
          prior: `[h, w, C]` the G-CRF answer G at the working resolution (model units).
          mask: `[h, w]` bool, the hinted pixels.
          targets: `[h, w, C]` the hints' chroma, read where `mask` is set.

        Returns:
          float64 `[h, w, C]`: equal to `targets` at hinted pixels; with no hint (and lam > 0)
          the edge-aware smoothing lam A0^-1 G of the prior.
        """
        prior = np.asarray(prior, np.float64)
        flat_prior = prior.reshape(-1, prior.shape[-1])
        hinted = np.flatnonzero(np.asarray(mask).ravel())
        values = np.asarray(targets, np.float64).reshape(-1, prior.shape[-1])[hinted]
        right = self.weight * flat_prior
        right[hinted] = 0.0  # hinted rows: U(k) = c_k
        if self.weight <= 0 or len(hinted) > _BORDERED_HINTS:
            free = np.ones(len(flat_prior))
            free[hinted] = 0.0
            chosen = np.zeros(len(flat_prior))
            chosen[hinted] = 1.0
            system = sparse.diags(free) @ self._system + sparse.diags(chosen)
            right[hinted] = values
            return _Factors(system, self.work_shape).solve(right).reshape(prior.shape)
        # U = A0^-1 (b + E y): the free rows hold, y makes U(k) = c_k at the hinted pixels.
        if self._lu is None:
            self._lu = _Factors(self._system, self.work_shape)
        # One pass over the factors for the right-hand side and the new hinted pixels' columns.
        missing = [k for k in hinted if k not in self._columns]
        if len(self._columns) + len(missing) > _MAX_COLUMNS:
            keep = set(hinted.tolist())
            self._columns = {k: v for k, v in self._columns.items() if k in keep}
        unit = np.zeros((len(right), len(missing)))
        unit[missing, np.arange(len(missing))] = 1.0
        solved = self._lu.solve(np.concatenate([right, unit], axis=1))
        base = solved[:, :right.shape[1]]
        for k, column in zip(missing, solved[:, right.shape[1]:].T):
            self._columns[k] = column
        if not len(hinted):
            return base.reshape(prior.shape)
        columns = np.stack([self._columns[k] for k in hinted], axis=1)  # [P, K]
        sources = np.linalg.solve(columns[hinted], values - base[hinted])
        return (base + columns @ sources).reshape(prior.shape)

    def hint_mask(self, points_px, colors_ab):
        """Points in photo pixels -> `(mask [h, w], targets [h, w, C])` at the working resolution
        (points sharing a working pixel: their mean chroma)."""
        points = np.asarray(points_px, np.float64).reshape(-1, 2)
        colors = np.asarray(colors_ab, np.float64).reshape(len(points), -1)
        (height, width), (rows, cols) = self.shape, self.work_shape
        x = np.minimum(np.floor((points[:, 0] + 0.5) * cols / width), cols - 1).astype(int)
        y = np.minimum(np.floor((points[:, 1] + 0.5) * rows / height), rows - 1).astype(int)
        flat = y * cols + x
        sums = np.zeros((rows * cols, colors.shape[-1]))
        counts = np.zeros(rows * cols)
        np.add.at(sums, flat, colors)
        np.add.at(counts, flat, 1.0)
        mask = counts > 0
        sums[mask] /= counts[mask, None]
        return mask.reshape(rows, cols), sums.reshape(rows, cols, -1)

    def correction(self, ab_small, points_px, colors_ab):
        """What the propagation changes in the upsampled G-CRF answer of an edit.

        Args:
          ab_small: `[1, s, s, 2]` the G-CRF answer on the model grid.
          points_px: `[K, 2]` `(x, y)` photo pixels of the points; colors_ab `[K, 2]` their chroma.

        Returns:
          float32 `[H, W, 2]` to add to `fullres.upsample_chroma(ab_small, L)` (`finish_edit`'s
          `correction`); zeros without points.
        """
        if not len(points_px):
            return np.zeros(self.shape + (2,), np.float32)
        return self.correction_from_mask(ab_small, *self.hint_mask(points_px, colors_ab))

    def correction_from_mask(self, ab_small, mask, targets):
        """`correction` for hints given as a mask at the working resolution (the evaluation's
        7x7 patches): U - G there, bilinearly resized to the photo when it is larger."""
        from tfgcrf import fullres

        prior = fullres.upsample_chroma(ab_small, self.lightness.astype(np.float32))[0].numpy()
        change = self.solve(prior, mask, targets) - prior
        if self.work_shape != self.shape:
            change = tf.image.resize(change[None], self.shape, method="bilinear")[0].numpy()
        return change.astype(np.float32)


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
                links_px=None, correction=None):
    """Grid chroma of one edit -> uint8 `[H, W, 3]`: guided upsampling (+ the propagation's
    correction), point refinement, L-keeping recombination (`tfgcrf.fullres`), as TensorFlow ops
    (API, session, SavedModel, evaluation).

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
      correction: optional `[H, W, 2]` `Propagation.correction` of this edit (the API and the
        session; the exported SavedModel has none: no sparse LU in TF ops).
    """
    from tfgcrf import fullres

    shape = tf.cast(tf.shape(L_full), tf.float32)
    cell = tf.sqrt(shape[0] * shape[1]) / grid_size
    if statistics is None:
        statistics = fullres.guide_statistics(L_full, grid_size, grid_size)
    ab_full = fullres.upsample_guided(ab_small, statistics, jit=jit)[0]
    if correction is not None:
        ab_full += correction
    refined = refine_at_points(ab_full, L_full, points_px, colors_ab, cell)
    if links_px is not None:
        def across_links():
            extra_px, extra_ab = link_points(ab_full, refined, points_px, links_px)
            return refine_at_points(
                ab_full, L_full, tf.concat([tf.cast(points_px, tf.int32), extra_px], 0),
                tf.concat([tf.cast(colors_ab, tf.float32), extra_ab], 0), cell)

        refined = tf.cond(tf.size(links_px) > 0, across_links, lambda: refined)
    return fullres.compose(L_full, refined[None], jit=jit)[0]
