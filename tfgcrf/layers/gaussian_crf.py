"""The fully connected Gaussian CRF of the paper (Eq. 6) and its solvers.

Inference solves, for every image of the batch,

    A x = weights * unary,   A = (I - S)^T (I - S) + diag(weights) + ridge * I,

where S [P, P] is the row-stochastic similarity of the structure branch, `weights` [P] is beta * h
(the per-pixel confidence of the unary colors `unary` [P, K]) and the K columns are the two chroma
channels of every sample: all of them share S and the weights, so each image is factored once (or
runs one batched conjugate-gradient loop) for all K columns.

Three solvers give the same answer:
  * "lu": `tf.linalg.lu` + `tf.linalg.lu_solve` on the dense A (the paper's method, the reference);
  * "cholesky": A is symmetric positive definite, so Cholesky gives the same x for about half the
    factorization flops;
  * "cg": matrix-free conjugate gradients; A is never formed, each iteration multiplies by S and
    S^T only, O(P^2 K) instead of O(P^3).

Gradients of all three are computed by implicit differentiation (`tf.custom_gradient`): with
g = A^{-1} dL/dx (one more solve with the same factors / the same CG operator),
    dL/dunary = weights * g,
    dL/dweights = sum_k g_k * (unary_k - x_k),
    dL/dS = (I - S) g x^T + (I - S) x g^T        (rank 2K, never a P^3 product).
TensorFlow 2.21 registers no gradient for the `Lu` op, so autodiff through `tf.linalg.lu` is not
available; the implicit gradient is also what makes the backward pass O(P^2 K).

Everything is plain TensorFlow (tf.while_loop for CG), usable in a SavedModel signature. `tf.linalg.lu`
has no XLA kernel: never `jit_compile` a function that calls the "lu" solver.
"""

import math
import sys

import keras
import tensorflow as tf

from tfgcrf.config import PRECONDITIONERS, SOLVERS
from tfgcrf.errors import UserError

# "two_level": aggregates of the coarse space per side of the (square, row-major) pixel grid, and
# how many times they are smoothed by S so that they follow the image's structure.
COARSE_GRID = 8
COARSE_SMOOTHING_STEPS = 2

# Why a ridge: S is row-stochastic, so (I - S) 1 = 0 and the constant color field is in the null
# space of (I - S)^T (I - S). With no revealed pixel (all weights 0) A would be singular; the ridge
# makes A symmetric positive definite always, keeps Cholesky from failing on float32 round-off in
# (I - S)^T (I - S) (about 1e-7 * ||I - S||^2 <= 5e-7, far below 1e-4), and bounds the condition
# number by about 4 / ridge. Its effect on the answer is a faint pull toward 0 (neutral gray chroma)
# for pixels that no revealed pixel reaches; with any revealed pixel of weight ~1 it is negligible.
DEFAULT_RIDGE = 1e-4
DEFAULT_CG_TOL = 1e-5
DEFAULT_CG_MAX_ITER = 500


