"""Loading a trained `GCRFColorizer` from a `.keras` file, a folder or a bundled preset.

A preset is a folder `tfgcrf/presets/<name>/` of the installed package holding `model.keras` (and a
model card); it loads with no download. The one resolver below serves the Python API
(`tfgcrf.Colorizer`), the CLI commands, evaluation and export.
"""

import dataclasses
import importlib.resources
import os

from tfgcrf.errors import UserError

MODEL_FILENAME = "model.keras"
_PRESETS_PACKAGE = "tfgcrf.presets"


def preset_names():
    """Names of the presets installed with the package (folders holding a `model.keras`)."""
    root = importlib.resources.files(_PRESETS_PACKAGE)
    return sorted(entry.name for entry in root.iterdir() if entry.joinpath(MODEL_FILENAME).is_file())


def preset_path(name):
    """Filesystem path of preset `name`'s `model.keras`.

    Raises:
      UserError: no such preset is installed.
    """
    if not name or os.sep in name or "/" in name or name.startswith("."):
        raise UserError(f"invalid preset name {name!r}")
    model_file = importlib.resources.files(_PRESETS_PACKAGE).joinpath(name, MODEL_FILENAME)
    if not model_file.is_file():
        available = ", ".join(preset_names()) or "none"
        raise UserError(
            f"preset {name!r} is not installed (no tfgcrf/presets/{name}/{MODEL_FILENAME} in the "
            f"package; installed presets: {available}); pass a .keras file instead"
        )
    # The package is installed as plain files (setup.cfg), so the resource is a real path.
    return os.fspath(model_file)


def resolve_model_path(path_or_preset):
    """A `.keras` file, a folder containing `model.keras`, or a preset name -> the `.keras` path."""
    spec = os.fspath(path_or_preset)
    if os.path.isdir(spec):
        candidate = os.path.join(spec, MODEL_FILENAME)
        if not os.path.isfile(candidate):
            raise UserError(f"model folder {spec} has no {MODEL_FILENAME}")
        return candidate
    if os.path.exists(spec):
        return spec
    if spec.endswith(".keras") or os.sep in spec or "/" in spec:
        raise UserError(f"no such model file: {spec}")
    return preset_path(spec)


def load_model(path_or_preset, solver=None):
    """Loads a trained `GCRFColorizer`.

    Args:
      path_or_preset: a `.keras` file, a folder containing `model.keras`, or the name of an
        installed preset such as "default".
      solver: None to keep the model's inference G-CRF solver, or "lu", "cholesky" or "cg" to
        replace it (the weights do not depend on it; saving the model keeps the choice).

    Returns:
      The `GCRFColorizer` (the task; `model.backbone` is its `GCRFBackbone`). Files saved before
      the backbone/task split are converted on the fly (`tfgcrf.models.legacy`), with the same
      weights and outputs.

    Raises:
      UserError: the file or preset does not exist, cannot be read, or is not a GCRFColorizer.
    """
    import keras

    from tfgcrf.models import legacy
    from tfgcrf.models.gcrf_colorizer import GCRFColorizer  # registers the serializable classes

    path = resolve_model_path(path_or_preset)
    try:
        if legacy.is_legacy_archive(path):
            model = legacy.load_legacy_archive(path)
        else:
            model = keras.saving.load_model(path, compile=False)
    except UserError:
        raise
    except Exception as err:  # Keras raises many types (ValueError, OSError, zipfile errors, ...).
        message = " ".join(str(err).split())[:200] or type(err).__name__
        raise UserError(f"cannot load model {path}: {message}") from None
    if not isinstance(model, GCRFColorizer):
        raise UserError(f"{path} holds a {type(model).__name__}, not a GCRFColorizer")
    if solver is not None:
        model.crf_solver(solver)  # validates the name with a one-line error
        model.backbone.model_config = dataclasses.replace(model.model_config, solver=solver)
    return model


CONFIG_FILENAME = "config.yaml"
METADATA_FILENAME = "metadata.json"


def save_to_preset(model, preset_dir, experiment=None, metadata=None):
    """Writes a preset folder from a trained model, so that its files cannot disagree.

    Written (keras-hub's `save_to_preset` is the model):
      * `model.keras`: the model (weights, architecture and inference settings; no training
        settings);
      * `config.yaml`: `model:` is read back from the saved model itself (never hand-written);
        the training sections (`training`, `data`, `stages`, `seed`) come from `experiment` when
        given;
      * `metadata.json`: versions of tfgcrf / TensorFlow / Keras, parameter counts and
        `metadata` (e.g. the run's per-stage times and losses).

    Args:
      model: a `GCRFColorizer`.
      preset_dir: the folder (created if needed; its three files are replaced).
      experiment: optional `ExperimentConfig` the model was trained with.
      metadata: optional JSON-serializable dict.

    Returns:
      The folder as a `pathlib.Path`.
    """
    import json
    import pathlib

    import keras
    import tensorflow as tf
    import yaml

    import tfgcrf
    from tfgcrf.config import as_plain_dict

    folder = pathlib.Path(preset_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / MODEL_FILENAME
    model.save(model_file)
    saved = load_model(model_file)
    config = {"model": as_plain_dict(saved.model_config)}
    if experiment is not None:
        training = experiment.to_dict()
        training.pop("model")
        config = {"name": training.pop("name"), **config, **training}
    header = "# Written by tfgcrf.models.loading.save_to_preset from the saved model.keras.\n"
    (folder / CONFIG_FILENAME).write_text(header + yaml.safe_dump(config, sort_keys=False))
    info = {
        "tfgcrf": tfgcrf.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "parameters": int(saved.count_params()),
        "parameters_outside_backbone": int(
            sum(v.numpy().size for v in saved.weights if "efficientnet" not in v.path)
        ),
        **(metadata or {}),
    }
    (folder / METADATA_FILENAME).write_text(json.dumps(info, indent=2) + "\n")
    return folder
