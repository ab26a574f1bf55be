"""The three-stage training of `GCRFColorizer` with Keras `fit`, resumable after a crash.

Run directory layout (everything needed to resume lives here):

    RUN_DIR/config.yaml                 the experiment, as resolved at the first start
    RUN_DIR/STAGE/backup/               BackupAndRestore state of a running stage (epoch + weights)
    RUN_DIR/STAGE/latest.weights.h5     weights after the stage's most recent epoch
    RUN_DIR/STAGE/final.weights.h5      weights when the stage completed
    RUN_DIR/STAGE/done.json             completion marker (history of the stage)
    RUN_DIR/STAGE/logs/                 TensorBoard scalars and image previews
    RUN_DIR/model.keras                 the final model (keras.saving.load_model)

Stages run in order vae -> hoc -> mdn. A completed stage (its `done.json` and final weights exist)
is never run again: its weights are loaded and training continues with the next one; a stage that
was interrupted resumes from its last finished epoch. A checkpoint file damaged by a kill is
reported in one line naming it, and the run falls back to the previous good state
(`trainers/checkpoints.py`).
"""

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import keras
import tensorflow as tf

from tfgcrf.config import STAGES, load_config, save_config
from tfgcrf.data import make_dataset
from tfgcrf.errors import UserError
from tfgcrf.models import GCRFColorizer
from tfgcrf.models.rebalance import ab_histogram, rebalancing_weights
from tfgcrf.trainers.callbacks import HocSchedule, PreviewImages
from tfgcrf.trainers.checkpoints import repair_stage

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
# Training batches whose colors make the class-rebalancing histogram.
REBALANCE_BATCHES = 100


class StagePaths:
    """Files of one stage in a run directory (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root)
        self.backup = self.root / "backup"
        self.latest = self.root / "latest.weights.h5"
        self.final = self.root / "final.weights.h5"
        self.marker = self.root / "done.json"
        self.logs = self.root / "logs"

    def is_done(self):
        return self.marker.is_file() and self.final.is_file()


def resolve_strategy(name):
    """The `tf.distribute` strategy named by `ExperimentConfig.strategy`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def stages_through(requested):
    """The stages a request needs, in order: "all" or one stage name (plus the ones before it)."""
    if requested == "all":
        return list(STAGES)
    if requested not in STAGES:
        raise UserError(f"stage must be 'all' or one of {list(STAGES)}, got {requested!r}")
    return list(STAGES[: STAGES.index(requested) + 1])


def _check_run_dir_config(run_dir, config):
    """Writes config.yaml on a first start; refuses to resume a run of a different model."""
    path = run_dir / CONFIG_FILE
    if path.is_file():
        previous = load_config(path)
        if previous.model != config.model:
            raise UserError(
                f"{run_dir} holds a run with a different model configuration; "
                "use a new --run-dir (or delete the old one)"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _datasets(config, stage):
    """(training, validation or None, preview batch) for one stage."""
    data = config.data
    stage_config = config.stages[stage]
    common = dict(
        image_size=config.model.image_size,
        batch_size=stage_config.batch_size or data.batch_size,
        seed=config.seed,
        data_dir=data.data_dir or None,
    )
    augment = data.augmentation()
    train = make_dataset(
        data.source,
        split=data.train_split,
        training=True,
        crops_per_image=data.crops_per_image,
        crop_scale=augment.crop_scale,
        crop_aspect=augment.crop_aspect,
        flip=augment.flip,
        source_balance=augment.source_balance,
        white_weight=augment.white_weight,
        **common,
    )
    if stage_config.steps_per_epoch:
        train = train.repeat()
    validation = None
    if data.val_split:
        validation = make_dataset(data.source, split=data.val_split, training=False, **common)
    # A separate uncached pipeline: a partial read of a cached one makes tf.data warn.
    preview = make_dataset(
        data.source,
        split=data.val_split or data.train_split,
        training=False,
        cache=False,
        **{**common, "batch_size": data.num_preview},
    )
    gray, ab = next(iter(preview))
    return train, validation, (gray, ab)


def _run_stage(model, config, stage, paths, strategy, verbose):
    stage_config = config.stages[stage]
    train, validation, (gray, ab) = _datasets(config, stage)
    if stage == "vae" and config.model.rebalance_lambda < 1.0:
        counts = ab_histogram(train, max_batches=REBALANCE_BATCHES)
        model.set_color_weights(rebalancing_weights(counts, config.model.rebalance_lambda))
    with strategy.scope():
        model.compile_stage(stage, learning_rate=stage_config.learning_rate)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(paths.backup), double_checkpoint=True),
        keras.callbacks.ModelCheckpoint(str(paths.latest), save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(paths.logs), write_graph=False),
        PreviewImages(paths.logs / "previews", gray, ab),
    ]
    if stage == "hoc":
        callbacks.insert(0, HocSchedule(stage_config.hoc_schedule))
    with warnings.catch_warnings():
        # Keras warns when a finite dataset of unknown length ends an epoch: that is how epochs
        # end without steps_per_epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = _fit(model, train, validation, stage_config, callbacks, verbose)
    losses = history.history.get("loss", [])
    if model.stop_training or not all(math.isfinite(value) for value in losses):
        # TerminateOnNaN stopped it (the only callback that stops training).
        raise UserError(
            f"stage {stage} stopped on a non-finite loss; lower "
            f"stages.{stage}.learning_rate and run the same command again"
        )
    return history.history


