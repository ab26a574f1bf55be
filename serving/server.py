"""A local server with TF Serving's gRPC and REST APIs, for development and tests.

gRPC: `tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`) and
`tensorflow.serving.ModelService.GetModelStatus`; other methods answer UNIMPLEMENTED.
REST: `POST /v1/models/NAME[/versions/N]:predict`, `GET /v1/models/NAME[/versions/N]` (status)
and `GET /v1/models/NAME[/versions/N]/metadata`, with TF Serving's JSON formats and HTTP codes.
Production uses TF Serving itself; this exists so that the client and the signature contract are
tested end to end here, and it holds under hostile traffic as TF Serving does: request costs are
bounded before work starts (`limits`), work stops when the client stops waiting (`cancellation`),
versions load as TF Serving loads them (`repository`), and REST runs on waitress (docs/design.md,
"Serving").
"""

import json
import logging
import os
import re
import threading
import time
from concurrent import futures
from http import HTTPStatus

import grpc
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfgcrf.serving.cancellation import RequestScope
from tfgcrf.serving.json_codec import JsonTensorError, format_predict_response, parse_predict_request
from tfgcrf.serving.limits import (
    BatchingParameters,
    WorkQueue,
    check_arrays,
    check_tensor_proto,
    monotonic_deadline,
)
from tfgcrf.serving.repository import (
    DEFAULT_LOAD_RETRY_INTERVAL_SECONDS,
    DEFAULT_MAX_NUM_LOAD_RETRIES,
    ModelRepository,
    op_error_message,
)
from tfgcrf.serving.status import CODE_NAMES, HTTP_STATUS, MAX_GRPC_MESSAGE_BYTES, ServingError
from tfgcrf.waitress_errors import answer_in_json, stop_listening
from tfgcrf.waitress_errors import stop as waitress_stop

SIGNATURE_DEF_FIELD = "signature_def"
# Seconds the requests running when the server stops get to finish (`ModelServer.stop`).
DEFAULT_STOP_GRACE_SECONDS = 5.0
# After the grace: seconds the cancelled requests get to send their UNAVAILABLE answers.
_CANCEL_SECONDS = 2.0
# REST request bodies: enough for a few full-size images as base64 JSON.
DEFAULT_REST_MAX_BODY_BYTES = 64 * 1024 * 1024

log = logging.getLogger(__name__)


def _requested_version(model_spec):
    if model_spec.version_label:
        raise ServingError(
            "NOT_FOUND", f"version label '{model_spec.version_label}' is not defined for this server"
        )
    return model_spec.version.value if model_spec.HasField("version") else None


def model_metadata(repository, model_spec, metadata_fields):
    """GetModelMetadataResponse for a request's model spec (shared by gRPC and REST)."""
    if not metadata_fields:
        raise ServingError(
            "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field"
        )
    unsupported = sorted(set(metadata_fields) - {SIGNATURE_DEF_FIELD})
    if unsupported:
        raise ServingError("INVALID_ARGUMENT", f"Metadata field(s) {unsupported} are not supported")
    servable = repository.servable(model_spec.name, _requested_version(model_spec))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = repository.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


def model_status(repository, model_spec):
    """GetModelStatusResponse for a request's model spec (shared by gRPC and REST)."""
    if model_spec.name != repository.name:
        raise ServingError("NOT_FOUND", f"Could not find any versions of model {model_spec.name}")
    wanted = _requested_version(model_spec)
    states = [s for s in repository.status() if wanted is None or s[0] == wanted]
    if not states:
        raise ServingError(
            "NOT_FOUND", f"Could not find version {wanted} of model {model_spec.name}"
        )
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, message in states:
        entry = response.model_version_status.add()
        entry.version = version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        entry.status.error_code = 2 if message else 0  # UNKNOWN for a failed load
        entry.status.error_message = message
    return response


def _abort(context, error):
    context.abort(getattr(grpc.StatusCode, error.code), error.message)


def _guarded(call):
    """Runs `call()`; any exception becomes a ServingError with its canonical code."""
    try:
        return call()
    except ServingError:
        raise
    except MemoryError:
        raise ServingError("RESOURCE_EXHAUSTED", "the server ran out of memory for this request") from None
    except RecursionError:
        raise ServingError("INVALID_ARGUMENT", "the request is nested too deeply") from None
    except tf.errors.OpError as err:
        raise ServingError(CODE_NAMES[err.error_code], op_error_message(err)) from None
    except Exception as err:  # one bad request must never take the server down
        log.exception("internal error")
        raise ServingError("INTERNAL", f"internal error: {type(err).__name__}: {err}") from None


