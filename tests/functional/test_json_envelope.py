"""Every `--json` ends in one JSON document on stdout, also when the command fails.

The expected failures of docs/messages.md, run as users run them (against the
moto server, or an endpoint that refuses connections on 127.0.0.1): stdout is
the error envelope, with the slug and the exit code the process ends with, and
stderr is the usual line naming the same slug.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.envelope import envelope, result_of
from tests.support.lambda_fleet import run_cli


def closed_endpoint() -> str:
    """A URL on 127.0.0.1 where nothing listens: every connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def failed(
    capsys: pytest.CaptureFixture[str], *argv: str, command: str, slug: str, exit_code: int
) -> dict[str, Any]:
    """Run a failing command; check its envelope and its stderr line; the envelope."""
    code, out, err = run_cli(capsys, *argv)
    assert code == exit_code, err
    document = envelope(out)
    assert (document["command"], document["ok"], document["exit_code"]) == (
        command,
        False,
        exit_code,
    )
    error = document["error"]
    assert error["slug"] == slug
    assert error["docs"] == f"docs/messages.md#{slug}"
    assert error["message"] and error["hint"]
    assert err.startswith(f"lambdacov: error [{slug}]: {error['message']}\n"), err
    assert f"\n  hint: {error['hint']}\n" in err
    assert "Traceback" not in err
    return document


def test_combine_with_no_objects(
    moto_endpoint: str, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["combine", "--bucket", bucket, "--endpoint-url", moto_endpoint, "--region", "us-east-1"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--source-root", str(tmp_path)]
    document = failed(capsys, *argv, "--json", "-", command="combine", slug="no-data", exit_code=1)
    assert "result" not in document
    assert bucket in document["error"]["message"]

    # --json FILE is a report to write, not the command's output: no document on stdout.
    code, out, err = run_cli(capsys, *argv, "--json", str(tmp_path / "report.json"))
    assert code == 1 and out == "" and "[no-data]" in err


def test_attach_with_a_bad_bucket_name(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused while the options are parsed, before the command runs: --json is still honoured.
    failed(
        capsys,
        "attach", "fn", "--bucket", "Not A Bucket!", "--endpoint-url", moto_endpoint, "--json",
        command="attach", slug="invalid-bucket", exit_code=2,
    )  # fmt: skip


def test_doctor_against_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    document = failed(
        capsys,
        "doctor", "--endpoint-url", closed_endpoint(), "--region", "us-east-1",
        "--timeout", "2", "--json",
        command="doctor", slug="unreachable", exit_code=3,
    )  # fmt: skip
    # The checklist that found it is there too.
    checks = {check["code"]: check["status"] for check in document["result"]["checks"]}
    assert checks["aws.credentials"] == "fail"


def test_alarms_create_against_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    failed(
        capsys,
        "alarms", "create", "fn", "--endpoint-url", closed_endpoint(), "--region", "us-east-1",
        "--timeout", "2", "--json",
        command="alarms create", slug="unreachable", exit_code=3,
    )  # fmt: skip


def test_a_command_line_click_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    document = failed(
        capsys,
        "detach", "fn", "--concurrency", "0", "--json",
        command="detach", slug="usage", exit_code=2,
    )  # fmt: skip
    assert "--concurrency" in document["error"]["message"]
    assert document["error"]["hint"] == "see `lambdacov detach --help`"


def test_without_json_stdout_stays_empty(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "attach", "fn", "--bucket", "Not A Bucket!")
    assert (code, out) == (2, "")
    assert err.startswith("lambdacov: error [invalid-bucket]: --bucket 'Not A Bucket!' ")


def test_a_success_is_the_result_in_the_envelope(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "alarms", "delete", "absent-fn", "--endpoint-url", moto_endpoint, "--json"
    )
    assert code == 0, err
    document = envelope(out)
    assert (document["ok"], document["exit_code"], "error" in document) == (True, 0, False)
    assert result_of(out, "alarms delete")["deleted"] == []
