"""Edit terms of the G-CRF energy: local smoothness (Levin's affinities) and "same color" links."""

import numpy as np
import pytest
import tensorflow as tf

from gaussian_crf_test import RIDGE, _photo_similarity
from tfgcrf.layers.gcrf_reference import numpy_gcrf
from tfgcrf.evaluation import levin
from tfgcrf.layers import edit_terms
from tfgcrf.layers.gaussian_crf import GaussianCRF, LowRank


def _lightness(batch=2, height=7, width=9, seed=0):
    rng = np.random.default_rng(seed)
    l = rng.uniform(0.0, 1.0, (batch, height, width, 1)).astype(np.float32)
    l[-1, 2:5, 3:6] = 0.5  # a perfectly flat window: the denominator's floor
    return l


def _reference_affinities(luminance):
    """Levin et al.'s affinities pixel by pixel in float64 numpy (getColorExact.m's rules: 3x3
    window variance (ddof 0) times 0.6, at least the closest neighbour's squared difference / ln
    100, at least 2e-6), `[H, W, 8]` in `OFFSETS` order, 0 outside the image."""
    height, width = luminance.shape
    weights = np.zeros((height, width, 8))
    for y in range(height):
        for x in range(width):
            inside = [(k, y + dy, x + dx) for k, (dy, dx) in enumerate(edit_terms.OFFSETS)
                      if 0 <= y + dy < height and 0 <= x + dx < width]
            values = np.array([luminance[v, u] for _, v, u in inside])
            squared = (values - luminance[y, x]) ** 2
            window = np.append(values, luminance[y, x])
            denominator = max(0.6 * window.var(), squared.min() / np.log(100.0), 2e-6)
            raw = np.exp(-squared / denominator)
            for (k, _, _), value in zip(inside, raw / raw.sum()):
                weights[y, x, k] = value
    return weights


def test_affinities_match_a_pixel_by_pixel_reference():
    l = _lightness()
    weights = edit_terms.local_affinities(l).numpy()
    weights64 = edit_terms.local_affinities(l, dtype=tf.float64).numpy()
    for image, got, got64 in zip(l, weights, weights64):
        expected = _reference_affinities(image[..., 0].astype(np.float64))
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_allclose(got64, expected, atol=1e-13)
        # The Levin baseline's affinities are these (one home; float64).
        np.testing.assert_allclose(np.moveaxis(levin.affinities(image[..., 0]), 0, -1), expected,
                                   atol=1e-13)


def test_affinity_matrix_places_every_weight():
    l = _lightness(batch=1, height=5, width=6)
    weights = edit_terms.local_affinities(l).numpy()[0]
    matrix = edit_terms.affinity_matrix(l).numpy()[0]
    expected = np.zeros_like(matrix)
    for index, (dy, dx) in enumerate(edit_terms.OFFSETS):
        for y in range(5):
            for x in range(6):
                if 0 <= y + dy < 5 and 0 <= x + dx < 6:
                    expected[y * 6 + x, (y + dy) * 6 + x + dx] = weights[y, x, index]
    np.testing.assert_allclose(matrix, expected, atol=1e-7)
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-6)


def test_laplacian_is_the_symmetric_pairwise_energy():
    l = _lightness(batch=1)
    affinity = edit_terms.affinity_matrix(l)
    laplacian = edit_terms.local_laplacian(affinity).numpy()[0].astype(np.float64)
    w = affinity.numpy()[0].astype(np.float64)
    x = np.random.default_rng(1).normal(size=len(w))
    pairwise = 0.25 * np.sum((w + w.T) * (x[:, None] - x[None]) ** 2)
    assert x @ laplacian @ x == pytest.approx(pairwise, rel=1e-5)
    np.testing.assert_allclose(laplacian @ np.ones(len(w)), 0.0, atol=1e-6)  # no color preferred
    assert np.linalg.eigvalsh(laplacian).min() > -1e-6


