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

Point sets known before the session (the evaluation's nested hint sets) need no columns at all:
with `last=` the pixels are factored last, in an order where every such set is a trailing block
T of the factor A0 = R^T R, and a solve on T is a block elimination on the factor:
(R_TT^T R_TT + D) x_T = b_T - R_FT^T y_F with y = R^{-T} b, then x = R^{-1} [y_F; R_TT x_T]:
one small dense solve and one back substitution per channel, the same x as Woodbury's.

The session works in numpy/BLAS: A0 is formed as (I - S)^T (I - S) by one symmetric rank-k
product (`syrk`: the upper triangle only, half the flops of a full product) and factored A0 = U^T U
by LAPACK `potrf`; a new column is then two BLAS triangular matrix-vector solves on the cached
factor (memory-bound, a few ms at P = 4096), and the Woodbury correction is a few small matrix
products, without TensorFlow's per-op dispatch.
"""

import contextlib
import ctypes
import functools
import threading

import numpy as np
import tensorflow as tf
from scipy import linalg as scipy_linalg

from tfgcrf.errors import UserError
from tfgcrf.layers.edit_terms import LINK_WEIGHT
from tfgcrf.layers.gaussian_crf import DEFAULT_RIDGE


_BLAS = {"controller": None, "limiter": None, "depth": 0}  # the process's BLAS limit, shared
_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread():
    """Context in which numpy's and scipy's BLAS run on the calling thread only: the session's
    products are small ([P, n] by [n, m]), and OpenBLAS's worker threads wait for free cores when
    other processes load the machine (measured: a 4096x72 by 4096x80 product 0.5 ms on one thread,
    60 ms median and 570 ms worst with two at load 14).

    The limit is process-wide (threadpoolctl), so sessions in several threads share one: set by
    the first to enter, restored when the last leaves. Each thread restoring what it found left
    BLAS at 2 threads inside another thread's session (whose factor then depended on timing:
    OpenBLAS's Cholesky blocks by its thread count) and at 1 thread for good afterwards."""
    with _BLAS_LOCK:
        if _BLAS["controller"] is None:
            from threadpoolctl import ThreadpoolController  # only edit sessions need it

            _BLAS["controller"] = ThreadpoolController()
        if not _BLAS["depth"]:
            _BLAS["limiter"] = _BLAS["controller"].limit(limits=1, user_api="blas")
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if not _BLAS["depth"]:
                _BLAS["limiter"].restore_original_limits()
                _BLAS["limiter"] = None


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
        or a function returning them (called at the first use), kept as `self.affinity` for the
        link vectors.
      last: optional sequence of distinct flat pixel indices factored last, in this order: a
        later `solve` whose points (without links) are exactly the last n of them, for any n,
        is answered by block elimination instead of Woodbury columns (the same answer; nested
        point sets listed from the largest set's extra pixels to the smallest set's).
    """

    # Up to this many new columns are solved one by one (BLAS trsv); more at once (LAPACK trtrs).
    _VECTOR_SOLVES = 16

    def __init__(self, similarity, prior_weights=None, prior_unary=None, ridge=DEFAULT_RIDGE,
                 extra=None, point_weight=5.0, link_weight=LINK_WEIGHT, affinity=None,
                 last=None):
        self.point_weight, self.link_weight, self._affinity = point_weight, link_weight, affinity
        similarity = tf.convert_to_tensor(similarity)
        if similarity.shape.rank == 3:
            similarity = similarity[0]
        size = similarity.shape[-1]
        dtype = similarity.dtype
        if (prior_weights is None) != (prior_unary is None):
            raise UserError("EditSession: give both prior_weights and prior_unary, or neither")
        prior_weights = (tf.zeros([size], dtype) if prior_weights is None
                         else tf.cast(prior_weights, dtype))
        if extra is not None:
            extra = tf.cast(tf.convert_to_tensor(extra), dtype)
            extra = extra if extra.shape.rank == 3 else extra[None]
        self._size = size
        # The factor's pixel order (`last` at the end) and each pixel's place in it; every
        # vector inside the session is in the factor's order.
        self._order = _order(size, last)
        self._place = np.argsort(self._order)
        self._last = 0 if last is None else len(last)
        permuted = self._last > 0
        self._prior_weights = prior_weights.numpy()[self._order]
        if extra is not None:
            extra = extra[0].numpy()
            extra = extra[np.ix_(self._order, self._order)] if permuted else extra
        with one_blas_thread():
            self._upper = _factor(similarity.numpy(), self._prior_weights, ridge, extra,
                                  order=self._order if permuted else None)
        self._dtype = self._upper.dtype
        self._trsv = scipy_linalg.get_blas_funcs("trsv", (self._upper,))
        if prior_unary is None:
            self._prior_unary, self._prior_solution = None, None
        else:
            self._prior_unary = tf.cast(prior_unary, dtype).numpy()[self._order]
            self._prior_forward = self._triangular(self._prior_weights[:, None] * self._prior_unary,
                                                   trans=1)
            self._prior_solution = self._triangular(self._prior_forward, trans=0)
        self._override = None  # (prior colors, A0^{-1} (w * prior)) of the last `prior_unary`
        self._columns = {}  # pixel index -> A0^{-1} e_pixel, [P]
        self._link_columns = {}  # link key -> (u [P], A0^{-1} u [P])

    @property
    def affinity(self):
        """The image's [1, P, P] local affinities (made at the first use when given lazily)."""
        if callable(self._affinity):
            self._affinity = self._affinity()
        return self._affinity

    def _solve(self, right):
        """A0^{-1} right, `right` [P, m] (numpy, the factor's order)."""
        return self._triangular(self._triangular(right, trans=1), trans=0)

    def _triangular(self, right, trans):
        """R^{-T} right (`trans` 1) or R^{-1} right (0), `right` [P, m], A0 = R^T R."""
        right = np.asarray(right, self._dtype)
        if right.shape[1] <= self._VECTOR_SOLVES:
            columns = [self._trsv(self._upper, right[:, i], trans=trans) for i in range(right.shape[1])]
            return np.stack(columns, axis=1) if columns else right.copy()
        return scipy_linalg.solve_triangular(self._upper, right, trans=trans, check_finite=False)

    def _green_columns(self, pixels):
        """G = A0^{-1} U [P, n], solving only for pixels not seen before."""
        new = [p for p in pixels if p not in self._columns]
        if new:
            unit = np.zeros([self._size, len(new)], self._dtype)
            unit[new, np.arange(len(new))] = 1.0
            solved = self._solve(unit)
            for i, pixel in enumerate(new):
                self._columns[pixel] = solved[:, i]
        return self._stack([self._columns[p] for p in pixels])

    def _link_green(self, links):
        """(U [P, J], A0^{-1} U [P, J]) of `links` {key: u [P]}, solving only for new keys."""
        new = [key for key in links if key not in self._link_columns]
        if new:
            vectors = np.stack([np.asarray(links[key], self._dtype) for key in new], axis=1)
            solved = self._solve(vectors)
            for i, key in enumerate(new):
                self._link_columns[key] = (vectors[:, i], solved[:, i])
        pairs = [self._link_columns[key] for key in links]
        return self._stack([u for u, _ in pairs]), self._stack([g for _, g in pairs])

    def _stack(self, columns):
        """Columns `[P]` -> `[P, n]` (n may be 0)."""
        if not columns:
            return np.zeros([self._size, 0], self._dtype)
        return np.stack(columns, axis=1)

    def forget_link(self, key):
        """Drops the cached column of a link that will not come back."""
        self._link_columns.pop(key, None)

    def solve(self, pixels, colors, weight=None, links=None, link_weight=None, prior_unary=None):
        """The G-CRF answer with user points (and links) on top of the prior.

        Args:
          pixels: sequence of flat pixel indices (y * W + x); a repeated pixel keeps its last color.
          colors: [n, K] colors of the points (K as in `prior_unary`, usually 2).
          weight: beta of the points (default `point_weight`).
          links: optional {key: u [P]} link vectors (`edit_terms.link_vectors`); the key (any
            hashable, e.g. the link's id) caches A0^{-1} u across calls.
          link_weight: the weight of every link (default `self.link_weight`).
          prior_unary: optional [P, K] prior colors for this solve instead of the session's (e.g.
            the decoder's colors of a latent fitted to these points,
            `GCRFBackbone.hint_prior`); the prior weights, hence A0 and its factor, stay. Costs
            one more solve with A0 (two triangular solves per channel), cached for the last one.

        Returns:
          x [P, K] (a tensor of the similarity's dtype).
        """
        places = []
        for pixel in (int(p) for p in pixels):
            if not 0 <= pixel < self._size:
                raise UserError(f"EditSession: pixel index {pixel} outside [0, {self._size})")
            places.append(int(self._place[pixel]))
        links = {key: np.asarray(u)[self._order] for key, u in (links or {}).items()}
        with one_blas_thread():
            x = self._woodbury(places, colors, weight, links, link_weight, prior_unary)
        return tf.constant(x[self._place])

    def _prior(self, prior_unary):
        """`(prior colors [P, K], A0^{-1} (w * prior), R^{-T} (w * prior))` (each [P, K], the
        factor's order): the session's or `prior_unary`'s (pixel order); Nones without a prior."""
        if prior_unary is None:
            if self._prior_unary is None:
                return None, None, None
            return self._prior_unary, self._prior_solution, self._prior_forward
        if self._prior_unary is None:
            raise UserError("EditSession: prior_unary needs a session made with prior weights")
        prior_unary = np.asarray(prior_unary, self._dtype).reshape(self._prior_unary.shape)
        cached = self._override
        if cached is None or not np.array_equal(cached[0], prior_unary):
            forward = self._triangular(self._prior_weights[:, None] * prior_unary[self._order], 1)
            cached = self._override = (prior_unary, prior_unary[self._order],
                                       self._triangular(forward, 0), forward)
        return cached[1:]

    def _woodbury(self, pixels, colors, weight, links, link_weight, prior_unary=None):
        weight = self.point_weight if weight is None else weight
        link_weight = self.link_weight if link_weight is None else link_weight
        colors = np.asarray(colors, self._dtype)
        latest = {pixel: i for i, pixel in enumerate(pixels)}  # places in the factor's order
        prior_unary, prior_solution, prior_forward = self._prior(prior_unary)
        channels = colors.shape[-1] if prior_unary is None else prior_unary.shape[-1]
        solution = (np.zeros([self._size, channels], self._dtype) if prior_solution is None
                    else prior_solution)
        if not latest and not links:
            return solution
        first = self._size - len(latest)
        if not links and len(latest) <= self._last and min(latest) == first:  # the last n
            return self._eliminate(colors[[latest[p] for p in range(first, self._size)]], weight,
                                   prior_unary, prior_forward, channels)
        pixels = list(latest)
        green = self._green_columns(pixels)  # [P, n]
        delta = np.zeros([0], self._dtype)
        if pixels:
            colors = colors[list(latest.values())]
            prior_weights = self._prior_weights[pixels]
            delta = (weight - prior_weights).astype(self._dtype)  # [n]
            change = weight * colors  # the points' part of b
            if prior_unary is not None:
                change -= prior_weights[:, None] * prior_unary[pixels]
            solution = solution + green @ change.astype(self._dtype)
        vectors, link_green = self._link_green(links)
        # Woodbury with the columns V = [e_pixels, u_links] and D = diag(delta, link_weight).
        columns = np.concatenate([green, link_green], axis=1)
        delta = np.concatenate([delta, np.full([len(links)], link_weight, self._dtype)])
        projected = np.concatenate([columns[pixels], vectors.T @ columns])  # V^T G [n+J, n+J]
        values = np.concatenate([solution[pixels], vectors.T @ solution])
        system = np.eye(len(delta), dtype=self._dtype) + delta[:, None] * projected
        correction = np.linalg.solve(system, delta[:, None] * values)
        return solution - columns @ correction.astype(self._dtype)

    def _eliminate(self, colors, weight, prior_unary, prior_forward, channels):
        """The answer for points on the factor's last n pixels (colors [n, K] in that order) by
        block elimination on R (module docstring): no Woodbury column."""
        first = self._size - len(colors)
        block = np.triu(self._upper[first:, first:])  # R_TT (potrf leaves the lower part as is)
        prior_weights = self._prior_weights[first:]
        right = weight * colors  # b_T
        forward = np.zeros([first, channels], self._dtype)  # y_F = R_FF^{-T} b_F
        if prior_unary is not None:  # b_F = (w * prior)_F; at the points the prior is replaced
            forward = prior_forward[:first]
            right = right - self._upper[:first, first:].T @ forward
        system = block.T @ block
        system[np.diag_indices_from(system)] += weight - prior_weights
        tail = np.linalg.solve(system, right.astype(self._dtype))
        x = self._triangular(np.concatenate([forward, block @ tail]), trans=0)
        x[first:] = tail
        return x


def _order(size, last):
    """int [P]: the pixels `0..size-1` not in `last`, in order, then `last` (distinct)."""
    last = np.asarray([] if last is None else last, np.int64).reshape(-1)
    if len(set(last.tolist())) != len(last) or np.any((last < 0) | (last >= size)):
        raise UserError(f"EditSession: last must hold distinct pixel indices in [0, {size})")
    rest = np.ones(size, bool)
    rest[last] = False
    return np.concatenate([np.flatnonzero(rest), last])


@functools.lru_cache(maxsize=None)
def _potrf(dtype):
    """LAPACK `spotrf`/`dpotrf` of SciPy's own LAPACK (its public `scipy.linalg.cython_lapack`
    table), called through ctypes, which releases the GIL during the call: SciPy's f2py wrapper
    (`get_lapack_funcs("potrf")`) holds it, and `numpy.linalg.cholesky` (which releases it) took
    3.4x the CPU at 4096^2 (copies, and a slower kernel).

    Returns:
      `potrf(matrix)`: factors the Fortran-ordered square `matrix` in place (upper triangle,
      A = U^T U) and returns LAPACK's `info` (0: done; > 0: not positive definite).
    """
    from scipy.linalg import cython_lapack

    names = {np.dtype(np.float32): "spotrf", np.dtype(np.float64): "dpotrf"}
    if np.dtype(dtype) not in names:  # the buffer is handed to LAPACK as this type: no other
        raise TypeError(f"EditSession factors float32 or float64 systems, not {dtype}")
    name = names[np.dtype(dtype)]
    capsule = cython_lapack.__pyx_capi__[name]
    # Prototypes of our own (not by setting `ctypes.pythonapi.PyCapsule_*.restype`, which is
    # shared with every other user of ctypes.pythonapi in the process).
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    integer = ctypes.POINTER(ctypes.c_int)
    # void potrf(char *uplo, int *n, T *a, int *lda, int *info) (scipy/linalg/cython_lapack.pxd)
    function = ctypes.CFUNCTYPE(None, ctypes.c_char_p, integer, ctypes.c_void_p, integer,
                                integer)(get_pointer(capsule, get_name(capsule)))

    def potrf(matrix):
        size, info = ctypes.c_int(matrix.shape[0]), ctypes.c_int(0)
        function(b"U", ctypes.byref(size), matrix.ctypes.data, ctypes.byref(size),
                 ctypes.byref(info))
        return info.value

    return potrf


def _factor(similarity, prior_weights, ridge, extra=None, order=None):
    """The Cholesky factor U (upper triangular, Fortran order) of the prior system.

    A0 = (I - S)^T (I - S) + extra + diag(prior_weights) + ridge I = U^T U, formed by one
    symmetric rank-k product of I - S (numpy's matmul of a matrix with its own transpose calls
    BLAS `syrk` and mirrors the triangle) and factored by LAPACK `potrf` (`_potrf`) in place
    (the matrix of `tfgcrf.layers.gaussian_crf.precision_matrix`, in half its flops). Both run
    without the GIL (SciPy's f2py `syrk`/`potrf` hold it): the evaluation runs two images in
    threads (`harness.IMAGES_IN_FLIGHT`), and a factorization holding the GIL for over a second
    stalls the other image's Python work. With `order` (a permutation [P]), A0 is factored with
    its rows and columns in that order: (I - S)^T (I - S) needs only the columns of I - S
    permuted.

    Args:
      similarity: numpy [P, P] S (float32 or float64); prior_weights [P] and extra (optional
      numpy [P, P] symmetric) in `order`; ridge: float; order: optional int [P].

    Returns:
      numpy [P, P] U of S's dtype (Fortran order); only its upper triangle is meaningful.

    Raises:
      UserError: A0 is not positive definite (the Cholesky factorization failed).
    """
    if order is None:
        complement = np.negative(np.ascontiguousarray(similarity))
        complement[np.diag_indices_from(complement)] += 1.0
    else:  # I - S with its columns in `order`
        complement = np.take(similarity, order, axis=1)
        np.negative(complement, out=complement)
        complement[order, np.arange(len(order))] += 1.0
    gram = complement.T @ complement  # (I - S)^T (I - S), symmetric (syrk)
    del complement
    if extra is not None:
        gram += np.asarray(extra, gram.dtype)
    gram[np.diag_indices_from(gram)] += np.asarray(prior_weights, gram.dtype) + ridge
    upper = gram.T  # symmetric: the same matrix, Fortran-ordered
    info = _potrf(upper.dtype)(upper)
    if info != 0:
        raise UserError(f"EditSession: the edit system is not positive definite (LAPACK potrf "
                        f"info {info}); use a larger ridge")
    return upper
