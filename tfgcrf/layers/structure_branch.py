"""The HOC (structure) branch: pixel embeddings of the gray image and their similarity matrix S."""

import math

import keras
import tensorflow as tf
from keras import ops

from tfgcrf.layers.blocks import at_least_float32, concat_shape, conv
from tfgcrf.layers.gaussian_crf import transposed_product

# Added to the diagonal logits so that a pixel never attends to itself (see StructureBranch).
_SELF_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="tfgcrf")
class StructureBranch(keras.layers.Layer):
    """Low-rank pixel embeddings E `[B, P, D]` and the row-stochastic similarity S.

    Every trunk scale is projected by a 1x1 convolution, upsampled to the model grid (bilinear)
    and summed; the gray image and the normalized (x, y) coordinates of each pixel are appended
    (so that S can express spatial proximity as well as intensity similarity); a 3x3 convolution
    + ReLU, concatenated with its own input, and a 1x1 convolution give D-dimensional
    embeddings, L2-normalized per pixel. Then

        S = row_softmax(tau * E E^T)   with the diagonal excluded,

    where tau = exp(log_temperature) is learned. Excluding the diagonal makes S[i] a weighted
    average over the *other* pixels: otherwise S = I would trivially satisfy x = S x and the
    smoothness prior ||(I - S) x||^2 of the G-CRF would vanish.

    Args:
        embed_dim: D, size of the embeddings.
        width: hidden channels.
        num_scales: number of trunk scales it reads (scale s is at 1 / 2**s resolution).
        initial_temperature: starting value of tau.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        l: gray image `[B, H, W, 1]`.
        gray_features: the `GrayTrunk` outputs for the same images, finest first.

    Returns:
        S `[B, P, P]` with P = H * W (row-major pixel order), rows summing to 1; float32 under
        any policy but float64 (the embeddings are cast before the softmax).
    """

    def __init__(self, embed_dim=32, width=32, num_scales=4, initial_temperature=10.0, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.width = int(width)
        self.num_scales = int(num_scales)
        self.initial_temperature = float(initial_temperature)
        self.lateral = [
            conv(self.width, f"lateral{s}", kernel_size=1, activation=None)
            for s in range(self.num_scales)
        ]
        self.upsample = [
            keras.layers.UpSampling2D(2**s, interpolation="bilinear", name=f"upsample{s}")
            for s in range(self.num_scales)
        ]
        self.hidden = conv(self.width, "hidden")
        self.embed_out = conv(self.embed_dim, "embed", kernel_size=1, activation=None)

    def build(self, l_shape, gray_features_shape):
        for lateral, shape in zip(self.lateral, gray_features_shape):
            lateral.build(shape)
        grid = tuple(l_shape[:3])
        fused = concat_shape(grid + (self.width,), l_shape, grid + (2,))
        self.hidden.build(fused)
        self.embed_out.build(concat_shape(self.hidden.compute_output_shape(fused), fused))
        self.log_temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.initial_temperature)),
            # float32 (float64 under a float64 policy) and read unrounded under a mixed or half
            # policy: tau scales every logit of S.
            dtype="float64" if self.variable_dtype == "float64" else "float32",
            autocast=False,
            name="log_temperature",
        )
        self.built = True

    def embed(self, l, gray_features):
        """The L2-normalized pixel embeddings `[B, P, D]`."""
        fused = sum(
            up(lateral(feature))
            for lateral, up, feature in zip(self.lateral, self.upsample, gray_features)
        )
        x = ops.concatenate([fused, l, _coordinates(l)], axis=-1)
        # The linear inputs skip the ReLU layer, so no pixel gets an all-zero embedding.
        embeddings = self.embed_out(ops.concatenate([self.hidden(x), x], axis=-1))
        shape = ops.shape(embeddings)
        embeddings = ops.reshape(embeddings, (shape[0], shape[1] * shape[2], self.embed_dim))
        return embeddings / ops.sqrt(ops.sum(embeddings**2, axis=-1, keepdims=True) + 1e-12)

    def similarity_of(self, embeddings, return_log_partition=False):
        """S `[B, Q, Q]` among any Q pixels given their embeddings `[B, Q, D]` (from `embed`).

        With `return_log_partition`, also `[B, Q]` log Z_i = log sum_j exp(tau e_i . e_j) of
        every row (j != i; a constant for autodiff): S is reversible (S_ij Z_i = S_ji Z_j), which
        `GaussianCRF(..., log_partition=...)` uses to multiply by S only. Gradients are analytic
        (`similarity_with_gradient`): no P x P intermediate is kept for the backward pass but S.
        """
        log_temperature = tf.cast(tf.convert_to_tensor(self.log_temperature), embeddings.dtype)
        similarity, log_partition = similarity_with_gradient(embeddings, log_temperature)
        return (similarity, log_partition) if return_log_partition else similarity

    def call(self, l, gray_features):
        # S (a softmax over P pixels) in float32 whatever the policy, as in the HOC stage's loss.
        return self.similarity_of(at_least_float32(self.embed(l, gray_features)))

    def compute_output_shape(self, l_shape, gray_features_shape):
        pixels = None if l_shape[1] is None or l_shape[2] is None else l_shape[1] * l_shape[2]
        return (l_shape[0], pixels, pixels)

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "width": self.width,
            "num_scales": self.num_scales,
            "initial_temperature": self.initial_temperature,
        }


