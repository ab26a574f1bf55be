"""The backbone's edits (`tfgcrf.models.gcrf_edits.EditMethods`) against numpy float64 G-CRF solves."""


import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import grid_photos

from tfgcrf.config import ModelConfig
from tfgcrf.models import GCRFBackbone

SIZE = 16
CONFIG = ModelConfig(
    image_size=SIZE, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16,
)


@pytest.fixture(scope="module")
def photos():
    """Four real fixture photos on the model grid: (l [4, 16, 16, 1], ab [4, 16, 16, 2])."""
    return grid_photos(SIZE)


@pytest.fixture(scope="module")
def model():
    """A backbone whose zero-initialized output layers are randomized (non-trivial colors)."""
    keras.utils.set_random_seed(0)
    backbone = GCRFBackbone(CONFIG)
    kernel, bias = backbone.decoder.top_out.kernel, backbone.mdn.logits_out.bias
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[0, 1]))
    bias.assign(tf.random.stateless_normal(bias.shape, seed=[0, 2]))
    return backbone


def test_edit_matches_numpy_gcrf(model, photos, numpy_gcrf):
    l, ab = photos
    mask = np.zeros((4, SIZE, SIZE), np.float32)
    mask[:, 3, 4] = 1.0
    mask[:, 12, 10] = 1.0
    mask[0, 8, 8] = 1.0
    target = np.broadcast_to(np.array([0.4, -0.3], np.float32), (4, SIZE, SIZE, 2)).copy()
    similarity = model.similarity(l).numpy()
    h = mask.reshape(4, -1)
    flat_target = target.reshape(4, -1, 2)

    edited = model.edit(l, mask, target).numpy()
    expected = numpy_gcrf(similarity, flat_target, CONFIG.beta_edit * h, CONFIG.ridge)
    np.testing.assert_allclose(edited.reshape(4, -1, 2), expected, atol=2e-5)

    base = ab.numpy()
    on_base = model.edit(l, mask, target, base_ab=base, prior_weight=0.2).numpy()
    weights = CONFIG.beta_edit * h + 0.2 * (1 - h)
    flat_base = base.reshape(4, -1, 2)
    rhs = CONFIG.beta_edit * h[..., None] * flat_target + 0.2 * (1 - h[..., None]) * flat_base
    expected = numpy_gcrf(similarity, rhs / weights[..., None], weights, CONFIG.ridge)
    np.testing.assert_allclose(on_base.reshape(4, -1, 2), expected, atol=2e-5)

    # No edit and no base: the ridge keeps the system regular; the answer is neutral gray.
    nothing = model.edit(l, np.zeros_like(mask), target).numpy()
    assert np.all(np.isfinite(nothing)) and np.abs(nothing).max() < 1e-6


def test_edit_prior_is_the_models_own_unary_without_a_base(model, photos):
    l, ab = photos
    prior, weight = model.edit_prior(l, prior_weight=0.3)
    assert weight == 0.3
    top = model.sample(l, 1, mode="top", use_gcrf=False)[0][:, 0].numpy()
    np.testing.assert_array_equal(prior.numpy(), top.reshape(4, -1, 2))
    assert model.edit_prior(l, prior_weight=0) == (None, 0.0)
    base, weight = model.edit_prior(l, ab, None)
    assert weight == CONFIG.prior_weight
    np.testing.assert_array_equal(base.numpy(), ab.numpy().reshape(4, -1, 2))


def _hints(ab, every=5):
    """Hints on every `every`-th grid pixel of the photos' true colors: (edited [B, P], target)."""
    edited = np.zeros((ab.shape[0], SIZE * SIZE), np.float32)
    edited[:, ::every] = 1.0
    return edited, ab.numpy().reshape(ab.shape[0], -1, 2)


def test_hint_prior_fits_the_hints_better_than_the_top_component(model, photos):
    l, ab = photos
    edited, target = _hints(ab)
    top = model.sample(l, 1, mode="top", use_gcrf=False)[0][:, 0].numpy().reshape(4, -1, 2)

    def misfit(alpha):
        return np.sum(edited * np.sum((np.asarray(alpha) - target) ** 2, axis=-1), axis=-1)

    best, _, component = model.hint_prior(l, edited, target, steps=0)
    fitted, z, _ = model.hint_prior(l, edited, target, steps=40)
    # The best mean is the component that minimizes the objective; the steps lower it further.
    features = model.features(l)
    logits, means = model.mdn(features)
    energies = [model.latent_fit_objective(means[:, m], features, logits, means, edited, target)[0]
                for m in range(CONFIG.num_components)]
    np.testing.assert_array_equal(component.numpy(), np.argmin(np.stack(energies, 1), axis=1))
    start = np.min(np.stack(energies, 1), axis=1)
    end = model.latent_fit_objective(z, features, logits, means, edited, target)[0].numpy()
    assert np.all(end < start)
    assert np.all(misfit(fitted) < misfit(top))
    # Without hints: the most probable component's mean, i.e. the top sample's colors.
    nothing, _, _ = model.hint_prior(l, np.zeros_like(edited), target, steps=0)
    np.testing.assert_allclose(nothing.numpy(), top, atol=1e-6)


def test_latent_fit_gradient_matches_finite_differences(photos):
    """The gradient the fit's Adam steps follow, against central differences of the objective.

    In float64: the decoder is piecewise linear (ReLU), so float32 differences need steps that
    cross its kinks; at 1e-5 in float64 they agree to ~1e-7.
    """
    l, ab = photos
    edited, target = (np.asarray(v, np.float64) for v in _hints(ab, every=3))
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        keras.utils.set_random_seed(0)
        model = GCRFBackbone(CONFIG)
    finally:
        keras.config.set_dtype_policy(policy)
    kernel, bias = model.decoder.top_out.kernel, model.mdn.logits_out.bias
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, [0, 1], dtype=tf.float64))
    bias.assign(tf.random.stateless_normal(bias.shape, [0, 2], dtype=tf.float64))
    l = tf.cast(l, tf.float64)
    features = model.trunk(l)  # `features` without its float32 input check
    assert model.semantic is None
    logits, means = model.mdn(features)
    assert logits.dtype == tf.float64
    z = means[:, 0] + 0.05 * tf.random.stateless_normal(means[:, 0].shape, [3, 4], dtype=tf.float64)
    _, gradient = model.latent_fit_objective(z, features, logits, means, edited, target)
    direction = tf.random.stateless_normal(z.shape, [5, 6], dtype=tf.float64)
    step = 1e-5

    def energy(codes):
        return model.latent_fit_objective(codes, features, logits, means, edited, target)[0]

    numeric = ((energy(z + step * direction) - energy(z - step * direction)) / (2 * step)).numpy()
    analytic = np.sum(gradient.numpy() * direction.numpy(), axis=-1)
    assert np.abs(analytic).min() > 1.0  # a real test: the derivatives are not ~0
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)
