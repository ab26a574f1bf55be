"""The VAE encoder q(z | x, g): a diagonal Gaussian over the latent color code z."""

import keras
from keras import ops

from tfgcrf.layers.blocks import apply_chain, build_chain, concat_shape, conv

# Bounds of the predicted log-variance: keeps exp() finite early in training.
LOG_VAR_RANGE = (-12.0, 6.0)


@keras.saving.register_keras_serializable(package="tfgcrf")
class ColorEncoder(keras.layers.Layer):
    """Encodes a color field and its gray image into the parameters of q(z | x, g).

    The gray image and the chroma are concatenated, reduced by stride-2 convolutions and a
    dense layer predicts the mean and log-variance of z.

    Args:
        latent_dim: size of z.
        widths: channels of the stride-2 convolutions, finest first.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        l: gray image `[B, H, W, 1]`.
        ab: chroma `[B, H, W, 2]` (model units, ab / 110).

    Returns:
        `(mean, log_var)`, each `[B, latent_dim]`.
    """

    def __init__(self, latent_dim=64, widths=(16, 32, 64, 128), **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.widths = tuple(int(w) for w in widths)
        self.convs = [conv(w, f"down{i}", strides=2) for i, w in enumerate(self.widths)]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.head = keras.layers.Dense(2 * self.latent_dim, name="gaussian")

    def build(self, l_shape, ab_shape):
        build_chain(self.convs + [self.flatten, self.head], concat_shape(l_shape, ab_shape))
        self.built = True

    def call(self, l, ab):
        x = ops.concatenate([l, ab], axis=-1)
        params = apply_chain(self.convs + [self.flatten, self.head], x)
        mean, log_var = ops.split(params, 2, axis=-1)
        return mean, ops.clip(log_var, *LOG_VAR_RANGE)

    def compute_output_shape(self, l_shape, ab_shape):
        shape = (l_shape[0], self.latent_dim)
        return shape, shape

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "widths": list(self.widths)}
