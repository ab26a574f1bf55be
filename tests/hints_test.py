"""The full-resolution propagation of `tfgcrf.hints` against float64 references."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfgcrf import hints
from tfgcrf.errors import InputError
from tfgcrf.evaluation import levin
from tfgcrf.layers import edit_terms


def _photo(height=14, width=18, seed=0):
    """Lightness (L*) with an edge and mild noise, and a chroma field G (model units)."""
    rng = np.random.default_rng(seed)
    lightness = np.where(np.arange(width)[None] < width // 2, 35.0, 70.0) + rng.normal(0, 1.0, (height, width))
    prior = rng.uniform(-0.3, 0.3, (height, width, 2))
    return lightness, prior


def _dense_reference(lightness, prior, mask, targets, weight):
    """The module docstring's system, built densely pixel by pixel and solved in float64."""
    height, width = lightness.shape
    weights = levin.affinities(lightness / 100.0)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    count = height * width
    system = np.zeros((count, count))
    right = np.zeros((count, prior.shape[-1]))
    for y in range(height):
        for x in range(width):
            r = y * width + x
            if mask[y, x]:
                system[r, r], right[r] = 1.0, targets[y, x]
                continue
            system[r, r] = 1.0 + weight
            right[r] = weight * prior[y, x]
            for (dy, dx), w in zip(offsets, weights[:, y, x]):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    system[r, (y + dy) * width + x + dx] -= w
    return np.linalg.solve(system, right).reshape(prior.shape)


def _hints(shape, pixels, seed=1):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    targets = np.zeros(shape + (2,))
    for y, x in pixels:
        mask[y, x] = True
        targets[y, x] = rng.uniform(-0.5, 0.5, 2)
    return mask, targets


@pytest.mark.parametrize("pixels", [[(2, 3)], [(2, 3), (10, 15), (7, 9)], [(y, 4) for y in range(14)]])
def test_bordered_and_factored_solves_match_a_dense_reference(pixels):
    lightness, prior = _photo()
    mask, targets = _hints(lightness.shape, pixels)
    expected = _dense_reference(lightness, prior, mask, targets, 1e-2)
    propagation = hints.Propagation(lightness, weight=1e-2, local="levin")
    bordered = propagation.solve(prior, mask, targets)  # few hints: bordered, columns cached
    np.testing.assert_allclose(bordered, expected, atol=1e-9)
    np.testing.assert_allclose(bordered[mask], targets[mask], atol=1e-12)
    factored = hints.Propagation(lightness, weight=1e-2, local="levin")
    previous = hints._BORDERED_HINTS
    try:
        hints._BORDERED_HINTS = 0
        np.testing.assert_allclose(factored.solve(prior, mask, targets), expected, atol=1e-9)
    finally:
        hints._BORDERED_HINTS = previous
    # The cached columns answer a second, overlapping hint set exactly too.
    mask2, targets2 = _hints(lightness.shape, pixels[:1] + [(0, 0)], seed=5)
    np.testing.assert_allclose(propagation.solve(prior, mask2, targets2),
                               _dense_reference(lightness, prior, mask2, targets2, 1e-2), atol=1e-9)


def test_weight_zero_is_levin_and_a_large_weight_keeps_the_prior():
    lightness, prior = _photo()
    mask, targets = _hints(lightness.shape, [(3, 2), (11, 14)])
    np.testing.assert_allclose(hints.Propagation(lightness, weight=0.0, local="levin").solve(
                                   prior, mask, targets),
                               levin.colorize(lightness / 100.0, mask, targets), atol=1e-9)
    kept = hints.Propagation(lightness, weight=1e6).solve(prior, mask, targets)
    np.testing.assert_allclose(kept[~mask], prior[~mask], atol=1e-4)


