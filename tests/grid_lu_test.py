"""`tfgcrf.grid_lu`: sparse LU of 3x3-stencil grid systems (MKL PARDISO, SciPy SuperLU fallback)
against a dense float64 `np.linalg.solve`."""

import platform
import threading
from unittest import mock

import numpy as np
import pytest
from scipy import sparse

from tfgcrf import grid_lu

SHAPES = [(1, 1), (1, 7), (2, 2), (3, 5), (17, 23), (9, 50)]


def _m_matrix(shape, seed, hinted_fraction=0.1, diagonal_extra=0.0):
    """A random system of the solver's kind: free rows 1 + extra on the diagonal and random
    3x3-window weights summing to -1, hinted rows the identity (row-major pixels), CSR."""
    rng = np.random.default_rng(seed)
    height, width = shape
    count = height * width
    y, x = np.divmod(np.arange(count), width)
    hinted = rng.uniform(size=count) < hinted_fraction
    hinted[rng.integers(count)] = True  # at least one: nonsingular when no extra
    rows, cols, values = [], [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inside = (y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
            if (dy, dx) == (0, 0):
                continue
            use = inside & ~hinted
            rows.append(np.flatnonzero(use))
            cols.append(((y + dy) * width + x + dx)[use])
            values.append(-rng.uniform(0.01, 1.0, int(use.sum())))
    weights = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows),
                                                           np.concatenate(cols))),
                                shape=(count, count))
    row_sums = np.asarray(-weights.sum(axis=1)).ravel()
    weights = sparse.diags(1.0 / np.where(row_sums > 0, row_sums, 1.0)) @ weights
    diagonal = np.where(hinted, 1.0, 1.0 + diagonal_extra)
    return (sparse.diags(diagonal) + weights).tocsr()


def _reference(matrix, right):
    return np.linalg.solve(matrix.toarray(), right)


@pytest.fixture(params=["pardiso", "superlu"])
def backend(request):
    """Runs a test with each backend: PARDISO where installed, SuperLU with pypardiso hidden."""
    if request.param == "pardiso":
        if grid_lu._pardiso_module() is None:
            pytest.skip("pypardiso is not installed on this platform")
        yield "pardiso"
    else:
        with mock.patch.object(grid_lu, "_pardiso_module", return_value=None):
            yield "superlu"


def test_pardiso_is_installed_where_mkl_has_wheels():
    """pypardiso is the optional `pardiso` extra, which the `dev` extra (the tests' environment,
    `make install`) includes on x86-64: CI runs the PARDISO path, not only the fallback."""
    if platform.machine() in ("x86_64", "AMD64"):
        assert grid_lu._pardiso_module() is not None, "pip install -e '.[dev,pardiso]'"


def test_a_plain_install_gives_the_same_answers_by_superlu():
    """Without the extra (pypardiso hidden from the import) every solve goes to SuperLU, with the
    answers PARDISO gives where it is installed, on a real Levin et al. system (3 hint sets)."""
    from tfgcrf.evaluation import control, levin

    rng = np.random.default_rng(11)
    luminance = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (40, 40)), axis=1), 0, 1)
    corners = rng.integers(0, 40 - control.PATCH_SIZE + 1, (12, 2))
    colors = rng.uniform(-0.3, 0.3, (12, 2))
    answers = {}
    for name, hidden in (("superlu", True), ("pardiso", False)):
        with mock.patch.dict("sys.modules", {"pypardiso": None} if hidden else {}):
            grid_lu._pardiso_module.cache_clear()
            try:
                if name == "pardiso" and grid_lu._pardiso_module() is None:
                    continue
                assert (grid_lu._pardiso_module() is None) == hidden
                propagation = levin.Propagation(luminance)
                answers[name] = [
                    propagation.colorize(*control.hint_image(corners[:n], colors[:n], 40))
                    for n in (2, 5, 12)]
            finally:
                grid_lu._pardiso_module.cache_clear()
    for name, result in answers.items():
        for n, ab in zip((2, 5, 12), result):
            mask, hint_ab = control.hint_image(corners[:n], colors[:n], 40)
            np.testing.assert_allclose(ab[mask], hint_ab[mask], atol=1e-9)
    if "pardiso" in answers:
        for ab_superlu, ab_pardiso in zip(answers["superlu"], answers["pardiso"]):
            np.testing.assert_allclose(ab_superlu, ab_pardiso, atol=1e-9)


