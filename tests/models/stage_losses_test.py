"""The training stages' loss terms against numpy float64."""

import numpy as np
import pytest
import tensorflow as tf

from tfgcrf.models import stage_losses

RNG = np.random.default_rng(0)


def test_color_nll_is_the_per_image_weighted_squared_error():
    predicted, target = RNG.normal(size=(3, 4, 4, 2)), RNG.normal(size=(3, 4, 4, 2))
    weights = RNG.uniform(0.5, 2, size=(3, 4, 4, 1))
    expected = (weights * (predicted - target) ** 2).sum(axis=(1, 2, 3)).mean() / (2 * 0.2**2)
    value = stage_losses.color_nll(tf.constant(predicted, tf.float32), tf.constant(target, tf.float32),
                                   0.2, tf.constant(weights, tf.float32))
    assert float(value) == pytest.approx(expected, rel=1e-5)
    plain = stage_losses.color_nll(tf.constant(predicted), tf.constant(target), 1.0)
    assert float(plain) == pytest.approx(((predicted - target) ** 2).sum(axis=(1, 2, 3)).mean() / 2, rel=1e-12)


def test_class_nll_is_the_weighted_cross_entropy():
    logits = RNG.normal(size=(2, 3, 3, 5))
    labels = RNG.integers(0, 5, size=(2, 3, 3))
    weights = RNG.uniform(0.5, 2, size=(2, 3, 3))
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    expected = (-weights * picked).sum(axis=(1, 2)).mean()
    value = stage_losses.class_nll(tf.constant(logits), tf.constant(labels), tf.constant(weights))
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_per_image_losses_average_to_the_batch_loss():
    logits = RNG.normal(size=(3, 2, 2, 4))
    labels = RNG.integers(0, 4, size=(3, 2, 2))
    each = stage_losses.class_nll(tf.constant(logits), tf.constant(labels), per_image=True).numpy()
    assert each.shape == (3,)
    assert each.mean() == pytest.approx(float(stage_losses.class_nll(tf.constant(logits), tf.constant(labels))))
    predicted, target = RNG.normal(size=(3, 2, 2, 2)), RNG.normal(size=(3, 2, 2, 2))
    each = stage_losses.color_nll(tf.constant(predicted), tf.constant(target), 0.5, per_image=True).numpy()
    np.testing.assert_allclose(each, ((predicted - target) ** 2).sum(axis=(1, 2, 3)) / 0.5, rtol=1e-12)


def test_multiple_choice_loss_trains_the_best_hypothesis_and_its_weight():
    losses = RNG.uniform(1, 5, size=(6, 4))
    logits = RNG.normal(size=(6, 4))
    loss, winner = stage_losses.multiple_choice_loss(tf.constant(losses), tf.constant(logits))
    log_weights = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    best = losses.argmin(axis=-1)
    np.testing.assert_array_equal(winner.numpy(), best)
    np.testing.assert_allclose(loss.numpy(), losses.min(axis=-1) - log_weights[np.arange(6), best], rtol=1e-12)
    # Only the winner's loss receives a gradient.
    variable = tf.Variable(losses)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(stage_losses.multiple_choice_loss(variable, tf.constant(logits))[0])
    np.testing.assert_array_equal(tape.gradient(total, variable).numpy(), np.eye(4)[best])


def test_gaussian_kl_matches_the_closed_form():
    mean, log_var = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    var = np.exp(log_var)
    expected = np.mean(np.sum(0.5 * (var + mean**2 - 1 - log_var), axis=-1))
    assert float(stage_losses.gaussian_kl(tf.constant(mean), tf.constant(log_var))) == pytest.approx(expected)


def test_kl_weight_warms_up_linearly():
    assert stage_losses.kl_weight(2.0, 0, tf.constant(5)) == 2.0
    assert stage_losses.kl_weight(2.0, 10, None) == 2.0
    values = [float(stage_losses.kl_weight(2.0, 10, tf.constant(step))) for step in (0, 4, 9, 50)]
    assert values == pytest.approx([0.2, 1.0, 2.0, 2.0])


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_soft_color_labels_match_zhang_soft_encoding_in_float64(dtype):
    centers = RNG.uniform(-100, 100, size=(40, 2))
    ab = RNG.uniform(-100, 100, size=(2, 3, 4, 2))
    squared = ((ab[..., None, :] - centers) ** 2).sum(-1)
    expected = np.zeros_like(squared)
    for index in np.ndindex(ab.shape[:-1]):
        nearest = np.argsort(squared[index])[:5]
        weights = np.exp(-squared[index][nearest] / (2 * 5.0**2))
        expected[index][nearest] = weights / weights.sum()
    labels = stage_losses.soft_color_labels(tf.constant(ab, dtype), tf.constant(centers, dtype), 5.0)
    np.testing.assert_allclose(labels.numpy(), expected, atol=1e-6)
    # Far from every center (exp underflows without the shift) the labels stay a distribution.
    far = stage_losses.soft_color_labels(tf.constant([[[[900.0, 900.0]]]]), tf.constant(centers), 1.0)
    assert np.isfinite(far.numpy()).all() and float(tf.reduce_sum(far)) == pytest.approx(1.0)


def test_class_nll_with_soft_labels_is_their_cross_entropy():
    logits = RNG.normal(size=(2, 3, 3, 6))
    soft = RNG.uniform(size=(2, 3, 3, 6))
    soft /= soft.sum(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected = (-(soft * log_p).sum(-1)).sum(axis=(1, 2)).mean()
    assert float(stage_losses.class_nll(tf.constant(logits), tf.constant(soft))) == pytest.approx(expected, rel=1e-10)
    # One-hot soft labels equal the hard labels.
    hard = RNG.integers(0, 6, size=(2, 3, 3))
    one_hot = tf.one_hot(hard, 6, dtype=tf.float64)
    assert float(stage_losses.class_nll(tf.constant(logits), one_hot)) == pytest.approx(
        float(stage_losses.class_nll(tf.constant(logits), tf.constant(hard))), rel=1e-10)
