"""Full-resolution colorization around the fixed-size model grid, as TensorFlow ops.

The model sees a `size x size` version of the photo's lightness. Its chroma is brought back to the
photo's own resolution by guided upsampling in the spirit of the fast guided filter (He & Sun, 2015)
with the full-resolution lightness as the guide: locally the chroma is modeled as an affine function
of L, so chroma changes follow the photo's luminance edges instead of being blurred as by plain
bilinear interpolation. The result is recombined with the ORIGINAL lightness, after pulling out-of-gamut
colors toward gray at constant L, so the output's luminance equals the input's up to uint8
quantization.

These functions are the single implementation used by the Python API, the CLI, the exported
SavedModel and evaluation; they accept dynamic shapes (any H, W, including tiny and non-square).
"""

import collections

import tensorflow as tf

from tfgcrf import color

# Guided-filter parameters, chosen on real photos (see the README's full-resolution section):
# box radius in model-grid pixels, and the regularizer on the local variance of l = L / 100.
GUIDE_RADIUS = 1
GUIDE_EPSILON = 3e-3

# Out-of-gamut colors: a color whose gamut-clipped RGB changes L by more than this is desaturated.
_GAMUT_TOLERANCE = 0.25  # in L units (0-100)
_GAMUT_BISECTION_STEPS = 6  # chroma scale resolution 1/64


def _resize(images, height, width):
    """Bilinear resize with antialiasing (a proper low-pass filter when shrinking)."""
    return tf.image.resize(images, tf.stack([height, width]), method="bilinear", antialias=True)


def to_photo(ab_small, L_full, jit=False):
    """The one postprocessing path: grid chroma -> uint8 photos at the input's size.

    Guided upsampling (`upsample_chroma`) and L-preserving recombination with the photo's own
    lightness (`compose`); used by the API, the SavedModel, evaluation and its report.

    Args:
      ab_small: `[N, h, w, 2]` chroma on the model grid (model units).
      L_full: `[H, W]` CIE L* of the photo.
      jit: XLA for the upsampling and the recombination (see `compose`).

    Returns:
      uint8 `[N, H, W, 3]` sRGB.
    """
    return compose(L_full, upsample_chroma(ab_small, L_full, jit=jit), jit=jit)


def squeeze(rgb, size):
    """A photo squeezed to the square model grid, as training crops and user photos are.

    Args:
      rgb: `[..., H, W, 3]` uint8 (or float in [0, 1]) sRGB.
      size: side of the square model grid.

    Returns:
      float32 `[..., size, size, 3]` RGB in [0, 1] (bilinear resize with antialiasing).
    """
    rgb = tf.image.convert_image_dtype(tf.convert_to_tensor(rgb), tf.float32)
    return tf.clip_by_value(_resize(rgb, size, size), 0.0, 1.0)


def prepare(rgb, size):
    """Splits a photo into its full-resolution lightness and the model's gray input.

    Args:
      rgb: `[H, W, 3]` uint8 (or float in [0, 1]) sRGB image. A gray photo is passed with its
        single channel repeated three times.
      size: side of the square model grid.

    Returns:
      `(L_full, l_small)`: `L_full` `[H, W]` float32 CIE L* in [0, 100], and `l_small`
      `[1, size, size, 1]` the model input `L / L_SCALE` of the photo squeezed to the square
      grid (the aspect ratio is restored by `upsample_chroma`).
    """
    rgb = tf.image.convert_image_dtype(tf.convert_to_tensor(rgb), tf.float32)
    # The model input is resized in RGB, exactly as the training pipeline resizes its crops.
    small = squeeze(rgb[tf.newaxis], size)
    return color.lightness(rgb)[..., 0], color.lightness(small) / color.L_SCALE


def _box(images, radius):
    """Mean over a (2 radius + 1)^2 window, normalized by the pixels inside the image at borders."""
    return tf.nn.avg_pool2d(images, ksize=2 * radius + 1, strides=1, padding="SAME")


class GuideStatistics(collections.namedtuple(
        "GuideStatistics", ["guide_full", "guide", "mean_guide", "denominator"])):
    """What the guided upsampling needs of the photo alone (`guide_statistics`), for many calls.

    Fields: `guide_full` `[1, H, W, 1]` l = L / L_SCALE at full resolution; `guide`
    `[1, h, w, 1]` its antialiased resize to the grid; `mean_guide` its box mean; `denominator`
    the box variance + epsilon (all float32).
    """


