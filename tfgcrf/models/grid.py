"""Grid and random-draw helpers shared by the backbone's inference and the task's training steps.

All TensorFlow ops; pixels are flattened row-major (`[B, H, W, C]` -> `[B, H * W, C]`).
"""

import tensorflow as tf


def reveal_mask(batch, pixels, fraction, seed=None):
    """Random H: exactly round(fraction * pixels) revealed pixels per image, as `[B, P]` 0/1.

    Args:
        batch: number of images B (int or scalar tensor).
        pixels: P.
        fraction: revealed fraction in [0, 1] (float or scalar tensor).
        seed: optional stateless seed `[2]`; None draws from the global generator.
    """
    shape = tf.stack([batch, pixels])
    if seed is None:
        noise = tf.random.uniform(shape)
    else:
        noise = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64))
    count = tf.cast(tf.round(tf.cast(fraction, tf.float32) * tf.cast(pixels, tf.float32)), tf.int32)
    ranks = tf.argsort(tf.argsort(noise, axis=-1), axis=-1)
    return tf.cast(ranks < count, tf.float32)


def stateless_seed(seed):
    """An int or `[2]` seed -> the `[2]` int64 seed of TensorFlow's stateless random ops."""
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.zeros_like(seed)])
    return seed


def random_window(grids, window, seed=None):
    """The same random `window` x `window` crop of every `[B, H, W, C]` grid (one per batch)."""
    size = tf.shape(grids[0])[1]
    shape, limit = [2], size - window + 1
    if seed is None:
        corner = tf.random.uniform(shape, 0, limit, dtype=tf.int32)
    else:
        corner = tf.random.stateless_uniform(shape, tf.cast(seed, tf.int64), 0, limit, tf.int32)
    rows = slice(corner[0], corner[0] + window)
    columns = slice(corner[1], corner[1] + window)
    return [grid[:, rows, columns] for grid in grids]


def replica_rows(draw, batch):
    """This replica's `batch` rows of `draw(global batch)`: random draws that do not depend on how
    a global batch is split over replicas (one replica: `draw(batch)`)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return draw(batch)
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch
    return draw(batch * replicas)[start : start + batch]


def float32(tensor):
    """`tensor` as float32 (losses and G-CRF solves stay float32 under a mixed_float16 policy)."""
    return tf.cast(tensor, tf.float32)


def flatten_pixels(field):
    """`[B, H, W, C]` -> `[B, H * W, C]` (row-major pixels)."""
    shape = tf.shape(field)
    return tf.reshape(field, [shape[0], shape[1] * shape[2], -1])