def test_link_vectors_tie_two_3x3_windows():
    l = _lightness(batch=1, height=6, width=6)
    affinity = edit_terms.affinity_matrix(l)
    links = np.array([[[7, 28], [10, 10], [0, 2]]])  # (1, 1)-(4, 4); a pixel to itself; padding
    vectors = edit_terms.link_vectors(affinity, links, num_links=[2]).numpy()[0]
    assert vectors.shape == (36, 27)
    eye = np.eye(36)
    for index, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
        expected = eye[(1 + dy) * 6 + 1 + dx] - eye[(4 + dy) * 6 + 4 + dx]
        np.testing.assert_allclose(vectors[:, index], expected)
    np.testing.assert_allclose(vectors[:, 9:], 0.0)  # a pixel to itself; padding
    corner = edit_terms.link_vectors(affinity, np.array([[[0, 35]]])).numpy()[0]
    np.testing.assert_allclose(corner[:, 0], eye[0] - eye[35 - 7])  # offsets clipped at borders


@pytest.mark.parametrize("solver", ["lu", "cholesky", "cg"])
def test_solvers_with_edit_terms_match_numpy(solver):
    similarity = _photo_similarity(size=12)
    pixels = similarity.shape[-1]
    l = np.random.default_rng(2).uniform(0.2, 0.8, (1, 12, 12, 1)).astype(np.float32)
    links = np.array([[[5, 130], [20, 21]]])
    extra = edit_terms.edit_precision(l, links, [2], local_weight=0.7, link_weight=50.0)
    weights = np.zeros((1, pixels))
    weights[0, [5, 60]] = 5.0
    unary = np.zeros((1, pixels, 2))
    unary[0, [5, 60]] = [[0.4, -0.2], [-0.3, 0.3]]
    layer = GaussianCRF(solver=solver, ridge=RIDGE, cg_tol=1e-7, preconditioner="jacobi",
                        cg_max_iter=3000, dtype="float64")
    x = layer(similarity, unary, weights, extra=tf.cast(extra, tf.float64)).numpy()
    expected = numpy_gcrf(similarity, unary, weights, RIDGE, extra.numpy())
    np.testing.assert_allclose(x, expected, atol=1e-6)
    # The link: pixel 130 follows the point at 5.
    local = edit_terms.edit_precision(l, local_weight=0.7).numpy()
    unlinked = numpy_gcrf(similarity, unary, weights, RIDGE, local)
    assert abs(x[0, 5, 0] - x[0, 130, 0]) < 0.1 * abs(unlinked[0, 5, 0] - unlinked[0, 130, 0])


@pytest.mark.parametrize("solver, preconditioner", [
    ("cholesky", "none"), ("cg", "jacobi"), ("cg", "two_level")])
def test_links_as_a_low_rank_term_give_the_dense_terms_answer(solver, preconditioner):
    """`GCRFColorizer.edit`'s links without a local term: `LowRank(link_vectors_of(...),
    link_weight)`, which CG multiplies by V twice instead of forming U U^T (and whose link ends
    join the two-level coarse space), answers as the dense `edit_precision` matrix; in a batch of
    two images with different links (CG runs image by image on slices of the term), and with a
    padding link."""
    similarity = np.concatenate([_photo_similarity(size=16)] * 2)
    pixels = similarity.shape[-1]
    l = np.random.default_rng(3).uniform(0.2, 0.8, (2, 16, 16, 1)).astype(np.float32)
    links = np.array([[[5, 200], [20, 21]], [[40, 250], [0, 0]]])
    num_links = np.array([2, 1], np.int32)
    weights = np.zeros((2, pixels))
    weights[:, [5, 60]] = 5.0
    unary = np.zeros((2, pixels, 2))
    unary[:, [5, 60]] = [[0.4, -0.2], [-0.3, 0.3]]
    dense = edit_terms.edit_precision(l, links, num_links, local_weight=0.0, link_weight=200.0)
    low_rank = LowRank(edit_terms.link_vectors_of(l, links, num_links), 200.0)
    np.testing.assert_allclose(low_rank.dense().numpy(), dense.numpy())
    layer = GaussianCRF(solver=solver, ridge=RIDGE, cg_tol=1e-7, preconditioner=preconditioner,
                        cg_max_iter=3000, dtype="float64")
    x, info = layer(similarity, unary, weights, extra=low_rank, return_info=True)
    expected = numpy_gcrf(similarity, unary, weights, RIDGE, dense.numpy().astype(np.float64))
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    assert np.all(info["converged"].numpy())
    np.testing.assert_allclose(
        edit_terms.link_vectors_of(l, links, num_links).numpy(),
        edit_terms.link_vectors(edit_terms.affinity_matrix(l), links, num_links).numpy())
