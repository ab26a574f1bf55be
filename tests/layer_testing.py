"""Shared checks for the package's Keras layers, after keras-hub's `TestCase.run_layer_test`.

`run_layer_test(layer_cls, init_kwargs, inputs, ...)` checks, for one layer:
- the config round trip: `from_config(get_config())` has the same config;
- registration: the layer serializes under the `tfgcrf>` package and deserializes from the JSON
  form alone (what `keras.saving.load_model` does after `import tfgcrf`);
- the same outputs eagerly and traced in a `tf.function`, with the expected shapes;
- optionally a `.keras` round trip of a functional model around the layer (`saving_round_trip`):
  identical outputs and layer configs after reloading.

`run_preset_test(cls, preset, inputs)` checks a class's `from_preset` (keras-hub's
`run_preset_test`).
"""

import json

import keras
import numpy as np
import tensorflow as tf


def grid_photos(size, select=slice(4, 8)):
    """Real fixture photos (tests/data/photos/*.png, sorted, `select`ed) on a `size` x `size` grid.

    Returns:
      `(l [N, size, size, 1], ab [N, size, size, 2])` float32 tensors in model units.
    """
    from pathlib import Path

    from tfgcrf.color import rgb_to_model
    from tfgcrf.imageio import read_image

    paths = sorted((Path(__file__).parent / "data" / "photos").glob("*.png"))[select]
    rgb = np.stack([tf.image.resize(read_image(p), [size, size]).numpy() / 255.0 for p in paths])
    return rgb_to_model(tf.constant(rgb, tf.float32))


def saving_round_trip(model, inputs, tmp_path):
    """Saves a model as .keras, reloads it and checks identical outputs and layer configs."""
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for before, after in zip(tf.nest.flatten(model(inputs)), tf.nest.flatten(loaded(inputs))):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    for layer, other in zip(model.layers, loaded.layers):
        assert layer.get_config() == other.get_config()
    return loaded


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shapes=None, functional_inputs=None,
                   tmp_path=None):
    """Runs the shared layer checks; returns the layer's eager outputs.

    Args:
      layer_cls: the layer class.
      init_kwargs: its constructor arguments.
      inputs: the positional call input (a tensor or a list of them for several arguments).
      expected_output_shapes: optional shape (or list of shapes) of the outputs.
      functional_inputs: optional `keras.Input`s to build a functional model around a fresh layer
        for the `.keras` round trip (needs `tmp_path`).
      tmp_path: folder for the `.keras` file.
    """
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    assert serialized["registered_name"] == f"tfgcrf>{layer_cls.__name__}", serialized["registered_name"]
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is layer_cls and revived.get_config() == config

    arguments = inputs if isinstance(inputs, list) else [inputs]
    eager = layer(*arguments)
    traced = tf.function(lambda *args: revived(*args))(*arguments)
    for before, after in zip(tf.nest.flatten(eager), tf.nest.flatten(traced)):
        np.testing.assert_allclose(np.asarray(before), np.asarray(after), rtol=1e-6, atol=1e-6)
    if expected_output_shapes is not None:
        shapes = [tuple(output.shape) for output in tf.nest.flatten(eager)]
        expected = expected_output_shapes if isinstance(expected_output_shapes, list) else [expected_output_shapes]
        assert shapes == [tuple(shape) for shape in expected], shapes
    if functional_inputs is not None:
        symbolic = functional_inputs if isinstance(functional_inputs, list) else [functional_inputs]
        model = keras.Model(functional_inputs, layer_cls(**init_kwargs)(*symbolic))
        saving_round_trip(model, inputs, tmp_path)
    return eager


def run_preset_test(cls, preset, inputs, **kwargs):
    """The shared `from_preset` checks, after keras-hub's `TestCase.run_preset_test`.

    - an unknown preset name is a one-line `UserError` listing the installed presets;
    - `cls.from_preset(preset, **kwargs)` gives a `cls` that runs on `inputs`;
    - for models, `load_weights=False` gives the same architecture (config) with fresh weights.

    Returns:
      `(instance, its outputs on inputs)`.
    """
    import pytest

    from tfgcrf.errors import UserError

    with pytest.raises(UserError, match=r"clowntown.*installed presets: \w+") as err:
        cls.from_preset("clowntown", **kwargs)
    assert "\n" not in str(err.value), str(err.value)
    instance = cls.from_preset(preset, **kwargs)
    assert type(instance) is cls
    output = instance(inputs)
    if isinstance(instance, keras.Model):
        fresh = cls.from_preset(preset, load_weights=False, **kwargs)
        assert fresh.get_config() == instance.get_config()
        assert [v.path for v in fresh.weights] == [v.path for v in instance.weights]
        fresh(inputs)
        assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), instance.get_weights()))
    return instance, output