def guide_statistics(L_full, grid_height, grid_width, radius=GUIDE_RADIUS, epsilon=GUIDE_EPSILON):
    """The photo-only part of `upsample_chroma` (an edit session computes it once per photo).

    Args:
      L_full: `[H, W]` CIE L* of the photo, in [0, 100].
      grid_height, grid_width: the model grid's size (int or scalar tensors).
      radius, epsilon: as for `upsample_chroma`.

    Returns:
      a `GuideStatistics`.
    """
    guide_full = tf.convert_to_tensor(L_full, tf.float32)[tf.newaxis, :, :, tf.newaxis] / color.L_SCALE
    guide = _resize(guide_full, grid_height, grid_width)  # [1, h, w, 1], broadcasts over samples
    mean_guide = _box(guide, radius)
    variance = _box(guide * guide, radius) - mean_guide * mean_guide
    return GuideStatistics(guide_full, guide, mean_guide, variance + epsilon)


def _interpolation(out_size, in_size):
    """Bilinear weights along one axis as `tf.image.resize` computes them (half-pixel centers):
    `(lower [out], upper [out], fraction [out, 1])`."""
    coord = ((tf.cast(tf.range(out_size), tf.float32) + 0.5)
             * (tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)) - 0.5)
    floor = tf.floor(coord)
    lower = tf.cast(tf.maximum(floor, 0.0), tf.int32)
    upper = tf.minimum(tf.cast(tf.math.ceil(coord), tf.int32), in_size - 1)
    return lower, upper, (coord - floor)[:, tf.newaxis]


def _bilinear(field, height, width):
    """`tf.image.resize(field, [height, width], "bilinear")` as gathers and lerps, which XLA fuses
    with what follows (its own resize kernel is slow on CPU); equal up to float round-off."""
    lower, upper, fraction = _interpolation(width, tf.shape(field)[2])
    left, right = tf.gather(field, lower, axis=2), tf.gather(field, upper, axis=2)
    rows = left + (right - left) * fraction
    lower, upper, fraction = _interpolation(height, tf.shape(field)[1])
    top, bottom = tf.gather(rows, lower, axis=1), tf.gather(rows, upper, axis=1)
    return top + (bottom - top) * fraction[:, tf.newaxis]


def upsample_guided(ab_small, statistics, radius=GUIDE_RADIUS, jit=False, extra=None):
    """`upsample_chroma` with the photo's `guide_statistics` given: the part that depends on the
    chroma (linear in `ab_small` up to the final clip to each grid window's chroma range).

    Args:
      ab_small: `[N, h, w, 2]` chroma in model units.
      statistics: `guide_statistics` of the photo for this grid and the same `radius`.
      radius: as for `upsample_chroma`.
      jit: the full-resolution part compiled by XLA, its bilinear upsampling written as gathers
        (equal up to float round-off; XLA's own resize is slow on CPU). Not inside exported
        SavedModels.
      extra: optional `[N, h', w', 2]` field at any resolution (e.g. the full-resolution
        propagation's correction at its working resolution), resized bilinearly to the photo
        (`tf.image.resize`, half-pixel centres; with `jit` as gathers inside the same XLA kernel,
        equal up to float round-off) and added to the answer: no full-resolution copy of it
        exists before the sum.

    Returns:
      `[N, H, W, 2]` chroma in model units.
    """
    ab_small = tf.convert_to_tensor(ab_small, tf.float32)
    guide_full, guide, mean_guide, denominator = GuideStatistics(*statistics)
    covariance = _box(guide * ab_small, radius) - mean_guide * _box(ab_small, radius)
    slope = _box(covariance / denominator, radius)
    offset = ab_small - slope * guide
    # Full-resolution detail (texture, thin highlights) far outside a window's lightness range
    # would extrapolate the slope: keep each pixel within the chroma range of its grid window.
    window = 2 * radius + 1
    highest = tf.nn.max_pool2d(ab_small, window, strides=1, padding="SAME")
    lowest = -tf.nn.max_pool2d(-ab_small, window, strides=1, padding="SAME")
    fields = tf.concat([slope, offset, lowest, highest], axis=-1)  # [N, h, w, 8]
    if extra is None:
        return (_expand_xla if jit else _expand)(fields, guide_full)
    extra = tf.convert_to_tensor(extra, tf.float32)
    return (_expand_xla if jit else _expand)(fields, guide_full, extra)


