"""Experiment configs: packaged YAML files, validation messages, YAML round trip."""

import pytest

from tfgcrf.config import (
    PAPER_HOC_SCHEDULE,
    ExperimentConfig,
    ModelConfig,
    StageConfig,
    config_from_dict,
    load_config,
    packaged_config_dir,
    save_config,
)
from tfgcrf.errors import UserError

PACKAGED = ["smoke", "default64", "lfw64", "church64", "imagenet64"]


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_configs_load(name):
    config = load_config(name)
    assert config.name == name
    assert set(config.stages) == {"vae", "hoc", "mdn"}
    assert load_config(packaged_config_dir() / f"{name}.yaml") == config


@pytest.mark.parametrize("name", ["lfw64", "church64", "imagenet64"])
def test_paper_configs_follow_section_4(name):
    config = load_config(name)
    assert config.model.image_size == 64
    assert (config.model.beta_train, config.model.beta_edit) == (1.0, 5.0)
    assert config.stages["vae"].epochs == config.stages["hoc"].epochs == 15
    assert config.stages["hoc"].hoc_schedule == PAPER_HOC_SCHEDULE
    assert config.data.source.startswith("tfds:")


def test_yaml_round_trip(tmp_path):
    config = load_config("default64")
    save_config(config, tmp_path / "copy.yaml")
    assert load_config(tmp_path / "copy.yaml") == config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": {"latent_dims": 3}}, r"unknown key\(s\) \['latent_dims'\] in model"),
        ({"model": {"latent_dim": "big"}}, "model.latent_dim must be an integer"),
        ({"model": {"solver": "qr"}}, "model.solver must be one of"),
        ({"model": {"backbone": "resnet"}}, "model.backbone must be one of"),
        ({"model": {"unary_head": "gan"}}, "model.unary_head must be one of"),
        ({"model": {"annealed_temperature": 0.0}}, "model.annealed_temperature > 0"),
        ({"model": {"image_size": 20}}, "model.image_size must be a positive multiple of 16"),
        ({"model": {"hoc_window": 100}}, "model.hoc_window must be in"),
        ({"stages": {"gan": {}}}, r"unknown stage\(s\) \['gan'\]"),
        ({"stages": {"hoc": {"hoc_schedule": [[1, 0.5]]}}}, "must start with an entry for epoch 0"),
        ({"stages": {"hoc": {"hoc_schedule": [[0, 1.0], [0, 0.5]]}}}, "strictly increasing"),
        ({"stages": {"vae": {"epochs": 0}}}, "stage epochs must be >= 1"),
        ({"data": {"batch_size": 0}}, "data.batch_size must be >= 1"),
        ({"strategy": "gpu"}, "strategy must be one of"),
        ({"mixed_precision": "yes"}, "mixed_precision must be true or false"),
        ({"extra": 1}, r"unknown top-level key\(s\) \['extra'\]"),
    ],
)
def test_invalid_values_name_the_key(values, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(values)


def test_errors_from_files_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {ridge: -1}\n")
    with pytest.raises(UserError, match=r"bad.yaml: model.ridge must be >= 0"):
        load_config(path)
    path.write_text("model: [\n")
    with pytest.raises(UserError, match="bad.yaml: invalid YAML"):
        load_config(path)
    with pytest.raises(UserError, match="not found .*packaged configs: .*smoke"):
        load_config("nonexistent")


def test_defaults():
    config = ExperimentConfig()
    assert config.model == ModelConfig() and config.stages["hoc"] == StageConfig()
    assert ModelConfig().solver == "lu" and ModelConfig().hoc_loss == "l2"
    assert config_from_dict({"model": {"mdn_sigma": 1}}).model.mdn_sigma == 1.0
