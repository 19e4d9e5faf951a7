"""The emulated runtime's Python: a cached venv that looks like Lambda's.

Lambda's Python runtime can import ``awslambdaric`` and ``boto3`` and nothing
else of note; in particular ``coverage`` must come from our layer, or a test
of the layer would pass for the wrong reason. So the runtime never runs on the
developer's interpreter (where coverage is installed) but on a venv built
once per Python version and set of distributions, under
``$XDG_CACHE_HOME/lambdacov/runtimes/`` (default ``~/.cache``).

When the requested version is the current interpreter's, the distributions
installed here are hard-linked (or copied) into the venv: no network. For
another version they are installed with that Python's pip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from lambdacov.errors import EmulatorError, UsageError
from lambdacov.paths import cache_root

#: What Lambda's Python runtime provides; their dependencies come along.
RUNTIME_ROOTS = ("awslambdaric", "boto3")
_COMPLETE_MARKER = ".lambdacov-complete"
_VERSION = re.compile(r"^3\.\d{1,2}$")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PIP_TIMEOUT = 900


def current_version() -> str:
    """The ``3.X`` version of the interpreter running lambdacov."""
    from lambdacov.layer.targets import host_python

    return host_python()


def runtime_python(version: str | None = None, *, cache_dir: Path | None = None) -> Path:
    """Return the interpreter of the cached runtime venv for Python ``version``.

    The venv is built on first use, atomically (in a temporary directory
    renamed into place) and under a file lock, so concurrent test workers
    share one build and a crash never leaves a half-built venv behind.
    """
    version = version or current_version()
    if not _VERSION.match(version):
        raise UsageError(
            f"invalid Python version {version!r}", hint="give it as 3.X, for example 3.12"
        )
    runtimes = (cache_dir or cache_root()) / "runtimes"
    base = find_python(version)
    linked = _installed_distributions() if version == current_version() else None
    key = _cache_key(base, linked)
    final = runtimes / f"python{version}-{key}"
    if (final / _COMPLETE_MARKER).exists():
        return final / "bin" / "python"
    runtimes.mkdir(parents=True, exist_ok=True)
    with _locked(runtimes / f".python{version}-{key}.lock"):
        if not (final / _COMPLETE_MARKER).exists():
            _build(base, version, linked, final)
    return final / "bin" / "python"


def find_python(version: str) -> Path:
    """Find an interpreter for Python ``version``: this one, PATH, or pyenv's versions.

    :func:`lambdacov.layer.bytecode.find_interpreter` looks; this says what to
    do when it finds none.
    """
    from lambdacov.layer.bytecode import find_interpreter, pyenv_versions

    found = find_interpreter(version)
    if found is not None:
        return found
    raise EmulatorError(
        f"Python {version} was not found (looked on PATH for python{version} "
        f"and in {pyenv_versions()})",
        hint=f"install it (for example `pyenv install {version}`) or put python{version} on PATH",
    )


def _installed_distributions() -> list[metadata.Distribution] | None:
    """The runtime's distributions as installed here, or None if one of the roots is missing."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(RUNTIME_ROOTS)
    while todo:
        name = _normalise(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in RUNTIME_ROOTS:
                return None
            continue  # a dependency behind a marker this interpreter does not need
        found[name] = dist
        for requirement in dist.requires or []:
            match = _REQUIREMENT_NAME.match(requirement)
            if match and "extra ==" not in requirement:
                todo.append(match.group(1))
    return [found[name] for name in sorted(found)]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _cache_key(base: Path, linked: list[metadata.Distribution] | None) -> str:
    parts = [str(base.resolve())]
    if linked is None:
        parts.append("pip:" + " ".join(RUNTIME_ROOTS))
    else:
        parts.extend(f"{dist.metadata['Name']}=={dist.version}" for dist in linked)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    base: Path, version: str, linked: list[metadata.Distribution] | None, final: Path
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".python{version}-", dir=final.parent))
    try:
        _run([str(base), "-m", "venv", "--without-pip", str(staging)], "create the venv")
        python = staging / "bin" / "python"
        site_packages = Path(
            _run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                "locate site-packages",
            ).strip()
        )
        if linked is not None:
            for dist in linked:
                _link_distribution(dist, site_packages)
        else:
            _pip_install(base, site_packages, version)
        _check_runtime(python, version)
        (staging / _COMPLETE_MARKER).write_text("ok\n")
        if final.exists():  # a half-built leftover from an older lambdacov
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link_distribution(dist: metadata.Distribution, site_packages: Path) -> None:
    for relative in dist.files or []:
        if relative.parts and relative.parts[0] == "..":
            continue  # console scripts and data outside site-packages
        source = Path(str(dist.locate_file(relative)))
        if not source.is_file():
            continue
        target = site_packages / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.hardlink_to(source)
        except OSError:  # another filesystem: copy instead
            shutil.copy2(source, target)


def _pip_install(base: Path, site_packages: Path, version: str) -> None:
    command = [
        str(base),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--target",
        str(site_packages),
        *RUNTIME_ROOTS,
    ]
    try:
        _run(command, f"install {' '.join(RUNTIME_ROOTS)} for Python {version}", _PIP_TIMEOUT)
    except EmulatorError as error:
        raise EmulatorError(
            error.message,
            hint=f"check that python{version} has pip and can reach PyPI, or run with "
            f"--python {current_version()} after `pip install awslambdaric boto3` here",
        ) from error


def _check_runtime(python: Path, version: str) -> None:
    _run(
        [str(python), "-I", "-c", "import awslambdaric, boto3, runtime_client"],
        "import awslambdaric",
    )
    # The runtime must not see coverage: only the layer may provide it.
    leaked = subprocess.run(
        [str(python), "-I", "-c", "import coverage"], capture_output=True, check=False, timeout=60
    )
    if leaked.returncode == 0:
        raise EmulatorError(
            f"the Python {version} runtime venv can import coverage, which Lambda's cannot",
            hint=f"make sure python{version} has no coverage in its own site-packages",
        )


def _run(command: list[str], what: str, timeout: float = 120) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EmulatorError(f"could not {what}: {error}") from error
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise EmulatorError(
            f"could not {what}: {' / '.join(detail) or f'exit status {completed.returncode}'}",
            hint="the runtime venv is built with `python -m venv`; see the message above",
        )
    return completed.stdout
