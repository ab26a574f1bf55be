"""sRGB <-> CIE Lab conversion and the model's Lab normalization, as TensorFlow ops.

These functions run inside exported SavedModels, so they use TensorFlow ops only. They accept any
batch shape `[..., 3]` (static or dynamic, even unknown rank) and follow `skimage.color`
conventions: sRGB transfer curve, D65 white point with the 2-degree observer, CIE 1976 L*a*b*.

The model works in normalized units: gray `l = L / L_SCALE` in [0, 1] and chroma
`ab = (a, b) / AB_SCALE`, roughly in [-1, 1]. `normalize_lab` and `denormalize_lab` are the only
place where these scales are applied.
"""

import numpy as np
import tensorflow as tf

L_SCALE = 100.0
AB_SCALE = 110.0

# Linear sRGB -> CIE XYZ (D65), the matrix of skimage.color.colorconv.xyz_from_rgb.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# Its inverse, computed in float64 exactly as skimage does.
_RGB_FROM_XYZ = tuple(map(tuple, np.linalg.inv(np.array(_XYZ_FROM_RGB)).tolist()))
# D65 reference white (2-degree observer).
_WHITE = (0.95047, 1.0, 1.08883)

# CIE Lab piecewise function constants as skimage uses them.
_LAB_EPSILON = 0.008856  # (6/29)^3 threshold on XYZ / white
_LAB_KAPPA = 7.787  # slope of the linear segment
_LAB_OFFSET = 16.0 / 116.0
_LAB_INVERSE_THRESHOLD = 0.2068966  # 6/29, threshold on f(t)

# sRGB transfer curve.
_SRGB_THRESHOLD = 0.04045
_LINEAR_THRESHOLD = 0.0031308


def _to_float(rgb):
    """uint8/uint16 -> float32 in [0, 1]; float inputs keep their dtype (assumed in [0, 1])."""
    rgb = tf.convert_to_tensor(rgb)
    if rgb.dtype.is_integer:
        return tf.cast(rgb, tf.float32) / float(rgb.dtype.max)
    if not rgb.dtype.is_floating:
        raise TypeError(f"expected an integer or float image tensor, got {rgb.dtype.name}")
    return rgb


def _check_channels(tensor, count, name):
    channels = tensor.shape[-1] if tensor.shape.rank else None
    if channels is not None and channels != count:
        raise ValueError(f"{name} must have {count} channels in its last axis, got shape {tensor.shape}")


def _mix(channels, matrix):
    """Applies a 3x3 matrix to a list of 3 channel tensors (elementwise, works for any rank)."""
    return [row[0] * channels[0] + row[1] * channels[1] + row[2] * channels[2] for row in matrix]


def _split(tensor):
    return [tensor[..., 0], tensor[..., 1], tensor[..., 2]]


def _safe_pow(x, exponent, threshold):
    """x ** exponent where x > threshold; the clamp keeps gradients finite in the other branch."""
    return tf.pow(tf.maximum(x, threshold), exponent)


def _srgb_to_linear(rgb):
    curve = _safe_pow((rgb + 0.055) / 1.055, 2.4, _SRGB_THRESHOLD)
    return tf.where(rgb > _SRGB_THRESHOLD, curve, rgb / 12.92)


def _exp_log_pow(x, exponent, threshold):
    """`_safe_pow` as exp(exponent log x): XLA's CPU kernels vectorize exp and log but call the
    C library's pow per element (an sRGB conversion of a 12-MP photo 2.6x faster; equal up to
    float round-off: 98 of 12M pixels one uint8 level apart)."""
    return tf.exp(tf.math.log(tf.maximum(x, threshold)) * exponent)


def _linear_to_srgb(linear, power=_safe_pow):
    curve = 1.055 * power(linear, 1.0 / 2.4, _LINEAR_THRESHOLD) - 0.055
    return tf.where(linear > _LINEAR_THRESHOLD, curve, linear * 12.92)


def _lab_f(t):
    cube_root = _safe_pow(t, 1.0 / 3.0, _LAB_EPSILON)
    return tf.where(t > _LAB_EPSILON, cube_root, _LAB_KAPPA * t + _LAB_OFFSET)


def _lab_f_inverse(f):
    return tf.where(f > _LAB_INVERSE_THRESHOLD, f * f * f, (f - _LAB_OFFSET) / _LAB_KAPPA)


def _y_to_lightness(y):
    return 116.0 * _lab_f(y) - 16.0


