"""The output contract: every slug documented, one way to exit, the --json envelope's parts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdacov.aws import _HINTS, THROTTLING_CODES
from lambdacov.cli import outcome
from lambdacov.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "lambdacov"
MESSAGES = (ROOT / "docs" / "messages.md").read_text(encoding="utf-8")

# `slug = "..."` (a class default) and `slug="..."` (an instance's), anywhere in the package.
LITERAL = re.compile(r"""\bslug\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""")
COMPUTED = re.compile(r"""\bslug\s*=\s*+(?!["'])(.+)$""", re.MULTILINE)
# Slugs passed on from elsewhere, not written here: AWS's error code, and the doctor's
# record of the slug its credentials check met.
PASSED_ON = {
    ("aws.py", "code)"),
    ("doctor/model.py", 'str(check.data.get("slug", "unreachable"))'),
    ("doctor/model.py", "slug)"),
    ("doctor/identity.py", "refused.slug)"),
}


def _sources() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _slugs_in_code() -> set[str]:
    return {slug for path in _sources() for slug in LITERAL.findall(path.read_text("utf-8"))}


def _documented() -> set[str]:
    return set(re.findall(r"^### `([^`]+)`$", MESSAGES, re.MULTILINE))


def test_every_slug_raised_in_the_code_is_documented() -> None:
    slugs = _slugs_in_code()
    assert {"usage", "no-credentials", "unreachable", "invalid-bucket", "no-data"} <= slugs
    assert slugs - _documented() == set()


def test_every_documented_slug_is_one_the_code_raises() -> None:
    assert _documented() - _slugs_in_code() == set()


def test_own_slugs_are_lowercase_words_and_aws_codes_are_not() -> None:
    for slug in _slugs_in_code():
        assert outcome.OWN_SLUG.match(slug), slug
        assert outcome.docs_link(slug) == f"docs/messages.md#{slug}"
    for code in [*_HINTS, *THROTTLING_CODES]:
        assert not outcome.OWN_SLUG.match(code), code
        assert outcome.docs_link(code) == "docs/messages.md#aws-error-codes"
    assert "\n## AWS error codes\n" in MESSAGES


def test_slugs_not_written_as_text_are_passed_on_from_known_places() -> None:
    found = {
        (path.relative_to(SOURCE).as_posix(), value.strip().rstrip(","))
        for path in _sources()
        for value in COMPUTED.findall(path.read_text("utf-8"))
        if path.name != "errors.py"  # LambdacovError.__init__ stores the slug it is given
    }
    assert found == PASSED_ON


def test_the_aws_codes_lambdacov_gives_a_fix_for_are_documented() -> None:
    section = MESSAGES.split("\n## AWS error codes\n", 1)[1]
    for code in [*_HINTS, "Throttling", "ThrottlingException", "RequestLimitExceeded"]:
        assert f"`{code}`" in section, code


def test_every_exit_code_is_documented() -> None:
    table = MESSAGES.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| (\d+) \|", table, re.MULTILINE) == [str(int(c)) for c in ExitCode]


EXITS = re.compile(r"\b(typer\.Exit|SystemExit|sys\.exit|os\._exit)\b")


def test_commands_exit_one_way_with_a_documented_code() -> None:
    """Commands end with outcome.exit_with(ExitCode...); main() alone calls sys.exit."""
    found = {
        (path.name, line.strip())
        for path in sorted((SOURCE / "cli").glob("*.py"))
        for line in path.read_text("utf-8").splitlines()
        if EXITS.search(line) and not line.lstrip().startswith(("#", '"', "`"))
    }
    assert found == {
        ("outcome.py", "raise typer.Exit(int(code))"),
        ("__init__.py", "except typer.Exit as done:"),
        ("__init__.py", "sys.exit(status)"),
        ("_options.py", "os._exit(int(ExitCode.INTERRUPTED))"),
        # `run` reads combine's status, and exits with its command's own status (docs/ci.md).
        ("run.py", "except typer.Exit as done:"),
        ("run.py", "raise SystemExit(status)"),
    }


@pytest.mark.parametrize(
    ("args", "command", "json_asked"),
    [
        (["attach", "fn", "--bucket", "b", "--json"], "attach", True),
        (["attach", "fn", "--bucket", "b"], "attach", False),
        (["alarms", "create", "fn", "--json"], "alarms create", True),
        (["combiner", "deploy", "--json", "--bucket", "b"], "combiner deploy", True),
        (["local", "invoke", "--json"], "local invoke", True),
        (["combine", "--bucket", "b", "--json", "-"], "combine", True),
        (["combine", "--bucket", "b", "--json=-"], "combine", True),
        (["combine", "--bucket", "b", "--json", "report.json"], "combine", False),
        (["doctor", "--", "--json"], "doctor", False),
        (["--version"], "", False),
    ],
)
def test_the_command_and_its_json_mode_are_read_from_the_command_line(
    args: list[str], command: str, json_asked: bool
) -> None:
    outcome.start(args)
    assert outcome.command() == command
    assert outcome._run.json is json_asked
