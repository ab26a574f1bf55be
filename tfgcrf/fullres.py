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
      jit: XLA for the color conversion (see `compose`).

    Returns:
      uint8 `[N, H, W, 3]` sRGB.
    """
    return compose(L_full, upsample_chroma(ab_small, L_full), jit=jit)


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


def upsample_chroma(ab_small, L_full, radius=GUIDE_RADIUS, epsilon=GUIDE_EPSILON):
    """Edge-aware upsampling of model-grid chroma to full resolution, guided by the lightness.

    A guided-filter variant for upsampling: on the grid, each window fits `ab ~ slope * l + offset`
    by ridge regression; the slopes are averaged over the windows, and the offset of each grid
    pixel is set so that the model reproduces its chroma exactly. Slope and offset are interpolated
    bilinearly to full resolution and applied to the full-resolution lightness, so chroma changes
    follow the photo's luminance edges between grid pixels. The result is bounded by the chroma
    range of the grid window around each pixel.

    Args:
      ab_small: `[N, h, w, 2]` chroma in model units (ab / AB_SCALE).
      L_full: `[H, W]` CIE L* of the photo, in [0, 100].
      radius: box radius of the local fit, in grid pixels.
      epsilon: ridge regularizer of the fit on the variance of `l = L / L_SCALE`; larger values
        give flatter slopes, i.e. results closer to plain bilinear interpolation.

    Returns:
      `[N, H, W, 2]` chroma in model units.
    """
    ab_small = tf.convert_to_tensor(ab_small, tf.float32)
    guide_full = tf.convert_to_tensor(L_full, tf.float32)[tf.newaxis, :, :, tf.newaxis] / color.L_SCALE
    grid = tf.shape(ab_small)
    full = tf.shape(guide_full)

    def upsample(field):
        # Plain bilinear: the same as the antialiased resize when enlarging, and 4x faster.
        return tf.image.resize(field, full[1:3], method="bilinear")

    guide = _resize(guide_full, grid[1], grid[2])  # [1, h, w, 1], broadcasts over the N samples
    mean_guide = _box(guide, radius)
    covariance = _box(guide * ab_small, radius) - mean_guide * _box(ab_small, radius)
    variance = _box(guide * guide, radius) - mean_guide * mean_guide
    slope = _box(covariance / (variance + epsilon), radius)
    offset = ab_small - slope * guide
    ab_full = upsample(slope) * guide_full + upsample(offset)
    # Full-resolution detail (texture, thin highlights) far outside a window's lightness range
    # would extrapolate the slope: keep each pixel within the chroma range of its grid window.
    window = 2 * radius + 1
    highest = tf.nn.max_pool2d(ab_small, window, strides=1, padding="SAME")
    lowest = -tf.nn.max_pool2d(-ab_small, window, strides=1, padding="SAME")
    return tf.clip_by_value(ab_full, upsample(lowest), upsample(highest))


def _to_rgb(lightness, ab):
    """CIE L* `[...]` and chroma `[..., 2]` (model units) -> gamut-clipped sRGB `[..., 3]` float."""
    return color.model_to_rgb(lightness[..., tf.newaxis] / color.L_SCALE, ab)


def _keeps_lightness(rgb, lightness):
    """Whether gamut clipping left the lightness of the colors intact."""
    return tf.abs(color.lightness(rgb)[..., 0] - lightness) <= _GAMUT_TOLERANCE


def _rgb_and_fit(lightness, ab):
    """sRGB of every color and whether it kept its lightness (the full-resolution pass)."""
    rgb = _to_rgb(lightness, ab)
    return rgb, _keeps_lightness(rgb, lightness)


# The same pass fused by XLA: about 5x faster on CPU, compiled once per image size. Not for
# exported SavedModels (TF Serving runs XLA on CPU only when asked to).
_rgb_and_fit_xla = tf.function(_rgb_and_fit, jit_compile=True, autograph=False)


def compose(L_full, ab_full, jit=False):
    """Recombines the photo's own lightness with predicted chroma into uint8 sRGB images.

    Colors outside the sRGB gamut are not simply clipped per channel (which changes their
    lightness): their chroma is scaled toward gray, by bisection, to the largest tested scale whose
    color keeps its lightness. Only those (usually few) colors go through the bisection.

    Args:
      L_full: `[H, W]` CIE L* of the input photo.
      ab_full: `[N, H, W, 2]` chroma in model units.
      jit: compile the full-resolution color conversion with XLA (faster for large photos;
        each new image size compiles once).

    Returns:
      `[N, H, W, 3]` uint8 sRGB whose lightness equals `L_full` up to quantization.
    """
    ab_full = tf.convert_to_tensor(ab_full, tf.float32)
    lightness = tf.broadcast_to(tf.convert_to_tensor(L_full, tf.float32), tf.shape(ab_full)[:-1])
    rgb, kept = (_rgb_and_fit_xla if jit else _rgb_and_fit)(lightness, ab_full)
    outside = tf.where(tf.logical_not(kept))
    lightness_out = tf.gather_nd(lightness, outside)
    ab_out = tf.gather_nd(ab_full, outside)
    low = tf.zeros_like(lightness_out)  # scale 0 is gray, always in gamut
    high = tf.ones_like(lightness_out)
    for _ in range(_GAMUT_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        inside = _keeps_lightness(_to_rgb(lightness_out, ab_out * middle[:, tf.newaxis]), lightness_out)
        low = tf.where(inside, middle, low)
        high = tf.where(inside, high, middle)
    rgb_out = _to_rgb(lightness_out, ab_out * low[:, tf.newaxis])
    return color.to_uint8(tf.tensor_scatter_nd_update(rgb, outside, rgb_out))