def _expand(fields, guide_full, extra=None, gathers=False):
    """Grid fields `[N, h, w, 8]` (slope, offset, lowest, highest) -> full-resolution chroma
    (+ `extra` `[N, h', w', 2]` resized to the photo, see `upsample_guided`)."""
    full = tf.shape(guide_full)[1:3]
    # Plain bilinear (the same as the antialiased resize when enlarging, and 4x faster): one
    # resize for the four fields, or with gathers one per field (XLA then fuses each output
    # pixel's gathers without an [H, W, 8] intermediate: 1.5x less CPU).
    if gathers:
        slope, offset, lowest, highest = (_bilinear(field, full[0], full[1])
                                          for field in tf.split(fields, 4, axis=-1))
    else:
        fields = tf.image.resize(fields, full, method="bilinear")
        slope, offset, lowest, highest = tf.split(fields, 4, axis=-1)
    chroma = tf.clip_by_value(slope * guide_full + offset, lowest, highest)
    if extra is None:
        return chroma
    if gathers:
        return chroma + _bilinear(extra, full[0], full[1])
    return chroma + tf.image.resize(extra, full, method="bilinear")


# The full-resolution part fused by XLA (compiled once per image size). Not for SavedModels.
_expand_xla = tf.function(
    lambda fields, guide_full, extra=None: _expand(fields, guide_full, extra, gathers=True),
    jit_compile=True, autograph=False)


def upsample_chroma(ab_small, L_full, radius=GUIDE_RADIUS, epsilon=GUIDE_EPSILON, jit=False):
    """Edge-aware upsampling of model-grid chroma to full resolution, guided by the lightness.

    A guided-filter variant for upsampling: on the grid, each window fits `ab ~ slope * l + offset`
    by ridge regression; the slopes are averaged over the windows, and the offset of each grid
    pixel is set so that the model reproduces its chroma exactly. Slope and offset are interpolated
    bilinearly to full resolution and applied to the full-resolution lightness, so chroma changes
    follow the photo's luminance edges between grid pixels. The result is bounded by the chroma
    range of the grid window around each pixel.

    `guide_statistics` + `upsample_guided`, which an edit session calls apart (the first once).

    Args:
      ab_small: `[N, h, w, 2]` chroma in model units (ab / AB_SCALE).
      L_full: `[H, W]` CIE L* of the photo, in [0, 100].
      radius: box radius of the local fit, in grid pixels.
      epsilon: ridge regularizer of the fit on the variance of `l = L / L_SCALE`; larger values
        give flatter slopes, i.e. results closer to plain bilinear interpolation.
      jit: the full-resolution part compiled by XLA (see `upsample_guided`).

    Returns:
      `[N, H, W, 2]` chroma in model units.
    """
    ab_small = tf.convert_to_tensor(ab_small, tf.float32)
    grid = tf.shape(ab_small)
    statistics = guide_statistics(L_full, grid[1], grid[2], radius, epsilon)
    return upsample_guided(ab_small, statistics, radius, jit=jit)


def _to_rgb(lightness, ab):
    """CIE L* `[...]` and chroma `[..., 2]` (model units) -> gamut-clipped sRGB `[..., 3]` float."""
    return color.model_to_rgb(lightness[..., tf.newaxis] / color.L_SCALE, ab)


def _keeps_lightness(lightness, ab, luminance_range):
    """Whether the gamut-clipped color (L*, chroma `ab` [..., 2] in model units) keeps its
    lightness within `_GAMUT_TOLERANCE`, tested on linear RGB without the transfer curve:
    clipping sRGB to [0, 1] clips linear RGB to [0, 1], and |L*' - L*| <= tolerance is
    low <= Y' <= high on the luminance (`luminance_range`, from `_luminance_range`)."""
    return _keeps_lightness_planes(lightness, ab[..., 0], ab[..., 1], luminance_range)


def _keeps_lightness_planes(lightness, a, b, luminance_range):
    """`_keeps_lightness` of the chroma's two planes `a`, `b` `[...]` (model units)."""
    channels = color.lab_to_linear_rgb(lightness, a * color.AB_SCALE, b * color.AB_SCALE)
    clipped = color.luminance([tf.clip_by_value(c, 0.0, 1.0) for c in channels])
    low, high = luminance_range
    return (clipped >= low) & (clipped <= high)


def _luminance_range(lightness):
    return (color.lightness_to_luminance(lightness - _GAMUT_TOLERANCE),
            color.lightness_to_luminance(lightness + _GAMUT_TOLERANCE))


