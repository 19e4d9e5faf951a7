"""Finding, downloading and verifying the coverage.py wheel for a target runtime.

The wheel comes from, in order: a directory the user names (``--wheel-dir``,
nothing is downloaded then), the user's wheel cache, or ``pip download`` from
the configured index, whose result is stored in the cache. Whatever its
source, a wheel is only used after its RECORD hashes check out and it holds
the C tracer built for the target's ABI and machine: without the tracer,
coverage.py falls back to its pure-Python tracer, several times slower in
every traced function.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lambdacov.errors import BuildError
from lambdacov.layer.targets import Target, host_python
from lambdacov.paths import cache_root

PROJECT = "coverage"
DOWNLOAD_TIMEOUT_SECONDS = 180.0
_ELF_MACHINE = {"x86_64": 62, "aarch64": 183}  # e_machine values from the ELF spec
_HASH_SUFFIX = ".sha256"


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name (PEP 427) that matter here."""

    project: str
    version: str
    tags: frozenset[tuple[str, str, str]]


@dataclass(frozen=True)
class ResolvedWheel:
    """A verified wheel on disk, where it came from, and its sha256."""

    path: Path
    sha256: str
    source: str  # "wheel-dir", "cache", "download" or "installed"


def parse_wheel_name(filename: str) -> WheelName | None:
    """Parse a wheel file name; None when it is not one.

    Uses ``packaging`` when it is installed (it knows every corner of the
    spec), otherwise a small parser that handles names as PyPI serves them.
    """
    try:
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    except ImportError:
        return _parse_wheel_name_plainly(filename)
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        return None
    return WheelName(
        project=str(name),
        version=str(version),
        tags=frozenset((tag.interpreter, tag.abi, tag.platform) for tag in tags),
    )


