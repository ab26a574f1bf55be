"""save_to_preset: a preset folder whose config is read back from its own model."""

import json

import numpy as np
import tensorflow as tf
import yaml

from tfgcrf.config import ModelConfig, build_dataclass
from tfgcrf.models import GCRFColorizer
from tfgcrf.models.loading import load_model, save_to_preset

CONFIG = ModelConfig(
    image_size=16, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16,
    solver="cg",
)


def test_preset_files_agree_with_the_model(tmp_path, tiny_experiment):
    model = GCRFColorizer(CONFIG)
    experiment = tiny_experiment()
    folder = save_to_preset(model, tmp_path / "preset", experiment, {"note": "test"})
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert build_dataclass(ModelConfig, written["model"], "model") == CONFIG
    assert written["stages"]["vae"]["epochs"] == experiment.stages["vae"].epochs
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["note"] == "test" and metadata["parameters"] == model.count_params()
    loaded = load_model(folder)
    l = tf.random.stateless_uniform((1, 16, 16, 1), seed=(1, 1))
    np.testing.assert_array_equal(model.sample(l, 2)[0].numpy(), loaded.sample(l, 2)[0].numpy())


def test_default_preset_from_preset_equals_plain_keras_loading_bit_for_bit():
    """`from_preset("default")` of the task, its backbone and its preprocessor against
    `keras.saving.load_model` of the installed preset's model.keras (the reference reader)."""
    import keras
    import pytest

    from tfgcrf.models import GCRFBackbone
    from tfgcrf.models.loading import preset_names, preset_path
    from tfgcrf.preprocessing import GridConverter

    if "default" not in preset_names():
        pytest.skip("the default preset is not installed")
    reference = keras.saving.load_model(preset_path("default"), compile=False)
    expected = {v.path: v.numpy() for v in reference.weights}
    task = GCRFColorizer.from_preset("default")
    backbone = GCRFBackbone.from_preset("default")
    assert task.get_config() == reference.get_config()
    assert backbone.get_config() == reference.backbone.get_config()
    for model in (task, backbone):
        weights = {v.path: v.numpy() for v in model.weights}
        assert weights.keys() <= expected.keys() and len(weights) >= len(expected) - 1
        for path, value in weights.items():
            np.testing.assert_array_equal(value, expected[path], err_msg=path)
    assert GridConverter.from_preset("default").get_config() == reference.preprocessor.get_config()
    l = tf.random.stateless_uniform((1, 64, 64, 1), seed=(2, 3))
    top = reference.sample(l, 2)[0].numpy()
    np.testing.assert_array_equal(task.sample(l, 2)[0].numpy(), top)
    np.testing.assert_array_equal(backbone.sample(l, 2)[0].numpy(), top)
