"""`tfgcrf studio` on the command line: bad arguments in one line, a real server on a free port."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from tfgcrf import cli

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")


@pytest.mark.parametrize("arguments, message", [
    (["/no/such/photo.jpg"], "no such photo or folder: /no/such/photo.jpg"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--samples", "0"], "--samples must be at least 1"),
    (["--max-tabs", "0"], "--max-tabs must be at least 1"),
])
def test_bad_arguments_are_one_line(arguments, message, capsys):
    assert cli.main(["studio", *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfgcrf: error: ") and message in err and err.count("\n") == 1


def test_folder_without_photos(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no pictures")
    assert cli.main(["studio", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


@pytest.mark.slow
def test_serves_the_page_until_interrupted(smoke_model_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "tfgcrf", "studio", PHOTO, "--model", smoke_model_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A test run started in the background ignores SIGINT, and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        assert line.startswith("tfgcrf studio: open http://127.0.0.1:"), (line, process.stderr.read())
        url = line.split("open ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"tfgcrf studio" in response.read()
        with urllib.request.urlopen(url + "api/config", timeout=30) as response:
            assert json.load(response)["photos"] == ["sklearn_china.jpg"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err and out.strip() == "tfgcrf studio: stopped"