def rgb_to_lab(rgb, name=None):
    """Converts sRGB to CIE Lab (D65).

    Args:
      rgb: `[..., 3]` tensor, either an integer image (uint8, uint16: scaled by the dtype maximum)
        or float in [0, 1].
      name: optional name scope.

    Returns:
      `[..., 3]` Lab tensor: L in [0, 100], a and b roughly in [-128, 127]. float32 for integer
      inputs, otherwise the input's float dtype.
    """
    with tf.name_scope(name or "rgb_to_lab"):
        rgb = _to_float(rgb)
        _check_channels(rgb, 3, "rgb")
        x, y, z = _mix(_split(_srgb_to_linear(rgb)), _XYZ_FROM_RGB)
        fx, fy, fz = (_lab_f(c / w) for c, w in zip((x, y, z), _WHITE))
        return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab, name=None):
    """Converts CIE Lab (D65) to sRGB, clipping colors outside the sRGB gamut.

    Args:
      lab: float `[..., 3]` tensor (L, a, b).
      name: optional name scope.

    Returns:
      `[..., 3]` sRGB tensor in [0, 1], same float dtype as `lab`.
    """
    with tf.name_scope(name or "lab_to_rgb"):
        lab = tf.convert_to_tensor(lab)
        _check_channels(lab, 3, "lab")
        return tf.stack(lab_to_rgb_channels(*_split(lab)), axis=-1)


def lab_to_rgb_channels(lightness, a, b, exp_log=False):
    """`lab_to_rgb` of Lab as three same-shape tensors -> `[R, G, B]` sRGB tensors in [0, 1].

    Per channel plane (no `[..., 3]` tensor inside): an XLA kernel then computes each pixel's
    channels together (`tfgcrf.fullres.compose`). `exp_log`: the transfer curve's power as
    exp(p log x), for XLA kernels on CPU (`_exp_log_pow`)."""
    power = _exp_log_pow if exp_log else _safe_pow
    return [tf.clip_by_value(_linear_to_srgb(c, power), 0.0, 1.0)
            for c in lab_to_linear_rgb(lightness, a, b)]


def lab_to_linear_rgb(lightness, a, b):
    """CIE Lab (D65) as three same-shape tensors -> `[R, G, B]` linear sRGB tensors, not clipped.

    The first half of `lab_to_rgb` (values outside [0, 1] are outside the sRGB gamut); kept apart
    for gamut tests that need no transfer curve (`tfgcrf.fullres.compose`).
    """
    fy = (lightness + 16.0) / 116.0
    fx = fy + a / 500.0
    # Negative f(z) has no physical XYZ; skimage clips it to zero the same way.
    fz = tf.maximum(fy - b / 200.0, 0.0)
    xyz = [_lab_f_inverse(f) * w for f, w in zip((fx, fy, fz), _WHITE)]
    return _mix(xyz, _RGB_FROM_XYZ)


def luminance(linear_rgb):
    """CIE Y (white = 1) of linear sRGB channels `[R, G, B]` (a list of same-shape tensors)."""
    return _mix(linear_rgb, _XYZ_FROM_RGB)[1]


def lightness_to_luminance(lightness):
    """CIE L* -> luminance Y (white = 1): the inverse of L* = 116 f(Y) - 16 (also below L* = 0)."""
    return _lab_f_inverse((tf.convert_to_tensor(lightness) + 16.0) / 116.0) * _WHITE[1]


def lightness(rgb, name=None):
    """CIE L* of an sRGB image, `[..., 3]` -> `[..., 1]` in [0, 100].

    Equal to `rgb_to_lab(rgb)[..., :1]` but computes only the luminance Y. Gray images (R = G = B)
    map exactly to their Lab lightness, so this is also the gray -> L conversion.

    Args:
      rgb: `[..., 3]` integer or float image, as for `rgb_to_lab`.
      name: optional name scope.

    Returns:
      `[..., 1]` lightness, float32 for integer input, otherwise the input's float dtype.
    """
    with tf.name_scope(name or "lightness"):
        rgb = _to_float(rgb)
        _check_channels(rgb, 3, "rgb")
        y = luminance(_split(_srgb_to_linear(rgb)))
        return _y_to_lightness(y)[..., tf.newaxis]


def normalize_lab(lab):
    """Splits Lab into model units: `(l [..., 1] = L / 100, ab [..., 2] = (a, b) / 110)`."""
    lab = tf.convert_to_tensor(lab)
    return lab[..., :1] / L_SCALE, lab[..., 1:] / AB_SCALE


def denormalize_lab(l, ab):
    """Inverse of `normalize_lab`: model units `(l [..., 1], ab [..., 2])` -> Lab `[..., 3]`."""
    l = tf.convert_to_tensor(l)
    ab = tf.convert_to_tensor(ab, dtype=l.dtype)
    return tf.concat([l * L_SCALE, ab * AB_SCALE], axis=-1)


def rgb_to_model(rgb):
    """sRGB image (uint8 or float in [0, 1]) -> model units `(l [..., 1], ab [..., 2])`."""
    return normalize_lab(rgb_to_lab(rgb))


def model_to_rgb(l, ab):
    """Model units `(l [..., 1], ab [..., 2])` -> gamut-clipped sRGB float in [0, 1]."""
    return lab_to_rgb(denormalize_lab(l, ab))


def to_uint8(rgb):
    """Float RGB in [0, 1] -> uint8 with rounding (values outside [0, 1] saturate)."""
    rgb = tf.convert_to_tensor(rgb)
    return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)
