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
colorization; lam -> infinity keeps G. That is the "levin" local term; the default,
`PROPAGATION_LOCAL` = "matting", puts the matting Laplacian M of the lightness (Levin, Lischinski
& Weiss 2008) in place of I - W: (M + lam I) U = lam G at free pixels (`local_stencil`).
float64 scipy.sparse: one LU factorization of A0 = (1 + lam) I - W (or M + lam I) per photo,
then hinted rows by a bordered (Woodbury) solve with one cached column A0^-1 e_k per hinted pixel;
many hinted pixels (the evaluation's 7x7 patches) factor the hinted system directly. The exported SavedModel solves the same system (one definition:
`propagation_shape`, `propagation_lightness`, `propagation_weights`, `propagation_hints`) with
TensorFlow ops: `propagation_correction`, matrix-free BiCGSTAB (Levin et al.'s affinities) or
conjugate gradients with a two-level preconditioner (the symmetric matting Laplacian) in a
`tf.while_loop`.

"Same color" links at the photo's resolution (`finish_edit`): the grid's link makes its two ends
agree, then the propagation and the point refinement move them apart again. `link_points` passes
the color of the end that moved more (from the upsampled G-CRF answer) to the other end, and the
propagation is solved again with that color on a lattice of places around the receiving end
(`link_patch`), so that its region, not only its pixel, takes the color.

`check_points` is the single validation of user points and links in pixels (API, CLI, session).
"""

import math
import numbers

import numpy as np
import tensorflow as tf
from scipy import sparse

from tfgcrf import grid_lu
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

    # Every point's window of (2R + 1)^2 pixels; places outside the photo add nothing (their
    # index clipped inside, their value 0), so no full-resolution canvas or padded copy exists:
    # the spread is added in place (a few (2R + 1)^2 windows, not the photo).
    steps = tf.range(-radius, radius + 1)
    dy, dx = tf.meshgrid(steps, steps, indexing="ij")
    window = tf.reshape(tf.stack([dy, dx], axis=-1), [-1, 2])  # [S, 2]
    shape = tf.shape(ab_full)
    places = yx[:, None] + window[None]  # [K, S, 2] (y, x)
    limit = shape[:2]
    inside_photo = tf.reduce_all((places >= 0) & (places < limit), axis=-1)  # [K, S]
    places = tf.minimum(tf.maximum(places, 0), limit - 1)
    values = kernel(tf.cast(tf.reduce_sum(tf.square(window), axis=-1), tf.float32)[None],
                    tf.gather_nd(L_full, places) - lightness[:, None], widths[:, None])
    values = tf.where(inside_photo, values, 0.0)
    spread = values[..., None] * tf.where(keep[:, None], weights, 0.0)[:, None]  # [K, S, 2]
    return tf.tensor_scatter_nd_add(ab_full, tf.reshape(places, [-1, 2]),
                                    tf.reshape(spread, [-1, 2]))


# A link end whose refinement moved its chroma by less than this (model units, ~0.1 ab) passes
# nothing to the other end.
_LINK_CHANGE = 1e-3


def link_points(ab_full, refined, points_px, links_px):
    """The points' full-resolution change carried across "same color" links (extra points for a
    second pass of `finish_edit`).

    On the grid a link makes its two places agree; at full resolution the propagation
    (`Propagation`) and `refine_at_points` then move the place a point reaches (at a point's own
    pixel: exactly to the point's color) and not the other. For every link, the end whose chroma
    moved more passes its chroma to the other end, as an extra point there (unless that pixel
    holds a user point: the point wins). Links are taken one at a time (a chain of links passes a
    correction one step).

    Args:
      ab_full: `[H, W, 2]` chroma before the full-resolution change (`finish_edit`: the upsampled
        G-CRF answer, before the propagation's correction); refined `[H, W, 2]` after it.
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


# The colors that links carry are propagated from a lattice of places around the receiving end
# (`link_patch`): offsets of -LINK_PATCH_CELLS..LINK_PATCH_CELLS grid cells in LINK_PATCH_STEPS
# steps each way, so that the end's region takes the color, as the grid's link ties the 3x3 grid
# windows around its ends (`tfgcrf.layers.edit_terms.link_vectors`). Places whose lightness differs
# from the end's by more than SIGMA_LIGHTNESS are left out (another region).
LINK_PATCH_CELLS = 1.0
LINK_PATCH_STEPS = 1


def link_patch(ends_px, chroma, L_full, cell):
    """The places from which a link's carried color is propagated around its receiving end.

    Args:
      ends_px: `[M, 2]` int `(x, y)` pixels of the receiving ends (`link_points`); chroma
        `[M, 2]` the colors they receive.
      L_full: `[H, W]` CIE L* of the photo; cell: a model-grid cell in photo pixels.

    Returns:
      `(pixels [N, 2] int32, chroma [N, 2] float32)`: for every end, the places of the lattice
      inside the photo whose L* is within SIGMA_LIGHTNESS of the end's (the end among them).
    """
    steps = LINK_PATCH_STEPS
    ends = tf.cast(ends_px, tf.int32)
    chroma = tf.cast(chroma, tf.float32)
    shape = tf.shape(L_full)
    spacing = tf.cast(cell, tf.float32) * (LINK_PATCH_CELLS / max(steps, 1))
    lattice = tf.range(-steps, steps + 1, dtype=tf.float32)
    dy, dx = tf.meshgrid(lattice, lattice, indexing="ij")
    offsets = tf.cast(tf.round(tf.reshape(tf.stack([dx, dy], -1), [-1, 2]) * spacing), tf.int32)
    places = ends[:, None] + offsets[None]  # [M, S, 2] (x, y)
    inside = tf.reduce_all((places >= 0) & (places < tf.stack([shape[1], shape[0]])), axis=-1)
    places = tf.minimum(tf.maximum(places, 0), tf.stack([shape[1], shape[0]]) - 1)
    lightness = tf.gather_nd(L_full, tf.reverse(places, axis=[-1]))
    own = tf.gather_nd(L_full, tf.reverse(ends, axis=[-1]))
    similar = tf.abs(lightness - own[:, None]) <= SIGMA_LIGHTNESS
    use = inside & similar
    colors = tf.broadcast_to(chroma[:, None], tf.concat([tf.shape(places)[:2], [2]], 0))
    return tf.boolean_mask(places, use), tf.boolean_mask(colors, use)


# Weight lam of the G-CRF answer in the full-resolution propagation (`Propagation`), against the
# unit weight of the local term; chosen on the validation split (README, "Control").
PROPAGATION_WEIGHT = 1e-3
# The local term of the propagation (`local_stencil`): "levin" (Levin et al. 2004's normalized
# 3x3 affinities, I - W) or "matting" (the closed-form matting Laplacian of Levin, Lischinski &
# Weiss 2008 of the lightness: chroma locally affine in L* within every 3x3 window). "matting" is
# the default since the served solver converges on it (conjugate gradients, `PROPAGATION_SOLVERS`):
# on the validation split (30 photos, seed 0, the preset of 0b41eda) it gave -0.08/-0.07/+0.03/
# +0.28/+0.24 dB against "levin" at |H| = 1/5/10/50/100 (README, "Control"); with the fine-tuned
# preset (e56f661; the same 30 photos) -0.08/-0.04/+0.14/+0.72/+0.56.
PROPAGATION_LOCAL = "matting"
LOCAL_TERMS = ("levin", "matting")
SYMMETRIC_LOCAL_TERMS = ("matting",)  # Levin et al.'s I - W is not (W's rows are normalized)
# Regularizer epsilon of the matting Laplacian (lightness in [0, 1], as in Levin et al. 2008) and
# its weight lam of the G-CRF answer; chosen on the validation split (README, "Control").
MATTING_EPSILON = 1e-5
MATTING_WEIGHT = 1e-3
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


# The system, one definition for both solvers (`Propagation`: sparse LU, `tfgcrf.grid_lu`, the
# Python API and evaluation; `propagation_correction`: TensorFlow ops, the SavedModel): the working
# resolution (`propagation_shape`), the lightness there (`propagation_lightness`), the affinities
# (`propagation_weights`), the hints at the working resolution (`propagation_hints`), the prior G
# (`_prior`) and the way back to the photo's resolution (`_to_photo`).


def propagation_weight(local=PROPAGATION_LOCAL):
    """lam of a local term (`PROPAGATION_WEIGHT` for "levin", `MATTING_WEIGHT` for "matting")."""
    return MATTING_WEIGHT if local == "matting" else PROPAGATION_WEIGHT


def propagation_shape(height, width, max_pixels=PROPAGATION_PIXELS):
    """Working resolution of the propagation of a `height x width` photo (TF ops, float64).

    The photo's own when it has at most `max_pixels` pixels, else min(`max_pixels`,
    `LARGE_PHOTO_PIXELS`) pixels at about its aspect ratio (each side rounded half to even, >= 1).

    Returns:
      int32 scalar tensors `(h, w)`.
    """
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    pixels = height * width
    limit = tf.where(pixels > max_pixels,
                     tf.constant(min(max_pixels, LARGE_PHOTO_PIXELS), tf.float64),
                     tf.constant(max_pixels, tf.float64))
    scale = tf.minimum(tf.constant(1.0, tf.float64), tf.sqrt(limit / pixels))
    return tuple(tf.maximum(1, tf.cast(tf.round(side * scale), tf.int32))
                 for side in (height, width))


def propagation_lightness(lightness, work_shape):
    """`[H, W]` L* -> float64 `[h, w]` L* at the working resolution (antialiased bilinear resize;
    the photo's own values when the working resolution is the photo's)."""
    lightness = tf.cast(lightness, tf.float64)
    shape = tf.shape(lightness)

    def resized():
        return tf.cast(tf.image.resize(lightness[..., None], tf.stack(work_shape),
                                       antialias=True)[..., 0], tf.float64)

    same = tf.logical_and(tf.equal(shape[0], work_shape[0]), tf.equal(shape[1], work_shape[1]))
    return tf.cond(same, lambda: lightness, resized)


def propagation_weights(lightness):
    """Levin et al.'s row-normalized 3x3 affinities w_rs of the working lightness `[h, w]` L*:
    float64 `[h, w, 8]` in `edit_terms.OFFSETS` order, 0 outside the photo, rows summing to 1
    (`edit_terms.local_affinities` of L* / 100 = `tfgcrf.evaluation.levin.affinities`)."""
    from tfgcrf.layers import edit_terms

    return edit_terms.local_affinities(tf.cast(lightness, tf.float64)[None] / 100.0,
                                       dtype=tf.float64)[0]


def _matting_stencil(lightness, epsilon):
    """The matting Laplacian M (Levin, Lischinski & Weiss 2008, eq. 12, one gray channel) of the
    lightness I = L* / 100 as 5x5 stencil planes: for every window w_k of 3x3 pixels inside the
    photo (mean mu_k, variance sigma_k^2), M_ij += delta_ij - (1 + (I_i - mu_k)(I_j - mu_k) /
    (sigma_k^2 + epsilon / 9)) / 9 for i, j in w_k. Symmetric, positive semi-definite, rows summing
    to 0 (constants and chroma affine in I inside every window cost nothing).

    Row i's entry for j = i + o sums over the window centres k = i + q with |q| <= 1 and
    |q - o| <= 1 (a rectangle of q). With s_k = 1 / (sigma_k^2 + epsilon / 9) on whole windows
    (0 elsewhere), (I_i - mu_k)(I_j - mu_k) s_k = I_i I_j s_k - (I_i + I_j) mu_k s_k + mu_k^2 s_k,
    so every plane needs the rectangle sums of four per-centre fields (count, s, mu s, mu^2 s):
    25 rectangles of 1-3 x 1-3 shifts, summed separably, instead of 225 window terms."""
    image = tf.cast(lightness, tf.float64) / 100.0
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = tf.cast((rows >= 1) & (rows <= height - 2) & (cols >= 1) & (cols <= width - 2),
                     tf.float64)  # centres of whole windows
    padded = tf.pad(image, [[1, 1], [1, 1]])
    around = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    mean = tf.add_n([padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
                     for dy, dx in around]) / 9.0
    variance = tf.add_n([tf.square(padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width])
                         for dy, dx in around]) / 9.0 - tf.square(mean)
    scale = inside / (tf.maximum(variance, 0.0) + epsilon / 9.0)
    # [4, h + 2, w + 2]: the per-centre fields, zero outside the photo.
    fields = tf.pad(tf.stack([inside, scale, mean * scale, tf.square(mean) * scale]),
                    [[0, 0], [1, 1], [1, 1]])
    # q ranges per offset component o: [max(-1, o - 1), min(1, o + 1)].
    ranges = {o: (max(-1, o - 1), min(1, o + 1)) for o in range(-2, 3)}
    across = {o: tf.add_n([fields[:, :, 1 + q:1 + q + width] for q in range(low, high + 1)])
              for o, (low, high) in ranges.items()}  # [4, h + 2, w] column sums
    image_padded = tf.pad(image, [[2, 2], [2, 2]])
    planes = []
    for oy in range(-2, 3):
        low, high = ranges[oy]
        for ox in range(-2, 3):
            count, total_s, total_ms, total_mms = tf.unstack(
                tf.add_n([across[ox][:, 1 + q:1 + q + height] for q in range(low, high + 1)]))
            other = image_padded[2 + oy:2 + oy + height, 2 + ox:2 + ox + width]
            term = count + image * other * total_s - (image + other) * total_ms + total_mms
            delta = count if (oy, ox) == (0, 0) else 0.0
            planes.append(delta - term / 9.0)
    return tf.stack(planes, axis=-1)


def local_stencil(lightness, local=PROPAGATION_LOCAL, epsilon=None):
    """The local term of the propagation as per-pixel stencils: float64 `[h, w, (2R + 1)^2]`,
    entry (r, o) = the coefficient of pixel r + o in row r (offsets row-major, 0 outside the photo).

    "levin": R = 1, I - W (`propagation_weights`: 1 at the middle, -w_rs around); "matting":
    R = 2, the matting Laplacian of the lightness (`MATTING_EPSILON`). One definition for both
    solvers (scipy sparse LU and the TensorFlow solver of the SavedModel).

    Args:
      lightness: `[h, w]` L* (0-100) at the working resolution.
      local: one of `LOCAL_TERMS`.
      epsilon: the matting Laplacian's regularizer (lightness in [0, 1]); None:
        `MATTING_EPSILON`.
    """
    if local == "levin":
        from tfgcrf.layers.edit_terms import OFFSETS

        weights = propagation_weights(lightness)
        index = {offset: i for i, offset in enumerate(OFFSETS)}
        ones = tf.ones_like(weights[..., 0])
        return tf.stack([-weights[..., index[(dy, dx)]] if (dy, dx) != (0, 0) else ones
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=-1)
    if local == "matting":
        return _matting_stencil(lightness, MATTING_EPSILON if epsilon is None else epsilon)
    raise ValueError(f"local term must be one of {LOCAL_TERMS}, got {local!r}")


def stencil_radius(stencil):
    """R of a `[h, w, (2R + 1)^2]` stencil (static)."""
    return (int(round(math.sqrt(stencil.shape[-1]))) - 1) // 2


def propagation_hints(points_px, colors_ab, shape, work_shape):
    """Points in photo pixels -> `(mask [h, w] bool, targets [h, w, C] float64)` at the working
    resolution: point (x, y) falls in working pixel floor((x + 0.5) w / W) (clipped; likewise
    y); points sharing a working pixel give their mean chroma. TF ops (float64)."""
    points = tf.reshape(tf.cast(points_px, tf.float64), [-1, 2])
    colors = tf.cast(colors_ab, tf.float64)
    colors = tf.reshape(colors, tf.stack([tf.shape(points)[0], tf.shape(colors)[-1]]))
    height, width = (tf.cast(side, tf.float64) for side in shape)
    rows, cols = work_shape
    x = tf.minimum(tf.cast(tf.floor((points[:, 0] + 0.5) * tf.cast(cols, tf.float64) / width),
                           tf.int32), cols - 1)
    y = tf.minimum(tf.cast(tf.floor((points[:, 1] + 0.5) * tf.cast(rows, tf.float64) / height),
                           tf.int32), rows - 1)
    flat = y * cols + x
    sums = tf.math.unsorted_segment_sum(colors, flat, rows * cols)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(colors[:, 0]), flat, rows * cols)
    mask = counts > 0
    targets = sums / tf.maximum(counts, 1.0)[:, None]
    return (tf.reshape(mask, tf.stack([rows, cols])),
            tf.reshape(targets, tf.stack([rows, cols, tf.shape(colors)[1]])))


def _prior(ab_small, work_lightness):
    """G: the grid answer `[1, s, s, 2]` upsampled to the working resolution, float64 `[h, w, 2]`
    (`fullres.upsample_chroma` guided by the float32 working lightness)."""
    from tfgcrf import fullres

    return tf.cast(fullres.upsample_chroma(ab_small, tf.cast(work_lightness, tf.float32))[0],
                   tf.float64)


def _to_photo(change, shape):
    """`[h, w, C]` change at the working resolution -> float32 `[H, W, C]` (bilinear resize when
    the working resolution is not the photo's)."""
    change = tf.convert_to_tensor(change)
    same = tf.logical_and(tf.equal(tf.shape(change)[0], shape[0]),
                          tf.equal(tf.shape(change)[1], shape[1]))
    return tf.cond(same, lambda: tf.cast(change, tf.float32),
                   lambda: tf.image.resize(change[None], tf.stack(shape), method="bilinear")[0])


def _sparse_stencil(stencil):
    """`local_stencil` `[h, w, (2R + 1)^2]` -> scipy.sparse CSR float64 `[P, P]`, P = h w
    row-major: row r holds the coefficients of its neighbours r + o inside the photo."""
    stencil = np.asarray(stencil, np.float64)
    height, width = stencil.shape[:2]
    radius = stencil_radius(stencil)
    y, x = np.mgrid[0:height, 0:width]
    rows, columns, values = [], [], []
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    for (dy, dx), plane in zip(offsets, np.moveaxis(stencil, -1, 0)):
        use = ((y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
               & (plane != 0))
        rows.append((y * width + x)[use])
        columns.append(((y + dy) * width + x + dx)[use])
        values.append(plane[use])
    count = height * width
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows),
                                                       np.concatenate(columns))),
                             shape=(count, count))