def test_a_pypardiso_without_the_phase_calls_is_not_used():
    """grid_lu runs PARDISO's phases through pypardiso 0.4's `_call_pardiso`; a version without
    it means SuperLU (with a warning), not an AttributeError mid-evaluation."""
    class Changed:
        def __init__(self, *args, **kwargs):
            pass

    fake = mock.MagicMock(PyPardisoSolver=Changed, __version__="9.9")
    with mock.patch.dict("sys.modules", {"pypardiso": fake}):
        grid_lu._pardiso_module.cache_clear()
        try:
            assert grid_lu._pardiso_module() is None
            matrix = _m_matrix((6, 7), 12)
            right = np.random.default_rng(12).uniform(-1, 1, (42, 2))
            np.testing.assert_allclose(grid_lu.solve(matrix, (6, 7), right),
                                       _reference(matrix, right), atol=1e-10)
        finally:
            grid_lu._pardiso_module.cache_clear()
    fake.ps.libmkl.MKL_Set_Threading_Layer.assert_not_called()


@pytest.mark.parametrize("shape", SHAPES)
def test_solve_and_kept_factors_match_a_dense_float64_solve(shape, backend):
    count = shape[0] * shape[1]
    for seed, extra in ((0, 0.0), (1, 1e-3)):
        matrix = _m_matrix(shape, seed + sum(shape), diagonal_extra=extra)
        right = np.random.default_rng(seed).uniform(-1, 1, (count, 2))
        expected = _reference(matrix, right)
        np.testing.assert_allclose(grid_lu.solve(matrix, shape, right), expected, atol=1e-10)
        factors = grid_lu.GridLU(matrix, shape)
        np.testing.assert_allclose(factors.solve(right), expected, atol=1e-10)
        vector = factors.solve(right[:, 0])  # one right-hand side keeps its shape
        assert vector.shape == (count,)
        np.testing.assert_allclose(vector, expected[:, 0], atol=1e-10)


def test_an_ill_conditioned_system_of_few_hints(backend):
    """Levin et al.'s system with one hinted pixel (its worst case: the solution is that pixel's
    value everywhere, the matrix nearly singular)."""
    shape = (30, 34)
    matrix = _m_matrix(shape, 3, hinted_fraction=0.0)
    right = np.zeros((30 * 34, 2))
    hinted = np.flatnonzero(np.asarray((matrix != 0).sum(axis=1)).ravel() == 1)
    right[hinted] = [0.7, -0.2]
    solution = grid_lu.solve(matrix, shape, right)
    np.testing.assert_allclose(solution, _reference(matrix, right), atol=1e-9)
    np.testing.assert_allclose(solution, np.broadcast_to([0.7, -0.2], solution.shape), atol=1e-9)


def test_kept_factors_are_not_touched_by_later_solves_of_the_same_shape(backend):
    shape = (17, 23)
    first = _m_matrix(shape, 4)
    right = np.random.default_rng(4).uniform(-1, 1, (17 * 23, 2))
    factors = grid_lu.GridLU(first, shape)
    for seed in (5, 6):  # one-shot solves of other systems on the same grid, in between
        other = _m_matrix(shape, seed)
        np.testing.assert_allclose(grid_lu.solve(other, shape, right), _reference(other, right),
                                   atol=1e-10)
    np.testing.assert_allclose(factors.solve(right), _reference(first, right), atol=1e-10)


