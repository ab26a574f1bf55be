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
