import glob
import os
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from skimage import color as skcolor
from skimage import transform

from tfgcrf import fullres
from tfgcrf.imageio import read_image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from upsampling_quality import edge_errors  # noqa: E402  (the benchmark's metric; benchmarks never import tests)

DATA = os.path.join(os.path.dirname(__file__), "data")
GRID = 64


def _smooth_photo(height, width, seed=0):
    """A smooth random color image, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((4, 5, 3))
    return np.round(transform.resize(coarse, (height, width), order=3).clip(0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(48, 80), (1, 1), (3, 7), (200, 5)])
def test_prepare_shapes_and_lightness(shape):
    rgb = _smooth_photo(*shape)
    lightness, l_small = fullres.prepare(rgb, 16)
    assert lightness.shape == shape and l_small.shape == (1, 16, 16, 1)
    np.testing.assert_allclose(lightness.numpy(), skcolor.rgb2lab(rgb)[..., 0], atol=0.01)
    assert 0.0 <= np.min(l_small) and np.max(l_small) <= 1.0


def test_prepare_grid_input_is_the_squeezed_photo_lightness():
    rgb = read_image(os.path.join(DATA, "photos", "opencv_fruits.png"))
    _, l_small = fullres.prepare(rgb, 32)
    # skimage's antialiasing filter (Gaussian) differs a little from TensorFlow's (triangle).
    reference = skcolor.rgb2lab(transform.resize(rgb / 255.0, (32, 32), order=1, anti_aliasing=True))
    difference = np.abs(l_small.numpy()[0, ..., 0] - reference[..., 0] / 100.0)
    assert difference.mean() < 0.01 and difference.max() < 0.08


def test_upsample_constant_chroma_is_exact():
    lightness = fullres.prepare(_smooth_photo(37, 91), GRID)[0]
    ab_small = tf.broadcast_to(tf.constant([0.2, -0.3]), [2, GRID, GRID, 2])
    out = fullres.upsample_chroma(ab_small, lightness).numpy()
    assert out.shape == (2, 37, 91, 2)
    np.testing.assert_allclose(out, np.broadcast_to([0.2, -0.3], out.shape), atol=1e-5)


def test_upsample_reproduces_chroma_affine_in_lightness():
    """Chroma that is an affine function of L is the guided filter's model: recovered exactly."""
    rng = np.random.default_rng(3)
    lightness = 100.0 * transform.resize(rng.random((12, 9)), (150, 110), order=3).clip(0, 1)
    ab_full = np.stack([0.8 * lightness / 100 - 0.3, -0.5 * lightness / 100 + 0.1], axis=-1)
    # The grid chroma is the same affine function of the grid lightness.
    grid_l = tf.image.resize(lightness[None, ..., None] / 100.0, [GRID, GRID], antialias=True).numpy()
    ab_small = np.concatenate([0.8 * grid_l - 0.3, -0.5 * grid_l + 0.1], axis=-1).astype(np.float32)
    out = fullres.upsample_chroma(ab_small, lightness.astype(np.float32), epsilon=1e-9).numpy()[0]
    error = np.abs(out - ab_full)
    # Exact except at the few local lightness extremes finer than the grid, where the output is
    # held within the chroma range of the grid window.
    assert np.quantile(error, 0.95) < 1e-3
    bilinear = np.abs(tf.image.resize(ab_small, lightness.shape).numpy()[0] - ab_full)
    assert np.quantile(bilinear, 0.95) > 10 * np.quantile(error, 0.95)
    assert bilinear.mean() > 5 * error.mean()


def test_upsample_samples_are_independent():
    lightness = fullres.prepare(_smooth_photo(40, 30), GRID)[0]
    ab_small = tf.random.stateless_normal([3, GRID, GRID, 2], seed=[1, 2]) * 0.2
    together = fullres.upsample_chroma(ab_small, lightness).numpy()
    for index in range(3):
        alone = fullres.upsample_chroma(ab_small[index : index + 1], lightness).numpy()[0]
        np.testing.assert_allclose(together[index], alone, atol=1e-6)


