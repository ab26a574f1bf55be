"""Terms that edits add to the G-CRF energy on the model grid: local smoothness and "same color" links.

The edit energy of one image (x: [P, K] chroma on the grid, P = H W pixels, row-major) is

    E(x) = |(I - S) x|^2                          learned long-range structure (the paper's HOC term)
         + local_weight * x^T L x                 image-driven local smoothness (this module)
         + sum_i w_i |x_i - t_i|^2                hints (beta_edit h) and a weak prior elsewhere
         + link_weight * sum_j |u_j^T x|^2         "same color" links (paper Sec. 3, this module)
         + ridge |x|^2,

so its minimizer solves (A0 + extra) x = w * t with `extra = local_weight L + link_weight U U^T`,
the matrix `edit_precision` returns for `GaussianCRF(..., extra=...)` (and `EditSession`).

* L = D - K is the graph Laplacian of the 8-neighbour affinities of Levin, Lischinski & Weiss
  (2004) on the grid's lightness (`local_affinities`, the rules and constants of their code, as in
  `tfgcrf.evaluation.levin`), symmetrized: x^T L x = 1/2 sum_rs K_rs |x_r - x_s|^2. With it the
  G-CRF is never worse than local edge-aware propagation, while S adds long-range links.
* A link ties the 3x3 grid windows around two grid pixels a, b, offset by offset:
  link_weight sum_o |x_(a+o) - x_(b+o)|^2 (`link_vectors`), so that two small regions, not just two
  pixels, take the same color. Each u sums to 0: a link never says which color, only "the same".

Everything is TensorFlow ops (used inside the exported SavedModel); grids are square or not.
"""

import math

import tensorflow as tf

# Weight of the local smoothness term relative to the learned structure term (its diagonal is
# about 1, like that of (I - S)^T (I - S)). Chosen on the validation split (README, "Control"):
# 0.3 helped the previous default preset at few points; with the retrained preset (16e3266) every
# weight tried (0.1, 0.3) lowered the PSNR, so the term is off by default (`local_weight=` keeps it);
# with the fine-tuned preset (e56f661) 0.1 still lowers it (-0.9 to -0.5 dB at 1-10 patches).
LOCAL_WEIGHT = 0.0
# Weight of the model's own most probable colorization as the prior of edits without a chosen
# sample: small against beta_edit = 5, so that hints win where they reach (validation split).
# Off: it lowered every |H| with the earlier presets; with the fine-tuned one (e56f661) 1e-3 gains
# at one patch and loses 0.04-0.06 dB at 5-10 (docs/control.md, "The fine-tuned preset's edits").
MODEL_PRIOR_WEIGHT = 0.0
# Weight of a "same color" link (per link and chroma channel): strong enough that linked pixels
# end within a few ab units of each other, still a soft term (A stays well-posed).
LINK_WEIGHT = 200.0

# Levin et al.'s constants (getColorExact.m); see tfgcrf/evaluation/levin.py.
_VARIANCE_SCALE = 0.6
_MIN_RELATIVE_WEIGHT = 0.01
_MIN_DENOMINATOR = 2e-6
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shift(image, dy, dx):
    """`image[:, y + dy, x + dx]` for `[B, H, W]`, zero outside the image."""
    height, width = tf.shape(image)[1], tf.shape(image)[2]
    padded = tf.pad(image, [[0, 0], [1, 1], [1, 1]])
    return padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def local_affinities(l, dtype=tf.float32):
    """Levin et al.'s normalized 3x3 affinities of every grid pixel to its 8 neighbours.

    Args:
      l: `[B, H, W, 1]` (or `[B, H, W]`) lightness L / 100.
      dtype: float dtype of the computation and result (float64 for the full-resolution
        propagation of `tfgcrf.hints`).

    Returns:
      `[B, H, W, 8]` weights in `OFFSETS` order, 0 for neighbours outside the grid, each
      pixel's weights summing to 1 (`tfgcrf.evaluation.levin.affinities`, as TensorFlow ops).
    """
    l = tf.cast(l, dtype)
    if l.shape.rank == 4:
        l = l[..., 0]
    inside = tf.ones_like(l)
    neighbours = tf.stack([_shift(l, dy, dx) for dy, dx in OFFSETS], axis=-1)
    valid = tf.stack([_shift(inside, dy, dx) for dy, dx in OFFSETS], axis=-1)
    count = 1.0 + tf.reduce_sum(valid, axis=-1)
    mean = (l + tf.reduce_sum(neighbours * valid, axis=-1)) / count
    variance = (tf.square(l - mean) + tf.reduce_sum(valid * tf.square(neighbours - mean[..., None]),
                                                    axis=-1)) / count
    squared = tf.square(neighbours - l[..., None])
    closest = tf.reduce_min(tf.where(valid > 0, squared, tf.constant(math.inf, dtype)),
                            axis=-1)
    denominator = tf.maximum(tf.maximum(_VARIANCE_SCALE * variance,
                                        closest / -math.log(_MIN_RELATIVE_WEIGHT)),
                             _MIN_DENOMINATOR)
    weights = valid * tf.exp(-squared / denominator[..., None])
    return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


