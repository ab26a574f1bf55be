"""The three-stage training of `GCRFColorizer` with Keras `fit`, resumable after a crash.

Run directory layout (everything needed to resume lives here):

    RUN_DIR/config.yaml                 the experiment, as resolved at the first start
    RUN_DIR/STAGE/backup/               BackupAndRestore state of a running stage (epoch + weights)
    RUN_DIR/STAGE/latest.weights.h5     weights after the stage's most recent epoch
    RUN_DIR/STAGE/final.weights.h5      weights when the stage completed
    RUN_DIR/STAGE/history.json          every finished epoch's logs and wall seconds (kept across
                                        resumes; done.json's history is made from it)
    RUN_DIR/STAGE/done.json             completion marker (history of the stage)
    RUN_DIR/STAGE/logs/                 TensorBoard: per-epoch scalars (loss, metrics, learning
                                        rate) at the run's global step, image previews, hparams
    RUN_DIR/model.keras                 the final model (keras.saving.load_model)
    RUN_DIR/workers/TASK-I/             multi-worker only: what a non-chief worker needs to
                                        resume (its config.yaml, STAGE/backup, STAGE/final +
                                        done.json); its other outputs go to a temporary folder

Stages run in order vae -> hoc -> mdn. A completed stage (its `done.json` and final weights exist)
is never run again: its weights are loaded and training continues with the next one; a stage that
was interrupted resumes from its last finished epoch. A checkpoint file damaged by a kill is
reported in one line naming it, and the run falls back to the previous good state
(`trainers/checkpoints.py`). TensorBoard steps count optimizer steps over the whole run, so the
three stages follow each other on one axis.
"""

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfgcrf.config import STAGES, as_plain_dict, config_changes, load_config, save_config
from tfgcrf.data import make_dataset
from tfgcrf.errors import UserError
from tfgcrf.models import GCRFColorizer
from tfgcrf.models.gcrf_backbone import policy_scope
from tfgcrf.models.rebalance import ab_histogram, rebalancing_weights
from tfgcrf.trainers import distribute
from tfgcrf.trainers.callbacks import (
    ChiefSync,
    EpochHistory,
    HocSchedule,
    PreviewImages,
    StageLog,
    WorkerBackupAndRestore,
)
from tfgcrf.trainers.checkpoints import backup_weights_file, repair_stage

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
# Training batches whose colors make the class-rebalancing histogram.
REBALANCE_BATCHES = 100


class StagePaths:
    """Files of one stage in a run directory (see the module docstring).

    Args:
        root: the stage's folder of resume state (backup, final weights, marker).
        output_root: the stage's folder of outputs (latest weights, logs); `root` by default, a
            temporary folder on the non-chief workers of a multi-worker run.
    """

    def __init__(self, root, output_root=None):
        self.root = Path(root)
        output_root = Path(output_root) if output_root else self.root
        self.backup = self.root / "backup"
        self.latest = output_root / "latest.weights.h5"
        self.final = self.root / "final.weights.h5"
        self.marker = self.root / "done.json"
        self.history = self.root / "history.json"
        self.logs = output_root / "logs"

    def is_done(self):
        return self.marker.is_file() and self.final.is_file()

    def resumes(self):
        """True when this stage's checkpoints replace every weight of the model before it trains:
        the stage is complete (its final weights are loaded) or a running stage's backup exists
        (BackupAndRestore restores it). Call after `repair_stage`, which drops unusable files."""
        return self.is_done() or backup_weights_file(self.backup).is_file()

    def steps(self):
        """Optimizer steps of the completed stage (0 for markers written before they were kept)."""
        return int(json.loads(self.marker.read_text()).get("steps", 0))


resolve_strategy = distribute.resolve_strategy


def stages_through(requested):
    """The stages a request needs, in order: "all" or one stage name (plus the ones before it)."""
    if requested == "all":
        return list(STAGES)
    if requested not in STAGES:
        raise UserError(f"stage must be 'all' or one of {list(STAGES)}, got {requested!r}")
    return list(STAGES[: STAGES.index(requested) + 1])


