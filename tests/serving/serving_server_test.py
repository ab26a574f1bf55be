"""`tfgcrf serve` (ModelServer) and the Client against a tiny SavedModel, over gRPC and REST."""

import base64
import concurrent.futures
import json
import os
import shutil
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving_toys import export_toy
from tfgcrf.serving import Client, ServingError
from tfgcrf.serving.server import ModelServer

MODEL_NAME = "toy"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / MODEL_NAME
    export_toy(str(base), 1, offset=0.0)
    with ModelServer(str(base), MODEL_NAME, grpc_port=0, rest_port=0, poll_seconds=0.2) as srv:
        yield srv


@pytest.fixture(params=["grpc", "rest"])
def client(server, request):
    target = (
        f"127.0.0.1:{server.grpc_port}" if request.param == "grpc"
        else f"http://127.0.0.1:{server.rest_port}"
    )
    with Client(target, model_name=MODEL_NAME, timeout=20) as c:
        yield c


def _rest(server, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _strings(*values):
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def test_binds_loopback_only(server):
    assert server.host == "127.0.0.1"
    assert server.grpc_port > 0 and server.rest_port > 0


def test_client_predict_round_trip(client):
    out = client.predict("sample", {"image_bytes": _strings(b"\x00\xffa", b"b"), "seed": np.array([3, 5])})
    assert out["colorized_bytes"].shape == (2, 2)
    assert list(out["colorized_bytes"][0]) == [b"\x00\xffa", b"\x00\xffa\x00\xffa"]
    assert out["scores"].dtype == np.float32
    np.testing.assert_allclose(out["scores"], [[0.3, 0.4], [0.5, 0.6]], rtol=1e-6)


def test_client_invalid_argument_from_graph_assertion(client):
    with pytest.raises(ServingError) as info:
        client.predict("sample", {"image_bytes": _strings(b"a"), "seed": np.array([-1])})
    assert info.value.code == "INVALID_ARGUMENT"
    assert "seed must be >= 0" in info.value.message


@pytest.mark.parametrize(
    "signature, inputs, fragment",
    [
        ("nope", {"x": np.zeros((1, 3), np.float32)}, "not found"),
        ("double", {"x": np.zeros((1, 4), np.float32)}, "shape"),
        ("double", {"x": np.zeros((1, 3), np.float32), "z": np.zeros(1)}, "extra"),
    ],
)
def test_malformed_requests_are_invalid_argument(client, signature, inputs, fragment):
    with pytest.raises(ServingError) as info:
        client.predict(signature, inputs)
    assert info.value.code == "INVALID_ARGUMENT"
    assert fragment in info.value.message
    # ... and the server keeps serving.
    y = client.predict("double", {"x": np.ones((1, 3), np.float32)})["y"]
    np.testing.assert_array_equal(y, 2 * np.ones((1, 3)))


def test_unknown_model_and_version_are_not_found(server):
    for target in (f"127.0.0.1:{server.grpc_port}", f"http://127.0.0.1:{server.rest_port}"):
        for kwargs in ({"model_name": "other"}, {"model_name": MODEL_NAME, "version": 99}):
            with Client(target, **kwargs) as c, pytest.raises(ServingError) as info:
                c.predict("double", {"x": np.ones((1, 3), np.float32)})
            assert info.value.code == "NOT_FOUND"


def test_grpc_wire_format(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"png"]))
    request.inputs["seed"].CopyFrom(tf.make_tensor_proto(np.array([7], np.int64)))
    request.output_filter.append("scores")
    response = stub.Predict(request, timeout=20)
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1
    assert list(response.outputs) == ["scores"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), [[0.7, 0.8]], rtol=1e-6)

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = MODEL_NAME
    metadata = stub.GetModelMetadata(metadata_request, timeout=20)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signature_map)
    assert {"serving_default", "sample", "double", "spin"} <= set(signature_map.signature_def)
    assert set(signature_map.signature_def["sample"].inputs) == {"image_bytes", "seed"}

    # JSON numbers take the signature's dtype; over gRPC a TensorProto of another dtype is refused.
    with pytest.raises(grpc.RpcError) as info:
        bad = predict_pb2.PredictRequest(model_spec=request.model_spec)
        bad.model_spec.signature_name = "double"
        bad.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 3), np.int32)))
        stub.Predict(bad, timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be float32" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(model_spec=metadata_request.model_spec))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL_NAME
    status = status_stub.GetModelStatus(status_request, timeout=20)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    channel.close()


def test_rest_row_and_columnar_formats(server):
    b64 = {"b64": base64.b64encode(b"\x89PNG").decode()}
    status, body = _rest(server, f"/v1/models/{MODEL_NAME}:predict",
                         {"instances": [{"image_bytes": b64, "seed": 1}, {"image_bytes": "txt", "seed": 2}]})
    assert status == 200
    first = body["predictions"][0]
    assert first["colorized_bytes"][1] == {"b64": base64.b64encode(b"\x89PNG\x89PNG").decode()}
    assert first["scores"] == [0.1, 0.2]  # shortest float32 digits, as TF Serving writes them
    assert base64.b64decode(body["predictions"][1]["colorized_bytes"][0]["b64"]) == b"txt"

    status, body = _rest(server, f"/v1/models/{MODEL_NAME}/versions/1:predict",
                         {"signature_name": "sample", "inputs": {"image_bytes": [b64], "seed": [4]}})
    assert status == 200 and body["outputs"]["scores"] == [[0.4, 0.5]]

    # One input and one output: bare values in both directions.
    status, body = _rest(server, f"/v1/models/{MODEL_NAME}:predict",
                         {"signature_name": "double", "instances": [[1, 2, 3]]})
    assert status == 200 and body == {"predictions": [[2.0, 4.0, 6.0]]}
    status, body = _rest(server, f"/v1/models/{MODEL_NAME}:predict",
                         {"signature_name": "double", "inputs": [[0.5, 1, 1.5]]})
    assert status == 200 and body == {"outputs": [[1.0, 2.0, 3.0]]}


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "JSON Parse error"),
        ({"instances": [1], "inputs": [1]}, "exactly one of"),
        ({"signature_name": "double", "instances": [[1, 2], [1, 2, 3]]}, "shape"),
        ({"signature_name": "double", "inputs": [[1, 2], [1, 2, 3]]}, "ragged"),
        ({"signature_name": "double", "inputs": [["a", 1, 2]]}, "expected a number"),
        ({"instances": [{"image_bytes": {"b64": "%%%"}, "seed": 1}]}, "base64"),
        ({"instances": [{"image_bytes": "a", "seed": 1.5}]}, "integer"),
        ({"instances": [{"image_bytes": "a"}]}, "keys"),
        ({"instances": ["a"]}, "several inputs"),
        ({"instances": [{"image_bytes": "a", "seed": -3}]}, "seed must be >= 0"),
        # The signatures one can call (not the SavedModel's __saved_model_init_op).
        ({"signature_name": "nope", "instances": [[1, 2, 3]]},
         '"nope" not found in signature def (available: double, sample, serving_default, spin)'),
    ],
)
def test_rest_bad_requests_get_400_with_error(server, body, fragment):
    status, response = _rest(server, f"/v1/models/{MODEL_NAME}:predict", body)
    assert status == 400
    assert fragment in response["error"]
    status, _ = _rest(server, f"/v1/models/{MODEL_NAME}:predict",
                      {"signature_name": "double", "instances": [[1, 2, 3]]})
    assert status == 200