def test_correction_of_a_larger_photo_at_a_reduced_working_resolution():
    lightness, _ = _photo(40, 60)
    propagation = hints.Propagation(lightness, max_pixels=600)
    assert propagation.work_shape == (20, 30)
    assert hints.Propagation(np.zeros((300, 300)), weight=1e-3).work_shape == (128, 128)
    assert hints.Propagation(np.zeros((256, 256)), weight=1e-3).work_shape == (256, 256)
    ab_small = np.zeros([1, 4, 4, 2], np.float32)
    assert not propagation.correction(ab_small, np.zeros([0, 2]), np.zeros([0, 2])).any()
    # Two points in one working pixel count as their mean; a third far away.
    points = np.array([[10, 10], [11, 10], [50, 30]])
    colors = np.array([[0.4, 0.0], [0.2, 0.0], [-0.3, 0.3]])
    mask, targets = propagation.hint_mask(points, colors)
    assert mask.sum() == 2
    np.testing.assert_allclose(targets[5, 5], [0.3, 0.0])
    change = propagation.correction(ab_small, points, colors)
    assert change.shape == (40, 60, 2) and change.dtype == np.float32
    # G is 0: the change is the propagated colors, the hints' at their pixels' neighbourhood.
    np.testing.assert_allclose(change[30, 50], [-0.3, 0.3], atol=0.05)
    np.testing.assert_allclose(change[10, 10], [0.3, 0.0], atol=0.05)


# The TensorFlow solver (the SavedModel's) against the float64 references: the dense system and
# the sparse LU of `Propagation`. Traced, as in the SavedModel (an eager tf.while_loop is slow).
_solve = tf.function(hints.propagation_solve, autograph=False)

@pytest.mark.parametrize("pixels", [[(2, 3)], [(2, 3), (10, 15), (7, 9)], [(y, 4) for y in range(14)]])
@pytest.mark.parametrize("weight", [1e-3, 1e-2])
def test_tensorflow_solver_matches_the_dense_reference(pixels, weight):
    lightness, prior = _photo()
    mask, targets = _hints(lightness.shape, pixels)
    expected = _dense_reference(lightness, prior, mask, targets, weight)
    weights = hints.local_stencil(lightness, "levin")
    solved, iterations = _solve(weights, prior, mask, targets, weight=weight)
    # Every entry within the accuracy bound (residual <= accuracy * lam, |A^-1|_inf <= 1 / lam).
    assert np.abs(solved.numpy() - expected).max() <= hints.PROPAGATION_ACCURACY
    np.testing.assert_array_equal(solved.numpy()[mask], targets[mask])  # hard constraints
    assert 0 < int(iterations) < hints.PROPAGATION_MAX_ITERATIONS
    tighter, _ = _solve(weights, prior, mask, targets, weight=weight, accuracy=1e-9)
    np.testing.assert_allclose(tighter.numpy(), expected, atol=1e-9)


def test_one_definition_of_the_system_for_both_solvers():
    lightness, _ = _photo(14, 18)
    np.testing.assert_allclose(hints.propagation_weights(lightness).numpy(),
                               np.moveaxis(levin.affinities(lightness / 100.0), 0, -1), atol=1e-15)
    for shape, expected in [((256, 256), (256, 256)), ((300, 300), (128, 128)),
                            ((240, 384), (101, 162)), ((80, 128), (80, 128)), ((1, 70000), (1, 33866))]:
        assert tuple(int(v) for v in hints.propagation_shape(*shape)) == expected
    mask, targets = hints.propagation_hints([[10, 10], [11, 10], [50, 30]],
                                            [[0.4, 0.0], [0.2, 0.0], [-0.3, 0.3]], (40, 60), (20, 30))
    assert mask.numpy().sum() == 2
    np.testing.assert_allclose(targets.numpy()[5, 5], [0.3, 0.0])
    np.testing.assert_allclose(targets.numpy()[15, 25], [-0.3, 0.3])
    # The TF solver's matrix is the LU path's (1 + lam) I - W with the hinted rows the identity.
    weights = hints.propagation_weights(lightness)
    mask, _ = _hints(lightness.shape, [(0, 0), (5, 17), (13, 9)])
    operator = hints._operator(hints.local_stencil(lightness, "levin"), tf.constant(mask), 1e-3)
    count = lightness.size
    dense = np.zeros((count, count))  # duplicates (zeros at clipped columns) add up, as in matmul
    np.add.at(dense, tuple(operator.indices.numpy().T), operator.values.numpy())
    expected = (1 + 1e-3) * np.eye(count)
    for (dy, dx), plane in zip(edit_terms.OFFSETS, np.moveaxis(weights.numpy(), -1, 0)):
        for y, x in zip(*np.nonzero(plane)):
            expected[y * lightness.shape[1] + x, (y + dy) * lightness.shape[1] + x + dx] -= plane[y, x]
    expected[mask.ravel()] = np.eye(count)[mask.ravel()]
    np.testing.assert_allclose(dense, expected, atol=1e-15)