def affinity_matrix(l):
    """The dense row-normalized affinity matrix W `[B, P, P]` of `local_affinities` (8 per row)."""
    l = tf.convert_to_tensor(l, tf.float32)
    weights = local_affinities(l)
    batch, height, width = tf.shape(weights)[0], tf.shape(weights)[1], tf.shape(weights)[2]
    pixels = height * width
    y, x = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    rows, columns = [], []
    for dy, dx in OFFSETS:
        # Neighbours outside the grid have weight 0: any in-range column index will do.
        rows.append(tf.reshape(y * width + x, [-1]))
        columns.append(tf.reshape(tf.clip_by_value(y + dy, 0, height - 1) * width
                                  + tf.clip_by_value(x + dx, 0, width - 1), [-1]))
    pairs = tf.stack([tf.concat(rows, 0), tf.concat(columns, 0)], axis=-1)  # [8P, 2]
    values = tf.reshape(tf.transpose(tf.reshape(weights, [batch, pixels, 8]), [0, 2, 1]),
                        [batch, -1])  # [B, 8P] in the order of `pairs`
    image = tf.repeat(tf.range(batch)[:, None], tf.shape(pairs)[0], axis=1)[..., None]
    indices = tf.concat([image, tf.broadcast_to(pairs[None], [batch, tf.shape(pairs)[0], 2])],
                        axis=-1)
    return tf.scatter_nd(indices, values, tf.stack([batch, pixels, pixels]))


def local_laplacian(affinity):
    """Graph Laplacian D - K `[B, P, P]` of the symmetrized affinities K = (W + W^T) / 2."""
    symmetric = 0.5 * (affinity + tf.linalg.adjoint(affinity))
    return tf.linalg.diag(tf.reduce_sum(symmetric, axis=-1)) - symmetric


def link_vectors(affinity, links, num_links=None):
    """The vectors `[B, P, 9 J]` of "same color" links between grid pixels (square grids).

    A link ties the 3x3 windows around its two grid pixels a and b, offset by offset: 9 vectors
    u = e_(a+o) - e_(b+o) (offsets clipped at the border), so that the two small regions, not just
    two pixels, take the same color.

    Args:
      affinity: `[B, P, P]` from `affinity_matrix` (gives P and the dtype).
      links: `[B, J, 2]` int flat grid pixel indices (a, b) of each link.
      num_links: optional `[B]` int, links of an image beyond it are padding (zero vectors).

    Returns:
      `[B, P, 9 J]` (link j's vectors are columns 9 j .. 9 j + 8); zero for padding and a == b.
    """
    return _link_vectors(tf.shape(affinity)[-1], affinity.dtype, links, num_links)


def link_vectors_of(l, links, num_links=None):
    """`link_vectors` of the grid of `l` `[B, H, W, 1]` (float32), without its affinities."""
    shape = tf.shape(l)
    return _link_vectors(shape[1] * shape[2], tf.float32, links, num_links)


def _link_vectors(pixels, dtype, links, num_links=None):
    """`link_vectors` for a grid of `pixels` pixels, in `dtype`."""
    links = tf.convert_to_tensor(links, tf.int32)
    side = tf.cast(tf.round(tf.sqrt(tf.cast(pixels, tf.float32))), tf.int32)
    row, column = links // side, links % side  # [B, J, 2]
    ends = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ends.append(tf.clip_by_value(row + dy, 0, side - 1) * side
                        + tf.clip_by_value(column + dx, 0, side - 1))
    ends = tf.stack(ends, axis=2)  # [B, J, 9, 2]
    vectors = (tf.one_hot(ends[..., 0], pixels, dtype=dtype)
               - tf.one_hot(ends[..., 1], pixels, dtype=dtype))  # [B, J, 9, P]
    if num_links is not None:
        valid = tf.range(tf.shape(links)[1])[None, :] < tf.reshape(num_links, [-1, 1])
        vectors *= tf.cast(valid, vectors.dtype)[..., None, None]
    shape = tf.shape(vectors)
    return tf.transpose(tf.reshape(vectors, [shape[0], shape[1] * 9, pixels]), [0, 2, 1])


def edit_precision(l, links=None, num_links=None, local_weight=LOCAL_WEIGHT,
                   link_weight=LINK_WEIGHT):
    """The matrix `extra` `[B, P, P]` that local smoothness and links add to the G-CRF's A.

    Args:
      l: `[B, H, W, 1]` grid lightness in [0, 1].
      links: optional `[B, J, 2]` int flat grid pixel pairs (see `link_vectors`).
      num_links: optional `[B]` valid links per image.
      local_weight: weight of the local smoothness Laplacian (0 leaves it out).
      link_weight: weight of each link.

    Returns:
      float32 `[B, P, P]`, symmetric positive semi-definite: `local_weight L + link_weight U U^T`.
    """
    extra = local_weight * local_laplacian(affinity_matrix(l))
    if links is not None:
        vectors = link_vectors_of(l, links, num_links)
        extra += link_weight * tf.linalg.matmul(vectors, vectors, adjoint_b=True)
    return extra
