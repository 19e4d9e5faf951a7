"""docs/troubleshooting.md cannot drift: its snippets run, its commands parse, its codes exist.

The Python blocks run in one fresh interpreter with the runtime importable (as
the layer puts it on the path), the AWS variables pointing at the moto
server, and stand-ins for the names a snippet leaves to the reader
(``business_logic``, ``process_request``...). A block that defines
``lambda_handler`` or ``process_batch`` is also called.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import coverage
import pytest
import typer.main

from lambdacov.doctor import CODES, validate_health_document

ROOT = Path(__file__).resolve().parent.parent.parent
GUIDE = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = [(kind, body) for kind, body in FENCE.findall(GUIDE)]
PYTHON = [body for kind, body in BLOCKS if kind == "python"]

RUNNER = r"""
import json, sys, traceback

class Context:
    function_name = "guide-function"
    memory_limit_in_mb = 512
    aws_request_id = "guide-request"
    def get_remaining_time_in_millis(self):
        return 30_000

def stand_ins():
    def business_logic(event):
        return {"statusCode": 200, "body": "OK"}
    return {
        "__name__": "__main__",
        "business_logic": business_logic,
        "process_request": business_logic,
        "setup_resources": lambda: None,
        "cleanup_resources": lambda: None,
        "process_item": lambda item: item,
        "coverage_data": "sample-file.coverage",
        "function_name": "guide-function",
        "execution_id": "abc-123",
    }

blocks = json.load(open(sys.argv[1]))
results = []
for index, source in enumerate(blocks):
    namespace = stand_ins()
    outcome = {"index": index}
    try:
        exec(compile(source, f"<troubleshooting block {index}>", "exec"), namespace)
        if callable(namespace.get("lambda_handler")):
            event = {"action": "health_check", "name": "test", "operation": "create"}
            outcome["result"] = namespace["lambda_handler"](event, Context())
        if callable(namespace.get("process_batch")):
            namespace["process_batch"](list(range(20)))
        outcome["ok"] = True
    except BaseException:
        outcome["ok"] = False
        outcome["error"] = traceback.format_exc()
    results.append(outcome)
json.dump(results, open(sys.argv[2], "w"), default=str)
"""


@pytest.fixture(scope="module")
def guide_results(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    import boto3

    work = tmp_path_factory.mktemp("guide")
    bucket = "guide-coverage-bucket"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    # A real data file for the snippets that read or upload one.
    data = coverage.CoverageData(basename=str(work / "sample-file.coverage"))
    data.add_lines({str(work / "app.py"): [1, 2, 3]})
    data.write()
    s3.upload_file(str(work / "sample-file.coverage"), bucket, "coverage/2024/01/15/fn-1.coverage")
    (work / "blocks.json").write_text(json.dumps(PYTHON))
    (work / "runner.py").write_text(RUNNER)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_UPLOAD_TIMEOUT": "5",
        "COVERAGE_SPOOL_DIR": str(work / "spool"),
        "LAMBDA_TASK_ROOT": str(work),
        "AWS_LAMBDA_FUNCTION_NAME": "guide-function",
    }
    done = subprocess.run(
        [sys.executable, "runner.py", "blocks.json", "results.json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads((work / "results.json").read_text()))


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_snippet_runs(guide_results: list[dict[str, Any]], index: int) -> None:
    outcome = guide_results[index]
    assert outcome["ok"], f"block {index}:\n{PYTHON[index]}\n{outcome.get('error')}"


def test_the_health_check_snippet_answers_with_the_guides_shape(
    guide_results: list[dict[str, Any]],
) -> None:
    index = next(i for i, body in enumerate(PYTHON) if "health_check_handler" in body)
    answer = guide_results[index]["result"]
    assert validate_health_document(answer) == []
    assert answer["s3_config"]["bucket"] == "guide-coverage-bucket"


def test_json_blocks_parse_and_the_expected_response_is_valid() -> None:
    documents = [json.loads(body) for kind, body in BLOCKS if kind == "json"]
    health = [doc for doc in documents if "coverage_enabled" in doc]
    assert health and all(validate_health_document(doc) == [] for doc in health)


def _command_lines() -> list[list[str]]:
    return [
        shlex.split(line.split(" #", 1)[0].split(" >", 1)[0])
        for kind, body in BLOCKS
        if kind == "bash"
        for line in body.splitlines()
        if line.startswith("lambdacov ")
    ]


def test_lambdacov_commands_in_the_guide_exist_with_their_options() -> None:
    from lambdacov.cli import app

    root = typer.main.get_command(app)
    lines = _command_lines()
    assert lines
    for words in lines:
        command: Any = root
        rest = words[1:]
        while rest and getattr(command, "commands", None) and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        assert not getattr(command, "commands", None), words
        known = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
        for word in rest:
            if word.startswith("-"):
                assert word.split("=")[0] in known, (words, word)


def test_every_symptom_names_doctor_checks_that_exist() -> None:
    sections = re.split(r"^### ", GUIDE, flags=re.MULTILINE)[1:]
    symptomatic = [s for s in sections if "#### Symptoms" in s or "**Error Message:**" in s]
    assert len(symptomatic) >= 12
    for section in symptomatic:
        title = section.splitlines()[0]
        doctor = re.search(r"^\*\*Doctor:\*\* (.+)$", section, re.MULTILINE)
        assert doctor, f"{title}: no **Doctor:** line"
        codes = re.findall(r"`([a-z]+\.[a-z-]+)`", doctor.group(1))
        assert codes and set(codes) <= set(CODES), (title, codes)
    mentioned = set(
        re.findall(r"`((?:aws|config|function|bucket|role|delivery|invoke)\.[a-z-]+)`", GUIDE)
    )
    assert mentioned <= set(CODES), mentioned - set(CODES)
