"""tfgcrf.color against skimage.color (float64 numpy reference) on the fixture photos.

Every check runs for float32 and float64 inputs, with static shapes (eager) and with dynamic shapes
(a tf.function whose input signature has only None dimensions), in the style of TFP's test suites.
"""

import pathlib
import warnings

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf

from tfgcrf import color
from tfgcrf.imageio import read_image

FIXTURE_PHOTOS = pathlib.Path(__file__).parent / "data" / "photos"
CROP = 64


def _photo_crops():
    """[N, CROP, CROP, 3] uint8: a random crop of every fixture photo, plus the colorwheel's gamut."""
    rng = np.random.default_rng(0)
    crops = []
    for path in sorted(FIXTURE_PHOTOS.glob("*.png")):
        photo = read_image(path)
        y = rng.integers(0, photo.shape[0] - CROP + 1)
        x = rng.integers(0, photo.shape[1] - CROP + 1)
        crops.append(photo[y : y + CROP, x : x + CROP])
    assert len(crops) >= 20, f"fixture photos missing under {FIXTURE_PHOTOS}"
    wheel = skimage.data.colorwheel()
    crops.append(wheel[::5, ::5][:CROP, :CROP])
    return np.stack(crops)


def _rgb_cube(steps=18):
    """Every corner, edge and face of the RGB cube on a grid: [steps^3, 3] uint8."""
    levels = np.linspace(0, 255, steps).round().astype(np.uint8)
    return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)


REGIMES = [(dtype, static) for dtype in (np.float32, np.float64) for static in (True, False)]


class TestColorOps:
    @pytest.fixture(
        autouse=True,
        params=REGIMES,
        ids=[f"{np.dtype(d).name}-{'static' if s else 'dynamic'}" for d, s in REGIMES],
    )
    def _regime(self, request):
        self.dtype, self.static_shape = request.param

    @property
    def lab_atol(self):
        # float32 is a few 1e-5 off skimage's float64; the issue allows 0.05.
        return 5e-4 if self.dtype == np.float32 else 1e-9

    def _run(self, fn, *arrays):
        """Calls fn on arrays eagerly (static shapes) or through a tf.function with None dims."""
        tensors = [tf.constant(a) for a in arrays]
        if self.static_shape:
            return tf.nest.map_structure(lambda t: t.numpy(), fn(*tensors))
        signature = [tf.TensorSpec([None] * t.shape.rank, t.dtype) for t in tensors]
        result = tf.function(fn, input_signature=signature, jit_compile=False)(*tensors)
        return tf.nest.map_structure(lambda t: t.numpy(), result)

    def _float(self, rgb_uint8):
        return (rgb_uint8 / 255.0).astype(self.dtype)

    def test_rgb_to_lab_matches_skimage_on_photos(self):
        photos = _photo_crops()
        lab = self._run(color.rgb_to_lab, self._float(photos))
        assert lab.dtype == self.dtype and lab.shape == photos.shape
        reference = skimage.color.rgb2lab(photos)
        np.testing.assert_allclose(lab, reference, rtol=0, atol=self.lab_atol)

    def test_rgb_to_lab_matches_skimage_on_rgb_cube(self):
        cube = _rgb_cube()
        lab = self._run(color.rgb_to_lab, self._float(cube))
        np.testing.assert_allclose(lab, skimage.color.rgb2lab(cube), rtol=0, atol=self.lab_atol)

    def test_lab_to_rgb_matches_skimage_including_out_of_gamut(self):
        rng = np.random.default_rng(1)
        lab = np.stack(
            [rng.uniform(0, 100, 4000), rng.uniform(-128, 127, 4000), rng.uniform(-128, 127, 4000)], -1
        ).reshape(40, 100, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns about the negative Z it clips
            reference = skimage.color.lab2rgb(lab)
        rgb = self._run(color.lab_to_rgb, lab.astype(self.dtype))
        assert rgb.dtype == self.dtype
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
        np.testing.assert_allclose(rgb, reference, rtol=0, atol=1e-4 if self.dtype == np.float32 else 1e-9)

    def test_round_trip_within_one_level(self):
        photos = _photo_crops()
        rgb = self._run(lambda x: color.lab_to_rgb(color.rgb_to_lab(x)), self._float(photos))
        assert np.abs(rgb - photos / 255.0).max() <= 1.0 / 255.0
        np.testing.assert_array_equal(self._run(color.to_uint8, rgb), photos)

    def test_model_units_round_trip_and_ranges(self):
        photos = _photo_crops()
        l, ab = self._run(color.rgb_to_model, self._float(photos))
        assert l.shape == photos.shape[:-1] + (1,) and ab.shape == photos.shape[:-1] + (2,)
        assert l.min() >= 0.0 and l.max() <= 1.0
        assert np.abs(ab).max() <= 128.0 / color.AB_SCALE
        reference = skimage.color.rgb2lab(photos)
        np.testing.assert_allclose(l[..., 0] * 100.0, reference[..., 0], atol=self.lab_atol)
        np.testing.assert_allclose(ab * 110.0, reference[..., 1:], atol=self.lab_atol)
        rgb = self._run(color.model_to_rgb, l, ab)
        assert np.abs(rgb - photos / 255.0).max() <= 1.0 / 255.0

    def test_normalize_denormalize_are_inverse(self):
        rng = np.random.default_rng(2)
        lab = rng.uniform([0, -110, -110], [100, 110, 110], size=(3, 5, 7, 3)).astype(self.dtype)
        l, ab = self._run(color.normalize_lab, lab)
        np.testing.assert_allclose(l, lab[..., :1] / 100.0, rtol=1e-6)
        np.testing.assert_allclose(ab, lab[..., 1:] / 110.0, rtol=1e-6)
        np.testing.assert_allclose(self._run(color.denormalize_lab, l, ab), lab, rtol=1e-6, atol=1e-5)

    def test_lightness_equals_lab_l_and_gray_has_no_chroma(self):
        photos = _photo_crops()
        lightness = self._run(color.lightness, self._float(photos))
        reference = skimage.color.rgb2lab(photos)[..., :1]
        np.testing.assert_allclose(lightness, reference, rtol=0, atol=self.lab_atol)
        gray = np.repeat(photos[..., :1], 3, axis=-1)
        lab = self._run(color.rgb_to_lab, self._float(gray))
        # D65-normalized gray has exactly zero chroma up to the matrix's rounding (~1e-3).
        assert np.abs(lab[..., 1:]).max() < 5e-3

    @pytest.mark.parametrize("shape", [(3,), (5, 3), (2, 4, 6, 3), (2, 3, 4, 5, 3)])
    def test_any_batch_shape(self, shape):
        rgb = np.random.default_rng(3).uniform(size=shape).astype(self.dtype)
        lab = self._run(color.rgb_to_lab, rgb)
        assert lab.shape == shape
        reference = skimage.color.rgb2lab(rgb.reshape(-1, 1, 3).astype(np.float64)).reshape(shape)
        np.testing.assert_allclose(lab, reference, rtol=0, atol=self.lab_atol)
        np.testing.assert_allclose(self._run(color.lab_to_rgb, lab), rgb, atol=1e-4)

    def test_gradients_are_finite_at_black_white_and_thresholds(self):
        rgb = tf.constant(
            [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.04045, 0.0031308, 0.5], [1e-7, 0.2, 0.9]], self.dtype
        )
        with tf.GradientTape() as tape:
            tape.watch(rgb)
            out = color.lab_to_rgb(color.rgb_to_lab(rgb))
        gradient = tape.gradient(out, rgb).numpy()
        assert np.all(np.isfinite(gradient))