def _parse_wheel_name_plainly(filename: str) -> WheelName | None:
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):  # name-version[-build]-python-abi-platform
        return None
    name, version, interpreters, abis, platforms = parts[0], parts[1], *parts[-3:]
    # Each tag field may be a '.'-joined set; the wheel supports every combination.
    tags = frozenset(
        (interpreter, abi, platform)
        for interpreter in interpreters.split(".")
        for abi in abis.split(".")
        for platform in platforms.split(".")
    )
    project = re.sub(r"[-_.]+", "-", name).lower()
    return WheelName(project=project, version=version, tags=tags)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lambdacov/wheels``, or ``~/.cache/lambdacov/wheels``."""
    return cache_root() / "wheels"


def resolve_wheel(
    target: Target,
    version: str,
    *,
    wheel_dir: Path | None,
    cache_dir: Path,
    scratch: Path,
    download_timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> ResolvedWheel:
    """Find or download the verified coverage wheel for ``target``.

    ``scratch`` is a directory that lives as long as the build; a download
    that cannot be stored in the cache is used from there.
    """
    if wheel_dir is not None:
        return _from_wheel_dir(target, version, wheel_dir)
    cached = _from_cache(target, version, cache_dir)
    if cached is not None:
        return cached
    try:
        return _download(target, version, cache_dir, scratch, download_timeout)
    except BuildError:
        # Offline: the coverage installed beside lambdacov is the right wheel when
        # this machine is the target (same Python and architecture, compatible glibc).
        installed = _from_installed(target, version, scratch)
        if installed is None:
            raise
        return installed


def _matching_wheels(target: Target, version: str, directory: Path) -> Iterator[Path]:
    for path in sorted(directory.glob("*.whl")):
        name = parse_wheel_name(path.name)
        if (
            name is not None
            and name.project == PROJECT
            and name.version == version
            and any(target.accepts_tag(*tag) for tag in name.tags)
        ):
            yield path


def _from_wheel_dir(target: Target, version: str, wheel_dir: Path) -> ResolvedWheel:
    if not wheel_dir.is_dir():
        raise BuildError(
            f"wheel directory {wheel_dir} does not exist",
            "pass --wheel-dir a directory holding the coverage wheel",
        )
    for path in _matching_wheels(target, version, wheel_dir):
        return ResolvedWheel(path, verify_wheel(path, target), "wheel-dir")
    present = sorted(path.name for path in wheel_dir.glob("coverage-*.whl"))
    raise BuildError(
        f"no coverage {version} wheel for {target.runtime} {target.arch} in {wheel_dir}"
        + (f" (found: {', '.join(present)})" if present else ""),
        f"put one there with: {_pip_download_hint(target, version, wheel_dir)}",
    )


def _from_cache(target: Target, version: str, cache_dir: Path) -> ResolvedWheel | None:
    if not cache_dir.is_dir():
        return None
    for path in _matching_wheels(target, version, cache_dir):
        recorded = _read_recorded_hash(path)
        try:
            sha256 = verify_wheel(path, target)
        except BuildError:
            recorded = None  # a damaged cache entry is replaced by a fresh download
        else:
            if recorded is None or recorded == sha256:
                return ResolvedWheel(path, sha256, "cache")
        _discard(path)
    return None


def _download(
    target: Target, version: str, cache_dir: Path, scratch: Path, timeout: float
) -> ResolvedWheel:
    destination = Path(tempfile.mkdtemp(prefix="download-", dir=scratch))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *(option for platform in target.pip_platforms() for option in ("--platform", platform)),
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--abi",
        target.cp_tag,
        "--dest",
        str(destination),
        f"{PROJECT}=={version}",
    ]
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    no_wheel_hint = (
        "check the network and the package index, or download the wheel where you can "
        f"and pass --wheel-dir: {_pip_download_hint(target, version, Path('wheels'))}"
    )
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=environment, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BuildError(
            f"downloading coverage {version} for {target.runtime} {target.arch} "
            f"took longer than {timeout:.0f} s",
            no_wheel_hint,
        ) from error
    if completed.returncode != 0:
        if "No module named pip" in completed.stderr:
            raise BuildError(
                f"cannot download the coverage wheel: pip is not installed for {sys.executable}",
                "install pip in lambdacov's environment, or pass --wheel-dir",
            )
        raise BuildError(
            f"could not download coverage {version} for {target.runtime} {target.arch}: "
            f"{_last_line(completed.stderr)}",
            no_wheel_hint,
        )
    found = list(_matching_wheels(target, version, destination))
    if not found:
        raise BuildError(
            f"pip downloaded no coverage {version} wheel matching {target.runtime} {target.arch}",
            no_wheel_hint,
        )
    sha256 = verify_wheel(found[0], target)
    return _store_in_cache(found[0], sha256, cache_dir)


def _from_installed(target: Target, version: str, scratch: Path) -> ResolvedWheel | None:
    """Rebuild the coverage wheel from its installed files, when they suit ``target``."""
    try:
        distribution = importlib.metadata.distribution(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return None
    if (
        distribution.version != version
        or target.python != host_python()
        or target.machine != platform.machine()
    ):
        return None
    tags = [
        line.split(":", 1)[1].strip()
        for line in (distribution.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    usable = [tag for tag in tags if target.accepts_platform(tag.rsplit("-", 1)[-1])]
    if not usable or not distribution.files:
        return None  # built from source here: nothing says it runs on Lambda's glibc
    wheel = scratch / f"{PROJECT}-{version}-{usable[0]}.whl"
    records = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(distribution.files, key=str):
            name = file.as_posix()
            if name.endswith((".pyc", "/RECORD")) or "__pycache__" in name:
                continue
            if name.startswith("..") or name.endswith(".pth"):
                continue  # scripts and .pth files live outside the package
            content = Path(str(file.locate())).read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
            records.append(f"{name},sha256={digest.decode()},{len(content)}")
            archive.writestr(name, content)
        record = f"{PROJECT}-{version}.dist-info/RECORD"
        archive.writestr(record, "\n".join([*records, f"{record},,"]) + "\n")
    return ResolvedWheel(wheel, verify_wheel(wheel, target), "installed")


def _store_in_cache(path: Path, sha256: str, cache_dir: Path) -> ResolvedWheel:
    """Move a verified download into the cache; on a read-only cache, use it in place."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cached = cache_dir / path.name
        # Write the recorded hash first: a crash in between leaves a wheel
        # whose hash is known, never an unverifiable one.
        _write_atomically(cache_dir / f"{path.name}{_HASH_SUFFIX}", f"{sha256}\n".encode())
        staged = cache_dir / f".{path.name}.{os.getpid()}.tmp"
        shutil.copyfile(path, staged)
        staged.replace(cached)
    except OSError:
        return ResolvedWheel(path, sha256, "download")
    return ResolvedWheel(cached, sha256, "download")


