"""Training augmentation and balance of tfgcrf.data.pipeline: random resized crops in bounds,
flips, sampling frequencies proportional to the weights, determinism, and their config."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from tfgcrf import color
from tfgcrf.config import DataConfig, config_from_dict, load_config
from tfgcrf.data import make_dataset, pipeline
from tfgcrf.data.balance import Augmentation, source_factors
from tfgcrf.errors import UserError


def augmentation(**overrides):
    values = dict(crop_scale=(0.25, 1.0), crop_aspect=(0.75, 4 / 3), flip=True, source_balance=0.5, white_weight=0.3)
    values.update(overrides)
    return Augmentation.checked(**values)


@pytest.mark.parametrize("height, width", [(256, 256), (200, 90), (64, 300), (40, 50), (17, 400)])
@pytest.mark.parametrize("scale, aspect", [((0.25, 1.0), (0.75, 4 / 3)), ((0.05, 0.1), (0.2, 5.0)), ((1.0, 1.0), (1.0, 1.0))])
def test_crop_boxes_stay_in_bounds_and_keep_the_model_size(height, width, scale, aspect):
    augment = augmentation(crop_scale=scale, crop_aspect=aspect)
    image_size = 32
    for index in range(60):
        y, x, h, w = (int(v) for v in pipeline.crop_box(tf.constant([height, width, 3]), tf.constant([index, 7]), image_size, augment))
        assert 0 <= y and y + h <= height and 0 <= x and x + w <= width
        assert h >= min(image_size, height) and w >= min(image_size, width)


def test_crop_areas_and_aspects_follow_the_settings():
    augment = augmentation(crop_scale=(0.25, 1.0), crop_aspect=(0.5, 2.0))
    shorter = 200
    boxes = np.array([[int(v) for v in pipeline.crop_box(tf.constant([400, 400, 3]), tf.constant([i, 1]), 8, augment)]
                      for i in range(400)])
    areas = boxes[:, 2] * boxes[:, 3] / 400.0**2  # the shorter side is 400 here
    ratios = boxes[:, 3] / boxes[:, 2]
    assert 0.24 <= areas.min() and areas.max() <= 1.0 + 1e-2  # sides clipped to the photo
    assert np.log(ratios).min() < np.log(0.6) and np.log(ratios).max() > np.log(1.7)  # jitter both ways
    assert abs(np.median(np.log(ratios))) < 0.15  # log-uniform: symmetric about square
    square = augmentation(crop_scale=(0.25, 1.0), crop_aspect=(1.0, 1.0))
    boxes = np.array([[int(v) for v in pipeline.crop_box(tf.constant([shorter, 300, 3]), tf.constant([i, 2]), 8, square)]
                      for i in range(200)])
    assert np.all(boxes[:, 2] == boxes[:, 3])
    assert boxes[:, 2].min() >= shorter // 2 - 1 and boxes[:, 2].max() <= shorter


def test_flip_mirrors_the_same_crop():
    photo = tf.constant(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    flipped, kept = 0, 0
    for index in range(40):
        seed = tf.constant([index, 3])
        with_flip = pipeline.random_crop(photo, seed, 16, augmentation(flip=True)).numpy()
        without = pipeline.random_crop(photo, seed, 16, augmentation(flip=False)).numpy()
        if np.array_equal(with_flip, without):
            kept += 1
        else:
            np.testing.assert_array_equal(with_flip, without[:, ::-1])
            flipped += 1
    assert flipped > 10 and kept > 10


def test_white_border_detects_cutouts_on_white():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 230, (80, 100, 3), dtype=np.uint8)
    assert not pipeline.white_border(tf.constant(photo)).numpy()
    cutout = np.full((80, 100, 3), 255, np.uint8)
    cutout[20:60, 25:75] = photo[20:60, 25:75]
    assert pipeline.white_border(tf.constant(cutout)).numpy()
    half = photo.copy()
    half[:, :50] = 250  # the left half of the ring is white: 50 % counts as white
    assert pipeline.white_border(tf.constant(half)).numpy()
    half[:, 40:50] = 0
    assert not pipeline.white_border(tf.constant(half)).numpy()


def test_source_factors_have_mean_one_and_follow_the_exponent():
    paths = [f"a/{i}.jpg" for i in range(9)] + ["b/0.jpg"] + [f"c/{i}.png" for i in range(4)] + ["top.jpg"]
    factors = source_factors(paths, 0.5)
    assert np.isclose(np.mean(factors), 1.0)
    assert np.isclose(factors[0] / factors[9], 1 / 3)  # 9 photos vs 1: 1/sqrt(9)
    assert np.isclose(factors[10] / factors[9], 1 / 2)
    assert np.isclose(factors[-1], factors[9])  # a top-level file is a source of its own ('')
    assert source_factors(paths, 0.0) == [1.0] * len(paths)
    by_source = collections.defaultdict(float)
    for path, factor in zip(paths, source_factors(paths, 1.0)):
        by_source[path.split("/")[0] if "/" in path else ""] += factor
    assert np.allclose(list(by_source.values()), len(paths) / 4)  # every source alike


PALETTE = [(r, g, b) for r in (30, 120, 210) for g in (30, 120, 210) for b in (30, 120, 210) if len({r, g, b}) > 1]


@pytest.fixture(scope="module")
def balanced_folder(tmp_path_factory):
    """Source a: 9 photos, b: 1, c: 4 cut-outs on white; each photo's centre has its own color."""
    root = tmp_path_factory.mktemp("balanced")
    rng = np.random.default_rng(2)
    layout = [("a", 9, False), ("b", 1, False), ("c", 4, True)]
    colors, index = {}, 0
    for source, count, white in layout:
        (root / source).mkdir()
        for number in range(count):
            photo = np.clip(np.array(PALETTE[index], float) + rng.normal(0, 3, (64, 64, 3)), 0, 255).astype(np.uint8)
            if white:
                photo[:16], photo[-16:], photo[:, :16], photo[:, -16:] = 255, 255, 255, 255
            name = f"{source}/{number}.png"
            Image.fromarray(photo).save(root / name)
            colors[name] = PALETTE[index]
            index += 1
    return root, colors


