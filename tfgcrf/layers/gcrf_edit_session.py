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

The session also takes the edit terms of `tfgcrf.layers.edit_terms`: a fixed `extra` matrix (local
smoothness) goes into A0, and "same color" links are more Woodbury columns: a link adds
link_weight u u^T to A, so it is the column u with d = link_weight (G = A0^{-1} u cached per link).
"""

import tensorflow as tf

from tfgcrf.errors import UserError
from tfgcrf.layers.edit_terms import LINK_WEIGHT
from tfgcrf.layers.gaussian_crf import DEFAULT_RIDGE, precision_matrix


class EditSession:
    """Exact G-CRF solves for a changing set of user points (and links) on one image.

    Args:
      similarity: [P, P] (or [1, P, P]) row-stochastic S of the image.
      prior_weights: optional [P] weights of the prior colors (e.g. a small weight on a chosen
        sample so that it is kept away from the points); default no prior.
      prior_unary: optional [P, K] prior colors (required with `prior_weights`).
      ridge: eps of the eps * I term, as in `GaussianCRF`.
      extra: optional [P, P] (or [1, P, P]) symmetric positive semi-definite matrix added to A0
        (`tfgcrf.layers.edit_terms.edit_precision` without links: local smoothness).
      point_weight: default beta of the points in `solve` (the paper uses 5 at test time).
      link_weight: default weight of every link in `solve`.
      affinity: optional [1, P, P] local affinities of the image (`edit_terms.affinity_matrix`),
        kept as `self.affinity` for the link vectors.
    """

    def __init__(self, similarity, prior_weights=None, prior_unary=None, ridge=DEFAULT_RIDGE,
                 extra=None, point_weight=5.0, link_weight=LINK_WEIGHT, affinity=None):
        self.point_weight, self.link_weight, self.affinity = point_weight, link_weight, affinity
        similarity = tf.convert_to_tensor(similarity)
        if similarity.shape.rank == 3:
            similarity = similarity[0]
        size = similarity.shape[-1]
        dtype = similarity.dtype
        if (prior_weights is None) != (prior_unary is None):
            raise UserError("EditSession: give both prior_weights and prior_unary, or neither")
        self._prior_weights = (tf.zeros([size], dtype) if prior_weights is None
                               else tf.cast(prior_weights, dtype))
        if extra is not None:
            extra = tf.cast(tf.convert_to_tensor(extra), dtype)
            extra = extra if extra.shape.rank == 3 else extra[None]
        precision = precision_matrix(similarity[None], self._prior_weights[None], ridge, extra)[0]
        self._chol = tf.linalg.cholesky(precision)
        if prior_unary is None:
            self._prior_unary, self._prior_solution = None, None
        else:
            self._prior_unary = tf.cast(prior_unary, dtype)
            self._prior_solution = tf.linalg.cholesky_solve(
                self._chol, self._prior_weights[:, None] * self._prior_unary)
        self._size, self._dtype = size, dtype
        self._columns = {}  # pixel index -> A0^{-1} e_pixel, [P]
        self._link_columns = {}  # link key -> (u [P], A0^{-1} u [P])

    def _green_columns(self, pixels):
        """G = A0^{-1} U [P, n], solving only for pixels not seen before (one batched solve)."""
        new = [p for p in pixels if p not in self._columns]
        if new:
            unit = tf.one_hot(new, self._size, dtype=self._dtype, axis=0)  # [P, len(new)]
            solved = tf.linalg.cholesky_solve(self._chol, unit)
            for i, pixel in enumerate(new):
                self._columns[pixel] = solved[:, i]
        if not pixels:
            return tf.zeros([self._size, 0], self._dtype)
        return tf.stack([self._columns[p] for p in pixels], axis=1)

    def _link_green(self, links):
        """(U [P, J], A0^{-1} U [P, J]) of `links` {key: u [P]}, solving only for new keys."""
        new = [key for key in links if key not in self._link_columns]
        if new:
            vectors = tf.stack([tf.cast(links[key], self._dtype) for key in new], axis=1)
            solved = tf.linalg.cholesky_solve(self._chol, vectors)
            for i, key in enumerate(new):
                self._link_columns[key] = (vectors[:, i], solved[:, i])
        if not links:
            empty = tf.zeros([self._size, 0], self._dtype)
            return empty, empty
        pairs = [self._link_columns[key] for key in links]
        return (tf.stack([u for u, _ in pairs], axis=1), tf.stack([g for _, g in pairs], axis=1))

    def forget_link(self, key):
        """Drops the cached column of a link that will not come back."""
        self._link_columns.pop(key, None)

    def solve(self, pixels, colors, weight=None, links=None, link_weight=None):
        """The G-CRF answer with user points (and links) on top of the prior.

        Args:
          pixels: sequence of flat pixel indices (y * W + x); a repeated pixel keeps its last color.
          colors: [n, K] colors of the points (K as in `prior_unary`, usually 2).
          weight: beta of the points (default `point_weight`).
          links: optional {key: u [P]} link vectors (`edit_terms.link_vectors`); the key (any
            hashable, e.g. the link's id) caches A0^{-1} u across calls.
          link_weight: the weight of every link (default `self.link_weight`).

        Returns:
          x [P, K].
        """
        weight = self.point_weight if weight is None else weight
        link_weight = self.link_weight if link_weight is None else link_weight
        colors = tf.cast(tf.convert_to_tensor(colors), self._dtype)
        latest = {}
        for i, pixel in enumerate(int(p) for p in pixels):
            if not 0 <= pixel < self._size:
                raise UserError(f"EditSession: pixel index {pixel} outside [0, {self._size})")
            latest[pixel] = i
        links = links or {}
        channels = colors.shape[-1] if self._prior_unary is None else self._prior_unary.shape[-1]
        if not latest and not links:
            if self._prior_solution is None:
                return tf.zeros([self._size, channels], self._dtype)
            return self._prior_solution
        pixels = list(latest)
        green = self._green_columns(pixels)  # [P, n]
        indices = tf.constant(pixels, tf.int32, shape=[len(pixels)])
        solution = (tf.zeros([self._size, channels], self._dtype) if self._prior_solution is None
                    else self._prior_solution)
        delta = tf.zeros([0], self._dtype)
        if pixels:
            colors = tf.gather(colors, list(latest.values()))
            prior_weights = tf.gather(self._prior_weights, indices)
            delta = tf.cast(weight, self._dtype) - prior_weights  # [n]
            change = tf.cast(weight, self._dtype) * colors  # the points' part of b
            if self._prior_unary is not None:
                change -= prior_weights[:, None] * tf.gather(self._prior_unary, indices)
            solution += tf.linalg.matmul(green, change)
        vectors, link_green = self._link_green(links)
        # Woodbury with the columns V = [e_pixels, u_links] and D = diag(delta, link_weight).
        columns = tf.concat([green, link_green], axis=1)
        delta = tf.concat([delta, tf.fill([len(links)], tf.cast(link_weight, self._dtype))], 0)
        at_points = tf.gather(columns, indices)  # e_p^T G
        at_links = tf.linalg.matmul(vectors, columns, adjoint_a=True)  # u^T G
        projected = tf.concat([at_points, at_links], axis=0)  # V^T G, [n + J, n + J]
        values = tf.concat([tf.gather(solution, indices),
                            tf.linalg.matmul(vectors, solution, adjoint_a=True)], axis=0)
        system = tf.eye(len(pixels) + len(links), dtype=self._dtype) + delta[:, None] * projected
        correction = tf.linalg.solve(system, delta[:, None] * values)
        return solution - tf.linalg.matmul(columns, correction)
