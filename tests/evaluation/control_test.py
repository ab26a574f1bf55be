import numpy as np

from tfgcrf.evaluation import control


def test_patch_corners_are_reproducible_inside_and_per_image():
    corners = control.patch_corners(seed=3, image_index=0)
    assert corners.shape == (100, 2)
    assert corners.min() >= 0 and corners.max() <= control.CONTROL_SIZE - control.PATCH_SIZE
    np.testing.assert_array_equal(corners, control.patch_corners(seed=3, image_index=0))
    assert not np.array_equal(corners, control.patch_corners(seed=3, image_index=1))
    assert not np.array_equal(corners, control.patch_corners(seed=4, image_index=0))


def test_patch_colors_are_patch_means():
    ab = np.zeros((16, 16, 2))
    ab[2:9, 3:10, 0] = np.arange(49).reshape(7, 7)  # mean 24
    ab[2:9, 3:10, 1] = -1.0
    np.testing.assert_allclose(control.patch_colors(ab, [[2, 3]]), [[24.0, -1.0]])
    np.testing.assert_allclose(control.patch_colors(ab, [[9, 9]]), [[0.0, 0.0]])


def test_hint_image_paints_patches():
    mask, ab = control.hint_image([[0, 0], [10, 5]], [[0.1, 0.2], [-0.3, 0.4]], size=20)
    assert mask.sum() == 2 * 49
    np.testing.assert_allclose(ab[3, 3], [0.1, 0.2])
    np.testing.assert_allclose(ab[16, 11], [-0.3, 0.4])
    assert not mask[7, 0] and not mask[17, 5]


def test_patch_centers_are_relative_xy():
    centers = control.patch_centers_xy([[0, 249]])  # y = 0, x = 249 (last possible column)
    np.testing.assert_allclose(centers, [[252.5 / 256, 3.5 / 256]])
