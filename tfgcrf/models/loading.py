"""Presets: loading a trained `GCRFColorizer` from a `.keras` file, a folder or a bundled preset,
and writing preset folders (`save_to_preset`), after keras-hub's `preset_utils`.

A preset is a folder written by `save_to_preset` (`model.keras`, `config.yaml`, `metadata.json`)
from a task (`GCRFColorizer`) or, for a backbone preset, from a `GCRFBackbone` alone;
the installed ones are `tfgcrf/presets/<name>/` of the package and load with no download. The one
loader, `PresetLoader`, serves `GCRFColorizer.from_preset`, `GCRFBackbone.from_preset`,
`GridConverter.from_preset`, `load_model` and through them the Python API (`tfgcrf.Colorizer`),
the CLI commands, evaluation and export.
"""

import copy
import dataclasses
import importlib.resources
import os

from tfgcrf.errors import UserError

MODEL_FILENAME = "model.keras"
# The classes a preset's `model.keras` may hold: a task, or a backbone alone (a backbone preset).
PRESET_CLASSES = ("GCRFColorizer", "GCRFBackbone")
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
        raise UserError(f"invalid preset name {name!r} (installed presets: {_available()})")
    model_file = importlib.resources.files(_PRESETS_PACKAGE).joinpath(name, MODEL_FILENAME)
    if not model_file.is_file():
        raise UserError(
            f"preset {name!r} is not installed (no tfgcrf/presets/{name}/{MODEL_FILENAME} in the "
            f"package): pass a preset folder or a .keras file (installed presets: {_available()})"
        )
    # The package is installed as plain files (setup.cfg), so the resource is a real path.
    return os.fspath(model_file)


def resolve_model_path(path_or_preset):
    """A `.keras` file, a folder containing `model.keras`, or a preset name -> the `.keras` path.

    Raises:
      UserError: `path_or_preset` is not a str or path, or names nothing that exists.
    """
    if not isinstance(path_or_preset, (str, os.PathLike)):
        raise UserError(
            f"a model is a preset name, a folder holding {MODEL_FILENAME} or a .keras file, got "
            f"{type(path_or_preset).__name__}"
        )
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


def load_model(path_or_preset, solver=None, dtype=None):
    """Loads a trained `GCRFColorizer`: `GCRFColorizer.from_preset(path_or_preset, solver=solver,
    dtype=dtype)`.

    Kept as the functional form of the one loader (`PresetLoader`), which every entry point
    (Python API, CLI, evaluation, export, benchmarks) goes through.

    Args:
      path_or_preset: a `.keras` file, a folder containing `model.keras` (a preset folder written
        by `save_to_preset`, or a run folder), or the name of an installed preset such as
        "default".
      solver: None to keep the model's inference G-CRF solver, or "lu", "cholesky" or "cg" to
        replace it (the weights do not depend on it; saving the model keeps the choice).
      dtype: None, or the Keras dtype policy of the backbone's layers (see
        `GCRFColorizer.from_preset`).

    Returns:
      The `GCRFColorizer` (the task; `model.backbone` is its `GCRFBackbone`, `model.preprocessor`
      its `GridConverter`). Files saved before the backbone/task split are converted on the fly
      (`tfgcrf.models.legacy`), with the same weights and outputs.

    Raises:
      UserError: one line: the file or preset does not exist, cannot be read, or is not a
        GCRFColorizer (the message lists the installed presets); `InputError` for a bad `dtype`.
    """
    return PresetLoader(path_or_preset).load_task(solver=solver, dtype=dtype)


class classproperty(property):  # noqa: N801 (named like the builtin decorators)
    """A read-only property of the class (keras-hub's `python_utils.classproperty`)."""

    def __get__(self, _, owner):
        return self.fget(owner)


def presets():
    """`{name: metadata}` of the installed presets (the `metadata.json` written by
    `save_to_preset`; {} for a preset folder without one). The `presets` class property of
    `GCRFBackbone`, `GCRFColorizer` and `GridConverter` (keras-hub's `Backbone.presets`)."""
    return {name: PresetLoader(name).metadata for name in preset_names()}


