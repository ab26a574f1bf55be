"""Runs `tfgcrf serve` as a child process on free loopback ports (for tests and benchmarks)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

from tfgcrf.serving.cli import READY_PATTERN


class ServeProcess:
    """`tfgcrf serve --grpc-port 0 --rest-port 0` in a child process, as a context manager.

    Args:
      model_dir: the model base path to serve.
      start_timeout: seconds to wait for the server to listen.
      poll_seconds: the server's version polling interval.
      extra_args: more `tfgcrf serve` flags, e.g. `["--max-batch-size", "4"]`.

    Attributes (once started): `grpc_target` ("127.0.0.1:PORT"), `rest_url`, `version` (str),
    `process` (the `subprocess.Popen`).
    """

    def __init__(self, model_dir, start_timeout=300.0, poll_seconds=1.0, extra_args=()):
        self.model_dir = os.fspath(model_dir)
        self.extra_args = [str(arg) for arg in extra_args]
        self.start_timeout = start_timeout
        self.poll_seconds = poll_seconds
        self.process = None
        self._lines = []

    def start(self):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfgcrf.cli", "serve", "--model-dir", self.model_dir,
             "--grpc-port", "0", "--rest-port", "0", "--poll-seconds", str(self.poll_seconds),
             *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        # Drain both pipes so that the child never blocks on a full pipe.
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._collect, args=(stream,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while True:
            match = next(filter(None, (re.search(READY_PATTERN, line) for line in list(self._lines))), None)
            if match:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tfgcrf serve did not start:\n" + "".join(self._lines[-30:]))
            time.sleep(0.05)
        self.grpc_target, self.rest_url, self.version = match["grpc"], match["rest"], match["version"]
        return self

    def _collect(self, stream):
        for line in iter(stream.readline, ""):
            self._lines.append(line)

    @property
    def output(self):
        """Everything the server printed so far (stdout and stderr interleaved)."""
        return "".join(self._lines)

    def stop(self, timeout=60.0):
        """Stops the server with SIGTERM and returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