class Propagation:
    """Edge-aware propagation of hints over one photo, with the G-CRF answer as a weak data term.

    The system of the module docstring at the photo's own resolution when it has at most
    `max_pixels` pixels, else at about min(`max_pixels`, `LARGE_PHOTO_PIXELS`) pixels. One object per photo: `solve` serves the evaluation
    (hint masks at the working resolution), `correction` the edit path (points in photo pixels,
    `tfgcrf.edit_session.EditSession`, `Colorizer.edit`).

    Args:
      lightness: `[H, W]` CIE L* of the photo (0-100).
      weight: lam, the weight of the G-CRF answer (> 0 for bordered solves; 0 with the "levin"
        term gives Levin et al.'s colorization, every solve then factoring its hinted system);
        None: `propagation_weight(local)`.
      max_pixels: largest photo refined at its own resolution, in pixels.
      local: the local term, one of `LOCAL_TERMS` (`local_stencil`).
    """

    def __init__(self, lightness, weight=None, max_pixels=PROPAGATION_PIXELS,
                 local=PROPAGATION_LOCAL):
        lightness = np.asarray(lightness, np.float64)
        self.shape = lightness.shape
        self.work_shape = tuple(int(side) for side in propagation_shape(*self.shape, max_pixels))
        lightness = propagation_lightness(lightness, self.work_shape)
        self.lightness = lightness.numpy()  # [h, w] L* at the working resolution
        self.local = local
        self.weight = float(propagation_weight(local) if weight is None else weight)
        count = self.work_shape[0] * self.work_shape[1]
        stencil = local_stencil(lightness, local)
        self._radius = stencil_radius(stencil)
        # The matting Laplacian is symmetric (A0 = M + lam I positive definite): Cholesky solves.
        self._symmetric = local in SYMMETRIC_LOCAL_TERMS
        self._system = (_sparse_stencil(stencil)
                        + self.weight * sparse.identity(count, format="csr")).tocsr()
        self._lu = None  # the factorization of A0, at the first bordered solve
        self._hinted = None  # A0's values on the grid pattern, at the first hinted-system solve
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
            if self._symmetric:
                # The hinted pixels' columns too become the identity's (their known values move
                # to the right-hand side): the system stays symmetric positive definite and is
                # factored by Cholesky, about half the LU's time.
                known = np.zeros_like(right)
                known[hinted] = values
                right -= self._system @ known
            right[hinted] = values
            if self._hinted is None:
                self._hinted = grid_lu.HintedSystems(self._system, self.work_shape,
                                                     radius=self._radius,
                                                     symmetric=self._symmetric)
            return self._hinted.solve(hinted, right).reshape(prior.shape)
        # U = A0^-1 (b + E y): the free rows hold, y makes U(k) = c_k at the hinted pixels.
        if self._lu is None:
            self._lu = grid_lu.GridLU(self._system, self.work_shape, radius=self._radius,
                                      symmetric=self._symmetric)
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
        mask, targets = propagation_hints(points_px, colors_ab, self.shape, self.work_shape)
        return mask.numpy(), targets.numpy()

    def correction(self, ab_small, points_px, colors_ab, at_photo=True):
        """What the propagation changes in the upsampled G-CRF answer of an edit.

        Args:
          ab_small: `[1, s, s, 2]` the G-CRF answer on the model grid.
          points_px: `[K, 2]` `(x, y)` photo pixels of the points; colors_ab `[K, 2]` their chroma.
          at_photo: True: at the photo's resolution; False: at the working resolution
            (`work_shape`), as `finish_edit` also takes it (it resizes it to the photo as
            `at_photo` does, inside its XLA kernel when it has one: an edit session on a large
            photo makes no full-resolution copy of it).

        Returns:
          float32 `[H, W, 2]` (or `[h, w, 2]` with `at_photo=False`) to add to
          `fullres.upsample_chroma(ab_small, L)` (`finish_edit`'s `correction`); zeros without
          points.
        """
        if not len(points_px):
            return np.zeros((self.shape if at_photo else self.work_shape) + (2,), np.float32)
        return self.correction_from_mask(ab_small, *self.hint_mask(points_px, colors_ab),
                                         at_photo=at_photo)

    def correction_from_mask(self, ab_small, mask, targets, at_photo=True):
        """`correction` for hints given as a mask at the working resolution (the evaluation's
        7x7 patches): U - G there, bilinearly resized to the photo when it is larger (and
        `at_photo`)."""
        prior = _prior(ab_small, self.lightness).numpy()
        change = self.solve(prior, mask, targets) - prior
        if not at_photo:
            return change.astype(np.float32)
        return _to_photo(change, self.shape).numpy()


