"""`--env-file`: dotenv lines as docker and python-dotenv read them, and bad lines named."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdacov.errors import UsageError
from lambdacov.local.variables import parse_env_line, read_env_file


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("KEY=value", ("KEY", "value")),
        ("  KEY = value  ", ("KEY", "value")),
        ("export KEY=value", ("KEY", "value")),
        ("KEY=", ("KEY", "")),
        ("KEY=a=b", ("KEY", "a=b")),
        ("KEY=value # a comment", ("KEY", "value")),
        ("KEY=a#b", ("KEY", "a#b")),
        ("KEY='single # $HOME \\n'", ("KEY", "single # $HOME \\n")),
        ('KEY="two\\nlines \\"quoted\\" \\\\ end"', ("KEY", 'two\nlines "quoted" \\ end')),
        ('KEY="value" # comment', ("KEY", "value")),
        ("KEY=$OTHER", ("KEY", "$OTHER")),
        ("_K2=x", ("_K2", "x")),
        ("", None),
        ("   ", None),
        ("# KEY=value", None),
        ("   # indented comment", None),
    ],
)
def test_dotenv_lines(line: str, expected: tuple[str, str] | None) -> None:
    assert parse_env_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("JUST_A_WORD", "is not KEY=VALUE"),
        ('KEY="a" b', "unexpected text after the closing quote"),
        ("1KEY=x", "is not a variable name"),
        ("MY-KEY=x", "is not a variable name"),
        ("=x", "is not a variable name"),
        ("KEY='unterminated", "no closing '"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_env_line(line)


def test_a_file_gives_its_variables_later_lines_winning(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# settings\n\nexport COVERAGE_S3_BUCKET=my-bucket\nMODE='a b'\nMODE=\"c d\"\n"
    )
    assert read_env_file(env_file) == {"COVERAGE_S3_BUCKET": "my-bucket", "MODE": "c d"}


def test_a_bad_line_is_one_error_naming_the_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("A=1\n# fine\nnot a pair\nB=2\n")
    with pytest.raises(UsageError) as error:
        read_env_file(env_file)
    assert str(error.value) == f"{env_file}, line 3: the line is not KEY=VALUE (it has no '=')"
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("line", ["SECRET_TOKEN sk-live-abc123", 'TOKEN="sk-live-abc123" trailing'])
def test_a_bad_lines_value_is_never_shown(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text(line + "\n")
    with pytest.raises(UsageError) as error:
        read_env_file(env_file)
    assert "sk-live" not in str(error.value)


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path: Path) -> None:
    env_file = tmp_path / "windows.env"
    env_file.write_bytes(b"\xef\xbb\xbfFIRST=1\r\nSECOND=2\r\n")
    assert read_env_file(env_file) == {"FIRST": "1", "SECOND": "2"}


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the env file"):
        read_env_file(tmp_path / "absent.env")
