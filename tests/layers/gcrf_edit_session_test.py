"""EditSession: Woodbury point updates against numpy float64 dense solves."""

from unittest import mock

import numpy as np
import pytest

from gaussian_crf_test import _photo_similarity, _reference, _relative_error
from tfgcrf.layers.gcrf_reference import numpy_gcrf
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
    with mock.patch.object(session, "_solve", wraps=session._solve) as solve:
        session.solve(POINTS[:5], colors)  # adds pixel 450 (pixel 100 is already known)
    assert solve.call_count == 1
    assert solve.call_args.args[0].shape == (similarity.shape[-1], 1)


def test_many_new_columns_at_once_match_one_by_one():
    """More than `_VECTOR_SOLVES` new pixels go through one triangular solve with many columns."""
    similarity = _photo_similarity()
    pixels = list(range(3, 3 + 7 * (EditSession._VECTOR_SOLVES + 4), 7))
    colors = np.random.default_rng(1).uniform(-0.5, 0.5, (len(pixels), 2))
    together = EditSession(similarity).solve(pixels, colors)
    one_by_one = EditSession(similarity)
    for count in range(1, len(pixels) + 1):
        x = one_by_one.solve(pixels[:count], colors[:count])
    np.testing.assert_allclose(together, x, atol=1e-9)
    assert _relative_error(together, _expected(similarity, pixels, colors)) <= 1e-10


def test_bad_arguments():
    similarity = _photo_similarity(size=8)
    with pytest.raises(UserError, match="outside"):
        EditSession(similarity).solve([64], [[0.1, 0.1]])
    with pytest.raises(UserError, match="both prior_weights and prior_unary"):
        EditSession(similarity, prior_weights=np.ones(64))
    with pytest.raises(UserError, match="not positive definite"):
        EditSession(similarity, ridge=-10.0)


def test_links_and_extra_match_the_dense_solve_as_they_change():
    from tfgcrf.layers import edit_terms

    similarity = _photo_similarity(size=16)
    size = similarity.shape[-1]
    rng = np.random.default_rng(3)
    l = rng.uniform(0.2, 0.8, (1, 16, 16, 1)).astype(np.float32)
    affinity = edit_terms.affinity_matrix(l)
    extra = edit_terms.local_laplacian(affinity).numpy()[0].astype(np.float64)
    prior_weights, prior_unary = np.full(size, 0.01), rng.uniform(-0.3, 0.3, (size, 2))
    session = EditSession(similarity, prior_weights, prior_unary, extra=extra, link_weight=50.0)
    pairs = np.array([[[3, 200], [40, 41], [100, 250]]])
    vectors = edit_terms.link_vectors(affinity, pairs).numpy()[0].astype(np.float64)
    pixels, colors = [7, 120], np.array([[0.4, -0.1], [-0.2, 0.3]])
    for keys in ([0, 4], [0, 1, 4], [1, 2], []):  # link columns added, replaced, all removed
        links = {key: vectors[:, key] for key in keys}
        x = session.solve(pixels, colors, links=links)
        link_part = 50.0 * vectors[:, keys] @ vectors[:, keys].T
        weights, unary = prior_weights.copy(), prior_unary.copy()
        weights[pixels], unary[pixels] = 5.0, colors
        expected = numpy_gcrf(similarity, unary[None], weights[None], 1e-4,
                              (extra + link_part)[None])[0]
        assert _relative_error(x, expected) <= 1e-9


