"""Sparse direct solves of linear systems on a pixel grid whose rows couple each pixel to its 3x3
window (radius 1; radius 2: 5x5, the matting Laplacian's): Levin et al.'s colorization
(`tfgcrf.evaluation.levin`) and the full-resolution propagation of edits (`tfgcrf.hints`).

Both 3x3 systems are nonsingular M-matrices (free rows: a positive diagonal and non-positive
neighbour weights whose sum is at most the diagonal; hinted rows: the identity; every pixel
connected to every other), so their LU needs no pivoting (nor does the 5x5 matting system:
symmetric positive definite on the free pixels, the identity on the hinted ones). They are
factored in the nested-dissection order of `dissection_order` (George 1973; separators as wide as
the window's radius), on the full window pattern of the grid
(entries a system does not have, such as a hinted row's neighbours, are explicit zeros: the same
factors as the sparser system, and one pattern per grid shape).

Backend: Intel MKL PARDISO (Schenk & Gärtner 2004, a supernodal LU using dense BLAS kernels) via
the `pypardiso` package (the optional `tfgcrf[pardiso]` extra: MKL's wheels are about 800 MB
installed, x86-64 only; `make install` includes it), with the dissection order as its
fill-reducing permutation, sequential MKL. At 256x256 pixels it factors and solves one system in
about 0.09 CPU-s against 0.2 for SciPy's SuperLU in the same order (`benchmarks/evaluate_speed.py`,
README). Where `pypardiso` is not installed (or not the interface pinned below), and whenever
PARDISO's answer fails the residual check or reports a perturbed pivot, the system is solved by
SciPy's SuperLU in the same order instead: the answer is the same to round-off either way
(tests/grid_lu_test.py runs every case on both).
"""

import functools
import logging
import os
import threading
import weakref

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

logger = logging.getLogger("tfgcrf.grid_lu")

# A solution is accepted when every residual entry |b - A x| is at most this times
# max(1, max |x|, max |b|) (a backward-stable LU of these M-matrices leaves about 1e-15).
_RESIDUAL_TOLERANCE = 1e-9

# PARDISO control parameters (1-based, as in the MKL reference): user values (1), the caller's
# fill-reducing permutation (5: the dissection order), default iterative refinement (8: two steps
# only after a perturbed pivot), pivot perturbation 1e-13 (10), no scaling and no weighted
# matching (11, 13: the M-matrix needs neither), the improved two-level factorization (24: 10;
# 0.077 vs 0.11 CPU-s at 256^2), CSR input (12: 0), double precision (28: 0).
_IPARM = {1: 1, 5: 1, 8: 0, 10: 13, 11: 0, 12: 0, 13: 0, 24: 10, 28: 0}
_REAL_NONSYMMETRIC = 11
_REAL_SPD = 2


def dissection_order(height, width, leaf=4, separator=1):
    """A nested-dissection ordering of the pixels of a `height x width` grid (George 1973).

    The grid is split in two by `separator` rows or columns of pixels (with 3x3 windows one: the
    pixels on either side of a full row or column are not neighbours; with 5x5 windows two),
    recursively, until the blocks have at most `leaf * leaf` pixels; each block's pixels come
    first, its separator last.
    A sparse LU of the permuted system fills in O(n log n) entries instead of the O(n^1.5) of a
    general ordering: at 256x256 half the fill of SuperLU's COLAMD and about 2.5x less time.

    Returns:
      int64 `[height * width]` permutation of the row-major pixel indices.
    """
    return _dissection_order(int(height), int(width), int(leaf), int(separator)).copy()


@functools.lru_cache(maxsize=8)
def _dissection_order(height, width, leaf, separator=1):
    index = np.arange(height * width).reshape(height, width)
    parts = []
    stack = [(0, height, 0, width, False)]
    while stack:  # depth-first, left block, right block, then the separator
        top, bottom, left, right, is_separator = stack.pop()
        rows, cols = bottom - top, right - left
        if is_separator or rows * cols <= leaf * leaf or min(rows, cols) < 2 * separator + 1:
            parts.append(index[top:bottom, left:right].ravel())
        elif cols >= rows:
            middle = (left + right) // 2 - separator // 2
            end = middle + separator
            stack += [(top, bottom, middle, end, True), (top, bottom, end, right, False),
                      (top, bottom, left, middle, False)]
        else:
            middle = (top + bottom) // 2 - separator // 2
            end = middle + separator
            stack += [(middle, end, left, right, True), (end, bottom, left, right, False),
                      (top, middle, left, right, False)]
    return np.concatenate(parts)


