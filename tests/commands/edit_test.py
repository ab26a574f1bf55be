import os
import re

import numpy as np
import pytest
from skimage import color as skcolor

from tfgcrf import cli
from tfgcrf.imageio import read_image

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256
POINT = (60, 30)  # in the sky


def _requested_color(point, a=-20.0, b=35.0):
    """A color with the photo's own lightness at `point` (so it is reachable), as #rrggbb."""
    lightness = skcolor.rgb2lab(read_image(PHOTO))[point[1], point[0], 0]
    rgb = skcolor.lab2rgb(np.array([[[lightness, a, b]]]))[0, 0]
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb), np.array([a, b])


def _run(capsys, *arguments):
    code = cli.main(["edit", *arguments])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def test_edit_colors_the_point_and_propagates(tmp_path, smoke_model_file, capsys):
    color, requested = _requested_color(POINT)
    out = tmp_path / "edited.png"
    code, captured = _run(capsys, PHOTO, "--point", f"{POINT[0]},{POINT[1]},{color}",
                          "--out", str(out), "--model", smoke_model_file)
    assert code == 0, captured.err
    assert captured.out.strip() == f"wrote {out}"
    source, edited = skcolor.rgb2lab(read_image(PHOTO)), skcolor.rgb2lab(read_image(out))
    assert edited.shape == source.shape
    assert np.abs(edited[..., 0] - source[..., 0]).mean() <= 1.0
    assert np.linalg.norm(edited[POINT[1], POINT[0], 1:] - requested) < 8.0
    # Far from the point (the other half of the photo), colors follow the edit too.
    far = edited[:, 192:, 1:].reshape(-1, 2)
    assert np.median(far @ requested / np.linalg.norm(requested)) > 3.0


def test_markers_explain_maps_and_editing_a_sample(tmp_path, smoke_model_file, capsys):
    out = tmp_path / "edit.png"
    code, captured = _run(capsys, PHOTO, "--point", "60,30,255,128,0", "--point", "300,200,#2040c0",
                          "--from-sample", "1", "--seed", "3", "--show-points", "--explain",
                          "--out", str(out), "--model", smoke_model_file)
    assert code == 0, captured.err
    written = [str(out), str(tmp_path / "edit_explain0.png"), str(tmp_path / "edit_explain1.png")]
    assert captured.out.strip() == "wrote " + ", ".join(written)
    edited = read_image(out)
    assert tuple(edited[30, 60]) == (255, 128, 0) and tuple(edited[200, 300]) == (0x20, 0x40, 0xC0)
    first, second = read_image(written[1]), read_image(written[2])
    assert first.shape == second.shape == edited.shape
    assert np.any(first != second)


@pytest.mark.parametrize("point, message", [
    ("384,10,#ff0000", r"point \(384, 10\) is outside the 384x256 image"),
    ("10,-1,#ff0000", "outside"),
    ("10,10,#ff00", "'#ff00' is not #rrggbb"),
    ("10,10,red", "'red' is not #rrggbb"),
    ("10,10,255,0", "expected X,Y,#rrggbb or X,Y,R,G,B"),
    ("10,10,256,0,0", "'256' is not an integer in 0..255"),
    ("10,10,1.5,0,0", "'1.5' is not an integer in 0..255"),
    ("ten,10,#ff0000", "X and Y must be integers"),
])
def test_bad_point_gives_one_line_error(point, message, tmp_path, smoke_model_file, capsys):
    code, captured = _run(capsys, PHOTO, "--point", point, "--out", str(tmp_path / "e.png"),
                          "--model", smoke_model_file)
    lines = captured.err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("tfgcrf: error: ")
    assert re.search(message, lines[0]), lines
    assert not os.path.exists(tmp_path / "e.png")


@pytest.mark.parametrize("kind", ["missing", "folder_without_images", "not_an_image", "truncated",
                                  "empty", "too_large"])
def test_bad_input_file(kind, bad_inputs, tmp_path, smoke_model_file, capsys):
    argument, message = bad_inputs[kind]
    if kind == "folder_without_images":  # edit takes one file: a folder is refused as such
        message = "expected an image file, got a directory"
    code, captured = _run(capsys, argument, "--point", "0,0,#ff0000", "--out", str(tmp_path / "e.png"),
                          "--model", smoke_model_file)
    lines = captured.err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and re.search(message, lines[0]), lines


@pytest.mark.parametrize("arguments, message", [
    (["--from-sample", "4"], "there is no sample 4"),
    (["--from-sample", "-1"], "--from-sample must be a sample index >= 0"),
    (["--from-sample", "2", "--samples", "0"], "--samples must be at least 1, got 0"),
    (["--from-sample", "5", "--samples", "3", "--mode", "draw"], "no sample 5 among 3 samples"),
])
def test_bad_sample_choice(arguments, message, tmp_path, smoke_model_file, capsys):
    code, captured = _run(capsys, PHOTO, "--point", "0,0,#ff0000", *arguments,
                          "--out", str(tmp_path / "e.png"), "--model", smoke_model_file)
    lines = captured.err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and message in lines[0], lines