@tf.custom_gradient
def similarity_with_gradient(embeddings, log_temperature):
    """S = row_softmax(tau E E^T) without the diagonal, and log Z `[B, Q]` of its rows.

    Args:
        embeddings: E `[B, Q, D]`.
        log_temperature: scalar log tau.

    Returns:
        `(S [B, Q, Q], log Z [B, Q])`, S_ij = exp(tau e_i . e_j - log Z_i) for j != i, S_ii = 0.

    The backward pass is the chain rule written out (checked against autodiff and a float64
    reference in tests/layers/structure_branch_test.py): with dL = dL/dlogits,
        dL = S * (dL/dS - rowsum(dL/dS * S) + dL/dlogZ),
        dL/dE = tau (dL E + dL^T E),   dL/dlog tau = tau sum(E * (dL E)),
    from S alone (autodiff of the softmax keeps the logits, tau E E^T and two more P x P
    temporaries; 1 GiB each at 64 x 64, batch 16).
    """
    temperature = tf.exp(log_temperature)
    logits = tf.linalg.matmul(temperature * embeddings, embeddings, adjoint_b=True)
    # The diagonal's logit is a constant (no gradient): S_ii = exp(-1e9 - max) = 0.
    logits = tf.linalg.set_diag(
        logits, tf.fill(tf.shape(logits)[:-1], tf.constant(_SELF_LOGIT, logits.dtype)))
    similarity = tf.nn.softmax(logits, axis=-1)
    # log Z_i = L_ij - log S_ij at the row's largest entry (no exp over the whole row again).
    log_partition = (tf.reduce_max(logits, axis=-1)
                     - tf.math.log(tf.reduce_max(similarity, axis=-1)))

    def grad(d_similarity, d_log_partition):
        if d_log_partition is None:
            d_log_partition = tf.zeros_like(log_partition)
        d_logits = _softmax_backward(similarity, d_similarity, d_log_partition)
        forward = tf.linalg.matmul(d_logits, embeddings)
        d_embeddings = temperature * (forward + transposed_product(d_logits, embeddings))
        d_log_temperature = temperature * tf.reduce_sum(embeddings * forward)
        return d_embeddings, d_log_temperature

    return (similarity, log_partition), grad


@tf.function(jit_compile=True, autograph=False)
def _softmax_backward(similarity, d_similarity, d_log_partition):
    """dL/dlogits = S * (dL/dS - rowsum(dL/dS * S) + dL/dlogZ), one XLA fusion (TF makes three
    P x P temporaries)."""
    shift = tf.reduce_sum(d_similarity * similarity, axis=-1, keepdims=True)
    return (d_similarity - shift + d_log_partition[..., None]) * similarity


def _coordinates(l):
    """Normalized pixel coordinates `[B, H, W, 2]` (x, y in [0, 1]) for a `[B, H, W, C]` image."""
    shape = ops.shape(l)
    height, width = shape[1], shape[2]
    ys = ops.linspace(0.0, 1.0, height)
    xs = ops.linspace(0.0, 1.0, width)
    grid_y, grid_x = ops.meshgrid(ys, xs, indexing="ij")
    grid = ops.cast(ops.stack([grid_x, grid_y], axis=-1), l.dtype)
    return ops.broadcast_to(grid[None], (shape[0], height, width, 2))