class _Pattern:
    """The full (2 radius + 1)^2 window pattern of a `height x width` grid in row-major CSR, and
    the slot of every (pixel, window offset) entry in its data array; with `upper`, only the
    window offsets at or after the pixel's own (the upper triangle PARDISO takes of a symmetric
    matrix)."""

    def __init__(self, height, width, radius=1, upper=False):
        self.shape = (height, width)
        self.radius = radius
        self.upper = upper
        count = height * width
        y, x = np.divmod(np.arange(count), width)
        side = 2 * radius + 1
        slot = np.full((count, side * side), -1, np.int64)
        columns = []
        steps = range(-radius, radius + 1)
        for offset, (dy, dx) in enumerate((dy, dx) for dy in steps for dx in steps):
            inside = (y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
            if upper and (dy, dx) < (0, 0):
                inside[:] = False
            slot[inside, offset] = 0
            columns.append(np.where(inside, (y + dy) * width + x + dx, -1))
        # Offsets in (dy, dx) order are in increasing column order within each row: CSR order.
        columns = np.stack(columns, axis=1)
        present = slot == 0
        slot[present] = np.arange(int(present.sum()))
        self.slot = slot
        self.indices = columns[present].astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32)
        order = dissection_order(height, width, separator=radius)
        position = np.empty(count, np.int32)
        position[order] = np.arange(count, dtype=np.int32)
        self.order = order
        self.perm = position  # pixel i is row/column perm[i] of the permuted system
        self.rows = np.repeat(np.arange(count, dtype=np.int32), np.diff(self.indptr))
        self.diagonal = slot[:, (side * side) // 2]  # each pixel's diagonal entry

    def values(self, matrix):
        """The entries of `matrix` (scipy.sparse, row-major pixels, [P, P]) on the pattern:
        float64 `[nnz]`, explicit zeros where `matrix` has no entry (with `upper`, the entries
        below the diagonal are not read).

        Raises:
          ValueError: an entry outside some pixel's window, or a matrix of another size.
        """
        count = self.shape[0] * self.shape[1]
        if matrix.shape != (count, count):
            raise ValueError(f"a {self.shape[0]}x{self.shape[1]} grid needs a {count}x{count} "
                             f"system, got {matrix.shape}")
        # Straight from CSR (no COO copy, no sort): duplicates, if any, are summed in their
        # order by `bincount`, as `sum_duplicates` would (it was 40 % of a one-shot solve's time).
        entries = sparse.csr_matrix(matrix)
        rows = np.repeat(np.arange(count), np.diff(entries.indptr))
        width, radius = self.shape[1], self.radius
        row_y, row_x = np.divmod(rows, width)
        col_y, col_x = np.divmod(entries.indices, width)
        dy, dx = col_y - row_y, col_x - row_x
        if np.any(np.abs(dy) > radius) or np.any(np.abs(dx) > radius):
            side = 2 * radius + 1
            raise ValueError(f"the system couples pixels outside each other's {side}x{side} window")
        slots = self.slot[rows, (dy + radius) * (2 * radius + 1) + dx + radius]
        data = np.asarray(entries.data, np.float64)
        if self.upper:
            kept = slots >= 0
            slots, data = slots[kept], data[kept]
        return np.bincount(slots, weights=data, minlength=len(self.indices))


    def product(self, values, right):
        """`A @ right` for the matrix with these `values` on the pattern (with `upper`, the
        symmetric matrix whose upper triangle they are), `right` `[P, C]`."""
        matrix = self._csr(values)
        product = matrix @ right
        if self.upper:
            product += matrix.T @ right - values[self.diagonal][:, None] * right
        return product

    def _csr(self, values):
        """The pattern's entries as they are stored (with `upper`, the upper triangle only)."""
        count = self.perm.size
        return sparse.csr_matrix((values, self.indices, self.indptr), shape=(count, count))

    def matrix(self, values):
        """The whole scipy.sparse CSR matrix with these `values` on the pattern."""
        matrix = self._csr(values)
        if self.upper:
            matrix = (matrix + matrix.T - sparse.diags(values[self.diagonal])).tocsr()
        return matrix


@functools.lru_cache(maxsize=8)
def _pattern(height, width, radius=1, upper=False):
    return _Pattern(height, width, radius, upper)


@functools.lru_cache(maxsize=1)
def _pardiso_module():
    """`pypardiso` with MKL set to its sequential layer (one thread per caller: the evaluation
    runs Levin's solves in a background thread next to TensorFlow), or None where it is not
    installed, MKL cannot be loaded, or pypardiso lacks the calls `_Pardiso` makes.

    Two things here reach beyond pypardiso's documented surface, on purpose:
    - `_Pardiso` runs PARDISO's phases one by one (analysis 11 once per grid shape, then numeric
      22 and solve 33) through `PyPardisoSolver.set_phase` + `_call_pardiso`: the public
      `factorize`/`solve` always redo the analysis (phase 12/13), which would cost about half of
      the gain. pypardiso's own docstring (`remove_stored_factorization`) names `_call_pardiso`
      as the way to run a chosen phase. setup.cfg bounds pypardiso to 0.4.x and constraints.txt
      pins 0.4.7; if a version lacks these methods, SuperLU is used (logged once).
    - `MKL_Set_Threading_Layer(SEQUENTIAL)` is process-wide: it sets the threading of every MKL
      call made through `mkl_rt` in this process. Here only this module calls MKL (numpy/SciPy
      use OpenBLAS, TensorFlow its own oneDNN), and sequential PARDISO is both faster on the
      2-core machines measured and safe to call from several threads. An application that sets
      `MKL_THREADING_LAYER` in the environment keeps its choice: the call is skipped.
    """
    try:
        from importlib import metadata

        # pypardiso looks for MKL's runtime library by a recursive glob of the environment's lib
        # folders at every solver it creates (seconds in an environment with TensorFlow) unless
        # PYPARDISO_MKL_RT names it: the `mkl` wheel's own file list names it.
        library = [path for path in metadata.distribution("mkl").files or ()
                   if path.name.startswith("libmkl_rt.so")]
        if library:
            os.environ.setdefault("PYPARDISO_MKL_RT", str(library[0].locate()))
        import pypardiso
    except (ImportError, OSError):  # no package, or no loadable mkl_rt
        return None
    if not all(hasattr(pypardiso.PyPardisoSolver, name)
               for name in ("_call_pardiso", "set_phase", "set_iparm", "get_iparm", "free_memory")):
        logger.warning("pypardiso %s lacks the phase calls tfgcrf.grid_lu makes (tested with "
                       "0.4.7): sparse grid systems use SciPy's SuperLU",
                       getattr(pypardiso, "__version__", "?"))
        return None
    if "MKL_THREADING_LAYER" not in os.environ:
        pypardiso.ps.libmkl.MKL_Set_Threading_Layer(1)  # MKL_THREADING_SEQUENTIAL, before any call
    return pypardiso


class _Pardiso:
    """One PARDISO handle (its analysis of the grid's pattern, then one numeric factorization at
    a time), released with the object: LU of a general matrix, or Cholesky (L D L^T with
    positive pivots, mtype 2) of a symmetric positive definite one on an `upper` pattern."""

    def __init__(self, pattern):
        pypardiso = _pardiso_module()
        self.pattern = pattern
        from pypardiso.pardiso_wrapper import PyPardisoError  # a failed phase (error code)

        self._error = PyPardisoError
        self.solver = pypardiso.PyPardisoSolver(
            mtype=_REAL_SPD if pattern.upper else _REAL_NONSYMMETRIC)
        for key, value in _IPARM.items():
            self.solver.set_iparm(key, value)
        self.solver.perm = (pattern.order + 1).astype(np.int32)  # PARDISO: one-based, new -> old
        self._matrix = pattern._csr(np.zeros(len(pattern.indices)))
        self._call(11, np.zeros((pattern.perm.size, 1)))  # symbolic analysis, once
        weakref.finalize(self, _release, self.solver)

    def _call(self, phase, right):
        self.solver.set_phase(phase)
        return self.solver._call_pardiso(self._matrix, np.asfortranarray(right))

    def factor(self, values):
        """Numeric factorization of the pattern's matrix with these values; False when PARDISO
        perturbed a pivot or (Cholesky) found the matrix not positive definite: the answer
        would not be the system's."""
        self._matrix.data = values
        try:
            self._call(22, np.zeros((self.pattern.perm.size, 1)))
        except self._error:  # -4: a zero or negative pivot of a matrix said to be SPD
            return False
        return self.solver.get_iparm(14) == 0

    def solve(self, right):
        return self._call(33, right)


def _release(solver):
    solver.free_memory(everything=True)


_per_thread = threading.local()


def _thread_pardiso(pattern):
    """This thread's PARDISO handle for `pattern` (analysis reused by every one-shot solve of
    the same grid shape; the handle of another shape is released)."""
    cached = getattr(_per_thread, "pardiso", None)
    if cached is None or cached.pattern is not pattern:
        _per_thread.pardiso = None  # release the previous shape's factors first
        _per_thread.pardiso = _Pardiso(pattern)
    return _per_thread.pardiso


def _accepted(product, solution, right):
    """The residual check of the module docstring; `product` is A @ solution."""
    residual = right - product
    scale = max(1.0, float(np.max(np.abs(solution), initial=0.0)),
                float(np.max(np.abs(right), initial=0.0)))
    return bool(np.all(np.isfinite(solution))) and float(
        np.max(np.abs(residual), initial=0.0)) <= _RESIDUAL_TOLERANCE * scale


class _SuperLU:
    """SciPy's SuperLU of the system in the dissection order, without pivoting."""

    def __init__(self, matrix, pattern):
        self._order = pattern.order
        permuted = sparse.csc_matrix(matrix)[self._order][:, self._order]
        self._lu = sparse_linalg.splu(sparse.csc_matrix(permuted), permc_spec="NATURAL",
                                      diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))

    def solve(self, right):
        solution = np.empty_like(right)
        solution[self._order] = self._lu.solve(right[self._order])
        return solution


