"""Real-photo data: image folders, TFDS datasets and the offline collection, as tf.data pipelines.

`make_dataset` (TensorFlow) is imported lazily, so that `tfgcrf.data.folders` and the offline
collection builder stay cheap to import.
"""

_LAZY = {
    "make_dataset": "tfgcrf.data.pipeline",
    "list_images": "tfgcrf.data.folders",
    "split_images": "tfgcrf.data.folders",
    "split_of": "tfgcrf.data.folders",
    "offline_dir": "tfgcrf.data.folders",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfgcrf.data' has no attribute {name!r}")
