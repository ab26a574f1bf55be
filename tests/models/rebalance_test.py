"""Class rebalancing of the VAE loss: bins, weights and the weighted reconstruction."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfgcrf.config import ModelConfig, TrainingConfig
from tfgcrf.errors import UserError
from tfgcrf.models import GCRFColorizer, stage_losses
from tfgcrf.models.rebalance import (
    BINS_PER_AXIS,
    ab_bins,
    ab_histogram,
    rebalancing_weights,
)


def test_bins_follow_ten_unit_cells():
    ab = np.array([[-110.0, -110.0], [-100.1, 0.0], [0.0, 9.99], [109.9, 130.0]]) / 110.0
    expected = [0 * 22 + 0, 0 * 22 + 11, 11 * 22 + 11, 21 * 22 + 21]
    np.testing.assert_array_equal(ab_bins(tf.constant(ab, tf.float32)).numpy(), expected)


def _scipy_weights(counts, lam):
    from scipy.ndimage import gaussian_filter

    smoothed = gaussian_filter(counts.reshape(22, 22), sigma=0.5, mode="constant", truncate=3.0)
    present = smoothed > 1e-12 * smoothed.sum()
    p = smoothed[present] / smoothed[present].sum()
    w = 1.0 / ((1 - lam) * p + lam / present.sum())
    out = np.ones((22, 22))
    out[present] = w / (p * w).sum()
    return out


def test_weights_match_scipy_and_are_normalized():
    rng = np.random.default_rng(0)
    counts = np.zeros(BINS_PER_AXIS**2)
    counts[rng.integers(150, 330, 40)] = rng.integers(1, 1000, 40)
    for lam in (0.0, 0.5):
        weights = rebalancing_weights(counts, lam)
        np.testing.assert_allclose(weights, _scipy_weights(counts, lam), rtol=1e-5)
    np.testing.assert_allclose(rebalancing_weights(counts, 1.0), 1.0, rtol=1e-6)
    weights = rebalancing_weights(counts, 0.5).ravel()
    # Rare colors weigh more than frequent ones.
    assert weights[np.argmax(counts)] < weights[counts > 0].max()
    with pytest.raises(ValueError, match="non-empty"):
        rebalancing_weights(np.zeros(BINS_PER_AXIS**2), 0.5)


def test_histogram_counts_every_pixel():
    ab = tf.constant([[[[0.0, 0.0], [0.5, -0.5]]]], tf.float32)  # [1, 1, 2, 2]
    data = tf.data.Dataset.from_tensors((tf.zeros([1, 1, 2, 1]), ab)).repeat(3)
    counts = ab_histogram(data)
    assert counts.sum() == 6 and counts[11 * 22 + 11] == 3


def test_weighted_reconstruction_matches_hand_computation():
    config = ModelConfig(image_size=16, latent_dim=4, embed_dim=4, num_components=2,
                         trunk_widths=(4, 8), encoder_widths=(4, 8), decoder_widths=(8, 4),
                         structure_width=4, mdn_hidden=8)
    model = GCRFColorizer(config, training=TrainingConfig(rebalance_lambda=0.5))
    ab = tf.random.stateless_uniform([2, 16, 16, 2], seed=[1, 2], minval=-0.5, maxval=0.5)
    predicted = tf.zeros_like(ab)
    with pytest.raises(UserError, match="set_color_weights"):
        model._pixel_weights(ab)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, (22, 22)).astype(np.float32)
    model.set_color_weights(weights)
    value = stage_losses.color_nll(predicted, ab, model.training_config.recon_sigma,
                                   model._pixel_weights(ab)).numpy()
    bins = ab_bins(ab).numpy()
    expected = (weights.ravel()[bins][..., None] * ab.numpy() ** 2).sum(axis=(1, 2, 3)).mean()
    assert value == pytest.approx(expected / (2 * 0.1**2), rel=1e-5)
    plain = GCRFColorizer(config, training=TrainingConfig(rebalance_lambda=1.0))
    assert plain._pixel_weights(ab) is None
