"""TF Serving's REST JSON tensor encoding <-> numpy arrays.

The rules follow TF Serving's `json_tensor.cc`, so that a request accepted here is accepted by
TF Serving and a response parses the same way:
- a request holds either `"instances"` (row format: one entry per batch element; with several
  named inputs each entry is an object `{name: value}`) or `"inputs"` (columnar format: one
  tensor per name, or a bare tensor when the signature has one input), never both;
- tensors are dense nested lists; binary strings are `{"b64": "..."}` objects;
- the response uses `"predictions"` for row requests and `"outputs"` for columnar ones; with one
  output the name is left out; string outputs whose name ends in `_bytes` are written as
  `{"b64": ...}`; float32 values are written with the shortest digits that round-trip.

Only numpy and the standard library are used, so the REST client does not need TensorFlow.
Malformed JSON raises `JsonTensorError` with a message naming what is wrong.
"""

import base64
import binascii
import math

import numpy as np

ROW_FORMAT = "row"
COLUMNAR_FORMAT = "columnar"
BYTES_SUFFIX = "_bytes"

# TensorFlow DataType names (as in SignatureDef metadata) -> numpy dtypes; strings are object
# arrays of `bytes`.
NUMPY_DTYPES = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT8": np.dtype(np.int8),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT16": np.dtype(np.uint16),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_STRING": np.dtype(object),
}


# numpy arrays (and so the tensors built here) have at most this many dimensions.
MAX_RANK = 64


class JsonTensorError(ValueError):
    """A JSON request or response that does not describe valid tensors (maps to INVALID_ARGUMENT)."""


def _is_b64_object(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value):
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise JsonTensorError(f"unable to base64-decode {_preview(value)}: {err}") from None


