"""Layers as Lambda lays them out: each one unpacked, in order, into one /opt.

Lambda extracts a function's layers into /opt in the order they are listed;
a file of a later layer replaces the file of an earlier one at the same path.
:func:`merge_layers` does the same with layer .zip files and /opt-like
directories. A single directory is used as it is (nothing to merge, and the
emulator's long-standing behaviour), anything else is copied or extracted
into a fresh directory.

Zips come from users and, with ``--deployed``, from AWS: :func:`extract_zip`
treats them as untrusted. Entries stay inside the target (zipfile already drops
``..`` and absolute parts; a symlink on the way out is refused too), symlinks
are kept only when they point inside the target, unix modes are kept
(extensions must stay executable), and the unzipped total is bounded by
Lambda's own quota for a function's code and layers.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from lambdacov.errors import UsageError

#: Lambda's quota for a function's code plus all its layers, unzipped.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024


class Budget:
    """What is left of the unzipped bytes one function may use, across its layers and code."""

    def __init__(self, limit: int = MAX_UNZIPPED_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, size: int, what: str) -> None:
        """Count ``size`` more bytes; UsageError once over the limit."""
        self.used += size
        if self.used > self.limit:
            raise UsageError(
                f"{what}: over Lambda's limit of {self.limit // (1024 * 1024)} MB unzipped "
                "for a function's code and layers",
                "use smaller layers, as Lambda would refuse these",
            )


def merge_layers(layers: Sequence[Path], target: Path, budget: Budget | None = None) -> Path:
    """Return the /opt directory for ``layers``: merged in order into ``target`` when needed.

    No layer gives an empty ``target``; one directory is returned as it is;
    otherwise each layer (zip or directory) is laid over the previous ones in
    ``target``, which must not exist yet.
    """
    paths = [Path(layer).resolve() for layer in layers]
    for path in paths:
        if not path.is_dir() and not zipfile.is_zipfile(path):
            raise UsageError(
                f"layer {path} is neither a directory nor a .zip file",
                "pass a layer .zip or an /opt-like directory",
            )
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    target.mkdir(parents=True)
    budget = budget or Budget()
    for path in paths:
        if path.is_dir():
            copy_tree(path, target, budget)
        else:
            extract_zip(path, target, budget)
    return target


def extract_zip(archive_path: Path, target: Path, budget: Budget | None = None) -> None:
    """Extract a zip into ``target`` as Lambda does, overwriting files of earlier layers."""
    budget = budget or Budget()
    root = target.resolve()
    with zipfile.ZipFile(archive_path) as archive:
        members = archive.infolist()
        # Sizes are checked before anything is written: a zip bomb costs nothing.
        budget.spend(sum(info.file_size for info in members), str(archive_path))
        for info in members:
            relative = _member_path(info.filename, archive_path)
            if relative is None:
                continue
            destination = _inside(root, relative, archive_path)
            mode = (info.external_attr >> 16) & 0o177777
            if info.is_dir():
                _make_dir(destination, root, archive_path)
            elif stat.S_ISLNK(mode):
                link = archive.read(info).decode("utf-8", errors="replace")
                _make_symlink(destination, link, root, archive_path)
            else:
                _make_dir(destination.parent, root, archive_path)
                _clear(destination)
                with archive.open(info) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, _COPY_CHUNK)
                # zipfile drops the unix mode; Lambda keeps it (extensions must be executable).
                if mode & 0o7777:
                    destination.chmod(mode & 0o7777)
    _links_stay_inside(root, archive_path)


def copy_tree(source: Path, target: Path, budget: Budget | None = None) -> None:
    """Lay the directory ``source`` over ``target`` (files replaced, symlinks copied as links)."""
    budget = budget or Budget()
    root = target.resolve()
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        for name in sorted(dirs + files):
            path = here / name
            relative = PurePosixPath(path.relative_to(source).as_posix())
            destination = _inside(root, relative, source)
            if path.is_symlink():
                _make_symlink(destination, str(path.readlink()), root, source)
            elif path.is_dir():
                _make_dir(destination, root, source)
            elif path.is_file():
                budget.spend(path.stat().st_size, str(source))
                _clear(destination)
                shutil.copy2(path, destination)
        # A symlink to a directory is copied as a link, never walked into.
        dirs[:] = [name for name in dirs if not (here / name).is_symlink()]
    _links_stay_inside(root, source)


def _links_stay_inside(root: Path, origin: Path) -> None:
    """Every symlink under ``root`` still leads inside it, now that ``origin`` is laid over it.

    Each link was checked when it was made, but a later entry may re-point a
    link that an earlier one passes through (``L -> b/..``, then ``b -> .``).
    """
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() and not _resolves_inside(path, root):
                raise UsageError(
                    f"layer {origin}: symlink {path.relative_to(root)} -> {path.readlink()} "
                    "leads outside /opt",
                    "use relative symlinks that stay inside the layer",
                )


def _member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The entry's path relative to the target; None for the root itself."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts) or name.startswith("/"):
        raise UsageError(
            f"layer {archive} has an entry outside its root: {name!r}",
            "rebuild the zip with relative paths",
        )
    return PurePosixPath(*parts) if parts else None


def _inside(root: Path, relative: PurePosixPath, origin: Path) -> Path:
    """``root / relative``, refused if an existing symlink on the way leads out of ``root``."""
    destination = root.joinpath(*relative.parts)
    if not destination.parent.resolve().is_relative_to(root):
        raise UsageError(
            f"layer {origin}: {relative} would be written outside /opt through a symlink",
            "remove the symlink from the earlier layer",
        )
    return destination


def _make_dir(path: Path, root: Path, origin: Path) -> None:
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        raise UsageError(
            f"layer {origin}: {path.relative_to(root)} is a symlink out of /opt",
            "remove the symlink from the earlier layer",
        )
    path.mkdir(parents=True, exist_ok=True)


def _make_symlink(destination: Path, link: str, root: Path, origin: Path) -> None:
    """Recreate a layer's symlink, only if it points inside /opt (Lambda keeps symlinks)."""
    pointed = (destination.parent / link).resolve()
    if PurePosixPath(link).is_absolute() or not pointed.is_relative_to(root):
        raise UsageError(
            f"layer {origin}: symlink {destination.relative_to(root)} -> {link} "
            "points outside /opt",
            "use relative symlinks that stay inside the layer",
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    _clear(destination)
    destination.symlink_to(link)


def _clear(path: Path) -> None:
    """Remove what an earlier layer put at ``path`` (a later layer's file replaces it)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _resolves_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        # A loop of links (RuntimeError before Python 3.13, which resolves it to a path
        # inside instead): it leads nowhere, so not out either.
        return True
