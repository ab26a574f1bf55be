"""User edit points -> G-CRF edit mask and colors on the model grid (TensorFlow ops only)."""

import numpy as np
import tensorflow as tf


def grid_index(points_xy_rel, size):
    """Flat row-major index of the grid pixel containing each relative `(x, y)` `[..., 2]` point.

    x is the column and y the row, both relative to the image side in [0, 1]; values outside are
    clipped to the border. `size` is the grid side (int) or `(height, width)`. Returns int32 `[...]`.
    """
    height, width = (size, size) if isinstance(size, int) else size
    points = tf.cast(points_xy_rel, tf.float32)

    def cell(coordinate, extent):
        index = tf.cast(tf.floor(coordinate * extent), tf.int32)
        return tf.clip_by_value(index, 0, extent - 1)

    return cell(points[..., 1], height) * width + cell(points[..., 0], width)


def links_to_grid(links_xy_rel, size):
    """Links ("same color") between relative points -> pairs of flat grid pixel indices.

    Args:
        links_xy_rel: `[B, J, 4]` float `(x1, y1, x2, y2)` relative to the image, in [0, 1].
        size: the grid side (int) or `(height, width)`.

    Returns:
        int32 `[B, J, 2]`: the grid pixels (a, b) of each link's two ends
        (`tfgcrf.layers.edit_terms.link_vectors`).
    """
    links = tf.cast(links_xy_rel, tf.float32)
    ends = tf.reshape(links, tf.concat([tf.shape(links)[:-1], [2, 2]], 0))
    return grid_index(ends, size)


def points_to_grid(points_xy_rel, colors_ab, num_points, size):
    """Splats edit points onto a `size` grid.

    Each point lands on the pixel that contains it (x = column, y = row, both relative to the
    image side, in [0, 1]; values outside are clipped to the border). Points of an image beyond
    its `num_points` are padding and ignored, so a batch can hold a different number of points
    per image. Several points on one pixel average their colors.

    Args:
        points_xy_rel: `[B, K, 2]` float (x, y) positions relative to the image, in [0, 1].
        colors_ab: `[B, K, 2]` float chroma of each point (model units, ab / 110).
        num_points: `[B]` int, number of valid points per image (<= K).
        size: the grid side (int) or `(height, width)`.

    Returns:
        `(mask [B, h, w] float32 in {0, 1}, target_ab [B, h, w, 2] float32)`; target_ab is 0
        where the mask is 0.
    """
    height, width = (size, size) if isinstance(size, int) else size
    points = tf.cast(points_xy_rel, tf.float32)
    colors = tf.cast(colors_ab, tf.float32)
    batch = tf.shape(points)[0]
    slots = tf.shape(points)[1]
    valid = tf.range(slots)[None, :] < tf.cast(tf.reshape(num_points, [-1, 1]), tf.int32)

    grid_pixels = height * width
    flat = tf.range(batch)[:, None] * grid_pixels + grid_index(points, (height, width))
    # Padding points go to one extra segment that is dropped.
    dropped = batch * grid_pixels
    segments = tf.reshape(tf.where(valid, flat, dropped), [-1])
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(segments, tf.float32), segments, dropped + 1
    )[:-1]
    sums = tf.math.unsorted_segment_sum(tf.reshape(colors, [-1, 2]), segments, dropped + 1)[:-1]
    mask = tf.reshape(tf.cast(counts > 0, tf.float32), [batch, height, width])
    target = tf.reshape(tf.math.divide_no_nan(sums, counts[:, None]), [batch, height, width, 2])
    return mask, target


def mean_by_cell(cells, colors):
    """Points already on grid pixels -> `(unique pixels [list], mean colors [n, 2])`, as
    `points_to_grid` averages the points that share a pixel (for `EditSession.solve`)."""
    groups = {}
    for cell, value in zip(np.asarray(cells).reshape(-1).tolist(), np.asarray(colors)):
        groups.setdefault(int(cell), []).append(value)
    means = np.array([np.mean(group, axis=0) for group in groups.values()], np.float32)
    return list(groups), means.reshape(-1, 2)
