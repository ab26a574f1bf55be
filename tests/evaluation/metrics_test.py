import json
import math

import numpy as np
import pytest

from tfgcrf.evaluation import metrics


def test_eob_takes_the_best_sample_per_pixel():
    truth = np.zeros((1, 2, 2))
    samples = np.zeros((2, 1, 2, 2))
    samples[0, 0, 0] = [0.2, 0.0]  # sample 0: error 0.02 at pixel 0, 0.05 at pixel 1
    samples[0, 0, 1] = [0.1, 0.3]
    samples[1, 0, 0] = [0.4, 0.0]  # sample 1: error 0.08 at pixel 0, 0.005 at pixel 1
    samples[1, 0, 1] = [0.1, 0.0]
    # best per pixel: 0.02 and 0.005 -> mean 0.0125 (no single sample is best everywhere)
    assert metrics.eob(samples, truth) == pytest.approx(0.0125)


def test_eob_is_zero_when_a_sample_matches():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (4, 5, 2))
    samples = np.stack([truth + 0.3, truth])
    assert metrics.eob(samples, truth) == 0.0


def test_eob_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="does not match"):
        metrics.eob(np.zeros((2, 4, 4, 2)), np.zeros((4, 3, 2)))


def test_variance_hand_computed():
    samples = np.zeros((2, 1, 1, 2))
    samples[:, 0, 0, 0] = [0.1, 0.3]  # variance 0.01
    samples[:, 0, 0, 1] = [0.0, 0.0]  # variance 0
    assert metrics.variance(samples) == pytest.approx(0.005)


def test_ssim_of_identical_samples_is_one():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (16, 16, 3))
    assert metrics.ssim_pairwise(np.stack([image, image, image])) == pytest.approx(1.0, abs=1e-6)


def test_ssim_pairwise_averages_all_pairs():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([float(tf.image.ssim(images[i], images[j], 1.0)) for i, j in pairs])
    assert metrics.ssim_pairwise(images) == pytest.approx(expected, rel=1e-5)
    assert metrics.ssim_pairwise(images) < 0.5


def test_ssim_pairwise_equals_tensorflow_and_scikit_image_on_photos():
    """The NumPy SSIM (separable window, per-sample means once) against two independent
    implementations on related renderings of a real photo: `tf.image.ssim` (the definition
    the metric follows) and scikit-image's Gaussian SSIM with the same constants (its
    reflect-padded filter, scored on the windows inside the image as TensorFlow's)."""
    import itertools

    import skimage.data
    import tensorflow as tf
    from skimage.metrics import structural_similarity

    photo = skimage.data.astronaut()[::6, ::6].astype(np.float32) / 255.0  # 86x86 RGB
    rng = np.random.default_rng(3)
    samples = np.clip(photo[None] + rng.normal(0, 0.08, (5,) + photo.shape), 0, 1).astype(np.float32)
    samples[3] = photo[..., ::-1]  # one sample with its channels swapped
    pairs = list(itertools.combinations(range(5), 2))
    with_tf = np.mean([float(tf.image.ssim(samples[i], samples[j], 1.0)) for i, j in pairs])

    def skimage_ssim(x, y):
        _, full = structural_similarity(x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False, full=True)
        return full[5:-5, 5:-5].mean()  # the 11x11 windows wholly inside the image

    with_skimage = np.mean([skimage_ssim(samples[i], samples[j]) for i, j in pairs])
    got = metrics.ssim_pairwise(samples)
    assert got == pytest.approx(with_tf, abs=2e-6)
    assert got == pytest.approx(with_skimage, abs=1e-9)
    assert 0.2 < got < 0.9


def test_ssim_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.ssim_pairwise(np.zeros((1, 16, 16, 3)))


def test_chroma_gradient_energy_hand_computed():
    ab = np.zeros((2, 3, 2))
    ab[:, 1, 0] = 0.5  # a jumps by 0.5 between columns 0 and 1, and back between 1 and 2
    # [H-1, W-1] = [1, 2] grid: position (0,0): dx = 0.5 -> 0.25; (0,1): dx = -0.5 -> 0.25
    assert metrics.chroma_gradient_energy(ab) == pytest.approx(0.25)
    ab[1, 0, 1] = 0.2  # b: dy at (0,0) = 0.2 -> adds 0.04 there
    assert metrics.chroma_gradient_energy(ab) == pytest.approx((0.29 + 0.25) / 2)
    region = np.array([[True, False]])
    assert metrics.chroma_gradient_energy(ab, region) == pytest.approx(0.29)
    assert metrics.chroma_gradient_energy(ab, np.zeros((1, 2), bool)) == 0.0


def test_flat_region_excludes_the_neighbourhood_of_edges():
    l = np.zeros((8, 8))
    l[:, 4:] = 0.5  # vertical edge between columns 3 and 4: gradient at grid column 3
    flat = metrics.flat_region(l)
    assert flat.shape == (7, 7)
    assert flat[:, :2].all() and flat[:, 5:].all()
    assert not flat[:, 2:5].any()  # the edge column and its 3x3 neighbours
    assert metrics.flat_region(l[..., None]).tolist() == flat.tolist()


def test_colorfulness_matches_numpy_reference():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    expected = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert metrics.colorfulness(rgb) == pytest.approx(expected)
    assert metrics.colorfulness(rgb / 255.0) == pytest.approx(expected)
    assert metrics.colorfulness(np.full((4, 4, 3), 90, np.uint8)) == 0.0


def test_psnr_hand_computed():
    truth = np.zeros((2, 2, 3), np.uint8)
    image = truth.copy()
    image[0, 0, 0] = 12  # MSE = 144 / 12 = 12
    assert metrics.psnr(image, truth) == pytest.approx(10 * math.log10(255**2 / 12))


def test_psnr_of_identical_images_is_finite_cap():
    truth = np.full((4, 4, 3), 7, np.uint8)
    value = metrics.psnr(truth, truth)
    assert value == metrics.PSNR_CAP_DB
    assert math.isfinite(value) and value == pytest.approx(58.92, abs=0.01)
    json.dumps({"psnr": value}, allow_nan=False)


def test_psnr_requires_uint8():
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr(np.zeros((2, 2, 3)), np.zeros((2, 2, 3), np.uint8))


def test_auc_matches_a_per_threshold_reference():
    rng = np.random.default_rng(3)
    truth = rng.uniform(-0.8, 0.8, (6, 7, 2))
    samples = truth[None] + rng.normal(0, 0.4, (3, 6, 7, 2))
    # Reference: Zhang et al.'s curve point by point, in Lab ab units, float64 loops.
    distances = np.sqrt(((samples - truth[None]) ** 2).sum(-1)) * 110.0
    top = distances[0].ravel()
    best = distances.min(axis=0).ravel()
    curve = lambda d: [np.mean(d <= t) for t in range(151)]  # noqa: E731
    assert metrics.auc(samples[:1], truth) == pytest.approx(np.mean(curve(top)), abs=1e-12)
    assert metrics.auc(samples, truth) == pytest.approx(np.mean(curve(best)), abs=1e-12)
    # The normalized area under the curve is close to the continuous integral mean(1 - d/150)+.
    assert metrics.auc(samples[:1], truth) == pytest.approx(np.mean(np.clip(1 - top / 150, 0, 1)), abs=0.01)
    assert metrics.auc(truth[None], truth) == 1.0
    assert metrics.auc(truth[None] + 2.0, truth) == 0.0  # 311 ab units away everywhere
