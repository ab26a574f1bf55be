"""Loads the newest SavedModel version of a model base path and runs its signatures.

This mirrors TF Serving's default behaviour for one model: the base path holds numeric version
folders; the newest complete one (it has `saved_model.pb`) is served, and a newer one is picked
up by polling without a restart (`latest` version policy with one version: the old version is
dropped once the new one has loaded; requests already running on it finish normally). A version
that fails to load is retried as TF Serving does (`--max_num_load_retries` times,
`--load_retry_interval_micros` apart) and again whenever its files change, while the current
version keeps serving. Folder names that are not plain ASCII int64 numbers are ignored.
"""

import logging
import os
import re
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2, saved_model_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.python.eager import context as _tf_context

from tfgcrf.export import WARMUP_FILE
from tfgcrf.serving.json_codec import NUMPY_DTYPES
from tfgcrf.serving.status import CODE_NAMES, ServingError

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"

log = logging.getLogger(__name__)


# TF Serving's defaults for `--max_num_load_retries` and `--load_retry_interval_micros`.
DEFAULT_MAX_NUM_LOAD_RETRIES = 5
DEFAULT_LOAD_RETRY_INTERVAL_SECONDS = 60.0
INT64_MAX = 2**63 - 1


def parse_version(name):
    """The version number of a folder name: plain ASCII digits within int64, else None.

    `str.isdigit` alone would take '²' or '٣' (other Unicode digits), and Python integers would
    take numbers that overflow the int64 version of TF Serving's protocol.
    """
    if not (name.isascii() and name.isdigit()):
        return None
    version = int(name)
    return version if version <= INT64_MAX else None


