"""tfgcrf.data.make_dataset on image folders: shapes, ranges, bad files, crops, determinism."""

import logging
import pathlib
import shutil

import numpy as np
import pytest
import skimage.color
from PIL import Image

from tfgcrf import color
from tfgcrf.data import folders, make_dataset
from tfgcrf.errors import UserError
from tfgcrf.imageio import read_image

FIXTURE_PHOTOS = pathlib.Path(__file__).parent / "photos"


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """The fixture photos in a nested tree, plus a corrupt, a truncated and a non-image file."""
    root = tmp_path_factory.mktemp("photos")
    for index, path in enumerate(sorted(FIXTURE_PHOTOS.glob("*.png"))):
        target = root / f"group{index % 3}" / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    (root / "group0" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    png = (FIXTURE_PHOTOS / "opencv_apple.png").read_bytes()
    (root / "group1" / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "notes.txt").write_text("not an image, not listed")
    return root


def _arrays(dataset):
    return [(l.numpy(), ab.numpy()) for l, ab in dataset]


def test_training_batches_from_folder_with_bad_files(photo_folder, caplog):
    dataset = make_dataset(photo_folder, image_size=32, batch_size=8, crops_per_image=2)
    with caplog.at_level(logging.WARNING, logger="tfgcrf.data"):
        epochs = [_arrays(dataset) for _ in range(2)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "tfgcrf.data"]
    assert len(warnings) == 1, warnings  # one counted warning, not one per file or per epoch
    train_files = folders.split_images(photo_folder, "train")
    assert f"skipped 2 of the {len(train_files)} image files of the 'train' split" in warnings[0]
    readable = len(train_files) - 2
    for batches in epochs:
        # every readable photo is >= 64 px, so gives crops_per_image crops; the partial batch is dropped
        assert len(batches) == readable * 2 // 8
        for l, ab in batches:
            assert l.shape == (8, 32, 32, 1) and ab.shape == (8, 32, 32, 2)
            assert l.dtype == np.float32 and ab.dtype == np.float32
            assert 0.0 <= l.min() and l.max() <= 1.0
            assert np.abs(ab).max() <= 128.0 / color.AB_SCALE
    first, second = (np.concatenate([l for l, _ in batches]) for batches in epochs)
    assert not np.allclose(first, second)  # new crops and order every epoch


def test_training_is_deterministic_per_seed(photo_folder):
    def first_batches(seed):
        return _arrays(make_dataset(photo_folder, image_size=16, batch_size=4, seed=seed).take(3))

    same_a, same_b, other = first_batches(7), first_batches(7), first_batches(8)
    for (l_a, ab_a), (l_b, ab_b) in zip(same_a, same_b):
        np.testing.assert_array_equal(l_a, l_b)
        np.testing.assert_array_equal(ab_a, ab_b)
    assert not np.allclose(same_a[0][0], other[0][0])


def test_eval_is_center_crop_in_lab_units(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "wide.png")
    dataset = make_dataset(
        tmp_path, split="test", image_size=32, batch_size=4, training=False, split_ratios=(0, 0, 1)
    )
    (l, ab), = _arrays(dataset)
    assert l.shape == (1, 32, 32, 1)
    lab = skimage.color.rgb2lab(photo[:, 8:40])  # the centered 32x32 square, not resized
    np.testing.assert_allclose(l[0, ..., 0] * 100.0, lab[..., 0], atol=2e-3)
    np.testing.assert_allclose(ab[0] * 110.0, lab[..., 1:], atol=2e-3)


def test_eval_order_is_the_sorted_file_order_and_repeatable(photo_folder):
    kwargs = dict(split="validation", image_size=16, batch_size=64, training=False)
    (l, _), = _arrays(make_dataset(photo_folder, **kwargs))
    (again, _), = _arrays(make_dataset(photo_folder, **kwargs))
    np.testing.assert_array_equal(l, again)
    readable = [p for p in folders.split_images(photo_folder, "validation") if "corrupt" not in p and "truncated" not in p]
    assert l.shape[0] == len(readable) > 0
    first = read_image(readable[0])
    side = min(first.shape[:2])
    assert abs(l[0].mean() * 100 - skimage.color.rgb2lab(first[:side, :side])[..., 0].mean()) < 15


@pytest.mark.parametrize("height, width, expected_crops", [(40, 50, 1), (64, 100, 1), (128, 128, 4), (256, 200, 6)])
def test_crops_per_photo_grow_with_its_size(tmp_path, height, width, expected_crops):
    photo = np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    dataset = make_dataset(tmp_path, image_size=64, batch_size=1, crops_per_image=6, split_ratios=(1, 0, 0))
    assert len(_arrays(dataset)) == expected_crops


def test_crops_are_flipped_about_half_of_the_time(tmp_path):
    # Red grows from left to right in the photo: a crop keeps that direction unless flipped.
    photo = np.zeros((64, 128, 3), np.uint8)
    photo[..., 0] = np.linspace(0, 255, 128).round().astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "gradient.png")
    dataset = make_dataset(tmp_path, image_size=16, batch_size=1, crops_per_image=16, split_ratios=(1, 0, 0))
    increasing = []
    for _ in range(3):
        for l, ab in dataset:
            red = color.model_to_rgb(l, ab).numpy()[0, ..., 0]
            assert np.all(np.diff(red.mean(axis=0)) != 0)  # a crop of the gradient, monotone
            increasing.append(red[:, -1].mean() > red[:, 0].mean())
    assert len(increasing) == 48
    assert 0.25 < np.mean(increasing) < 0.75


def test_file_cache_and_no_cache_give_the_same_eval_data(photo_folder, tmp_path):
    kwargs = dict(split="test", image_size=16, batch_size=64, training=False)
    (in_memory, _), = _arrays(make_dataset(photo_folder, **kwargs))
    (on_disk, _), = _arrays(make_dataset(photo_folder, cache=str(tmp_path / "cache"), **kwargs))
    (uncached, _), = _arrays(make_dataset(photo_folder, cache=False, **kwargs))
    np.testing.assert_array_equal(in_memory, on_disk)
    np.testing.assert_array_equal(in_memory, uncached)
    assert list(tmp_path.glob("cache*"))


def test_offline_source_reads_the_collection_folder(photo_folder, monkeypatch):
    kwargs = dict(split="test", image_size=16, batch_size=64, training=False)
    (explicit, _), = _arrays(make_dataset("offline", data_dir=photo_folder, **kwargs))
    monkeypatch.setenv(folders.OFFLINE_DIR_ENV, str(photo_folder))
    (from_env, _), = _arrays(make_dataset("offline", **kwargs))
    np.testing.assert_array_equal(explicit, from_env)
    monkeypatch.setenv(folders.OFFLINE_DIR_ENV, str(photo_folder / "missing"))
    with pytest.raises(UserError, match="not a folder"):
        make_dataset("offline")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="dev"), "unknown split 'dev'"),
        (dict(image_size=0), "image_size must be a positive integer"),
        (dict(batch_size=2.5), "batch_size must be a positive integer"),
        (dict(crops_per_image=True), "crops_per_image must be a positive integer"),
        (dict(split_ratios=(1, -1, 0)), "split ratios"),
        (dict(split="test", split_ratios=(1, 0, 0)), "no images in the 'test' split"),
    ],
)
def test_bad_arguments_raise_user_error(photo_folder, kwargs, message):
    with pytest.raises(UserError, match=message):
        make_dataset(photo_folder, **kwargs)


def test_unknown_source_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a folder, 'offline' or tfds:NAME"):
        make_dataset(tmp_path / "nowhere")
