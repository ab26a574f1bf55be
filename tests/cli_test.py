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
