import subprocess
import sys

from tfgcrf import cli


def test_help_lists_commands(capsys):
    assert cli.main([]) == 0
    assert "usage: tfgcrf" in capsys.readouterr().out


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "tfgcrf.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "tfgcrf" in out.stdout


def test_export_help_states_the_real_pixel_limit():
    from tfgcrf.imageio import MAX_PIXELS

    export = cli.build_parser()._subparsers._group_actions[0].choices["export"]
    text = " ".join(export.format_help().split())
    assert f"tfgcrf.imageio.MAX_PIXELS = {MAX_PIXELS:,})" in text  # the number in the text is the constant


def test_a_bad_input_is_exactly_one_stderr_line_from_a_real_process(tiny_preset, tmp_path):
    """The C++ runtime's start-up ERROR lines on a CPU machine (a failed cuInit, oneDNN's uint8
    note at the first decoded photo) do not precede the error line (fd 2 of a real process, which
    pytest's capsys never sees)."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), np.uint8)).save(photo)
    run = subprocess.run(
        [sys.executable, "-m", "tfgcrf", "edit", str(photo), "--model", str(tiny_preset),
         "--point", "3,4,#ff8000", "--link", "3,4,3,4"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        "tfgcrf: error: link from (3, 4) to itself: a link needs two different places"], run.stderr


def test_a_negative_coordinate_is_the_commands_outside_message(tiny_preset, tmp_path, capsys):
    """`--point -1,...` and `--link -3,...` reach the command (argparse would take them for
    options: "expected one argument" and the usage)."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(photo)
    for extra, message in (
        (["--point", "-1,10,255,0,0"], "point (-1, 10) is outside the 24x16 image"),
        (["--point", "1,1,#ff0000", "--link", "-3,2,5,5"], "link end (-3, 2) is outside the 24x16 image"),
    ):
        assert cli.main(["edit", str(photo), "--model", str(tiny_preset), *extra]) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"tfgcrf: error: {message} (x must be in 0..23, y in 0..15)"], err


def test_malformed_points_and_links_are_refused_before_tensorflow_starts(monkeypatch, capsys):
    # TensorFlow's start takes seconds (tens under load): a typo must not wait for it.
    def no_tensorflow(**kwargs):
        raise AssertionError("TensorFlow was started for a malformed command line")

    monkeypatch.setattr(cli, "_import_tensorflow_quietly", no_tensorflow)
    for extra, message in (
        (["--point", "10,10"], "malformed --point '10,10': expected X,Y,#rrggbb or X,Y,R,G,B"),
        (["--point", "10,10,#12345"], "malformed color in --point '10,10,#12345'"),
        (["--link", "1,2,3"], "malformed --link '1,2,3': expected X1,Y1,X2,Y2"),
    ):
        assert cli.main(["edit", "photo.jpg", *extra]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tfgcrf: error: {message}"), lines