def test_solves_from_two_threads_at_once(backend):
    """The evaluation solves Levin's systems in a background thread next to the propagation."""
    shape = (20, 25)
    systems = [_m_matrix(shape, seed) for seed in range(6)]
    right = np.random.default_rng(7).uniform(-1, 1, (20 * 25, 2))
    results, errors = {}, []

    def work(name, indices):
        try:
            for index in indices:
                results[index] = grid_lu.solve(systems[index], shape, right)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name, indices))
               for name, indices in (("a", [0, 2, 4]), ("b", [1, 3, 5]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index, matrix in enumerate(systems):
        np.testing.assert_allclose(results[index], _reference(matrix, right), atol=1e-10)


def test_a_rejected_pardiso_answer_falls_back_to_superlu():
    if grid_lu._pardiso_module() is None:
        pytest.skip("pypardiso is not installed on this platform")
    shape = (9, 11)
    matrix = _m_matrix(shape, 8)
    right = np.random.default_rng(8).uniform(-1, 1, (99, 2))
    expected = _reference(matrix, right)
    wrong = mock.patch.object(grid_lu._Pardiso, "solve", lambda self, r: np.zeros_like(r))
    with wrong:
        np.testing.assert_allclose(grid_lu.solve(matrix, shape, right), expected, atol=1e-10)
        np.testing.assert_allclose(grid_lu.GridLU(matrix, shape).solve(right), expected,
                                   atol=1e-10)
    with mock.patch.object(grid_lu._Pardiso, "factor", return_value=False):  # perturbed pivot
        np.testing.assert_allclose(grid_lu.solve(matrix, shape, right), expected, atol=1e-10)
        np.testing.assert_allclose(grid_lu.GridLU(matrix, shape).solve(right), expected,
                                   atol=1e-10)


def test_bad_inputs_raise():
    matrix = _m_matrix((4, 5), 9)
    with pytest.raises(ValueError, match=r"5x5 grid needs a 25x25 system, got \(20, 20\)"):
        grid_lu.solve(matrix, (5, 5), np.zeros(25))
    with pytest.raises(ValueError, match=r"right-hand side must be \[20\]"):
        grid_lu.solve(matrix, (4, 5), np.zeros(21))
    far = matrix.tolil()
    far[0, 12] = -0.1  # pixel (0, 0) coupled to (2, 2)
    with pytest.raises(ValueError, match="3x3 window"):
        grid_lu.solve(far.tocsr(), (4, 5), np.zeros(20))
    wrapped = matrix.tolil()
    wrapped[4, 5] = -0.1  # (0, 4) and (1, 0): adjacent indices, not adjacent pixels
    with pytest.raises(ValueError, match="3x3 window"):
        grid_lu.GridLU(wrapped.tocsr(), (4, 5))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 2), (3, 5), (17, 23), (64, 64), (31, 90)])
def test_dissection_order_is_a_permutation_with_separators_last(shape):
    height, width = shape
    order = grid_lu.dissection_order(height, width)
    np.testing.assert_array_equal(np.sort(order), np.arange(height * width))
    if height * width > 16:
        # The last pixels form the top separator: a full middle column (or row) of the grid.
        side = height if width >= height else width
        last = order[-side:]
        rows, cols = last // width, last % width
        assert len(set(cols)) == 1 or len(set(rows)) == 1


@pytest.mark.parametrize("shape", [(3, 5), (17, 23), (64, 64), (31, 90)])
def test_dissection_order_with_wide_separators(shape):
    """Separators of two rows/columns (5x5 stencils): a permutation whose last pixels are two
    full middle columns (or rows); width 1 is the default order."""
    height, width = shape
    order = grid_lu.dissection_order(height, width, separator=2)
    np.testing.assert_array_equal(np.sort(order), np.arange(height * width))
    np.testing.assert_array_equal(grid_lu.dissection_order(height, width, separator=1),
                                  grid_lu.dissection_order(height, width))
    if height * width > 16:
        side = height if width >= height else width
        last = order[-2 * side:]
        rows, cols = last // width, last % width
        assert len(set(cols)) == 2 or len(set(rows)) == 2


