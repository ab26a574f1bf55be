"""The mixture density network p(z | g) of the second training stage."""

import keras
import tensorflow as tf
from keras import ops

from tfgcrf.layers.blocks import build_chain, conv


@keras.saving.register_keras_serializable(package="tfgcrf")
class MixtureDensityHead(keras.layers.Layer):
    """Predicts a Gaussian mixture over the latent code z from the coarsest gray feature.

    Every component has the same fixed isotropic standard deviation `sigma`; the network predicts
    the M means and the M mixture logits.

    Args:
        latent_dim: size of z.
        num_components: M, number of mixture components.
        sigma: fixed standard deviation of each component.
        hidden: hidden units of the dense layer.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        gray_features: the `GrayTrunk` outputs, finest first (only the coarsest is used).

    Returns:
        `(logits [B, M], means [B, M, latent_dim])`.
    """

    def __init__(self, latent_dim=64, num_components=8, sigma=0.1, hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.num_components = int(num_components)
        self.sigma = float(sigma)
        self.hidden = int(hidden)
        self.body = [
            conv(self.hidden // 2, "reduce", strides=2),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(self.hidden, activation="relu", name="hidden"),
        ]
        self.means_out = keras.layers.Dense(self.num_components * self.latent_dim, name="means")
        self.logits_out = keras.layers.Dense(self.num_components, name="logits")

    def build(self, gray_features_shape):
        shape = build_chain(self.body, gray_features_shape[-1])
        self.means_out.build(shape)
        self.logits_out.build(shape)
        self.built = True

    def call(self, gray_features):
        x = gray_features[-1]
        for layer in self.body:
            x = layer(x)
        means = ops.reshape(self.means_out(x), (-1, self.num_components, self.latent_dim))
        return self.logits_out(x), means

    def initialize_from_codes(self, codes, seed=0, kernel_scale=0.1):
        """Starts the M components at the k-means centers of latent codes (before MDN training).

        A randomly initialized mixture trained with the "nearest" loss (paper Eq. 9) leaves most
        components near the average code, where they decode to nearly the same colorization
        (samples that differ by a global tint); a component no code is nearest to never moves.
        Starting every component at the center of a populated cluster of the training codes
        spreads them over the codes the decoder knows, and the network then learns per image
        which of them apply (measured: `docs/design.md`, MDN initialization).

        Sets the bias of the means layer to the centers and scales its kernel by `kernel_scale`
        (so the per-image offsets start small), and the bias of the logits layer to the log
        cluster frequencies (its kernel scaled alike). The layer must be built.

        Args:
            codes: `[N, latent_dim]` latent codes, N >= M (e.g. posterior means of training
                photos, `GCRFColorizer.posterior`).
            seed: seed of k-means++ (scipy.cluster.vq.kmeans2).
            kernel_scale: factor applied to both kernels, in (0, 1].

        Returns:
            the cluster sizes `[M]` (numpy int).

        Raises:
            ValueError: wrong shape or fewer codes than components.
        """
        import numpy as np
        from scipy.cluster.vq import kmeans2

        codes = np.asarray(codes, np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.latent_dim:
            raise ValueError(f"codes must be [N, {self.latent_dim}], got {codes.shape}")
        if codes.shape[0] < self.num_components:
            raise ValueError(
                f"need at least {self.num_components} codes for {self.num_components} "
                f"components, got {codes.shape[0]}"
            )
        centers, labels = kmeans2(codes, self.num_components, iter=30, minit="++", seed=seed)
        sizes = np.bincount(labels, minlength=self.num_components)
        kernel, _ = self.means_out.get_weights()
        self.means_out.set_weights([kernel * kernel_scale, centers.reshape(-1).astype(np.float32)])
        kernel, _ = self.logits_out.get_weights()
        # Empty clusters (kmeans2 can leave one) start with a small, finite weight.
        log_frequency = np.log((sizes + 0.5) / (sizes.sum() + 0.5 * sizes.size))
        self.logits_out.set_weights([kernel * kernel_scale, log_frequency.astype(np.float32)])
        return sizes

    def distribution(self, logits, means):
        """The mixture as a `tfp.distributions.MixtureSameFamily` over `[latent_dim]` events."""
        return mixture_distribution(logits, means, self.sigma)

    def compute_output_shape(self, gray_features_shape):
        batch = gray_features_shape[-1][0]
        return (batch, self.num_components), (batch, self.num_components, self.latent_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "num_components": self.num_components,
            "sigma": self.sigma,
            "hidden": self.hidden,
        }


def mixture_distribution(logits, means, sigma):
    """Gaussian mixture with mixture `logits [B, M]`, `means [B, M, Z]` and fixed `sigma`."""
    # TensorFlow Probability is imported at the first use, not with this module: it adds about
    # 1.5 s to every command's start-up, and colorizing, editing and evaluating never use it.
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalDiag(
            loc=means, scale_diag=tf.fill(tf.shape(means), tf.cast(sigma, means.dtype))
        ),
    )


def mdn_loss(z, logits, means, sigma, kind="nearest"):
    """Per-example loss of latent codes `z [B, Z]` under the mixture.

    Args:
        z: latent codes `[B, Z]` (samples of the frozen encoder).
        logits: mixture logits `[B, M]`.
        means: component means `[B, M, Z]`.
        sigma: fixed component standard deviation.
        kind: "nearest" for the paper's Eq. 9, -log pi_m + ||z - mu_m||^2 / (2 sigma^2) with m the
            component whose mean is closest to z; "nll" for the full mixture negative
            log-likelihood -log sum_i pi_i N(z | mu_i, sigma^2 I).

    Returns:
        The loss per example, `[B]`.
    """
    if kind == "nll":
        return -mixture_distribution(logits, means, sigma).log_prob(z)
    if kind != "nearest":
        raise ValueError(f"unknown MDN loss {kind!r}")
    squared = tf.reduce_sum(tf.square(z[:, None, :] - means), axis=-1)
    nearest = tf.argmin(squared, axis=-1)
    log_pi = tf.gather(tf.nn.log_softmax(logits, axis=-1), nearest, batch_dims=1)
    return -log_pi + tf.gather(squared, nearest, batch_dims=1) / (2.0 * sigma**2)