def _bisect_scale(lightness, ab, luminance_range):
    """The largest chroma scale k / 2^steps (k < 2^steps) found by bisection whose color keeps
    its lightness (scale 0 is gray, always in gamut), `[...]`.

    Written as the bisection's binary digits set from the highest: halving [low, high] tests
    low + 2^-(step + 1) at every step and keeps it when it passes, so one running value gives
    the same tests and the same answer (exactly: the scales are multiples of 1/64). XLA fuses
    this chain into one pass; the pair of selects (low, high) of the halving form it did not
    (a scale-only kernel took 90x longer at 4000x3000)."""
    a, b = ab[..., 0], ab[..., 1]  # planes: XLA recomputed slices of [..., 2] products
    scale = tf.zeros_like(a)
    for step in range(_GAMUT_BISECTION_STEPS):
        candidate = scale + 0.5 ** (step + 1)
        inside = _keeps_lightness_planes(lightness, a * candidate, b * candidate,
                                         luminance_range)
        scale = tf.where(inside, candidate, scale)
    return scale


def _gamut_scale(lightness, ab):
    """Every pixel's chroma scale of `compose`: 1 where the color keeps its lightness, else
    `_bisect_scale`'s (no gather; the XLA path)."""
    luminance_range = _luminance_range(lightness)
    return tf.where(_keeps_lightness(lightness, ab, luminance_range), 1.0,
                    _bisect_scale(lightness, ab, luminance_range))


def _scaled_rgb(lightness, ab, scale):
    """uint8 sRGB `[..., 3]` of L* `[...]`, chroma `[..., 2]` (model units) times `scale`
    `[...]`, computed per channel plane (`color.lab_to_rgb_channels`, its power as exp and log,
    which XLA vectorizes) and stacked as uint8: the XLA path."""
    channels = color.lab_to_rgb_channels(lightness, ab[..., 0] * scale * color.AB_SCALE,
                                         ab[..., 1] * scale * color.AB_SCALE, exp_log=True)
    return tf.stack([color.to_uint8(channel) for channel in channels], axis=-1)


def _compose_xla_parts(lightness, ab):
    """`compose(jit=True)`: two XLA kernels, the scales then the colors. In one kernel XLA
    computed every pixel's bisection once per output channel (2.5x the time at 4000x3000)."""
    return _rgb_xla(lightness, ab, _gamut_scale_xla(lightness, ab))


def _broadcast(function):
    """`function(L* [H, W] broadcast to ab's [N, H, W], ab, *rest)` (inside the XLA kernel: no
    broadcast copy of the photo's lightness)."""
    return lambda lightness, ab, *rest: function(tf.broadcast_to(lightness, tf.shape(ab)[:-1]),
                                                 ab, *rest)


# Compiled once per image size. Not for exported SavedModels (TF Serving runs XLA on CPU only
# when asked to).
_gamut_scale_xla = tf.function(_broadcast(_gamut_scale), jit_compile=True, autograph=False)
_rgb_xla = tf.function(_broadcast(_scaled_rgb), jit_compile=True, autograph=False)


def compose(L_full, ab_full, jit=False):
    """Recombines the photo's own lightness with predicted chroma into uint8 sRGB images.

    Colors outside the sRGB gamut are not simply clipped per channel (which changes their
    lightness): their chroma is scaled toward gray, by bisection, to the largest tested scale
    (a multiple of 1/64) whose gamut-clipped color keeps its lightness within 0.25 L*. The test
    runs on linear RGB (no transfer curve), and without XLA only the colors that fail it at full
    chroma go through the bisection.

    Args:
      L_full: `[H, W]` CIE L* of the input photo.
      ab_full: `[N, H, W, 2]` chroma in model units.
      jit: compile the whole recombination with XLA (faster for large photos; each new image
        size compiles once).

    Returns:
      `[N, H, W, 3]` uint8 sRGB whose lightness equals `L_full` up to quantization.
    """
    ab_full = tf.convert_to_tensor(ab_full, tf.float32)
    if jit:
        return _compose_xla_parts(tf.convert_to_tensor(L_full, tf.float32), ab_full)
    lightness = tf.broadcast_to(tf.convert_to_tensor(L_full, tf.float32), tf.shape(ab_full)[:-1])
    luminance_range = _luminance_range(lightness)
    outside = tf.where(tf.logical_not(_keeps_lightness(lightness, ab_full, luminance_range)))
    scale = _bisect_scale(tf.gather_nd(lightness, outside), tf.gather_nd(ab_full, outside),
                          [tf.gather_nd(bound, outside) for bound in luminance_range])
    scale = tf.tensor_scatter_nd_update(tf.ones_like(lightness), outside, scale)
    return color.to_uint8(_to_rgb(lightness, ab_full * scale[..., tf.newaxis]))