def test_a_five_by_five_system_matches_a_dense_solve():
    """radius 2 (the matting Laplacian's 5x5 windows): `solve` and `GridLU` against a dense
    float64 solve of a symmetric positive definite system; entries beyond the window refused."""
    height, width = 9, 13
    system = _spd_five_by_five((height, width), 4)
    right = np.random.default_rng(4).normal(size=(height * width, 2))
    expected = np.linalg.solve(system, right)
    matrix = sparse.csr_matrix(system)
    np.testing.assert_allclose(grid_lu.solve(matrix, (height, width), right, radius=2), expected,
                               atol=1e-10)
    np.testing.assert_allclose(grid_lu.GridLU(matrix, (height, width), radius=2).solve(right),
                               expected, atol=1e-10)
    with pytest.raises(ValueError, match="3x3 window"):
        grid_lu.solve(matrix, (height, width), right)



def _spd_five_by_five(shape, seed, shift=0.1):
    """A random symmetric 5x5-window system, diagonally dominant by `shift` (SPD when > 0)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    count = height * width
    y, x = np.divmod(np.arange(count), width)
    near = (np.abs(y[:, None] - y[None]) <= 2) & (np.abs(x[:, None] - x[None]) <= 2)
    base = np.where(near, rng.uniform(0, 1, (count, count)), 0.0)
    system = np.where(near, -(base + base.T) / 2, 0.0)
    np.fill_diagonal(system, 0.0)
    np.fill_diagonal(system, -system.sum(axis=1) + shift)
    return system


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 13), (20, 17)])
def test_symmetric_solves_match_a_dense_solve(shape, backend):
    """`symmetric=True` (PARDISO's Cholesky of the upper triangle) against a dense float64 solve;
    the one-shot and the kept factors, radius 2 and radius 1."""
    system = _spd_five_by_five(shape, sum(shape))
    right = np.random.default_rng(1).normal(size=(system.shape[0], 2))
    expected = np.linalg.solve(system, right)
    matrix = sparse.csr_matrix(system)
    np.testing.assert_allclose(grid_lu.solve(matrix, shape, right, radius=2, symmetric=True),
                               expected, atol=1e-10)
    kept = grid_lu.GridLU(matrix, shape, radius=2, symmetric=True)
    np.testing.assert_allclose(kept.solve(right), expected, atol=1e-10)
    y, x = np.divmod(np.arange(system.shape[0]), shape[1])
    near = (np.abs(y[:, None] - y[None]) <= 1) & (np.abs(x[:, None] - x[None]) <= 1)
    three = np.where(near, system, 0.0)
    np.fill_diagonal(three, np.abs(three).sum(axis=1))  # still SPD: diagonally dominant
    np.testing.assert_allclose(
        grid_lu.solve(sparse.csr_matrix(three), shape, right, symmetric=True),
        np.linalg.solve(three, right), atol=1e-10)


def test_a_symmetric_solve_of_a_matrix_that_is_not_positive_definite_falls_back():
    """An indefinite (or unsymmetric) matrix passed as symmetric: PARDISO's Cholesky refuses it
    or its answer fails the residual check against the whole matrix; SuperLU answers instead."""
    shape = (9, 13)
    indefinite = _spd_five_by_five(shape, 3, shift=-0.5)
    right = np.random.default_rng(2).normal(size=(indefinite.shape[0], 2))
    unsymmetric = _spd_five_by_five(shape, 4)
    count = unsymmetric.shape[0]
    right_neighbour = np.flatnonzero(np.arange(count) % shape[1] < shape[1] - 1)
    unsymmetric[right_neighbour, right_neighbour + 1] += 0.05  # the lower triangle is not read
    for system in (indefinite, unsymmetric):
        expected = np.linalg.solve(system, right)
        matrix = sparse.csr_matrix(system)
        np.testing.assert_allclose(grid_lu.solve(matrix, shape, right, radius=2, symmetric=True),
                                   expected, atol=1e-8)
        np.testing.assert_allclose(
            grid_lu.GridLU(matrix, shape, radius=2, symmetric=True).solve(right), expected,
            atol=1e-8)


def _hinted_reference(system, hinted, right, symmetric):
    """Dense float64: the hinted rows (and, `symmetric`, columns) replaced by the identity's."""
    dense = np.array(system, np.float64)
    dense[hinted] = 0.0
    if symmetric:
        dense[:, hinted] = 0.0
    dense[hinted, hinted] = 1.0
    return np.linalg.solve(dense, right)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 13), (20, 17)])
