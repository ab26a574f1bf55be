"""Loads the newest SavedModel version of a model base path and runs its signatures.

This mirrors TF Serving's default behaviour for one model: the base path holds numeric version
folders; the newest complete one (it has `saved_model.pb`) is served, and a newer one is picked
up by polling without a restart (`latest` version policy with one version: the old version is
dropped once the new one has loaded; requests already running on it finish normally). A version
that fails to load is reported and skipped while the current version keeps serving.
"""

import logging
import os
import re
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.core.framework import types_pb2

from tfgcrf.serving.json_codec import NUMPY_DTYPES
from tfgcrf.serving.status import CODE_NAMES, ServingError

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

log = logging.getLogger(__name__)


def list_versions(base_path):
    """Sorted numeric version folders of `base_path` that contain a complete SavedModel."""
    try:
        entries = os.listdir(base_path)
    except FileNotFoundError:
        return []
    return sorted(
        int(entry)
        for entry in entries
        if entry.isdigit() and os.path.isfile(os.path.join(base_path, entry, "saved_model.pb"))
    )


def read_signature_defs(saved_model_dir):
    """The `serve` MetaGraph's SignatureDef map, read from `saved_model.pb`."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ValueError(f"{saved_model_dir} has no MetaGraph tagged '{SERVE_TAG}'")


def read_warmup_file(path):
    """Parses TF Serving's warm-up file (TFRecord of PredictionLog protos with predict_log).

    Returns:
      `[(signature name, {input name: numpy array})]` in file order.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if not log.HasField("predict_log"):
            raise ValueError(f"{path}: only predict_log warm-up records are supported")
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name, inputs))
    return requests


class Servable:
    """One loaded version: its signatures as callables and as SignatureDef protos.

    Args:
      version: the version number.
      path: the version folder.
    """

    def __init__(self, version, path):
        self.version = version
        self.path = path
        self.signature_defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
        self._functions = dict(self._loaded.signatures)
        # Like TF Serving: replay the warm-up requests before serving; a failing one fails the load.
        warmup = os.path.join(path, WARMUP_FILE)
        if os.path.exists(warmup):
            for signature_name, inputs in read_warmup_file(warmup):
                self.predict(signature_name, inputs)

    def input_dtypes(self, signature_name):
        """`{input name: numpy dtype}` of a signature ('' means serving_default)."""
        signature = self._signature_def(signature_name)
        return {name: _numpy_dtype(info.dtype) for name, info in signature.inputs.items()}

    def output_dtypes(self, signature_name):
        signature = self._signature_def(signature_name)
        return {name: _numpy_dtype(info.dtype) for name, info in signature.outputs.items()}

    def _signature_def(self, signature_name):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name not in self._functions:
            raise ServingError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{name}" not found in signature def '
                f"(available: {', '.join(sorted(self.signature_defs))})",
            )
        return self.signature_defs[name]

    def predict(self, signature_name, inputs, output_filter=()):
        """Runs a signature on numpy inputs.

        Args:
          signature_name: signature key ('' means serving_default).
          inputs: `{input name: numpy array}`; names, dtypes and ranks must match the signature.
          output_filter: optional output names to return (all outputs when empty).

        Returns:
          `{output name: numpy array}`.

        Raises:
          ServingError: INVALID_ARGUMENT for requests that do not fit the signature, and the
            code of any TensorFlow error raised while running it (e.g. a failed assertion).
        """
        name = signature_name or DEFAULT_SIGNATURE
        signature = self._signature_def(name)
        expected, sent = set(signature.inputs), set(inputs)
        if expected != sent:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"inputs do not match signature '{name}': sent extra {sorted(sent - expected)}, "
                f"missing but required {sorted(expected - sent)}",
            )
        unknown_outputs = sorted(set(output_filter) - set(signature.outputs))
        if unknown_outputs:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature '{name}': {unknown_outputs}; "
                f"outputs are {sorted(signature.outputs)}",
            )
        tensors = {key: _to_tensor(key, value, signature.inputs[key]) for key, value in inputs.items()}
        try:
            outputs = self._functions[name](**tensors)
        except tf.errors.OpError as err:
            raise ServingError(CODE_NAMES[err.error_code], op_error_message(err)) from None
        keep = set(output_filter) or set(signature.outputs)
        return {key: value.numpy() for key, value in outputs.items() if key in keep}


