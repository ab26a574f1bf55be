"""What one request may cost, checked before the work starts, and a bounded queue of work.

The knobs carry the names of TF Serving's batching parameters (`BatchingParameters` of
`--batching_parameters_file`), whose meaning they keep:

- `max_batch_size`: the largest batch (first dimension of every input) one request may carry;
  a larger one is refused with INVALID_ARGUMENT, as TF Serving refuses a task larger than the
  batch size when it may not split it.
- `num_batch_threads`: how many requests run their signature at the same time.
- `max_enqueued_batches`: how many more may wait for a free thread; a request arriving when all
  are taken is refused at once with RESOURCE_EXHAUSTED (HTTP 429) instead of piling up memory.

`read_batching_parameters` reads them from TF Serving's text file (`serving/batching.config`).
This server does not merge requests into batches (each request is its own batch), so
`batch_timeout_micros` and `pad_variable_length_inputs` have no counterpart here.
"""

import contextlib
import dataclasses
import os
import threading
import time

import numpy as np
from tensorflow.core.framework import types_pb2

from tfgcrf.serving.status import ServingError

# A TensorProto that carries fewer values than its shape holds is filled with its last value by
# tf.make_ndarray (TF's rule). The filled tensor may be at most this many bytes larger than the
# proto itself, so that a few bytes on the wire never become gigabytes in the server.
MAX_FILL_BYTES = 1 << 20
# TensorFlow's own limit on the rank of a tensor.
MAX_RANK = 254

# TensorProto field that holds the values of each dtype when tensor_content is empty.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}
# Values per element in the repeated field (complex numbers are stored as two floats).
_FIELD_VALUES_PER_ELEMENT = {types_pb2.DT_COMPLEX64: 2, types_pb2.DT_COMPLEX128: 2}
_ITEM_BYTES = {
    types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_HALF: 2, types_pb2.DT_BFLOAT16: 2,
    types_pb2.DT_INT8: 1, types_pb2.DT_INT16: 2, types_pb2.DT_INT32: 4, types_pb2.DT_UINT8: 1,
    types_pb2.DT_UINT16: 2, types_pb2.DT_INT64: 8, types_pb2.DT_UINT32: 4, types_pb2.DT_UINT64: 8,
    types_pb2.DT_BOOL: 1, types_pb2.DT_COMPLEX64: 8, types_pb2.DT_COMPLEX128: 16,
}
_STRING_ITEM_OVERHEAD = 16  # bytes per element of a numpy object array of bytes (pointer + tf copy)


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Per-request and concurrency limits (names and meaning from TF Serving's BatchingParameters).

    Attributes:
      max_batch_size: largest first dimension of a request's inputs.
      num_batch_threads: requests whose signature runs at the same time (default: CPU count).
      max_enqueued_batches: requests that may wait for a thread; more get RESOURCE_EXHAUSTED
        (TF Serving's scheduler default, 10).
    """

    max_batch_size: int = 64
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    max_enqueued_batches: int = 10

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            minimum = 0 if field.name == "max_enqueued_batches" else 1
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{field.name} must be an integer >= {minimum}, got {value!r}")


def _batching_parameters_class():
    """TF Serving's BatchingParameters message class, rebuilt from its descriptor.

    The message (tensorflow_serving/servables/tensorflow/session_bundle_config.proto) is not
    shipped in tensorflow-serving-api; its text format only needs the field names and types.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfgcrf/batching_parameters.proto", package="tfgcrf", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = file_proto.message_type.add(name="BatchingParameters")
    wrapped = [("max_batch_size", ".google.protobuf.Int64Value"),
               ("batch_timeout_micros", ".google.protobuf.Int64Value"),
               ("max_enqueued_batches", ".google.protobuf.Int64Value"),
               ("num_batch_threads", ".google.protobuf.Int64Value"),
               ("thread_pool_name", ".google.protobuf.StringValue")]
    for number, (name, type_name) in enumerate(wrapped, start=1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE, type_name=type_name,
                          label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfgcrf.BatchingParameters"))


def read_batching_parameters(path):
    """Parses TF Serving's `--batching_parameters_file` (text BatchingParameters).

    Returns:
      `(the parsed message, {field: value})` with the fields `BatchingParameters` here uses
      (max_batch_size, num_batch_threads, max_enqueued_batches) that the file sets.

    Raises:
      UserError: the file cannot be read or is not a valid text BatchingParameters.
    """
    from google.protobuf import text_format

    from tfgcrf.errors import UserError

    try:
        with open(path, encoding="utf-8") as f:
            message = text_format.Parse(f.read(), _batching_parameters_class()())
    except OSError as err:
        raise UserError(f"cannot read batching parameters {path}: {err.strerror}") from None
    except text_format.ParseError as err:
        raise UserError(f"{path} is not a text BatchingParameters: {err}") from None
    values = {
        name: getattr(message, name).value
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches")
        if message.HasField(name)
    }
    return message, values


def check_batch(name, batch, max_batch_size):
    """INVALID_ARGUMENT when input `name` declares a batch (first dimension) above the limit."""
    if batch > max_batch_size:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input '{name}' has a batch of {batch}, larger than max_batch_size = {max_batch_size}",
        )


def check_tensor_proto(name, proto, max_batch_size):
    """Checks what `tf.make_ndarray(proto)` would allocate, before it allocates anything.

    Refuses (INVALID_ARGUMENT) an unknown dtype, a negative or too many dimensions, a batch
    (first dimension) above `max_batch_size`, a `tensor_content` whose length does not match the
    shape, more values than the shape holds, and a fill (fewer values than the shape holds, TF
    pads with the last value) that would grow the tensor more than `MAX_FILL_BYTES` beyond the
    bytes the client sent.

    Args:
      name: the input's name, for messages.
      proto: a `tensorflow.TensorProto`.
      max_batch_size: the largest accepted first dimension.
    """
    if proto.dtype not in _VALUE_FIELDS:
        dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else proto.dtype
        raise ServingError("INVALID_ARGUMENT", f"input '{name}' has an unsupported dtype {dtype}")
    if proto.tensor_shape.unknown_rank:
        raise ServingError("INVALID_ARGUMENT", f"input '{name}' must have a known shape")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if len(dims) > MAX_RANK:
        raise ServingError("INVALID_ARGUMENT", f"input '{name}' has rank {len(dims)} > {MAX_RANK}")
    if any(size < 0 for size in dims):
        raise ServingError("INVALID_ARGUMENT", f"input '{name}' has a negative dimension in {dims}")
    if dims:
        check_batch(name, dims[0], max_batch_size)
    elements = 1
    for size in dims:
        elements *= size  # Python integers: no overflow
    if proto.tensor_content:
        expected = elements * _ITEM_BYTES.get(proto.dtype, 0)
        if proto.dtype == types_pb2.DT_STRING or len(proto.tensor_content) != expected:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input '{name}': tensor_content holds {len(proto.tensor_content)} bytes, "
                f"its shape {dims} needs {expected}",
            )
        return
    values = getattr(proto, _VALUE_FIELDS[proto.dtype])
    per_element = _FIELD_VALUES_PER_ELEMENT.get(proto.dtype, 1)
    sent = len(values) // per_element
    if sent > elements:
        raise ServingError(
            "INVALID_ARGUMENT", f"input '{name}' has {sent} values, its shape {dims} holds {elements}"
        )
    if sent == elements:
        return
    if proto.dtype == types_pb2.DT_STRING:
        item_bytes = _STRING_ITEM_OVERHEAD + (len(values[-1]) if values else 0)
    else:
        item_bytes = _ITEM_BYTES[proto.dtype]
    filled = elements * item_bytes
    if filled > proto.ByteSize() + MAX_FILL_BYTES:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input '{name}' declares shape {dims} ({elements} elements) but sends {sent} values: "
            f"filling it would take {filled} bytes (at most {MAX_FILL_BYTES} bytes more than sent)",
        )