def _check_run_dir_config(run_dir, config, log):
    """Writes config.yaml; refuses to resume a run of another model, names changed settings.

    The architecture and inference settings (`model:`) must match the run's; the training
    settings (`training:`, `stages:`, `data:`) may change between starts and apply from the next
    epoch that runs: changes of `training:` and `stages:` are logged in one line.
    """
    path = run_dir / CONFIG_FILE
    if path.is_file():
        with warnings.catch_warnings():
            # A run folder of an older version: its model: section holds the training keys.
            warnings.simplefilter("ignore", FutureWarning)
            previous = load_config(path)
        if previous.model != config.model:
            changed = "; ".join(config_changes(previous.model, config.model, "model."))
            raise UserError(
                f"{run_dir} holds a run of another model ({changed}); "
                "use a new --run-dir (or delete the old one)"
            )
        changed = config_changes(previous.training, config.training, "training.")
        for name in STAGES:
            changed += config_changes(previous.stages[name], config.stages[name], f"stages.{name}.")
        if changed:
            log(f"resuming with changed settings: {'; '.join(changed)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _shard_by_data(dataset):
    """Every worker reads the whole pipeline and keeps its share of each global batch.

    Folder and generator sources have no files that tf.data could hand out per worker, so the
    sharding is by elements (AutoShardPolicy.DATA) whatever the source.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _datasets(config, stage):
    """(training, validation or None, preview batch) for one stage.

    Batches hold the global batch (`batch_size`): `fit` splits each over the replicas.
    """
    data = config.data
    stage_config = config.stages[stage]
    common = dict(
        image_size=config.model.image_size,
        batch_size=stage_config.batch_size or data.batch_size,
        seed=config.seed,
        data_dir=data.data_dir or None,
        manual_dir=data.manual_dir or None,
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
    train = _shard_by_data(train)
    validation = None
    if data.val_split:
        validation = _shard_by_data(
            make_dataset(data.source, split=data.val_split, training=False, **common)
        )
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


def copy_weights(source, model):
    """Assigns the weights of the trained model `source` (preset name or path) to `model`.

    Raises:
        UserError: `source` does not load, or its weights differ in number or shape (one line
            naming the first difference).
    """
    from tfgcrf.models.loading import load_model

    trained = load_model(source)
    ours, theirs = model.weights, trained.weights
    if len(ours) != len(theirs):
        raise UserError(
            f"init weights {source} hold another architecture: {len(theirs)} weights, "
            f"this model has {len(ours)}"
        )
    for mine, other in zip(ours, theirs):
        if tuple(mine.shape) != tuple(other.shape):
            raise UserError(
                f"init weights {source} hold another architecture: {other.path} has shape "
                f"{tuple(other.shape)}, this model's {mine.path} {tuple(mine.shape)}"
            )
    for mine, other in zip(ours, theirs):
        mine.assign(other)


def _run_stage(model, config, stage, paths, strategy, verbose, step_offset, hparams, is_chief=True):
    stage_config = config.stages[stage]
    train, validation, (gray, ab) = _datasets(config, stage)
    # The class-rebalanced reconstruction loss: the VAE stage's, and the MDN stage's when it
    # scores decoded components with it (training.mdn_loss "decoded").
    reconstructs = stage == "vae" or (stage == "mdn" and config.training.mdn_loss == "decoded")
    if reconstructs and config.training.rebalance_lambda < 1.0:
        counts = ab_histogram(train, max_batches=REBALANCE_BATCHES)
        model.set_color_weights(rebalancing_weights(counts, config.training.rebalance_lambda))
    if stage == "mdn" and stage_config.anchor_batches:
        # Before fit: a resumed stage's BackupAndRestore then overwrites this with its weights.
        with strategy.scope():
            _anchor_mixture(model, train, stage_config.anchor_batches, config.seed)
    with strategy.scope():
        model.compile_stage(stage, learning_rate=stage_config.learning_rate)
    paths.latest.parent.mkdir(parents=True, exist_ok=True)
    epochs = EpochHistory(paths.history)
    callbacks = [
        # Every worker keeps its own backup; ChiefSync then makes the chief's epoch and weights
        # everyone's, so workers restarted at different points continue together.
        (keras.callbacks.BackupAndRestore if is_chief else WorkerBackupAndRestore)(
            str(paths.backup), double_checkpoint=True
        ),
        ChiefSync(strategy),
        epochs,
        keras.callbacks.ModelCheckpoint(str(paths.latest), save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
        StageLog(paths.logs, step_offset, hparams),
        PreviewImages(paths.logs / "previews", gray, ab, step_offset=step_offset),
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
    return epochs.history() or history.history, epochs.first_epoch or 0, epochs.earlier_seconds


def _anchor_mixture(model, train, batches, seed):
    """Initializes the MDN components at k-means centers of training posterior means."""
    codes = [model.posterior(gray, ab)[0].numpy() for gray, ab in train.take(batches)]
    model.backbone.mdn.initialize_from_codes(np.concatenate(codes), seed=seed)


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


def _finish_stage(model, paths, history, started, resumed_from_epoch=0, earlier_seconds=0.0):
    model.save_weights(str(paths.final))
    summary = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # Wall seconds of the whole stage: this process's + the epochs earlier processes ran.
        "seconds": round(time.time() - started + earlier_seconds, 1),
        "steps": int(model.optimizer.iterations.numpy()),
        "resumed_from_epoch": int(resumed_from_epoch),
        "history": history,
    }
    # The marker is written last: a stage only counts as done once its final weights exist.
    paths.marker.write_text(json.dumps(summary, indent=2))


def train(config, run_dir, stage="all", data_source=None, strategy=None, verbose="auto", log=print,
          init_weights=None):
    """Trains `config` in `run_dir` through `stage`, resuming whatever a previous run left.

    Args:
        config: an `ExperimentConfig` (`config.strategy`, `config.mixed_precision` and
            `config.data` say how; see `tfgcrf.trainers.distribute`).
        run_dir: the run directory (created if needed). In a multi-worker run every worker gets
            a run directory (the same shared folder or one per host); only the chief writes the
            outputs there.
        stage: "all", or the last stage to run ("vae", "hoc" or "mdn"; earlier stages that are not
            complete yet run first).
        data_source: overrides `config.data.source`.
        strategy: a `tf.distribute.Strategy`; None resolves `config.strategy`.
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        log: function receiving one-line progress messages.
        init_weights: None to start from random weights (and the ImageNet backbone), or a trained
            model (preset name, folder holding model.keras, or .keras file) of the same
            architecture whose weights every stage starts from: fine-tuning, e.g. the `default`
            preset on your own photos. Fields that hold no weights may differ (e.g.
            `model.backbone_input_scale`, `model.annealed_temperature`). Completed stages and
            a resumed stage's backup take precedence: when the run resumes (its first stage
            is complete or has a backup), `init_weights` is not loaded at all.

    Returns:
        The trained `GCRFColorizer` (also saved as `RUN_DIR/model.keras` by the chief).

    Raises:
        UserError: a run folder of another model or in use by another training process, a
            non-finite loss, bad data or strategy, an `init_weights` model that does not exist
            or has other weight shapes.
        OSError: the run folder cannot be written (permissions, disk full).
    """
    if data_source:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, source=data_source)
        )
    stages = stages_through(stage)
    strategy = strategy or resolve_strategy(config.strategy)
    worker = distribute.Worker(strategy, run_dir)
    with worker.lock():
        return _train(config, stage, stages, strategy, worker, verbose, log, init_weights)


def _train(config, stage, stages, strategy, worker, verbose, log, init_weights):
    _check_run_dir_config(worker.state_root, config, log)
    if worker.multi_worker:
        log(f"{worker.name} of a {strategy.num_replicas_in_sync}-replica multi-worker cluster, "
            f"state in {worker.state_root}")
    keras.utils.set_random_seed(config.seed)
    policy = "mixed_float16" if config.mixed_precision else "float32"
    with policy_scope(policy), strategy.scope():
        model = GCRFColorizer(config.model, training=config.training)
        # ImageNet weights of a frozen backbone, if any (a resumed stage then restores the rest).
        model.load_pretrained()
        if init_weights is not None:
            first = StagePaths(worker.state_root / stages[0])
            repair_stage(first, stages[0], log)  # a corrupt backup dropped: init weights needed
            if first.resumes():
                log(f"init weights {init_weights} not loaded: the run resumes from "
                    f"{first.root} (its checkpoints replace every weight)")
            else:
                copy_weights(init_weights, model)
                log(f"weights initialized from {init_weights}")
    model.train_seed = config.seed
    if worker.multi_worker:
        _report_metrics_per_worker(model)
    hparams = run_hparams(config, strategy, stage)
    try:
        _train_stages(model, config, stages, worker, strategy, verbose, log, hparams)
    except tf.errors.UnavailableError as err:
        if not worker.multi_worker:
            raise
        # Collectives cannot go on with a worker gone: the whole cluster restarts and resumes.
        detail = _first_line(err).split("aborted by:")[-1].strip()
        raise UserError(
            "a worker of the cluster stopped or is unreachable; start every worker again with the "
            f"same command to resume from the last finished epoch (TensorFlow: {detail})"
        ) from None
    if worker.is_chief:
        untrained = [name for name in STAGES if name not in stages]
        # A model saved before its mdn stage samples from an untrained mixture: say so.
        note = (f" (trained through stage {stages[-1]}; stage{'s' if len(untrained) > 1 else ''} "
                f"{', '.join(untrained)} not yet: run without --stage to finish)") if untrained else ""
        log(f"saved {worker.output_root / MODEL_FILE}{note}")
    return model


def _train_stages(model, config, stages, worker, strategy, verbose, log, hparams):
    step_offset = 0
    for name in stages:
        paths = StagePaths(worker.state_root / name, worker.output_root / name)
        repair_stage(paths, name, log)  # a corrupt checkpoint left by a kill: say so, fall back
        # The chief decides: a worker restarted with a lost or older state follows it.
        if distribute.chief_value(strategy, paths.is_done()):
            log(f"stage {name}: already complete, loading {paths.final}")
            if paths.is_done():
                model.load_weights(str(paths.final))
            step_offset += distribute.chief_value(strategy, paths.steps() if paths.is_done() else 0)
            distribute.sync_from_chief(strategy, model.weights)
            continue
        epochs = config.stages[name].epochs
        log(f"stage {name}: training ({epochs} epoch{'s' if epochs != 1 else ''})")
        paths.root.mkdir(parents=True, exist_ok=True)
        started = time.time()
        history, resumed_from, earlier = _run_stage(model, config, name, paths, strategy, verbose,
                                                    step_offset, {**hparams, "stage": name},
                                                    is_chief=worker.is_chief)
        _finish_stage(model, paths, history, started, resumed_from, earlier)
        step_offset += paths.steps()
        worker.discard_outputs()
        resumed = f" (resumed at epoch {resumed_from + 1})" if resumed_from else ""
        log(f"stage {name}: done in {time.time() - started + earlier:.0f} s{resumed}, "
            f"final {_last(history)}")
        warning = collapse_warning(name, history)
        if warning:
            log(warning)
    model.set_stage(name)
    _save_model(model, worker.output_root / MODEL_FILE)
    worker.discard_outputs()
    # Every worker waits here for the others: none leaves the cluster while one still trains.
    distribute.chief_value(strategy, 0)


def _save_model(model, path):
    """`model.save(path)` through a temporary file: an interrupted save leaves no broken model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(str(partial))
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def _report_metrics_per_worker(model):
    """Works around Keras 3 reducing scalar step outputs along axis 0 under multi-worker training.

    Keras (3.15) reduces the metrics returned by `train_step`/`test_step` with
    `strategy.reduce("MEAN", value, axis=0)` when the strategy spans several workers, which fails
    on scalars (tensorflow/tensorflow#72388). Returned as `[1]` vectors, the same reduction gives
    the mean over replicas as a scalar.
    """
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def as_vectors(data, step=step):
            return {key: tf.reshape(value, [1]) for key, value in step(data).items()}

        object.__setattr__(model, name, as_vectors)


