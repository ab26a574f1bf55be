from unittest import mock

import numpy as np
import pytest

from tfgcrf.evaluation import levin, metrics


def _two_regions(size=24):
    """Dark left half, bright right half, with mild noise so windows are not perfectly flat."""
    rng = np.random.default_rng(0)
    luminance = np.where(np.arange(size)[None, :] < size // 2, 0.3, 0.7) * np.ones((size, 1))
    return luminance + rng.normal(0, 0.003, (size, size))


def test_affinities_are_normalized_and_respect_edges():
    luminance = _two_regions()
    weights = levin.affinities(luminance)
    assert weights.shape == (8, 24, 24)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    assert (weights[:, 0, 0] > 0).sum() == 3  # a corner has 3 neighbours
    # A pixel next to the edge gives almost all its weight to its own side.
    right_neighbour = levin._OFFSETS.index((0, 1))
    assert weights[right_neighbour, 10, 11] < 0.02


def test_every_pixel_revealed_reproduces_the_ground_truth():
    rng = np.random.default_rng(1)
    luminance = rng.uniform(0, 1, (10, 12))
    truth = rng.uniform(-1, 1, (10, 12, 2))
    result = levin.colorize(luminance, np.ones((10, 12), bool), truth)
    np.testing.assert_array_equal(result, truth)


def test_few_points_give_a_smooth_result_that_follows_edges():
    luminance = _two_regions()
    mask = np.zeros((24, 24), bool)
    hints = np.zeros((24, 24, 2))
    mask[5, 3], hints[5, 3] = True, [0.4, -0.2]  # left region
    mask[18, 20], hints[18, 20] = True, [-0.3, 0.5]  # right region
    result = levin.colorize(luminance, mask, hints)
    assert np.isfinite(result).all()
    # A weighted average of the hints everywhere (the system is an interpolation).
    assert result.min() >= -0.3 - 1e-9 and result.max() <= 0.5 + 1e-9
    # Each region takes its own hint's color, far from the hint as well as near it.
    np.testing.assert_allclose(result[:, :10], np.broadcast_to([0.4, -0.2], (24, 10, 2)), atol=0.05)
    np.testing.assert_allclose(result[:, 14:], np.broadcast_to([-0.3, 0.5], (24, 10, 2)), atol=0.05)
    # Smooth inside the regions: chroma gradients only at the luminance edge.
    flat = metrics.flat_region(luminance)
    assert metrics.chroma_gradient_energy(result, flat) < 1e-3 * metrics.chroma_gradient_energy(result)


def test_single_hint_colors_a_uniform_image_uniformly():
    mask = np.zeros((6, 6), bool)
    mask[2, 2] = True
    hints = np.zeros((6, 6, 2))
    hints[2, 2] = [0.25, -0.5]
    result = levin.colorize(np.full((6, 6), 0.5), mask, hints)
    np.testing.assert_allclose(result, np.broadcast_to([0.25, -0.5], (6, 6, 2)), atol=1e-9)


def test_requires_a_hint():
    with pytest.raises(ValueError, match="at least one hinted pixel"):
        levin.colorize(np.zeros((4, 4)), np.zeros((4, 4), bool), np.zeros((4, 4, 2)))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must match"):
        levin.colorize(np.zeros((4, 4)), np.ones((4, 5), bool), np.zeros((4, 4, 2)))


def _dense_reference(luminance, mask, hints):
    """Levin et al.'s system written out densely from its definition, solved in float64."""
    height, width = luminance.shape
    weights = levin.affinities(luminance)
    count = height * width
    system = np.eye(count)
    for y in range(height):
        for x in range(width):
            if mask[y, x]:
                continue
            for (dy, dx), weight in zip(levin._OFFSETS, weights[:, y, x]):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    system[y * width + x, (y + dy) * width + x + dx] -= weight
    rhs = np.where(mask[..., None], hints, 0.0).reshape(count, -1)
    return np.linalg.solve(system, rhs).reshape(height, width, -1)


@pytest.mark.parametrize("shape", [(1, 9), (5, 3), (12, 17), (20, 20)])
def test_matches_a_dense_float64_solve_for_several_hint_sets(shape):
    rng = np.random.default_rng(sum(shape))
    luminance = rng.uniform(0, 1, shape)
    luminance[:, : shape[1] // 2] *= 0.3  # an edge
    propagation = levin.Propagation(luminance)
    for fraction in (0.02, 0.1, 0.5):  # one system, several hint sets
        mask = rng.uniform(size=shape) < fraction
        mask.flat[rng.integers(mask.size)] = True
        hints = rng.uniform(-1, 1, shape + (2,))
        expected = _dense_reference(luminance, mask, hints)
        np.testing.assert_allclose(propagation.colorize(mask, hints), expected, atol=1e-10)
        np.testing.assert_allclose(levin.colorize(luminance, mask, hints), expected, atol=1e-10)


def test_propagation_checks_its_inputs():
    propagation = levin.Propagation(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least one hinted pixel"):
        propagation.colorize(np.zeros((4, 4), bool), np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="must match"):
        propagation.colorize(np.ones((4, 5), bool), np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        levin.Propagation(np.zeros((4, 4, 1)))


def test_hints_of_one_color_give_that_color_without_a_factorization():
    """One 7x7 patch (the control protocol's |H| = 1): the constant is the system's solution."""
    rng = np.random.default_rng(5)
    luminance = rng.uniform(0, 1, (14, 15))
    luminance[:, :7] *= 0.2
    mask = np.zeros((14, 15), bool)
    mask[3:10, 6:13] = True
    hints = np.where(mask[..., None], [0.3, -0.6], rng.uniform(-1, 1, (14, 15, 2)))
    expected = _dense_reference(luminance, mask, hints)
    propagation = levin.Propagation(luminance)
    with mock.patch.object(levin.grid_lu, "solve") as factor:
        result = propagation.colorize(mask, hints)
    factor.assert_not_called()
    np.testing.assert_allclose(result, expected, atol=1e-10)
    hints[4, 7, 1] = 0.1  # two colors: factored
    np.testing.assert_allclose(propagation.colorize(mask, hints),
                               _dense_reference(luminance, mask, hints), atol=1e-10)
