"""The three-stage trainer: run directory, TensorBoard, resume after a kill, MirroredStrategy."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgcrf import cli
from tfgcrf.config import STAGES, save_config
from tfgcrf.errors import UserError
from tfgcrf.trainers.callbacks import HocSchedule, hoc_schedule
from tfgcrf.trainers.training import (
    StagePaths, collapse_warning, stage_summary, stages_through, train,
)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def test_smoke_run_completes_every_stage(smoke_run):
    summary = stage_summary(smoke_run.run_dir)
    assert list(summary) == list(STAGES)
    metrics = {
        "vae": {"recon", "kl"}, "hoc": {"crf_l2", "unary_l2", "reveal"}, "mdn": {"mixture_nll"}
    }
    for stage, done in summary.items():
        history = done["history"]
        assert {"loss", "val_loss"} | metrics[stage] <= set(history)
        assert all(np.isfinite(v) for values in history.values() for v in values)
    loaded = keras.saving.load_model(smoke_run.run_dir / "model.keras")
    assert loaded.stage == "mdn"
    gray = tf.random.stateless_uniform([2, 16, 16, 1], seed=[1, 1])
    np.testing.assert_array_equal(
        loaded.sample(gray, 2)[0].numpy(), smoke_run.model.sample(gray, 2)[0].numpy()
    )


def _events(folder):
    """(tag, plugin name, step) of every summary written under `folder`."""
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            if "tfevents" not in name:
                continue
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    found.append((value.tag, value.metadata.plugin_data.plugin_name, event.step))
    return found


def _event_tags(folder):
    """{tag: plugin name} of every summary written under `folder`."""
    return {tag: plugin for tag, plugin, _ in _events(folder)}


@pytest.mark.parametrize("stage", STAGES)
def test_tensorboard_has_scalars_sample_images_and_hparams(smoke_run, stage):
    tags = _event_tags(StagePaths(smoke_run.run_dir / stage).logs)
    assert tags[f"{stage}/previews"] == "images"
    for tag in ("epoch_loss", "epoch_val_loss", "epoch_learning_rate"):
        assert tags[tag] == "scalars"
    assert tags["_hparams_/session_start_info"] == "hparams"


def test_tensorboard_steps_continue_across_stages(smoke_run):
    done = stage_summary(smoke_run.run_dir)
    end = 0
    for stage in STAGES:
        events = _events(StagePaths(smoke_run.run_dir / stage).logs)
        steps = sorted(step for tag, _, step in events if tag == "epoch_loss")
        # One point per epoch at the run's optimizer step: after the previous stage's last one.
        expected = [end + (epoch + 1) * smoke_run.config.stages[stage].steps_per_epoch
                    for epoch in range(smoke_run.config.stages[stage].epochs)]
        assert steps == expected
        assert sorted(s for t, _, s in events if t == f"{stage}/previews") == expected
        rates = [s for t, _, s in events if t == "epoch_learning_rate"]
        assert rates == steps
        end += done[stage]["steps"]


def test_hoc_schedule_follows_the_paper():
    schedule = ((0, 1.0), (2, 0.75), (4, 0.5), (6, 0.25), (8, 0.1))
    fractions = [hoc_schedule(epoch, schedule) for epoch in range(12)]
    assert fractions == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.1, 0.1, 0.1, 0.1]


def test_hoc_schedule_callback_sets_the_reveal_fraction(smoke_model):
    callback = HocSchedule(((0, 1.0), (3, 0.4)))
    callback.set_model(smoke_model)
    callback.on_epoch_begin(3)
    assert float(smoke_model.reveal_fraction.numpy()) == pytest.approx(0.4)
    callback.on_epoch_begin(0)
    assert float(smoke_model.reveal_fraction.numpy()) == 1.0


def test_a_collapsed_vae_posterior_is_named_in_one_line():

    collapsed = {"loss": [3.0, 2.0], "kl": [0.63, 0.20], "val_kl": [0.1, 0.009]}
    warning = collapse_warning("vae", collapsed)
    assert warning.startswith("stage vae: warning: the KL of q(z|x, g) ended at 0.2 nats "
                              "(validation 0.009): the posterior collapsed")
    assert "\n" not in warning
    assert collapse_warning("vae", {"kl": [1.3, 18.3], "val_kl": [2.0, 17.0]}) is None
    assert collapse_warning("vae", {"kl": [0.2], "val_kl": [0.9]}) is None  # not on both
    assert collapse_warning("vae", {"kl": [0.1]}).endswith("lower training.kl_weight")
    assert collapse_warning("hoc", collapsed) is None


def test_stage_requests():
    assert stages_through("all") == ["vae", "hoc", "mdn"]
    assert stages_through("hoc") == ["vae", "hoc"]
    with pytest.raises(UserError, match="stage must be"):
        stages_through("gan")


def test_refuses_to_resume_a_different_model(tmp_path, tiny_experiment):
    config = tiny_experiment()
    save_config(config, tmp_path / "config.yaml")
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, latent_dim=4))
    with pytest.raises(UserError, match=r"holds a run of another model \(model.latent_dim 8 -> 4\)"):
        train(other, tmp_path, verbose=0)


def test_resumes_with_changed_training_settings_and_names_them(tmp_path, tiny_experiment):
    """Training knobs are not the model: a resume with other values runs and says what changed.

    The first start writes its config.yaml in the layout of runs started before the training:
    section existed (training keys under model:), which must resume too.
    """
    import yaml

    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    train(config, tmp_path, stage="vae", verbose=0, log=lambda message: None)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    written["model"].update(written.pop("training"))  # the old layout
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(written))
    changed = dataclasses.replace(config, training=dataclasses.replace(config.training, kl_warmup_steps=9))
    messages = []
    train(changed, tmp_path, stage="vae", verbose=0, log=messages.append)
    assert "resuming with changed settings: training.kl_warmup_steps 4 -> 9" in messages
    # A model saved before its mdn stage says that its mixture head is not trained yet.
    assert messages[-1] == (f"saved {tmp_path / 'model.keras'} (trained through stage vae; stages "
                            "hoc, mdn not yet: run without --stage to finish)")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["training"]["kl_warmup_steps"] == 9


def test_a_nan_loss_stops_the_stage_with_a_clear_error(tmp_path, tiny_experiment, monkeypatch):
    from tfgcrf.trainers import training

    def nan_photos(source, split, image_size, batch_size, **kwargs):
        gray = tf.zeros([batch_size, image_size, image_size, 1])
        chroma = tf.fill([batch_size, image_size, image_size, 2], float("nan"))
        return tf.data.Dataset.from_tensors((gray, chroma))

    monkeypatch.setattr(training, "make_dataset", nan_photos)
    with pytest.raises(UserError, match="stage vae stopped on a non-finite loss"):
        train(tiny_experiment(), tmp_path, verbose=0, log=lambda message: None)
    assert not StagePaths(tmp_path / "vae").is_done()


def test_vae_stage_computes_rebalancing_weights(tmp_path, tiny_experiment):
    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    training = dataclasses.replace(config.training, rebalance_lambda=0.5)
    model = train(dataclasses.replace(config, training=training), tmp_path, stage="vae",
                  verbose=0, log=lambda message: None)
    weights = model._color_weights.numpy()
    assert weights.shape == (22 * 22,) and weights.std() > 0 and np.all(weights > 0)
    assert stage_summary(tmp_path).keys() == {"vae"}


def test_decoded_mdn_stage_resumed_alone_gets_the_rebalancing_weights(tmp_path, tiny_experiment):
    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    train(config, tmp_path, stage="hoc", verbose=0, log=lambda message: None)
    # A later run with the MDN stage scored in colors (class-rebalanced reconstruction loss):
    # only the MDN stage trains, and it needs the VAE stage's color weights again.
    training = dataclasses.replace(config.training, rebalance_lambda=0.5, mdn_loss="decoded")
    model = train(dataclasses.replace(config, training=training), tmp_path, verbose=0,
                  log=lambda message: None)
    assert model._color_weights is not None
    history = stage_summary(tmp_path)["mdn"]["history"]
    assert all(np.isfinite(v) for values in history.values() for v in values)


def test_cli_reports_a_missing_config(capsys):
    assert cli.main(["train", "--config", "no_such_config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfgcrf: error: config 'no_such_config' not found") and "smoke" in err


@pytest.mark.slow  # two training processes (all stages, one killed during HOC) (README "Tests")
def test_killed_during_hoc_resumes_without_redoing_vae(tmp_path, tiny_experiment):
    config = tiny_experiment(epochs=1, steps_per_epoch=1)
    hoc_epochs = 5
    stages = dict(config.stages, hoc=dataclasses.replace(config.stages["hoc"], epochs=hoc_epochs))
    config_path = tmp_path / "tiny.yaml"
    save_config(dataclasses.replace(config, stages=stages), config_path)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tfgcrf.cli", "train", "--config", str(config_path),
               "--run-dir", str(run_dir), "--quiet"]
    # The epoch's weights file is written after BackupAndRestore's backup of that epoch (callback
    # order), so once it exists a complete backup does too: a kill during a later backup write
    # falls back to it instead of racing the very first backup.
    hoc_progress = StagePaths(run_dir / "hoc").latest
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=log, env=ENV)
        deadline = time.time() + 240
        while not hoc_progress.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        first.kill()
        first.wait()
    assert hoc_progress.exists(), (tmp_path / "first.log").read_text()[-2000:]
    vae_marker = StagePaths(run_dir / "vae").marker
    assert vae_marker.is_file() and not StagePaths(run_dir / "hoc").is_done()
    vae_done = vae_marker.read_text()

    second = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "stage vae: already complete" in second.stderr
    assert "stage vae: training" not in second.stderr
    assert vae_marker.read_text() == vae_done
    summary = stage_summary(run_dir)
    assert list(summary) == list(STAGES)
    # The second run only trained the HOC epochs the first one had not finished, and the stage's
    # history and wall time still cover every epoch (the first run's from hoc/history.json).
    resumed_from = summary["hoc"]["resumed_from_epoch"]
    assert 0 < resumed_from < hoc_epochs
    assert len(summary["hoc"]["history"]["loss"]) == hoc_epochs
    assert "stage hoc: done in " in second.stderr and f"(resumed at epoch {resumed_from + 1})" in second.stderr
    first_run_seconds = sum(e["seconds"] for e in json.loads(StagePaths(run_dir / "hoc").history.read_text())[:resumed_from])
    assert summary["hoc"]["seconds"] >= first_run_seconds > 0
    # ... and the stage after the resumed one still ran all of its epochs from the first.
    assert len(summary["mdn"]["history"]["loss"]) == config.stages["mdn"].epochs
    assert (run_dir / "model.keras").is_file()


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from tfgcrf.config import load_config
from tfgcrf.models import GCRFColorizer
from tfgcrf.trainers.training import stage_summary, train

config = load_config(sys.argv[1])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
model = train(config, sys.argv[2], strategy=strategy, verbose=0, log=lambda message: None)
gray = tf.random.stateless_uniform([4, 16, 16, 1], seed=[3, 4])
ab = tf.random.stateless_uniform([4, 16, 16, 2], seed=[5, 6], minval=-0.3, maxval=0.3)
# Each replica evaluates half of the batch with its rows of the global batch's random draws: the
# result must be what one device computes for the whole batch with the same weights.
mirrored = model.evaluate(tf.data.Dataset.from_tensors((gray, ab)), verbose=0)
single = GCRFColorizer(config.model, stage=model.stage)
single.set_weights(model.get_weights())
single.compile_stage(model.stage)
whole = single.evaluate(tf.data.Dataset.from_tensors((gray, ab)), verbose=0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "distributed": type(model.trainable_variables[0].value).__name__,
    "mirrored": mirrored[0],
    "single": whole[0],
    "losses": {s: d["history"]["loss"] for s, d in stage_summary(sys.argv[2]).items()},
}))
"""


