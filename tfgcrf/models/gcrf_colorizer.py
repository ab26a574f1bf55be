"""`GCRFColorizer`: the task that trains a `GCRFBackbone` in the paper's three stages.

After keras-hub's `Task`: it wraps the backbone (`task.backbone`, where the architecture and all
inference live) and owns what only training needs: the stage ("vae", "hoc", "mdn"), each stage's
losses and `train_step`, the training G-CRF solver, the HOC reveal fraction and the
class-rebalancing weights. `compile_stage(stage)` sets the trainable flags and compiles with a
fresh optimizer (changing `trainable` without recompiling is silently ignored by Keras).

The task's config is `{"backbone": <GCRFBackbone>, "preprocessor": <GridConverter or None>,
"stage": ...}`: a saved model carries the architecture, the inference settings and the photo ->
grid preprocessing, never the `TrainingConfig` (given to the constructor by the trainer). The
inference methods (`sample`, `edit`, `similarity`, ...) are the backbone's, reachable from the task
too. `GCRFColorizer.from_preset("default")` loads a preset (`tfgcrf.models.loading.PresetLoader`);
models saved before the split load through `tfgcrf.models.legacy`.
"""

import keras
import tensorflow as tf

from tfgcrf.color import AB_SCALE
from tfgcrf.config import STAGES, ModelConfig, TrainingConfig, split_moved_keys
from tfgcrf.errors import UserError
from tfgcrf.layers.gaussian_crf import GaussianCRF
from tfgcrf.layers.mixture_density import mdn_loss
from tfgcrf.models import legacy, loading, stage_losses
from tfgcrf.models.gcrf_backbone import SAMPLE_MODES, GCRFBackbone  # noqa: F401 (SAMPLE_MODES: re-export)
from tfgcrf.models.grid import float32, flatten_pixels, random_window, replica_rows
from tfgcrf.models.rebalance import BINS_PER_AXIS, ab_bins, class_of_bin, gamut_bins
from tfgcrf.preprocessing import GridConverter

# Seed of the latent noise and reveal masks of `test_step` (deterministic validation losses).
_VALIDATION_SEED = (20180908, 0)

_METRICS = {
    "vae": ("loss", "recon", "kl"),
    "hoc": ("loss", "crf_l2", "unary_l2", "reveal"),
    "mdn": ("loss", "mixture_nll"),
}

# The constructor's default `preprocessor`: a `GridConverter` of the backbone's grid size.
DEFAULT_PREPROCESSOR = "default"

# The backbone's inference methods, callable on the task as well (`task.sample(...)`).
INFERENCE_METHODS = (
    "features", "posterior", "unary", "similarity", "mixture", "mixture_parameters", "sample",
    "reconstruct",
    "edit", "edit_session", "edit_prior", "edit_weights", "hint_prior", "latent_fit_objective",
    "crf_solver", "load_pretrained",
)


