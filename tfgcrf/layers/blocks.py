"""Small building blocks shared by the model's layers."""

import keras
from keras import ops


def at_least_float32(tensor):
    """A half-precision `tensor` (float16, bfloat16: under a mixed or half dtype policy) as
    float32; float32 and float64 unchanged. The similarity S, the G-CRF solves and every
    inference output of the backbone go through it."""
    if keras.backend.standardize_dtype(tensor.dtype) in ("float16", "bfloat16"):
        return ops.cast(tensor, "float32")
    return tensor


def conv(filters, name, kernel_size=3, strides=1, activation="relu", kernel_initializer=None):
    """A 'same'-padded Conv2D (ReLU by default; He initialization for ReLU, else Glorot)."""
    if kernel_initializer is None:
        kernel_initializer = "he_normal" if activation == "relu" else "glorot_uniform"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        kernel_initializer=kernel_initializer,
        name=name,
    )


def build_chain(layers, shape):
    """Builds `layers`, applied in order to inputs of `shape`; returns the output shape."""
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def apply_chain(layers, x):
    """Applies `layers` in order."""
    for layer in layers:
        x = layer(x)
    return x


def concat_shape(*shapes):
    """Shape of the channel concatenation of NHWC tensors of the given shapes."""
    return tuple(shapes[0][:-1]) + (sum(shape[-1] for shape in shapes),)


def downsampled(size, scale):
    """Spatial size after `scale` halvings (None stays None)."""
    return None if size is None else size // 2**scale
