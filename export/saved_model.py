"""Writes a TF Serving model version: SavedModel + warm-up requests + export description.

The version folder is written aside and renamed into place when complete, so a server polling the
model base path (TF Serving, `tfgcrf serve`) never loads a half-written version. The staging
folder, `.VERSION.HOST-PID.RANDOM` beside the versions, is removed by a later export once its
writer is gone (killed exports would leave it forever otherwise).
"""

import json
import os
import re
import shutil
import socket
import tempfile
import time

import numpy as np
import tensorflow as tf

from tfgcrf.config import as_plain_dict
from tfgcrf.errors import UserError
from tfgcrf.export.signatures import DEFAULT_MAX_PIXELS, EDIT_SOLVER, ServingModule
from tfgcrf.export import WARMUP_FILE

DESCRIPTION_FILE = os.path.join("assets.extra", "tfgcrf_export.json")
WARMUP_IMAGE_SIZE = (48, 64)  # height, width: small, non-square


def warmup_image():
    """A deterministic synthetic photo-like PNG (gradients and a disc) for warm-up requests."""
    height, width = WARMUP_IMAGE_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((y - height / 2) ** 2 + (x - width / 3) ** 2) < (height / 4) ** 2
    rgb = np.stack([x / width, y / height, 0.5 + 0.4 * disc], axis=-1)
    return tf.io.encode_png(tf.constant(np.round(rgb * 255).astype(np.uint8))).numpy()


def warmup_requests(num_samples):
    """`[(signature name, {input name: numpy array})]` exercising every signature once."""
    image = np.array([warmup_image()], dtype=object)
    seed = np.array([0], np.int64)
    points = np.array([[[0.25, 0.5], [0.75, 0.25]]], np.float32)
    colors = np.array([[[200, 40, 40], [30, 60, 200]]], np.uint8)
    height, width = WARMUP_IMAGE_SIZE
    edit_inputs = {
        "image_bytes": image,
        "points": points,
        "colors": colors,
        "num_points": np.array([2], np.int32),
        "seed": seed,
    }
    return [
        ("sample", {"image_bytes": image, "seed": seed}),
        ("edit", {**edit_inputs, "from_sample": np.array([-1], np.int32)}),
        ("edit", {**edit_inputs, "from_sample": np.array([num_samples - 1], np.int32)}),
        ("edit_links", {**edit_inputs, "from_sample": np.array([-1], np.int32),
                        "links": np.array([[[0.25, 0.5, 0.75, 0.75]]], np.float32),
                        "num_links": np.array([1], np.int32)}),
        ("sample_tensor", {"image": np.zeros((1, height, width, 3), np.uint8), "seed": seed}),
    ]


def write_warmup_file(path, requests, model_name="tfgcrf"):
    """Writes TF Serving's warm-up file: a TFRecord of `PredictionLog` protos (predict_log)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def version_folder(out):
    """Checks that `out` is `BASE/VERSION` with a positive integer VERSION that does not exist."""
    out = os.path.abspath(out)
    version = os.path.basename(out)
    if not version.isdigit() or int(version) < 1:
        raise UserError(
            f"--out must end in a positive integer version folder (e.g. models/tfgcrf/1), got {out}"
        )
    if os.path.exists(out):
        raise UserError(f"{out} already exists: model versions are immutable, use a new number")
    return out


# A staging folder whose writer cannot be checked (another host, or an older name without the
# writer's pid) is stale after this long without a change.
STALE_STAGING_SECONDS = 24 * 3600
_STAGING_NAME = re.compile(r"\.[0-9]+\.(?:(?P<host>[A-Za-z0-9-]+)-(?P<pid>[0-9]+)\.)?[^.]+", re.ASCII)


def _host_label():
    return re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-") or "host"


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_staging(base, now=None):
    """Removes the staging folders of exports into `base` that were killed or abandoned.

    A folder `.VERSION.HOST-PID.RANDOM` of this host whose process is gone is stale; any other
    `.VERSION.*` folder is stale when unchanged for `STALE_STAGING_SECONDS`.

    Returns:
      The removed paths.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = os.listdir(base)
    except OSError:
        return removed
    host = _host_label()
    for entry in entries:
        match = _STAGING_NAME.fullmatch(entry)
        path = os.path.join(base, entry)
        if not match or not os.path.isdir(path) or os.path.islink(path):
            continue
        if match["pid"] and match["host"] == host:
            stale = int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"]))
        else:
            try:
                stale = now - os.path.getmtime(path) > STALE_STAGING_SECONDS
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def export_saved_model(model, out, num_samples=8, mode="top", max_pixels=DEFAULT_MAX_PIXELS,
                       propagate=True, edit_solver=EDIT_SOLVER):
    """Exports `model` as the TF Serving version folder `out` (e.g. `models/tfgcrf/1`).

    Args:
      model: a trained `GCRFColorizer`.
      out: the version folder to create; its name must be a positive integer.
      num_samples: N samples per `sample` request.
      mode: "top" or "draw", see `ServingModule`.
      max_pixels: largest accepted request image, in pixels.
      propagate: edits with the full-resolution propagation (see `ServingModule`).
      edit_solver: the G-CRF solver of the edits' grid system (see `ServingModule`).

    Returns:
      The absolute path of the written version folder.
    """
    out = version_folder(out)
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    if max_pixels < 1:
        raise UserError(f"--max-pixels must be >= 1, got {max_pixels}")
    module = ServingModule(model, num_samples, mode=mode, max_pixels=max_pixels,
                           propagate=propagate, edit_solver=edit_solver)
    base = os.path.dirname(out)
    os.makedirs(base, exist_ok=True)
    remove_stale_staging(base)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.{_host_label()}-{os.getpid()}.", dir=base)
    try:
        tf.saved_model.save(module, staging, signatures=module.signatures())
        write_warmup_file(os.path.join(staging, WARMUP_FILE), warmup_requests(num_samples))
        description = {
            "num_samples": module.num_samples,
            "mode": mode,
            "max_pixels": module.max_pixels,
            "propagate": module.propagate,
            "edit_solver": module.edit_solver,
            "dtype": model.backbone.dtype_policy.name,
            "grid_size": module.grid_size,
            "model_config": as_plain_dict(model.model_config),
        }
        with open(os.path.join(staging, DESCRIPTION_FILE), "w") as f:
            json.dump(description, f, indent=2)
        os.chmod(staging, 0o755)  # mkdtemp creates it private; servers may run as another user
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def saved_model_bytes(path):
    """Total size of the files of a SavedModel folder."""
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )
