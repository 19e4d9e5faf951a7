"""`lambdacov combiner deploy` without AWS credentials: one line and exit 3, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:lambdacov:1"


def without_credentials() -> dict[str, str]:
    """This process's environment with no way for botocore to find credentials."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        )
    }
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    # botocore would otherwise ask the EC2 instance metadata service, off this machine.
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@pytest.mark.parametrize(
    "extra",
    [["--dry-run"], ["--layer-arn", LAYER_ARN]],
    ids=["dry-run", "deploy"],
)
def test_deploy_without_credentials_prints_one_line_and_exits_3(
    moto_endpoint: str, extra: list[str]
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            "combiner",
            "deploy",
            "--bucket",
            "cov-no-credentials",
            "--region",
            "us-east-1",
            # A local endpoint, so that nothing could leave this machine even with credentials.
            "--endpoint-url",
            moto_endpoint,
            *extra,
        ],
        env=without_credentials(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("lambdacov: error [no-credentials]: no AWS credentials for "), (
        done.stderr
    )
    assert [line for line in lines[1:] if not line.startswith("  hint: ")] == [], done.stderr
    assert done.stdout == ""