def test_prior_unary_of_one_solve_matches_the_dense_solve_with_that_prior():
    """`solve(..., prior_unary=)` (a prior fitted to the points) keeps A0's factor: it equals the
    dense solve with that prior; the session's own prior comes back without it."""
    similarity = _photo_similarity()
    size = similarity.shape[-1]
    rng = np.random.default_rng(2)
    colors = rng.uniform(-0.5, 0.5, size=(len(POINTS), 2))
    prior_weights = np.full(size, 0.05)
    own, fitted = rng.uniform(-0.5, 0.5, size=(2, size, 2))
    session = EditSession(similarity, prior_weights, own)
    for count in (0, 3, len(POINTS)):
        x = session.solve(POINTS[:count], colors[:count], prior_unary=fitted)
        expected = _expected(similarity, POINTS[:count], colors[:count], prior_weights, fitted)
        assert _relative_error(x, expected) <= 1e-10
    with mock.patch.object(session, "_solve", wraps=session._solve) as solve:
        session.solve(POINTS, colors, prior_unary=fitted.copy())  # the same prior: cached
    assert solve.call_count == 0
    x = session.solve(POINTS, colors)
    expected = _expected(similarity, POINTS, colors, prior_weights, own)
    assert _relative_error(x, expected) <= 1e-10
    with pytest.raises(UserError, match="prior weights"):
        EditSession(similarity).solve(POINTS, colors, prior_unary=fitted)


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_point_sets_factored_last_are_solved_without_columns(with_prior, dtype):
    """`last=`: nested point sets known in advance are trailing blocks of the factor and are
    answered by block elimination (no Woodbury column), equal to the dense solve and to the
    Woodbury answer of a session without `last`; other sets still go through Woodbury."""
    similarity = _photo_similarity()
    size = similarity.shape[-1]
    rng = np.random.default_rng(4)
    nested = [[37], [37, 5, 400], [37, 5, 400, 222, 9, 300, 301]]  # each set holds the previous
    last = [300, 301, 9, 222, 5, 400, 37]  # the largest set's extra pixels first, the smallest's last
    prior_weights = np.full(size, 0.05) if with_prior else None
    prior_unary = rng.uniform(-0.5, 0.5, (size, 2)) if with_prior else None
    ordered = EditSession(similarity.astype(dtype), prior_weights, prior_unary, last=last)
    plain = EditSession(similarity.astype(dtype), prior_weights, prior_unary)
    tolerance = 1e-10 if dtype == np.float64 else 1e-3
    for pixels in nested + [[5, 37, 300]]:  # the last set is not a trailing block: Woodbury
        colors = rng.uniform(-0.5, 0.5, (len(pixels), 2))
        with mock.patch.object(ordered, "_solve", wraps=ordered._solve) as solve:
            x = ordered.solve(pixels, colors)
        trailing = sorted(pixels) == sorted(last[len(last) - len(pixels):])
        assert solve.call_count == (0 if trailing else 1), pixels
        expected = _expected(similarity, pixels, colors, prior_weights, prior_unary)
        assert _relative_error(x, expected) <= tolerance, pixels
        assert _relative_error(x, plain.solve(pixels, colors)) <= tolerance, pixels
        if with_prior:  # a prior of this solve only (`prior_unary=`), also without columns
            fitted = rng.uniform(-0.5, 0.5, (size, 2))
            with mock.patch.object(ordered, "_solve", wraps=ordered._solve) as solve:
                x = ordered.solve(pixels, colors, prior_unary=fitted)
            assert solve.call_count == 0, pixels  # (the Woodbury set's columns are cached)
            expected = _expected(similarity, pixels, colors, prior_weights, fitted)
            assert _relative_error(x, expected) <= tolerance, pixels
    with pytest.raises(UserError, match="distinct pixel indices"):
        EditSession(similarity, last=[3, 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("permuted", [False, True])
def test_the_factor_matches_a_float64_cholesky_of_the_prior_system(dtype, permuted):
    """`_factor` (numpy's syrk + LAPACK potrf through ctypes) against SciPy's float64 Cholesky
    of A0 = (I - S)^T (I - S) + extra + diag(w) + ridge I formed densely, in a permuted order."""
    from scipy import linalg

    from tfgcrf.layers.gcrf_edit_session import _factor

    rng = np.random.default_rng(3)
    similarity = np.asarray(_photo_similarity(size=16))[0].astype(dtype)
    size = similarity.shape[0]
    order = rng.permutation(size) if permuted else np.arange(size)
    weights = rng.uniform(0, 0.1, size)
    root = rng.normal(size=(size, 8)) / 8
    extra = root @ root.T  # symmetric positive semi-definite, in `order`
    complement = np.eye(size) - similarity.astype(np.float64)
    dense = (complement.T @ complement)[np.ix_(order, order)] + extra + np.diag(weights) + 1e-3 * np.eye(size)
    expected = linalg.cholesky(dense, lower=False)
    upper = _factor(similarity, weights, 1e-3, extra, order=order if permuted else None)
    assert upper.dtype == dtype and upper.flags.f_contiguous
    tolerance = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.triu(upper), expected, atol=tolerance * np.abs(expected).max())
    with pytest.raises(TypeError, match="float32 or float64"):
        _factor(similarity.astype(np.float16), weights, 1e-3)


def test_overlapping_sessions_in_threads_share_one_blas_limit():
    """Sessions in two threads enter and leave the one-BLAS-thread limit out of order (A in, B in,
    A out, B out): BLAS stays on 1 thread until the last leaves, then is back where it was. With
    each thread restoring what it found, B ran on 2 threads after A left and left 1 for good."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tfgcrf.layers.gcrf_edit_session import one_blas_thread

    def blas_threads():  # numpy's and SciPy's OpenBLAS (MKL, loaded for PARDISO, is sequential)
        return sorted({pool["num_threads"] for pool in threadpool_info()
                       if pool["internal_api"] == "openblas"})

    with threadpool_limits(limits=2, user_api="blas"):  # > 1 to tell the cases apart
        assert blas_threads() == [2]
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()
        assert blas_threads() == [1]
        first.__exit__(None, None, None)
        assert blas_threads() == [1]  # the second session still runs
        second.__exit__(None, None, None)
        assert blas_threads() == [2]
