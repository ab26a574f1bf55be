"""`tfds:` sources, offline: a real TFDS builder prepared from an archive in manual_dir.

The builder below is written like TFDS's own LFW builder: it "downloads" an archive by URL with a
registered checksum. The archive (the fixture photos) is placed in `manual_dir` under its file
name, exactly as a user does with a downloaded `lfw.tgz`, so nothing touches the network.
"""

import hashlib
import importlib.util
import pathlib
import shutil
import sys
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfgcrf.data import make_dataset, tfds_source
from tfgcrf.errors import UserError
from tfgcrf.imageio import read_image

FIXTURE_PHOTOS = pathlib.Path(__file__).parent / "photos"
ARCHIVE = "tiny_photos.tgz"
URL = f"https://example.invalid/{ARCHIVE}"

BUILDER_SOURCE = f'''
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from PIL import Image


class TfgcrfTinyPhotos(tfds.core.GeneratorBasedBuilder):
    """Fixture photos as an RGB dataset and as a gray (1-channel) one."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="rgb"), tfds.core.BuilderConfig(name="gray")]

    def _info(self):
        channels = 3 if self.builder_config.name == "rgb" else 1
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({{
                "label": tfds.features.Text(),
                "image": tfds.features.Image(shape=(None, None, channels)),
            }})
        )

    def _split_generators(self, dl_manager):
        return {{"train": self._generate_examples(dl_manager.download_and_extract("{URL}"))}}

    def _generate_examples(self, folder):
        for name in sorted(os.listdir(os.path.join(folder, "photos"))):
            image = Image.open(os.path.join(folder, "photos", name))
            if self.builder_config.name == "gray":
                image = image.convert("L")
            array = np.asarray(image)
            yield name, {{"label": name, "image": array if array.ndim == 3 else array[..., None]}}
'''


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """(name, data_dir, manual_dir, photo paths) of the registered builder, not yet prepared."""
    root = tmp_path_factory.mktemp("tfds")
    photos = sorted(FIXTURE_PHOTOS.glob("*.png"))[:12]
    manual_dir = root / "manual"
    manual_dir.mkdir()
    with tarfile.open(manual_dir / ARCHIVE, "w:gz") as archive:
        for path in photos:
            archive.add(path, arcname=f"photos/{path.name}")
    data = (manual_dir / ARCHIVE).read_bytes()
    module_dir = root / "tfgcrf_tiny_photos"
    module_dir.mkdir()
    (module_dir / "checksums.tsv").write_text(f"{URL}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\t{ARCHIVE}\n")
    module_path = module_dir / "__init__.py"  # TFDS wants builders in packages
    module_path.write_text(BUILDER_SOURCE)
    spec = importlib.util.spec_from_file_location(
        "tfgcrf_tiny_photos", module_path, submodule_search_locations=[str(module_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # TFDS imports the builder's module when constructing it
    spec.loader.exec_module(module)  # defining the class registers the builder
    return "tfgcrf_tiny_photos", str(root / "data"), str(manual_dir), photos


def _eval_l(source, **kwargs):
    dataset = make_dataset(source, image_size=16, batch_size=64, training=False, **kwargs)
    return np.concatenate([l.numpy() for l, _ in dataset])


def test_unprepared_dataset_without_download_is_a_user_error(tiny_tfds):
    name, data_dir, _, _ = tiny_tfds
    with pytest.raises(UserError, match="is not prepared in .*allow download"):
        make_dataset(f"tfds:{name}/rgb", data_dir=data_dir + "_empty", download=False)


def test_prepares_from_manual_dir_then_reads_offline(tiny_tfds, tmp_path):
    name, data_dir, manual_dir, photos = tiny_tfds
    splits = {
        split: _eval_l(f"tfds:{name}/rgb", split=split, data_dir=data_dir, manual_dir=manual_dir)
        for split in ("train", "validation", "test")
    }
    # only 'train' exists: carved 80/10/10 into contiguous example ranges
    assert [len(l) for l in splits.values()] == [10, 1, 1]
    # now prepared: readable without manual_dir and with downloads forbidden
    again = _eval_l(f"tfds:{name}/rgb", split="train", data_dir=data_dir, download=False)
    np.testing.assert_array_equal(again, splits["train"])
    # the same images as the photo files read as a folder (TFDS stores examples in its own order)
    for path in photos:
        shutil.copy(path, tmp_path)
    from_folder = _eval_l(str(tmp_path), split="train", split_ratios=(1, 0, 0))
    from_tfds = np.concatenate(list(splits.values()))
    by_mean = lambda batch: batch[np.argsort(batch.mean(axis=(1, 2, 3)))]
    np.testing.assert_allclose(by_mean(from_tfds), by_mean(from_folder), atol=1e-6)


def test_gray_config_becomes_three_equal_channels(tiny_tfds):
    name, data_dir, manual_dir, _ = tiny_tfds
    dataset = make_dataset(f"tfds:{name}/gray", image_size=16, batch_size=4, data_dir=data_dir,
                           manual_dir=manual_dir, crops_per_image=2)
    l, ab = next(iter(dataset))
    assert l.shape == (4, 16, 16, 1) and ab.shape == (4, 16, 16, 2)
    assert np.abs(ab.numpy()).max() < 0.01  # gray photos: no chroma


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown TFDS dataset 'no_such_dataset_xyz'"):
        make_dataset("tfds:no_such_dataset_xyz", download=False)


def test_image_feature_of_catalog_datasets():
    for name, key in [("lfw", "image"), ("mnist", "image"), ("oxford_iiit_pet", "image")]:
        assert tfds_source.image_feature_key(tfds.builder(name)) == key


def _builder_with_splits(**num_examples):
    splits = {name: SimpleNamespace(num_examples=count) for name, count in num_examples.items()}
    return SimpleNamespace(info=SimpleNamespace(splits=splits, full_name="stub/1.0.0"))


@pytest.mark.parametrize(
    "num_examples, expected",
    [
        (dict(train=1000), dict(train="train[0:800]", validation="train[800:900]", test="train[900:1000]")),
        (dict(train=900, test=100), dict(train="train[0:800]", validation="train[800:900]", test="test")),
        (dict(train=9, validation=1, test=1), dict(train="train", validation="validation", test="test")),
    ],
)
def test_missing_splits_are_carved_out_of_train(num_examples, expected):
    builder = _builder_with_splits(**num_examples)
    for split, spec in expected.items():
        assert tfds_source.split_spec(builder, split, (0.8, 0.1, 0.1)) == spec
    with pytest.raises(UserError, match="no 'test' or 'train' split"):
        tfds_source.split_spec(_builder_with_splits(validation=5), "test", (0.8, 0.1, 0.1))


def test_tfds_images_follow_read_image_conventions(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, size=(5, 7), dtype=np.uint16)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    np.testing.assert_allclose(
        tfds_source.to_rgb_uint8(rgba).numpy(), read_image(tmp_path / "rgba.png"), atol=1
    )
    np.testing.assert_array_equal(
        tfds_source.to_rgb_uint8(gray16[..., None]).numpy(), read_image(tmp_path / "gray16.png")
    )
    with pytest.raises(UserError, match="2 channels"):
        tfds_source.to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))
