"""points_to_grid: user points -> edit mask and colors on the model grid."""

import numpy as np
import tensorflow as tf

from tfgcrf.models import points_to_grid


def _reference(points, colors, counts, height, width):
    mask = np.zeros((len(points), height, width), np.float32)
    sums = np.zeros((len(points), height, width, 2), np.float64)
    for b, (image_points, image_colors, count) in enumerate(zip(points, colors, counts)):
        for (x, y), color in zip(image_points[:count], image_colors[:count]):
            column = min(max(int(np.floor(x * width)), 0), width - 1)
            row = min(max(int(np.floor(y * height)), 0), height - 1)
            mask[b, row, column] += 1
            sums[b, row, column] += color
    target = np.where(mask[..., None] > 0, sums / np.maximum(mask, 1)[..., None], 0.0)
    return (mask > 0).astype(np.float32), target


def test_matches_reference_with_padding_duplicates_and_borders():
    points = np.array(
        [
            [[0.0, 0.0], [1.0, 1.0], [0.51, 0.26], [0.52, 0.27], [0.9, 0.1]],
            [[0.3, 0.7], [-0.2, 1.4], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
        ],
        np.float32,
    )
    colors = np.random.default_rng(0).uniform(-0.8, 0.8, (2, 5, 2)).astype(np.float32)
    counts = np.array([4, 2], np.int32)  # image 0 ignores its last point, image 1 its last three
    mask, target = points_to_grid(points, colors, counts, (8, 16))
    expected_mask, expected_target = _reference(points, colors, counts, 8, 16)
    np.testing.assert_array_equal(mask.numpy(), expected_mask)
    np.testing.assert_allclose(target.numpy(), expected_target, atol=1e-6)
    # Points (0.51, 0.26) and (0.52, 0.27) share pixel (row 2, column 8): colors are averaged.
    np.testing.assert_allclose(target.numpy()[0, 2, 8], colors[0, 2:4].mean(axis=0), atol=1e-6)
    assert mask.numpy()[0, 7, 15] == 1.0 and mask.numpy()[1, 7, 0] == 1.0  # clipped to borders
    assert mask.numpy()[1].sum() == 2


def test_traces_with_dynamic_shapes():
    spec = [tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None, 2]), tf.TensorSpec([None], tf.int32)]
    splat = tf.function(lambda p, c, n: points_to_grid(p, c, n, 4), input_signature=spec)
    mask, target = splat(tf.constant([[[0.1, 0.9]]]), tf.constant([[[0.2, -0.1]]]), tf.constant([1]))
    assert mask.shape == (1, 4, 4) and mask.numpy()[0, 3, 0] == 1.0
    np.testing.assert_allclose(target.numpy()[0, 3, 0], [0.2, -0.1])
    empty, _ = splat(tf.zeros([3, 0, 2]), tf.zeros([3, 0, 2]), tf.zeros([3], tf.int32))
    np.testing.assert_array_equal(empty.numpy(), np.zeros((3, 4, 4)))