def test_guided_upsampling_beats_bilinear_at_edges():
    """On the lossless fixture photos (128 px) upsampled 4x from a 32x32 grid.

    Chroma edges do not always follow luminance edges, so the guided method is not better on
    every photo, but it must be clearly better on average and on most photos. (JPEG photos are
    no ground truth for this: their chroma is itself subsampled and blurred by the codec.)
    """
    paths = sorted(glob.glob(os.path.join(DATA, "photos", "*.png")))
    errors = np.array([edge_errors(read_image(path), 32) for path in paths])
    guided, bilinear = errors.mean(axis=0)
    assert guided < 0.9 * bilinear, (guided, bilinear)
    assert np.mean(errors[:, 0] < errors[:, 1]) > 0.75


def test_compose_keeps_lightness_and_in_gamut_colors():
    rgb = _smooth_photo(33, 47, seed=5)
    lab = skcolor.rgb2lab(rgb)
    lightness, l_small = fullres.prepare(rgb, GRID)
    out = fullres.compose(lightness, (lab[None, ..., 1:] / 110.0).astype(np.float32)).numpy()
    assert out.dtype == np.uint8 and out.shape == (1, 33, 47, 3)
    # The photo's own colors are in gamut: recomposing gives the photo back.
    assert np.abs(out[0].astype(int) - rgb).max() <= 1


def test_compose_desaturates_out_of_gamut_colors_at_constant_lightness():
    rgb = _smooth_photo(40, 60, seed=7)
    lightness = fullres.prepare(rgb, GRID)[0]
    rng = np.random.default_rng(0)
    # Very saturated chroma: mostly outside the sRGB gamut.
    ab = rng.normal(0.0, 0.8, (2, 40, 60, 2)).astype(np.float32)
    out = fullres.compose(lightness, ab).numpy()
    out_lab = skcolor.rgb2lab(out)
    lightness_error = np.abs(out_lab[..., 0] - lightness.numpy())
    assert lightness_error.mean() < 0.3 and lightness_error.max() < 1.0
    # Plain per-channel clipping would change L a lot for such colors.
    requested_lab = np.concatenate([np.broadcast_to(lightness.numpy()[..., None], ab.shape[:-1] + (1,)), ab * 110.0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the clipped out-of-gamut colors
        clipped = skcolor.lab2rgb(requested_lab)
    assert np.abs(skcolor.rgb2lab(clipped)[..., 0] - lightness.numpy()).mean() > 3.0
    # Hue is kept: the output chroma points the same way as the requested one.
    requested, got = ab * 110.0, out_lab[..., 1:]
    chroma = np.linalg.norm(got, axis=-1)
    cosine = np.sum(requested * got, -1) / (np.linalg.norm(requested, axis=-1) * chroma + 1e-9)
    assert np.median(cosine[chroma > 10]) > 0.95
    assert np.all(chroma <= np.linalg.norm(requested, axis=-1) + 2.0)


def test_ops_trace_with_unknown_sizes():
    """The export calls these in signatures with unknown H and W: one trace serves all sizes."""
    def colorize(rgb, ab):
        lightness = fullres.prepare(rgb, GRID)[0]
        return fullres.compose(lightness, fullres.upsample_chroma(ab, lightness))

    pipeline = tf.function(colorize, input_signature=[
        tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, GRID, GRID, 2], tf.float32)
    ])
    for shape in [(20, 30), (65, 9)]:
        out = pipeline(_smooth_photo(*shape), tf.zeros([2, GRID, GRID, 2]))
        assert out.shape == (2, *shape, 3)
    assert len(pipeline._list_all_concrete_functions()) == 1


def test_compose_with_xla_matches():
    rgb = _smooth_photo(30, 50, seed=9)
    lightness = fullres.prepare(rgb, GRID)[0]
    ab = np.random.default_rng(1).normal(0.0, 0.4, (2, 30, 50, 2)).astype(np.float32)
    plain = fullres.compose(lightness, ab).numpy().astype(int)
    fused = fullres.compose(lightness, ab, jit=True).numpy().astype(int)
    assert np.abs(plain - fused).max() <= 1


