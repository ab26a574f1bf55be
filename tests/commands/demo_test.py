import os

from tfgcrf import cli
from tfgcrf.commands import demo
from tfgcrf.imageio import read_image


def test_demo_colorizes_and_edits_the_example(tmp_path, smoke_model_file, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--model", smoke_model_file])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    expected = [f"pagoda_s{k}.png" for k in range(demo.NUM_SAMPLES)] + [
        "pagoda_grid.png", "pagoda_edit.png", "pagoda_edit_explain0.png", "pagoda_edit_explain1.png"]
    assert sorted(os.listdir(tmp_path)) == sorted(expected)
    for name in expected:
        assert str(tmp_path / name) in captured.out
    assert read_image(tmp_path / "pagoda_s0.png").shape == (342, 512, 3)
    assert read_image(tmp_path / "pagoda_edit.png").shape == (342, 512, 3)
