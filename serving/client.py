"""Python client for the exported model behind TF Serving (or `tfgcrf serve`), over gRPC or REST.

    client = Client("localhost:8500")              # gRPC PredictionService
    client = Client("http://localhost:8501")       # REST :predict with JSON + b64
    result = client.sample(open("photo.jpg", "rb").read(), seed=3)
    result.images[0]   # PNG bytes of the best sample, at the input size
    png = client.edit(image_bytes, points=[(0.5, 0.4)], colors=[(200, 30, 30)], from_sample=0)

Calls have a deadline (`timeout` seconds) and are retried with exponential back-off only when
the server is unreachable (gRPC UNAVAILABLE; for REST a refused/reset connection or HTTP 503),
never after an answer such as INVALID_ARGUMENT. Errors raise `ServingError` with the canonical
code. The REST transport needs only the standard library and numpy; gRPC loads TensorFlow for
its TensorProto conversion.
"""

import collections
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from tfgcrf.errors import InputError
from tfgcrf.serving.json_codec import (
    NUMPY_DTYPES,
    JsonTensorError,
    format_columnar_request,
    parse_columnar_response,
)
from tfgcrf.serving.status import MAX_GRPC_MESSAGE_BYTES, ServingError, code_for_http_status

DEFAULT_MODEL_NAME = "tfgcrf"
SAMPLE_SIGNATURE = "sample"
EDIT_SIGNATURE = "edit"
EDIT_LINKS_SIGNATURE = "edit_links"

SampleResult = collections.namedtuple("SampleResult", ["images", "scores"])
SampleResult.__doc__ = """Output of `Client.sample`: `images` is a list of N PNG byte strings
(best first, input size) and `scores` a float32 array [N] of their mixture weights."""


class _GrpcTransport:
    """PredictionService over one channel (thread-safe; shared by all calls of a Client)."""

    def __init__(self, target):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import (
            get_model_metadata_pb2,
            predict_pb2,
            prediction_service_pb2_grpc,
        )

        self._grpc, self._tf = grpc, tf
        self._predict_pb2, self._metadata_pb2 = predict_pb2, get_model_metadata_pb2
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, model_spec, signature_name, inputs, timeout):
        request = self._predict_pb2.PredictRequest()
        _fill_spec(request.model_spec, model_spec)
        request.model_spec.signature_name = signature_name
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(self._tf.make_tensor_proto(value))
        response = self._call(self._stub.Predict, request, timeout)
        return {name: self._tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def metadata(self, model_spec, timeout):
        from google.protobuf import json_format

        request = self._metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _fill_spec(request.model_spec, model_spec)
        response = self._call(self._stub.GetModelMetadata, request, timeout)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=timeout)
        except self._grpc.RpcError as err:
            raise ServingError(err.code().name, err.details() or err.code().name) from None

    def close(self):
        self._channel.close()


def _fill_spec(proto, model_spec):
    proto.name = model_spec[0]
    if model_spec[1] is not None:
        proto.version.value = model_spec[1]


class _RestTransport:
    """TF Serving REST API with the standard library (a new connection per call)."""

    def __init__(self, base_url):
        self._base_url = base_url.rstrip("/")
        self._output_dtypes = {}

    def _model_url(self, model_spec):
        name, version = model_spec
        url = f"{self._base_url}/v1/models/{name}"
        return url if version is None else f"{url}/versions/{version}"

    def predict(self, model_spec, signature_name, inputs, timeout):
        key = (model_spec, signature_name)
        if key not in self._output_dtypes:
            signatures = _signature_defs(self.metadata(model_spec, timeout))
            if signature_name not in signatures:
                raise ServingError(
                    "INVALID_ARGUMENT", f'Serving signature name: "{signature_name}" not found'
                )
            self._output_dtypes[key] = _tensor_dtypes(signatures[signature_name]["outputs"])
        body = json.dumps(format_columnar_request(signature_name, inputs)).encode("utf-8")
        response = self._request(self._model_url(model_spec) + ":predict", body, timeout)
        try:
            return parse_columnar_response(response, self._output_dtypes[key])
        except JsonTensorError as err:
            raise ServingError("INTERNAL", f"unexpected response: {err}") from None

    def metadata(self, model_spec, timeout):
        return self._request(self._model_url(model_spec) + "/metadata", None, timeout)

    def _request(self, url, body, timeout):
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"} if body else {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise ServingError(code_for_http_status(err.code), _error_message(err)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise ServingError(
                    "DEADLINE_EXCEEDED", f"no answer from {url} within {timeout} s"
                ) from None
            # Refused or dropped connections: the server is (temporarily) unreachable.
            raise ServingError("UNAVAILABLE", f"cannot reach {url}: {reason}") from None

    def close(self):
        pass