def _right_hand_side(right, count):
    right = np.asarray(right, np.float64)
    if right.ndim not in (1, 2) or right.shape[0] != count:
        raise ValueError(f"right-hand side must be [{count}] or [{count}, C], got {right.shape}")
    return right.reshape(count, -1)


def solve(matrix, shape, right, radius=1, symmetric=False):
    """Solves one grid system `matrix @ x = right` (factored once, used once).

    Args:
      matrix: scipy.sparse `[P, P]` float64, P = height * width, rows and columns the pixels in
        row-major order, nonzero only within each pixel's (2 radius + 1)^2 window; a nonsingular
        M-matrix (or any matrix whose LU in the dissection order needs no pivoting, e.g.
        symmetric positive definite).
      shape: `(height, width)` of the grid.
      right: `[P]` or `[P, C]` right-hand side(s).
      radius: the window's radius (1: 3x3, 2: 5x5).
      symmetric: the matrix is symmetric positive definite: PARDISO factors its upper triangle
        by Cholesky (about half the LU's time on the 5x5 matting systems at 256^2); the answer
        still has to pass the residual check against the whole matrix.

    Returns:
      float64 solution of `right`'s shape.

    Raises:
      ValueError: sizes that do not match, or entries outside the windows.
    """
    pattern = _pattern(*(int(side) for side in shape), int(radius), bool(symmetric))
    right_2d = _right_hand_side(right, pattern.perm.size)
    matrix = sparse.csr_matrix(matrix, dtype=np.float64)
    return _solve_values(pattern, pattern.values(matrix), right_2d, matrix).reshape(np.shape(right))


