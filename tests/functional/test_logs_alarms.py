"""`lambdacov logs` and `lambdacov alarms` against a moto server over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest

from lambdacov.cli import main
from lambdacov.cloudwatch import logs
from tests.support.envelope import result_of

REGION = "us-east-1"
ERROR_LINE = json.dumps(
    {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "level": "ERROR",
        "logger": "coverage_wrapper.delivery",
        "message": "Failed to upload coverage file to S3: AccessDenied: Access Denied",
        "data": {"cause": "AccessDenied", "bucket": "b", "key": "coverage/k.coverage"},
    }
)


@pytest.fixture
def function_logs(moto_endpoint: str) -> tuple[Any, str]:
    """A log group /aws/lambda/<name> with runtime JSON lines and plain lines."""
    client = boto3.client("logs", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"logs-{uuid.uuid4().hex[:8]}"
    group = f"/aws/lambda/{name}"
    client.create_log_group(logGroupName=group)
    client.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    lines = ["START RequestId: 1", ERROR_LINE, "coverage delivered", "END RequestId: 1", ERROR_LINE]
    client.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )
    return client, name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0), capsys.readouterr().out


def test_search_pages_through_everything(function_logs: tuple[Any, str]) -> None:
    client, name = function_logs
    start = int(time.time() * 1000) - 60_000
    events = list(logs.search(client, f"/aws/lambda/{name}", start_ms=start, page_size=2))
    assert len(events) == 5


def test_patterns_moto_cannot_evaluate_are_applied_here(function_logs: tuple[Any, str]) -> None:
    client, name = function_logs
    start = int(time.time() * 1000) - 60_000
    group = f"/aws/lambda/{name}"
    either = list(logs.search(client, group, start_ms=start, pattern="?START ?END"))
    assert [e.message.split()[0] for e in either] == ["START", "END"]
    structured = list(logs.search(client, group, start_ms=start, pattern='{ $.level = "ERROR" }'))
    assert len(structured) == 2 and all(e.record for e in structured)


def test_logs_command_pretty_prints_and_json(
    capsys: pytest.CaptureFixture[str], function_logs: tuple[Any, str], moto_endpoint: str
) -> None:
    _, name = function_logs
    common = ["--endpoint-url", moto_endpoint, "--region", REGION]
    code, out = run(capsys, "logs", name, "--pattern", "ERROR", "--since", "1h", *common)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert "ERROR coverage_wrapper.delivery: Failed to upload" in lines[0]
    assert "cause=AccessDenied" in lines[0]
    code, out = run(capsys, "logs", name, "--pattern", "coverage", *common, "--json")
    document = result_of(out, "logs")
    assert document["log_group"] == f"/aws/lambda/{name}"
    messages = [e["message"] for e in document["events"]]
    assert len(messages) == 3 and "coverage delivered" in messages
    assert [e["record"]["data"]["cause"] for e in document["events"] if "record" in e] == [
        "AccessDenied",
        "AccessDenied",
    ]


def test_follow_yields_new_events_once(function_logs: tuple[Any, str]) -> None:
    client, name = function_logs
    group = f"/aws/lambda/{name}"

    def more(_: float) -> None:  # between polls, the function logs one more line
        client.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": int(time.time() * 1000) + 10, "message": "late line"}],
        )

    start = int(time.time() * 1000) - 60_000
    events = list(logs.follow(client, group, start_ms=start, sleep=more, polls=2))
    messages = [event.message for event in events]
    assert len(messages) == 6 and messages[-1] == "late line"


def test_alarms_create_is_idempotent_and_delete_too(
    capsys: pytest.CaptureFixture[str], moto_endpoint: str
) -> None:
    name = f"alarmed-{uuid.uuid4().hex[:8]}"
    common = ["--endpoint-url", moto_endpoint, "--region", REGION, "--json"]
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name=REGION)
    code, out = run(capsys, "alarms", "create", name, "--errors", "3", "--duration-ms", "2000",
                    *common)  # fmt: skip
    assert code == 0 and len(result_of(out, "alarms create")["created"]) == 3
    code, out = run(capsys, "alarms", "create", name, *common)
    assert code == 0 and result_of(out)["created"] == [] and len(result_of(out)["updated"]) == 3
    found = {
        alarm["AlarmName"]: alarm
        for alarm in cloudwatch.describe_alarms(AlarmNamePrefix=f"lambdacov-{name}-")[
            "MetricAlarms"
        ]
    }
    failure = found[f"lambdacov-{name}-coverage-failure"]
    assert (failure["Namespace"], failure["MetricName"]) == ("Lambda/Coverage", "CoverageFailure")
    assert found[f"lambdacov-{name}-errors"]["Threshold"] == 5  # the second create reset it
    code, out = run(capsys, "alarms", "delete", name, *common)
    assert code == 0 and len(result_of(out, "alarms delete")["deleted"]) == 3
    code, out = run(capsys, "alarms", "delete", name, *common)
    assert code == 0 and result_of(out)["deleted"] == [] and len(result_of(out)["absent"]) == 3