def _error_message(http_error):
    try:
        return json.loads(http_error.read())["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {http_error.code} {http_error.reason}"


def _signature_defs(metadata):
    """`{signature name: SignatureDef dict}` from a GetModelMetadataResponse dict."""
    return metadata["metadata"]["signature_def"]["signature_def"]


def _tensor_dtypes(tensor_infos):
    return {name: NUMPY_DTYPES[info["dtype"]] for name, info in tensor_infos.items()}


_GRPC_NAME_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:")


def parse_target(target):
    """`Client`'s target -> ("grpc" | "rest", target), or `InputError` before anything is dialed.

    Accepted: `host:port` (gRPC; also gRPC's own name syntax `dns:`, `unix:`, `ipv4:`, `ipv6:`,
    passed to gRPC as is) and `http://host[:port]` / `https://host[:port]` (REST, without a path,
    query or fragment). Refused with one line: no port, a port outside 1..65535 (gRPC would dial
    it modulo 65536), a port that is not a number, another URL scheme (`grpc://`, `ftp://`).
    """
    usage = "target must be 'host:port' (gRPC) or 'http://host:port' (REST)"
    if not isinstance(target, str) or not target.strip():
        raise InputError(f"{usage}, got {target!r}")
    if target.startswith(_GRPC_NAME_SCHEMES):
        return "grpc", target
    scheme = target.split("://", 1)[0].lower() if "://" in target else None
    if scheme not in (None, "http", "https"):
        hint = f"; for gRPC give 'host:port' without '{scheme}://'" if scheme == "grpc" else ""
        raise InputError(f"{usage}, got {target!r}{hint}")
    parts = urllib.parse.urlsplit(target if scheme else "//" + target)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname
    if not host or any(c.isspace() for c in target) or port == -1 or port == 0:
        raise InputError(f"{usage} with a port in 1..65535, got {target!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"{usage} without a path, query or fragment, got {target!r}")
    if scheme:
        return "rest", target.rstrip("/")
    if port is None:
        raise InputError(f"{usage}: {target!r} has no port (TF Serving's gRPC port is 8500 by default)")
    return "grpc", target


class Client:
    """Calls the exported `sample` and `edit` signatures over gRPC or REST.

    Args:
      target: `host:port` of a gRPC server, or `http://host:port` (or https) of a REST server.
      model_name: the served model's name (`MODEL_NAME` of TF Serving).
      version: a specific version number, or None for the newest.
      timeout: deadline of each call attempt, in seconds.
      retries: how many times a call is retried when the server is unavailable.
      retry_backoff: first retry delay in seconds; it doubles on each further retry.
    """

    def __init__(self, target, model_name=DEFAULT_MODEL_NAME, version=None, timeout=30.0,
                 retries=3, retry_backoff=0.2):
        protocol, target = parse_target(target)
        if timeout <= 0 or retries < 0 or retry_backoff < 0:
            raise InputError("timeout must be > 0 and retries, retry_backoff >= 0")
        self.target = target
        self.protocol = protocol
        self.model_spec = (model_name, version)
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._transport = _RestTransport(target) if self.protocol == "rest" else _GrpcTransport(target)

    def _with_retries(self, call):
        delay = self.retry_backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ServingError as err:
                # Only an unreachable server is worth retrying; an answer is final.
                if err.code != "UNAVAILABLE" or attempt == self.retries:
                    raise
            time.sleep(delay)
            delay *= 2

    def predict(self, signature_name, inputs):
        """Runs any signature: `{input name: array}` -> `{output name: numpy array}`."""
        inputs = {name: np.asarray(value) for name, value in inputs.items()}
        return self._with_retries(
            lambda: self._transport.predict(self.model_spec, signature_name, inputs, self.timeout)
        )

    def metadata(self):
        """The GetModelMetadataResponse as a dict (same layout as TF Serving's REST JSON)."""
        return self._with_retries(lambda: self._transport.metadata(self.model_spec, self.timeout))

    def sample(self, image_bytes, seed=0):
        """Colorizes one encoded image (PNG/JPEG/BMP/GIF) into N diverse samples.

        Args:
          image_bytes: the encoded image.
          seed: int; equal seeds give equal results.

        Returns:
          `SampleResult(images=[N PNG bytes], scores=float32 [N])`, best first.
        """
        outputs = self.predict(
            SAMPLE_SIGNATURE,
            {"image_bytes": _image_batch(image_bytes), "seed": np.array([seed], np.int64)},
        )
        return SampleResult(list(outputs["colorized_bytes"][0]), outputs["scores"][0])

    def edit(self, image_bytes, points, colors, seed=0, from_sample=-1, links=None):
        """Colorizes one image with user color points.

        Args:
          image_bytes: the encoded image.
          points: K (x, y) positions relative to width/height, in [0, 1].
          colors: K RGB colors (0-255), one per point.
          seed: int, the sample seed (used with `from_sample`).
          from_sample: -1 to take colors only from the points; k >= 0 to edit on top of
            sample k of `sample(image_bytes, seed)`.
          links: optional J (x1, y1, x2, y2) pairs of places (relative, in [0, 1]) that should
            take the same color, as rows or as ((x1, y1), (x2, y2)) pairs (the form of
            `tfgcrf.Colorizer.edit`); sent to the `edit_links` signature (`edit` without them).

        Returns:
          PNG bytes at the input size.
        """
        points = _rows(points, 2, np.float32, "points must be (x, y) pairs")
        colors = _rows(colors, 3, np.int64, "colors must be (r, g, b) triples")
        if len(points) != len(colors):
            raise InputError(f"got {len(points)} points but {len(colors)} colors")
        if colors.size and (colors.min() < 0 or colors.max() > 255):
            raise InputError("colors must be RGB values in 0..255")
        count = len(points)
        # One padding row keeps the K axis non-empty when there are no points.
        padded_points = np.zeros((1, max(count, 1), 2), np.float32)
        padded_colors = np.zeros((1, max(count, 1), 3), np.uint8)
        padded_points[0, :count] = points
        padded_colors[0, :count] = colors
        inputs = {
            "image_bytes": _image_batch(image_bytes),
            "points": padded_points,
            "colors": padded_colors,
            "num_points": np.array([count], np.int32),
            "seed": np.array([seed], np.int64),
            "from_sample": np.array([from_sample], np.int32),
        }
        if links is None:
            return self.predict(EDIT_SIGNATURE, inputs)["colorized_bytes"][0]
        pairs = np.asarray(links, dtype=object)
        if pairs.ndim == 3 and pairs.shape[1:] == (2, 2):  # ((x1, y1), (x2, y2)) pairs
            links = pairs.reshape(-1, 4).tolist()
        links = _rows(links, 4, np.float32,
                      "links must be (x1, y1, x2, y2) rows or ((x1, y1), (x2, y2)) pairs")
        padded_links = np.zeros((1, max(len(links), 1), 4), np.float32)
        padded_links[0, :len(links)] = links
        inputs.update(links=padded_links, num_links=np.array([len(links)], np.int32))
        return self.predict(EDIT_LINKS_SIGNATURE, inputs)["colorized_bytes"][0]

    def close(self):
        self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _rows(values, width, dtype, message):
    try:
        array = np.asarray(values, dtype)
    except (TypeError, ValueError):
        raise InputError(message) from None
    if array.size == 0:
        return array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f"{message}, got shape {list(array.shape)}")
    return array


def _image_batch(image_bytes):
    if not isinstance(image_bytes, (bytes, bytearray)) or not image_bytes:
        raise InputError("image_bytes must be the non-empty bytes of an encoded image")
    batch = np.empty(1, dtype=object)
    batch[0] = bytes(image_bytes)
    return batch