def run_hparams(config, strategy, stage):
    """The run's hyperparameters as flat `{name: bool|int|float|str}` (TensorBoard hparams)."""
    flat = {}

    def add(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    add("", as_plain_dict(config))
    flat["replicas"] = int(strategy.num_replicas_in_sync)
    flat["strategy_class"] = type(strategy).__name__
    flat["requested_stage"] = stage
    return flat


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


# Below this KL (nats per image) at the end of the VAE stage, z carries almost nothing: the
# decoder ignores it and the N samples barely differ (posterior collapse).
COLLAPSE_KL = 0.5


def collapse_warning(stage, history):
    """A one-line warning when the VAE stage ended with a collapsed posterior, else None.

    Args:
        stage: the stage name; only "vae" is checked.
        history: Keras history `{metric: [per-epoch values]}` with "kl" (and "val_kl").
    """
    if stage != "vae" or not history.get("kl"):
        return None
    final = {key: history[key][-1] for key in ("kl", "val_kl") if history.get(key)}
    if max(final.values()) >= COLLAPSE_KL:
        return None
    shown = " (validation {:.3g})".format(final["val_kl"]) if "val_kl" in final else ""
    return (f"stage vae: warning: the KL of q(z|x, g) ended at {final['kl']:.3g} nats{shown}: "
            f"the posterior collapsed, so the samples will barely differ; train on more photos or "
            f"for more epochs, or raise training.kl_warmup_steps or lower training.kl_weight")


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

