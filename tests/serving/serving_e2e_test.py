"""End to end: `tfgcrf serve` (a subprocess) serving the exported smoke model, called by the Client."""

import concurrent.futures
import io
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from tfgcrf.serving import Client, ServingError
from tfgcrf.serving.launcher import ServeProcess

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "photos")
PHOTO = "opencv_messi5.png"  # 80x128, not square


def _read(name):
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return f.read()


def _decode(png):
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def served(exported_model, tmp_path_factory):
    """`tfgcrf serve` on a copy of the exported model base path, with ephemeral loopback ports."""
    base = tmp_path_factory.mktemp("served") / "tfgcrf"
    shutil.copytree(exported_model.base, base)
    server = ServeProcess(base, poll_seconds=0.2).start()
    assert server.version == "1" and server.grpc_target.startswith("127.0.0.1:")
    assert server.rest_url.startswith("http://127.0.0.1:")
    yield {"base": base, "grpc": server.grpc_target, "rest": server.rest_url, "process": server.process,
           "num_samples": exported_model.num_samples}
    assert server.stop() == 0, server.output[-3000:]


@pytest.fixture(scope="module")
def clients(served):
    with Client(served["grpc"], timeout=60) as grpc_client, Client(served["rest"], timeout=60) as rest_client:
        yield {"grpc": grpc_client, "rest": rest_client}


def test_sample_round_trip_over_grpc_and_rest(served, clients):
    photo = _read(PHOTO)
    expected_shape = _decode(photo).shape
    results = {name: client.sample(photo, seed=4) for name, client in clients.items()}
    for name, result in results.items():
        assert len(result.images) == served["num_samples"] == len(result.scores), name
        assert np.all(np.diff(result.scores) <= 0)
        for png in result.images:
            assert _decode(png).shape == expected_shape
    # Both protocols reach the same signature: identical bytes, and equal seeds repeat exactly.
    assert results["grpc"].images == results["rest"].images
    np.testing.assert_array_equal(results["grpc"].scores, results["rest"].scores)
    assert clients["grpc"].sample(photo, seed=4).images == results["grpc"].images


def test_edit_round_trip_over_grpc_and_rest(clients):
    photo = _read(PHOTO)
    for from_sample in (-1, 1):
        outputs = [
            client.edit(photo, points=[(0.2, 0.3), (0.8, 0.7)], colors=[(230, 20, 20), (20, 20, 230)],
                        seed=2, from_sample=from_sample)
            for client in clients.values()
        ]
        assert outputs[0] == outputs[1]
        assert _decode(outputs[0]).shape == _decode(photo).shape
    no_points = clients["grpc"].edit(photo, points=[], colors=[], from_sample=0)
    assert _decode(no_points).shape == _decode(photo).shape


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_malformed_requests_get_invalid_argument_and_server_keeps_serving(served, clients, protocol):
    client = clients[protocol]
    photo = _read(PHOTO)
    cases = [
        (lambda: client.sample(b"definitely not an image", seed=0), "unsupported image format"),
        (lambda: client.edit(photo, points=[(1.5, 0.5)], colors=[(1, 2, 3)]), "points must be"),
        (lambda: client.edit(photo, points=[(0.5, 0.5)], colors=[(1, 2, 3)], from_sample=99),
         "from_sample must be <"),
        (lambda: client.predict("edit", {
            "image_bytes": np.array([photo], dtype=object), "points": np.zeros((1, 1, 2), np.float32),
            "colors": np.zeros((1, 1, 3), np.uint8), "num_points": np.array([2], np.int32),
            "seed": np.array([0], np.int64), "from_sample": np.array([-1], np.int32)}),
         "num_points must be <= K"),
        (lambda: client.predict("sample", {"image_bytes": np.array([photo], dtype=object)}), "missing"),
    ]
    for call, fragment in cases:
        with pytest.raises(ServingError) as info:
            call()
        assert info.value.code == "INVALID_ARGUMENT"
        assert fragment in info.value.message
    assert served["process"].poll() is None
    assert len(client.sample(photo, seed=1).images) == served["num_samples"]


def test_eight_client_threads_times_ten_requests(served):
    buffer = io.BytesIO()
    Image.open(os.path.join(PHOTOS, PHOTO)).resize((40, 25)).save(buffer, format="PNG")
    small = buffer.getvalue()
    with Client(served["grpc"]) as reference_client:
        reference = {seed: reference_client.sample(small, seed=seed).images for seed in range(2)}

    def worker(index):
        target = served["grpc"] if index % 2 == 0 else served["rest"]
        with Client(target, timeout=120) as client:
            for i in range(10):
                seed = (index + i) % 2
                if i % 3 == 2:
                    png = client.edit(small, [(0.5, 0.5)], [(250, 200, 0)], seed=seed, from_sample=0)
                    assert _decode(png).shape == (25, 40, 3)
                else:
                    assert client.sample(small, seed=seed).images == reference[seed]
        return index

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(worker, range(8))) == list(range(8))


def test_newer_version_is_served_without_restart(served, clients):
    staging = served["base"].parent / "staging"
    shutil.copytree(served["base"] / "1", staging)
    os.rename(staging, served["base"] / "2")
    deadline = time.monotonic() + 120
    while clients["rest"].metadata()["model_spec"]["version"] != "2":
        assert time.monotonic() < deadline, "version 2 was not picked up"
        time.sleep(0.2)
    assert clients["grpc"].metadata()["model_spec"]["version"] == "2"
    assert len(clients["grpc"].sample(_read(PHOTO), seed=0).images) == served["num_samples"]
