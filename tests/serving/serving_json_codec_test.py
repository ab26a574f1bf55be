"""TF Serving's REST JSON tensor encoding (serving/json_codec.py), without a server."""

import base64
import json

import numpy as np
import pytest

from tfgcrf.serving.json_codec import (
    COLUMNAR_FORMAT,
    ROW_FORMAT,
    JsonTensorError,
    format_columnar_request,
    format_predict_response,
    json_to_array,
    parse_columnar_response,
    parse_predict_request,
)

SIGNATURES = {
    "": {"image_bytes": np.dtype(object), "seed": np.dtype(np.int64)},
    "one": {"x": np.dtype(np.float32)},
}


def _dtypes(name):
    return SIGNATURES[name]


def test_json_to_array_dtypes_and_checks():
    np.testing.assert_array_equal(json_to_array([[1, 2], [3, 4]], np.uint8), np.array([[1, 2], [3, 4]], np.uint8))
    assert json_to_array(1, np.float32).dtype == np.float32 and json_to_array(1, np.float32).shape == ()
    assert json_to_array([True, False], np.bool_).tolist() == [True, False]
    assert json_to_array(["a", {"b64": base64.b64encode(b"\x00\xff").decode()}], object).tolist() == [b"a", b"\x00\xff"]
    assert json_to_array([], np.int32).shape == (0,)
    assert np.isinf(json_to_array([float("inf")], np.float32)[0])  # NaN/Infinity are valid, as in TF Serving
    for value, dtype, fragment in [
        ([256], np.uint8, "out of the uint8 range"),
        ([1.5], np.int32, "expected an integer"),
        ([True], np.int32, "expected a number"),
        ([1], np.bool_, "expected true or false"),
        ([[1], [1, 2]], np.int32, "ragged"),
        ([[1], 2], np.int32, "expected a list"),
        ([1, [2]], np.int32, "deeper"),
        ([1e39], np.float32, "does not fit"),
        ([10**400], np.float64, "does not fit"),
        ([{"b64": "%%"}], object, "base64"),
        ([3], object, "expected a string"),
    ]:
        with pytest.raises(JsonTensorError, match=fragment):
            json_to_array(value, dtype)


def test_row_and_columnar_requests():
    b64 = {"b64": base64.b64encode(b"img").decode()}
    name, inputs, fmt = parse_predict_request(
        {"instances": [{"image_bytes": b64, "seed": 1}, {"image_bytes": "txt", "seed": 2}]}, _dtypes)
    assert (name, fmt) == ("", ROW_FORMAT)
    assert inputs["image_bytes"].tolist() == [b"img", b"txt"] and inputs["seed"].dtype == np.int64
    _, inputs, fmt = parse_predict_request({"signature_name": "one", "instances": [[1, 2], [3, 4]]}, _dtypes)
    assert fmt == ROW_FORMAT and inputs["x"].shape == (2, 2) and inputs["x"].dtype == np.float32
    _, inputs, fmt = parse_predict_request({"signature_name": "one", "inputs": [[1.5]]}, _dtypes)
    assert fmt == COLUMNAR_FORMAT and inputs["x"].tolist() == [[1.5]]
    _, inputs, _ = parse_predict_request({"inputs": {"image_bytes": [b64], "seed": [7]}}, _dtypes)
    assert inputs["seed"].tolist() == [7]
    for body, fragment in [
        ([], "JSON object"),
        ({"instances": []}, "no values"),
        ({"instances": [1], "inputs": [1]}, "exactly one"),
        ({"signature_name": 3, "inputs": [1]}, "must be a string"),
        ({"inputs": [1], "extra": 1}, "unexpected keys"),
        ({"inputs": {"image_bytes": ["a"]}}, "missing but required \\['seed'\\]"),
        ({"instances": [{"image_bytes": "a", "seed": 1}, 3]}, "item 1"),
        ({"instances": [{"image_bytes": "a", "seed": [1]}, {"image_bytes": "b", "seed": 2}]}, "differs"),
    ]:
        with pytest.raises(JsonTensorError, match=fragment):
            parse_predict_request(body, _dtypes)


def test_responses_follow_tf_serving():
    outputs = {"colorized_bytes": np.array([[b"\x89P", b"x"]], dtype=object),
               "scores": np.array([[0.2, 0.1]], np.float32)}
    row = json.loads(json.dumps(format_predict_response(outputs, ROW_FORMAT)))
    assert row == {"predictions": [{"colorized_bytes": [{"b64": "iVA="}, {"b64": "eA=="}], "scores": [0.2, 0.1]}]}
    columnar = format_predict_response(outputs, COLUMNAR_FORMAT)
    assert columnar["outputs"]["scores"] == [[0.2, 0.1]]
    # One output: its name is left out; strings not named *_bytes stay text.
    assert format_predict_response({"label": np.array([b"cat"], dtype=object)}, ROW_FORMAT) == {"predictions": ["cat"]}
    assert format_predict_response({"y": np.array([[1, 2]], np.int64)}, COLUMNAR_FORMAT) == {"outputs": [[1, 2]]}
    with pytest.raises(JsonTensorError, match="batch"):
        format_predict_response({"a": np.zeros(2), "b": np.zeros(3)}, ROW_FORMAT)


def test_client_side_round_trip():
    inputs = {"image_bytes": np.array([b"\x00\x01"], dtype=object), "seed": np.array([5], np.int64)}
    request = json.loads(json.dumps(format_columnar_request("sample", inputs)))
    assert request["inputs"]["image_bytes"] == [{"b64": "AAE="}]
    name, parsed, fmt = parse_predict_request(request, lambda name: SIGNATURES[""])
    assert name == "sample" and parsed["image_bytes"].tolist() == [b"\x00\x01"]
    outputs = {"colorized_bytes": np.array([[b"png"]], dtype=object), "scores": np.array([[0.5]], np.float32)}
    response = json.loads(json.dumps(format_predict_response(outputs, fmt)))
    decoded = parse_columnar_response(response, {"colorized_bytes": np.dtype(object), "scores": np.dtype(np.float32)})
    assert decoded["colorized_bytes"].tolist() == [[b"png"]] and decoded["scores"].dtype == np.float32
    single = parse_columnar_response({"outputs": [{"b64": "eA=="}]}, {"colorized_bytes": np.dtype(object)})
    assert single["colorized_bytes"].tolist() == [b"x"]
    with pytest.raises(JsonTensorError, match="no 'outputs'"):
        parse_columnar_response({"error": "boom"}, {"y": np.dtype(np.float32)})