def _preview(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaf(value, dtype, where):
    """Converts one JSON scalar to a numpy-compatible Python value of `dtype`."""
    if dtype == object:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64_object(value):
            return _decode_b64(value)
        raise JsonTensorError(f"{where}: expected a string or {{\"b64\": ...}}, got {_preview(value)}")
    if isinstance(value, (dict, list)):
        raise JsonTensorError(f"{where}: expected a number, got {_preview(value)}")
    if dtype == np.bool_:
        if not isinstance(value, bool):
            raise JsonTensorError(f"{where}: expected true or false, got {_preview(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JsonTensorError(f"{where}: expected a number, got {_preview(value)}")
    if dtype.kind in "iu":
        if not isinstance(value, int):
            raise JsonTensorError(f"{where}: expected an integer for {dtype.name}, got {value!r}")
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise JsonTensorError(f"{where}: {value} is out of the {dtype.name} range")
        return value
    try:
        magnitude = abs(float(value))
    except OverflowError:  # an integer beyond any float
        magnitude = math.inf
    # NaN and infinities are valid JSON floats for TF Serving; finite values must fit.
    if magnitude > float(np.finfo(dtype).max) and not (isinstance(value, float) and math.isinf(value)):
        raise JsonTensorError(f"{where}: {value!r} does not fit in {dtype.name}")
    return value


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _flatten(value, shape, dtype, where, level=0, out=None):
    out = [] if out is None else out
    if level == len(shape):
        if isinstance(value, list):
            raise JsonTensorError(f"{where}: list nested deeper than the first element's rank")
        out.append(_leaf(value, dtype, where))
        return out
    if not isinstance(value, list):
        raise JsonTensorError(
            f"{where}: found the value {_preview(value)} at nesting level {level + 1}, "
            f"expected a list (tensors must be dense)"
        )
    if len(value) != shape[level]:
        raise JsonTensorError(
            f"{where}: ragged list of size {len(value)} at level {level}, expected {shape[level]} "
            f"(tensors must be dense)"
        )
    for item in value:
        _flatten(item, shape, dtype, where, level + 1, out)
    return out


def json_to_array(value, dtype, where="value"):
    """Converts one JSON tensor (scalar or dense nested list) to a numpy array of `dtype`."""
    dtype = np.dtype(dtype)
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise JsonTensorError(f"{where}: lists nested {len(shape)} deep, at most {MAX_RANK} are supported")
    flat = _flatten(value, shape, dtype, where)
    array = np.empty(len(flat), dtype=dtype)
    array[:] = flat
    return array.reshape(shape)


def _is_named_object(value):
    return isinstance(value, dict) and not _is_b64_object(value)


def _rows_to_arrays(instances, input_dtypes):
    if not isinstance(instances, list):
        raise JsonTensorError("'instances' must be a list")
    if not instances:
        raise JsonTensorError("no values in the 'instances' list")
    names = sorted(input_dtypes)
    named = _is_named_object(instances[0])
    if not named and len(names) > 1:
        raise JsonTensorError(
            f"'instances' is a plain list, but the signature has several inputs ({', '.join(names)}): "
            f"each instance must be an object with one key per input"
        )
    columns = {name: [] for name in names}
    for index, item in enumerate(instances):
        if named != _is_named_object(item):
            kind = "an object" if named else "a value or list"
            raise JsonTensorError(f"item {index} of 'instances': expected {kind} like item 0")
        values = item if named else {names[0]: item}
        if set(values) != set(names):
            raise JsonTensorError(
                f"item {index} of 'instances' has keys {sorted(values)}, expected {names}"
            )
        for name in names:
            where = f"item {index} key '{name}' of 'instances'"
            array = json_to_array(values[name], input_dtypes[name], where)
            if columns[name] and array.shape != columns[name][0].shape:
                raise JsonTensorError(
                    f"{where}: shape {list(array.shape)} differs from item 0's "
                    f"{list(columns[name][0].shape)}"
                )
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _columns_to_arrays(inputs, input_dtypes):
    names = sorted(input_dtypes)
    if not _is_named_object(inputs):
        if len(names) > 1:
            raise JsonTensorError(
                f"'inputs' is a plain value or list, but the signature has several inputs "
                f"({', '.join(names)}): use an object with one key per input"
            )
        return {names[0]: json_to_array(inputs, input_dtypes[names[0]], "'inputs'")}
    missing = [name for name in names if name not in inputs]
    extra = sorted(set(inputs) - set(names))
    if missing or extra:
        raise JsonTensorError(
            f"'inputs' keys do not match the signature: sent extra {extra}, "
            f"missing but required {missing}"
        )
    return {
        name: json_to_array(inputs[name], input_dtypes[name], f"'inputs' key '{name}'")
        for name in names
    }


def parse_predict_request(body, input_dtypes_for):
    """Parses a `:predict` request body.

    Args:
      body: the decoded JSON object (a dict).
      input_dtypes_for: callable `signature_name -> {input name: numpy dtype}`; it raises for an
        unknown signature. The empty name means `serving_default`.

    Returns:
      `(signature_name, {input name: numpy array}, format)` where format is `ROW_FORMAT` or
      `COLUMNAR_FORMAT`.
    """
    if not isinstance(body, dict):
        raise JsonTensorError("the request body must be a JSON object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise JsonTensorError("'signature_name' must be a string")
    unknown = sorted(set(body) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise JsonTensorError(f"unexpected keys in the request: {unknown}")
    if ("instances" in body) == ("inputs" in body):
        raise JsonTensorError("the request must have exactly one of 'instances' or 'inputs'")
    input_dtypes = input_dtypes_for(signature_name)
    if "instances" in body:
        return signature_name, _rows_to_arrays(body["instances"], input_dtypes), ROW_FORMAT
    return signature_name, _columns_to_arrays(body["inputs"], input_dtypes), COLUMNAR_FORMAT


def _to_json(array, as_bytes):
    """numpy array -> nested JSON-ready lists (scalars for rank 0)."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind == "S":
        def encode(item):
            if as_bytes:
                return {"b64": base64.b64encode(item).decode("ascii")}
            return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item

        flat = [encode(item) for item in array.ravel()]
    elif array.dtype == np.float32 or array.dtype == np.float16:
        # str() of a float32 gives the shortest digits that round-trip (0.2, not 0.200000003).
        flat = [float(str(item)) for item in array.ravel()]
    else:
        return array.tolist()
    nested = np.empty(len(flat), dtype=object)
    nested[:] = flat
    return nested.reshape(array.shape).tolist()


def format_predict_response(outputs, request_format):
    """Builds the `:predict` response JSON object from `{output name: numpy array}`."""
    names = sorted(outputs)
    as_bytes = {name: name.endswith(BYTES_SUFFIX) for name in names}
    if request_format == COLUMNAR_FORMAT:
        if len(names) == 1:
            return {"outputs": _to_json(outputs[names[0]], as_bytes[names[0]])}
        return {"outputs": {name: _to_json(outputs[name], as_bytes[name]) for name in names}}
    batch_sizes = {name: np.shape(outputs[name])[0] if np.ndim(outputs[name]) else None for name in names}
    if None in batch_sizes.values() or len(set(batch_sizes.values())) != 1:
        raise JsonTensorError(
            f"outputs do not share a batch dimension ({batch_sizes}); use the columnar 'inputs' format"
        )
    columns = {name: _to_json(outputs[name], as_bytes[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    count = batch_sizes[names[0]]
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(count)]}


def format_columnar_request(signature_name, inputs):
    """The client side: `{input name: numpy array}` -> a columnar `:predict` request object.

    String inputs are always sent as `{"b64": ...}`, which is valid for text and binary alike.
    """
    return {
        "signature_name": signature_name,
        "inputs": {name: _to_json(value, as_bytes=True) for name, value in inputs.items()},
    }


def parse_columnar_response(body, output_dtypes):
    """The client side: a columnar `:predict` response -> `{output name: numpy array}`.

    Args:
      body: the decoded JSON response object.
      output_dtypes: `{output name: numpy dtype}` of the signature (from its metadata), needed to
        name a single unnamed output and to restore dtypes.
    """
    if not isinstance(body, dict) or "outputs" not in body:
        raise JsonTensorError(f"the response has no 'outputs': {_preview(body)}")
    outputs = body["outputs"]
    names = sorted(output_dtypes)
    if len(names) == 1:
        outputs = {names[0]: outputs}
    elif not _is_named_object(outputs) or set(outputs) != set(names):
        raise JsonTensorError(f"the response outputs do not match the signature outputs {names}")
    return {
        name: json_to_array(outputs[name], output_dtypes[name], f"output '{name}'") for name in names
    }