def list_versions(base_path, ignored=None):
    """Sorted version numbers of `base_path`'s folders that contain `saved_model.pb`.

    Args:
      base_path: the model base path.
      ignored: optional set; names of sub-folders that are not versions (see `parse_version`)
        are added to it. Hidden names (a leading '.', e.g. export staging folders) are skipped
        silently.
    """
    try:
        entries = os.listdir(base_path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    versions = []
    for entry in entries:
        version = parse_version(entry)
        if version is None:
            if ignored is not None and not entry.startswith(".") and os.path.isdir(os.path.join(base_path, entry)):
                ignored.add(entry)
        elif os.path.isfile(os.path.join(base_path, entry, "saved_model.pb")):
            versions.append(version)
    return sorted(versions)


def folder_fingerprint(path):
    """(relative path, size, mtime) of every file under `path`: changes while a copy goes on."""
    files = []
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            files.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


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


def without_memory_rewrites(function):
    """`function` (a loaded signature) called with Grappler's memory optimizer off.

    Its scheduling pass turns an AddN of 3 or more tensors (often one Grappler's arithmetic
    optimizer made of a chain of adds) into a TemporaryVariable when a graph's static memory
    estimate is large (above 80 % of the CPU device's 256 MB). An eager call aborted while that
    variable lives (a refused request, or one cancelled at its deadline) leaves it in the
    per-step container that every later call reuses: the signature then fails with
    ALREADY_EXISTS until restart (session 13: the default preset's edit). The models' own graphs
    avoid it (tests/export: no served graph of the default preset holds one); this keeps any
    export served here (a model of one's own, a later change) safe from it.

    The setting goes into the calling thread's function-call config, the `config_proto`
    TensorFlow optimizes the function's graph with: the signature's graph under this setting is
    made at its first call (the warm-up).
    """

    def call(**kwargs):
        context = _tf_context.context()
        saved = context.function_call_options
        config = config_pb2.ConfigProto.FromString(saved.config_proto_serialized)
        config.graph_options.rewrite_options.memory_optimization = (
            rewriter_config_pb2.RewriterConfig.NO_MEM_OPT)
        context.function_call_options = _tf_context.FunctionCallOptions(
            executor_type=saved.executor_type, config_proto=config)
        try:
            return function(**kwargs)
        finally:
            context.function_call_options = saved

    return call


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
        self._functions = {name: without_memory_rewrites(function)
                           for name, function in self._loaded.signatures.items()}
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
                f"(available: {', '.join(sorted(self._functions))})",
            )
        return self.signature_defs[name]

    def predict(self, signature_name, inputs, output_filter=(), scope=None):
        """Runs a signature on numpy inputs.

        Args:
          signature_name: signature key ('' means serving_default).
          inputs: `{input name: numpy array}`; names, dtypes and ranks must match the signature.
          output_filter: optional output names to return (all outputs when empty).
          scope: optional `RequestScope`: the run is cancelled when its client stops waiting
            (DEADLINE_EXCEEDED or CANCELLED).

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
            if scope is None:
                outputs = self._functions[name](**tensors)
            else:
                outputs = scope.run(self._functions[name], **tensors)
        except tf.errors.OpError as err:
            raise ServingError(CODE_NAMES[err.error_code], op_error_message(err)) from None
        keep = set(output_filter) or set(signature.outputs)
        return {key: value.numpy() for key, value in outputs.items() if key in keep}


# Lines of eager-mode error text that only locate the failing graph node.
_NODE_LINE = re.compile(r"^\s*(\[\[\{\{.*\}\}\]\].*|Graph execution error:|Detected at node .*|<stack traces unavailable>)$")


def op_error_message(error):
    """The message of a TensorFlow error without the graph-node locations around it.

    A `tf.debugging.Assert` of the exported signatures reads `assertion failed: [message]
    [values]`; it is given as `message values` (`points must be ... in [0, 1]; got [1.5 0.4]`).
    """
    lines = [line for line in error.message.splitlines() if line.strip() and not _NODE_LINE.match(line)]
    text = " ".join(line.strip() for line in lines) or error.message
    return _assertion_text(text)


_ASSERTION = "assertion failed: "


def _assertion_text(text):
    """`... assertion failed: [a] [[1 2]]` -> `a [1 2]` (the bracketed data, outer brackets off)."""
    start = text.find(_ASSERTION)
    if start < 0:
        return text
    body = text[start + len(_ASSERTION):]
    pieces, depth, opened = [], 0, 0
    for index, char in enumerate(body):
        if char == "[":
            opened = index + 1 if depth == 0 else opened
            depth += 1
        elif char == "]" and depth:
            depth -= 1
            if depth == 0:
                pieces.append(body[opened:index])
    return " ".join(" ".join(pieces).split()) or text


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


class _LoadFailure:
    """A version that failed to load: attempts so far, when, on which folder contents."""

    def __init__(self, fingerprint):
        self.fingerprint = fingerprint
        self.attempts = 0
        self.last_attempt = 0.0
        self.message = ""


class ModelRepository:
    """Serves the newest version under `base_path` and polls for newer ones.

    Version folders are named by plain ASCII int64 numbers; other sub-folders are ignored with one
    log line each. A version that fails to load (e.g. seen while it is still being copied) is
    tried again up to `max_num_load_retries` times, `load_retry_interval_seconds` apart, as TF
    Serving does; its retries start over whenever the folder's files change, so a version
    completed later is served. Meanwhile the newest version that does load is served. The poller
    logs and survives any error.

    Args:
      base_path: folder with numeric version sub-folders (e.g. `models/tfgcrf`).
      name: model name clients use in requests.
      poll_seconds: how often to look for a new version (TF Serving's
        `--file_system_poll_wait_seconds`); 0 disables polling.
      max_num_load_retries: retries after a failed load (TF Serving's `--max_num_load_retries`).
      load_retry_interval_seconds: wait between two load attempts of a version (TF Serving's
        `--load_retry_interval_micros`, in seconds).
    """

    def __init__(self, base_path, name, poll_seconds=1.0,
                 max_num_load_retries=DEFAULT_MAX_NUM_LOAD_RETRIES,
                 load_retry_interval_seconds=DEFAULT_LOAD_RETRY_INTERVAL_SECONDS):
        self.base_path = os.path.abspath(base_path)
        self.name = name
        self.poll_seconds = poll_seconds
        self.max_num_load_retries = max_num_load_retries
        self.load_retry_interval_seconds = load_retry_interval_seconds
        self._servable = None
        self._failures = {}  # version -> _LoadFailure
        self._ignored = set()  # folder names already reported as not versions
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def refresh(self):
        """Loads the newest version if it is newer than the served one; returns the served version."""
        with self._refresh_lock:
            try:
                self._refresh()
            except Exception:  # the poller must survive anything the file system does
                log.exception("could not look for new versions of %s in %s", self.name, self.base_path)
        servable = self._servable
        return servable.version if servable else None

    def _refresh(self):
        ignored = set()
        versions = list_versions(self.base_path, ignored)
        for entry in sorted(ignored - self._ignored):
            log.warning("ignoring %s: a version folder name must be an integer in 0..%d",
                        os.path.join(self.base_path, entry), INT64_MAX)
        self._ignored |= ignored
        current = self._servable.version if self._servable else None
        for version in reversed(versions):
            if current is not None and version <= current:
                return
            if self._try_load(version):
                return

    def _try_load(self, version):
        """Loads `version` unless it failed before and may not be retried yet.

        Returns True when it is served now; otherwise an older version may be tried (the newest
        version that loads is served while a newer one waits for its retry).
        """
        path = os.path.join(self.base_path, str(version))
        failure = self._failures.get(version)
        if failure is not None:
            fingerprint = folder_fingerprint(path)
            if fingerprint != failure.fingerprint:
                log.info("%s version %d changed since it failed to load: loading it again",
                         self.name, version)
                del self._failures[version]
                failure = None
            elif failure.attempts > self.max_num_load_retries:
                return False
            elif time.monotonic() - failure.last_attempt < self.load_retry_interval_seconds:
                return False
        fingerprint = folder_fingerprint(path)
        # The load and the warm-up requests take minutes for the default preset on a busy CPU.
        log.info("loading %s version %d from %s and replaying its warm-up requests ...",
                 self.name, version, path)
        try:
            servable = Servable(version, path)
        except Exception as err:  # a broken version must not stop the server
            if failure is None:
                failure = self._failures[version] = _LoadFailure(fingerprint)
            failure.fingerprint = fingerprint
            failure.attempts += 1
            failure.last_attempt = time.monotonic()
            failure.message = f"{type(err).__name__}: {op_error_message(err) if isinstance(err, tf.errors.OpError) else err}"
            retries_left = self.max_num_load_retries + 1 - failure.attempts
            log.error("could not load %s version %d (attempt %d, %s): %s", self.name, version,
                      failure.attempts,
                      f"retrying in {self.load_retry_interval_seconds:g} s" if retries_left > 0
                      else "giving up until its files change", failure.message)
            return False
        with self._lock:
            self._servable = servable
        self._failures.pop(version, None)
        log.info("serving %s version %d", self.name, version)
        return True

    def start_polling(self):
        if self.poll_seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="version-poller", daemon=True)
            self._thread.start()

    def stop(self, timeout=None):
        """Stops polling; waits at most `timeout` seconds (None: no limit) for a load under way
        (the poller is a daemon thread: a process may exit during a load)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
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
        """`[(version, state, error message)]` in TF Serving's GetModelStatus terms.

        A version that failed and will be retried is LOADING; one that gave up is END.
        """
        with self._lock:
            servable = self._servable
        states = [
            (version, "END" if failure.attempts > self.max_num_load_retries else "LOADING", failure.message)
            for version, failure in sorted(self._failures.items())
        ]
        if servable is not None:
            states.append((servable.version, "AVAILABLE", ""))
        return sorted(states)
