"""The studio's raw HTTP API refuses an upload above its limit with the app's one-line JSON error.

A real waitress server on a free port (the limit is partly waitress's), a 1 MiB limit
(monkeypatched) so that the bodies are small, and no model: the refusals come before any colorizing,
and a body at the limit is random bytes (refused as "unsupported image format" once read).
"""

import json
import os
import select
import socket
import types
import urllib.error
import urllib.request

import pytest

from tfgcrf.studio import StudioApp, StudioServer
from tfgcrf.studio import app as studio_app

LIMIT = 1 << 20
TOO_LARGE = {"error": "upload too large: the limit is 1 MiB"}
PIECE = 64 << 10


class _NoColorizer:
    model = types.SimpleNamespace(model_config=types.SimpleNamespace(num_components=2))

    def default_samples(self, mode):
        return 2 if mode == "top" else 8

    def check_sampling(self, num_samples, mode):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(studio_app, "MAX_UPLOAD_BYTES", LIMIT)
    server = StudioServer(StudioApp(_NoColorizer(), num_samples=2)).start()
    yield server
    server.stop()


def _post(server, body_size, chunked=False, send_body=True):
    """POSTs `body_size` random bytes to /api/open, in 64 KiB pieces (chunks when `chunked`),
    stopping as soon as the server answers -> (status, content type, body bytes)."""
    head = [f"POST /api/open?tab=tab-aaaaaaaa HTTP/1.1", "Host: localhost", "X-Filename: big.png"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {body_size}")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    with sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        left = body_size if send_body else 0
        try:
            while left and not select.select([sock], [], [], 0)[0]:
                piece = os.urandom(min(PIECE, left))
                left -= len(piece)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked and not left and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: the answer is read below
        answer = b""
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    kind = [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:")]
    return int(lines[0].split()[1]), (kind or [None])[0], body


@pytest.mark.parametrize("size, chunked, send_body", [
    (LIMIT + 1, False, True),  # the app refuses it (its Content-Length) before reading it
    (3 * LIMIT, False, True),  # waitress refuses it (above its own, larger limit)
    (10 << 30, False, False),  # a 10 GiB Content-Length: refused right after the headers
    (LIMIT + 1, True, True),  # chunked, no Content-Length: the app refuses the de-chunked length
    (3 * LIMIT, True, True),  # chunked, refused by waitress while it arrives
])
def test_an_upload_above_the_limit_is_the_apps_json_413(server, size, chunked, send_body):
    status, kind, body = _post(server, size, chunked, send_body)
    assert (status, kind) == (413, "application/json"), body[:200]
    assert json.loads(body) == TOO_LARGE
    # The server keeps serving.
    with urllib.request.urlopen(server.url + "api/config", timeout=30) as response:
        assert json.load(response)["max_upload_mib"] == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_an_upload_at_the_limit_is_read(server, chunked):
    status, kind, body = _post(server, LIMIT, chunked)
    assert (status, kind) == (400, "application/json")
    assert json.loads(body)["error"].startswith("unsupported image format")


def test_a_malformed_request_is_a_json_line(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with sock:
        sock.sendall(b"POST /api/open HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n")
        answer = b""
        while data := sock.recv(1 << 16):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "bad request: Content-Length is invalid"}


@pytest.mark.parametrize("size", [3 * LIMIT, 16 * LIMIT])
def test_a_client_that_sends_the_whole_body_first_reads_the_413(server, size):
    # urllib sends all of the body before reading: waitress refuses a Content-Length above its own
    # limit right after the headers; the rest of the body is read and dropped so that the client
    # gets the answer, not a reset connection.
    request = urllib.request.Request(server.url + "api/open?tab=tab-aaaaaaaa", data=bytes(size))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 413 and json.load(info.value) == TOO_LARGE


def test_a_client_expecting_100_continue_is_answered_before_sending(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with sock:
        sock.sendall(b"POST /api/open?tab=tab-aaaaaaaa HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (3 * LIMIT))
        answer = b""
        while data := sock.recv(1 << 16):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and json.loads(body) == TOO_LARGE
