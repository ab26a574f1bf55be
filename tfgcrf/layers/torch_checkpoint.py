"""Reads a legacy (non-zip) PyTorch checkpoint into numpy arrays, without torch and without
executing anything from the file.

The legacy format (torch.save with `_use_new_zipfile_serialization=False`) is a sequence of
pickles: a magic number, the protocol version, system info, the state dict (its tensors refer to
storages by persistent id), the list of storage keys; then, for each key in that order, the
storage's element count (int64) and its raw little-endian bytes.

`pickle` can run arbitrary code through the globals a pickle names, so the unpickler admits only
`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the `torch.*Storage` classes, each
mapped to a local stand-in; any other global raises `UnsafeCheckpointError`.
"""

import collections
import pickle
import struct

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(ValueError):
    """The checkpoint names a global outside the admitted tensor-rebuilding ones, or is malformed."""


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


class _TensorRef:
    """A tensor view (storage key, offset, size, stride), resolved once the storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride


def _rebuild_tensor_v2(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(f"checkpoint refers to {module}.{name}, which is not admitted")

    def persistent_load(self, pid):
        # ("storage", storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError("persistent id without a storage type")
        return (key, storage_type.dtype)


def read_legacy_state_dict(path):
    """The state dict of a legacy PyTorch checkpoint file as `{name: np.ndarray}`.

    Args:
        path: the `.pth` file.

    Returns:
        An ordered dict of name -> numpy array (a copy; the file is closed).

    Raises:
        UnsafeCheckpointError: the file is not a legacy checkpoint, or names a global that is not
            admitted.
    """
    with open(path, "rb") as stream:
        load = lambda: _RestrictedUnpickler(stream).load()  # noqa: E731
        if load() != _MAGIC:
            raise UnsafeCheckpointError(f"{path}: not a legacy PyTorch checkpoint (bad magic number)")
        load()  # protocol version
        info = load()
        if not isinstance(info, dict) or not info.get("little_endian", True):
            raise UnsafeCheckpointError(f"{path}: only little-endian checkpoints are supported")
        state = load()
        keys = load()
        storages = {}
        dtypes = {}
        for value in state.values():
            if isinstance(value, _TensorRef):
                dtypes[value.storage[0]] = value.storage[1]
        for key in keys:
            (count,) = struct.unpack("<q", stream.read(8))
            dtype = np.dtype(dtypes.get(str(key), np.float32))
            data = stream.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise UnsafeCheckpointError(f"{path}: truncated storage {key}")
            storages[str(key)] = np.frombuffer(data, dtype=dtype)
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            continue
        flat = storages[value.storage[0]]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[value.offset :],
            shape=value.size,
            strides=tuple(s * itemsize for s in value.stride),
        )
        arrays[name] = np.array(view)
    return arrays
