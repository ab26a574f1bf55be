"""Reader for Qt binary resource bundles (`.rcc` files, as written by `rcc -binary`).

GCompris ships its pictures inside such bundles. The format (Qt's `rcc.cpp` / `qresource.cpp`):

- header, big-endian: magic `b"qres"`, format version (1, 2 or 3), then the offsets of the tree,
  data and names sections (format 3 adds a 32-bit flags word);
- tree: fixed-size nodes (14 bytes, plus an 8-byte modification time from format 2 on), node 0 is
  the root. A node is `name_offset u32, flags u16`, then for a directory `child_count u32,
  first_child u32` (index of its first child node), for a file `country u16, language u16,
  data_offset u32`;
- names: `length u16, hash u32`, then `length` UTF-16BE code units;
- data: `size u32` then `size` bytes. A zlib-compressed entry (flag 0x01) holds Qt's `qCompress`
  layout: the uncompressed size as u32, then a zlib stream. Zstandard entries (flag 0x04) are
  reported as unsupported rather than misread.
"""

import struct
import zlib

from tfgcrf.errors import InputError

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04
_HEADER = struct.Struct(">4sIIII")
_NODE_HEAD = struct.Struct(">IH")
_DIR_TAIL = struct.Struct(">II")
_FILE_TAIL = struct.Struct(">HHI")


class RccEntry:
    """A file stored in an rcc bundle.

    Args:
        path: '/'-separated path inside the bundle, without a leading slash.
        flags: the node's flags (`FLAG_COMPRESSED`, `FLAG_COMPRESSED_ZSTD`).
        offset: absolute byte offset of the entry's data record in the bundle.
    """

    def __init__(self, path, flags, offset):
        self.path = path
        self.flags = flags
        self.offset = offset

    def __repr__(self):
        return f"RccEntry({self.path!r}, flags={self.flags:#x})"


class RccBundle:
    """A parsed rcc bundle: list its files with `entries()`, read one with `read(entry)`.

    Args:
        blob: the whole content of the `.rcc` file.
        name: what to call the bundle in error messages (e.g. its file path).

    Raises:
        InputError: when the blob is not a well-formed rcc bundle.
    """

    def __init__(self, blob, name="<rcc>"):
        self._blob = blob
        self._name = name
        if len(blob) < _HEADER.size:
            raise InputError(f"{name}: too short to be a Qt resource bundle")
        magic, self.version, self._tree, self._data, self._names = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise InputError(f"{name}: not a Qt resource bundle (bad magic {magic!r})")
        if self.version not in (1, 2, 3):
            raise InputError(f"{name}: unsupported Qt resource format version {self.version}")
        self._node_size = 14 if self.version == 1 else 22

    @classmethod
    def from_file(cls, path):
        """Reads and parses the bundle at `path`."""
        with open(path, "rb") as fh:
            return cls(fh.read(), name=str(path))

    def _unpack(self, fmt, offset):
        try:
            return fmt.unpack_from(self._blob, offset)
        except struct.error:
            raise InputError(f"{self._name}: truncated Qt resource bundle") from None

    def _node_name(self, name_offset):
        offset = self._names + name_offset
        (length,) = self._unpack(struct.Struct(">H"), offset)
        start = offset + 6  # skip length and the 32-bit name hash
        raw = self._blob[start : start + 2 * length]
        if len(raw) != 2 * length:
            raise InputError(f"{self._name}: truncated Qt resource bundle")
        return raw.decode("utf-16-be")

    def entries(self):
        """Returns every file entry, depth-first in tree order (deterministic)."""
        found = []
        # Each stack item: (node index, path of the directory holding the node).
        stack = [(0, "")]
        visited = set()
        while stack:
            index, parent = stack.pop()
            if index in visited:
                raise InputError(f"{self._name}: cycle in Qt resource tree")
            visited.add(index)
            node = self._tree + index * self._node_size
            name_offset, flags = self._unpack(_NODE_HEAD, node)
            name = "" if index == 0 else self._node_name(name_offset)
            path = f"{parent}/{name}" if parent else name
            if flags & FLAG_DIRECTORY:
                count, first = self._unpack(_DIR_TAIL, node + _NODE_HEAD.size)
                # Reversed so that popping the stack visits children in stored order.
                stack.extend((child, path) for child in reversed(range(first, first + count)))
            else:
                _, _, data_offset = self._unpack(_FILE_TAIL, node + _NODE_HEAD.size)
                found.append(RccEntry(path, flags, self._data + data_offset))
        return found

    def read(self, entry):
        """Returns the uncompressed bytes of `entry`.

        Raises:
            InputError: for a truncated or corrupt record, or a Zstandard-compressed entry.
        """
        (size,) = self._unpack(struct.Struct(">I"), entry.offset)
        payload = self._blob[entry.offset + 4 : entry.offset + 4 + size]
        if len(payload) != size:
            raise InputError(f"{self._name}: truncated data for {entry.path}")
        if entry.flags & FLAG_COMPRESSED_ZSTD:
            raise InputError(f"{self._name}: {entry.path} is Zstandard-compressed (unsupported)")
        if not entry.flags & FLAG_COMPRESSED:
            return payload
        if size < 4:
            raise InputError(f"{self._name}: corrupt compressed data for {entry.path}")
        (expected,) = struct.unpack_from(">I", payload)
        try:
            data = zlib.decompress(payload[4:])
        except zlib.error as err:
            raise InputError(f"{self._name}: corrupt compressed data for {entry.path}: {err}") from None
        if len(data) != expected:
            raise InputError(f"{self._name}: {entry.path} decompressed to {len(data)} bytes, expected {expected}")
        return data
