"""Experiment configs: packaged YAML files, validation messages, YAML round trip."""

import pytest

from tfgcrf.config import (
    PAPER_HOC_SCHEDULE,
    ExperimentConfig,
    ModelConfig,
    StageConfig,
    TrainingConfig,
    config_from_dict,
    load_config,
    packaged_config_dir,
    save_config,
)
from tfgcrf.errors import UserError

PACKAGED = ["smoke", "default64", "default64_finetune", "lfw64", "church64", "imagenet64"]


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_configs_load(name, recwarn):
    config = load_config(name)
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]  # no moved keys
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
        ({"model": {"beta_sample": 0}}, r"model.beta_sample must be > 0 \(or null\)"),
        ({"model": {"beta_sample": "high"}}, "model.beta_sample must be a number"),
        ({"model": {"image_size": 20}}, "model.image_size must be a positive multiple of 16"),
        ({"training": {"hoc_window": 100}}, r"training.hoc_window must be in \[0, model.image_size=64\]"),
        ({"training": {"kl_warmup_steps": -1}}, "training.kl_warmup_steps must be >= 0"),
        ({"training": {"hoc_loss": "l1"}}, "training.hoc_loss must be one of"),
        ({"training": {"kl_wait": 1}}, r"unknown key\(s\) \['kl_wait'\] in training"),
        ({"training": [1]}, "training must be a mapping"),
        ({"model": {"kl_weight": 2}, "training": {"kl_weight": 1}},
         r"\['kl_weight'\] given under both model: and training:"),
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
    assert ModelConfig().solver == "lu" and TrainingConfig().hoc_loss == "l2"
    assert config_from_dict({"model": {"mdn_sigma": 1}}).model.mdn_sigma == 1.0


def test_configs_from_before_the_training_section_still_load(tmp_path):
    """Training keys under `model:` are read into `training` with one one-line FutureWarning."""
    path = tmp_path / "old.yaml"
    path.write_text("model: {image_size: 32, trunk_widths: [8, 16], encoder_widths: [8, 16], "
                    "decoder_widths: [16, 8], kl_warmup_steps: 7, hoc_window: 16, mdn_loss: nll}\n")
    with pytest.warns(FutureWarning) as notices:
        config = load_config(path)
    assert len(notices) == 1
    message = str(notices[0].message)
    assert "\n" not in message and message.startswith(f"{path}: model.kl_warmup_steps, model.hoc_window")
    assert "moved to the training: section" in message
    assert config.training == TrainingConfig(kl_warmup_steps=7, hoc_window=16, mdn_loss="nll")
    assert config.model.image_size == 32
    save_config(config, tmp_path / "new.yaml")
    assert "training:" in (tmp_path / "new.yaml").read_text()
    assert load_config(tmp_path / "new.yaml") == config


def test_saved_model_configs_hold_no_training_keys():
    assert not set(ModelConfig.__dataclass_fields__) & set(TrainingConfig.__dataclass_fields__)