def check_arrays(inputs, max_batch_size):
    """`check_batch` for every numpy input of a request (JSON requests, warm-up records)."""
    for name, value in inputs.items():
        if np.ndim(value):
            check_batch(name, np.shape(value)[0], max_batch_size)


class WorkQueue:
    """At most `num_batch_threads` requests run; `max_enqueued_batches` more may wait.

    `with queue.slot(scope): ...` waits for a free slot, giving up with the scope's
    DEADLINE_EXCEEDED or CANCELLED error when the client stops waiting; a request that finds the
    queue full gets RESOURCE_EXHAUSTED at once. A request answered while its signature still
    runs (`scope.abandoned`, see `RequestScope.run`) keeps its slot until that work ends.
    """

    _WAIT_SLICE = 0.05  # seconds between two looks at the request's deadline while waiting

    def __init__(self, parameters):
        self.parameters = parameters
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0

    @property
    def load(self):
        """(running, waiting) right now."""
        with self._cond:
            return self._running, self._waiting

    @contextlib.contextmanager
    def slot(self, scope=None):
        params = self.parameters
        with self._cond:
            if self._running + self._waiting >= params.num_batch_threads + params.max_enqueued_batches:
                raise ServingError(
                    "RESOURCE_EXHAUSTED",
                    f"the work queue is full ({params.num_batch_threads} requests running, "
                    f"{params.max_enqueued_batches} waiting = num_batch_threads + "
                    f"max_enqueued_batches): retry later",
                )
            self._waiting += 1
            try:
                while self._running >= params.num_batch_threads:
                    if scope is not None:
                        scope.check("while waiting in the work queue")
                    self._cond.wait(self._WAIT_SLICE)
            finally:
                self._waiting -= 1
            self._running += 1
        try:
            yield
        finally:
            work = getattr(scope, "abandoned", None)
            if work is not None and work.is_alive():
                threading.Thread(target=self._release_after, args=(work,), daemon=True).start()
            else:
                self._release()

    def _release(self):
        with self._cond:
            self._running -= 1
            self._cond.notify()

    def _release_after(self, work):
        work.join()
        self._release()


def monotonic_deadline(seconds):
    """`time.monotonic()` deadline `seconds` from now, or None for no deadline."""
    return None if seconds is None else time.monotonic() + seconds
