"""The package itself: `import tfgcrf` registers the Keras classes; `python -m tfgcrf` runs."""

import subprocess
import sys

import pytest


def _python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "tfgcrf", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tfgcrf ")
    out = subprocess.run([sys.executable, "-m", "tfgcrf", "colorize", "/no/such/photo.png"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "tfgcrf: error: no such image file: /no/such/photo.png"


def test_import_tfgcrf_stays_light():
    out = _python("import sys, tfgcrf, tfgcrf.cli; print(sorted(m for m in ('tensorflow', 'keras') "
                  "if m in sys.modules))")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


LOAD = """
import sys
{first}
import keras
model = keras.saving.load_model(sys.argv[1], compile=False)
print(type(model).__module__, type(model).__name__)
"""


@pytest.mark.slow
def test_import_tfgcrf_registers_the_keras_classes(smoke_run):
    """`import tfgcrf` then `keras.saving.load_model`, with Keras imported after or before it."""
    path = str(smoke_run.run_dir / "model.keras")
    for first in ("import tfgcrf", "import keras; import tfgcrf"):
        out = _python(LOAD.format(first=first), path)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-2:] == ["tfgcrf.models.gcrf_colorizer", "GCRFColorizer"]
    # Without tfgcrf, Keras cannot know the class (the test above is not vacuous).
    out = _python(LOAD.format(first=""), path)
    assert out.returncode != 0 and "GCRFColorizer" in out.stderr
