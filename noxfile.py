"""Developer and CI sessions: tests on every supported Lambda Python, lint, types.

./scripts/test              everything CI runs
./scripts/test -s tests-3.12 -- -k delivery     one session, pytest arguments after --
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "typecheck", "package", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _add_pyenv_interpreters() -> None:
    """Put pyenv's installed 3.11-3.13 on PATH so nox finds them without shell setup."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    extra = []
    for version in PYTHONS:
        found = sorted(glob.glob(f"{root}/versions/{version}.*/bin"))
        if found:
            extra.append(found[-1])
    os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


_add_pyenv_interpreters()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite (unit, functional on moto server, e2e through the emulator)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q", "-p", "no:cacheprovider"]))


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session(python="3.12")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[test]", "mypy>=1.11", "boto3-stubs[s3,lambda]")
    session.run("mypy")


@nox.session(python="3.12")
def package(session: nox.Session) -> None:
    """The built wheel installs into a fresh environment and works: what `pipx install` gets."""
    session.install("build>=1", "pytest>=8")
    dist = Path(session.create_tmp()) / "dist"
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), ".")
    wheel = next(dist.glob("lambdacov-*.whl"))
    session.install(str(wheel))
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "tests/package", env={"WHEEL": str(wheel)}
    )


@nox.session(python="3.12")
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of CI): per-invocation overhead and cold start."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/invocation_overhead.py", *session.posargs)
