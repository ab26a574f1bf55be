"""`EpochHistory`: a stage's per-epoch history survives a kill and a resume."""

import json

from tfgcrf.trainers.callbacks import EpochHistory, read_epoch_history


def _process(path, first_epoch, last_epoch, loss_offset=0.0):
    """One training process running epochs first_epoch..last_epoch (as Keras calls the callback)."""
    callback = EpochHistory(path)
    callback.on_train_begin()
    for epoch in range(first_epoch, last_epoch + 1):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 10.0 - epoch + loss_offset, "val_loss": 20.0 - epoch})
    callback.on_train_end()
    return callback


def test_a_resumed_stage_keeps_the_epochs_of_the_killed_process(tmp_path):
    path = tmp_path / "history.json"
    _process(path, 0, 1)  # killed after epoch 2 (index 1)
    resumed = _process(path, 2, 4)
    assert resumed.first_epoch == 2 and resumed.earlier_seconds >= 0
    assert resumed.history() == {"loss": [10.0, 9.0, 8.0, 7.0, 6.0],
                                 "val_loss": [20.0, 19.0, 18.0, 17.0, 16.0]}
    assert [e["epoch"] for e in read_epoch_history(path)] == [0, 1, 2, 3, 4]


def test_a_resume_from_an_older_backup_drops_the_epochs_it_runs_again(tmp_path):
    path = tmp_path / "history.json"
    _process(path, 0, 3)  # epoch 4's backup was damaged: the resume falls back to epoch 2's
    resumed = _process(path, 2, 3, loss_offset=0.5)
    assert resumed.history()["loss"] == [10.0, 9.0, 8.5, 7.5]


def test_nothing_left_to_run_reports_the_whole_stage(tmp_path):
    path = tmp_path / "history.json"
    _process(path, 0, 2)
    entries = read_epoch_history(path)
    resumed = _process(path, 3, 2)  # the backup was of the last epoch: fit runs no epoch
    assert resumed.first_epoch == 3
    assert resumed.earlier_seconds == sum(e["seconds"] for e in entries)
    assert len(resumed.history()["loss"]) == 3


def test_a_damaged_history_file_starts_a_new_one(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('[{"logs": {"loss": 1.0}, "sec')
    assert read_epoch_history(path) == []
    _process(path, 0, 0)
    assert json.loads(path.read_text())[0]["logs"]["loss"] == 10.0
