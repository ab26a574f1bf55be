"""Grid helpers: reveal masks, windows, replica rows, pixel flattening."""

import numpy as np
import tensorflow as tf

from tfgcrf.models import grid


def test_reveal_mask_reveals_exactly_the_fraction_and_is_seeded():
    mask = grid.reveal_mask(4, 100, 0.3, seed=tf.constant([3, 4])).numpy()
    assert mask.shape == (4, 100) and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask.sum(axis=1), [30] * 4)
    np.testing.assert_array_equal(mask, grid.reveal_mask(4, 100, 0.3, seed=tf.constant([3, 4])).numpy())
    assert grid.reveal_mask(2, 10, 0.0, seed=(1, 1)).numpy().sum() == 0


def test_stateless_seed_accepts_ints_and_pairs():
    np.testing.assert_array_equal(grid.stateless_seed(7).numpy(), [7, 0])
    np.testing.assert_array_equal(grid.stateless_seed([7, 9]).numpy(), [7, 9])


def test_random_window_crops_every_grid_at_the_same_place():
    a = tf.reshape(tf.range(2 * 8 * 8, dtype=tf.float32), [2, 8, 8, 1])
    b = a * 10
    wa, wb = grid.random_window([a, b], 4, seed=tf.constant([1, 2]))
    assert wa.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(wb.numpy(), 10 * wa.numpy())
    row, column = divmod(int(wa[0, 0, 0, 0]), 8)
    np.testing.assert_array_equal(wa.numpy(), a.numpy()[:, row:row + 4, column:column + 4])


def test_replica_rows_is_the_whole_draw_on_one_replica():
    draw = lambda n: tf.reshape(tf.range(n * 2), [n, 2])  # noqa: E731
    np.testing.assert_array_equal(grid.replica_rows(draw, 3).numpy(), draw(3).numpy())


def test_flatten_pixels_is_row_major():
    field = tf.reshape(tf.range(2 * 3 * 4 * 2), [2, 3, 4, 2])
    flat = grid.flatten_pixels(field).numpy()
    assert flat.shape == (2, 12, 2)
    np.testing.assert_array_equal(flat[1, 5], field.numpy()[1, 1, 1])
