"""Precompiling the layer's Python files with the target Python version.

Lambda mounts a layer read-only at /opt, so Python cannot write the .pyc files
it would otherwise cache: without shipped .pyc every cold start compiles
the runtime package (and coverage.py, where it is imported) again.
A .pyc is only used by the Python version whose magic number it carries, so
the files are compiled by an interpreter of the target version, in one
subprocess for the whole tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from lambdacov.errors import BuildError
from lambdacov.layer.targets import Target, host_python

_PROBE_TIMEOUT_SECONDS = 30.0
_COMPILE_TIMEOUT_SECONDS = 300.0

# Runs inside the target interpreter. It reads [[source, dfile], ...] as JSON
# on stdin and writes each .pyc where that interpreter itself would look for
# it (its own cache tag). UNCHECKED_HASH makes the file depend only on the
# source bytes, never on mtimes, and keeps Python from re-validating it
# against the source on a read-only /opt.
_COMPILE_SCRIPT = """
import json, py_compile, sys
for source, dfile in json.load(sys.stdin):
    py_compile.compile(
        source,
        dfile=dfile,
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
"""


def find_interpreter(python: str) -> Path | None:
    """An interpreter of Python ``3.X`` that runs on this machine, or None.

    The one interpreter finder: the layer build compiles .pyc files with it, and
    the local emulator builds its runtime venvs on it.

    Looks at the running interpreter, then ``python3.X`` on PATH, then pyenv's
    versions (``$PYENV_ROOT`` or ``~/.pyenv``). Each candidate is run once to
    confirm its version: a pyenv shim on PATH may exist and still refuse to run.
    """
    for candidate in _candidates(python):
        if reports_version(candidate, python):
            return candidate
    return None


def _candidates(python: str) -> Iterator[Path]:
    if host_python() == python and sys.executable:
        yield Path(sys.executable)
    on_path = shutil.which(f"python{python}")
    if on_path:
        yield Path(on_path)
    versions = pyenv_versions()
    if versions.is_dir():
        pattern = re.compile(rf"{re.escape(python)}(\.\d+)?")
        # Newest patch release first: "3.12.10" sorts after "3.12.9".
        matching = [entry for entry in versions.iterdir() if pattern.fullmatch(entry.name)]
        for entry in sorted(matching, key=_version_key, reverse=True):
            yield entry / "bin" / f"python{python}"


def pyenv_versions() -> Path:
    """Where pyenv installs its Pythons: ``$PYENV_ROOT/versions``, ``~/.pyenv/versions``."""
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.name.split("."))


def reports_version(executable: Path, python: str) -> bool:
    """Whether ``executable`` runs and is Python ``3.X``."""
    try:
        completed = subprocess.run(
            [str(executable), "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0 and completed.stdout.strip() == python


def compile_tree(interpreter: Path, root: Path, runtime_root: str) -> int:
    """Compile every .py file under ``root`` in place with ``interpreter``.

    Each code object records its path under ``runtime_root`` (``/opt/python``)
    so tracebacks in Lambda name the files where Lambda sees them. Returns the
    number of files compiled.
    """
    sources = sorted(path for path in root.rglob("*.py") if path.is_file())
    pairs = [[str(path), f"{runtime_root}/{path.relative_to(root).as_posix()}"] for path in sources]
    try:
        completed = subprocess.run(
            [str(interpreter), "-I", "-c", _COMPILE_SCRIPT],
            input=json.dumps(pairs),
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(
            f"could not run {interpreter} to precompile the layer: {error}",
            "check that interpreter, or put a working python3.X first on PATH",
        ) from error
    if completed.returncode != 0:
        last = completed.stderr.strip().splitlines()[-1:] or ["no message"]
        raise BuildError(
            f"precompiling the layer with {interpreter} failed: {last[0]}",
            "a file in the layer is not valid for the target Python version",
        )
    return len(sources)


#: What a layer without .pyc adds to each cold start, measured on CPython 3.12
#: (docs/where-it-runs.md#building-without-pyc): the wrapper compiles the runtime package
#: again at init, its delivery code included, and importing and starting coverage.py
#: itself (with a COVERAGE_CORE set, or branch coverage on 3.14) takes 1.7x as long.
NO_PYC_COST = (
    "about +50 ms per cold start below 1,769 MB (measured on 3.12: the wrapper's start, which "
    "imports the delivery code there; +10 ms from 1,769 MB), "
    "+80 ms where coverage.py itself is imported (a COVERAGE_CORE set, branch coverage on 3.14)"
)


def missing_interpreter_error(target: Target) -> BuildError:
    """The error for a build that would need an interpreter of the target version and has none."""
    return BuildError(
        f"no Python {target.python} interpreter found to precompile the layer's .pyc files "
        f"(looked for python{target.python} on PATH and in {pyenv_versions()})",
        f"install Python {target.python} (python{target.python} on PATH, or with pyenv), or "
        "pass --no-compile to build without .pyc (slower cold starts)",
    )


def check_interpreters(pythons: list[str]) -> None:
    """Raise one BuildError naming every Python of ``pythons`` without an interpreter here.

    For a build of several layers (publish-layer), so a missing interpreter is
    found before the first build and download, and all of them at once.
    """
    missing = [python for python in pythons if find_interpreter(python) is None]
    if not missing:
        return
    found = [python for python in pythons if python not in missing]
    names = ", ".join(missing)
    raise BuildError(
        f"no interpreter of Python {names} found to precompile the layers' .pyc files "
        f"(looked on PATH and in {pyenv_versions()})",
        f"install Python {names}, "
        + (f"publish only --python {' --python '.join(found)}, " if found else "")
        + "or pass --no-compile to build without .pyc (slower cold starts)",
    )


def not_compiled_warning(target: Target) -> str:
    """The warning of a layer built with ``--no-compile``, with what it costs."""
    return (
        f"--no-compile: the layer for Python {target.python} has no .pyc files, so every cold "
        f"start compiles its Python files again: {NO_PYC_COST}. Install Python "
        f"{target.python} (python{target.python} on PATH, or with pyenv) and build without "
        "--no-compile to avoid it."
    )