class Predictor:
    """The Predict path shared by gRPC and REST: limits, work queue and cancellation.

    Args:
      repository: the `ModelRepository`.
      batching: `BatchingParameters` (max batch per request, running and waiting requests).
    """

    def __init__(self, repository, batching):
        self.repository = repository
        self.batching = batching
        self.queue = WorkQueue(batching)
        # Set when the server starts to stop: new requests are refused with UNAVAILABLE.
        self.draining = threading.Event()
        # Set when the stop's grace is over: running and waiting requests are cancelled (their
        # `RequestScope`s watch it) and answered UNAVAILABLE.
        self.stopping = threading.Event()

    def scope(self, deadline, disconnected):
        """The `RequestScope` of a request: its deadline, its client's disconnect, the stop."""
        return RequestScope(deadline, disconnected, self.stopping)

    def run(self, work, scope):
        """Runs `work()` (a request's conversion, signature and response) in a work slot.

        The slot is taken before inputs are converted, so the memory of concurrent requests
        (a JSON body becomes many Python objects) is bounded by the queue as well.
        """
        if self.draining.is_set():
            raise ServingError("UNAVAILABLE", "the server is stopping: send the request to another one")
        scope.check("before the request was queued")
        with self.queue.slot(scope):
            scope.check("while the request waited in the queue")
            return work()

    def predict(self, servable, signature_name, inputs, output_filter, scope):
        """Runs one request's signature (call inside `run`).

        Args:
          servable: the `Servable` that answers.
          signature_name: signature key ('' = serving_default).
          inputs: `{name: numpy array}`, sizes already checked.
          output_filter: output names to return (all when empty).
          scope: the request's `RequestScope` (deadline, disconnect).

        Returns:
          `{output name: numpy array}`.
        """
        check_arrays(inputs, self.batching.max_batch_size)
        return servable.predict(signature_name, inputs, output_filter, scope=scope)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `Predictor`."""

    def __init__(self, predictor):
        self._predictor = predictor
        self._repository = predictor.repository

    def Predict(self, request, context):
        remaining = context.time_remaining()
        scope = self._predictor.scope(monotonic_deadline(remaining), lambda: not context.is_active())
        try:
            return _guarded(lambda: self._predict(request, scope))
        except ServingError as err:
            _abort(context, err)

    def _predict(self, request, scope):
        spec = request.model_spec
        servable = self._repository.servable(spec.name, _requested_version(spec))
        max_batch = self._predictor.batching.max_batch_size
        for key, proto in request.inputs.items():
            check_tensor_proto(key, proto, max_batch)
        return self._predictor.run(lambda: self._run(request, servable, scope), scope)

    def _run(self, request, servable, scope):
        spec = request.model_spec
        try:
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        except (TypeError, ValueError) as err:
            raise ServingError("INVALID_ARGUMENT", f"malformed TensorProto: {err}") from None
        outputs = self._predictor.predict(
            servable, spec.signature_name, inputs, list(request.output_filter), scope
        )
        scope.check("before the response was built")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._repository.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        size = response.ByteSize()
        if size > MAX_GRPC_MESSAGE_BYTES:
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"the response has {size} bytes, more than gRPC's {MAX_GRPC_MESSAGE_BYTES}: "
                "send fewer or smaller images per request",
            )
        return response

    def GetModelMetadata(self, request, context):
        try:
            return _guarded(
                lambda: model_metadata(self._repository, request.model_spec, list(request.metadata_field))
            )
        except ServingError as err:
            _abort(context, err)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService.GetModelStatus` over a `ModelRepository`."""

    def __init__(self, repository):
        self._repository = repository

    def GetModelStatus(self, request, context):
        try:
            return _guarded(lambda: model_status(self._repository, request.model_spec))
        except ServingError as err:
            _abort(context, err)


# TF Serving's routes; versions are ASCII digits (re.ASCII: `\d` would take '²' too).
_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(\w+)", re.ASCII)
_MODEL_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?", re.ASCII)
_INT64_MAX = 2**63 - 1


def _version_number(text):
    if text is None:
        return None
    if int(text) > _INT64_MAX:
        raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {text} is not an int64")
    return int(text)


def _model_spec(name, version):
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    return spec


def _reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 499, TF Serving's status for CANCELLED, is not a standard code
        return "Client Closed Request"


def _json_response(start_response, status, body):
    payload = json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {_reason(status)}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


