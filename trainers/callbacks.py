"""Keras callbacks of the three-stage training: the HOC reveal schedule, TensorBoard scalars and
image previews at the run's global step, and the multi-worker resume agreement."""

import json
import os
import shutil
import sys
import time

import keras
import tensorflow as tf

from tfgcrf import color
from tfgcrf.trainers import distribute


def global_step(model, step_offset):
    """The run's TensorBoard step: optimizer steps of the earlier stages + of this one."""
    return int(step_offset) + int(model.optimizer.iterations.numpy())


class ChiefSync(keras.callbacks.Callback):
    """After `BackupAndRestore` restored each worker's own backup: the chief's epoch and state win.

    Workers killed and restarted at different points may hold backups of different epochs; the
    epoch to continue from, the weights and the optimizer state are broadcast from the chief, so
    that every replica starts the stage again from the same state. A no-op with one replica.

    Args:
        strategy: the training strategy.
    """

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def on_train_begin(self, logs=None):
        if self.strategy.num_replicas_in_sync < 2:
            return
        model = self.model
        model._initial_epoch = distribute.chief_value(self.strategy, model._initial_epoch or 0) or None
        distribute.sync_from_chief(self.strategy, model.weights + model.optimizer.variables)


class WorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` of a non-chief worker: an unreadable backup is dropped, not fatal.

    A worker killed while writing its backup leaves a broken file; since `ChiefSync` gives every
    worker the chief's epoch and state right after, the worker simply starts without its own.
    """

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError as err:
            print(f"tfgcrf train: this worker's backup {self.backup_dir} is unreadable "
                  f"({str(err).splitlines()[0]}); continuing from the chief's state",
                  file=sys.stderr, flush=True)
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            self.model._initial_epoch = None


def read_epoch_history(path):
    """The entries `EpochHistory` wrote to `path` ([] when it is missing or unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "logs" in e for e in entries):
        return []
    return entries


class EpochHistory(keras.callbacks.Callback):
    """A stage's per-epoch logs and wall seconds in `path`, kept across resumed processes.

    Keras' `History` holds the epochs of one `fit` call only: a stage killed after epoch 2 and
    resumed would report epochs 3.. alone. At the end of epoch k the entries of epochs 0..k-1
    (this process's or an earlier one's) are kept and later ones dropped (a resume from an older
    backup runs them again); the file is replaced atomically.

    Attributes (after `fit`): `first_epoch`, the epoch this process started at (0: not resumed),
    and `earlier_seconds`, the wall seconds of the epochs before it.
    """

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        self.first_epoch = None
        self.earlier_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
            self.earlier_seconds = sum(float(e.get("seconds", 0.0))
                                       for e in read_epoch_history(self.path)[:epoch])
        self._began = time.time()

    def on_train_end(self, logs=None):
        if self.first_epoch is None:  # resumed after the last epoch: nothing ran in this process
            entries = read_epoch_history(self.path)
            self.first_epoch = len(entries)
            self.earlier_seconds = sum(float(e.get("seconds", 0.0)) for e in entries)

    def on_epoch_end(self, epoch, logs=None):
        entries = read_epoch_history(self.path)[:epoch]
        entries.append({
            "epoch": epoch,
            "logs": {name: float(value) for name, value in (logs or {}).items()},
            "seconds": round(time.time() - self._began, 1),
        })
        staging = f"{self.path}.tmp"
        with open(staging, "w", encoding="utf-8") as f:
            json.dump(entries, f)
        os.replace(staging, self.path)

    def history(self):
        """`{name: [value per epoch]}` of every epoch of the stage, as Keras' `History.history`."""
        entries = read_epoch_history(self.path)
        names = [name for name in entries[-1]["logs"]] if entries else []
        return {name: [e["logs"].get(name, float("nan")) for e in entries] for name in names}


class StageLog(keras.callbacks.Callback):
    """TensorBoard scalars of a stage at the run's global step, and the run's hparams.

    At every epoch end: `epoch_<name>` for every value Keras reports (loss, the stage's metrics,
    `val_*`) and `epoch_learning_rate`, all at `global_step` (optimizer steps since the start of
    the run, so consecutive stages continue one axis). The hparams (the flattened config) are
    written once per stage folder.

    Args:
        log_dir: TensorBoard folder of the stage.
        step_offset: optimizer steps of the stages before this one.
        hparams: `{name: bool|int|float|str}` of the run.
    """

    def __init__(self, log_dir, step_offset=0, hparams=None):
        super().__init__()
        self.log_dir = str(log_dir)
        self.step_offset = int(step_offset)
        self.hparams = dict(hparams or {})
        self._writer = None

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hparams_api

        self._writer = tf.summary.create_file_writer(self.log_dir)
        if self.hparams:
            with self._writer.as_default():
                hparams_api.hparams(self.hparams, trial_id=str(self.hparams.get("name", "run")))

    def on_epoch_end(self, epoch, logs=None):
        step = global_step(self.model, self.step_offset)
        optimizer = self.model.optimizer
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        with self._writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"epoch_{name}", float(value), step=step)
            tf.summary.scalar("epoch_learning_rate", rate, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def hoc_schedule(epoch, schedule):
    """Fraction of unary pixels revealed to the G-CRF at `epoch` (0-based).

    Args:
        epoch: the epoch index.
        schedule: (first epoch, fraction) pairs with increasing epochs, starting at epoch 0,
            e.g. the paper's ((0, 1.0), (2, 0.75), (4, 0.5), (6, 0.25), (8, 0.1)).
    """
    fraction = schedule[0][1]
    for first_epoch, value in schedule:
        if epoch >= first_epoch:
            fraction = value
    return float(fraction)


class HocSchedule(keras.callbacks.Callback):
    """Sets `model.reveal_fraction` from `hoc_schedule` at the start of every epoch.

    Driven by the epoch index, so a run resumed by `BackupAndRestore` continues at the right level.

    Args:
        schedule: (first epoch, fraction) pairs, see `hoc_schedule`.
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = tuple(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reveal_fraction.assign(hoc_schedule(epoch, self.schedule))


class PreviewImages(keras.callbacks.Callback):
    """Writes TensorBoard image summaries of what the current stage produces, every epoch.

    Each summary image is one row per preview photo: ground truth, then
      * vae: the VAE reconstruction (decoder at the posterior mean) and two samples with z drawn
        from the prior N(0, I);
      * hoc: the unary colors and the G-CRF restoration at the current reveal fraction;
      * mdn: the top three samples of the mixture, through the G-CRF.

    Args:
        log_dir: TensorBoard folder of the stage.
        gray: `[N, H, W, 1]` preview gray images.
        ab: `[N, H, W, 2]` their true chroma.
        step_offset: optimizer steps of the stages before this one (images are logged at the
            run's global step, as `StageLog`'s scalars).
    """

    def __init__(self, log_dir, gray, ab, step_offset=0):
        super().__init__()
        self.log_dir = str(log_dir)
        self.step_offset = int(step_offset)
        self.gray = tf.convert_to_tensor(gray)
        self.ab = tf.convert_to_tensor(ab)
        self._writer = None

    def panels(self):
        """The chroma fields shown next to the ground truth, each `[N, H, W, 2]`."""
        model = self.model
        # The training solver: previews must not cost a dense O(P^3) solve per image each epoch.
        solver = model.training_config.train_solver
        if model.stage == "vae":
            # The MDN is not trained yet: samples draw z from the VAE prior N(0, I).
            shape = [len(self.gray), model.model_config.latent_dim]
            prior = [tf.random.stateless_normal(shape, seed=[seed, 0]) for seed in (1, 2)]
            return [model.reconstruct(self.gray, self.ab, use_gcrf=False)] + [
                model.unary(self.gray, z) for z in prior
            ]
        if model.stage == "hoc":
            fraction = model.reveal_fraction
            return [
                model.reconstruct(self.gray, self.ab, use_gcrf=False),
                model.reconstruct(self.gray, self.ab, reveal_fraction=fraction, solver=solver),
            ]
        count = min(3, model.model_config.num_components)
        samples, _ = model.sample(self.gray, count, mode="top", solver=solver)
        return tf.unstack(samples, axis=1)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        # float32 also when the model computes in float16 (mixed precision).
        fields = [self.ab, *(tf.cast(field, tf.float32) for field in self.panels())]
        rows = tf.concat([color.model_to_rgb(self.gray, field) for field in fields], axis=2)
        with self._writer.as_default():
            tag = f"{self.model.stage}/previews"
            step = global_step(self.model, self.step_offset)
            tf.summary.image(tag, rows, step=step, max_outputs=len(rows))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