def _fit(model, train, validation, stage_config, callbacks, verbose):
    # BackupAndRestore resumes by setting model._initial_epoch, which Keras never clears: a stage
    # resumed at epoch k would make every later stage of the same process start at epoch k too.
    model._initial_epoch = None
    return model.fit(
        train,
        epochs=stage_config.epochs,
        steps_per_epoch=stage_config.steps_per_epoch or None,
        validation_data=validation,
        validation_steps=stage_config.validation_steps or None,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=verbose,
    )


def _finish_stage(model, paths, history, started):
    model.save_weights(str(paths.final))
    summary = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(time.time() - started, 1),
        "history": history,
    }
    # The marker is written last: a stage only counts as done once its final weights exist.
    paths.marker.write_text(json.dumps(summary, indent=2))


def train(config, run_dir, stage="all", data_source=None, strategy=None, verbose="auto", log=print):
    """Trains `config` in `run_dir` through `stage`, resuming whatever a previous run left.

    Args:
        config: an `ExperimentConfig`.
        run_dir: the run directory (created if needed).
        stage: "all", or the last stage to run ("vae", "hoc" or "mdn"; earlier stages that are not
            complete yet run first).
        data_source: overrides `config.data.source`.
        strategy: a `tf.distribute.Strategy`; None resolves `config.strategy`.
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        log: function receiving one-line progress messages.

    Returns:
        The trained `GCRFColorizer` (also saved as `RUN_DIR/model.keras`).
    """
    if data_source:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, source=data_source)
        )
    run_dir = Path(run_dir)
    _check_run_dir_config(run_dir, config)
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or resolve_strategy(config.strategy)
    with strategy.scope():
        model = GCRFColorizer(config.model)
        # ImageNet weights of a frozen backbone, if any (a resumed stage then restores the rest).
        model.load_pretrained()
    for name in stages_through(stage):
        paths = StagePaths(run_dir / name)
        repair_stage(paths, name, log)  # a corrupt checkpoint left by a kill: say so, fall back
        if paths.is_done():
            log(f"stage {name}: already complete, loading {paths.final}")
            model.load_weights(str(paths.final))
            continue
        epochs = config.stages[name].epochs
        log(f"stage {name}: training ({epochs} epoch{'s' if epochs != 1 else ''})")
        paths.root.mkdir(parents=True, exist_ok=True)
        started = time.time()
        history = _run_stage(model, config, name, paths, strategy, verbose)
        _finish_stage(model, paths, history, started)
        log(f"stage {name}: done in {time.time() - started:.0f} s, final {_last(history)}")
    model.set_stage(name)
    model.save(str(run_dir / MODEL_FILE))
    log(f"saved {run_dir / MODEL_FILE}")
    return model


def _last(history):
    return ", ".join(f"{key}={values[-1]:.4g}" for key, values in sorted(history.items()))


def stage_summary(run_dir):
    """{stage: done.json contents} of the completed stages of a run directory."""
    run_dir = Path(run_dir)
    return {
        name: json.loads(StagePaths(run_dir / name).marker.read_text())
        for name in STAGES
        if StagePaths(run_dir / name).is_done()
    }

