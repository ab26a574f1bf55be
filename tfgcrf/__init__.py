"""tfgcrf: diverse, structurally consistent and controllable colorization (G-CRF VAE-MDN).

Heavy modules (TensorFlow) are imported lazily so that `tfgcrf --help` and the serving client
stay fast. Still, `import tfgcrf` makes every serializable class of the package known to Keras:
`keras.saving.load_model("model.keras")` works right after it, without importing
`tfgcrf.models`. If Keras is already imported, the classes are registered now; otherwise they are
registered as soon as Keras finishes importing (a one-shot import hook on the `keras` module).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_LAZY = {
    "Colorizer": "tfgcrf.colorizer",
}

# The modules whose import registers every Keras-serializable class of the package
# (`keras.saving.register_keras_serializable(package="tfgcrf")`).
SERIALIZABLE_MODULES = ("tfgcrf.models", "tfgcrf.preprocessing")


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfgcrf' has no attribute {name!r}")


def _importing_tfgcrf():
    """Whether a tfgcrf submodule is being imported right now (it registers its own classes)."""
    return any(
        name.startswith("tfgcrf.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
    )


def register_serializables():
    """Imports the modules that register the package's Keras-serializable classes."""
    for module in SERIALIZABLE_MODULES:
        importlib.import_module(module)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds `keras` through the other finders and registers our classes once it has loaded.

    When Keras is first imported by a tfgcrf module itself (e.g. `tfgcrf.layers.blocks`), the
    classes register through that import chain instead: importing `tfgcrf.models` in the middle
    of it would meet partially initialized modules.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader

        class _Loader(importlib.abc.Loader):
            """Keras's own loader, with the registration after its `exec_module`."""

            def __getattr__(self, attribute):  # resource readers etc.: the original's
                return getattr(loader, attribute)

            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                if not _importing_tfgcrf():
                    register_serializables()

        spec.loader = _Loader()
        return spec


if "keras" in sys.modules:
    if not _importing_tfgcrf():
        register_serializables()
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
