"""Multi-worker training: two `tfgcrf train` processes on loopback ports, configured by TF_CONFIG."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tfgcrf.config import STAGES, save_config
from tfgcrf.trainers.training import StagePaths, stage_summary, train

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
TIMEOUT = 420


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Cluster:
    """Two workers of one TF_CONFIG cluster, each `tfgcrf train` with its own run folder."""

    def __init__(self, tmp_path, config_path, ports):
        self.tmp_path = tmp_path
        self.config_path = config_path
        self.workers = [f"127.0.0.1:{port}" for port in ports]
        self.run_dirs = [tmp_path / "chief_run", tmp_path / "worker1_run"]
        self.processes = []
        self.logs = []

    def start(self, tag):
        self.processes, self.logs = [], []
        for index, run_dir in enumerate(self.run_dirs):
            tf_config = {"cluster": {"worker": self.workers}, "task": {"type": "worker", "index": index}}
            log = self.tmp_path / f"{tag}-{index}.log"
            command = [sys.executable, "-m", "tfgcrf.cli", "train", "--config", str(self.config_path),
                       "--run-dir", str(run_dir), "--strategy", "multi_worker", "--quiet"]
            with open(log, "w") as handle:
                self.processes.append(subprocess.Popen(
                    command, stdout=handle, stderr=subprocess.STDOUT,
                    env={**ENV, "TF_CONFIG": json.dumps(tf_config)},
                ))
            self.logs.append(log)

    def wait(self, timeout=TIMEOUT):
        deadline = time.time() + timeout
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=max(1, deadline - time.time())))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"workers did not finish: {self.tails()}") from None
        return codes

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def tails(self):
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}" for log in self.logs)


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(config):
        save_config(config, tmp_path / "tiny.yaml")
        made.append(Cluster(tmp_path, tmp_path / "tiny.yaml", _free_ports(2)))
        return made[-1]

    yield make
    for each in made:
        each.kill()


def _global_batch_config(tiny_experiment, **stage_changes):
    config = tiny_experiment(epochs=1, steps_per_epoch=2)
    stages = {name: dataclasses.replace(stage, **stage_changes.get(name, {}))
              for name, stage in config.stages.items()}
    # A global batch of 4: 2 images per worker.
    data = dataclasses.replace(config.data, batch_size=4)
    return dataclasses.replace(config, data=data, stages=stages)


@pytest.mark.slow  # two training workers, all stages: 483 s at load 9 (README "Tests")
def test_two_workers_train_all_stages_like_one_worker(tmp_path, cluster, tiny_experiment):
    config = _global_batch_config(tiny_experiment)
    workers = cluster(config)
    workers.start("train")
    # Meanwhile, the same config on one worker (default strategy, same global batch and seed).
    single = train(config, tmp_path / "single_run", verbose=0, log=lambda message: None)
    assert workers.wait() == [0, 0], workers.tails()

    chief_dir, worker_dir = workers.run_dirs
    # Only the chief's run folder holds the model, the checkpoints and the logs.
    assert (chief_dir / "model.keras").is_file()
    assert list(stage_summary(chief_dir)) == list(STAGES)
    assert all(StagePaths(chief_dir / stage).latest.is_file() for stage in STAGES)
    assert not list(worker_dir.rglob("*.keras")) and not list(worker_dir.rglob("*tfevents*"))
    assert not list(worker_dir.rglob("latest.weights.h5"))
    assert not list(worker_dir.rglob("workertemp"))
    # The other worker keeps only what it needs to resume.
    worker_state = worker_dir / "workers" / "worker-1"
    assert list(stage_summary(worker_state)) == list(STAGES)

    # Same global batches (sharded by data), same random draws, gradients all-reduced: the two
    # workers train the model one worker trains, up to float32 summation order.
    distributed = keras.saving.load_model(chief_dir / "model.keras")
    for ours, theirs in zip(distributed.weights, single.weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=2e-5,
                                   err_msg=ours.path)
    chief_losses = {s: d["history"]["loss"] for s, d in stage_summary(chief_dir).items()}
    single_losses = {s: d["history"]["loss"] for s, d in stage_summary(tmp_path / "single_run").items()}
    for stage in STAGES:
        np.testing.assert_allclose(chief_losses[stage], single_losses[stage], rtol=1e-4)
    assert "chief of a 2-replica multi-worker cluster" in workers.logs[0].read_text()


@pytest.mark.slow  # the same two-worker training, plus a killed and restarted worker (README "Tests")
def test_killed_worker_restarts_and_the_run_resumes(tmp_path, cluster, tiny_experiment):
    hoc_epochs = 4
    config = _global_batch_config(
        tiny_experiment, hoc={"epochs": hoc_epochs, "steps_per_epoch": 1},
        vae={"steps_per_epoch": 1}, mdn={"steps_per_epoch": 1},
    )
    workers = cluster(config)
    chief_dir = workers.run_dirs[0]
    hoc_progress = StagePaths(chief_dir / "hoc").backup / "training_metadata.json"
    workers.start("first")
    deadline = time.time() + TIMEOUT
    while not hoc_progress.exists() and time.time() < deadline:
        assert all(p.poll() is None for p in workers.processes), workers.tails()
        time.sleep(0.1)
    assert hoc_progress.exists(), workers.tails()
    os.kill(workers.processes[1].pid, signal.SIGKILL)
    # The chief cannot go on without its peer: it stops with one line (after the coordination
    # service's heartbeat timeout) instead of hanging.
    chief_code = workers.processes[0].wait(timeout=TIMEOUT)
    chief_log = workers.logs[0].read_text()
    assert chief_code == 2, chief_log[-3000:]
    assert "tfgcrf: error: a worker of the cluster stopped" in chief_log
    assert "Traceback" not in chief_log
    vae_marker = StagePaths(chief_dir / "vae").marker
    assert vae_marker.is_file() and not StagePaths(chief_dir / "hoc").is_done()
    vae_done = vae_marker.read_text()

    workers.start("second")
    assert workers.wait() == [0, 0], workers.tails()
    for log in workers.logs:
        text = log.read_text()
        assert "stage vae: already complete" in text and "stage vae: training" not in text
    assert vae_marker.read_text() == vae_done
    summary = stage_summary(chief_dir)
    assert list(summary) == list(STAGES)
    # The second run only trained the HOC epochs the first one had not finished; the stage's
    # history still has every epoch (the killed run's from the chief's hoc/history.json).
    assert 0 < summary["hoc"]["resumed_from_epoch"] < hoc_epochs
    assert len(summary["hoc"]["history"]["loss"]) == hoc_epochs
    assert (chief_dir / "model.keras").is_file()
    assert not list(workers.run_dirs[1].rglob("*.keras"))
