"""GCRFColorizer with the frozen ImageNet backbone and the color-classification unary head."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import grid_photos

from tfgcrf.config import ModelConfig
from tfgcrf.models import GCRFColorizer, stage_losses
from tfgcrf.models.rebalance import AB_SCALE, BIN_SIZE, ab_bins, bin_centers, gamut_bins

SIZE = 16
CONFIG = ModelConfig(
    image_size=SIZE, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16,
    backbone="efficientnet_lite0", unary_head="classification",
    semantic_width=4, semantic_global_width=4, solver="cg",
)


@pytest.fixture(scope="module")
def photos():
    """Four real fixture photos on the model grid: (l [4, 16, 16, 1], ab [4, 16, 16, 2])."""
    return grid_photos(SIZE)


@pytest.fixture(scope="module")
def pretrained():
    keras.utils.set_random_seed(0)
    model = GCRFColorizer(CONFIG)
    model.load_pretrained()
    return model


def test_gamut_bins_hold_exactly_the_srgb_colors():
    """Independent reference: skimage's Lab of 200 k random 8-bit colors plus the cube's edges
    all fall in the gamut bins, and every gamut bin's colors exist (each is hit by skimage Lab of
    the 8-bit cube's faces)."""
    color = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(200_000, 3)) / 255.0
    ab = color.rgb2lab(rgb[None])[0, :, 1:]
    index = np.clip(np.floor((ab + AB_SCALE) / BIN_SIZE).astype(int), 0, 21)
    hit = set((index[:, 0] * 22 + index[:, 1]).tolist())
    bins = set(gamut_bins())
    assert hit <= bins
    levels = np.arange(256) / 255.0
    a, b = np.meshgrid(levels, levels, indexing="ij")
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            columns = [a.ravel(), b.ravel()]
            columns.insert(axis, np.full(a.size, value))
            faces.append(np.stack(columns, -1))
    ab = color.rgb2lab(np.concatenate(faces)[None])[0, :, 1:]
    index = np.clip(np.floor((ab + AB_SCALE) / BIN_SIZE).astype(int), 0, 21)
    assert set((index[:, 0] * 22 + index[:, 1]).tolist()) == bins
    assert 250 < len(bins) < 320  # Zhang et al. report 313 with their bin offsets


def test_annealed_mean_and_class_nll_match_numpy(pretrained, photos):
    l, ab = photos
    decoder = pretrained.backbone.decoder
    logits = tf.random.stateless_normal((2, SIZE, SIZE, decoder.num_classes), seed=(3, 4)) * 3
    centers = bin_centers(gamut_bins())
    z = logits.numpy().astype(np.float64) / CONFIG.annealed_temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(decoder.readout(logits).numpy(), p @ centers, atol=1e-5)
    # Cross-entropy of the nearest in-gamut bin of each true color.
    target = ab[:2]
    flat = ab_bins(target).numpy()
    all_centers = bin_centers(np.arange(22 * 22))
    labels = np.argmin(((all_centers[flat][..., None, :] - centers) ** 2).sum(-1), axis=-1)
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    expected = nll.reshape(2, -1).sum(-1).mean()
    np.testing.assert_array_equal(pretrained.color_classes(target).numpy(), labels)
    assert float(stage_losses.class_nll(logits, pretrained.color_classes(target))) == pytest.approx(expected, rel=1e-5)


STAGE_PREFIXES = {
    "vae": ("gray_trunk/", "semantic_features/semantic", "semantic_features/global",
            "color_encoder/", "unary_decoder/"),
    "hoc": ("structure_branch/", "unary_decoder/top_conv/", "unary_decoder/top_out/"),
    "mdn": ("mixture_density/",),
}


@pytest.mark.parametrize("stage", ["vae", "hoc", "mdn"])
def test_backbone_stays_frozen_in_every_stage(stage, photos):
    keras.utils.set_random_seed(1)
    model = GCRFColorizer(CONFIG)
    model.load_pretrained()
    model.compile_stage(stage, learning_rate=3e-3)
    model.reveal_fraction.assign(0.5)
    expected = {
        v.path for v in model.weights
        if any(p in v.path for p in STAGE_PREFIXES[stage]) and "efficientnet" not in v.path
        and "moving_" not in v.path and "reveal_fraction" not in v.path
    }
    assert {v.path for v in model.trainable_variables} == expected
    before = {v.path: v.numpy().copy() for v in model.weights}
    batch = tf.data.Dataset.from_tensors(photos)
    loss0 = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
    model.fit(batch.repeat(), steps_per_epoch=8, epochs=1, shuffle=False, verbose=0)
    changed = {v.path for v in model.weights if not np.array_equal(before[v.path], v.numpy())}
    assert changed == expected  # BatchNorm statistics of the backbone included: untouched
    assert model.evaluate(batch, verbose=0, return_dict=True)["loss"] < loss0


def test_roundtrip_keeps_imagenet_weights_and_outputs(pretrained, photos, tmp_path):
    l, ab = photos
    pretrained.backbone.decoder.top_out.kernel.assign(
        0.3 * tf.random.stateless_normal(pretrained.backbone.decoder.top_out.kernel.shape, seed=(5, 6))
    )
    path = tmp_path / "model.keras"
    pretrained.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.model_config == CONFIG
    assert loaded.backbone.semantic.backbone.trainable_weights == []
    for before, after in zip(pretrained.backbone.semantic.backbone.weights, loaded.backbone.semantic.backbone.weights):
        np.testing.assert_array_equal(before.numpy(), after.numpy())
    first, _ = pretrained.sample(l, 3)
    second, _ = loaded.sample(l, 3)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    # A colorful unary: the annealed mean is not neutral once the head is non-zero.
    alpha = loaded.sample(l, 1, use_gcrf=False)[0]
    assert float(tf.reduce_max(tf.abs(alpha))) > 0.05


def test_old_configs_build_the_old_model():
    """Configs without the new keys (every preset saved before them) keep their architecture."""
    old = dataclasses.replace(CONFIG, backbone="none", unary_head="regression")
    model = GCRFColorizer(old)
    assert model.backbone.semantic is None and model.backbone.decoder.num_classes == 0
    assert ModelConfig().backbone == "none" and ModelConfig().unary_head == "regression"


def test_soft_encoding_puts_the_mass_on_the_true_colors_nearest_bins(photos):
    """training.soft_encoding_sigma > 0: the VAE targets are Zhang et al.'s soft encoding over the
    head's bins (their centers in ab units), and 0 keeps the hard labels."""
    l, ab = photos
    model = GCRFColorizer(CONFIG, training={"soft_encoding_sigma": 5.0})
    hard = GCRFColorizer(CONFIG)
    labels = model.color_labels(ab[:1]).numpy()
    assert labels.shape == (1, SIZE, SIZE, model.backbone.decoder.num_classes)
    np.testing.assert_allclose(labels.sum(-1), 1.0, atol=1e-5)
    assert ((labels > 0).sum(-1) == 5).all()
    # The most probable soft class is the hard label (the nearest in-gamut bin).
    np.testing.assert_array_equal(labels.argmax(-1), hard.color_labels(ab[:1]).numpy())