def test_link_makes_two_places_agree(tmp_path, smoke_model_file, capsys):
    from colorizer_test import mid_lightness_places

    first, far, near = mid_lightness_places(read_image(PHOTO))
    red, _ = _requested_color(first, a=30.0, b=20.0)
    blue, _ = _requested_color(near, a=5.0, b=-30.0)
    points = ["--point", f"{first[0]},{first[1]},{red}", "--point", f"{near[0]},{near[1]},{blue}"]
    outputs = {}
    for name, extra in (("unlinked", []), ("linked", ["--link", f"{first[0]},{first[1]},{far[0]},{far[1]}"])):
        out = tmp_path / f"{name}.png"
        code, captured = _run(capsys, PHOTO, *points, *extra, "--out", str(out),
                              "--model", smoke_model_file)
        assert code == 0, captured.err
        lab = skcolor.rgb2lab(read_image(out))
        outputs[name] = np.linalg.norm(lab[first[1], first[0], 1:] - lab[far[1], far[0], 1:])
    # The linked place takes (most of) the first place's color (the grid-level agreement is
    # tested in colorizer_test).
    assert outputs["unlinked"] > 10.0 and outputs["linked"] < 0.75 * outputs["unlinked"]


@pytest.mark.parametrize("arguments, message", [
    (["--link", "1,2,3"], r"malformed --link '1,2,3': expected X1,Y1,X2,Y2"),
    (["--link", "1,2,3,x"], "malformed --link"),
    (["--link", "10,10,384,5"], r"link end \(384, 5\) is outside the 384x256 image"),
    (["--link", "10,10,10,10"], r"link from \(10, 10\) to itself"),
    (["--point", "5,5,#ff0000", "--point", "5,5,#0000ff"], "points 1 and 2 are on the same pixel"),
    ([], r"an edit needs at least one color point, one link or a sample to start from \(from_sample "
         r">= 0\): give --point X,Y,COLOR, --link X1,Y1,X2,Y2 or --from-sample K"),
])
def test_bad_links_and_points_give_one_line_error(arguments, message, tmp_path, smoke_model_file,
                                                  capsys):
    code, captured = _run(capsys, PHOTO, *arguments, "--out", str(tmp_path / "e.png"),
                          "--model", smoke_model_file)
    lines = captured.err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and re.search(message, lines[0]), lines
    assert not os.path.exists(tmp_path / "e.png")


@pytest.mark.parametrize("arguments, message", [
    (["--point", "5,5,#ff0000", "--link", "10,10,384,5"], r"link end \(384, 5\) is outside"),
    (["--point", "5,5,#ff0000", "--link", "10,10,10,10"], r"link from \(10, 10\) to itself"),
    (["--point", "5,5,#ff0000", "--point", "5,5,#0000ff"], "points 1 and 2 are on the same pixel"),
    (["--point", "5,256,#ff0000"], r"point \(5, 256\) is outside the 384x256 image"),
])
def test_points_and_links_are_checked_before_the_model_is_loaded(arguments, message, tmp_path,
                                                                 monkeypatch, capsys):
    """A mistyped coordinate is refused at once, not after the model's load (tens of seconds for
    the default preset on a loaded machine)."""
    from tfgcrf.commands import edit

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for an edit that the photo alone refuses")

    monkeypatch.setattr(edit, "load_colorizer", no_model)
    code, captured = _run(capsys, PHOTO, *arguments, "--out", str(tmp_path / "e.png"))
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), lines


@pytest.mark.parametrize("name", ["noext", "edit.tiff2"])
def test_an_unwritable_output_name_is_refused_before_the_model_is_loaded(name, tmp_path,
                                                                          monkeypatch, capsys):
    from tfgcrf.commands import edit

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for an edit whose output cannot be written")

    monkeypatch.setattr(edit, "load_colorizer", no_model)
    code, captured = _run(capsys, PHOTO, "--point", "5,5,#ff0000", "--out", str(tmp_path / name))
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "unknown image file extension" in lines[0], lines


def test_a_sample_alone_is_an_edit(tmp_path, smoke_model_file, capsys):
    """`--from-sample K` without points or links is valid (the one rule of the API and the
    served signatures): the answer is `Colorizer.edit` of sample K with no point."""
    from tfgcrf import Colorizer

    out = tmp_path / "sample_only.png"
    code, captured = _run(capsys, PHOTO, "--from-sample", "1", "--out", str(out),
                          "--model", smoke_model_file)
    assert code == 0, captured.err
    expected = Colorizer.load(smoke_model_file).edit(PHOTO, [], [], from_sample=1)
    assert np.array_equal(read_image(out), expected)
