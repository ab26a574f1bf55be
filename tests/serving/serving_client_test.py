"""`tfgcrf.serving.Client`'s target: refused with one line before anything is dialed."""

import pytest

from tfgcrf.errors import InputError
from tfgcrf.serving import client as client_module
from tfgcrf.serving.client import Client, parse_target


@pytest.mark.parametrize("target, expected", [
    ("localhost:8500", ("grpc", "localhost:8500")),
    ("10.0.0.7:1", ("grpc", "10.0.0.7:1")),
    ("[::1]:65535", ("grpc", "[::1]:65535")),
    ("dns:///serving.internal:8500", ("grpc", "dns:///serving.internal:8500")),
    ("unix:/tmp/tfs.sock", ("grpc", "unix:/tmp/tfs.sock")),
    ("http://localhost:8501", ("rest", "http://localhost:8501")),
    ("http://localhost:8501/", ("rest", "http://localhost:8501")),
    ("HTTPS://serving.example.com", ("rest", "HTTPS://serving.example.com")),
])
def test_good_targets(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize("target, message", [
    ("", "target must be"),
    ("   ", "target must be"),
    (None, "target must be"),
    ("localhost", "has no port"),
    ("localhost:99999", "port in 1..65535"),  # gRPC would dial 99999 mod 65536 = 34463
    ("localhost:0", "port in 1..65535"),
    ("localhost:notaport", "port in 1..65535"),
    ("localhost:18500:1", "port in 1..65535"),
    ("local host:8500", "port in 1..65535"),
    ("grpc://localhost:18500", "for gRPC give 'host:port' without 'grpc://'"),
    ("ftp://x:1", "got 'ftp://x:1'"),
    ("http://", "port in 1..65535"),
    ("http://localhost:notaport", "port in 1..65535"),
    ("http://localhost:70000", "port in 1..65535"),
    ("http://localhost:8501/v1/models/tfgcrf", "without a path"),
    ("http://localhost:8501?x=1", "without a path"),
])
def test_malformed_targets_are_one_line_input_errors_before_dialing(target, message, monkeypatch):
    def dial(*args):
        raise AssertionError("a malformed target was dialed")

    monkeypatch.setattr(client_module, "_GrpcTransport", dial)
    monkeypatch.setattr(client_module, "_RestTransport", dial)
    with pytest.raises(InputError) as raised:
        Client(target)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_good_target_reaches_its_transport(monkeypatch):
    dialed = []
    monkeypatch.setattr(client_module, "_GrpcTransport", lambda target: dialed.append(("grpc", target)))
    monkeypatch.setattr(client_module, "_RestTransport", lambda target: dialed.append(("rest", target)))
    assert Client("localhost:8500").protocol == "grpc"
    assert Client("http://localhost:8501/").protocol == "rest"
    assert dialed == [("grpc", "localhost:8500"), ("rest", "http://localhost:8501")]


def test_edit_links_as_rows_or_as_the_apis_point_pairs(monkeypatch):
    import numpy as np

    monkeypatch.setattr(client_module, "_GrpcTransport", lambda target: None)
    client = Client("localhost:8500")
    sent = []
    monkeypatch.setattr(client, "predict", lambda name, inputs: sent.append((name, inputs)) or {
        "colorized_bytes": [b"png"]})
    image = b"\x89PNG not decoded here"
    for links in ([(0.5, 0.4, 0.2, 0.8)], [((0.5, 0.4), (0.2, 0.8))]):
        assert client.edit(image, [(0.5, 0.4)], [(200, 30, 30)], links=links) == b"png"
    (first_name, first), (second_name, second) = sent
    assert first_name == second_name
    np.testing.assert_array_equal(first["links"], second["links"])
    assert first["links"].reshape(-1).tolist() == pytest.approx([0.5, 0.4, 0.2, 0.8])
    for bad in ([((0.5, 0.4), (0.2,))], [(0.5, 0.4, 0.2)], "nope"):
        with pytest.raises(InputError, match=r"rows or \(\(x1, y1\), \(x2, y2\)\) pairs"):
            client.edit(image, [(0.5, 0.4)], [(200, 30, 30)], links=bad)
