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


def test_solver_override_changes_only_the_solver_and_survives_saving(smoke_run, tmp_path):
    model = loading.load_model(smoke_run.run_dir, solver="cholesky")
    assert model.model_config.solver == "cholesky" != smoke_run.model.model_config.solver
    l = np.random.default_rng(0).uniform(size=(1, 16, 16, 1)).astype("float32")
    # Same weights, another exact solver: the same colors up to float32 round-off.
    np.testing.assert_allclose(
        model.sample(l, 2)[0].numpy(), smoke_run.model.sample(l, 2)[0].numpy(), atol=1e-4
    )
    model.save(tmp_path / "cholesky.keras")
    assert loading.load_model(tmp_path / "cholesky.keras").model_config.solver == "cholesky"
    with pytest.raises(UserError, match="solver must be one of"):
        loading.load_model(smoke_run.run_dir, solver="qr")
