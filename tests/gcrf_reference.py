"""The suite's independent float64 reference for the G-CRF solve (numpy dense solve)."""

import numpy as np


def numpy_gcrf(similarity, unary, weights, ridge, extra=None):
    """float64 reference: ((I - S)^T (I - S) + extra + diag(w) + ridge I) x = w * unary, per image."""
    similarity, unary, weights = (np.asarray(a, np.float64) for a in (similarity, unary, weights))
    if extra is None:
        extra = np.zeros_like(similarity)
    out = []
    for s, u, w, e in zip(similarity, unary, weights, np.asarray(extra, np.float64)):
        complement = np.eye(len(w)) - s
        precision = complement.T @ complement + e + np.diag(w + ridge)
        out.append(np.linalg.solve(precision, w[:, None] * u))
    return np.stack(out)
