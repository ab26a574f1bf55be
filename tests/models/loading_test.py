import os

import keras
import numpy as np
import pytest

from tfgcrf.errors import UserError
from tfgcrf.models import GCRFColorizer
from tfgcrf.models import loading


def test_loads_a_file_and_a_folder_holding_model_keras(smoke_run):
    folder = str(smoke_run.run_dir)
    assert loading.resolve_model_path(folder) == os.path.join(folder, "model.keras")
    model = loading.load_model(folder)
    assert isinstance(model, GCRFColorizer)
    l = np.random.default_rng(0).random((1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(
        model.sample(l, 2)[0].numpy(), smoke_run.model.sample(l, 2)[0].numpy(), atol=1e-5
    )


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="no such model file: .*missing.keras"):
        loading.load_model(tmp_path / "missing.keras")
    with pytest.raises(UserError, match="has no model.keras"):
        loading.load_model(tmp_path)
    with pytest.raises(UserError, match=r"preset 'nope' is not installed .*installed presets: "):
        loading.load_model("nope")
    for name in ("..", ".hidden", ""):
        with pytest.raises(UserError):
            loading.preset_path(name)
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(other)
    with pytest.raises(UserError, match="holds a Sequential, not a GCRFColorizer"):
        loading.load_model(other)


def test_installed_presets_resolve_to_files():
    for name in loading.preset_names():
        assert os.path.isfile(loading.preset_path(name))