@keras.saving.register_keras_serializable(package="tfgcrf")
class GCRFColorizer(keras.Model):
    """Diverse, structurally consistent and controllable colorization (G-CRF VAE-MDN), trainable.

    Args:
        backbone: a `GCRFBackbone` (or its serialized form); None builds one from `config`.
        preprocessor: the photo -> model grid layer used by `tfgcrf.Colorizer` and the SavedModel
            export: a `GridConverter` of the backbone's `image_size` (or its serialized form),
            None for none (the task then takes grid inputs only), or "default" (the default)
            for `GridConverter(image_size)`. Unlike keras-hub, where `from_preset` supplies it,
            a new task has one: it is stateless and fixed by the backbone. Configs saved before
            the task had a preprocessor (no "preprocessor" key) get the default.
        stage: the training stage, "vae", "hoc" or "mdn"; decides the trainable variables.
        training: the `TrainingConfig` of the stages' losses (default `TrainingConfig()`); not
            saved with the model.
        config: a `ModelConfig` (or dict) for a new backbone, when `backbone` is None.
        **kwargs: standard `keras.Model` arguments (name, ...).

    Raises:
        UserError: invalid configs, a training config that does not fit the model, a
            preprocessor that is not a `GridConverter` of the backbone's grid size, or the config
            of a model saved before the backbone/task split (load those with `from_preset`).
    """

    backbone_cls = GCRFBackbone
    preprocessor_cls = GridConverter

    def __init__(self, backbone=None, preprocessor=DEFAULT_PREPROCESSOR, stage="vae", training=None,
                 config=None, **kwargs):
        if isinstance(backbone, ModelConfig):  # GCRFColorizer(model_config, ...) as before the split
            backbone, config = None, backbone
        super().__init__(**kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if backbone is None:
            if isinstance(config, dict):  # may hold training keys, as configs before the split
                config, moved = split_moved_keys(config)
                training = TrainingConfig(**moved) if training is None and moved else training
            backbone = GCRFBackbone(config, name="gcrf_backbone")
        elif not isinstance(backbone, GCRFBackbone):
            raise UserError(f"backbone must be a GCRFBackbone, got {type(backbone).__name__}")
        if training is None:
            training = TrainingConfig()
        elif isinstance(training, dict):
            training = TrainingConfig(**training)
        training.check_model(backbone.model_config)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.training_config = training
        if backbone.decoder.num_classes:
            # True colors -> class index of the classification head (nearest in-gamut bin).
            self._class_of_bin = tf.constant(class_of_bin(gamut_bins()))
            self._class_centers = tf.constant(backbone.decoder.centers)
        model_config = backbone.model_config
        self.train_crf = GaussianCRF(
            solver=training.train_solver,
            ridge=model_config.ridge,
            cg_tol=training.train_cg_tol,
            cg_max_iter=model_config.cg_max_iter,
            preconditioner=model_config.cg_preconditioner,
            name="train_gaussian_crf",
        )
        # Per-bin class-rebalancing weights of the VAE loss (set by the trainer, see
        # `set_color_weights`); a constant, not model state: only the VAE stage's loss reads it.
        self._color_weights = None
        # Base of the stateless seeds of training noise and reveal masks (set by the trainer).
        self.train_seed = 0
        self.trackers = {
            stage_name: {name: keras.metrics.Mean(name=name) for name in names}
            for stage_name, names in _METRICS.items()
        }
        self.build((None, model_config.image_size, model_config.image_size, 1))
        self.set_stage(stage)

    @property
    def model_config(self):
        """The backbone's `ModelConfig` (architecture and inference settings)."""
        return self.backbone.model_config

    @property
    def crf(self):
        """The backbone's default inference `GaussianCRF` layer (`config.solver`)."""
        return self.backbone.crf

    def build(self, input_shape):
        if self.built:
            return
        # Fraction of unary pixels revealed to the G-CRF in the HOC stage (set by the schedule).
        self.reveal_fraction = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="reveal_fraction"
        )
        self.built = True

    @property
    def preprocessor(self):
        """The `GridConverter` from photos to the model grid (None: grid inputs only); setting it
        checks it as the constructor does (a `GridConverter` of the backbone's grid, None, or
        "default")."""
        return self._preprocessor

    @preprocessor.setter
    def preprocessor(self, value):
        object.__setattr__(self, "_preprocessor", self._checked_preprocessor(value, self.backbone.model_config))

    def __setattr__(self, name, value):
        # The preprocessor is weightless and saved in the config: not a tracked sublayer of the
        # network (not in `layers` or the weights file), so it can be replaced after building.
        if name == "preprocessor":
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    @staticmethod
    def _checked_preprocessor(preprocessor, model_config):
        if isinstance(preprocessor, str) and preprocessor == DEFAULT_PREPROCESSOR:
            return GridConverter(model_config.image_size, name="grid_converter")
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        if preprocessor is None:
            return None
        if not isinstance(preprocessor, GridConverter):
            raise UserError(
                f"preprocessor must be a GridConverter, None or {DEFAULT_PREPROCESSOR!r}, got "
                f"{type(preprocessor).__name__}"
            )
        if preprocessor.image_size != model_config.image_size:
            raise UserError(
                f"the preprocessor's grid ({preprocessor.image_size}) differs from the model's "
                f"image_size ({model_config.image_size})"
            )
        return preprocessor

    @classmethod
    def preprocessor_from_config(cls, config, model_config):
        """The preprocessor a saved task `config` (`get_config()`) holds, without building the
        task: a `GridConverter` or None (used by `GridConverter.from_preset`)."""
        return cls._checked_preprocessor(config.get("preprocessor", DEFAULT_PREPROCESSOR), model_config)

    def get_config(self):
        # Not chained to keras.Model's, as keras-hub's Task: the backbone carries the architecture.
        preprocessor = self.preprocessor
        return {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": None if preprocessor is None else keras.saving.serialize_keras_object(preprocessor),
            "stage": self.stage,
        }

    @classmethod
    def from_config(cls, config):
        if legacy.is_legacy_config(config):
            raise UserError(
                "this model was saved before tfgcrf split GCRFColorizer into a backbone and a "
                "task: load it with GCRFColorizer.from_preset (or tfgcrf.models.loading.load_model, "
                "tfgcrf.Colorizer.load), which converts it"
            )
        return cls(**config)

    # ----------------------------------------------------------------------------- presets

    @loading.classproperty
    def presets(cls):
        """`{name: metadata}` of the presets installed with the package (`metadata.json`)."""
        return loading.presets()

    @classmethod
    def from_preset(cls, preset, load_weights=True, solver=None, dtype=None, **kwargs):
        """A trained `GCRFColorizer` from a preset (keras-hub's `Task.from_preset`).

        Args:
            preset: an installed preset's name ("default"; see `GCRFColorizer.presets`), a folder
                written by `save_to_preset` (or a run folder) holding `model.keras`, or a `.keras`
                file.
            load_weights: False builds the saved architecture with fresh weights.
            solver: None, or "lu", "cholesky" or "cg" to replace the inference G-CRF solver.
            dtype: None (the global Keras policy, float32 by default), or a Keras dtype policy
                name or `keras.DTypePolicy` ("float32", "bfloat16", "mixed_bfloat16",
                "mixed_float16", ...) for the backbone's layers, forwarded to the backbone as
                keras-hub's `Task.from_preset` does (`GCRFBackbone(dtype=)`). The G-CRF solves
                (LU, Cholesky, CG), the similarity S, the preprocessor's color conversions and
                every inference output stay float32: the solves factor a nearly singular A
                (smallest eigenvalues ~ the 1e-4 ridge), which half precision cannot resolve.
                "mixed_bfloat16" keeps float32 weights; "bfloat16" casts them.
            **kwargs: constructor arguments replacing the saved ones (`preprocessor`, `stage`,
                `training`).

        Returns:
            The task, with its `backbone` and `preprocessor` (same weights as
            `keras.saving.load_model` of the preset's `model.keras`, bit for bit). From a
            backbone preset (`GCRFBackbone.save_to_preset`), as keras-hub's `Task.from_preset`
            does without `task.json`: a new task `GCRFColorizer(backbone, **kwargs)` around the
            preset's backbone (default preprocessor `GridConverter(image_size)`, stage "vae").

        Raises:
            UserError: one line: unknown preset name, missing or broken files (listing the
                installed presets), bad overrides; `InputError` for a `dtype` that is not a
                floating-point Keras dtype policy.
        """
        return loading.PresetLoader(preset).load_task(load_weights=load_weights, solver=solver,
                                                      dtype=dtype, **kwargs)

    def save_to_preset(self, preset_dir, experiment=None, metadata=None):
        """Writes a preset folder (`tfgcrf.models.loading.save_to_preset`); returns its path."""
        return loading.save_to_preset(self, preset_dir, experiment, metadata)

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`; files written before the backbone/task split (run folders'
        backups and stage weights, `.keras` files) are converted on the fly
        (`legacy.upgraded_weights`)."""
        with legacy.upgraded_weights(filepath) as path:
            return super().load_weights(path, *args, **kwargs)

    # ----------------------------------------------------------------------------- stages

    def stage_layers(self, stage):
        """The layers whose variables `stage` trains."""
        backbone = self.backbone
        semantic = [backbone.semantic] if backbone.semantic is not None else []
        return {
            "vae": [backbone.trunk, *semantic, backbone.encoder, backbone.decoder],
            "hoc": [backbone.structure]
            + (backbone.decoder.top_layers if self.training_config.hoc_trains_decoder else []),
            "mdn": [backbone.mdn],
        }[stage]

    def set_stage(self, stage):
        """Sets the stage and the trainable flags of exactly that stage's layers.

        Call `compile_stage` (or `compile` with a new optimizer) before training afterwards.
        """
        if stage not in STAGES:
            raise UserError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        self.stage = stage
        backbone = self.backbone
        for layer in (backbone.trunk, backbone.encoder, backbone.decoder, backbone.structure,
                      backbone.mdn):
            layer.trainable = False
        if backbone.semantic is not None:
            backbone.semantic.trainable = False
        if stage == "hoc":
            # The decoder container stays trainable so that its two top layers can be.
            backbone.decoder.trainable = True
            for layer in backbone.decoder._layers:
                layer.trainable = False
        for layer in self.stage_layers(stage):
            layer.trainable = True
        if backbone.semantic is not None:
            # Setting a layer trainable sets its sublayers too: the ImageNet network stays frozen.
            backbone.semantic.backbone.trainable = False

    def set_color_weights(self, weights):
        """Sets the class-rebalancing weights `[BINS_PER_AXIS, BINS_PER_AXIS]` of the VAE loss.

        Needed when `training.rebalance_lambda < 1` (the trainer computes them from the training
        data with `tfgcrf.models.rebalance`); call it before `compile_stage("vae")`.
        """
        weights = tf.constant(weights, tf.float32)
        if weights.shape != (BINS_PER_AXIS, BINS_PER_AXIS):
            side = BINS_PER_AXIS
            raise UserError(f"color weights must be {side}x{side}, got {weights.shape}")
        self._color_weights = tf.reshape(weights, [-1])

    def compile_stage(self, stage, optimizer=None, learning_rate=1e-3, **compile_kwargs):
        """Switches to `stage` and compiles with a new optimizer (Adam by default).

        Args:
            stage: "vae", "hoc" or "mdn".
            optimizer: a fresh optimizer instance; None builds `Adam(learning_rate)`.
            learning_rate: learning rate of the default optimizer.
            **compile_kwargs: further `keras.Model.compile` arguments (e.g. `steps_per_execution`).
        """
        self.set_stage(stage)
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate)
        # tf.linalg.lu has no XLA kernel: never jit-compile the steps.
        self.compile(optimizer=optimizer, jit_compile=False, **compile_kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) builds models lazily here from the first data batch, which it first
        # averages over the replicas: that fails when the replicas' shares of the batch differ
        # (a small last or only validation batch). This model is built in __init__ and compiles
        # without Keras losses or metrics, so only the optimizer needs building, under the scope.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers[self.stage].values())

    def call(self, l, training=False):
        """The most probable colorization `[B, H, W, 2]` (`GCRFBackbone.call`)."""
        return self.backbone(l)

    # ----------------------------------------------------------------------------- training

    def _training_seed(self, salt):
        """Stateless seed `[2]` of one training step's random draws: (step, run seed, stage, salt).

        Every replica draws for the whole global batch and keeps its rows (`grid.replica_rows`),
        so training on N replicas draws what one device would, and a resumed run continues the
        same sequence.
        """
        step = tf.cast(self.optimizer.iterations, tf.int64) if self.optimizer is not None else 0
        key = (int(self.train_seed) * len(STAGES) + STAGES.index(self.stage)) * 16 + salt
        return tf.stack([step, tf.constant(key, tf.int64)])

    def _stage_losses(self, l, ab, training):
        """Per-batch loss and monitored values of the current stage.

        Training draws z from q(z | x, g) and the reveal masks at random; evaluation draws them
        from fixed stateless seeds, so that validation numbers are deterministic and comparable
        across epochs while estimating the same objective.
        """
        backbone, knobs = self.backbone, self.training_config
        features = backbone.features(l)
        # Losses in float32 also under a mixed_float16 policy (float16 layer outputs).
        mean, log_var = (float32(t) for t in backbone.encoder(l, ab))
        seed = self._training_seed(0) if training else _VALIDATION_SEED
        latent = tf.shape(mean)[1]
        noise = replica_rows(
            lambda n: tf.random.stateless_normal(tf.stack([n, latent]), seed=seed), tf.shape(mean)[0]
        )
        z = mean + tf.exp(0.5 * log_var) * noise
        if self.stage == "mdn":
            logits, means = (float32(t) for t in backbone.mdn(features))
            z = tf.stop_gradient(z)
            sigma = self.model_config.mdn_sigma
            nll = tf.reduce_mean(mdn_loss(z, logits, means, sigma, "nll"))
            if knobs.mdn_loss.startswith("decoded"):
                loss = tf.reduce_mean(self._decoded_mdn_loss(features, ab, logits, means))
            else:
                loss = tf.reduce_mean(mdn_loss(z, logits, means, sigma, knobs.mdn_loss))
            return loss, {"loss": loss, "mixture_nll": nll}
        logits, alpha = self._decode(z, features)
        if self.stage == "vae":
            recon = self._reconstruction_loss(logits, alpha, ab)
            kl = stage_losses.gaussian_kl(mean, log_var)
            step = self.optimizer.iterations if self.optimizer is not None else None
            loss = recon + stage_losses.kl_weight(knobs.kl_weight, knobs.kl_warmup_steps, step) * kl
            return loss, {"loss": loss, "recon": recon, "kl": kl}
        return self._hoc_losses(l, ab, features, alpha, training)

    def _decode(self, z, features):
        """`(class logits [B, H, W, Q] or None, alpha [B, H, W, 2])` of codes `z [B, Z]`, float32."""
        decoder = self.backbone.decoder
        if decoder.num_classes:
            logits = float32(decoder.head_output(z, features))
            return logits, decoder.readout(logits)
        return None, float32(decoder(z, features))

    def _reconstruction_loss(self, logits, alpha, ab, per_image=False):
        """The VAE stage's -log p(x | z, g): class-rebalanced cross-entropy of the classification
        head, or the Gaussian NLL of the regression head; batch mean or `[B]` (`per_image`)."""
        weights = self._pixel_weights(ab)
        if logits is None:
            return stage_losses.color_nll(
                alpha, ab, self.training_config.recon_sigma, weights, per_image=per_image)
        return stage_losses.class_nll(
            logits, self.color_labels(ab), None if weights is None else weights[..., 0],
            per_image=per_image)

    def _decoded_mdn_loss(self, features, ab, logits, means):
        """`training.mdn_loss: decoded`, per image `[B]`: every component's mean code is decoded
        (the colors `sample(mode="top")` returns before the G-CRF) and scored by the VAE stage's
        reconstruction loss ("decoded_l2": the squared error of the colors); the best
        component's loss and -log of its weight are trained
        (`stage_losses.multiple_choice_loss`). The decoder is frozen; its gradient reaches the
        mixture means through the codes."""
        batch, count = tf.shape(means)[0], tf.shape(means)[1]
        repeated = [tf.repeat(feature, count, axis=0) for feature in features]
        codes = tf.reshape(means, [batch * count, -1])
        class_logits, alpha = self._decode(codes, repeated)
        target = tf.repeat(ab, count, axis=0)
        if self.training_config.mdn_loss == "decoded_l2":
            recon = stage_losses.color_nll(
                alpha, target, self.training_config.recon_sigma, per_image=True)
        else:
            recon = self._reconstruction_loss(class_logits, alpha, target, per_image=True)
        loss, _ = stage_losses.multiple_choice_loss(tf.reshape(recon, [batch, count]), logits)
        return loss

    def color_labels(self, ab):
        """Targets of the VAE stage's cross-entropy for true colors `ab [B, H, W, 2]`: hard class
        indices (`color_classes`), or with `training.soft_encoding_sigma` > 0 Zhang et al.'s soft
        encoding `[B, H, W, Q]` (distances in ab units)."""
        sigma = self.training_config.soft_encoding_sigma
        if sigma <= 0:
            return self.color_classes(ab)
        return stage_losses.soft_color_labels(ab * AB_SCALE, self._class_centers * AB_SCALE, sigma)

    def color_classes(self, ab):
        """The classification head's class `[B, H, W]` (int) of true colors `ab [B, H, W, 2]`: the
        index of their nearest in-gamut ab bin (the labels of the VAE stage's cross-entropy)."""
        return tf.gather(self._class_of_bin, ab_bins(ab))

    def _pixel_weights(self, ab):
        """Class-rebalancing weights `[B, H, W, 1]` of the true colors, or None (plain L2)."""
        if self.training_config.rebalance_lambda >= 1.0:
            return None
        if self._color_weights is None:
            raise UserError(
                "training.rebalance_lambda < 1 needs the color weights: call set_color_weights "
                "(tfgcrf train computes them from the training data)"
            )
        return tf.gather(self._color_weights, ab_bins(ab))[..., None]

    def _hoc_losses(self, l, ab, features, alpha, training):
        backbone, config = self.backbone, self.model_config
        knobs, structure = self.training_config, self.backbone.structure
        seed = self._training_seed(1) if training else _VALIDATION_SEED
        # The similarity S and the G-CRF solve are float32 whatever the policy.
        embeddings = float32(structure.embed(tf.cast(l, structure.compute_dtype), features))
        size = config.image_size
        grids = [tf.reshape(embeddings, [-1, size, size, config.embed_dim]), alpha, ab]
        if 0 < knobs.hoc_window < size:
            grids = random_window(grids, knobs.hoc_window, seed)
        embeddings, unary, target = (flatten_pixels(grid) for grid in grids)
        # log Z of S's rows lets the CG solve multiply by S only (S is reversible).
        similarity, log_partition = structure.similarity_of(embeddings, return_log_partition=True)
        weights = backbone.reveal_weights(unary, self.reveal_fraction, seed)
        x = self.train_crf(similarity, unary, weights, initial=unary, log_partition=log_partition)
        crf_l2 = stage_losses.color_nll(x, target, knobs.recon_sigma)
        unary_l2 = stage_losses.color_nll(unary, target, knobs.recon_sigma)
        if knobs.hoc_loss == "nll":
            loss = tf.reduce_mean(self.train_crf.gaussian_nll(similarity, unary, weights, target))
        else:
            loss = crf_l2
        values = {"loss": loss, "crf_l2": crf_l2, "unary_l2": unary_l2}
        return loss, {**values, "reveal": tf.identity(self.reveal_fraction)}

    def _update_trackers(self, values):
        for name, value in values.items():
            self.trackers[self.stage][name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers[self.stage].items()}

    def train_step(self, data):
        l, ab = data[:2]
        with tf.GradientTape() as tape:
            loss, values = self._stage_losses(l, ab, training=True)
            # Gradients are summed over replicas: scale the per-replica mean accordingly.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_trackers(values)

    def test_step(self, data):
        l, ab = data[:2]
        _, values = self._stage_losses(l, ab, training=False)
        return self._update_trackers(values)


def _forward(name):
    def method(self, *args, **kwargs):
        return getattr(self.backbone, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"`GCRFBackbone.{name}` of `self.backbone` (see there)."
    return method


for _name in INFERENCE_METHODS:
    setattr(GCRFColorizer, _name, _forward(_name))
del _name