def test_rest_metadata_status_and_routes(server):
    status, body = _rest(server, f"/v1/models/{MODEL_NAME}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["double"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert body["metadata"]["signature_def"]["@type"].endswith("tensorflow.serving.SignatureDefMap")

    status, body = _rest(server, f"/v1/models/{MODEL_NAME}")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["status"]["error_code"] == "OK"

    assert _rest(server, "/v1/models/other/metadata")[0] == 404
    assert _rest(server, "/v2/whatever")[0] == 400
    assert _rest(server, f"/v1/models/{MODEL_NAME}:classify", {"examples": []})[0] == 501


def test_concurrent_clients(server):
    def worker(index):
        target = f"127.0.0.1:{server.grpc_port}" if index % 2 else f"http://127.0.0.1:{server.rest_port}"
        with Client(target, model_name=MODEL_NAME) as c:
            for i in range(10):
                x = np.full((1, 3), index * 10 + i, np.float32)
                np.testing.assert_array_equal(c.predict("double", {"x": x})["y"], 2 * x)
        return index

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(worker, range(8))) == list(range(8))


def test_retries_only_when_unavailable(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for target in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
        sleeps = []
        monkeypatch.setattr("tfgcrf.serving.client.time.sleep", sleeps.append)
        with Client(target, retries=2, retry_backoff=0.1, timeout=5) as c, pytest.raises(ServingError) as info:
            c.predict("double", {"x": np.ones((1, 3), np.float32)})
        assert info.value.code == "UNAVAILABLE"
        assert sleeps == [0.1, 0.2]


def test_newest_version_is_picked_up_without_restart(tmp_path):
    base = tmp_path / MODEL_NAME
    export_toy(str(base), 1, offset=0.0)
    with ModelServer(str(base), MODEL_NAME, grpc_port=0, rest_port=None, poll_seconds=0.1,
                     max_num_load_retries=0) as srv:
        c = Client(f"127.0.0.1:{srv.grpc_port}", model_name=MODEL_NAME)
        request = {"image_bytes": _strings(b"a"), "seed": np.array([0])}
        assert c.predict("sample", request)["scores"][0, 0] == 0.0
        # Written aside then renamed in, as `tfgcrf export` does, so no half version is seen.
        export_toy(str(tmp_path / "staging"), 7, offset=100.0)
        shutil.move(str(tmp_path / "staging" / "7"), str(base / "7"))
        deadline = time.monotonic() + 30
        while c.predict("sample", request)["scores"][0, 0] != 100.0:
            assert time.monotonic() < deadline, "version 7 was not picked up"
            time.sleep(0.1)
        assert c.metadata()["model_spec"]["version"] == "7"
        # A broken newer version is reported and (no retries) given up; version 7 keeps serving.
        (base / "9").mkdir()
        (base / "9" / "saved_model.pb").write_bytes(b"garbage")
        time.sleep(0.5)
        assert c.predict("sample", request)["scores"][0, 0] == 100.0
        assert (9, "END") in [(v, s) for v, s, _ in srv.repository.status()]
        c.close()


def test_serve_cli_rejects_bad_arguments(tmp_path, capsys):
    from tfgcrf import cli

    assert cli.main(["serve", "--model-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a model")
    assert cli.main(["serve", "--model-dir", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    # The version folder instead of its base path: it would serve nothing, waiting forever.
    (tmp_path / "tfgcrf" / "1").mkdir(parents=True)
    (tmp_path / "tfgcrf" / "1" / "saved_model.pb").write_bytes(b"")
    assert cli.main(["serve", "--model-dir", str(tmp_path / "tfgcrf" / "1")]) == 2
    assert (f"is a model version (it holds saved_model.pb): pass the folder holding the numbered "
            f"versions, --model-dir {tmp_path / 'tfgcrf'}\n") in capsys.readouterr().err
    assert cli.main(["serve", "--model-dir", str(tmp_path), "--grpc-port", "70000"]) == 2
    assert "--grpc-port must be in 0..65535" in capsys.readouterr().err
    for flag in ("--max-batch-size", "--num-batch-threads", "--rest-api-timeout-in-ms"):
        assert cli.main(["serve", "--model-dir", str(tmp_path), flag, "0"]) == 2
        assert f"{flag} must be >= 1" in capsys.readouterr().err
    assert cli.main(["serve", "--model-dir", str(tmp_path), "--max-num-load-retries", "-1"]) == 2
    assert "--max-num-load-retries must be >= 0" in capsys.readouterr().err


def test_rest_keep_alive_after_errors(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=20)
    good = json.dumps({"signature_name": "double", "instances": [[1, 2, 3]]})
    for path, expected in [("/v1/models/other:predict", 404), (f"/v1/models/{MODEL_NAME}:classify", 501),
                           (f"/v1/models/{MODEL_NAME}:predict", 200)]:
        connection.request("POST", path, body=good, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == expected, body
    assert body == {"predictions": [[2.0, 4.0, 6.0]]}
    connection.close()


def test_serve_reads_tf_servings_batching_file(tmp_path, capsys):
    from tfgcrf.serving import cli as serve_cli

    args = type("Args", (), {"batching_parameters_file": os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "serving", "batching.config"),
        "max_batch_size": None, "num_batch_threads": 1, "max_enqueued_batches": None})()
    # The file's values, except where a flag is given.
    assert serve_cli._batching(args) == {"max_batch_size": 4, "num_batch_threads": 1, "max_enqueued_batches": 64}
    (tmp_path / "bad.config").write_text("max_batch_size: 4\n")
    from tfgcrf import cli

    assert cli.main(["serve", "--model-dir", str(tmp_path), "--batching-parameters-file",
                     str(tmp_path / "bad.config")]) == 2
    assert "is not a text BatchingParameters" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--grpc-port", "--rest-port"])
def test_serve_cli_refuses_a_port_in_use_before_loading_anything(tmp_path, capsys, monkeypatch, flag):
    import socket

    from tfgcrf import cli
    from tfgcrf.serving import server as server_module

    def no_server(*args, **kwargs):
        raise AssertionError("the server was built although its port is taken")

    monkeypatch.setattr(server_module, "ModelServer", no_server)
    (tmp_path / "tfgcrf").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--rest-port" if flag == "--grpc-port" else "--grpc-port"
        code = cli.main(["serve", "--model-dir", str(tmp_path / "tfgcrf"), flag, str(port), other, "0"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and lines == [f"tfgcrf: error: address already in use (another server or worker "
                                   f"on this port?): 127.0.0.1:{port}"]
