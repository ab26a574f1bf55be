"""The VAE decoder p(x | z, g): the unary colors alpha of the G-CRF."""

import keras
import numpy as np
from keras import ops

from tfgcrf.config import UNARY_HEADS
from tfgcrf.layers.blocks import at_least_float32, build_chain, concat_shape, conv


@keras.saving.register_keras_serializable(package="tfgcrf")
class UnaryDecoder(keras.layers.Layer):
    """Decodes a latent color code into a chroma field, conditioned on the gray features.

    z is projected to a map at the coarsest trunk scale and concatenated with the coarsest gray
    feature; then, scale by scale, the map is upsampled x2, concatenated with the gray feature of
    that scale and convolved (skip connections as in the VAE-MDN of Deshpande et al.). Two top
    layers output alpha; they are the only decoder layers the HOC stage trains (`top_layers`).

    Two heads:
      * "regression": 3x3 conv + ReLU, 1x1 conv + tanh give alpha directly (trained with L2:
        averages plausible colors into sepia);
      * "classification" (Zhang et al. 2016, Sec. 2.1-2.2): 3x3 conv + ReLU, 1x1 conv give
        logits over the Q in-gamut ab bins (`tfgcrf.models.rebalance.gamut_bins`); alpha is
        their annealed mean, sum_q softmax(logits / T)_q * center_q with T = `temperature`
        (0.38 in the paper): colorful like the mode, smooth like the mean.

    Args:
        grid_size: side of the model grid (the finest trunk scale).
        widths: channels at each trunk scale, coarsest first (one entry per trunk scale).
        head: "regression" or "classification".
        temperature: annealed-mean temperature T of the classification head.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        z: latent codes `[B, latent_dim]`.
        gray_features: the `GrayTrunk` outputs for the same B images, finest first.

    Returns:
        alpha `[B, grid_size, grid_size, 2]` in (-1, 1) (ab / 110 units), float32 under a
        half-precision dtype policy too (the one place the decoder's output is cast: the G-CRF
        solves, the latent fits and the losses read it in float32).
    """

    def __init__(
        self, grid_size=64, widths=(128, 64, 32, 16), head="regression", temperature=0.38, **kwargs
    ):
        super().__init__(**kwargs)
        if head not in UNARY_HEADS:
            raise ValueError(f"head must be one of {list(UNARY_HEADS)}, got {head!r}")
        self.grid_size = int(grid_size)
        self.widths = tuple(int(w) for w in widths)
        self.head = head
        self.temperature = float(temperature)
        self.coarse_size = self.grid_size // 2 ** (len(self.widths) - 1)
        self.project = keras.layers.Dense(
            self.coarse_size**2 * self.widths[0], activation="relu", name="project"
        )
        self.fuse = [conv(w, f"fuse{i}") for i, w in enumerate(self.widths)]
        self.upsample = keras.layers.UpSampling2D(2, name="upsample")
        self.top_conv = conv(self.widths[-1], "top_conv")
        # Zero-initialized: training starts from neutral gray (alpha = 0, or uniform bin
        # probabilities), not saturated colors.
        if head == "classification":
            from tfgcrf.models.rebalance import bin_centers, gamut_bins

            self.centers = bin_centers(gamut_bins())
            outputs, activation = len(self.centers), None
        else:
            self.centers = np.zeros((0, 2), np.float32)
            outputs, activation = 2, "tanh"
        self.top_out = conv(
            outputs, "top_out", kernel_size=1, activation=activation, kernel_initializer="zeros"
        )

    @property
    def num_classes(self):
        """Q, the number of ab classes of the classification head (0 for regression)."""
        return len(self.centers)

    @property
    def top_layers(self):
        """The two top-most layers (trainable in the HOC stage)."""
        return [self.top_conv, self.top_out]

    def build(self, z_shape, gray_features_shape):
        self.project.build(z_shape)
        coarse = (z_shape[0], self.coarse_size, self.coarse_size, self.widths[0])
        feature_shapes = list(reversed(gray_features_shape))
        shape = concat_shape(coarse, feature_shapes[0])
        for i, fuse in enumerate(self.fuse):
            if i:
                shape = concat_shape(self.upsample.compute_output_shape(shape), feature_shapes[i])
            fuse.build(shape)
            shape = fuse.compute_output_shape(shape)
        build_chain(self.top_layers, shape)
        self.built = True

    def call(self, z, gray_features):
        output = self.head_output(z, gray_features)
        return self.readout(output) if self.num_classes else at_least_float32(output)

    def head_output(self, z, gray_features):
        """The top layer's output: alpha `[B, H, W, 2]` (regression) or logits `[B, H, W, Q]`."""
        features = list(reversed(gray_features))
        x = ops.reshape(self.project(z), (-1, self.coarse_size, self.coarse_size, self.widths[0]))
        for i, fuse in enumerate(self.fuse):
            if i:
                x = self.upsample(x)
            x = fuse(ops.concatenate([x, features[i]], axis=-1))
        return self.top_out(self.top_conv(x))

    def readout(self, logits):
        """Annealed mean `[B, H, W, 2]` of class `logits [B, H, W, Q]` (ab / 110 units)."""
        # In float32 under a half-precision policy too: the annealed mean of Q classes.
        probabilities = ops.softmax(at_least_float32(logits) / self.temperature, axis=-1)
        return ops.matmul(probabilities, ops.convert_to_tensor(self.centers))

    def compute_output_shape(self, z_shape, gray_features_shape):
        return (z_shape[0], self.grid_size, self.grid_size, 2)

    def compute_output_spec(self, z, gray_features):
        # Symbolic calls (functional models) see the dtype `call` returns: float32 under a
        # half-precision policy too, not Keras's default of the compute dtype.
        shape = self.compute_output_shape(z.shape, [feature.shape for feature in gray_features])
        return at_least_float32(keras.KerasTensor(shape, dtype=self.compute_dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "grid_size": self.grid_size,
            "widths": list(self.widths),
            "head": self.head,
            "temperature": self.temperature,
        }
