"""Version handling as TF Serving does it: retries, versions completed later, odd folder names."""

import logging
import os
import shutil
import time

import numpy as np
import pytest

from serving_toys import export_toy
from tfgcrf.serving import Client, ServingError
from tfgcrf.serving.repository import ModelRepository, list_versions, parse_version
from tfgcrf.serving.server import ModelServer

MODEL_NAME = "toy"
REQUEST = {"image_bytes": np.array([b"a"], dtype=object), "seed": np.array([0])}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Complete toy versions to copy from: offset 1.0 and 2.0."""
    base = tmp_path_factory.mktemp("exports")
    return {offset: export_toy(str(base / str(offset)), 1, offset=float(offset)) for offset in (1, 2)}


def _half_copy(source, target):
    """What `cp -r` shows a poller midway: saved_model.pb first, the variables not yet."""
    os.makedirs(target)
    shutil.copy2(os.path.join(source, "saved_model.pb"), target)


def _complete_copy(source, target):
    shutil.copytree(source, target, dirs_exist_ok=True)


def _wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _offset(client):
    return float(client.predict("sample", REQUEST)["scores"][0, 0])


def test_version_names_are_plain_ascii_int64():
    assert parse_version("17") == 17
    assert parse_version(str(2**63 - 1)) == 2**63 - 1
    for name in ("\u00b2", "\u0663", "99999999999999999999", str(2**63), "-1", "1.5", " 1", ""):
        assert parse_version(name) is None, name


def test_half_written_version_is_served_once_complete(tmp_path, exports):
    base = tmp_path / MODEL_NAME
    _complete_copy(exports[1], base / "1")
    # TF Serving's default retry interval (1 minute): the reload comes from the files changing.
    with ModelServer(str(base), MODEL_NAME, grpc_port=0, rest_port=None, poll_seconds=0.05) as srv:
        with Client(f"127.0.0.1:{srv.grpc_port}", model_name=MODEL_NAME, timeout=30) as client:
            assert _offset(client) == 1.0
            _half_copy(exports[2], base / "2")
            _wait_for(lambda: (2, "LOADING") in [(v, s) for v, s, _ in srv.repository.status()],
                      "the half-written version was not tried")
            assert _offset(client) == 1.0  # the old version keeps serving meanwhile
            _complete_copy(exports[2], base / "2")
            _wait_for(lambda: _offset(client) == 2.0, "the completed version was not served")
            assert [(v, s) for v, s, _ in srv.repository.status()] == [(2, "AVAILABLE")]


def test_startup_with_only_a_half_written_version(tmp_path, exports):
    base = tmp_path / MODEL_NAME
    _half_copy(exports[1], base / "1")
    with ModelServer(str(base), MODEL_NAME, grpc_port=0, rest_port=None, poll_seconds=0.05) as srv:
        with Client(f"127.0.0.1:{srv.grpc_port}", model_name=MODEL_NAME, timeout=30) as client:
            with pytest.raises(ServingError) as info:
                client.predict("sample", REQUEST)
            assert info.value.code == "NOT_FOUND"
            _complete_copy(exports[1], base / "1")
            _wait_for(lambda: srv.repository.refresh() == 1, "the completed version was not served")
            assert _offset(client) == 1.0


def test_failed_loads_are_retried_count_and_interval(tmp_path, exports):
    base = tmp_path / MODEL_NAME
    _complete_copy(exports[1], base / "1")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    repository = ModelRepository(str(base), MODEL_NAME, poll_seconds=0,
                                 max_num_load_retries=2, load_retry_interval_seconds=3600)
    assert repository.refresh() == 1
    statuses = [repository.status()]
    repository.refresh()  # within the retry interval: no new attempt
    assert repository._failures[2].attempts == 1
    repository.load_retry_interval_seconds = 0
    for _ in range(4):
        repository.refresh()
        statuses.append(repository.status())
    assert repository._failures[2].attempts == 3  # the first load + max_num_load_retries
    assert statuses[0][0][:2] == (1, "AVAILABLE") and statuses[0][1][:2] == (2, "LOADING")
    assert statuses[-1][1][:2] == (2, "END") and "DecodeError" in statuses[-1][1][2]


def test_odd_folder_names_are_ignored_once_and_the_poller_lives(tmp_path, exports, caplog):
    base = tmp_path / MODEL_NAME
    _complete_copy(exports[1], base / "1")
    # Unicode digits and an int64 overflow, each holding a valid SavedModel, and a plain folder.
    for name in ("\u00b2", "\u0663", "99999999999999999999", "notes"):
        _complete_copy(exports[2], base / name)
    assert list_versions(str(base)) == [1]
    caplog.set_level(logging.INFO, logger="tfgcrf.serving.repository")
    with ModelServer(str(base), MODEL_NAME, grpc_port=0, rest_port=0, poll_seconds=0.05) as srv:
        with Client(f"127.0.0.1:{srv.grpc_port}", model_name=MODEL_NAME, timeout=30) as client:
            assert _offset(client) == 1.0
            time.sleep(0.5)  # several polls
            ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
            assert len(ignored) == 4, ignored
            # The poller is alive: a later real version is picked up.
            _complete_copy(exports[2], base / "5")
            _wait_for(lambda: _offset(client) == 2.0, "version 5 was not picked up")
        with Client(f"http://127.0.0.1:{srv.rest_port}", model_name=MODEL_NAME, timeout=30) as client:
            assert _offset(client) == 2.0
            assert client.metadata()["model_spec"]["version"] == "5"