@pytest.mark.slow  # all stages under MirroredStrategy in a subprocess (README "Tests")
def test_trains_under_mirrored_strategy(tmp_path, tiny_experiment):
    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=4))
    save_config(config, tmp_path / "tiny.yaml")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "tiny.yaml"), str(tmp_path / "run")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["distributed"] == "MirroredVariable"
    assert set(report["losses"]) == set(STAGES)
    assert all(np.isfinite(v) for losses in report["losses"].values() for v in losses)
    assert report["mirrored"] == pytest.approx(report["single"], rel=1e-5)


def test_mdn_stage_starts_from_anchored_components(tmp_path, tiny_experiment, monkeypatch):
    from tfgcrf.layers.mixture_density import MixtureDensityHead

    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    stages = dict(config.stages, mdn=dataclasses.replace(config.stages["mdn"], anchor_batches=2))
    seen = []
    original = MixtureDensityHead.initialize_from_codes

    def spy(self, codes, **kwargs):
        seen.append(np.asarray(codes).shape)
        return original(self, codes, **kwargs)

    monkeypatch.setattr(MixtureDensityHead, "initialize_from_codes", spy)
    train(dataclasses.replace(config, stages=stages), tmp_path, verbose=0, log=lambda message: None)
    batch = config.stages["mdn"].batch_size or config.data.batch_size
    assert seen == [(2 * batch, config.model.latent_dim)]


