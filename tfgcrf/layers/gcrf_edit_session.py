"""Interactive G-CRF edits on one image: exact answers in O(P^2) per added point.

An edit session fixes the image (S) and the prior (the weak weight on a chosen sample's colors, or
none); user points only change a few diagonal entries of A and of the right-hand side. So the
session factors the prior system A0 = (I - S)^T (I - S) + diag(prior_weights) + ridge I once
(Cholesky, O(P^3)), and every solve applies the Woodbury identity for the point updates
A = A0 + U D U^T:

    x = y - G (I + D U^T G)^{-1} D U^T y,   G = A0^{-1} U,  y = A0^{-1} b,

where U selects the edited pixels. Columns of G are cached per pixel, so adding one point costs one
pair of triangular solves with one column plus O(P n K) work, instead of an O(P^3) factorization
or a few hundred CG iterations (sparse points leave A badly conditioned).
"""

import tensorflow as tf

from tfgcrf.errors import UserError
from tfgcrf.layers.gaussian_crf import DEFAULT_RIDGE, precision_matrix


class EditSession:
    """Exact G-CRF solves for a growing set of user points on one image.

    Args:
      similarity: [P, P] (or [1, P, P]) row-stochastic S of the image.
      prior_weights: optional [P] weights of the prior colors (e.g. a small weight on a chosen
        sample so that it is kept away from the points); default no prior.
      prior_unary: optional [P, K] prior colors (required with `prior_weights`).
      ridge: eps of the eps * I term, as in `GaussianCRF`.
    """

    def __init__(self, similarity, prior_weights=None, prior_unary=None, ridge=DEFAULT_RIDGE):
        similarity = tf.convert_to_tensor(similarity)
        if similarity.shape.rank == 3:
            similarity = similarity[0]
        size = similarity.shape[-1]
        dtype = similarity.dtype
        if (prior_weights is None) != (prior_unary is None):
            raise UserError("EditSession: give both prior_weights and prior_unary, or neither")
        self._prior_weights = (tf.zeros([size], dtype) if prior_weights is None
                               else tf.cast(prior_weights, dtype))
        precision = precision_matrix(similarity[None], self._prior_weights[None], ridge)[0]
        self._chol = tf.linalg.cholesky(precision)
        if prior_unary is None:
            self._prior_unary, self._prior_solution = None, None
        else:
            self._prior_unary = tf.cast(prior_unary, dtype)
            self._prior_solution = tf.linalg.cholesky_solve(
                self._chol, self._prior_weights[:, None] * self._prior_unary)
        self._size, self._dtype = size, dtype
        self._columns = {}  # pixel index -> A0^{-1} e_pixel, [P]

    def _green_columns(self, pixels):
        """G = A0^{-1} U [P, n], solving only for pixels not seen before (one batched solve)."""
        new = [p for p in pixels if p not in self._columns]
        if new:
            unit = tf.one_hot(new, self._size, dtype=self._dtype, axis=0)  # [P, len(new)]
            solved = tf.linalg.cholesky_solve(self._chol, unit)
            for i, pixel in enumerate(new):
                self._columns[pixel] = solved[:, i]
        return tf.stack([self._columns[p] for p in pixels], axis=1)

    def solve(self, pixels, colors, weight=5.0):
        """The G-CRF answer with user points on top of the prior.

        Args:
          pixels: sequence of flat pixel indices (y * W + x); a repeated pixel keeps its last color.
          colors: [n, K] colors of the points (K as in `prior_unary`, usually 2).
          weight: beta of the points (the paper uses 5 at test time).

        Returns:
          x [P, K].
        """
        colors = tf.cast(tf.convert_to_tensor(colors), self._dtype)
        latest = {}
        for i, pixel in enumerate(int(p) for p in pixels):
            if not 0 <= pixel < self._size:
                raise UserError(f"EditSession: pixel index {pixel} outside [0, {self._size})")
            latest[pixel] = i
        if not latest:
            if self._prior_solution is None:
                return tf.zeros([self._size, colors.shape[-1]], self._dtype)
            return self._prior_solution
        pixels = list(latest)
        colors = tf.gather(colors, list(latest.values()))
        green = self._green_columns(pixels)  # [P, n]
        prior_weights = tf.gather(self._prior_weights, pixels)
        delta = tf.cast(weight, self._dtype) - prior_weights  # [n]
        change = tf.cast(weight, self._dtype) * colors  # the points' part of b, minus the prior's
        solution = tf.linalg.matmul(green, change)
        if self._prior_unary is not None:
            change = prior_weights[:, None] * tf.gather(self._prior_unary, pixels)
            solution += self._prior_solution - tf.linalg.matmul(green, change)
        at_points = tf.gather(green, pixels)  # U^T G, [n, n]
        system = tf.eye(len(pixels), dtype=self._dtype) + delta[:, None] * at_points
        correction = tf.linalg.solve(system, delta[:, None] * tf.gather(solution, pixels))
        return solution - tf.linalg.matmul(green, correction)
