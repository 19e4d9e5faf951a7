"""Every AWS command without AWS credentials: one documented line and exit 3, never a traceback.

Each command runs in its own process (``python -m lambdacov``), as users run it,
in an environment where botocore can find no credentials at all. Whatever the
command does first (read functions, publish, check, list), the error is the
same: slug ``no-credentials``, the action it could not do, the hint naming the
fix, and exit code 3 (docs/messages.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lambdacov.layer.build import MANIFEST_NAME

LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:lambdacov:1"
BUCKET = "cov-no-credentials"
HINT = "  hint: run `aws configure`, set AWS_PROFILE, or pass --profile"


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


def layer_zip(path: Path) -> Path:
    """A zip publish-layer takes for a built layer (it reads only the manifest first)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            MANIFEST_NAME, json.dumps({"python": "3.12", "arch": "x86_64", "content_hash": "ab"})
        )
    return path


# The command line, and the action the error line says it had no credentials for.
COMMANDS: dict[str, tuple[list[str], str]] = {
    "publish-layer": (["publish-layer", "--zip", "{zip}"], "publish the layers"),
    "attach": (["attach", "fn", "--bucket", BUCKET], "read the functions"),
    "attach --all": (["attach", "--all", "--bucket", BUCKET], "list the functions"),
    "detach": (["detach", "fn"], "read the functions"),
    "doctor": (["doctor", "fn"], "sts:GetCallerIdentity"),
    "logs": (["logs", "fn"], "read the function's logs"),
    "alarms create": (["alarms", "create", "fn"], "create the alarms"),
    "alarms delete": (["alarms", "delete", "fn"], "delete the alarms"),
    "combine": (["combine", "--bucket", BUCKET], "s3:ListBucket"),
    "combiner deploy --dry-run": (
        ["combiner", "deploy", "--bucket", BUCKET, "--dry-run"],
        "sts:GetCallerIdentity",
    ),
    "combiner deploy": (
        ["combiner", "deploy", "--bucket", BUCKET, "--layer-arn", LAYER_ARN],
        "sts:GetCallerIdentity",
    ),
}


def lambdacov(
    command: str, endpoint: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` of :data:`COMMANDS` in its own process, as users do.

    Against a local endpoint, so that nothing could leave this machine even with credentials.
    """
    argv = [arg.replace("{zip}", str(layer_zip(cwd / "layer.zip"))) for arg in COMMANDS[command][0]]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            *argv,
            "--region",
            "us-east-1",
            "--endpoint-url",
            endpoint,
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_without_credentials_prints_the_no_credentials_line_and_exits_3(
    moto_endpoint: str, tmp_path: Path, command: str
) -> None:
    done = lambdacov(command, moto_endpoint, without_credentials(), tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"lambdacov: error [no-credentials]: no AWS credentials for {COMMANDS[command][1]}",
        HINT,
    ]
    if command == "doctor":  # the checklist that found it comes first
        assert "AWS unreachable" in done.stdout
    else:
        assert done.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_half_a_key_pair_is_the_same_error_naming_the_missing_half(
    moto_endpoint: str, tmp_path: Path, command: str
) -> None:
    # botocore refuses it as the first client is made, before any call.
    env = {**without_credentials(), "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}
    done = lambdacov(command, moto_endpoint, env, tmp_path)
    assert done.returncode == 3, done.stderr
    line, *rest = done.stderr.splitlines()
    assert line.startswith("lambdacov: error [no-credentials]: no AWS credentials for "), line
    assert line.endswith(": Partial credentials found in env, missing: AWS_SECRET_ACCESS_KEY")
    assert rest == [HINT]
    assert done.stdout == ""