# Accuracy of the TensorFlow solver (model units: 1e-4 is 0.01 ab, one 8-bit level is ~0.5 ab):
# every entry of the solution is within PROPAGATION_ACCURACY of the exact one. "levin" (BiCGSTAB)
# stops when every residual entry is below PROPAGATION_ACCURACY * lam: A is an M-matrix whose rows
# sum to >= lam (free) or 1 (hinted), so |A^-1|_inf <= 1 / lam. "matting" (conjugate gradients)
# stops when every channel's residual 2-norm is below PROPAGATION_ACCURACY * lam: on the free
# pixels A = M + lam I with M positive semi-definite, so |A^-1|_2 <= 1 / lam and the error's
# 2-norm, hence every entry, is below PROPAGATION_ACCURACY.
PROPAGATION_ACCURACY = 1e-4
# Iteration cap of the TensorFlow solver (a photo at 256^2 px needs a few hundred).
PROPAGATION_MAX_ITERATIONS = 3000


def _operator(local, mask, weight):
    """The propagation system's matrix A `[P, P]`, P = h w row-major, as a float64
    `tf.SparseTensor` of (2R + 1)^2 entries per row (TF ops) from the `local_stencil` `local`:
    free rows the local term + lam on the diagonal ("levin": 1 + lam and -w_rs at the 8
    neighbours, `_sparse_stencil`'s matrix; entries outside the photo held as zeros at a clipped
    column), hinted rows the identity. Rows in order, so no reordering is needed; one
    `tf.sparse.sparse_dense_matmul` per product (about half the CPU of nine shifted slices of the
    padded field)."""
    local = tf.cast(local, tf.float64)
    size = int(local.shape[-1])
    radius = (int(round(math.sqrt(size))) - 1) // 2
    middle = size // 2
    height, width = tf.shape(local)[0], tf.shape(local)[1]
    y, x = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    steps = range(-radius, radius + 1)
    columns = [tf.clip_by_value(y + dy, 0, height - 1) * width + tf.clip_by_value(x + dx, 0, width - 1)
               for dy in steps for dx in steps]
    free = local + weight * tf.one_hot(middle, size, dtype=tf.float64)
    values = tf.where(mask[..., None], tf.one_hot(middle, size, dtype=tf.float64), free)
    count = height * width
    rows = tf.repeat(tf.range(count), size)
    indices = tf.stack([rows, tf.reshape(tf.stack(columns, axis=-1), [-1])], axis=1)
    return tf.SparseTensor(tf.cast(indices, tf.int64), tf.reshape(values, [-1]),
                           tf.cast(tf.stack([count, count]), tf.int64))


