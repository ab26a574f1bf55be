"""Qt resource bundle reader, on bundles written here byte by byte from the format description."""

import os
import struct
import zlib
from xml.etree import ElementTree

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


def test_reads_a_bundle_written_by_qt_rcc():
    # tests/data/qt/hanoi.rcc: a bundle written by Qt's own rcc, as Debian's gcompris-qt-data 3.1-2
    # ships it (/usr/share/gcompris-qt/rcc/hanoi.rcc, GPL-3+), committed so that this never skips.
    bundle = RccBundle.from_file(os.path.join(os.path.dirname(__file__), "qt", "hanoi.rcc"))
    by_path = {e.path: e for e in bundle.entries()}
    folder = "gcompris/src/activities/hanoi/"
    assert sorted(by_path) == [folder + name for name in ("ActivityInfo.qml", "Hanoi.qml", "hanoi.svg")]
    svg = by_path[folder + "hanoi.svg"]
    assert svg.flags & FLAG_COMPRESSED  # qCompress'ed by rcc: size word + zlib stream
    root = ElementTree.fromstring(bundle.read(svg))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    qml = by_path[folder + "Hanoi.qml"]
    assert not qml.flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_ZSTD)  # small files are stored raw
    assert bundle.read(qml).decode("utf-8").startswith("/* GCompris - Hanoi.qml")