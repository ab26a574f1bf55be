import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from tfgcrf import cli
from tfgcrf.imageio import read_image

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256


def _error_lines(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("tfgcrf: error: ")]
    assert "Traceback" not in stderr
    return lines


def test_colorize_writes_samples_and_a_sheet_at_input_size(tmp_path, smoke_model_file, capsys):
    gray = tmp_path / "gray_input.png"
    Image.open(PHOTO).convert("L").resize((101, 67)).save(gray)
    out = tmp_path / "out"
    code = cli.main(["colorize", PHOTO, str(gray), "--samples", "3", "--out", str(out),
                     "--model", smoke_model_file])
    assert code == 0, capsys.readouterr().err
    assert "wrote 8 files for 2 photo(s)" in capsys.readouterr().out
    for path, stem in ((PHOTO, "sklearn_china"), (str(gray), "gray_input")):
        source = read_image(path)
        samples = [read_image(out / f"{stem}_s{k}.png") for k in range(3)]
        for sample in samples:
            assert sample.shape == source.shape
            lightness_error = np.abs(skcolor.rgb2lab(sample)[..., 0] - skcolor.rgb2lab(source)[..., 0])
            assert lightness_error.mean() <= 1.0
        for first, second in ((0, 1), (0, 2), (1, 2)):
            assert np.any(samples[first] != samples[second], axis=-1).mean() > 0.05
        sheet = read_image(out / f"{stem}_grid.png")
        assert sheet.shape[0] > source.shape[0] // 2 and sheet.shape[1] > source.shape[1] // 2
    assert sorted(os.listdir(out)) == sorted(
        [f"{stem}_s{k}.png" for stem in ("sklearn_china", "gray_input") for k in range(3)]
        + ["sklearn_china_grid.png", "gray_input_grid.png"]
    )


