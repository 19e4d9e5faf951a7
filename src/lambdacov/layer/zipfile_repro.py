"""A reproducible zip writer: the same entries always give the same bytes.

zipfile's defaults leak the build machine into the archive (file mtimes,
umask-dependent modes, directory walk order, the host OS). Here every one of
those is fixed, so a layer built twice from the same inputs has the same
sha256 and Lambda sees the same layer content.

The bytes also depend on zlib's deflate implementation; builds agree across
machines that ship the same zlib (every CPython build of the stock zlib does).
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

# The earliest timestamp a zip can record; any fixed value works, this one
# says plainly that it is not a real time.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 9
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIRECTORY_MODE = 0o755
_UNIX = 3  # zip "version made by" host: tells unzip that external_attr holds unix modes
_MSDOS_DIRECTORY_FLAG = 0x10


@dataclass(frozen=True)
class ZipEntry:
    """One file of the archive: its path inside the zip, its bytes and its unix mode."""

    name: str
    data: bytes
    mode: int = FILE_MODE

    def __post_init__(self) -> None:
        path = PurePosixPath(self.name)
        if (
            not self.name
            or self.name.endswith("/")
            or path.is_absolute()
            or ".." in path.parts
            or "\\" in self.name
        ):
            raise ValueError(f"not a relative file path inside a zip: {self.name!r}")
        if self.mode & ~0o777:
            raise ValueError(f"mode must be permission bits only, got {oct(self.mode)}")


def directories_of(names: Iterable[str]) -> list[str]:
    """Every parent directory of the given file names, as zip directory names ending in '/'."""
    directories: set[str] = set()
    for name in names:
        for parent in PurePosixPath(name).parents:
            if parent != PurePosixPath("."):
                directories.add(f"{parent}/")
    return sorted(directories)


def write_reproducible_zip(destination: Path | IO[bytes], entries: Sequence[ZipEntry]) -> None:
    """Write ``entries`` as a new zip to ``destination`` (a path or binary file), reproducibly.

    Entries are written in name order, preceded by an explicit 0755 entry for
    every directory (so unpacking never depends on the unpacker's umask), all
    dated 1980-01-01 00:00:00 and deflated at a fixed level. Duplicate names
    are an error rather than a silently shadowed file.
    """
    by_name: dict[str, ZipEntry] = {}
    for entry in entries:
        if entry.name in by_name:
            raise ValueError(f"duplicate zip entry: {entry.name}")
        by_name[entry.name] = entry

    with zipfile.ZipFile(destination, "w") as archive:
        # A directory name ("a/") sorts before everything under it ("a/b"),
        # so one sort gives parents-first order.
        for name in sorted([*by_name, *directories_of(by_name)]):
            if name.endswith("/"):
                info = _zip_info(name, stat.S_IFDIR | DIRECTORY_MODE)
                info.external_attr |= _MSDOS_DIRECTORY_FLAG
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, b"")
            else:
                entry = by_name[name]
                info = _zip_info(name, stat.S_IFREG | entry.mode)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entry.data, compresslevel=COMPRESS_LEVEL)


def _zip_info(name: str, full_mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.create_system = _UNIX
    info.external_attr = full_mode << 16
    return info


def content_hash(entries: Iterable[ZipEntry]) -> str:
    """A sha256 over the entries' names, modes and bytes, independent of zip encoding.

    Each entry contributes its name, octal mode and length, NUL-separated,
    then its bytes; the length prefix keeps the framing unambiguous. The
    result is ``"sha256:<hex>"``.
    """
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item.name):
        digest.update(f"{entry.name}\0{entry.mode:o}\0{len(entry.data)}\0".encode())
        digest.update(entry.data)
    return f"sha256:{digest.hexdigest()}"