# Lines of eager-mode error text that only locate the failing graph node.
_NODE_LINE = re.compile(r"^\s*(\[\[\{\{.*\}\}\]\].*|Graph execution error:|Detected at node .*|<stack traces unavailable>)$")


def op_error_message(error):
    """The message of a TensorFlow error without the graph-node locations around it."""
    lines = [line for line in error.message.splitlines() if line.strip() and not _NODE_LINE.match(line)]
    return " ".join(line.strip() for line in lines) or error.message


def _numpy_dtype(dtype_enum):
    return NUMPY_DTYPES.get(types_pb2.DataType.Name(dtype_enum), np.dtype(object))


def _to_tensor(name, value, tensor_info):
    """Checks a numpy input against its TensorInfo and converts it to a tensor."""
    value = np.asarray(value)
    expected = _numpy_dtype(tensor_info.dtype)
    if expected == np.dtype(object):
        if value.dtype != object and value.dtype.kind not in "SU":
            raise ServingError(
                "INVALID_ARGUMENT", f"input '{name}' must be string, got {value.dtype.name}"
            )
    elif value.dtype != expected:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input '{name}' must be {expected.name}, got {value.dtype.name}",
        )
    shape = tensor_info.tensor_shape
    if not shape.unknown_rank:
        dims = [dim.size for dim in shape.dim]
        if value.ndim != len(dims) or any(d >= 0 and d != v for d, v in zip(dims, value.shape)):
            pretty = [d if d >= 0 else None for d in dims]
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input '{name}' has shape {list(value.shape)}, the signature expects {pretty}",
            )
    return tf.constant(value, dtype=tf.as_dtype(tensor_info.dtype))


class ModelRepository:
    """Serves the newest version under `base_path` and polls for newer ones.

    Args:
      base_path: folder with numeric version sub-folders (e.g. `models/tfgcrf`).
      name: model name clients use in requests.
      poll_seconds: how often to look for a new version (TF Serving's
        `--file_system_poll_wait_seconds`); 0 disables polling.
    """

    def __init__(self, base_path, name, poll_seconds=1.0):
        self.base_path = os.path.abspath(base_path)
        self.name = name
        self.poll_seconds = poll_seconds
        self._servable = None
        self._failed = {}  # version -> error message of a version that did not load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def refresh(self):
        """Loads the newest version if it is newer than the served one; returns the served version."""
        versions = list_versions(self.base_path)
        current = self._servable.version if self._servable else None
        newer = [v for v in versions if (current is None or v > current) and v not in self._failed]
        if newer:
            version = newer[-1]
            try:
                servable = Servable(version, os.path.join(self.base_path, str(version)))
            except Exception as err:  # a broken version must not stop the server
                self._failed[version] = f"{type(err).__name__}: {err}"
                log.error("could not load %s version %d: %s", self.name, version, err)
            else:
                with self._lock:
                    self._servable = servable
                log.info("serving %s version %d", self.name, version)
        return self._servable.version if self._servable else None

    def start_polling(self):
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def servable(self, name, version=None):
        """The servable for a request's model name and optional version number.

        Raises:
          ServingError: NOT_FOUND for another model name, an unloaded version, or no version yet.
        """
        with self._lock:
            servable = self._servable
        wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        if name != self.name or servable is None or version not in (None, servable.version):
            raise ServingError("NOT_FOUND", f"Servable not found for request: {wanted}")
        return servable

    def status(self):
        """`[(version, state, error message)]` in TF Serving's GetModelStatus terms."""
        with self._lock:
            servable = self._servable
        states = [(version, "END", message) for version, message in sorted(self._failed.items())]
        if servable is not None:
            states.append((servable.version, "AVAILABLE", ""))
        return states