def test_folders_and_glob_patterns(tmp_path, smoke_model_file, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("opencv_fruits.png", "opencv_apple.png"):
        shutil.copy(os.path.join(DATA, "photos", name), folder / name)
    (folder / "readme.txt").write_text("not an image: skipped by extension")
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(os.path.join(DATA, "photos", "opencv_fruits.png"), other / "opencv_fruits.png")
    out = tmp_path / "out"
    code = cli.main(["colorize", str(folder), str(other / "*.png"), "--samples", "1",
                     "--out", str(out), "--model", smoke_model_file])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # Same file name in two folders: the second gets its own outputs, and one line says which.
    renamed = [line for line in printed.out.splitlines() if " -> " in line]
    assert renamed == [f"{other / 'opencv_fruits.png'} -> {out / 'opencv_fruits-2'}_*.png"]
    assert sorted(os.listdir(out)) == [
        "opencv_apple_grid.png", "opencv_apple_s0.png", "opencv_fruits-2_grid.png",
        "opencv_fruits-2_s0.png", "opencv_fruits_grid.png", "opencv_fruits_s0.png",
    ]


@pytest.mark.parametrize("kind", ["missing", "folder_without_images", "not_an_image", "truncated",
                                  "empty", "too_large"])
def test_bad_input_gives_one_line_error(kind, bad_inputs, tmp_path, smoke_model_file, capsys):
    argument, message = bad_inputs[kind]
    code = cli.main(["colorize", argument, "--out", str(tmp_path / "out"), "--samples", "1",
                     "--model", smoke_model_file])
    stderr = capsys.readouterr().err
    assert code != 0
    lines = _error_lines(stderr)
    assert len(lines) == 1 and re.search(message, lines[0]), stderr


def test_good_inputs_are_processed_and_bad_ones_listed(bad_inputs, tmp_path, smoke_model_file, capsys):
    bad = [argument for argument, _ in bad_inputs.values()]
    good = os.path.join(DATA, "photos", "opencv_apple.png")
    out = tmp_path / "out"
    code = cli.main(["colorize", bad[0], good, *bad[1:], "--samples", "2", "--out", str(out),
                     "--model", smoke_model_file])
    stderr = capsys.readouterr().err
    assert code != 0
    assert sorted(os.listdir(out)) == ["opencv_apple_grid.png", "opencv_apple_s0.png", "opencv_apple_s1.png"]
    lines = _error_lines(stderr)
    assert lines[-1] == f"tfgcrf: error: {len(bad)} of {len(bad) + 1} inputs failed (listed above)"
    for argument, message in bad_inputs.values():
        assert any(argument in line and re.search(message, line) for line in lines[:-1]), (argument, stderr)


@pytest.mark.parametrize("samples, message", [("0", "--samples must be at least 1, got 0"),
                                              ("-2", "--samples must be at least 1, got -2"),
                                              ("5", "--mode top gives at most 4 samples (the "
                                                     "model's mixture components), got --samples 5; "
                                                     "pass --samples 4 or --mode draw")])
def test_bad_sample_count(samples, message, tmp_path, smoke_model_file, capsys):
    code = cli.main(["colorize", PHOTO, "--samples", samples, "--out", str(tmp_path),
                     "--model", smoke_model_file])
    lines = _error_lines(capsys.readouterr().err)
    assert code != 0 and len(lines) == 1 and message in lines[0]
    assert os.listdir(tmp_path) == []


def test_default_sample_count_fits_a_model_with_fewer_components(tmp_path, smoke_model_file, capsys):
    """Without --samples, a 4-component model gives its 4 top samples (not an error about 8)."""
    out = tmp_path / "out"
    code = cli.main(["colorize", PHOTO, "--out", str(out), "--model", smoke_model_file])
    assert code == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == sorted([f"sklearn_china_s{k}.png" for k in range(4)]
                                             + ["sklearn_china_grid.png"])
    code = cli.main(["colorize", PHOTO, "--out", str(tmp_path / "draw"), "--mode", "draw",
                     "--model", smoke_model_file])
    assert code == 0 and len(os.listdir(tmp_path / "draw")) == 8 + 1


def test_export_sample_count_error_names_the_export_options(tmp_path, smoke_model_file, capsys):
    out = tmp_path / "models" / "tfgcrf" / "1"
    code = cli.main(["export", "--model", smoke_model_file, "--out", str(out), "--num-samples", "8"])
    lines = _error_lines(capsys.readouterr().err)
    assert code != 0 and lines == [
        "tfgcrf: error: --mode top gives at most 4 samples (the model's mixture components), "
        "got --num-samples 8; pass --num-samples 4 or --mode draw"]
    assert not out.exists()


def test_missing_model(tmp_path, capsys):
    code = cli.main(["colorize", PHOTO, "--model", str(tmp_path / "nope.keras")])
    lines = _error_lines(capsys.readouterr().err)
    from tfgcrf.models.loading import preset_names

    installed = ", ".join(preset_names())
    assert code != 0 and lines == [
        f"tfgcrf: error: no such model file: {tmp_path / 'nope.keras'} (installed presets: {installed})"]


def test_inputs_are_deduplicated_by_real_path(tmp_path, monkeypatch):
    from tfgcrf.commands.colorize import expand_inputs

    (tmp_path / "good.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "good.png")
    monkeypatch.chdir(tmp_path)
    files, problems = expand_inputs(["good.png", "./good.png", str(tmp_path / "good.png"), "link.png", "."])
    assert files == ["good.png"] and problems == []


def test_a_folder_gives_every_file_the_decode_rule_reads_gif_included(tmp_path):
    # Training folders leave GIFs out (posterized palettes); colorizing a folder must not skip
    # them silently, since `read_image` decodes them like any other photo.
    from tfgcrf.commands.colorize import expand_inputs

    for name in ("a.gif", "b.JPG", "c.png", "d.webp", "e.bmp", "f.jpeg", "notes.txt", "g.tif",
                 "._b.JPG", ".hidden.png"):  # hidden files (macOS `._` metadata) are skipped
        (tmp_path / name).write_bytes(b"x")
    files, problems = expand_inputs([str(tmp_path)])
    assert [os.path.basename(f) for f in files] == ["a.gif", "b.JPG", "c.png", "d.webp", "e.bmp", "f.jpeg"]
    assert problems == []
