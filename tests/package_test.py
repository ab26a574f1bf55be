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


def _registered_classes():
    """Names of the classes the package source registers with Keras (`package="tfgcrf"`)."""
    import ast
    import pathlib

    names = []
    for path in sorted(pathlib.Path(__file__).parents[1].joinpath("tfgcrf").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                "register_keras_serializable" in ast.unparse(d) and "tfgcrf" in ast.unparse(d)
                for d in node.decorator_list
            ):
                names.append(node.name)
    return names


CHECK_REGISTERED = """
import sys
def missing():
    import keras
    return [n for n in sys.argv[1:] if keras.saving.get_registered_object("tfgcrf>" + n) is None]
{before}
import tfgcrf
print(missing())
"""


def test_import_tfgcrf_registers_every_serializable_class():
    """Every class of the package registered with Keras is known right after `import tfgcrf`,
    whether Keras is imported before or after it (classes found from the source's decorators)."""
    names = _registered_classes()
    assert {"GCRFColorizer", "GCRFBackbone", "GridConverter", "GaussianCRF"} <= set(names), names
    for before in ("print(missing())", ""):  # Keras imported first (nothing registered yet), or after
        out = _python(CHECK_REGISTERED.format(before=before), *names)
        assert out.returncode == 0, out.stderr[-2000:]
        lines = out.stdout.strip().splitlines()
        assert lines[-1] == "[]", lines
        if before.startswith("print"):
            assert lines[0] == str(names)  # without tfgcrf, Keras knows none of them
