"""EditSession: Woodbury point updates against numpy float64 dense solves."""

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from gaussian_crf_test import _photo_similarity, _reference, _relative_error
from tfgcrf.errors import UserError
from tfgcrf.layers.gcrf_edit_session import EditSession

POINTS = [5, 100, 300, 100, 450]  # pixel 100 is edited twice: the last color wins


def _expected(similarity, pixels, colors, prior_weights=None, prior_unary=None, weight=5.0):
    pixels_count = similarity.shape[-1]
    weights = np.zeros(pixels_count) if prior_weights is None else prior_weights.copy()
    unary = np.zeros((pixels_count, 2)) if prior_unary is None else prior_unary.copy()
    for pixel, c in zip(pixels, colors):
        weights[pixel], unary[pixel] = weight, c
    return _reference(similarity, unary[None], weights[None])[0]


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_dense_solve_as_points_are_added(with_prior, dtype):
    similarity = _photo_similarity()
    size = similarity.shape[-1]
    rng = np.random.default_rng(0)
    colors = rng.uniform(-0.5, 0.5, size=(len(POINTS), 2))
    prior_weights = np.full(size, 0.05) if with_prior else None
    prior_unary = rng.uniform(-0.5, 0.5, size=(size, 2)) if with_prior else None
    session = EditSession(similarity.astype(dtype), prior_weights, prior_unary)
    tolerance = 1e-10 if dtype == np.float64 else 1e-3
    for count in range(len(POINTS) + 1):
        x = session.solve(POINTS[:count], colors[:count])
        expected = _expected(similarity, POINTS[:count], colors[:count], prior_weights, prior_unary)
        if count == 0 and not with_prior:
            np.testing.assert_array_equal(x, 0.0)
        else:
            assert _relative_error(x, expected) <= tolerance


def test_one_more_point_solves_one_new_column():
    similarity = _photo_similarity()
    session = EditSession(similarity)
    colors = np.full((len(POINTS), 2), 0.3)
    session.solve(POINTS[:3], colors[:3])
    with mock.patch.object(tf.linalg, "cholesky_solve", wraps=tf.linalg.cholesky_solve) as solve:
        session.solve(POINTS[:5], colors)  # adds pixel 450 (pixel 100 is already known)
    assert solve.call_count == 1
    assert solve.call_args.args[1].shape == (similarity.shape[-1], 1)


def test_bad_arguments():
    similarity = _photo_similarity(size=8)
    with pytest.raises(UserError, match="outside"):
        EditSession(similarity).solve([64], [[0.1, 0.1]])
    with pytest.raises(UserError, match="both prior_weights and prior_unary"):
        EditSession(similarity, prior_weights=np.ones(64))