class RestApplication:
    """TF Serving's REST API as a WSGI application (served by waitress).

    The HTTP layer (keep-alive, chunked bodies, body and header size limits, idle timeouts,
    slow clients) is waitress's; this class only routes, parses JSON and maps codes to HTTP
    statuses with TF Serving's table.

    Args:
      predictor: the `Predictor` shared with gRPC.
      timeout_seconds: a request's deadline (TF Serving's `--rest_api_timeout_in_ms`).
    """

    def __init__(self, predictor, timeout_seconds):
        self.predictor = predictor
        self.repository = predictor.repository
        self.timeout_seconds = timeout_seconds

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        scope = self.predictor.scope(
            monotonic_deadline(self.timeout_seconds), environ.get("waitress.client_disconnected")
        )
        try:
            if method == "POST":
                body = _guarded(lambda: self._post(path, environ, scope))
            elif method == "GET":
                body = _guarded(lambda: self._get(path))
            else:
                start_response("405 Method Not Allowed", [("Allow", "GET, POST"), ("Content-Length", "0")])
                return [b""]
            return _json_response(start_response, 200, body)
        except ServingError as err:
            return _json_response(start_response, HTTP_STATUS[err.code], {"error": err.message})

    def _post(self, path, environ, scope):
        # waitress has read the whole body (de-chunked, within max_request_body_size).
        raw_body = environ["wsgi.input"].read()
        match = _PREDICT_PATH.fullmatch(path)
        if not match:
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: POST {path}")
        name, version, method = match.groups()
        if method != "predict":
            raise ServingError("UNIMPLEMENTED", f"':{method}' is not implemented, only ':predict'")
        servable = self.repository.servable(name, _version_number(version))
        if not raw_body:
            raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
        return self.predictor.run(lambda: self._predict(raw_body, servable, scope), scope)

    def _predict(self, raw_body, servable, scope):
        try:
            body = json.loads(raw_body)
        except RecursionError:
            raise ServingError("INVALID_ARGUMENT", "JSON Parse error: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
        scope.check("while the request was parsed")
        try:
            signature, inputs, request_format = parse_predict_request(body, servable.input_dtypes)
            outputs = self.predictor.predict(servable, signature, inputs, (), scope)
            scope.check("before the response was built")
            return format_predict_response(outputs, request_format)
        except JsonTensorError as err:
            raise ServingError("INVALID_ARGUMENT", str(err)) from None

    def _get(self, path):
        match = _MODEL_PATH.fullmatch(path)
        if not match:
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: GET {path}")
        name, version, metadata = match.groups()
        spec = _model_spec(name, _version_number(version))
        if metadata:
            response = model_metadata(self.repository, spec, [SIGNATURE_DEF_FIELD])
        else:
            response = model_status(self.repository, spec)
        return json.loads(
            json_format.MessageToJson(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
        )


class ModelServer:
    """gRPC + REST server for one model; `start()` binds, `stop()` shuts down.

    Args:
      model_dir: model base path with numeric version folders.
      model_name: name clients use (default: the base path's folder name).
      host: interface to bind; loopback by default.
      grpc_port: gRPC port (0 picks a free one; read `grpc_port` after `start()`).
      rest_port: REST port (0 picks a free one), or None for no REST server.
      poll_seconds: how often to look for a new version.
      batching: `BatchingParameters` (default: `BatchingParameters()`).
      max_num_load_retries, load_retry_interval_seconds: see `ModelRepository`.
      rest_timeout_seconds: deadline of a REST request (TF Serving's `--rest_api_timeout_in_ms`).
      rest_num_threads: REST worker threads (TF Serving's `--rest_api_num_threads`, 4 per CPU).
      rest_max_body_bytes: largest REST request body; larger ones get HTTP 413.
      rest_max_connections: open REST connections at most; more wait in the listen backlog.
      rest_idle_seconds: an idle REST connection (incl. one sending nothing) is closed after this.
      stop_grace_seconds: how long `stop()` lets running requests finish before cancelling them.
    """

    def __init__(self, model_dir, model_name, host="127.0.0.1", grpc_port=8500, rest_port=8501,
                 poll_seconds=1.0, batching=None, max_num_load_retries=DEFAULT_MAX_NUM_LOAD_RETRIES,
                 load_retry_interval_seconds=DEFAULT_LOAD_RETRY_INTERVAL_SECONDS,
                 rest_timeout_seconds=30.0, rest_num_threads=None,
                 rest_max_body_bytes=DEFAULT_REST_MAX_BODY_BYTES, rest_max_connections=512,
                 rest_idle_seconds=30.0, stop_grace_seconds=DEFAULT_STOP_GRACE_SECONDS):
        self.repository = ModelRepository(
            model_dir, model_name, poll_seconds, max_num_load_retries=max_num_load_retries,
            load_retry_interval_seconds=load_retry_interval_seconds,
        )
        self.batching = batching or BatchingParameters()
        self.predictor = Predictor(self.repository, self.batching)
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.rest_timeout_seconds = rest_timeout_seconds
        self.rest_num_threads = rest_num_threads or 4 * (os.cpu_count() or 1)
        self.rest_max_body_bytes = rest_max_body_bytes
        self.rest_max_connections = rest_max_connections
        self.rest_idle_seconds = rest_idle_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self._grpc = None
        self._http = None
        self._http_map = None
        self._http_thread = None

    def start(self):
        self.repository.refresh()
        # Predict requests beyond the work queue are refused by the Predictor; the extra threads
        # keep metadata and status calls answered while the queue is full.
        workers = self.batching.num_batch_threads + self.batching.max_enqueued_batches + 4
        options = [
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(workers, thread_name_prefix="grpc-worker"),
            options=options,
            maximum_concurrent_rpcs=workers,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.predictor), self._grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.repository), self._grpc
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        bound = self._grpc.add_insecure_port(f"{host}:{self.grpc_port}")
        if not bound:
            raise OSError(f"could not bind gRPC to {host}:{self.grpc_port}")
        self.grpc_port = bound
        self._grpc.start()
        if self.rest_port is not None:
            self._start_rest()
        self.repository.start_polling()
        return self

    def _start_rest(self):
        import waitress.server

        self._http_map = {}
        self._http = waitress.server.create_server(
            RestApplication(self.predictor, self.rest_timeout_seconds),
            map=self._http_map,
            host=self.host,
            port=self.rest_port,
            threads=self.rest_num_threads,
            connection_limit=self.rest_max_connections,
            channel_timeout=self.rest_idle_seconds,
            # waitress refuses a body of its limit or more; the flag's value is the largest accepted.
            max_request_body_size=self.rest_max_body_bytes + 1,
            # One request read ahead per connection: waitress then notices a client that hangs
            # up while its request runs (`waitress.client_disconnected`).
            channel_request_lookahead=1,
            ident="tfgcrf",
            clear_untrusted_proxy_headers=True,
        )
        # Its refusals (413 above, malformed HTTP) in TF Serving's error JSON, not waitress's text.
        answer_in_json(
            self._http_map,
            f"the request body is larger than this server's limit of {self.rest_max_body_bytes} "
            "bytes (--rest-max-body-bytes): send fewer or smaller images per request, or use gRPC",
        )
        self.rest_port = int(self._http.effective_port)
        self._http_thread = threading.Thread(target=self._http.run, name="rest-server", daemon=True)
        self._http_thread.start()

    def _stop_rest(self):
        logging.getLogger("waitress").setLevel(logging.CRITICAL)
        waitress_stop(self._http_map, self._http.task_dispatcher, self._http_thread)
        self._http = self._http_map = self._http_thread = None

    def stop(self, grace=None):
        """Stops: new requests are refused (UNAVAILABLE; no new connections), the running and
        waiting ones get `grace` seconds (default `stop_grace_seconds`) to finish, then they are
        cancelled and answered UNAVAILABLE (a kernel that is running finishes first: at most a
        few more seconds, then the connections are closed anyway). A version being loaded is
        not waited for."""
        grace = self.stop_grace_seconds if grace is None else grace
        self.predictor.draining.set()
        grpc_stopped = self._grpc.stop(grace + _CANCEL_SECONDS) if self._grpc is not None else None
        if self._http is not None:
            stop_listening(self._http_map, self._http_thread)
        self._wait_for_requests(grace)
        self.predictor.stopping.set()
        self._wait_for_requests(_CANCEL_SECONDS)
        if self._http is not None:
            self._stop_rest()
        if grpc_stopped is not None:
            grpc_stopped.wait()
            self._grpc = None
        self.repository.stop(timeout=_CANCEL_SECONDS)

    def _wait_for_requests(self, seconds):
        """Waits until no request runs or waits in the work queue, or `seconds` passed."""
        deadline = time.monotonic() + seconds
        while self.predictor.queue.load != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait(self):
        self._grpc.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
