"""The suite's independent float64 reference for the G-CRF solve (numpy dense solve)."""

import numpy as np


def numpy_gcrf(similarity, unary, weights, ridge):
    """float64 reference: ((I - S)^T (I - S) + diag(w) + ridge I) x = w * unary, image by image."""
    similarity, unary, weights = (np.asarray(a, np.float64) for a in (similarity, unary, weights))
    out = []
    for s, u, w in zip(similarity, unary, weights):
        complement = np.eye(len(w)) - s
        precision = complement.T @ complement + np.diag(w + ridge)
        out.append(np.linalg.solve(precision, w[:, None] * u))
    return np.stack(out)