@pytest.mark.parametrize("local", hints.LOCAL_TERMS)
@pytest.mark.parametrize("shape, max_pixels", [((24, 40), None), ((300, 230), None)])
def test_tensorflow_correction_equals_the_sparse_lu_one(shape, max_pixels, local):
    """`propagation_correction` (TF ops, also inside a tf.function as in the SavedModel) and
    `Propagation.correction` (sparse LU), with either local term: non-square photos at their own
    resolution and above 256^2 px (working resolution 128^2 px)."""
    rng = np.random.default_rng(3)
    height, width = shape
    lightness, _ = _photo(height, width)
    ab_small = rng.uniform(-0.3, 0.3, (1, 8, 8, 2)).astype(np.float32)
    points = np.stack([rng.integers(0, width, 4), rng.integers(0, height, 4)], 1).astype(np.int32)
    colors = rng.uniform(-0.5, 0.5, (4, 2)).astype(np.float32)
    expected = hints.Propagation(lightness, local=local).correction(ab_small, points, colors)
    traced = tf.function(lambda *args: hints.propagation_correction(*args, local=local),
                         autograph=False)
    for points_in, colors_in, want in [(points, colors, expected),
                                       (points[:0], colors[:0], np.zeros_like(expected))]:
        got = traced(ab_small, lightness.astype(np.float32), points_in, colors_in).numpy()
        assert got.shape == (height, width, 2) and got.dtype == np.float32
        # Within the solver's accuracy (+ float32 rounding of the lightness and the prior).
        assert np.abs(got - want).max() <= 2 * hints.PROPAGATION_ACCURACY
    assert np.abs(expected).max() > 0.05  # the points change the photo


