"""Stops a request's work when its client stops waiting: deadline passed or client gone.

TF Serving passes the gRPC deadline to the TensorFlow session as `RunOptions.timeout_in_ms`, so
a request whose deadline has passed stops inside the graph. Here signatures are eager
`ConcreteFunction`s: a `RequestScope` runs them under a TensorFlow `CancellationManager` that a
watchdog thread cancels when the deadline passes or the client disconnects, and it is checked
between the stages of a request (input conversion, queue, signature, response).

TensorFlow keeps the active cancellation manager of `CancellationManagerContext` in one global
shared by all threads; concurrent requests need one each, so `_thread_context` below makes the
lookup that `Context.call_function` does per thread (falling back to TF's global).
"""

import threading
import time

import tensorflow as tf
from tensorflow.python.eager import cancellation as _tf_cancellation

from tfgcrf.serving.status import ServingError

# Once a request's client stopped waiting, its answer waits at most this long for the cancelled
# signature to stop (a kernel that is running finishes in the background).
ABANDON_SECONDS = 0.5

_local = threading.local()
_tf_global_context = _tf_cancellation.context


def _thread_context():
    return getattr(_local, "manager", None) or _tf_global_context()


_tf_cancellation.context = _thread_context


class RequestScope:
    """One request's deadline and disconnect test.

    Args:
      deadline: `time.monotonic()` value after which the client no longer waits, or None.
      disconnected: callable returning True once the client has gone away, or None.
      stopping: a `threading.Event` set when the server stops and cancels its requests, or None.
    """

    def __init__(self, deadline=None, disconnected=None, stopping=None):
        self.deadline = deadline
        self._disconnected = disconnected
        self._stopping = stopping
        self._manager = None
        self.abandoned = None  # the thread of work still running after its error was answered
        # "DEADLINE_EXCEEDED" or "CANCELLED" once the client stopped waiting, "UNAVAILABLE" once
        # the server stopped the request.
        self.reason = None

    def remaining(self):
        """Seconds left before the deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def poll(self):
        """Records and returns the reason the client stopped waiting, or None if it still waits."""
        if self.reason is None:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.reason = "DEADLINE_EXCEEDED"
            elif self._disconnected is not None and self._disconnected():
                self.reason = "CANCELLED"
            elif self._stopping is not None and self._stopping.is_set():
                self.reason = "UNAVAILABLE"
        return self.reason

    def error(self, stage):
        if self.reason == "UNAVAILABLE":
            return ServingError("UNAVAILABLE", f"the server is stopping: the request was cancelled {stage}")
        if self.reason == "DEADLINE_EXCEEDED":
            return ServingError("DEADLINE_EXCEEDED", f"the request's deadline passed {stage}")
        return ServingError("CANCELLED", f"the client disconnected {stage}")

    def check(self, stage):
        """Raises DEADLINE_EXCEEDED / CANCELLED if the client stopped waiting (`stage` says where)."""
        if self.poll():
            raise self.error(stage)

    def run(self, function, **kwargs):
        """Calls a TensorFlow function; cancels it (CancelledError) when the client stops waiting.

        The function runs in a thread of its own: once the client stopped waiting, the error is
        raised here after at most `ABANDON_SECONDS` even if the function has not stopped yet
        (TensorFlow cancels between kernels: one long kernel, e.g. a PNG encoding of a 12-MP
        image, runs to its end). Such work is left in `self.abandoned` (its thread), which the
        work queue keeps counting until it ends (`limits.WorkQueue.slot`).
        """
        self.check("before running the signature")
        manager = _tf_cancellation.CancellationManager()
        outcome = {}
        finished = threading.Event()

        def call():
            _local.manager = manager
            try:
                outcome["value"] = function(**kwargs)
            except BaseException as err:  # noqa: BLE001 - re-raised in the request's thread
                outcome["error"] = err
            finally:
                _local.manager = None
                finished.set()

        self._manager = manager
        _WATCHDOG.add(self)
        worker = threading.Thread(target=call, name="signature", daemon=True)
        worker.start()
        try:
            while not finished.wait(_WATCHDOG.interval):
                if self.poll() is not None and not finished.wait(ABANDON_SECONDS):
                    self.abandoned = worker
                    raise self.error("while running the signature")
        finally:
            _WATCHDOG.remove(self)
            self._manager = None
        error = outcome.get("error")
        if error is None:
            return outcome["value"]
        if isinstance(error, tf.errors.CancelledError) and self.poll():
            raise self.error("while running the signature") from None
        raise error

    def _cancel_if_abandoned(self):
        manager = self._manager
        if manager is not None and self.poll() and not manager.is_cancelled:
            manager.start_cancel()


class _Watchdog:
    """One daemon thread that looks at the running scopes every `interval` seconds."""

    interval = 0.02

    def __init__(self):
        self._scopes = set()
        self._lock = threading.Lock()
        self._thread = None

    def add(self, scope):
        with self._lock:
            self._scopes.add(scope)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="request-watchdog", daemon=True)
                self._thread.start()

    def remove(self, scope):
        with self._lock:
            self._scopes.discard(scope)

    def _loop(self):
        while True:
            time.sleep(self.interval)
            with self._lock:
                scopes = list(self._scopes)
                if not scopes:
                    self._thread = None
                    return
            for scope in scopes:
                try:
                    scope._cancel_if_abandoned()
                except Exception:  # a broken disconnect test must not stop the watchdog
                    pass


_WATCHDOG = _Watchdog()