def test_integer_inputs_are_scaled_by_dtype_range():
    photos = _photo_crops()
    from_uint8 = color.rgb_to_lab(photos)
    assert from_uint8.dtype == tf.float32
    np.testing.assert_allclose(from_uint8.numpy(), skimage.color.rgb2lab(photos), atol=5e-4)
    from_uint16 = color.rgb_to_lab(photos.astype(np.uint16) * 257)
    np.testing.assert_allclose(from_uint16.numpy(), from_uint8.numpy(), atol=5e-4)


def test_unknown_rank_and_xla():
    photos = _photo_crops()[:2]
    unknown_rank = tf.function(
        lambda x: color.rgb_to_model(x), input_signature=[tf.TensorSpec(None, tf.uint8)]
    )
    l, ab = unknown_rank(photos)
    xla = tf.function(lambda x: color.lab_to_rgb(color.rgb_to_lab(x)), jit_compile=True)
    np.testing.assert_allclose(xla(photos / 255.0).numpy(), photos / 255.0, atol=1.0 / 255.0)
    expected_l, expected_ab = color.rgb_to_model(photos)
    np.testing.assert_allclose(l.numpy(), expected_l.numpy(), atol=1e-5)
    np.testing.assert_allclose(ab.numpy(), expected_ab.numpy(), atol=1e-5)


def test_rejects_wrong_channel_count_and_dtype():
    with pytest.raises(ValueError, match="3 channels"):
        color.rgb_to_lab(tf.zeros([4, 4, 4]))
    with pytest.raises(ValueError, match="3 channels"):
        color.lab_to_rgb(tf.zeros([4, 2]))
    with pytest.raises(TypeError, match="integer or float"):
        color.rgb_to_lab(tf.constant([[True, False, True]]))


def test_to_uint8_rounds_and_saturates():
    values = tf.constant([[-0.1, 0.5 / 255.0 + 1e-6, 1.2], [0.0, 0.999, 1.0]])
    np.testing.assert_array_equal(color.to_uint8(values).numpy(), [[0, 1, 255], [0, 255, 255]])
