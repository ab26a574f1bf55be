"""Checks a run directory's checkpoint files before training uses them.

A run killed while writing leaves truncated files (`latest.weights.h5`, `final.weights.h5`,
`training_metadata.json`, `done.json`); loading them would fail with a raw traceback on every
re-run. `repair_stage` finds such a file, says which one in one line, and falls back to the
previous good state: the previous backup that `BackupAndRestore(double_checkpoint=True)` keeps
(`*.bkp`), the stage's `latest.weights.h5` for a corrupt `final.weights.h5`, or a fresh start of
the stage.
"""

import json
import shutil

import h5py

BACKUP_SUFFIX = ".bkp"


def weights_problem(path):
    """Why the Keras weights file `path` cannot be read (None when it reads completely).

    Opens the HDF5 file and reads every dataset, so a truncated or overwritten file is found
    here rather than halfway through `load_weights`.
    """
    try:
        with h5py.File(path, "r") as f:
            datasets = []
            f.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
            for dataset in datasets:
                dataset[()]
            if not datasets:
                return "it holds no weights"
    except Exception as err:  # h5py raises OSError, KeyError, ValueError... on damaged files
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def json_problem(path, required=()):
    """Why `path` is not a JSON object with the `required` keys (None when it is)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    if not isinstance(value, dict):
        return "it is not a JSON object"
    missing = [key for key in required if key not in value]
    return f"it lacks {missing}" if missing else None


def _backup_pair(backup_dir, suffix=""):
    return backup_dir / f"latest.weights.h5{suffix}", backup_dir / f"training_metadata.json{suffix}"


def backup_weights_file(backup_dir):
    """The weights file `keras.callbacks.BackupAndRestore` restores from `backup_dir`."""
    return _backup_pair(backup_dir)[0]


def _pair_problem(weights, metadata):
    """(file, why) for the first unusable file of a backup pair, or None."""
    if weights.exists():
        problem = weights_problem(weights)
        if problem:
            return weights, problem
    if metadata.exists():
        problem = json_problem(metadata, required=("epoch",))
        if problem:
            return metadata, problem
    return None


def repair_stage(paths, stage, log):
    """Makes the checkpoint files of one stage loadable, falling back to older good ones.

    Args:
      paths: the stage's `StagePaths`.
      stage: the stage name, for messages.
      log: receives one line per repair, naming the corrupt file and what is done instead.
    """
    if paths.marker.is_file() or paths.final.is_file():
        _repair_completed(paths, stage, log)
    if paths.backup.is_dir():
        _repair_backup(paths, stage, log)


def _repair_completed(paths, stage, log):
    marker_problem = json_problem(paths.marker) if paths.marker.is_file() else None
    final_problem = weights_problem(paths.final) if paths.final.is_file() else None
    if marker_problem is None and final_problem is None:
        return
    if marker_problem is None and paths.latest.is_file() and weights_problem(paths.latest) is None:
        # The last epoch's weights are the stage's final weights.
        log(f"stage {stage}: {paths.final} is corrupt ({final_problem}); using {paths.latest} instead")
        shutil.copyfile(paths.latest, paths.final)
        return
    bad, problem = (paths.marker, marker_problem) if marker_problem else (paths.final, final_problem)
    log(f"stage {stage}: {bad} is corrupt ({problem}); the stage is not complete and runs again")
    paths.marker.unlink(missing_ok=True)
    paths.final.unlink(missing_ok=True)


def _repair_backup(paths, stage, log):
    current = _backup_pair(paths.backup)
    found = _pair_problem(*current)
    if found is None:
        return
    bad, problem = found
    previous = _backup_pair(paths.backup, BACKUP_SUFFIX)
    if previous[0].exists() and _pair_problem(*previous) is None:
        epoch = json.loads(previous[1].read_text()).get("epoch") if previous[1].exists() else 0
        log(f"stage {stage}: {bad} is corrupt ({problem}); resuming from the previous backup "
            f"(epoch {epoch})")
        for source, target in zip(previous, current):
            if source.exists():
                shutil.copyfile(source, target)
            else:
                target.unlink(missing_ok=True)
        return
    log(f"stage {stage}: {bad} is corrupt ({problem}) and there is no good previous backup; "
        f"starting stage {stage} over")
    shutil.rmtree(paths.backup)
