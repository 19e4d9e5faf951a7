"""The GitHub Action (action.yml) and the workflow example that uses it.

action.yml is parsed, and its shell steps are run with bash as the runner
would run them: the step's ``env`` with each ``${{ inputs.NAME }}`` replaced by
the input's value (or default), GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files,
and lambdacov pointed at the moto server. The `lambdacov run` step runs for
real: a stand-in function on moto, a command that delivers a data object to
the run's prefix as the layer would, the reports and outputs read back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer.main
import yaml

from lambdacov.cli import app
from tests.support.combine_data import write_data
from tests.support.lambda_fleet import create_function, make_role, publish_stand_in_layer, snapshot

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOW = yaml.safe_load((ROOT / "examples" / "github-actions" / "coverage.yml").read_text())
REGION = "us-east-1"
EXPRESSION = re.compile(r"\$\{\{\s*inputs\.([a-z-]+)\s*\}\}")


def step(name: str) -> dict[str, Any]:
    found = [s for s in ACTION["runs"]["steps"] if s.get("name") == name]
    assert len(found) == 1, name
    return found[0]


def step_env(name: str, inputs: dict[str, str]) -> dict[str, str]:
    """The step's ``env`` as the runner sets it for ``inputs`` (the others at their defaults)."""
    unknown = set(inputs) - set(ACTION["inputs"])
    assert not unknown, unknown
    values = {key: str(spec.get("default", "")) for key, spec in ACTION["inputs"].items()}
    values.update(inputs)
    return {
        key: EXPRESSION.sub(lambda match: values[match.group(1)], str(value))
        for key, value in step(name).get("env", {}).items()
    }


def run_step(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    spec = step(name)
    assert spec["shell"] == "bash"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", spec["run"]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_every_output_and_input_the_steps_use_is_declared() -> None:
    text = (ROOT / "action.yml").read_text()
    assert set(EXPRESSION.findall(text)) == set(ACTION["inputs"])
    for name, spec in ACTION["outputs"].items():
        match = re.fullmatch(r"\$\{\{ steps\.run\.outputs\.([a-z-]+) \}\}", spec["value"])
        assert match and match.group(1) == name
    assert ACTION["runs"]["using"] == "composite"


def test_the_example_workflow_uses_the_action_with_its_inputs() -> None:
    steps = WORKFLOW["jobs"]["integration-coverage"]["steps"]
    ours = [s for s in steps if str(s.get("uses", "")).startswith("lambdacov/lambdacov@")]
    assert len(ours) == 1
    given = set(ours[0]["with"])
    required = {name for name, spec in ACTION["inputs"].items() if spec.get("required")}
    assert required <= given <= set(ACTION["inputs"])
    # The workflow reads an output the action declares.
    assert (
        "steps.coverage.outputs.total"
        in (ROOT / "examples/github-actions/coverage.yml").read_text()
    )
    assert not any(str(s.get("run", "")).startswith("lambdacov ") for s in steps)


@pytest.mark.parametrize(
    ("version", "requirement"), [("", "lambdacov"), ("1.4.0", "lambdacov==1.4.0")]
)
def test_install_step_installs_the_asked_version(
    version: str, requirement: str, tmp_path: Path
) -> None:
    # A stand-in python on PATH records its arguments: nothing is downloaded.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "python"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args"}\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    env |= step_env("Install lambdacov", {"lambdacov-version": version})
    done = run_step("Install lambdacov", env, tmp_path)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["-m", "pip", "install", "--disable-pip-version-check", requirement]


DELIVER = """\
import sys
import boto3

endpoint, function, bucket, data, day = sys.argv[1:]
client = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1")
variables = client.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
key = variables["COVERAGE_S3_PREFIX"] + day + "/" + function + "-env1.coverage"
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.put_object(Bucket=bucket, Key=key, Body=open(data, "rb").read())
print("delivered", key)
"""


@pytest.fixture
def deployed(moto_endpoint: str) -> tuple[Any, str, str]:
    """(lambda client, function name, stand-in layer ARN) on the moto server."""
    lam = boto3.client("lambda", endpoint_url=moto_endpoint, region_name=REGION)
    role = make_role(boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION))
    layer = publish_stand_in_layer(lam, f"layer-{uuid.uuid4().hex[:8]}")
    name = f"action-fn-{uuid.uuid4().hex[:8]}"
    create_function(lam, role, name, env={"STAGE": "ci"})
    return lam, name, layer


@pytest.mark.parametrize(("fail_under", "status"), [("", 0), ("100", 1)])
def test_run_step_reports_to_the_job_summary_and_outputs(
    deployed: tuple[Any, str, str],
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    fail_under: str,
    status: int,
) -> None:
    lam, function, layer = deployed
    before = snapshot(lam, function)
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text(
        "def handler(event, context):\n    if event:\n        return 1\n"
    )
    data = write_data(tmp_path / "object.coverage", {"/var/task/app.py": [1, 2]})
    (tmp_path / "deliver.py").write_text(DELIVER)
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    command = f"{sys.executable} deliver.py {moto_endpoint} {function} {bucket} {data} {day}"
    inputs = {
        "command": command,
        "bucket": bucket,
        "functions": f"\n{function}\n",
        "source-root": "src",
        "xml": "coverage.xml",
        "fail-under": fail_under,
        "settle-timeout": "30",
        "args": f"--settle-quiet 0 --layer-arn {layer} --cache-dir {tmp_path / 'cache'}",
    }
    github_output = tmp_path / "github_output"
    summary = tmp_path / "step_summary"
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "GITHUB_OUTPUT": str(github_output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(runner_temp),
    }
    env |= step_env("lambdacov run", inputs)
    done = run_step("lambdacov run", env, tmp_path)
    assert done.returncode == status, done.stdout + done.stderr
    assert "delivered" in done.stdout  # the command's output streams through

    written = outputs(github_output)
    report = json.loads(Path(written["json-report"]).read_text())
    assert Path(written["json-report"]).parent == runner_temp
    assert written["total"] == f"{report['totals']['percent_covered']:.2f}"
    assert set(report["files"]) == {"app.py"}
    assert written["xml"] == "coverage.xml" and (tmp_path / "coverage.xml").is_file()
    assert "`app.py`" in summary.read_text()
    assert snapshot(lam, function) == before


def test_run_step_passes_only_options_lambdacov_run_accepts() -> None:
    """Every option the step can add is one of `lambdacov run`'s (a renamed one fails here)."""
    script = step("lambdacov run")["run"]
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", script))
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    assert options and options <= known, options - known
    assert textwrap.dedent(script).count("lambdacov ") == 1
