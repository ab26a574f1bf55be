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
