"""`tfgcrf train`/`serve` on infrastructure failures, plain logs when redirected, mixed precision."""

import dataclasses
import io
import os
import shutil
import socket
from pathlib import Path

import keras
import numpy as np
import pytest

from tfgcrf import cli
from tfgcrf.trainers.distribute import LOCK_FILE, RunLock
from tfgcrf.trainers.training import MODEL_FILE, stage_summary, train


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("tfgcrf: error: "), err
    return lines[-1]


def test_disk_full_when_saving_the_model_is_one_line(tmp_path, smoke_run, capsys):
    # A finished run without its model.keras: `train` only loads the stages and saves the model.
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run.run_dir, run_dir)
    (run_dir / MODEL_FILE).unlink()
    # The model is written through a temporary file first: make that write hit a full disk.
    (run_dir / ".model.partial.keras").symlink_to("/dev/full")
    code = cli.main(["train", "--config", str(run_dir / "config.yaml"), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert "no space left on device" in _one_error_line(err)
    assert not (run_dir / MODEL_FILE).exists() and not (run_dir / ".model.partial.keras").exists()


def test_unwritable_run_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = cli.main(["train", "--config", "smoke", "--run-dir", str(blocker / "run")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1
    assert str(blocker) in line and "not a folder" in line


def test_a_run_folder_in_use_is_one_line_and_left_alone(tmp_path, capsys):
    """A second `tfgcrf train` on a folder another run holds (a retried job, a run thought hung)
    is refused before it reads or writes anything; the lock goes with its holder."""
    run_dir = tmp_path / "run"
    with RunLock(run_dir):  # another open file: the kernel's flock conflicts as across processes
        code = cli.main(["train", "--config", "smoke", "--run-dir", str(run_dir)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert f"{run_dir} is in use by another training run (pid {os.getpid()} on " in line
    assert [path.name for path in run_dir.iterdir()] == [LOCK_FILE]  # no config.yaml, no stage
    with RunLock(run_dir):  # released with its holder
        pass


def test_port_in_use_is_one_line(tmp_path, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        code = cli.main(["serve", "--model-dir", str(tmp_path), "--grpc-port", "0",
                         "--rest-port", str(port)])
    finally:
        busy.close()
    line = _one_error_line(capsys.readouterr().err)
    assert code != 0 and "in use" in line


def test_progress_has_no_color_codes_when_not_a_terminal(monkeypatch, capsys):
    from tfgcrf.trainers import training

    seen = {}
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: seen.update(kwargs))
    assert cli.main(["train", "--config", "smoke", "--run-dir", "unused"]) == 0
    # capsys's stdout is not a terminal: one plain line per epoch instead of the redrawn bar.
    assert seen["verbose"] == 2
    progress = io.StringIO()
    monkeypatch.setattr("sys.stdout", progress)
    bar = keras.utils.Progbar(3, verbose=seen["verbose"])
    for step in range(1, 4):
        bar.update(step, values=[("loss", 1.0 / step)])
    assert "loss:" in progress.getvalue() and "\x1b" not in progress.getvalue()


@pytest.mark.slow  # trains stages: 65-130 s at load 9 (README "Tests")
def test_mixed_precision_keeps_the_gcrf_in_float32(tmp_path, tiny_experiment):
    config = dataclasses.replace(tiny_experiment(epochs=1, steps_per_epoch=2), mixed_precision=True)
    model = train(config, tmp_path, stage="hoc", verbose=0, log=lambda message: None)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.backbone.trunk.compute_dtype == "float16" and model.backbone.decoder.compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in model.weights if "iteration" not in v.path)
    assert model.train_crf.compute_dtype == "float32"
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    history = stage_summary(tmp_path)
    assert set(history) == {"vae", "hoc"}
    assert all(np.isfinite(v) for stage in history.values()
               for values in stage["history"].values() for v in values)
    assert Path(tmp_path, "model.keras").is_file()
