"""The built wheel in a fresh virtual environment: `tfgcrf train --config smoke` from anywhere.

Slow (a wheel build, a venv with TensorFlow from pip's cache or the package index, then the smoke
training): deselect with `-m "not slow"`.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Top-level entries of a working tree that are not part of the source.
NOT_SOURCE = {".venv", ".git", "build", "dist", "runs", "out", "data", ".pytest_cache", "tfgcrf.egg-info"}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1500, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_trains_the_packaged_smoke_config(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(
        REPO, source, symlinks=True,
        ignore=lambda folder, names: NOT_SOURCE & set(names) if Path(folder) == REPO else
        {name for name in names if name == "__pycache__"},
    )
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)])
    (wheel,) = (tmp_path / "dist").glob("tfgcrf-*.whl")
    # The data folders are packages of setup.cfg, not setuptools' "would be ignored" warnings.
    assert "Package would be ignored" not in built.stdout + built.stderr
    files = set(zipfile.ZipFile(wheel).namelist())
    assert {"tfgcrf/presets/default/model.keras", "tfgcrf/presets/examples/pagoda.jpg",
            "tfgcrf/studio/static/index.html", "tfgcrf/configs/smoke_photos/skimage_chelsea.png",
            "tfgcrf/configs/smoke.yaml", "tfgcrf/serving/models.config"} <= files, sorted(files)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)])

    # Outside the repository: the packaged config and its packaged photos must be enough.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = _run([str(venv / "bin" / "tfgcrf"), "train", "--config", "smoke", "--run-dir", "run", "--quiet"],
                  cwd=workdir)
    assert "stage mdn: done" in result.stderr
    assert (workdir / "run" / "model.keras").is_file()
    # ... and it ran the installed package, not the source tree.
    installed = _run([str(venv / "bin" / "python"), "-c",
                      "import tfgcrf, pathlib; print(pathlib.Path(tfgcrf.__file__).parent)"],
                     cwd=workdir).stdout.strip()
    assert installed.startswith(str(venv)), installed