def crop_counts(folder, colors, epochs, **kwargs):
    dataset = make_dataset(folder, image_size=16, batch_size=1, crops_per_image=4, split_ratios=(1, 0, 0),
                           crop_scale=(1.0, 1.0), crop_aspect=(1.0, 1.0), **kwargs)
    names = list(colors)
    palette = np.array([colors[name] for name in names], float)
    counts = collections.Counter()
    for l, ab in dataset.repeat(epochs):
        centre = color.model_to_rgb(l, ab).numpy()[0, 6:10, 6:10].reshape(-1, 3).mean(0) * 255
        distances = np.abs(palette - centre).sum(1)
        assert distances.min() < 25, centre  # the whole photo: its centre color
        counts[names[int(np.argmin(distances))]] += 1
    return counts


def test_sampling_frequencies_match_the_weights(balanced_folder):
    folder, colors = balanced_folder
    epochs = 25
    counts = crop_counts(folder, colors, epochs, source_balance=0.5, white_weight=0.3)
    factors = dict(zip(sorted(colors), source_factors(sorted(colors), 0.5)))
    expected = {name: 4 * factors[name] * (0.3 if name.startswith("c/") else 1.0) * epochs for name in colors}
    # a: 4 * 0.78 = 3.1 crops per photo and epoch, b: 9.3, c: 4 * 1.17 * 0.3 = 1.4
    assert expected["b/0.png"] / expected["a/0.png"] == pytest.approx(3.0)
    for group in ("a/", "b/", "c/"):
        got = sum(v for k, v in counts.items() if k.startswith(group))
        want = sum(v for k, v in expected.items() if k.startswith(group))
        assert got == pytest.approx(want, rel=0.08), (group, got, want)
    for name in colors:  # stochastic rounding: each photo within a few standard deviations
        assert abs(counts[name] - expected[name]) <= 4 * np.sqrt(epochs * 0.25) + 1, (name, counts[name], expected[name])


def test_without_balance_every_photo_gives_crops_per_image(balanced_folder):
    folder, colors = balanced_folder
    counts = crop_counts(folder, colors, 2, source_balance=0.0, white_weight=1.0)
    assert counts == {name: 8 for name in colors}


def test_balanced_augmented_batches_are_deterministic_per_seed(balanced_folder):
    folder, _ = balanced_folder
    kwargs = dict(image_size=16, batch_size=4, split_ratios=(1, 0, 0), crop_aspect=(0.5, 2.0), source_balance=0.5,
                  white_weight=0.3)

    def first(seed):
        return [l.numpy() for l, _ in make_dataset(folder, seed=seed, **kwargs).take(4)]

    a, b, c = first(3), first(3), first(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(crop_scale=(0.5, 1.5)), "crop_scale must be"),
        (dict(crop_scale=(0.0, 1.0)), "crop_scale must be"),
        (dict(crop_aspect=(2.0, 1.0)), "crop_aspect must be"),
        (dict(crop_aspect="wide"), "must be \\(min, max\\) pairs"),
        (dict(flip="yes"), "flip must be true or false"),
        (dict(source_balance=1.5), "source_balance must be in"),
        (dict(white_weight=0.0), "white_weight must be in"),
    ],
)
def test_bad_augmentation_values_are_user_errors(balanced_folder, kwargs, message):
    with pytest.raises(UserError, match=message):
        make_dataset(balanced_folder[0], **kwargs)
    (key,) = kwargs
    with pytest.raises(UserError, match=f"data\\.{key}"):
        DataConfig(**kwargs)


def test_data_config_fields_default_load_from_yaml_and_old_configs_stay_valid(tmp_path):
    default = DataConfig()
    assert (default.crop_scale, default.flip, default.source_balance, default.white_weight) == ((0.25, 1.0), True, 0.5, 0.3)
    assert default.crop_aspect == pytest.approx((0.75, 4 / 3))
    config = config_from_dict({"data": {"crop_scale": [0.5, 1], "crop_aspect": [1, 1], "flip": False,
                                        "source_balance": 0, "white_weight": 1}})
    assert config.data.augmentation() == Augmentation((0.5, 1.0), (1.0, 1.0), False, 0.0, 1.0)
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"name": "old", "data": {"source": "offline", "batch_size": 8, "crops_per_image": 4}}))
    assert load_config(str(path)).data.augmentation() == default.augmentation()
    with pytest.raises(UserError, match="data.crop_scale must be a list"):
        config_from_dict({"data": {"crop_scale": 0.5}})