# The matting Laplacian local term ("matting") against a dense float64 reference built window by
# window from Levin, Lischinski & Weiss (2008), eq. 12 (one gray channel).
def _dense_matting(lightness, epsilon):
    image = lightness / 100.0
    height, width = image.shape
    laplacian = np.zeros((height * width, height * width))
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            pixels = [(y + dy) * width + x + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            values = image[y - 1:y + 2, x - 1:x + 2].ravel()
            mean, variance = values.mean(), values.var()
            for i, vi in zip(pixels, values):
                for j, vj in zip(pixels, values):
                    laplacian[i, j] += (i == j) - (1 + (vi - mean) * (vj - mean)
                                                   / (variance + epsilon / 9)) / 9
    return laplacian


def _dense_matting_solve(lightness, prior, mask, targets, weight, epsilon):
    system = _dense_matting(lightness, epsilon) + weight * np.eye(lightness.size)
    right = weight * prior.reshape(-1, prior.shape[-1])
    hinted = mask.ravel()
    system[hinted] = 0.0
    system[hinted, hinted] = 1.0
    right[hinted] = targets.reshape(-1, prior.shape[-1])[hinted]
    return np.linalg.solve(system, right).reshape(prior.shape)


def test_matting_stencil_matches_the_dense_laplacian():
    lightness, _ = _photo(9, 11)
    stencil = hints.local_stencil(lightness, "matting", epsilon=1e-4)
    assert stencil.shape == (9, 11, 25) and hints.stencil_radius(stencil) == 2
    expected = _dense_matting(lightness, 1e-4)
    got = hints._sparse_stencil(stencil.numpy()).toarray()
    np.testing.assert_allclose(got, expected, atol=1e-10)
    np.testing.assert_allclose(got, got.T, atol=1e-10)  # symmetric, rows summing to 0
    np.testing.assert_allclose(got.sum(axis=1), 0.0, atol=1e-10)
    # The Levin term as a stencil is I - W.
    levin_stencil = hints._sparse_stencil(hints.local_stencil(lightness, "levin").numpy()).toarray()
    np.testing.assert_allclose(np.diag(levin_stencil), 1.0)
    np.testing.assert_allclose(levin_stencil.sum(axis=1), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="local term"):
        hints.local_stencil(lightness, "bilateral")


@pytest.mark.parametrize("pixels", [[(2, 3)], [(2, 3), (10, 15), (7, 9)], [(y, 4) for y in range(14)]])
def test_matting_propagation_solves_match_a_dense_reference(pixels):
    lightness, prior = _photo()
    mask, targets = _hints(lightness.shape, pixels)
    weight, epsilon = 1e-2, hints.MATTING_EPSILON
    expected = _dense_matting_solve(lightness, prior, mask, targets, weight, epsilon)
    propagation = hints.Propagation(lightness, weight=weight, local="matting")
    np.testing.assert_allclose(propagation.solve(prior, mask, targets), expected, atol=1e-8)
    previous = hints._BORDERED_HINTS
    try:  # the hinted system factored directly (the evaluation's patches)
        hints._BORDERED_HINTS = 0
        factored = hints.Propagation(lightness, weight=weight, local="matting")
        np.testing.assert_allclose(factored.solve(prior, mask, targets), expected, atol=1e-8)
    finally:
        hints._BORDERED_HINTS = previous
    # The TF solver of the matting term: conjugate gradients (two-level preconditioner).
    assert hints.PROPAGATION_SOLVERS["matting"] == "cg"
    stencil = hints.local_stencil(lightness, "matting")
    solved, iterations = _solve(stencil, prior, mask, targets, weight=weight, solver="cg",
                                lightness=lightness)
    assert np.abs(solved.numpy() - expected).max() <= hints.PROPAGATION_ACCURACY
    np.testing.assert_array_equal(solved.numpy()[mask], targets[mask])
    assert 0 < int(iterations) < hints.PROPAGATION_MAX_ITERATIONS
    tighter, _ = _solve(stencil, prior, mask, targets, weight=weight, accuracy=1e-10, solver="cg",
                        lightness=lightness)
    np.testing.assert_allclose(tighter.numpy(), expected, atol=1e-9)
    # Default weight of the term.
    assert hints.Propagation(lightness, local="matting").weight == hints.MATTING_WEIGHT


def test_coarse_space_of_the_cg_solver_matches_a_dense_reference():
    """`_coarse_space`: aggregates of COARSE_BLOCK^2 pixels, the constant and the centred, scaled
    lightness on their free pixels, and Z^T A Z (free rows and columns of M + lam I) built densely."""
    lightness, _ = _photo(19, 21)
    lightness[:8, :8] = 50.0  # a flat aggregate: its lightness vector is left out
    mask, _ = _hints(lightness.shape, [(2, 3), (12, 15), (18, 20)])
    weight = 1e-3
    stencil = hints.local_stencil(lightness, "matting")
    aggregate, basis, count, cholesky = hints._coarse_space(stencil, lightness, mask, weight)
    block = hints.COARSE_BLOCK
    height, width = lightness.shape
    columns = -(-width // block)
    assert int(count) == -(-height // block) * columns
    free = ~mask.ravel()
    zmatrix = np.zeros((lightness.size, 2 * int(count)))
    image = lightness.ravel() / 100.0
    for r in range(lightness.size):
        y, x = divmod(r, width)
        a = (y // block) * columns + x // block
        assert int(aggregate[r]) == a
        if not free[r]:
            continue
        members = [s for s in range(lightness.size) if free[s]
                   and (s // width // block) * columns + (s % width) // block == a]
        centred = image[r] - image[members].mean()
        deviation = image[members].std()
        zmatrix[r, 2 * a] = 1.0
        zmatrix[r, 2 * a + 1] = centred / deviation if deviation > hints._COARSE_FLAT else 0.0
    np.testing.assert_allclose(basis.numpy(), zmatrix.reshape(-1, int(count), 2)[
        np.arange(lightness.size), (np.arange(lightness.size) // width // block) * columns
        + np.arange(lightness.size) % width // block], atol=1e-12)
    assert not zmatrix[:8 * width].reshape(8, width, -1)[:, :8, 1].any()  # the flat aggregate
    system = _dense_matting(lightness, hints.MATTING_EPSILON) + weight * np.eye(lightness.size)
    expected = zmatrix.T @ system @ zmatrix
    unused = np.diag(expected) == 0
    expected[unused, unused] = 1.0
    got = cholesky.numpy() @ cholesky.numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert unused.any()  # the flat aggregate's second vector


def _real_photo(size):
    """L* of tests/data/fullres/skimage_astronaut.jpg resized to `size` (width, height)."""
    import os

    from PIL import Image

    from tfgcrf import color

    path = os.path.join(os.path.dirname(__file__), "data", "fullres", "skimage_astronaut.jpg")
    rgb = np.asarray(Image.open(path).convert("RGB").resize(size, Image.BICUBIC))
    return color.lightness(tf.image.convert_image_dtype(rgb, tf.float32))[..., 0].numpy()


@pytest.mark.parametrize("size", [pytest.param((256, 256), marks=pytest.mark.slow), (1024, 768)])
def test_matting_solve_of_a_real_photo_equals_the_sparse_lu(size):
    """The served solver of the matting term on a real photo at 256^2 px and at a 1024x768 photo's
    working resolution (148x111 px), where BiCGSTAB gave NaN and diverged (README "Control"):
    every entry within PROPAGATION_ACCURACY of the float64 sparse LU, finite, in
    <= 1000 iterations; the whole correction (also traced) within 2 PROPAGATION_ACCURACY."""
    lightness = _real_photo(size)
    rng = np.random.default_rng(0)
    ab_small = rng.uniform(-0.2, 0.2, (1, 64, 64, 2)).astype(np.float32)
    points = (np.array([(0.3, 0.3), (0.7, 0.6), (0.5, 0.85)]) * size).astype(np.int32)
    chroma = rng.uniform(-0.5, 0.5, (3, 2)).astype(np.float32)
    propagation = hints.Propagation(lightness, local="matting")
    mask, targets = propagation.hint_mask(points, chroma)
    prior = hints._prior(ab_small, propagation.lightness).numpy()
    expected = propagation.solve(prior, mask, targets)
    solved, iterations = _solve(hints.local_stencil(propagation.lightness, "matting"), prior, mask,
                                targets, weight=hints.MATTING_WEIGHT, solver="cg",
                                lightness=propagation.lightness)
    solved = solved.numpy()
    assert np.isfinite(solved).all()
    assert np.abs(solved - expected).max() <= hints.PROPAGATION_ACCURACY
    assert 0 < int(iterations) <= 1000
    assert np.abs(expected - prior).max() > 0.1  # the points change the photo
    traced = tf.function(lambda *args: hints.propagation_correction(*args, local="matting"),
                         autograph=False)
    got = traced(ab_small, lightness, points, chroma).numpy()
    want = propagation.correction(ab_small, points, chroma)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() <= 2 * hints.PROPAGATION_ACCURACY


def test_propagation_solve_refuses_an_unknown_solver_or_cg_without_lightness():
    lightness, prior = _photo()
    mask, targets = _hints(lightness.shape, [(2, 3)])
    stencil = hints.local_stencil(lightness, "matting")
    with pytest.raises(ValueError, match="solver"):
        hints.propagation_solve(stencil, prior, mask, targets, solver="lu")
    with pytest.raises(ValueError, match="lightness"):
        hints.propagation_solve(stencil, prior, mask, targets, solver="cg")


def test_link_patch_is_a_lattice_around_the_end_within_its_region():
    """The places from which a link's carried color is propagated: offsets -1, 0, 1 grid cells
    around the receiving end, inside the photo, with the end's lightness (another region, here a
    darker right half, and the photo's border are left out)."""
    lightness = np.full([40, 60], 50.0, np.float32)
    lightness[:, 36:] = 20.0
    cell = 8.0
    ends = np.array([[30, 20], [3, 35]], np.int32)  # (x, y): near the edge; near a corner
    chroma = np.array([[0.1, -0.2], [0.3, 0.0]], np.float32)
    places, colors = hints.link_patch(ends, chroma, lightness, cell)
    got = {tuple(p): tuple(c) for p, c in zip(places.numpy().tolist(), colors.numpy().tolist())}
    expected = {}
    for (x, y), ab in zip(ends.tolist(), chroma.tolist()):
        for dy in (-8, 0, 8):
            for dx in (-8, 0, 8):
                if 0 <= x + dx < 36 and 0 <= y + dy < 40:
                    expected[(x + dx, y + dy)] = tuple(np.float32(ab).tolist())
    assert got == expected
    assert len(places) == 6 + 4  # the end's column x + 8 = 38 is darker; the corner clips


def _reference_refine(ab_full, lightness, points, colors, cell):
    """`refine_at_points` written out in float64 numpy, kernel by kernel and pixel by pixel of
    each window (the module docstring's interpolation: K w = r at the points, then every
    kernel's window spread over the photo)."""
    ab_full = np.asarray(ab_full, np.float64)
    height, width = lightness.shape
    sigma = max(cell * hints.SIGMA_CELLS, 0.5)
    radius = max(1, int(np.ceil(3.0 * sigma)))
    points = np.asarray(points)
    count = len(points)
    keep = [not any(np.array_equal(points[i], points[j]) for j in range(i + 1, count))
            for i in range(count)]

    def kernel(squared, difference, width_):
        return np.exp(-squared / (2 * width_**2) - difference**2 / (2 * hints.SIGMA_LIGHTNESS**2))

    widths = []
    for j in range(count):
        others = [np.sum((points[i] - points[j]) ** 2.0) for i in range(count)
                  if i != j and keep[i] and keep[j]]
        widths.append(np.clip(0.5 * np.sqrt(min(others, default=np.inf)), 0.5, sigma))
    level = [lightness[y, x] for x, y in points]
    matrix = np.eye(count)
    for i in range(count):
        for j in range(count):
            offset = points[i] - points[j]
            if i != j and keep[i] and keep[j] and np.all(np.abs(offset) <= radius):
                matrix[i, j] = kernel(np.sum(offset**2.0), level[i] - level[j], widths[j])
    residual = np.array([np.asarray(colors[k], np.float64) - ab_full[y, x] if keep[k] else [0, 0]
                         for k, (x, y) in enumerate(points)])
    weights = np.linalg.solve(matrix, residual)
    out = ab_full.copy()
    for j, (x0, y0) in enumerate(points):
        if not keep[j]:
            continue
        for y in range(max(0, y0 - radius), min(height, y0 + radius + 1)):
            for x in range(max(0, x0 - radius), min(width, x0 + radius + 1)):
                value = kernel((y - y0) ** 2 + (x - x0) ** 2, lightness[y, x] - level[j], widths[j])
                out[y, x] += value * weights[j]
    return out


def test_point_refinement_matches_a_pixel_by_pixel_reference():
    """`refine_at_points` adds the kernels' windows in place (no padded photo, no canvas): the
    float64 reference's answer, with windows cut by the photo's borders, points closer than a
    window, and a point repeated on one pixel (the last counts)."""
    rng = np.random.default_rng(5)
    height, width = 40, 56
    lightness = np.where(np.arange(width)[None] < 30, 40.0, 65.0) + rng.normal(0, 2, (height, width))
    ab_full = rng.uniform(-0.3, 0.3, (height, width, 2))
    points = np.array([[0, 0], [55, 39], [20, 10], [23, 12], [40, 38], [20, 10]], np.int32)
    colors = rng.uniform(-0.5, 0.5, (len(points), 2))
    colors[-1] = colors[2]
    cell = 3.5  # windows of R = 6 px
    out = hints.refine_at_points(ab_full.astype(np.float32), lightness.astype(np.float32), points,
                                 colors.astype(np.float32), cell).numpy()
    expected = _reference_refine(ab_full, lightness, points, colors, cell)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    for (x, y), chroma in zip(points, colors):
        np.testing.assert_allclose(out[y, x], chroma, atol=2e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_finish_with_the_correction_at_the_working_resolution(jit):
    """`finish_edit` takes the propagation's correction at its working resolution
    (`Propagation.correction(..., at_photo=False)`, as the edit session passes it) and resizes
    it to the photo itself: the image of the correction resized beforehand (`at_photo=True`,
    the previous path) within one uint8 level (float round-off: XLA's gathers against
    `tf.image.resize`), and the same with links (the second solve's correction too)."""
    from PIL import Image

    path = os.path.join(os.path.dirname(__file__), "data", "fullres", "sklearn_china.jpg")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    from tfgcrf import fullres

    lightness = fullres.prepare(rgb, 16)[0]
    propagation = hints.Propagation(lightness.numpy())
    assert propagation.work_shape != propagation.shape  # a reduced working resolution
    rng = np.random.default_rng(4)
    ab_small = tf.constant(rng.normal(0, 0.2, (1, 16, 16, 2)), tf.float32)
    points = np.array([[40, 30], [300, 200], [303, 201], [150, 120]], np.int32)
    chroma = rng.uniform(-0.4, 0.4, (4, 2)).astype(np.float32)
    links = np.array([[[20, 20], [350, 240]]], np.int32)
    small = propagation.correction(ab_small, points, chroma, at_photo=False)
    assert small.shape == propagation.work_shape + (2,) and small.dtype == np.float32
    at_photo = propagation.correction(ab_small, points, chroma)
    np.testing.assert_allclose(hints._to_photo(small, propagation.shape), at_photo, atol=1e-6)
    for links_px in (None, links):
        def finish(correction, at_photo_):
            return hints.finish_edit(
                ab_small, lightness, points, chroma, 16, jit=jit, links_px=links_px,
                correction=correction,
                correct=lambda p, c: tf.numpy_function(
                    lambda p_, c_: propagation.correction(ab_small, p_, c_, at_photo=at_photo_),
                    [p, c], tf.float32)).numpy().astype(int)

        new, old = finish(small, False), finish(at_photo, True)
        difference = np.abs(new - old).max(axis=-1)
        assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3, (
            difference.max(), np.mean(difference > 0))


def test_point_bounds_agree_with_the_pixel_each_point_names():
    # The pixel of a point is its nearest pixel center (`pixels_of`); the bounds check must agree,
    # or 511.5 on a 512 px wide photo passed and was clipped onto pixel 511.
    width, height = 512, 342
    inside = [(-0.5, 0), (-0.4, 3), (511.49, 341.49), (0, 0), (511, 341)]
    assert hints.pixels_of(hints.check_points(inside, width, height), width, height).tolist() == [
        [0, 0], [0, 3], [511, 341], [0, 0], [511, 341]]
    for outside in [(511.5, 10), (10, 341.5), (-0.51, 10), (10, -0.6), (512, 0)]:
        with pytest.raises(InputError, match=r"outside the 512x342 image \(x must be in 0\.\.511") as info:
            hints.check_points([outside], width, height)
        assert ("fractions round to the nearest pixel" in str(info.value)) == (outside != (512, 0))
