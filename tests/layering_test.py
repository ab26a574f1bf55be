"""The package's layering rules (docs/design.md, "Layering"), checked on the import statements."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_MODULES = {os.path.splitext(name)[0] for _, _, files in os.walk(os.path.join(ROOT, "tests"))
                for name in files if name.endswith(".py")}


def _imports(folder):
    """(file, imported module) for every import statement of the .py files below `folder`."""
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as handle:
                    tree = ast.parse(handle.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        yield from ((path, alias.name) for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.module:
                        yield path, node.module


@pytest.mark.parametrize("folder, forbidden", [
    ("tfgcrf/data", lambda module: module.startswith("tfgcrf.evaluation")),
    ("export", lambda module: module.startswith("tfgcrf.serving")),
    ("benchmarks", lambda module: module.split(".")[0] in TEST_MODULES | {"tests", "conftest"}),
])
def test_lower_layers_do_not_import_higher_ones(folder, forbidden):
    found = [(os.path.relpath(path, ROOT), module) for path, module in _imports(folder) if forbidden(module)]
    assert not found, found
    assert list(_imports(folder)), folder  # the walk found the files (the test is not vacuous)
