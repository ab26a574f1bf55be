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


def _copy_preset(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_loader_reads_the_three_files_of_a_preset(tiny_preset):
    loader = loading.PresetLoader(tiny_preset)
    assert loader.model_path == os.path.join(tiny_preset, "model.keras")
    assert loader.metadata["note"] == "tiny test preset"
    assert loader.metadata["parameters"] == loader.load_task().count_params()
    assert loader.model_config.image_size == 16 and not loader.legacy
    assert loader.config["preprocessor"]["config"]["image_size"] == 16
    # The same folder by name of its model file, and `load_model` is the same loader.
    assert loading.PresetLoader(tiny_preset / "model.keras").config == loader.config
    assert loading.load_model(tiny_preset).get_config() == loader.load_task().get_config()


def test_presets_lists_the_installed_ones_with_their_metadata():
    from tfgcrf.models import GCRFBackbone
    from tfgcrf.preprocessing import GridConverter

    presets = GCRFColorizer.presets
    assert sorted(presets) == loading.preset_names() and GCRFBackbone.presets == GridConverter.presets == presets
    for metadata in presets.values():
        assert isinstance(metadata, dict)
    if "default" in presets:
        assert presets["default"]["parameters"] > 0


def _one_line_error(spec, match):
    with pytest.raises(UserError, match=match) as err:
        GCRFColorizer.from_preset(spec)
    message = str(err.value)
    assert "\n" not in message and message.endswith(f"(installed presets: {', '.join(loading.preset_names())})")
    assert len(message) < 400, message


def test_broken_presets_are_one_line_errors_listing_the_installed_ones(tiny_preset, tmp_path):
    _one_line_error("clowntown", r"^preset 'clowntown' is not installed")
    for spec in (None, 5, b"default"):  # a Python API caller's slip: one line, not a TypeError
        _one_line_error(spec, rf"^a model is a preset name, a folder holding model.keras or a .keras file, got {type(spec).__name__} ")
    _one_line_error(tmp_path, "has no model.keras")
    _one_line_error(tmp_path / "missing.keras", "no such model file")

    garbage = _copy_preset(tiny_preset, tmp_path / "garbage")
    (garbage / "model.keras").write_bytes(b"not a zip file")
    _one_line_error(garbage, "cannot load model .*garbage/model.keras: not a Keras .keras archive")

    truncated = _copy_preset(tiny_preset, tmp_path / "truncated")
    data = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    _one_line_error(truncated, "cannot load model .*truncated/model.keras")

    metadata = _copy_preset(tiny_preset, tmp_path / "metadata")
    (metadata / "metadata.json").write_text("{not json")
    _one_line_error(metadata, "cannot read .*metadata/metadata.json")

    # A hand-edited config.yaml that no longer describes model.keras (today's stale-config trap).
    stale = _copy_preset(tiny_preset, tmp_path / "stale")
    text = (stale / "config.yaml").read_text()
    assert "  solver: lu\n" in text
    (stale / "config.yaml").write_text(text.replace("  solver: lu\n", "  solver: cg\n"))
    _one_line_error(stale, r"stale/config.yaml disagrees with model.keras \(model.solver 'cg' != 'lu'\)")

    other = tmp_path / "other"
    other.mkdir()
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(other / "model.keras")
    _one_line_error(other, "holds a Sequential, not a GCRFColorizer")
