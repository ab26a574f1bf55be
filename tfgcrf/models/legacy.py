"""Models and weights saved before the backbone/task split, read by the current classes.

Before the split, `GCRFColorizer` held every layer itself and its config was
`{"name", "config": <ModelConfig with the training keys>, "stage"}`. Now the layers live in
`GCRFColorizer.backbone` (a `GCRFBackbone`): their weights moved from `<path>` to
`backbone/<path>` in the weights file, while the task's own variable (the HOC reveal fraction,
`vars`) and the optimizer's (`optimizer`) stay where they were. The conversion is exact: the same
variables get the same values (tests/models/legacy_test.py compares outputs with the pre-split
code's on a saved tiny model and on the committed default preset).

Used by `tfgcrf.models.loading.load_model` (`.keras` files) and `GCRFColorizer.load_weights`
(`*.weights.h5` files of run folders: stage weights and `BackupAndRestore` backups; `.keras`).
"""

import contextlib
import json
import os
import tempfile
import zipfile

import h5py

# Top-level groups of a pre-split weights file that stay with the task.
_TASK_GROUPS = ("vars", "optimizer")
BACKBONE_GROUP = "backbone"


def is_legacy_config(config):
    """True for the config dict of a `GCRFColorizer` saved before the split."""
    return isinstance(config, dict) and "backbone" not in config and isinstance(config.get("config"), dict)


def archive_config(path):
    """The `config.json` of a `.keras` archive as a dict (None when it has none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def is_legacy_archive(path):
    """True when the `.keras` file `path` holds a `GCRFColorizer` saved before the split."""
    config = archive_config(path)
    return (isinstance(config, dict) and config.get("class_name") == "GCRFColorizer"
            and is_legacy_config(config.get("config")))


def is_legacy_weights(path):
    """True when the HDF5 weights file `path` has the pre-split layout (layers at the top)."""
    if not str(path).endswith(".h5") or not os.path.isfile(path):
        return False
    with h5py.File(path, "r") as f:
        return BACKBONE_GROUP not in f and any(key not in _TASK_GROUPS for key in f)


def upgrade_weights(source, target):
    """Writes the pre-split weights file `source` in the current layout as `target`.

    Every top-level group but the task's (`vars`, `optimizer`) moves under `backbone/`;
    datasets and attributes are copied unchanged.
    """
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for name, value in old.attrs.items():
            new.attrs[name] = value
        backbone = new.create_group(BACKBONE_GROUP)
        for key in old:
            old.copy(old[key], new if key in _TASK_GROUPS else backbone, name=key)


@contextlib.contextmanager
def upgraded_weights(path):
    """Yields `path`, or for a pre-split weights file or `.keras` archive a temporary weights
    file in the current layout."""
    path = os.fspath(path)
    archive = path.endswith(".keras") and is_legacy_archive(path)
    if not archive and not is_legacy_weights(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tfgcrf-legacy-") as folder:
        source = path
        if archive:
            source = os.path.join(folder, "saved.weights.h5")
            with zipfile.ZipFile(path) as saved, open(source, "wb") as out:
                out.write(saved.read("model.weights.h5"))
        converted = os.path.join(folder, "converted.weights.h5")
        upgrade_weights(source, converted)
        yield converted


def upgraded_config(saved):
    """The config dict of a pre-split `GCRFColorizer` (`saved`, `is_legacy_config`) in the current
    form: the saved `ModelConfig` becomes the backbone's config, its training keys the task's
    `training` (given to the constructor; not saved again). Used by
    `tfgcrf.models.loading.PresetLoader`, which then loads the weights with
    `GCRFColorizer.load_weights` (converted by `upgraded_weights`).
    """
    from tfgcrf.config import split_moved_keys

    model_values, training_values = split_moved_keys(saved["config"])
    backbone = {
        "module": "tfgcrf.models.gcrf_backbone",
        "class_name": "GCRFBackbone",
        "registered_name": "tfgcrf>GCRFBackbone",
        "config": {"name": "gcrf_backbone", "trainable": True, "config": model_values},
    }
    return {"name": saved.get("name", "gcrf_colorizer"), "backbone": backbone,
            "stage": saved.get("stage", "vae"), "training": training_values}