def _bicgstab(apply, residual, accuracy, max_iterations):
    """BiCGSTAB (van der Vorst 1992) from 0 for A D = residual, `[P, C]` fields with one set of
    scalars per column, in a `tf.while_loop`; stops when every entry of the (recursively updated)
    residual is <= `accuracy` or after `max_iterations`. Returns `(D, iterations)`."""
    shadow = residual
    ones = tf.ones_like(residual[0])
    zeros = tf.zeros_like(residual)

    def dot(a, b):  # [C]: the column pairs' inner products (one matmul, fewer passes than a * b)
        return tf.linalg.diag_part(tf.matmul(a, b, transpose_a=True))

    def running(i, change, r, *_):
        return (i < max_iterations) & (tf.reduce_max(tf.abs(r)) > accuracy)

    def step(i, change, r, p, v, rho, alpha, omega):
        rho_new = dot(shadow, r)
        beta = tf.math.divide_no_nan(rho_new, rho) * tf.math.divide_no_nan(alpha, omega)
        p = r + beta * (p - omega * v)
        v = apply(p)
        alpha = tf.math.divide_no_nan(rho_new, dot(shadow, v))
        s = r - alpha * v
        t = apply(s)
        omega = tf.math.divide_no_nan(dot(t, s), dot(t, t))
        return i + 1, change + alpha * p + omega * s, s - omega * t, p, v, rho_new, alpha, omega

    iterations, change, *_ = tf.while_loop(
        running, step, (tf.constant(0), zeros, residual, zeros, zeros, ones, ones, ones))
    return change, iterations