def test_hinted_systems_match_a_dense_solve_of_each_hint_set(shape, backend):
    """`HintedSystems`: every hint set's system formed on the pattern from A0's values, against
    a dense float64 solve of A0 with the hinted rows (symmetric: rows and columns) replaced;
    the 3x3 M-matrix (Levin et al.'s kind, LU) and the 5x5 SPD matrix (the matting kind,
    Cholesky), hint sets of several sizes in turn on one object, [P] and [P, C] right sides."""
    count = shape[0] * shape[1]
    rng = np.random.default_rng(sum(shape))
    levin_kind = _m_matrix(shape, sum(shape), hinted_fraction=0.0, diagonal_extra=1e-3)
    matting_kind = _spd_five_by_five(shape, sum(shape))
    for system, radius, symmetric in ((levin_kind.toarray(), 1, False),
                                      (matting_kind, 2, True)):
        systems = grid_lu.HintedSystems(sparse.csr_matrix(system), shape, radius=radius,
                                        symmetric=symmetric)
        for size in sorted({1, max(1, count // 7), max(1, count // 2)}):
            hinted = rng.choice(count, size, replace=False)
            right = rng.normal(size=(count, 2))
            np.testing.assert_allclose(systems.solve(hinted, right),
                                       _hinted_reference(system, hinted, right, symmetric),
                                       atol=1e-10)
            np.testing.assert_allclose(systems.solve(hinted, right[:, 0]),
                                       _hinted_reference(system, hinted, right[:, 0], symmetric),
                                       atol=1e-10)
        if count > 1:  # A0 (no hint) itself: nonsingular here
            right = rng.normal(size=(count, 1))
            np.testing.assert_allclose(systems.solve(np.array([], int), right),
                                       np.linalg.solve(system, right), atol=1e-10)


def test_a_rejected_pardiso_answer_of_a_hinted_system_falls_back_to_superlu():
    """The residual check of a hinted system (computed from the pattern's values, upper
    triangle mirrored) rejects a wrong PARDISO answer: SuperLU answers."""
    if grid_lu._pardiso_module() is None:
        pytest.skip("pypardiso is not installed on this platform")
    shape = (9, 13)
    system = _spd_five_by_five(shape, 5)
    hinted = np.array([3, 40, 41, 90])
    right = np.random.default_rng(5).normal(size=(system.shape[0], 2))
    expected = _hinted_reference(system, hinted, right, True)
    systems = grid_lu.HintedSystems(sparse.csr_matrix(system), shape, radius=2, symmetric=True)
    wrong = mock.patch.object(grid_lu._Pardiso, "solve", lambda self, r: np.zeros_like(r))
    with wrong:
        np.testing.assert_allclose(systems.solve(hinted, right), expected, atol=1e-10)
    # A right answer passes the check (rows and the mirrored upper triangle): no fallback.
    with mock.patch.object(grid_lu, "_SuperLU", side_effect=AssertionError("fell back")):
        np.testing.assert_allclose(systems.solve(hinted, right), expected, atol=1e-10)
        levin_kind = _m_matrix(shape, 6, hinted_fraction=0.0, diagonal_extra=1e-3)
        np.testing.assert_allclose(
            grid_lu.HintedSystems(levin_kind, shape).solve(hinted, right),
            _hinted_reference(levin_kind.toarray(), hinted, right, False), atol=1e-10)
