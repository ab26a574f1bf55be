"""Evaluation: the paper's metrics, the Levin et al. control baseline and `tfgcrf evaluate`."""