def _reference_compose(lightness, ab):
    """float64 skimage reference of `compose`: the largest chroma scale k/64 (bisection, 6 steps)
    whose gamut-clipped color keeps L* within 0.25, full chroma if that color already does."""
    lightness = np.broadcast_to(np.asarray(lightness, np.float64), ab.shape[:-1])
    ab = np.asarray(ab, np.float64) * 110.0

    def rgb(scale):
        lab = np.concatenate([lightness[..., None], ab * scale[..., None]], axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # negative Z clipped
            return skcolor.lab2rgb(lab)

    def keeps(scale):
        return np.abs(skcolor.rgb2lab(rgb(scale))[..., 0] - lightness) <= 0.25

    low, high = np.zeros(lightness.shape), np.ones(lightness.shape)
    for _ in range(6):
        middle = 0.5 * (low + high)
        inside = keeps(middle)
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    scale = np.where(keeps(np.ones(lightness.shape)), 1.0, low)
    return np.round(rgb(scale) * 255).astype(int), scale


@pytest.mark.parametrize("jit", [False, True])
def test_compose_matches_a_float64_bisection_reference(jit):
    """The gamut fit tests linear RGB against luminance bounds instead of converting back to L*:
    the same decisions as the float64 reference except within float32 round-off of the boundary."""
    rng = np.random.default_rng(3)
    lightness = rng.uniform(1.0, 99.0, (64, 96)).astype(np.float32)
    ab = rng.normal(0.0, 0.5, (2, 64, 96, 2)).astype(np.float32)
    expected, scale = _reference_compose(lightness, ab)
    assert 0.3 < np.mean(scale < 1.0) < 0.95  # many colors go through the bisection
    out = fullres.compose(lightness, ab, jit=jit).numpy().astype(int)
    difference = np.abs(out - expected).max(axis=-1)
    # Measured: 0.02 % of the pixels one uint8 level off, none more.
    assert np.mean(difference > 0) < 2e-3 and difference.max() <= 3, (
        np.mean(difference > 0), difference.max())


@pytest.mark.parametrize("shape", [(48, 80), (200, 37), (5, 3)])
def test_upsampling_parts_and_xla_path(shape):
    """`guide_statistics` + `upsample_guided` is `upsample_chroma`; the XLA path (bilinear as
    gathers) equals `tf.image.resize` up to float round-off, also when shrinking."""
    lightness = fullres.prepare(_smooth_photo(*shape), 16)[0]
    ab_small = np.random.default_rng(2).normal(0.0, 0.3, (2, 16, 16, 2)).astype(np.float32)
    whole = fullres.upsample_chroma(ab_small, lightness).numpy()
    statistics = fullres.guide_statistics(lightness, 16, 16)
    np.testing.assert_array_equal(fullres.upsample_guided(ab_small, statistics).numpy(), whole)
    fused = fullres.upsample_guided(ab_small, statistics, jit=True).numpy()
    np.testing.assert_allclose(fused, whole, atol=1e-5)
    np.testing.assert_allclose(fullres.upsample_chroma(ab_small, lightness, jit=True), whole, atol=1e-5)
    # A field at another resolution added: resized to the photo as `tf.image.resize` does.
    extra = np.random.default_rng(3).normal(0.0, 0.1, (2, 7, 9, 2)).astype(np.float32)
    with_extra = whole + tf.image.resize(extra, shape, method="bilinear").numpy()
    np.testing.assert_array_equal(fullres.upsample_guided(ab_small, statistics, extra=extra),
                                  with_extra)
    np.testing.assert_allclose(fullres.upsample_guided(ab_small, statistics, jit=True, extra=extra),
                               with_extra, atol=1e-5)


def test_bisection_digits_are_the_halving_bisection():
    """`_bisect_scale` sets the scale's binary digits from the highest: the same tests and the
    same answer (exactly) as halving [low, high], written here as the reference."""
    rng = np.random.default_rng(7)
    lightness = tf.constant(rng.uniform(1.0, 99.0, (40, 60)), tf.float32)
    ab = tf.constant(rng.normal(0.0, 0.6, (40, 60, 2)), tf.float32)
    bounds = fullres._luminance_range(lightness)
    low, high = np.zeros((40, 60), np.float32), np.ones((40, 60), np.float32)
    for _ in range(fullres._GAMUT_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        inside = fullres._keeps_lightness(lightness, ab * middle[..., None], bounds).numpy()
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    scale = fullres._bisect_scale(lightness, ab, bounds).numpy()
    assert len(np.unique(scale)) > 30 and np.mean(scale < 0.5) > 0.1  # many digits decided
    np.testing.assert_array_equal(scale, low)