def test_init_weights_start_every_stage_from_a_trained_model(tmp_path, smoke_run, tiny_experiment):
    """`init_weights` (CLI `--init-weights`): fine-tuning starts from the trained model's weights.

    One VAE step at a learning rate of 1e-12 moves no weight by more than about 1e-12 (Adam),
    so the run's model must equal the trained one; without `init_weights` it would be a fresh
    random model (differences of order 0.1).
    """
    config = tiny_experiment(epochs=1, steps_per_epoch=1)
    still = {name: dataclasses.replace(stage, learning_rate=1e-12)
             for name, stage in config.stages.items()}
    messages = []
    model = train(dataclasses.replace(config, stages=still), tmp_path, stage="vae", verbose=0,
                  log=messages.append, init_weights=str(smoke_run.run_dir / "model.keras"))
    assert any(message.startswith("weights initialized from ") for message in messages)
    trained = smoke_run.model.backbone.weights
    assert len(model.backbone.weights) == len(trained)
    for mine, theirs in zip(model.backbone.weights, trained):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=0, atol=1e-6,
                                   err_msg=mine.path)


def test_init_weights_are_not_loaded_when_the_run_resumes(tmp_path, smoke_run, tiny_experiment,
                                                         monkeypatch):
    """A resumed run's checkpoints replace every weight: the `init_weights` model is not read
    (it was loaded and then overwritten). A backup that `repair_stage` drops does not count."""
    from tfgcrf.models import loading

    config = tiny_experiment(epochs=1, steps_per_epoch=1)
    source = str(smoke_run.run_dir / "model.keras")
    loads, messages = [], []
    real = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda spec, *a, **k: loads.append(spec) or real(spec, *a, **k))

    def run():
        loads.clear()
        messages.clear()
        return train(config, tmp_path, stage="vae", verbose=0, log=messages.append, init_weights=source)

    first = run()
    assert loads == [source] and f"weights initialized from {source}" in messages
    # The stage is complete: a second start (e.g. to run the next stages) resumes from it.
    again = run()
    assert loads == [] and any(m.startswith(f"init weights {source} not loaded: the run resumes")
                               for m in messages)
    for mine, theirs in zip(again.weights, first.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    # A running stage's backup resumes as well (BackupAndRestore restores every weight) ...
    paths = StagePaths(tmp_path / "vae")
    paths.marker.unlink()
    paths.final.unlink()
    assert not paths.resumes()
    paths.backup.mkdir()
    (paths.backup / "latest.weights.h5").write_bytes(b"not an HDF5 file")
    assert paths.resumes()
    # ... unless it is unusable: dropped by the repair, and the init weights are loaded.
    run()
    assert any("is corrupt" in m for m in messages) and loads == [source]
    assert f"weights initialized from {source}" in messages and paths.is_done()


def test_init_weights_of_another_architecture_is_one_clear_error(tmp_path, smoke_run,
                                                                   tiny_experiment):
    config = tiny_experiment()
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, latent_dim=6))
    with pytest.raises(UserError, match=r"^init weights .* hold another architecture: .* has "
                                        r"shape .*, this model's .*"):
        train(wider, tmp_path, verbose=0, log=lambda message: None,
              init_weights=str(smoke_run.run_dir / "model.keras"))
    with pytest.raises(UserError, match="no such model file"):
        train(config, tmp_path / "other", verbose=0, log=lambda message: None,
              init_weights=str(tmp_path / "missing.keras"))