def _conjugate_gradients(apply, precondition, residual, tolerance, max_iterations):
    """Preconditioned conjugate gradients from 0 for A D = residual (A symmetric positive definite
    on the fields `apply` is used on), `[P, C]` fields with one set of scalars per column, in a
    `tf.while_loop`; stops when every column's (recursively updated) residual has a 2-norm <=
    `tolerance` or after `max_iterations`. Returns `(D, iterations)`."""
    def dot(a, b):  # [C]
        return tf.reduce_sum(a * b, axis=0)

    def running(i, change, r, p, rz):
        return (i < max_iterations) & (tf.reduce_max(tf.norm(r, axis=0)) > tolerance)

    def step(i, change, r, p, rz):
        q = apply(p)
        alpha = tf.math.divide_no_nan(rz, dot(p, q))
        change += alpha * p
        r -= alpha * q
        z = precondition(r)
        rz_new = dot(r, z)
        return i + 1, change, r, z + tf.math.divide_no_nan(rz_new, rz) * p, rz_new

    z = precondition(residual)
    iterations, change, *_ = tf.while_loop(
        running, step, (tf.constant(0), tf.zeros_like(residual), residual, z, dot(residual, z)))
    return change, iterations


# The coarse space of the "cg" solver's two-level preconditioner: aggregates of COARSE_BLOCK x
# COARSE_BLOCK pixels, each with two vectors on its free pixels: the constant and the lightness
# (centred and scaled per aggregate; left out where it is flat, standard deviation below
# _COARSE_FLAT of I = L* / 100). The matting Laplacian costs nothing for chroma affine in I in every
# window, so these are the smooth errors that Jacobi leaves (256^2 px photo, 3 points: 820 CG
# iterations with Jacobi alone, 526 with constants only, 161 with both; README "Control").
COARSE_BLOCK = 8
_COARSE_FLAT = 1e-3


