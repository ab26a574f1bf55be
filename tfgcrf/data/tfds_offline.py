"""The offline photo collection as a TensorFlow Datasets builder: `tfgcrf_offline`.

The photos are not downloadable: build the collection first (`tfgcrf data build-offline DIR`,
`make data`) and give that folder as TFDS's manual_dir. Any folder of photos works the same way
(without `manifest.csv` the provenance fields stay empty).

    tfds build tfgcrf_offline --imports tfgcrf.data.tfds_offline --manual_dir data/offline
    python -c 'import tfgcrf.data.tfds_offline, tensorflow_datasets as tfds;
               tfds.load("tfgcrf_offline", split="train[:90%]",
                         download_and_prepare_kwargs={"download_config":
                             tfds.download.DownloadConfig(manual_dir="data/offline")})'
    tfgcrf train --config default64 --data tfds:tfgcrf_offline --manual-dir data/offline

Splits are the collection's own (`tfgcrf.data.folders.split_of`: SHA-256 of the relative path,
80/10/10), so `tfds:tfgcrf_offline` and the folder source `offline` hold the same photos in each
split. Every photo is decoded by `tfgcrf.imageio.read_image` (EXIF orientation, transparency on
white, 16-bit, palette) and stored losslessly (PNG); unreadable files are skipped with a warning.

Features: `image` (uint8 `[H, W, 3]`), `file` (path relative to the collection), and from
`manifest.csv` when present: `package`, `license`, `attribution`.
"""

import logging
import os

import tensorflow_datasets as tfds

from tfgcrf.data import folders
from tfgcrf.errors import InputError

logger = logging.getLogger("tfgcrf.data")

NAME = "tfgcrf_offline"
MANIFEST = "manifest.csv"


def _manifest_rows(folder):
    """{relative file: manifest row} of a built collection, {} for a plain folder."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return {}
    from tfgcrf.data.offline import read_manifest

    return {row["file"]: row for row in read_manifest(path)}


class TfgcrfOffline(tfds.core.GeneratorBasedBuilder):
    """Real color photographs extracted from Debian, PyPI and npm packages (tfgcrf's offline set)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: the collection folder given as manual_dir."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Build the collection with `tfgcrf data build-offline DIR` (or use any folder of photos) "
        "and pass DIR as manual_dir (`tfds build --manual_dir DIR`, "
        "`tfds.download.DownloadConfig(manual_dir=DIR)`, `tfgcrf train --manual-dir DIR`)."
    )

    def _info(self):
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                "file": text,
                "package": text,
                "license": text,
                "attribution": text,
            }),
            homepage="https://github.com/tfgcrf/tfgcrf/blob/main/docs/DATASETS.md",
        )

    def _split_generators(self, dl_manager):
        folder = os.fspath(dl_manager.manual_dir)
        files = folders.list_images(folder)
        if not files:
            raise InputError(f"no photos in manual_dir {folder} (build it with tfgcrf data build-offline)")
        rows = _manifest_rows(folder)
        by_split = {name: [] for name in folders.SPLITS}
        for path in files:
            by_split[folders.split_of(folders.relative_key(path, folder))].append(path)
        return {
            name: self._generate_examples(folder, paths, rows)
            for name, paths in by_split.items()
            if paths
        }

    def _generate_examples(self, folder, paths, rows):
        from tfgcrf.imageio import read_image

        skipped = 0
        for path in paths:
            relative = folders.relative_key(path, folder)
            try:
                image = read_image(path)
            except InputError as err:
                skipped += 1
                logger.warning("tfgcrf_offline: skipped %s: %s", relative, err)
                continue
            row = rows.get(relative, {})
            yield relative, {
                "image": image,
                "file": relative,
                "package": row.get("package", ""),
                "license": row.get("license", ""),
                "attribution": row.get("attribution", ""),
            }
