"""Independent float64 references of the G-CRF solve and its HOC gradients (numpy dense solves).

No TensorFlow: the tests and `benchmarks/gcrf_solvers.py` check the TF layers against these.
"""

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


def numpy_hoc_gradients(embeddings, temperature, unary, weights, target, ridge, scale=1.0):
    """float64 reference of the HOC step's L2 loss through S = row_softmax(tau E E^T), no diagonal.

    L = scale * sum_{b,p,k} (x - target)^2 with x the G-CRF answer of `numpy_gcrf`; the gradients
    are the analytic implicit ones, written independently of tfgcrf: g = A^{-1} dL/dx,
    dL/dS = (I - S)(g x^T + x g^T) (A = C^T C + diag, C = I - S), the softmax and E E^T chain rule,
    dL/dunary = weights * g.

    Args:
        embeddings: [B, P, D]; temperature: tau; unary, target: [B, P, K]; weights: [B, P].

    Returns:
        (loss, x [B, P, K], dL/dembeddings [B, P, D], dL/dunary [B, P, K]), float64.
    """
    embeddings, unary, weights, target = (
        np.asarray(a, np.float64) for a in (embeddings, unary, weights, target))
    loss, xs, d_embeddings, d_unary = 0.0, [], [], []
    for e, u, w, t in zip(embeddings, unary, weights, target):
        logits = temperature * e @ e.T
        np.fill_diagonal(logits, -np.inf)
        s = np.exp(logits - logits.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        complement = np.eye(len(w)) - s
        precision = complement.T @ complement + np.diag(w + ridge)
        x = np.linalg.solve(precision, w[:, None] * u)
        loss += scale * np.sum((x - t) ** 2)
        g = np.linalg.solve(precision, 2.0 * scale * (x - t))  # A is symmetric
        d_similarity = complement @ (g @ x.T + x @ g.T)
        d_logits = s * (d_similarity - np.sum(d_similarity * s, axis=-1, keepdims=True))
        xs.append(x)
        d_embeddings.append(temperature * (d_logits + d_logits.T) @ e)
        d_unary.append(w[:, None] * g)
    return loss, np.stack(xs), np.stack(d_embeddings), np.stack(d_unary)
