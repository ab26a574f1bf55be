"""Fixed probe of a colorization model's inference, to compare code versions on the same weights.

`outputs(model)` runs `sample` (top, unary, draw), `edit`, `similarity`, `posterior` and
`reconstruct` on a fixed synthetic gray image; it only uses methods that `GCRFColorizer` had
before and after the backbone/task split. `python tests/legacy_probe.py MODEL OUT.npz|OUT.json`
records them (the `.json` form keeps a summary keyed by the file's sha256, for 25 MB presets);
tests/data/legacy/ holds what the pre-split code recorded (with PYTHONPATH at a pre-split checkout).
"""

import hashlib
import json
import sys

import numpy as np


def gray(size):
    """A smooth synthetic gray image with an edge, `[1, size, size, 1]` in [0, 1]."""
    import tensorflow as tf

    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    l = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y) + 0.2 * (x > 0.6)
    return tf.constant(np.clip(l, 0, 1)[None, :, :, None], tf.float32)


def outputs(model):
    """{name: float64 array} of the probe's results."""
    import tensorflow as tf

    size = model.model_config.image_size
    l = gray(size)
    ab = tf.concat([0.3 * l - 0.1, 0.2 - 0.25 * l], axis=-1)
    mask = np.zeros((1, size, size), np.float32)
    mask[0, 3, 4] = mask[0, size - 5, size - 3] = 1
    target = np.zeros((1, size, size, 2), np.float32)
    target[0, 3, 4], target[0, size - 5, size - 3] = (0.4, -0.2), (-0.3, 0.35)
    out = {
        "sample_top": model.sample(l, 2, mode="top")[0],
        "scores_top": model.sample(l, 2, mode="top", use_gcrf=False)[1],
        "unary_top": model.sample(l, 2, mode="top", use_gcrf=False)[0],
        "unary_draw": model.sample(l, 2, seed=3, mode="draw", use_gcrf=False)[0],
        "edit": model.edit(l, mask, target),
        "similarity_rows": model.similarity(l)[:, :: max(1, size // 4)],
        "posterior_mean": model.posterior(l, ab)[0],
        "reconstruct": model.reconstruct(l, ab, reveal_fraction=0.3, seed=2, solver="cholesky"),
        "reveal_fraction": model.reveal_fraction,
    }
    return {key: np.asarray(value, np.float64) for key, value in out.items()}


def summary(values):
    """Mean, std and 64 evenly strided values of each output (a few kB for any model size)."""
    result = {}
    for key, value in values.items():
        flat = value.reshape(-1)
        step = max(1, flat.size // 64)
        result[key] = {"shape": list(value.shape), "mean": float(value.mean()), "std": float(value.std()),
                       "strided": [float(x) for x in flat[::step][:64]]}
    return result


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    from tfgcrf.models.loading import load_model, resolve_model_path

    model_path, out = resolve_model_path(sys.argv[1]), sys.argv[2]
    values = outputs(load_model(model_path))
    if out.endswith(".npz"):
        np.savez_compressed(out, **{key: value.astype(np.float32) for key, value in values.items()})
    else:
        with open(out, "w") as f:
            json.dump({"sha256": file_sha256(model_path), "outputs": summary(values)}, f, indent=1)
