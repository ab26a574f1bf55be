"""The offline collection as the TFDS builder `tfgcrf_offline`, on the fixture photos as manual_dir."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfgcrf.data.tfds_offline  # noqa: F401  (registers the builder)
from tfgcrf.data import folders, make_dataset
from tfgcrf.imageio import read_image

PHOTOS = Path(__file__).parent / "photos"


def _download_config():
    return {"download_config": tfds.download.DownloadConfig(manual_dir=str(PHOTOS))}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_tfds_load_gives_the_collection_splits(data_dir):
    names = ["train", "validation", "test"]
    datasets, info = tfds.load("tfgcrf_offline", split=names, data_dir=data_dir, with_info=True,
                               download_and_prepare_kwargs=_download_config())
    assert info.name == "tfgcrf_offline"
    for name, dataset in zip(names, datasets):
        expected = {folders.relative_key(p, PHOTOS) for p in folders.split_images(PHOTOS, name)}
        examples = list(dataset.as_numpy_iterator())
        assert {e["file"].decode() for e in examples} == expected
        assert len(examples) == info.splits[name].num_examples
    # Decoded as tfgcrf.imageio.read_image decodes the file, stored losslessly.
    example = next(iter(datasets[0].as_numpy_iterator()))
    np.testing.assert_array_equal(example["image"], read_image(PHOTOS / example["file"].decode()))


def test_sliced_splits_and_make_dataset(data_dir):
    train_count = len(folders.split_images(PHOTOS, "train"))
    head = tfds.load("tfgcrf_offline", split="train[:90%]", data_dir=data_dir,
                     download_and_prepare_kwargs=_download_config())
    assert len(list(head)) == round(0.9 * train_count)
    assert len(folders.split_images(PHOTOS, "train[:90%]")) == round(0.9 * train_count)
    batches = make_dataset("tfds:tfgcrf_offline", split="test[:3]", image_size=16, batch_size=8,
                           training=False, data_dir=data_dir, manual_dir=str(PHOTOS))
    (l, ab), = list(batches)
    assert l.shape == (3, 16, 16, 1) and ab.shape == (3, 16, 16, 2)


def _has_tfds_cli_imports():
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("apache_beam", "mlcroissant"))


# The `tfds` command of tensorflow-datasets 4.9.10 imports apache_beam and mlcroissant at start
# for every sub-command (tensorflow/datasets#5463); neither is a dependency of tfgcrf.
@pytest.mark.skipif(not _has_tfds_cli_imports(),
                    reason="the tfds CLI needs apache-beam and mlcroissant (tensorflow/datasets#5463)")
def test_tfds_build_command_prepares_the_dataset(tmp_path):
    tfds_cli = Path(sys.executable).with_name("tfds")
    result = subprocess.run(
        [str(tfds_cli), "build", "tfgcrf_offline", "--imports", "tfgcrf.data.tfds_offline",
         "--manual_dir", str(PHOTOS), "--data_dir", str(tmp_path), "--noforce_checksums_validation"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    builder = tfds.builder("tfgcrf_offline", data_dir=str(tmp_path))
    assert builder.is_prepared()
    assert sum(split.num_examples for split in builder.info.splits.values()) == len(
        folders.list_images(PHOTOS)
    )