def _solve_values(pattern, values, right, matrix=None):
    """One solve of the system with these `values` on `pattern` (`matrix`: the same system as
    scipy.sparse, when the caller has it), `right` `[P, C]`; PARDISO, else SuperLU."""
    if _pardiso_module() is not None:
        pardiso = _thread_pardiso(pattern)
        if pardiso.factor(values):
            solution = pardiso.solve(right)
            product = (matrix @ solution if matrix is not None
                       else pattern.product(values, solution))
            if _accepted(product, solution, right):
                return solution
    matrix = pattern.matrix(values) if matrix is None else matrix
    return _SuperLU(matrix, pattern).solve(right)


class HintedSystems:
    """The systems of one grid matrix A0 under changing hint sets, each factored once and
    solved once: a hint set's system is A0 with the hinted pixels' rows replaced by the
    identity's (with `symmetric`, their columns too, which keeps it symmetric positive definite:
    the caller moves the hinted values' columns to the right-hand side). Levin et al.'s
    colorization and the matting propagation (`tfgcrf.hints.Propagation.solve`) of the
    evaluation's hint sets.

    The system's values are formed on the grid's window pattern from A0's (two gathers), not by
    sparse products and a new assembly per hint set (a quarter of a 256^2 matting solve's CPU).

    Args:
      matrix: A0 as in `solve`, nonzero diagonal not required.
      shape: `(height, width)` of the grid.
      radius: the window's radius, as in `solve`.
      symmetric: A0 is symmetric and every hinted system positive definite: Cholesky on the
        upper triangle, as in `solve`.

    Raises:
      ValueError: as in `solve`.
    """

    def __init__(self, matrix, shape, radius=1, symmetric=False):
        self._pattern = _pattern(*(int(side) for side in shape), int(radius), bool(symmetric))
        self._values = self._pattern.values(sparse.csr_matrix(matrix, dtype=np.float64))

    def solve(self, hinted, right):
        """The solution of the system of hint set `hinted` (int flat pixel indices).

        Args:
          hinted: `[K]` distinct flat (row-major) indices of the hinted pixels.
          right: `[P]` or `[P, C]` right-hand side(s) (at hinted rows: their values).

        Returns:
          float64 solution of `right`'s shape.
        """
        pattern = self._pattern
        right_2d = _right_hand_side(right, pattern.perm.size)
        free = np.ones(pattern.perm.size)
        free[hinted] = 0.0
        values = self._values * free[pattern.rows]
        if pattern.upper:
            values *= free[pattern.indices]
        values[pattern.diagonal[hinted]] = 1.0
        return _solve_values(pattern, values, right_2d).reshape(np.shape(right))


