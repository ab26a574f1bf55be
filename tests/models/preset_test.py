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
