"""The CLI as a translator: documented, versioned, and usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lambdacov import __version__
from lambdacov.cli.reference import render

ROOT = Path(__file__).resolve().parent.parent.parent


def lambdacov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdacov", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_reference_is_up_to_date() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert documented == render(), "run: python -m lambdacov.cli.reference > docs/cli.md"


def test_every_command_and_option_has_help_text() -> None:
    for line in render().splitlines():
        if line.startswith("- `"):
            assert line.split(":", 1)[1].strip(), f"no help text: {line}"


def test_version() -> None:
    done = lambdacov("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"lambdacov {__version__}"


def test_usage_errors_exit_2_without_a_traceback() -> None:
    for args in (["nosuch"], ["build-layer", "--bogus"], ["build-layer", "--python", "2.7"]):
        done = lambdacov(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_runtime_and_cli_agree_on_the_wrapper_names() -> None:
    from coverage_wrapper import handler_names
    from lambdacov import conventions

    assert handler_names.SELF == conventions.REDIRECT_HANDLER
    assert handler_names.ORIGINAL_HANDLER_VAR == conventions.ORIGINAL_HANDLER_VAR
    wrapper = (ROOT / "src/lambdacov/layer/files/lambdacov-wrapper").read_text()
    assert f'redirect="{conventions.REDIRECT_HANDLER}"' in wrapper
    assert conventions.NEXT_WRAPPER_VAR in wrapper and conventions.ORIGINAL_HANDLER_VAR in wrapper
