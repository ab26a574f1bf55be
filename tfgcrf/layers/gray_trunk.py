"""Multi-scale features of the gray image g, shared by the decoder, structure branch and MDN."""

import keras

from tfgcrf.layers.blocks import apply_chain, build_chain, conv, downsampled


@keras.saving.register_keras_serializable(package="tfgcrf")
class GrayTrunk(keras.layers.Layer):
    """Convolutional pyramid over the gray image.

    Scale 0 keeps the input resolution; each further scale halves it with a stride-2
    convolution followed by a 3x3 convolution (ReLU throughout).

    Args:
        widths: channels per scale, finest first, e.g. (16, 32, 64, 128) gives features at
            full, 1/2, 1/4 and 1/8 resolution.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        l: gray image `[B, H, W, 1]` in [0, 1].

    Returns:
        A list of feature maps, finest first: `[B, H / 2**s, W / 2**s, widths[s]]`.
    """

    def __init__(self, widths=(16, 32, 64, 128), **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        self.scales = [
            [
                conv(width, f"scale{s}_in", strides=1 if s == 0 else 2),
                conv(width, f"scale{s}_conv"),
            ]
            for s, width in enumerate(self.widths)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layers in self.scales:
            shape = build_chain(layers, shape)
        self.built = True

    def call(self, l):
        features = []
        x = l
        for layers in self.scales:
            x = apply_chain(layers, x)
            features.append(x)
        return features

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        return [
            (batch, downsampled(height, s), downsampled(width, s), w)
            for s, w in enumerate(self.widths)
        ]

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths)}