def _coarse_space(local, lightness, mask, weight):
    """The two-level preconditioner's coarse space and matrix (TF ops, float64).

    Returns:
      `(aggregate [P] int32, basis [P, 2] float64, m, cholesky [2m, 2m] float64)`: pixel r's
      aggregate, its values in the aggregate's two vectors (0 at hinted pixels), the number of
      aggregates and the Cholesky factor of Z^T A Z (Z the [P, 2m] basis; a vector that is all 0
      gets a unit diagonal).
    """
    local = tf.cast(local, tf.float64)
    radius = stencil_radius(local)
    height, width = tf.shape(local)[0], tf.shape(local)[1]
    columns = (width + COARSE_BLOCK - 1) // COARSE_BLOCK
    count = ((height + COARSE_BLOCK - 1) // COARSE_BLOCK) * columns
    y, x = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    aggregate = (y // COARSE_BLOCK) * columns + x // COARSE_BLOCK
    flat = tf.reshape(aggregate, [-1])
    free = tf.cast(tf.logical_not(mask), tf.float64)
    image = tf.cast(lightness, tf.float64) / 100.0

    def mean(field):  # per aggregate, over its free pixels, back on the pixels
        total = tf.math.unsorted_segment_sum(tf.reshape(field * free, [-1]), flat, count)
        pixels = tf.math.unsorted_segment_sum(tf.reshape(free, [-1]), flat, count)
        return tf.gather(total / tf.maximum(pixels, 1.0), aggregate)

    centred = (image - mean(image)) * free
    deviation = tf.sqrt(mean(tf.square(centred)))
    scaled = tf.where(deviation > _COARSE_FLAT, centred / tf.maximum(deviation, _COARSE_FLAT), 0.0)
    basis = tf.stack([free, scaled], axis=-1)  # [h, w, 2]
    size = 2 * count
    keys, values = [], []
    steps = range(-radius, radius + 1)
    for index, (dy, dx) in enumerate((dy, dx) for dy in steps for dx in steps):
        inside = (y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
        other_y = tf.clip_by_value(y + dy, 0, height - 1)
        other_x = tf.clip_by_value(x + dx, 0, width - 1)
        entry = tf.where(inside, local[..., index] + (weight if (dy, dx) == (0, 0) else 0.0), 0.0)
        other = tf.gather_nd(basis, tf.stack([other_y, other_x], axis=-1))  # [h, w, 2]
        other_aggregate = (other_y // COARSE_BLOCK) * columns + other_x // COARSE_BLOCK
        for s in range(2):
            for t in range(2):
                keys.append((2 * aggregate + s) * size + 2 * other_aggregate + t)
                values.append(entry * basis[..., s] * other[..., t])
    matrix = tf.reshape(tf.math.unsorted_segment_sum(tf.reshape(tf.stack(values, -1), [-1]),
                                                     tf.reshape(tf.stack(keys, -1), [-1]),
                                                     size * size), tf.stack([size, size]))
    matrix = 0.5 * (matrix + tf.transpose(matrix))
    unused = tf.cast(tf.equal(tf.linalg.diag_part(matrix), 0.0), tf.float64)
    return (flat, tf.reshape(basis, [-1, 2]), count,
            tf.linalg.cholesky(matrix + tf.linalg.diag(unused)))


def _two_level(local, lightness, mask, weight, dtype):
    """The "cg" solver's preconditioner r -> D^-1 r + Z (Z^T A Z)^-1 Z^T r on the free pixels
    (additive two-level: Jacobi for the rough error, the coarse space of `_coarse_space` for the
    smooth one), symmetric positive definite; applied in `dtype`."""
    local = tf.cast(local, tf.float64)
    free = tf.reshape(tf.cast(tf.logical_not(mask), dtype), [-1, 1])
    diagonal = tf.reshape(local[..., int(local.shape[-1]) // 2] + weight, [-1, 1])
    inverse_diagonal = free / tf.cast(diagonal, dtype)
    aggregate, basis, count, cholesky = _coarse_space(local, lightness, mask, weight)
    basis = tf.cast(basis, dtype)
    cholesky = tf.cast(cholesky, dtype)

    def apply(residual):  # [P, C]
        projected = tf.math.unsorted_segment_sum(basis[:, :, None] * residual[:, None], aggregate,
                                                 count)  # [m, 2, C]
        coarse = tf.linalg.cholesky_solve(cholesky, tf.reshape(projected, [2 * count, -1]))
        coarse = tf.gather(tf.reshape(coarse, tf.shape(projected)), aggregate)  # [P, 2, C]
        return residual * inverse_diagonal + tf.reduce_sum(basis[:, :, None] * coarse, axis=1)

    return apply


# The solver of each local term's system in `propagation_solve`: BiCGSTAB for Levin et al.'s
# affinities (normalized per row: A is not symmetric), conjugate gradients for the matting
# Laplacian (symmetric; BiCGSTAB broke down on it in float32: NaN at 256^2 px, README "Control").
PROPAGATION_SOLVERS = {"levin": "bicgstab", "matting": "cg"}


# Each float32 run (BiCGSTAB or CG) of `propagation_solve` reduces the float64 residual by this
# factor (float32 resolves ~6e-8 relative; cond(A) ~ 2 / lam ("levin") or <= 9 / lam ("matting")
# keeps the refinement contracting).
_REFINEMENT_REDUCTION = 1e-4


def propagation_solve(local, prior, mask, targets, weight=PROPAGATION_WEIGHT,
                      accuracy=PROPAGATION_ACCURACY, max_iterations=PROPAGATION_MAX_ITERATIONS,
                      solver="bicgstab", lightness=None):
    """The propagation system of the module docstring solved with TensorFlow ops (the SavedModel).

    Mixed-precision iterative refinement: the residual is computed in float64 with the system's
    matrix (`_operator`), the correction solved in float32 to `_REFINEMENT_REDUCTION` of that
    residual, added in float64, until the float64 residual meets `accuracy` (usually two or three
    rounds; about half the CPU of the same iteration in float64, see README "Serving speed"). Warm
    start U0 = the hints at hinted pixels and G elsewhere; the correction D = U - U0 is 0 at
    hinted pixels (identity rows, zero right-hand side: the hard constraints hold exactly) and
    solves the free rows (local + lam I) D = lam G - A U0. Two solvers (`PROPAGATION_SOLVERS`):

    * "bicgstab" (Levin et al.'s affinities: A is not symmetric, rows are normalized; `_bicgstab`),
      unpreconditioned: the diagonal is 1 + lam everywhere (Jacobi would change nothing;
      aggregation multigrid cut the iterations 3.5x but cost as much per iteration, README); stops
      when every entry of the residual is below accuracy * lam.
    * "cg" (the matting Laplacian: on the free pixels A = M + lam I is symmetric positive
      definite; `_conjugate_gradients`) with the two-level preconditioner of `_two_level` (needs
      `lightness`); stops when every channel's residual 2-norm is below accuracy * lam.

    Args:
      local: float64 `[h, w, (2R + 1)^2]` `local_stencil` of the working lightness.
      prior: float64 `[h, w, C]` G; mask `[h, w]` bool hinted pixels; targets float64
        `[h, w, C]` their chroma (read where `mask` is set).
      weight: lam (> 0).
      accuracy: bound on the error of every entry (model units, `PROPAGATION_ACCURACY`; the
        stopping rules above guarantee it: "bicgstab" |A^-1|_inf <= 1 / lam for the M-matrix of
        "levin", "cg" |A^-1|_2 <= 1 / lam on the free pixels).
      max_iterations: cap on the iterations of all rounds (the answer so far is returned).
      solver: "bicgstab" or "cg" (`PROPAGATION_SOLVERS[local term]`).
      lightness: float64 `[h, w]` working L* (the "cg" solver's coarse space).

    Returns:
      `(U float64 [h, w, C], iterations int32: iterations of all rounds)`;
      `Propagation.solve` is the exact reference.
    """
    if solver not in ("bicgstab", "cg"):
        raise ValueError(f"solver must be 'bicgstab' or 'cg', got {solver!r}")
    if solver == "cg" and lightness is None:
        raise ValueError("the 'cg' solver needs the working lightness (its coarse space)")
    prior = tf.cast(prior, tf.float64)
    mask = tf.convert_to_tensor(mask, tf.bool)
    shape = tf.shape(prior)
    channels = prior.shape[-1] if prior.shape[-1] is not None else shape[-1]
    matrix = _operator(local, mask, weight)
    matrix32 = tf.SparseTensor(matrix.indices, tf.cast(matrix.values, tf.float32),
                               matrix.dense_shape)
    hinted = tf.reshape(mask, [-1, 1])
    start = tf.reshape(tf.where(mask[..., None], tf.cast(targets, tf.float64), prior),
                       tf.stack([-1, channels]))
    right = weight * tf.reshape(prior, tf.shape(start))
    tolerance = tf.constant(accuracy * weight, tf.float64)

    def product(matrix_, field):
        return tf.ensure_shape(tf.sparse.sparse_dense_matmul(matrix_, field), field.shape)

    def residual_of(change):  # hinted rows: D = 0 (a zero residual keeps the solvers' D at 0)
        return tf.where(hinted, tf.zeros_like(right), right - product(matrix, start + change))

    if solver == "cg":
        free = tf.cast(tf.logical_not(hinted), tf.float32)
        precondition = _two_level(local, lightness, mask, weight, tf.float32)

        def size(residual):  # every channel's 2-norm
            return tf.reduce_max(tf.norm(residual, axis=0))

        def inner(residual, goal, iterations):
            return _conjugate_gradients(lambda field: product(matrix32, field) * free,
                                        precondition, residual, goal, iterations)
    else:
        def size(residual):  # every entry
            return tf.reduce_max(tf.abs(residual))

        def inner(residual, goal, iterations):
            return _bicgstab(lambda field: product(matrix32, field), residual, goal, iterations)

    def running(change, residual, iterations):
        return (iterations < max_iterations) & (size(residual) > tolerance)

    def refine(change, residual, iterations):
        goal = tf.maximum(tolerance, _REFINEMENT_REDUCTION * size(residual))
        step, count = inner(tf.cast(residual, tf.float32), tf.cast(goal, tf.float32),
                            max_iterations - iterations)
        change += tf.cast(step, tf.float64)
        return change, residual_of(change), iterations + count

    zeros = tf.zeros_like(start)
    change, _, iterations = tf.while_loop(running, refine,
                                          (zeros, residual_of(zeros), tf.constant(0)))
    return tf.reshape(start + change, shape), iterations


def propagation_correction(ab_small, lightness, points_px, colors_ab, local=PROPAGATION_LOCAL):
    """`Propagation.correction` in TensorFlow ops (the exported SavedModel's edit signature).

    The same system (`propagation_shape`, `propagation_lightness`, `local_stencil`,
    `propagation_hints`, lam = `propagation_weight(local)`) solved by `propagation_solve` (the
    term's solver, `PROPAGATION_SOLVERS`) instead of a sparse LU; equal to `Propagation(lightness, local=local).correction(...)` within
    PROPAGATION_ACCURACY (tested).

    Args:
      ab_small: `[1, s, s, 2]` the G-CRF answer on the model grid.
      lightness: `[H, W]` CIE L* of the photo (0-100).
      points_px: `[K, 2]` `(x, y)` photo pixels of the points; colors_ab `[K, 2]` their chroma.

    Returns:
      float32 `[H, W, 2]` to add to the upsampled G-CRF answer (`finish_edit`'s `correction`);
      zeros without points.
    """
    shape = tf.unstack(tf.shape(lightness)[:2])
    work_shape = propagation_shape(*shape)
    work_lightness = propagation_lightness(lightness, work_shape)

    def solve():
        mask, targets = propagation_hints(points_px, colors_ab, shape, work_shape)
        prior = _prior(ab_small, work_lightness)
        solution, _ = propagation_solve(local_stencil(work_lightness, local), prior, mask,
                                        targets, weight=propagation_weight(local),
                                        solver=PROPAGATION_SOLVERS[local],
                                        lightness=work_lightness)
        return _to_photo(solution - prior, shape)

    return tf.cond(tf.shape(points_px)[0] > 0, solve,
                   lambda: tf.zeros(tf.stack(shape + [2]), tf.float32))


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
    # float64 conversion reads "300" as 300, True as 1 and None as NaN: refused by name.
    for value in np.asarray(points, dtype=object).reshape(-1):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise InputError(f"{what} coordinates must be numbers (pixels), got {value!r}")
    # A point names the pixel whose square holds it (`pixels_of`: the nearest pixel center), so
    # the image is [-0.5, width - 0.5) x [-0.5, height - 0.5): 511.5 on a 512 px wide photo is
    # outside (it rounds to 512), -0.4 is pixel 0.
    for x, y in array:
        if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
            rounding = "" if x == int(x) and y == int(y) else "; fractions round to the nearest pixel"
            raise InputError(
                f"{what} ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(x must be in 0..{width - 1}, y in 0..{height - 1}{rounding})")
    return array


def pixels_of(points, width, height):
    """The pixel `(x, y)` int `[K, 2]` holding each point: the one whose square contains the point's
    relative position (x + 0.5) / width, as the SavedModel's floor(x_rel * width) finds it."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return np.clip(np.floor(points + 0.5), 0, [width - 1, height - 1]).astype(np.int32)


def check_conflicts(points, chroma, width, height, tolerance=1e-3, names=None):
    """Refuses two points on one pixel with different colors (one line naming both: by `names`,
    e.g. an edit session's point ids, else by their 1-based places in `points`)."""
    names = range(1, len(chroma) + 1) if names is None else list(names)
    pixels = {}
    for index, ((x, y), ab) in enumerate(zip(pixels_of(points, width, height), chroma)):
        earlier = pixels.get((x, y))
        if earlier is not None and np.max(np.abs(chroma[earlier] - ab)) > tolerance:
            raise InputError(
                f"points {names[earlier]} and {names[index]} are on the same pixel ({x}, {y}) "
                "with different colors; move one of them or give them the same color")
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
                links_px=None, correction=None, correct=None):
    """Grid chroma of one edit -> uint8 `[H, W, 3]`: guided upsampling (+ the propagation's
    correction), point refinement, "same color" links, L-keeping recombination
    (`tfgcrf.fullres`), as TensorFlow ops: the one definition of the full-resolution finish (API,
    session, SavedModel, evaluation).

    Links at full resolution: the end of every link whose chroma the points (the propagation and
    the point refinement) moved more from the upsampled G-CRF answer passes its chroma to the
    other end, as an extra point there (`link_points`); the propagation is solved again with
    the extra points among its hints (`correct`), so that the region around the other end, not
    only its pixel, takes that color, and the point refinement holds it at the end's pixel.
    Without links (or with no link end moved) nothing is solved again: the answer is that of the
    points alone.

    Args:
      ab_small: `[1, h, w, 2]` G-CRF chroma on the grid.
      L_full: `[H, W]` CIE L* of the photo.
      points_px: `[K, 2]` int `(x, y)` pixels of the points; colors_ab `[K, 2]` their chroma.
      grid_size: the model grid's side.
      jit: XLA for the upsampling and the recombination (`fullres.upsample_guided`, `compose`).
      statistics: the photo's `fullres.guide_statistics` if already known (an edit session keeps
        them); computed here otherwise.
      links_px: optional `[J, 2, 2]` int `(x, y)` pixels of the "same color" links' ends.
      correction: optional `[H, W, 2]` correction of the full-resolution propagation for the
        points, or the same at the propagation's working resolution `[h, w, 2]`, resized here
        to the photo (`_to_photo`; with `jit` inside the upsampling's XLA kernel) (the session
        computes it beforehand at the working resolution, `Propagation.correction(...,
        at_photo=False)`; the evaluation from 7x7 patches, `Propagation.correction_from_mask`);
        None: `correct(points_px, colors_ab)` when `correct` is given, else none.
      correct: optional `correct(points_px [M, 2] int32, colors_ab [M, 2] float32)` -> float32
        `[H, W, 2]` (or at the working resolution, as `correction`), the propagation's
        correction for any points (the API and the session:
        `Propagation.correction`; the SavedModel: `propagation_correction`): for the links'
        second pass (and for the points when `correction` is None). None: the links' extra
        points are not propagated (only refined).
    """
    from tfgcrf import fullres

    shape = tf.cast(tf.shape(L_full), tf.float32)
    cell = tf.sqrt(shape[0] * shape[1]) / grid_size
    photo_shape = tf.unstack(tf.shape(L_full)[:2])
    if statistics is None:
        statistics = fullres.guide_statistics(L_full, grid_size, grid_size)

    def upsampled():
        """The upsampled G-CRF answer `[H, W, 2]`."""
        return fullres.upsample_guided(ab_small, statistics, jit=jit)[0]

    def with_change(change):
        """The upsampled answer + `change` (a correction at the photo's or a working resolution,
        resized to the photo as `_to_photo` does): with XLA one kernel makes both (`ab_full` is
        then not made), else it is added to `ab_full`."""
        if ab_full is None:
            extra = tf.convert_to_tensor(change, tf.float32)[None]
            return fullres.upsample_guided(ab_small, statistics, jit=True, extra=extra)[0]
        return ab_full + _to_photo(change, photo_shape)

    if correction is None and correct is not None:
        correction = correct(points_px, colors_ab)
    # The answer alone is made with XLA only when links need it (`across_links`).
    ab_full = None if (jit and correction is not None) else upsampled()
    field = ab_full if correction is None else with_change(correction)

    def points_only():
        return refine_at_points(field, L_full, points_px, colors_ab, cell)

    if links_px is None:
        refined = points_only()
    else:
        def across_links():
            refined = points_only()
            # "Moved" against the upsampled G-CRF answer: the propagation's part counts too.
            answer = upsampled() if ab_full is None else ab_full
            extra_px, extra_ab = link_points(answer, refined, points_px, links_px)
            every_px = tf.concat([tf.cast(points_px, tf.int32), extra_px], 0)
            every_ab = tf.concat([tf.cast(colors_ab, tf.float32), extra_ab], 0)
            linked = field
            if correct is not None:  # the propagation again, the carried colors among its hints
                def again():
                    patch_px, patch_ab = link_patch(extra_px, extra_ab, L_full, cell)
                    change = correct(tf.concat([tf.cast(points_px, tf.int32), patch_px], 0),
                                     tf.concat([tf.cast(colors_ab, tf.float32), patch_ab], 0))
                    return with_change(change)

                linked = tf.cond(tf.shape(extra_px)[0] > 0, again, lambda: field)
            return refine_at_points(linked, L_full, every_px, every_ab, cell)

        refined = tf.cond(tf.size(links_px) > 0, across_links, points_only)
    return fullres.compose(L_full, refined[None], jit=jit)[0]
