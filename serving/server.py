"""A local server with TF Serving's gRPC and REST APIs, for development and tests.

gRPC: `tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`) and
`tensorflow.serving.ModelService.GetModelStatus`; other methods answer UNIMPLEMENTED.
REST: `POST /v1/models/NAME[/versions/N]:predict`, `GET /v1/models/NAME[/versions/N]` (status)
and `GET /v1/models/NAME[/versions/N]/metadata`, with TF Serving's JSON formats and HTTP codes.
Production uses TF Serving itself; this exists so that the client and the signature contract are
tested end to end here.
"""

import json
import logging
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

from tfgcrf.serving.json_codec import JsonTensorError, format_predict_response, parse_predict_request
from tfgcrf.serving.repository import ModelRepository
from tfgcrf.serving.status import HTTP_STATUS, ServingError

SIGNATURE_DEF_FIELD = "signature_def"
# Images travel inside messages: allow far more than gRPC's default 4 MiB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

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


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `ModelRepository`."""

    def __init__(self, repository):
        self._repository = repository

    def Predict(self, request, context):
        try:
            spec = request.model_spec
            servable = self._repository.servable(spec.name, _requested_version(spec))
            try:
                inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            except (TypeError, ValueError) as err:
                raise ServingError("INVALID_ARGUMENT", f"malformed TensorProto: {err}") from None
            outputs = servable.predict(spec.signature_name, inputs, list(request.output_filter))
        except ServingError as err:
            _abort(context, err)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._repository.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        try:
            return model_metadata(self._repository, request.model_spec, list(request.metadata_field))
        except ServingError as err:
            _abort(context, err)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService.GetModelStatus` over a `ModelRepository`."""

    def __init__(self, repository):
        self._repository = repository

    def GetModelStatus(self, request, context):
        try:
            return model_status(self._repository, request.model_spec)
        except ServingError as err:
            _abort(context, err)


_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(\w+)")
_MODEL_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?")


def _model_spec(name, version):
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = int(version)
    return spec


class _RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST routes; `server.repository` is the ModelRepository."""

    protocol_version = "HTTP/1.1"
    max_body_bytes = MAX_MESSAGE_BYTES

    def do_POST(self):
        self._respond(self._post)

    def do_GET(self):
        self._respond(self._get)

    def _post(self):
        # Read the body first: on a kept-alive connection an unread body would be taken for the
        # next request.
        raw_body = self._read_body()
        match = _PREDICT_PATH.fullmatch(self.path)
        if not match:
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: POST {self.path}")
        name, version, method = match.groups()
        if method != "predict":
            raise ServingError("UNIMPLEMENTED", f"':{method}' is not implemented, only ':predict'")
        servable = self.server.repository.servable(name, int(version) if version else None)
        try:
            body = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError) as err:
            raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
        try:
            signature, inputs, request_format = parse_predict_request(body, servable.input_dtypes)
            outputs = servable.predict(signature, inputs)
            return format_predict_response(outputs, request_format)
        except JsonTensorError as err:
            raise ServingError("INVALID_ARGUMENT", str(err)) from None

    def _get(self):
        match = _MODEL_PATH.fullmatch(self.path)
        if not match:
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: GET {self.path}")
        name, version, metadata = match.groups()
        spec = _model_spec(name, version)
        if metadata:
            response = model_metadata(self.server.repository, spec, [SIGNATURE_DEF_FIELD])
        else:
            response = model_status(self.server.repository, spec)
        return json.loads(
            json_format.MessageToJson(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
        )

    def _read_body(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.max_body_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise ServingError(
                "INVALID_ARGUMENT",
                f"request body must have a Content-Length of at most {self.max_body_bytes} bytes",
            )
        if length == 0:
            raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
        return self.rfile.read(length)

    def _respond(self, handler):
        try:
            status, body = 200, handler()
        except ServingError as err:
            status, body = HTTP_STATUS[err.code], {"error": err.message}
        except Exception as err:  # one bad request must never take the server down
            log.exception("internal error on %s %s", self.command, self.path)
            status, body = 500, {"error": f"internal error: {type(err).__name__}: {err}"}
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s " + format, self.address_string(), *args)


class ModelServer:
    """gRPC + REST server for one model; `start()` binds, `stop()` shuts down.

    Args:
      model_dir: model base path with numeric version folders.
      model_name: name clients use (default: the base path's folder name).
      host: interface to bind; loopback by default.
      grpc_port: gRPC port (0 picks a free one; read `grpc_port` after `start()`).
      rest_port: REST port (0 picks a free one), or None for no REST server.
      poll_seconds: how often to look for a new version.
      max_workers: gRPC worker threads.
    """

    def __init__(self, model_dir, model_name, host="127.0.0.1", grpc_port=8500, rest_port=8501,
                 poll_seconds=1.0, max_workers=8):
        self.repository = ModelRepository(model_dir, model_name, poll_seconds)
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self._max_workers = max_workers
        self._grpc = None
        self._http = None
        self._http_thread = None

    def start(self):
        self.repository.refresh()
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(self._max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.repository), self._grpc
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
            self._http = ThreadingHTTPServer((self.host, self.rest_port), _RestHandler)
            self._http.daemon_threads = True
            self._http.repository = self.repository
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(
                target=self._http.serve_forever, name="rest-server", daemon=True
            )
            self._http_thread.start()
        self.repository.start_polling()
        return self

    def stop(self, grace=1.0):
        self.repository.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http_thread.join()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None

    def wait(self):
        self._grpc.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