class GridLU:
    """A kept factorization of one grid system, for many right-hand sides (see `solve`).

    Owns its factors (a PARDISO handle of its own, or SuperLU's), so other solves do not touch
    them.

    Args:
      matrix: as in `solve`.
      shape: `(height, width)` of the grid.
      radius: the window's radius, as in `solve`.
      symmetric: as in `solve`.

    Raises:
      ValueError: as in `solve`.
    """

    def __init__(self, matrix, shape, radius=1, symmetric=False):
        self._pattern = _pattern(*(int(side) for side in shape), int(radius), bool(symmetric))
        self._matrix = sparse.csr_matrix(matrix, dtype=np.float64)
        values = self._pattern.values(self._matrix)
        self._factors = None
        if _pardiso_module() is not None:
            pardiso = _Pardiso(self._pattern)
            if pardiso.factor(values):
                self._factors = pardiso
        if self._factors is None:
            self._factors = _SuperLU(self._matrix, self._pattern)

    def solve(self, right):
        """`[P]` or `[P, C]` right-hand side(s) -> float64 solution of the same shape."""
        right_2d = _right_hand_side(right, self._pattern.perm.size)
        solution = self._factors.solve(right_2d)
        if isinstance(self._factors, _Pardiso) and not _accepted(self._matrix @ solution,
                                                                 solution, right_2d):
            self._factors = _SuperLU(self._matrix, self._pattern)
            solution = self._factors.solve(right_2d)
        return solution.reshape(np.shape(right))
