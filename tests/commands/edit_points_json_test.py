"""`tfgcrf edit --points-json FILE`: an edit file replays exactly what --point/--link ask."""

import json
import os
import re

import numpy as np

from tfgcrf import cli, edit_json
from tfgcrf.imageio import read_image

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256


def _run(capsys, *arguments):
    code = cli.main(["edit", *arguments])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def test_file_equals_the_same_flags(tmp_path, smoke_model_file, capsys):
    document = edit_json.document([(60, 30), (300, 200)], [(200, 120, 60), (40, 90, 160)],
                                  [((20, 240), (360, 20))], from_sample=1, seed=3,
                                  image="sklearn_china.jpg", size=(384, 256))
    path = tmp_path / "edit.json"
    path.write_text(json.dumps(document))
    replay, flags = tmp_path / "replay.png", tmp_path / "flags.png"
    code, captured = _run(capsys, PHOTO, "--points-json", str(path), "--out", str(replay),
                          "--model", smoke_model_file)
    assert code == 0, captured.err
    code, captured = _run(capsys, PHOTO, "--point", "60,30,200,120,60", "--point", "300,200,#285aa0",
                          "--link", "20,240,360,20", "--from-sample", "1", "--seed", "3",
                          "--out", str(flags), "--model", smoke_model_file)
    assert code == 0, captured.err
    assert np.array_equal(read_image(replay), read_image(flags))
    # Command-line options win over the file's: from sample 0 instead of 1.
    other = tmp_path / "other.png"
    code, captured = _run(capsys, PHOTO, "--points-json", str(path), "--from-sample", "0",
                          "--out", str(other), "--model", smoke_model_file)
    assert code == 0, captured.err
    assert not np.array_equal(read_image(other), read_image(replay))


def test_bad_files_are_one_line(tmp_path, smoke_model_file, capsys):
    cases = {
        "missing": (None, "no such edit file"),
        "broken": ("{\"points\": [", "is not valid JSON"),
        "empty": (json.dumps({"points": [], "links": []}), "at least one color point, one link or a sample"),
        "color": (json.dumps({"points": [{"x": 1, "y": 1, "color": "red"}]}), "is not a color"),
        "size": (json.dumps({"width": 100, "height": 100,
                             "points": [{"x": 1, "y": 1, "color": "#ff0000"}]}),
                 "made on a 100x100 photo, .* is 384x256"),
        "outside": (json.dumps({"points": [{"x": 500, "y": 1, "color": "#ff0000"}]}),
                    r"\(500, 1\) is outside the 384x256"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        if content is not None:
            path.write_text(content)
        code, captured = _run(capsys, PHOTO, "--points-json", str(path), "--out",
                              str(tmp_path / "out.png"), "--model", smoke_model_file)
        assert code == 2, name
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfgcrf: error: "), captured.err
        assert re.search(message, lines[0]), (name, lines[0])