class PresetLoader:
    """The one reader of a preset: an installed preset name, a folder or a `.keras` file.

    After keras-hub's `KerasPresetLoader`, for the folder `save_to_preset` writes:
      * `model.keras`: the task's config (backbone, preprocessor, stage) and all weights, or in a
        backbone preset (`GCRFBackbone.save_to_preset`) the backbone's;
      * `metadata.json` (optional): versions and parameter counts, read into `metadata`;
      * `config.yaml` (optional): the experiment; when the folder also holds `metadata.json` (a
        folder written by `save_to_preset`), its `model:` section must agree with `model.keras`
        (a hand-edited, stale config is refused instead of silently ignored).
    Run folders (`tfgcrf train --run-dir`) hold `model.keras` and `config.yaml` and load as well.

    Constructing the loader checks the files and reads the configs, without building the model;
    `load_task`, `load_backbone` and `load_preprocessor` build what the `from_preset` classmethods
    return. Every problem is a one-line `UserError` naming the preset and listing the installed
    presets.

    Args:
      spec: a preset name, a folder holding `model.keras`, or a `.keras` file (str or path).
    """

    def __init__(self, spec):
        from tfgcrf.models import legacy

        self.spec = spec
        self.model_path = _with_presets(resolve_model_path, spec)
        self.folder = os.path.dirname(self.model_path)
        self.metadata = self._read_metadata()
        saved = legacy.archive_config(self.model_path)
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise _preset_error(f"cannot load model {self.model_path}: not a Keras .keras archive")
        name = saved.get("registered_name") or saved.get("class_name")
        if saved.get("class_name") not in PRESET_CLASSES:
            raise _preset_error(f"{self.model_path} holds a {name}, not a {' or a '.join(PRESET_CLASSES)}")
        #: True for a backbone preset (`GCRFBackbone.save_to_preset`): no task config, no
        #: preprocessor; `load_task` builds a task of default arguments around the backbone.
        self.backbone_only = saved["class_name"] == "GCRFBackbone"
        self.legacy = not self.backbone_only and legacy.is_legacy_config(saved["config"])
        #: The saved config of the archive's model: the task's (`GCRFColorizer.get_config()`), or
        #: the backbone's (`GCRFBackbone.get_config()`) in a backbone preset.
        self.config = legacy.upgraded_config(saved["config"]) if self.legacy else saved["config"]
        self.model_config = self._read_model_config(saved if self.backbone_only else self.config.get("backbone"))
        self._check_experiment()

    # ------------------------------------------------------------------ reading the folder

    def _read_metadata(self):
        import json

        path = os.path.join(self.folder, METADATA_FILENAME)
        if not os.path.isfile(path):
            return {}
        try:
            with open(path, encoding="utf-8") as handle:
                metadata = json.load(handle)
        except (OSError, ValueError) as err:
            raise _preset_error(f"cannot read {path}: {_one_line(err)}") from None
        if not isinstance(metadata, dict):
            raise _preset_error(f"{path} must hold a JSON object")
        return metadata

    def _read_model_config(self, backbone):
        from tfgcrf.config import ModelConfig, build_dataclass

        values = backbone.get("config", {}).get("config") if isinstance(backbone, dict) else None
        if not isinstance(values, dict):
            raise _preset_error(f"{self.model_path} holds no GCRFBackbone config")
        try:
            return build_dataclass(ModelConfig, values, f"{self.model_path}: model")
        except UserError as err:
            raise _preset_error(str(err)) from None

    def _check_experiment(self):
        from tfgcrf.config import ModelConfig, as_plain_dict, build_dataclass, split_moved_keys

        path = os.path.join(self.folder, CONFIG_FILENAME)
        if not (self.metadata and os.path.isfile(path)):
            return
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                written = yaml.safe_load(handle)
            values, _ = split_moved_keys((written or {}).get("model"))
            written = as_plain_dict(build_dataclass(ModelConfig, values, f"{path}: model"))
        except UserError as err:
            raise _preset_error(str(err)) from None
        except (OSError, ValueError, AttributeError, yaml.YAMLError) as err:
            raise _preset_error(f"cannot read {path}: {_one_line(err)}") from None
        saved = as_plain_dict(self.model_config)
        changed = [f"model.{key} {written[key]!r} != {saved[key]!r}"
                   for key in saved if written[key] != saved[key]]
        if changed:
            raise _preset_error(
                f"{path} disagrees with {MODEL_FILENAME} ({', '.join(changed)}): the folder was "
                "edited by hand; write it again with tfgcrf.models.loading.save_to_preset"
            )

    # ------------------------------------------------------------------ building

    def load_task(self, load_weights=True, solver=None, dtype=None, **kwargs):
        """The `GCRFColorizer` of the preset.

        A backbone preset (`GCRFBackbone.save_to_preset`) gives a new task around the preset's
        backbone, as keras-hub's `PresetLoader.load_task` does for a preset without `task.json`:
        `GCRFColorizer(backbone, **kwargs)`, i.e. the default preprocessor (`GridConverter` of the
        backbone's grid) and stage unless given.

        Args:
          load_weights: False builds the saved architecture with fresh (random) weights.
          solver: None, or "lu", "cholesky" or "cg" to replace the inference G-CRF solver.
          dtype: None, or a Keras dtype policy (name or `keras.DTypePolicy`) given to the
            backbone's constructor (`GCRFBackbone(dtype=)`), as keras-hub's loader forwards
            `dtype` to the backbone: its layers compute in it; the preprocessor, the G-CRF
            solves and the training solver stay float32.
          **kwargs: constructor arguments that replace the saved ones (e.g. `preprocessor=None`,
            `stage`, `training`); given any (or a `dtype`), the model is built from its config
            with them and the saved weights are loaded into it.
        """
        from tfgcrf.models.gcrf_colorizer import GCRFColorizer

        self._check_solver(solver)
        policy = _checked_dtype(dtype)
        if self.backbone_only:
            if "backbone" not in kwargs:
                kwargs["backbone"] = self._load_archive(load_weights, policy)
            kwargs.setdefault("name", "gcrf_colorizer")  # the same config each time, as a saved task
            model = self._built(lambda: GCRFColorizer(**kwargs))
        else:
            model = self._load_archive(load_weights, policy, **kwargs)
        return _with_solver(model, solver)

    def load_backbone(self, load_weights=True, solver=None, dtype=None):
        """The `GCRFBackbone` of the preset: the archive's model in a backbone preset, else the
        task's `backbone` (with the same weights); `dtype` as for `load_task`."""
        self._check_solver(solver)
        policy = _checked_dtype(dtype)
        if self.backbone_only:
            return _with_solver(self._load_archive(load_weights, policy), solver)
        return _with_solver(self._load_archive(load_weights, policy).backbone, solver)

    def load_preprocessor(self):
        """The preset's `GridConverter`, built from the config alone (no weights are read); in a
        backbone preset the task's default, `GridConverter(image_size)`.

        Raises:
          UserError: the preset's task was saved with `preprocessor=None`.
        """
        from tfgcrf.models.gcrf_colorizer import GCRFColorizer

        config = {} if self.backbone_only else self.config
        preprocessor = GCRFColorizer.preprocessor_from_config(config, self.model_config)
        if preprocessor is None:
            raise _preset_error(f"{self.model_path} was saved without a preprocessor")
        return preprocessor

    def _check_solver(self, solver):
        """A bad solver name is refused before anything is built (ModelConfig checks it)."""
        if solver is not None:
            dataclasses.replace(self.model_config, solver=solver)

    def _load_archive(self, load_weights, policy=None, **kwargs):
        """The archive's model (a `GCRFColorizer`, or a `GCRFBackbone` in a backbone preset),
        its backbone built with the dtype policy `policy` (None: the global one)."""
        import keras

        from tfgcrf.models.gcrf_backbone import GCRFBackbone
        from tfgcrf.models.gcrf_colorizer import GCRFColorizer

        cls = GCRFBackbone if self.backbone_only else GCRFColorizer
        config = copy.deepcopy(self.config)
        if policy is not None:  # keras-hub's `set_dtype_in_config`, for the backbone
            backbone = config if self.backbone_only else config["backbone"]["config"]
            backbone["dtype"] = keras.dtype_policies.serialize(policy)

        def build():
            if load_weights and not kwargs and policy is None and not self.legacy:
                return keras.saving.load_model(self.model_path, compile=False)
            model = cls.from_config({**config, **kwargs})
            if load_weights:
                model.load_weights(self.model_path)  # legacy files: converted on the fly
            return model

        model = self._built(build)
        if not isinstance(model, cls):
            raise _preset_error(f"{self.model_path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def _built(self, build):
        """`build()`, with its errors as one-line `UserError`s naming the preset."""
        try:
            return build()
        except UserError as err:
            raise _preset_error(str(err)) from None
        except Exception as err:  # Keras raises many types (ValueError, OSError, zipfile errors, ...).
            raise _preset_error(f"cannot load model {self.model_path}: {_one_line(err)}") from None


def _checked_dtype(dtype):
    """The `keras.DTypePolicy` of `dtype` (None: None); `InputError` before anything is built."""
    if dtype is None:
        return None
    from tfgcrf.models.gcrf_backbone import dtype_policy

    return dtype_policy(dtype)


def _with_solver(model, solver):
    """`model` (task or backbone) with its inference G-CRF solver replaced by `solver` (None:
    kept); saving the model keeps the choice."""
    if solver is not None:
        backbone = getattr(model, "backbone", model)
        backbone.model_config = dataclasses.replace(backbone.model_config, solver=solver)
    return model


def _one_line(err):
    return " ".join(str(err).split())[:200] or type(err).__name__


def _available():
    return ", ".join(preset_names()) or "none"


def _preset_error(message):
    """A one-line `UserError` ending with the installed presets."""
    if "installed presets:" in message:
        return UserError(message)
    return UserError(f"{message} (installed presets: {_available()})")


def _with_presets(function, *args):
    try:
        return function(*args)
    except UserError as err:
        raise _preset_error(str(err)) from None


CONFIG_FILENAME = "config.yaml"
METADATA_FILENAME = "metadata.json"


def save_to_preset(model, preset_dir, experiment=None, metadata=None):
    """Writes a preset folder from a trained task or backbone, so that its files cannot disagree.

    The one writer of `GCRFColorizer.save_to_preset` and `GCRFBackbone.save_to_preset`. Written
    (keras-hub's `save_to_preset` is the model):
      * `model.keras`: the model (weights, architecture, inference settings and, for a task, the
        preprocessor; no training settings). A backbone alone makes a backbone preset: every
        `from_preset` loads it (`GCRFColorizer.from_preset` builds a task around it);
      * `config.yaml`: `model:` is read back from the saved model itself (never hand-written);
        the training sections (`training`, `data`, `stages`, `seed`) come from `experiment` when
        given;
      * `metadata.json`: versions of tfgcrf / TensorFlow / Keras, parameter counts and
        `metadata` (e.g. the run's per-stage times and losses).

    Args:
      model: a `GCRFColorizer` or a `GCRFBackbone`.
      preset_dir: the folder (created if needed; its three files are replaced).
      experiment: optional `ExperimentConfig` the model was trained with.
      metadata: optional JSON-serializable dict.

    Returns:
      The folder as a `pathlib.Path`.

    Raises:
      UserError: `model` is neither a `GCRFColorizer` nor a `GCRFBackbone`.
    """
    import json
    import pathlib

    import keras
    import tensorflow as tf
    import yaml

    import tfgcrf
    from tfgcrf.config import as_plain_dict
    from tfgcrf.models.gcrf_backbone import GCRFBackbone
    from tfgcrf.models.gcrf_colorizer import GCRFColorizer

    if not isinstance(model, (GCRFColorizer, GCRFBackbone)):
        raise UserError(f"save_to_preset writes a {' or a '.join(PRESET_CLASSES)}, got {type(model).__name__}")
    folder = pathlib.Path(preset_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (CONFIG_FILENAME, METADATA_FILENAME):  # replaced below; checked on loading
        (folder / stale).unlink(missing_ok=True)
    model_file = folder / MODEL_FILENAME
    model.save(model_file)
    loader = PresetLoader(model_file)  # read back: what the files say is what loads
    saved = loader.load_backbone() if loader.backbone_only else loader.load_task()
    config = {"model": as_plain_dict(loader.model_config)}
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
