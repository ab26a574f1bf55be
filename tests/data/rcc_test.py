"""Qt resource bundle reader, on bundles written here byte by byte from the format description."""

import glob
import struct
import zlib

import pytest

from tfgcrf.data.rcc import FLAG_COMPRESSED, FLAG_COMPRESSED_ZSTD, FLAG_DIRECTORY, RccBundle
from tfgcrf.errors import InputError

PHOTO = bytes(range(256)) * 40  # compressible payload, stored zlib-compressed
NOTE = "ünïcode name, raw payload".encode("utf-8")
README = b"Copyright: someone\n"


def _name_record(name):
    encoded = name.encode("utf-16-be")
    return struct.pack(">HI", len(name), 0) + encoded  # the reader ignores the name hash


def write_rcc(version, zstd=False, wrong_size=False):
    """A bundle holding /photos/a.bin (zlib), /photos/ü.txt (raw) and /README (raw).

    Tree (node index: content): 0 root dir -> [1, 2]; 1 "photos" dir -> [3, 4]; 2 "README" file;
    3 "a.bin" file (compressed); 4 "ü.txt" file.
    """
    names, name_offsets = b"", {}
    for name in ("photos", "README", "a.bin", "ü.txt"):
        name_offsets[name] = len(names)
        names += _name_record(name)

    data, data_offsets = b"", {}
    compressed = struct.pack(">I", len(PHOTO) + (1 if wrong_size else 0)) + zlib.compress(PHOTO)
    for key, payload in (("a.bin", compressed), ("ü.txt", NOTE), ("README", README)):
        data_offsets[key] = len(data)
        data += struct.pack(">I", len(payload)) + payload

    modified = b"\0" * 8 if version >= 2 else b""

    def directory(name_offset, count, first):
        return struct.pack(">IHII", name_offset, FLAG_DIRECTORY, count, first) + modified

    def file(name, flags):
        return struct.pack(">IHHHI", name_offsets[name], flags, 0, 0, data_offsets[name]) + modified

    photo_flags = FLAG_COMPRESSED_ZSTD if zstd else FLAG_COMPRESSED
    tree = (
        directory(0, 2, 1)
        + directory(name_offsets["photos"], 2, 3)
        + file("README", 0)
        + file("a.bin", photo_flags)
        + file("ü.txt", 0)
    )
    header_size = 24 if version >= 3 else 20
    tree_offset = header_size
    data_offset = tree_offset + len(tree)
    names_offset = data_offset + len(data)
    header = struct.pack(">4sIIII", b"qres", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)  # overall flags
    return header + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_lists_and_reads_compressed_and_raw_entries(version):
    bundle = RccBundle(write_rcc(version))
    entries = bundle.entries()
    assert [e.path for e in entries] == ["photos/a.bin", "photos/ü.txt", "README"]
    contents = {e.path: bundle.read(e) for e in entries}
    assert contents == {"photos/a.bin": PHOTO, "photos/ü.txt": NOTE, "README": README}
    assert entries[0].flags & FLAG_COMPRESSED and not entries[1].flags & FLAG_COMPRESSED


def test_from_file(tmp_path):
    path = tmp_path / "bundle.rcc"
    path.write_bytes(write_rcc(2))
    assert len(RccBundle.from_file(path).entries()) == 3


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"qre", "too short"),
        (b"XXXX" + write_rcc(2)[4:], "bad magic"),
        (b"qres" + struct.pack(">I", 9) + write_rcc(2)[8:], "version 9"),
        (write_rcc(2)[:60], "truncated"),
    ],
)
def test_malformed_bundles_raise_one_line_errors(blob, message):
    with pytest.raises(InputError, match=message) as err:
        RccBundle(blob, name="x.rcc").entries()
    assert "\n" not in str(err.value)


def test_zstd_entries_are_reported_not_misread():
    bundle = RccBundle(write_rcc(3, zstd=True))
    photo = bundle.entries()[0]
    with pytest.raises(InputError, match="Zstandard"):
        bundle.read(photo)


def test_size_mismatch_after_decompression_is_an_error():
    bundle = RccBundle(write_rcc(2, wrong_size=True))
    with pytest.raises(InputError, match="expected"):
        bundle.read(bundle.entries()[0])


def test_cycle_in_tree_is_an_error():
    blob = bytearray(write_rcc(1))
    # Make the "photos" directory (node 1) list the root (node 0) as its first child.
    struct.pack_into(">I", blob, 20 + 14 + 10, 0)
    with pytest.raises(InputError, match="cycle"):
        RccBundle(bytes(blob)).entries()


@pytest.mark.skipif(not glob.glob("/usr/share/gcompris-qt/rcc/explore_farm_animals.rcc"),
                    reason="gcompris-qt-data not installed")
def test_reads_a_bundle_written_by_qt_rcc():
    bundle = RccBundle.from_file("/usr/share/gcompris-qt/rcc/explore_farm_animals.rcc")
    by_path = {e.path: e for e in bundle.entries()}
    photo = by_path["gcompris/src/activities/explore_farm_animals/resource/animals/cow.webp"]
    data = bundle.read(photo)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8  # RIFF size matches the entry size
