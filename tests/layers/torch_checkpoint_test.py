"""The restricted reader of legacy PyTorch checkpoints: exact arrays, and no code from the file."""

import collections
import pickle
import struct

import numpy as np
import pytest

from tfgcrf.layers.torch_checkpoint import UnsafeCheckpointError, read_legacy_state_dict

_MAGIC = 0x1950A86A20F9469CFC6C


class _Writer(pickle.Pickler):
    """Writes the legacy layout by hand: tensors as _rebuild_tensor_v2 of persistent storages."""

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and obj and obj[0] == "storage":
            return obj
        return None


def _write_checkpoint(path, tensors, extra_global=None):
    """A legacy checkpoint of float32 `tensors` ({name: array}) written without torch."""
    import io
    import types

    # Stand-in modules so that pickle writes the global names torch uses.
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args):
        pass

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    import sys

    sys.modules.setdefault("torch", torch)
    sys.modules.setdefault("torch._utils", utils)

    class Tensor:
        def __init__(self, key, array):
            self.key, self.array = key, array

        def __reduce__(self):
            storage = ("storage", FloatStorage, self.key, "cpu", self.array.size)
            stride = tuple(s // 4 for s in self.array.strides)
            return (_rebuild_tensor_v2, (storage, 0, self.array.shape, stride, False, {}))

    class Evil:
        def __reduce__(self):
            return extra_global

    state = collections.OrderedDict(
        (name, Tensor(str(i), np.ascontiguousarray(a, np.float32)))
        for i, (name, a) in enumerate(tensors.items())
    )
    if extra_global is not None:
        state["evil"] = Evil()
    buffer = io.BytesIO()
    for header in (_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    _Writer(buffer, protocol=2).dump(state)
    pickle.dump([str(i) for i in range(len(tensors))], buffer, protocol=2)
    for array in tensors.values():
        flat = np.ascontiguousarray(array, np.float32).reshape(-1)
        buffer.write(struct.pack("<q", flat.size) + flat.tobytes())
    path.write_bytes(buffer.getvalue())
    sys.modules.pop("torch", None)
    sys.modules.pop("torch._utils", None)


def test_reads_tensors_exactly(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.normal(size=(4, 3, 3, 3)), "bn.bias": rng.normal(size=(4,))}
    path = tmp_path / "model.pth"
    _write_checkpoint(path, tensors)
    state = read_legacy_state_dict(path)
    assert list(state) == list(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(state[name], array.astype(np.float32))


def test_refuses_any_other_global(tmp_path):
    import os

    path, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    _write_checkpoint(path, {"w": np.ones(2)}, extra_global=(os.system, (f"touch {marker}",)))
    with pytest.raises(UnsafeCheckpointError, match="system, which is not admitted"):
        read_legacy_state_dict(path)
    assert not marker.exists()


def test_refuses_other_files(tmp_path):
    path = tmp_path / "not.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UnsafeCheckpointError, match="magic"):
        read_legacy_state_dict(path)