def verify_wheel(path: Path, target: Target) -> str:
    """Check a wheel's integrity and its C tracer; return the wheel's sha256.

    Every file listed with a hash in the wheel's RECORD must match it, and the
    wheel must hold ``coverage/tracer.cpython-3X*-<machine>-linux-gnu.so``
    built for the target's machine.
    """
    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            _check_record(wheel, path)
            tracer = find_tracer(wheel.namelist(), target)
            if tracer is None:
                raise BuildError(
                    f"{path.name} has no C tracer for {target.runtime} {target.arch}",
                    "use the manylinux wheel for the target (a pure-Python coverage would "
                    "slow every traced call several times over)",
                )
            _check_elf_machine(wheel.read(tracer), target, path)
    except zipfile.BadZipFile as error:
        raise BuildError(
            f"{path.name} is not a valid wheel: {error}", "delete it and build again"
        ) from error
    return hashlib.sha256(data).hexdigest()


def find_tracer(names: list[str], target: Target) -> str | None:
    """The name of the C tracer extension for ``target`` among wheel entries, if any."""
    pattern = re.compile(
        rf"coverage/tracer\.cpython-3{target.minor}[a-z]*-{target.machine}-linux-gnu\.so"
    )
    return next((name for name in names if pattern.fullmatch(name)), None)


def _check_record(wheel: zipfile.ZipFile, path: Path) -> None:
    records = [name for name in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/RECORD", name)]
    if len(records) != 1:
        raise BuildError(f"{path.name} has no RECORD file", "use a wheel as built by the project")
    rows = csv.reader(io.StringIO(wheel.read(records[0]).decode("utf-8")))
    for row in rows:
        if len(row) < 2 or not row[1]:
            continue  # RECORD lists itself (and signatures) without a hash
        name, hash_field = row[0], row[1]
        algorithm, _, expected = hash_field.partition("=")
        if algorithm != "sha256":
            raise BuildError(
                f"{path.name} records {name} with an unsupported hash {algorithm!r}",
                "use a wheel as built by the project",
            )
        try:
            content = wheel.read(name)
        except KeyError as error:
            raise BuildError(
                f"{path.name} lists {name} in RECORD but does not contain it",
                "delete the wheel and download it again",
            ) from error
        actual = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        if actual != expected:
            raise BuildError(
                f"{path.name} is corrupt: {name} does not match its RECORD hash",
                "delete the wheel and download it again",
            )


def _check_elf_machine(content: bytes, target: Target, path: Path) -> None:
    # e_machine is the little-endian uint16 at offset 18 of an ELF header.
    if content[:4] != b"\x7fELF" or int.from_bytes(content[18:20], "little") != _ELF_MACHINE.get(
        target.machine
    ):
        raise BuildError(
            f"the C tracer in {path.name} is not a Linux {target.machine} library",
            "use the manylinux wheel built for the target architecture",
        )


def wheel_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` for each file a wheel installs into site-packages.

    Directory entries are skipped; names that would escape the install
    directory are refused.
    """
    with zipfile.ZipFile(path) as wheel:
        for info in wheel.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename).parts
            if not parts or ".." in parts or info.filename.startswith("/"):
                raise BuildError(
                    f"{path.name} contains an unsafe path {info.filename!r}",
                    "use a wheel as built by the project",
                )
            yield info.filename, wheel.read(info)


def _read_recorded_hash(path: Path) -> str | None:
    try:
        return path.with_name(path.name + _HASH_SUFFIX).read_text().strip() or None
    except OSError:
        return None


def _discard(path: Path) -> None:
    for stale in (path, path.with_name(path.name + _HASH_SUFFIX)):
        stale.unlink(missing_ok=True)


def _write_atomically(path: Path, content: bytes) -> None:
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_bytes(content)
    staged.replace(path)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "pip failed without a message"


def _pip_download_hint(target: Target, version: str, directory: Path) -> str:
    platforms = " ".join(f"--platform {platform}" for platform in target.pip_platforms())
    return (
        f"pip download --no-deps --only-binary=:all: {platforms} "
        f"--python-version {target.python} --implementation cp --abi {target.cp_tag} "
        f"-d {directory} {PROJECT}=={version}"
    )
