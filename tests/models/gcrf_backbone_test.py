"""GCRFBackbone: config and saving round trips, inference methods shared with the task."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_testing import run_layer_test
from tfgcrf.config import ModelConfig
from tfgcrf.errors import InputError, UserError
from tfgcrf.models import GCRFBackbone, GCRFColorizer

CONFIG = ModelConfig(
    image_size=16, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16, solver="cg",
)


def _randomized(backbone, seed=0):
    """The zero-initialized output layers randomized, so that colors and scores are non-trivial."""
    kernel, bias = backbone.decoder.top_out.kernel, backbone.mdn.logits_out.bias
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[seed, 1]))
    bias.assign(tf.random.stateless_normal(bias.shape, seed=[seed, 2]))
    return backbone


def test_layer_checks():
    l = tf.random.stateless_uniform((2, 16, 16, 1), seed=(1, 2))
    run_layer_test(GCRFBackbone, {"config": CONFIG}, l, expected_output_shapes=(2, 16, 16, 2))


def test_config_holds_the_model_config_only():
    config = GCRFBackbone(CONFIG, name="b").get_config()
    assert config == {"name": "b", "trainable": True, "config": GCRFBackbone(CONFIG).get_config()["config"]}
    assert ModelConfig(**config["config"]) == CONFIG
    with pytest.raises(UserError, match="model.latent_dim must be >= 1"):
        GCRFBackbone({**config["config"], "latent_dim": 0})


def test_saved_alone_it_reloads_with_the_same_outputs(tmp_path):
    keras.utils.set_random_seed(3)
    backbone = _randomized(GCRFBackbone(CONFIG))
    backbone.save(tmp_path / "backbone.keras")
    loaded = keras.saving.load_model(tmp_path / "backbone.keras")
    assert type(loaded) is GCRFBackbone and loaded.model_config == CONFIG
    l = tf.random.stateless_uniform((1, 16, 16, 1), seed=(5, 6))
    for before, after in [(backbone.sample(l, 3, mode="draw", seed=4), loaded.sample(l, 3, mode="draw", seed=4)),
                          (backbone.similarity(l), loaded.similarity(l))]:
        for x, y in zip(tf.nest.flatten(before), tf.nest.flatten(after)):
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_the_task_forwards_inference_to_its_backbone():
    keras.utils.set_random_seed(4)
    task = GCRFColorizer(config=CONFIG)
    _randomized(task.backbone)
    backbone = task.backbone
    l = tf.random.stateless_uniform((1, 16, 16, 1), seed=(7, 8))
    np.testing.assert_array_equal(task.sample(l, 2)[0].numpy(), backbone.sample(l, 2)[0].numpy())
    np.testing.assert_array_equal(task(l).numpy(), backbone(l).numpy())
    assert task.model_config is backbone.model_config and task.crf is backbone.crf
    # The layers' weights live once, in the backbone; the task adds only its reveal fraction.
    own = {id(v) for v in backbone.weights}
    assert [v.name for v in task.weights if id(v) not in own] == ["reveal_fraction"]


def test_reveal_weights_reveal_the_requested_fraction():
    backbone = GCRFBackbone(CONFIG)
    unary = tf.zeros([3, 256, 2])
    weights = backbone.reveal_weights(unary, 0.25, tf.constant([1, 2], tf.int64)).numpy()
    assert weights.shape == (3, 256) and set(np.unique(weights)) <= {0.0, CONFIG.beta_train}
    np.testing.assert_array_equal((weights > 0).sum(axis=1), [64, 64, 64])


def test_bad_inputs_are_one_line_errors():
    backbone = GCRFBackbone(CONFIG)
    with pytest.raises(InputError, match=r"gray input must have shape \[B, 16, 16, 1\]"):
        backbone.similarity(tf.zeros([1, 8, 8, 1]))
    with pytest.raises(InputError, match="solver must be one of"):
        backbone.crf_solver("qr")
    with pytest.raises(InputError, match="mode 'top' gives at most 4 samples"):
        backbone.sample(tf.zeros([1, 16, 16, 1]), 5)


def test_from_preset(tiny_preset):
    from layer_testing import run_preset_test

    l = tf.random.stateless_uniform((2, 16, 16, 1), seed=(3, 4))
    backbone, output = run_preset_test(GCRFBackbone, tiny_preset, l)
    task = keras.saving.load_model(tiny_preset / "model.keras", compile=False)
    assert backbone.get_config() == task.backbone.get_config()
    for mine, theirs in zip(backbone.weights, task.backbone.weights, strict=True):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(output.numpy(), task(l).numpy())
    assert GCRFBackbone.from_preset(tiny_preset, solver="lu").model_config.solver == "lu"


def _assert_same_weights(model, reference):
    for mine, theirs in zip(model.weights, reference.weights, strict=True):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_save_to_preset_writes_a_backbone_preset_that_round_trips(tiny_preset, tiny_backbone_preset):
    import json
    import zipfile

    import yaml

    from layer_testing import run_preset_test
    from tfgcrf.models.loading import PresetLoader

    folder = tiny_backbone_preset
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metadata.json", "model.keras"]
    with zipfile.ZipFile(folder / "model.keras") as archive:
        assert json.loads(archive.read("config.json"))["class_name"] == "GCRFBackbone"
    task = keras.saving.load_model(tiny_preset / "model.keras", compile=False)
    l = tf.random.stateless_uniform((2, 16, 16, 1), seed=(3, 4))
    backbone, output = run_preset_test(GCRFBackbone, folder, l)
    # Bit for bit the task preset's backbone: config, every weight, the outputs.
    assert backbone.get_config() == task.backbone.get_config()
    _assert_same_weights(backbone, task.backbone)
    np.testing.assert_array_equal(output.numpy(), task(l).numpy())
    for mine, theirs in [(backbone.sample(l, 3, mode="draw", seed=5), task.sample(l, 3, mode="draw", seed=5)),
                         (backbone.similarity(l), task.similarity(l))]:
        for x, y in zip(tf.nest.flatten(mine), tf.nest.flatten(theirs), strict=True):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    # The same writer as the task's: config.yaml read back from model.keras, metadata, experiment.
    loader = PresetLoader(folder)
    assert loader.backbone_only and loader.model_config == task.model_config
    assert loader.metadata["note"] == "tiny backbone preset"
    assert loader.metadata["parameters"] == backbone.count_params() == task.backbone.count_params()
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["model"] == yaml.safe_load((tiny_preset / "config.yaml").read_text())["model"]
    assert written["training"] == yaml.safe_load((tiny_preset / "config.yaml").read_text())["training"]
    assert GCRFBackbone.from_preset(folder, solver="lu").model_config.solver == "lu"


def test_save_to_preset_refuses_other_models_and_stale_backbone_presets(tiny_backbone_preset, tmp_path):
    import shutil

    from tfgcrf.models.loading import save_to_preset

    with pytest.raises(UserError, match="^save_to_preset writes a GCRFColorizer or a GCRFBackbone, got Sequential$"):
        save_to_preset(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    stale = shutil.copytree(tiny_backbone_preset, tmp_path / "stale")
    text = (stale / "config.yaml").read_text()
    (stale / "config.yaml").write_text(text.replace("  solver: lu\n", "  solver: cg\n"))
    with pytest.raises(UserError, match=r"stale/config.yaml disagrees with model.keras \(model.solver 'cg' != 'lu'\)"):
        GCRFBackbone.from_preset(stale)
    with pytest.raises(UserError, match=r"^model.solver must be one of \['lu', 'cholesky', 'cg'\], got 'qr'$"):
        GCRFBackbone.from_preset(tiny_backbone_preset, solver="qr")
