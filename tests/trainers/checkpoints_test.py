"""Corrupt checkpoints left by a kill: found, named in one line, and replaced by the last good state."""

import json
import shutil

import numpy as np
import pytest

from tfgcrf.trainers.checkpoints import json_problem, repair_stage, weights_problem
from tfgcrf.trainers.training import StagePaths, stage_summary, train


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """A copy of the trained smoke run directory (all stages complete) to damage."""
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run.run_dir, run_dir)
    return run_dir


def test_problems_are_found_in_damaged_files(run_copy, tmp_path):
    final = StagePaths(run_copy / "vae").final
    assert weights_problem(final) is None
    _truncate(final)
    assert weights_problem(final)
    (tmp_path / "zero.h5").write_bytes(b"")
    assert weights_problem(tmp_path / "zero.h5")
    (tmp_path / "meta.json").write_text('{"epo')
    assert "JSONDecodeError" in json_problem(tmp_path / "meta.json")
    (tmp_path / "meta.json").write_text('{"batch": 0}')
    assert "epoch" in json_problem(tmp_path / "meta.json", required=("epoch",))


def test_corrupt_final_weights_fall_back_to_the_last_epoch(run_copy, smoke_run):
    paths = StagePaths(run_copy / "mdn")
    _truncate(paths.final)
    lines = []
    model = train(smoke_run.config, run_copy, verbose=0, log=lines.append)
    repair = [line for line in lines if " is corrupt (" in line]
    assert len(repair) == 1 and str(paths.final) in repair[0] and str(paths.latest) in repair[0]
    assert not any("training" in line for line in lines)  # nothing re-trained
    for ours, theirs in zip(model.get_weights(), smoke_run.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow  # trains stages: 65-130 s at load 9 (README "Tests")
def test_corrupt_marker_reruns_the_stage_saying_so(run_copy, smoke_run):
    paths = StagePaths(run_copy / "mdn")
    paths.marker.write_text('{"finished": "2026-')
    lines = []
    train(smoke_run.config, run_copy, verbose=0, log=lines.append)
    assert any(str(paths.marker) in line and "runs again" in line for line in lines)
    assert "stage mdn: training (1 epoch)" in lines
    assert list(stage_summary(run_copy)) == ["vae", "hoc", "mdn"]


def _interrupted_stage(run_dir, smoke_model, stage="mdn"):
    """The stage as a kill leaves it: no marker, a backup pair and the previous one (.bkp)."""
    paths = StagePaths(run_dir / stage)
    paths.marker.unlink()
    paths.final.unlink()
    paths.backup.mkdir()
    for suffix in ("", ".bkp"):
        smoke_model.save_weights(str(paths.backup / "saved.weights.h5"))  # Keras wants this suffix
        (paths.backup / "saved.weights.h5").rename(paths.backup / f"latest.weights.h5{suffix}")
        (paths.backup / f"training_metadata.json{suffix}").write_text(json.dumps({"epoch": 1, "batch": 0}))
    return paths


@pytest.mark.slow  # trains stages: 65-130 s at load 9 (README "Tests")
def test_corrupt_backup_resumes_from_the_previous_one(run_copy, smoke_run):
    paths = _interrupted_stage(run_copy, smoke_run.model)
    metadata = paths.backup / "training_metadata.json"
    metadata.write_text('{"epoch": ')
    lines = []
    train(smoke_run.config, run_copy, verbose=0, log=lines.append)
    repair = [line for line in lines if " is corrupt (" in line]
    assert len(repair) == 1 and str(metadata) in repair[0] and "previous backup (epoch 1)" in repair[0]
    # Epoch 1 of 1 was already done: nothing runs, and the stage's history is the epoch's.
    summary = stage_summary(run_copy)["mdn"]
    assert summary["resumed_from_epoch"] == 1 and len(summary["history"]["loss"]) == 1


@pytest.mark.slow  # trains stages: 65-130 s at load 9 (README "Tests")
def test_no_good_backup_starts_the_stage_over(run_copy, smoke_run):
    paths = _interrupted_stage(run_copy, smoke_run.model)
    weights = paths.backup / "latest.weights.h5"
    _truncate(weights)
    _truncate(paths.backup / "latest.weights.h5.bkp", keep=0.1)
    lines = []
    repair_stage(paths, "mdn", lines.append)
    assert len(lines) == 1 and str(weights) in lines[0] and "starting stage mdn over" in lines[0]
    assert not paths.backup.exists()
    train(smoke_run.config, run_copy, verbose=0, log=lines.append)
    assert len(stage_summary(run_copy)["mdn"]["history"]["loss"]) == smoke_run.config.stages["mdn"].epochs
