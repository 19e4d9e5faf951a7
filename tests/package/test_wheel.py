"""The wheel as users install it (run by `nox -s package` in a fresh environment).

The session installs the built wheel, not the source tree, so these tests see
exactly what `pipx install lambdacov` would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

COMMANDS = (
    "build-layer",
    "publish-layer",
    "attach",
    "detach",
    "doctor",
    "logs",
    "combine",
    "alarms",
    "demo",
    "local",
)


@pytest.fixture(scope="module")
def wheel() -> Path:
    path = os.environ.get("WHEEL")
    assert path, "run through `nox -s package` (it builds the wheel and sets WHEEL)"
    return Path(path)


def test_wheel_carries_the_runtime_the_templates_the_layer_files_and_the_demo(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "coverage_wrapper/__init__.py",
        "coverage_wrapper/handler.py",
        "coverage_wrapper/extension.py",
        "lambdacov/layer/files/lambdacov-wrapper",
        "lambdacov/layer/files/extensions/lambdacov",
        "lambdacov/examples/orders-api/app.py",
        "lambdacov/examples/orders-api/events.json",
    ):
        assert required in names, required
    assert any(name.startswith("lambdacov/templates/") and name.endswith(".j2") for name in names)
    assert not any(name.startswith("tests/") for name in names)


def test_installed_command_reports_its_version_and_every_command(wheel: Path):
    lambdacov = shutil.which("lambdacov")
    assert lambdacov, "the wheel did not install a `lambdacov` command"
    version = subprocess.run([lambdacov, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("lambdacov ")
    listing = subprocess.run(
        [lambdacov, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    for command in COMMANDS:
        assert f" {command} " in listing, command


def test_installed_runtime_is_importable_from_the_wheel(wheel: Path):
    import coverage_wrapper

    assert "site-packages" in coverage_wrapper.__file__
