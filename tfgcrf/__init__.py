"""tfgcrf: diverse, structurally consistent and controllable colorization (G-CRF VAE-MDN).

Heavy modules (TensorFlow) are imported lazily so that `tfgcrf --help` stays fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "Colorizer": "tfgcrf.colorizer",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfgcrf' has no attribute {name!r}")