def _solve_dtype(dtype):
    """float64 stays float64; everything else (including half precision) is solved in float32."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def transposed_product(similarity, v):
    """S^T v [B, P, K] for S [B, P, P], v [B, P, K], computed as (v^T S)^T.

    The [K, P] x [P, P] product streams S in memory order; `matmul(S, v, adjoint_a=True)` walks it
    across rows and took 2.1x the CPU time at 64 x 64 (benchmarks/train_throughput.py --solver).
    """
    return tf.linalg.matrix_transpose(tf.linalg.matmul(v, similarity, adjoint_a=True))


# Largest spread max - min of the log balance of a reversible S (see `reversible_balance`) for
# which the balanced products stay far from float32 overflow (e^60 ~ 1e26); beyond it (a
# temperature above ~60) the products fall back to `transposed_product`.
_MAX_BALANCE_SPREAD = 120.0


def reversible_balance(log_partition):
    """The balance [B, P, 1] of a reversible S from its rows' log partition functions [B, P].

    S = row_softmax(L) with L symmetric (`StructureBranch.similarity_of`) is reversible:
    S_ij Z_i = S_ji Z_j with Z_i = sum_j exp(L_ij), so S^T u = Z * (S (u / Z)) and every product
    of the G-CRF is a product with S itself (see `apply_precision`). Z is rescaled by
    exp(-(max + min) / 2) of log Z per image (the formula is invariant to a constant factor).
    An image whose log Z spreads over more than `_MAX_BALANCE_SPREAD` gets a zero balance, which
    makes `apply_precision` use `transposed_product` instead (exact, slower).
    """
    log_partition = tf.convert_to_tensor(log_partition)
    largest = tf.reduce_max(log_partition, axis=-1, keepdims=True)
    smallest = tf.reduce_min(log_partition, axis=-1, keepdims=True)
    balance = tf.exp(log_partition - 0.5 * (largest + smallest))
    usable = largest - smallest <= _MAX_BALANCE_SPREAD
    return tf.where(usable, balance, tf.zeros_like(balance))[..., None]


@tf.function(jit_compile=True, autograph=False)
def _balanced_smooth(similarity, balance, v):
    """(I - S)^T (I - S) v for a reversible S with balance Z: S^T u = Z * (S (u / Z)).

    XLA streams S at memory speed for a product with a few columns, TF's kernel does not: at
    64 x 64, batch 16, two such products took 0.108 CPU s vs 0.205 for S v and (u^T S)^T
    (benchmarks/train_throughput.py --compare).
    """
    residual = v - tf.linalg.matmul(similarity, v)
    return residual - balance * tf.linalg.matmul(similarity, residual / balance)


class LowRank:
    """A term `weight * V V^T` of A given by its vectors V `[B, P, r]` (never formed densely).

    The "same color" links of an edit (`tfgcrf.layers.edit_terms.link_vectors`, weight
    `LINK_WEIGHT`) as `extra` of `gcrf_solve`: "cg" multiplies by V twice (thin products) instead of
    by a dense [P, P] matrix, and its two-level coarse space also holds the positive and negative
    parts of every vector (for a link u = e_a - e_b: both ends' pixels), which a link couples
    strongly: 31 iterations instead of 64 for 3 points and a link (default preset, 64 x 64).
    The exact solvers form `weight * V V^T`.
    """

    def __init__(self, vectors, weight):
        self.vectors, self.weight = vectors, weight

    def dense(self):
        """`weight * V V^T` [B, P, P]."""
        return self.weight * tf.linalg.matmul(self.vectors, self.vectors, adjoint_b=True)

    def product(self, v):
        """`weight * V (V^T v)` for v [B, P, K]."""
        return self.weight * tf.linalg.matmul(
            self.vectors, tf.linalg.matmul(self.vectors, v, adjoint_a=True))

    def diagonal(self):
        return self.weight * tf.reduce_sum(tf.square(self.vectors), axis=-1)

    def map(self, function):
        """The same term with `function` applied to V (cast, slice, stop_gradient)."""
        return LowRank(function(self.vectors), self.weight)


def _extra_product(extra, v):
    return extra.product(v) if isinstance(extra, LowRank) else tf.linalg.matmul(extra, v)


def apply_precision(similarity, weights, ridge, v, extra=None, balance=None):
    """Matrix-free A @ v for v [B, P, K]: two products with S (S v, then S^T u), A never formed.

    `extra` (optional [B, P, P] or a `LowRank`, symmetric positive semi-definite) is added to A:
    the edit terms of `tfgcrf.layers.edit_terms` (local smoothness, links). `balance` (optional [B, P, 1], from
    `reversible_balance`) computes S^T u as balance * S (u / balance), both products with S in
    one XLA function (about 1.9x faster); None uses `transposed_product`.

    Bound by reading S from memory (P^2 floats per image, 64 MiB at 64 x 64) twice. A one-pass
    variant over row blocks of S measured no faster on this 2-core CPU once it was not shared.
    """
    def unbalanced():
        residual = v - tf.linalg.matmul(similarity, v)
        return residual - transposed_product(similarity, residual)

    if balance is None:
        smooth = unbalanced()
    else:
        smooth = tf.cond(tf.reduce_all(balance > 0),
                         lambda: _balanced_smooth(similarity, balance, v), unbalanced)
    if extra is not None:
        smooth += _extra_product(extra, v)
    return smooth + (weights + ridge)[..., None] * v


def precision_matrix(similarity, weights, ridge, extra=None):
    """The dense A [B, P, P] (O(P^3) to form), plus `extra` ([B, P, P] or `LowRank`) if given."""
    size = tf.shape(similarity)[-1]
    complement = tf.eye(size, dtype=similarity.dtype) - similarity
    gram = tf.linalg.matmul(complement, complement, adjoint_a=True)
    if extra is not None:
        gram += extra.dense() if isinstance(extra, LowRank) else extra
    return tf.linalg.set_diag(gram, tf.linalg.diag_part(gram) + weights + ridge)


def precision_diagonal(similarity, weights, ridge, block_rows=32, extra=None):
    """diag(A) [B, P] from S in O(P^2): sum_j (delta_ji - S_ji)^2 + weights + ridge.

    The column sums of S^2 are accumulated over blocks of rows, so the temporary is
    block_rows x P instead of a second P x P matrix (1 GiB per image at 128 x 128); blocks of 32
    rows stay in cache (0.6x the CPU time of 512-row blocks at 64 x 64, batch 16).
    """
    size = tf.shape(similarity)[-2]

    def add_block(start, energy):
        rows = similarity[:, start:start + block_rows, :]
        return start + block_rows, energy + tf.reduce_sum(tf.square(rows), axis=-2)

    # The loop's sum starts from the other terms instead of adding them to its result: that chain
    # of adds became one AddN that Grappler's memory optimizer turns into a per-step temporary
    # variable, alive while the loop runs; a call aborted then (a refused or cancelled served
    # edit) left it behind, and every later call of the function failed with ALREADY_EXISTS.
    other_terms = (1.0 + ridge) - 2.0 * tf.linalg.diag_part(similarity)
    _, diagonal = tf.while_loop(lambda start, _: start < size, add_block,
                                (tf.constant(0), other_terms + weights))
    if extra is None:
        return diagonal
    return diagonal + (extra.diagonal() if isinstance(extra, LowRank) else tf.linalg.diag_part(extra))


def coarse_space(similarity, grid=COARSE_GRID, smoothing_steps=COARSE_SMOOTHING_STEPS):
    """Orthonormal [B, P, m] basis of smoothed block aggregates (m = grid^2, or P if smaller).

    Pixels are grouped into grid x grid blocks of the square row-major pixel grid (into grid^2 runs
    of consecutive pixels when P is not a square); each block indicator is multiplied by S
    `smoothing_steps` times (smoothed aggregation: the aggregates spread along similar pixels) and
    the result orthonormalized (QR), so the coarse matrix Z^T A Z is well defined even for blocks
    that smoothing made nearly parallel.
    """
    pixels = similarity.shape[-1]
    side = math.isqrt(pixels) if pixels is not None else 0
    if smoothing_steps > 0 and side and side * side == pixels and side % grid == 0:
        # S times the block indicators = S's columns summed per block: one memory-bound pass over
        # S instead of a [P, P] x [P, m] product (the same sums, in another order).
        block = side // grid
        shape = tf.concat([tf.shape(similarity)[:-1], [grid, block, grid, block]], axis=0)
        basis = tf.reduce_sum(tf.reshape(similarity, shape), axis=[-3, -1])
        basis = tf.reshape(basis, tf.concat([tf.shape(similarity)[:-1], [grid * grid]], axis=0))
        smoothing_steps -= 1
    else:
        size = tf.shape(similarity)[-1]
        pixel = tf.range(size)
        side = tf.cast(tf.round(tf.sqrt(tf.cast(size, tf.float32))), tf.int32)
        block = (pixel // side * grid // side) * grid + pixel % side * grid // side
        run = pixel * grid * grid // size
        labels = tf.where(tf.equal(side * side, size), block, run)
        aggregates = tf.one_hot(labels, grid * grid, dtype=similarity.dtype)
        basis = tf.broadcast_to(aggregates, [tf.shape(similarity)[0], size, grid * grid])
    for _ in range(smoothing_steps):
        basis = tf.linalg.matmul(similarity, basis)
    return tf.linalg.qr(basis)[0]


def _constant(tensor):
    """The solvers' internals are constants for autodiff: their gradient is the implicit formula.

    Inside a differentiated tf.function every intermediate that the backward pass reuses (factors,
    the CG answer, the preconditioner) is exported and receives a zero gradient, which TensorFlow
    would push back through its producers: wasted O(P^3) work, a while-loop gradient with
    accumulators, a missing `Lu` gradient, or NaN from the QR of the two-level setup.
    """
    return tf.stop_gradient(tensor)


def _column_norm(v):
    return tf.norm(v, axis=-2, keepdims=True)


def _relative_residual(similarity, weights, ridge, rhs, x, extra=None, balance=None):
    """Per-image max over columns of ||rhs - A x|| / ||rhs|| (0 for an all-zero column)."""
    residual = _column_norm(rhs - apply_precision(similarity, weights, ridge, x, extra, balance))
    relative = tf.math.divide_no_nan(residual, _column_norm(rhs))
    return tf.reduce_max(relative, axis=[-2, -1])


class _DenseSolver:
    """Factor A once per image (LU or Cholesky); every solve reuses the factors."""

    def __init__(self, similarity, weights, ridge, method, extra=None):
        precision = precision_matrix(similarity, weights, ridge, extra)
        # Stopped at the factors too (see `_constant`): TF would otherwise look up the gradient of
        # the `Lu` op, which does not exist, for the zero gradients of the exported factors.
        if method == "lu":
            self._lu, self._perm = (_constant(t) for t in tf.linalg.lu(precision))
            diagonal = tf.linalg.diag_part(self._lu)
            # A is SPD, so det A > 0 and |det U| = det A whatever the pivot signs are.
            self.logdet = tf.reduce_sum(tf.math.log(tf.abs(diagonal)), axis=-1)
        else:
            self._chol = _constant(tf.linalg.cholesky(precision))
            diagonal = tf.linalg.diag_part(self._chol)
            self.logdet = 2.0 * tf.reduce_sum(tf.math.log(diagonal), axis=-1)
        self._method = method
        self._similarity, self._weights, self._ridge = similarity, weights, ridge
        self._extra = extra

    def _apply_inverse(self, rhs):
        if self._method == "lu":
            return tf.linalg.lu_solve(self._lu, self._perm, rhs)
        return tf.linalg.cholesky_solve(self._chol, rhs)

    def solve(self, rhs, initial=None):
        del initial  # exact solve: nothing to warm-start
        x = self._apply_inverse(rhs)
        batch = tf.shape(rhs)[0]
        info = {
            "iterations": tf.zeros([batch], tf.int32),
            "residual": _relative_residual(self._similarity, self._weights, self._ridge, rhs, x,
                                           self._extra),
            "converged": tf.ones([batch], tf.bool),
        }
        return x, info

    def inverse(self):
        """A^{-1} [B, P, P] (for the log-determinant gradient), from the same factors."""
        size = tf.shape(self._weights)[-1]
        batch = tf.shape(self._weights)[0]
        identity = tf.eye(size, batch_shape=[batch], dtype=self._weights.dtype)
        return self._apply_inverse(identity)


class _ConjugateGradientSolver:
    """Batched (preconditioned) conjugate gradients on all B*K columns at once, matrix-free."""

    def __init__(self, similarity, weights, ridge, tol, max_iter, preconditioner, extra=None,
                 balance=None):
        self._similarity, self._weights, self._ridge = similarity, weights, ridge
        self._extra, self._balance = extra, balance
        self._tol, self._max_iter = tol, max_iter
        self._inverse_diagonal, self._coarse = None, None
        if preconditioner in ("jacobi", "two_level"):
            self._inverse_diagonal = (
                1.0 / precision_diagonal(similarity, weights, ridge, extra=extra))[..., None]
        if preconditioner == "two_level":
            # Additive two-level preconditioner D^{-1} + Z (Z^T A Z)^{-1} Z^T: Jacobi damps the
            # rough error, the coarse solve the smooth error that sparse weights leave
            # (edits: ~5x fewer iterations), for a setup of one pass over S (block sums) and two
            # products of S with m columns (one more smoothing step, the coarse matrix).
            basis = coarse_space(similarity)
            if isinstance(extra, LowRank):  # both ends of every link (see `LowRank`)
                basis = tf.linalg.qr(tf.concat(
                    [basis, tf.nn.relu(extra.vectors), tf.nn.relu(-extra.vectors)], axis=-1))[0]
            self._coarse = (basis, tf.linalg.cholesky(self._coarse_matrix(basis)))

    def _coarse_matrix(self, basis):
        """Z^T A Z [B, m, m] as the Gram matrix of (I - S) Z: one product with S, not two."""
        smooth = basis - tf.linalg.matmul(self._similarity, basis)
        coarse = tf.linalg.matmul(smooth, smooth, adjoint_a=True) + tf.linalg.matmul(
            basis, (self._weights + self._ridge)[..., None] * basis, adjoint_a=True)
        if self._extra is not None:
            coarse += tf.linalg.matmul(basis, _extra_product(self._extra, basis), adjoint_a=True)
            coarse = 0.5 * (coarse + tf.linalg.adjoint(coarse))
        return coarse

    def _precondition(self, r):
        if self._inverse_diagonal is None:
            return r
        z = r * self._inverse_diagonal
        if self._coarse is not None:
            basis, chol = self._coarse
            projected = tf.linalg.matmul(basis, r, adjoint_a=True)
            z += tf.linalg.matmul(basis, tf.linalg.cholesky_solve(chol, projected))
        return z

    def _apply(self, v):
        return apply_precision(self._similarity, self._weights, self._ridge, v, self._extra,
                               self._balance)

    def _image(self, index):
        """The same solver restricted to image `index` (batch of one; slices share S's memory)."""
        view = object.__new__(_ConjugateGradientSolver)
        view.__dict__.update(self.__dict__)

        def pick(tensor):
            return None if tensor is None else tensor[index:index + 1]

        extra = (self._extra.map(pick) if isinstance(self._extra, LowRank)
                 else pick(self._extra))
        view._similarity, view._weights, view._extra, view._balance = (
            pick(self._similarity), pick(self._weights), extra, pick(self._balance))
        view._inverse_diagonal = pick(self._inverse_diagonal)
        view._coarse = None if self._coarse is None else tuple(pick(t) for t in self._coarse)
        return view

    def solve(self, rhs, initial=None, true_residual=True):
        """x [B, P, K] and info; `true_residual=False` reports CG's own (recurrence) residual
        instead of recomputing ||rhs - A x|| (saves one product with A; the gradient solve).

        Each image runs its own CG loop (`tf.map_fn`), so an image stops when its columns have
        converged instead of iterating until the slowest image of the batch has: the batch costs
        the sum of the images' iteration counts, not B times the largest.
        """
        if rhs.shape[0] == 1:
            return self._solve_batch(rhs, initial, true_residual)

        def solve_image(index):
            x, info = self._image(index)._solve_batch(
                rhs[index:index + 1], None if initial is None else initial[index:index + 1],
                true_residual)
            return x[0], info["iterations"][0], info["residual"][0], info["converged"][0]

        x, iterations, residual, converged = tf.map_fn(
            solve_image, tf.range(tf.shape(rhs)[0]),
            fn_output_signature=(tf.TensorSpec(rhs.shape[1:], rhs.dtype), tf.int32, rhs.dtype,
                                 tf.bool))
        return x, {"iterations": iterations, "residual": residual, "converged": converged}

    def _solve_batch(self, rhs, initial, true_residual):
        """One CG loop for the whole batch: runs until every column of every image converged."""
        rhs_norm = _column_norm(rhs)
        threshold = tf.cast(self._tol, rhs.dtype) * rhs_norm
        if initial is None:
            x, r = tf.zeros_like(rhs), rhs  # no product with A for the cold start
        else:
            # An all-zero right-hand side has the exact answer 0 whatever the warm start says.
            x = tf.where(rhs_norm > 0, tf.cast(initial, rhs.dtype), tf.zeros_like(rhs))
            r = rhs - self._apply(x)
        z = self._precondition(r)
        rz = tf.reduce_sum(r * z, axis=-2, keepdims=True)
        active = _column_norm(r) > threshold
        iterations = tf.zeros([tf.shape(rhs)[0]], tf.int32)

        def keep_going(x, r, p, rz, active, iterations):
            del x, r, p, rz, iterations
            return tf.reduce_any(active)

        def step(x, r, p, rz, active, iterations):
            ap = self._apply(p)
            curvature = tf.reduce_sum(p * ap, axis=-2, keepdims=True)
            # Finished columns take zero steps (no 0/0 once their residual is exactly zero).
            alpha = tf.where(active, tf.math.divide_no_nan(rz, curvature), tf.zeros_like(rz))
            x = x + alpha * p
            r = r - alpha * ap
            z = self._precondition(r)
            rz_next = tf.reduce_sum(r * z, axis=-2, keepdims=True)
            beta = tf.where(active, tf.math.divide_no_nan(rz_next, rz), tf.zeros_like(rz))
            iterations += tf.cast(tf.reduce_any(active, axis=[-2, -1]), tf.int32)
            return x, r, z + beta * p, rz_next, _column_norm(r) > threshold, iterations

        x, r, _, _, active, iterations = tf.while_loop(
            keep_going, step, (x, r, z, rz, active, iterations),
            maximum_iterations=self._max_iter)
        x = _constant(x)  # no gradient of the loop itself (see `_constant`)
        if true_residual:
            residual = _relative_residual(self._similarity, self._weights, self._ridge, rhs, x,
                                          self._extra, self._balance)
        else:
            residual = tf.reduce_max(tf.math.divide_no_nan(_column_norm(r), rhs_norm),
                                     axis=[-2, -1])
        converged = tf.logical_and(tf.logical_not(tf.reduce_any(active, axis=[-2, -1])),
                                   tf.math.is_finite(residual))
        return x, {"iterations": iterations, "residual": residual, "converged": converged}


def _warn_if_not_converged(info, what):
    """Print a warning (also from inside a SavedModel) when some image did not converge."""
    def warn():
        tf.print("tfgcrf: warning:", what, "did not reach the CG tolerance for",
                 tf.reduce_sum(tf.cast(tf.logical_not(info["converged"]), tf.int32)),
                 "image(s); relative residuals", info["residual"], "after", info["iterations"],
                 "iterations (raise cg_max_iter or use solver='cholesky')",
                 output_stream=sys.stderr)
        return tf.constant(True)

    return tf.cond(tf.reduce_all(info["converged"]), lambda: tf.constant(False), warn)


def _make_solver(similarity, weights, ridge, solver, cg_tol, cg_max_iter, preconditioner,
                 extra=None, balance=None):
    if solver == "cg":
        return _ConjugateGradientSolver(similarity, weights, ridge, cg_tol, cg_max_iter,
                                        preconditioner, extra, balance)
    return _DenseSolver(similarity, weights, ridge, solver, extra)


def _check_choice(name, value, choices):
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_shapes(similarity, unary, weights):
    """Static rank/size checks with one-line messages (dynamic sizes are checked by the ops)."""
    for name, tensor, rank in (("similarity", similarity, 3), ("unary", unary, 3),
                               ("weights", weights, 2)):
        if tensor.shape.rank is not None and tensor.shape.rank != rank:
            raise UserError(f"GaussianCRF: {name} must have rank {rank}, got shape {tensor.shape}")
    pixels = [similarity.shape[-1], similarity.shape[-2], unary.shape[-2], weights.shape[-1]]
    known = {p for p in pixels if p is not None}
    if len(known) > 1:
        raise UserError(f"GaussianCRF: pixel counts disagree: similarity {similarity.shape}, "
                        f"unary {unary.shape}, weights {weights.shape}")


def _prepare(similarity, unary, weights):
    similarity, unary, weights = (tf.convert_to_tensor(t) for t in (similarity, unary, weights))
    _check_shapes(similarity, unary, weights)
    dtype = _solve_dtype(similarity.dtype)
    return tf.cast(similarity, dtype), tf.cast(unary, dtype), tf.cast(weights, dtype)


def _solve_gradients(similarity, unary, weights, x, g):
    """Implicit-function gradients of x = A^{-1} (weights * unary), given g = A^{-1} dL/dx.

    dA = -g x^T (summed over columns) chained through A = (I - S)^T (I - S) + diag(weights):
    dL/dS = (I - S)(g x^T + x g^T), a rank-2K product; b = weights * unary gives the rest.
    """
    d_unary = weights[..., None] * g
    d_weights = tf.reduce_sum(g * (unary - x), axis=-1)
    smooth = tf.concat([g, x], axis=-1)
    smooth -= tf.linalg.matmul(similarity, smooth)  # [(I - S) g, (I - S) x]
    # One [P, 2K] x [2K, P] product writes the P x P gradient once (it is memory-bound).
    d_similarity = tf.linalg.matmul(smooth, tf.concat([x, g], axis=-1), adjoint_b=True)
    return d_similarity, d_unary, d_weights


def gcrf_solve(similarity, unary, weights, initial=None, *, solver="lu", ridge=DEFAULT_RIDGE,
               cg_tol=DEFAULT_CG_TOL, cg_max_iter=DEFAULT_CG_MAX_ITER, preconditioner="none",
               extra=None, log_partition=None):
    """Solves the G-CRF for all columns of `unary`, differentiably.

    Args:
      similarity: [B, P, P] row-stochastic similarity S.
      unary: [B, P, K] unary colors (K = 2 channels x N samples).
      weights: [B, P] per-pixel weights beta * h (>= 0, fractional allowed).
      initial: optional [B, P, K] warm start for "cg" (ignored by the exact solvers).
      solver: "lu", "cholesky" or "cg".
      ridge: eps of the eps * I term (see DEFAULT_RIDGE).
      cg_tol: CG stops when ||b - A x|| <= cg_tol * ||b|| for every column.
      cg_max_iter: CG iteration cap (forward and backward solve each).
      preconditioner: for "cg": "none", "jacobi" (diagonal of A, O(P^2) from S) or "two_level"
        (Jacobi plus a coarse solve on smoothed block aggregates, see `coarse_space`; pays off when
        few pixels are revealed, e.g. user edits).
      extra: optional [B, P, P] symmetric positive semi-definite matrix added to A (the edit
        terms of `tfgcrf.layers.edit_terms`: local smoothness, "same color" links), or a
        `LowRank` term weight * V V^T (links: "cg" never forms it). It is a constant for
        autodiff (no gradient flows into it).
      log_partition: optional [B, P] log Z_i of S's rows when S = row_softmax(L) with L
        symmetric (`StructureBranch.similarity_of(..., return_log_partition=True)`): "cg" then
        multiplies by S only (S^T u = Z * S (u / Z), see `reversible_balance`), about 1.9x
        faster per iteration; the answer is the same. A constant for autodiff; only valid for
        such an S (a wrong Z gives a wrong, non-symmetric operator).

    Returns:
      `(x, info)`: x [B, P, K] in float32 (float64 if `similarity` is float64) and info, a dict of
      [B] tensors: "iterations" (CG iterations, 0 for exact solvers), "residual" (max relative
      residual ||b - A x|| / ||b|| over the columns) and "converged". A CG run that does not reach
      the tolerance also prints a warning to stderr.
    """
    _check_choice("solver", solver, SOLVERS)
    _check_choice("preconditioner", preconditioner, PRECONDITIONERS)
    similarity, unary, weights = _prepare(similarity, unary, weights)
    if initial is not None:
        initial = tf.cast(initial, unary.dtype)
    if isinstance(extra, LowRank):
        extra = extra.map(lambda vectors: _constant(tf.cast(vectors, unary.dtype)))
    elif extra is not None:
        extra = _constant(tf.cast(extra, unary.dtype))
    balance = None
    if log_partition is not None and solver == "cg":
        balance = _constant(reversible_balance(tf.cast(log_partition, unary.dtype)))

    @tf.custom_gradient
    def solve(similarity, unary, weights):
        operator = _make_solver(_constant(similarity), _constant(weights), ridge, solver, cg_tol,
                                cg_max_iter, preconditioner, extra, balance)
        x, info = operator.solve(weights[..., None] * unary, initial)
        if solver == "cg":
            with tf.control_dependencies([_warn_if_not_converged(info, "G-CRF solve")]):
                x = tf.identity(x)

        def grad(dx, *unused_info_grads):
            if solver == "cg":
                g, back_info = operator.solve(dx, None, true_residual=False)
            else:
                g, back_info = operator.solve(dx, None)
            if solver == "cg":
                with tf.control_dependencies(
                        [_warn_if_not_converged(back_info, "G-CRF gradient solve")]):
                    g = tf.identity(g)
            return _solve_gradients(similarity, unary, weights, x, g)

        return (x, info), grad

    return solve(similarity, unary, weights)


def gaussian_nll(similarity, unary, weights, target, *, ridge=DEFAULT_RIDGE, solver="lu"):
    """Negative log-likelihood of `target` under the G-CRF Gaussian N(mu = A^{-1} b, A^{-1}).

    Per image, averaged over the P pixels and K columns:
        (1 / (P K)) sum_k [ 1/2 (t_k - mu_k)^T A (t_k - mu_k) - 1/2 log det A + P/2 log 2 pi ],
    with log det A from the LU (or Cholesky) factors that also give mu (one factorization).

    Args:
      similarity: [B, P, P] row-stochastic similarity S.
      unary: [B, P, K] unary colors.
      weights: [B, P] per-pixel weights beta * h.
      target: [B, P, K] ground-truth colors.
      ridge: eps of the eps * I term.
      solver: "lu" or "cholesky" (CG has no log-determinant).

    Returns:
      [B] per-image mean NLL, differentiable w.r.t. similarity, unary and weights.
    """
    _check_choice("gaussian_nll solver", solver, ("lu", "cholesky"))
    similarity, unary, weights = _prepare(similarity, unary, weights)
    target = tf.cast(target, unary.dtype)

    @tf.custom_gradient
    def solve_and_logdet(similarity, unary, weights):
        operator = _DenseSolver(_constant(similarity), _constant(weights), ridge, solver)
        mean, _ = operator.solve(weights[..., None] * unary)

        def grad(d_mean, d_logdet):
            g, _ = operator.solve(d_mean)
            # d logdet A / dA = A^{-1}; chained through A = (I - S)^T (I - S) + diag(weights).
            inverse = d_logdet[:, None, None] * operator.inverse()
            d_similarity, d_unary, d_weights = _solve_gradients(similarity, unary, weights, mean, g)
            d_similarity -= 2.0 * (inverse - tf.linalg.matmul(similarity, inverse))
            return d_similarity, d_unary, d_weights + tf.linalg.diag_part(inverse)

        return (mean, operator.logdet), grad

    mean, logdet = solve_and_logdet(similarity, unary, weights)
    error = target - mean
    # e^T A e = |(I - S) e|^2 + sum (weights + ridge) e^2, differentiable by plain autodiff.
    smooth_error = error - tf.linalg.matmul(similarity, error)
    quadratic = (tf.reduce_sum(tf.square(smooth_error), axis=[1, 2])
                 + tf.reduce_sum((weights + ridge)[..., None] * tf.square(error), axis=[1, 2]))
    pixels = tf.cast(tf.shape(unary)[1], unary.dtype)
    columns = tf.cast(tf.shape(unary)[2], unary.dtype)
    total = 0.5 * quadratic + columns * (0.5 * pixels * math.log(2.0 * math.pi) - 0.5 * logdet)
    return total / (pixels * columns)


@keras.saving.register_keras_serializable(package="tfgcrf")
class GaussianCRF(keras.layers.Layer):
    """Fully connected Gaussian CRF inference (paper Eq. 6) with a choice of solver.

    Solves ((I - S)^T (I - S) + diag(weights) + ridge I) x = weights * unary per image, with one
    factorization (or one batched CG run) shared by all K right-hand-side columns. Computes in the
    layer's dtype: float32 by default (also under a mixed-precision global policy), or float64
    with `dtype="float64"`.

    Args:
      solver: "lu" (reference, the paper's method), "cholesky" (same answer, faster factorization)
        or "cg" (matrix-free conjugate gradients, O(P^2 K) per iteration).
      ridge: eps of the eps * I term that keeps A positive definite when no pixel is revealed
        (S is row-stochastic, so constant fields are in the null space of (I - S)); see
        `DEFAULT_RIDGE` for the reasoning behind 1e-4.
      cg_tol: relative residual tolerance of "cg" (per column).
      cg_max_iter: iteration cap of "cg" (forward and gradient solve each).
      preconditioner: "none", "jacobi" or "two_level" for "cg" (see `gcrf_solve`).
      **kwargs: standard Keras layer arguments (name, dtype, ...).

    Call args:
      similarity: [B, P, P] row-stochastic S.
      unary: [B, P, K] unary colors alpha.
      weights: [B, P] per-pixel weights beta * h.
      initial: optional [B, P, K] warm start for "cg" (e.g. the previous edit's answer).
      extra: optional [B, P, P] symmetric positive semi-definite term added to A (edits' local
        smoothness and links, `tfgcrf.layers.edit_terms`), or a `LowRank` term; no gradient
        flows into it.
      log_partition: optional [B, P] log partition functions of S's rows, for a faster "cg"
        (see `gcrf_solve`).
      return_info: if True, return `(x, info)` with the per-image "iterations", "residual" and
        "converged" tensors (see `gcrf_solve`).

    Returns:
      x [B, P, K] (and info if `return_info`).
    """

    def __init__(self, solver="lu", ridge=DEFAULT_RIDGE, cg_tol=DEFAULT_CG_TOL,
                 cg_max_iter=DEFAULT_CG_MAX_ITER, preconditioner="none", **kwargs):
        # The solve needs at least float32 even under a mixed-precision global policy; pass
        # dtype="float64" for a float64 solve (Keras casts the inputs to the layer's dtype).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        _check_choice("solver", solver, SOLVERS)
        _check_choice("preconditioner", preconditioner, PRECONDITIONERS)
        if not ridge > 0:
            raise UserError(f"GaussianCRF: ridge must be > 0, got {ridge!r}")
        if not cg_tol > 0 or int(cg_max_iter) < 1:
            raise UserError(f"GaussianCRF: need cg_tol > 0 and cg_max_iter >= 1, "
                            f"got {cg_tol!r} and {cg_max_iter!r}")
        self.solver = solver
        self.ridge = float(ridge)
        self.cg_tol = float(cg_tol)
        self.cg_max_iter = int(cg_max_iter)
        self.preconditioner = preconditioner

    def call(self, similarity, unary, weights, initial=None, return_info=False, extra=None,
             log_partition=None):
        x, info = gcrf_solve(similarity, unary, weights, initial, solver=self.solver,
                             ridge=self.ridge, cg_tol=self.cg_tol, cg_max_iter=self.cg_max_iter,
                             preconditioner=self.preconditioner, extra=extra,
                             log_partition=log_partition)
        return (x, info) if return_info else x

    def gaussian_nll(self, similarity, unary, weights, target):
        """`gaussian_nll` with this layer's ridge; a "cg" layer uses Cholesky for it."""
        solver = "cholesky" if self.solver == "cg" else self.solver
        return gaussian_nll(similarity, unary, weights, target, ridge=self.ridge, solver=solver)

    def get_config(self):
        config = super().get_config()
        config.update(solver=self.solver, ridge=self.ridge, cg_tol=self.cg_tol,
                      cg_max_iter=self.cg_max_iter, preconditioner=self.preconditioner)
        return config
