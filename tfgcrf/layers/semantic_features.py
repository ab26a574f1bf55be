"""ImageNet semantics fused into the gray trunk's scales (frozen EfficientNet-Lite0 taps)."""

import keras
from keras import ops

from tfgcrf.layers.blocks import concat_shape, conv
from tfgcrf.layers.efficientnet_lite import TAP_CHANNELS, EfficientNetLite0Features


@keras.saving.register_keras_serializable(package="tfgcrf")
class SemanticFeatures(keras.layers.Layer):
    """Appends frozen ImageNet features to every `GrayTrunk` scale.

    The gray grid is upsampled `input_scale` times (bilinear; 4 x 64 = 256 px, the scale ImageNet
    objects are seen at), replicated to RGB and fed to the frozen `EfficientNetLite0Features`.
    Its tap at stride 4 * 2**s (of the upsampled input) has the size of trunk scale s
    (for input_scale 4); taps are resized bilinearly where sizes differ. Each tap goes through a
    trainable 1x1 convolution (`width` channels, ReLU); the mean-pooled 1280-channel head goes
    through a dense layer (`global_width`, ReLU) and is broadcast over the coarsest scale
    ("global features", Iizuka et al. 2016). So the decoder, the structure branch and the MDN,
    which all read the trunk's scales, see the semantics.

    Args:
        num_scales: number of trunk scales.
        width: channels of each projected tap.
        global_width: channels of the global semantic vector.
        input_scale: upsampling factor of the gray grid before the backbone.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        l: gray grid `[B, H, W, 1]` in [0, 1].
        trunk_features: the `GrayTrunk` outputs, finest first.

    Returns:
        The trunk features with the semantic channels appended, finest first:
        `[B, H / 2**s, W / 2**s, c_s + width (+ global_width on the coarsest)]`.
    """

    def __init__(self, num_scales, width=32, global_width=64, input_scale=4, **kwargs):
        super().__init__(**kwargs)
        self.num_scales = int(num_scales)
        self.width = int(width)
        self.global_width = int(global_width)
        self.input_scale = int(input_scale)
        self.backbone = EfficientNetLite0Features(name="efficientnet_lite0")
        self.backbone.trainable = False
        self.lateral = [
            conv(self.width, f"semantic{s}", kernel_size=1) for s in range(self.num_scales)
        ]
        self.global_dense = keras.layers.Dense(self.global_width, activation="relu", name="global")

    def _tap_index(self, scale):
        return min(scale, len(TAP_CHANNELS) - 2)

    def build(self, l_shape, trunk_features_shape):
        self.backbone.build((None, None, None, 3))
        for scale, lateral in enumerate(self.lateral):
            lateral.build((None, None, None, TAP_CHANNELS[self._tap_index(scale)]))
        self.global_dense.build((None, TAP_CHANNELS[-1]))
        self.built = True

    def call(self, l, trunk_features):
        shape = ops.shape(l)
        size = (shape[1] * self.input_scale, shape[2] * self.input_scale)
        gray = ops.image.resize(l, size, interpolation="bilinear")
        rgb = ops.repeat(ops.clip(gray, 0.0, 1.0) * 255.0, 3, axis=-1)
        # The backbone is frozen: its BatchNorm always runs in inference mode and no gradient
        # flows into it (its input is data).
        taps = self.backbone(ops.stop_gradient(rgb))
        pooled = ops.mean(taps[-1], axis=(1, 2))
        global_vector = self.global_dense(pooled)
        fused = []
        last = len(trunk_features) - 1
        for scale, (lateral, feature) in enumerate(zip(self.lateral, trunk_features)):
            tap = taps[self._tap_index(scale)]
            target = ops.shape(feature)[1:3]
            tap = ops.image.resize(tap, target, interpolation="bilinear")
            parts = [feature, lateral(tap)]
            if scale == last:
                tiled = ops.broadcast_to(
                    global_vector[:, None, None, :],
                    (ops.shape(feature)[0], target[0], target[1], self.global_width),
                )
                parts.append(tiled)
            fused.append(ops.concatenate(parts, axis=-1))
        return fused

    def compute_output_shape(self, l_shape, trunk_features_shape):
        last = len(trunk_features_shape) - 1
        shapes = []
        for scale, shape in enumerate(trunk_features_shape):
            extra = (None,) * 3 + (self.width + (self.global_width if scale == last else 0),)
            shapes.append(concat_shape(tuple(shape), extra))
        return shapes

    def get_config(self):
        return {
            **super().get_config(),
            "num_scales": self.num_scales,
            "width": self.width,
            "global_width": self.global_width,
            "input_scale": self.input_scale,
        }
