"""`lambdacov doctor`'s function.memory against the moto server: REPORT lines in the log group.

Each function's log group holds the lines Lambda would have written; one run of
the doctor (the checklist and --json) judges them all.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import boto3
import pytest

from lambdacov import conventions
from lambdacov.doctor.memory import LAYER_MEMORY_MB
from tests.support.envelope import result_of
from tests.support.lambda_fleet import (
    clients,
    create_function,
    make_role,
    publish_stand_in_layer,
    run_cli,
)

REGION = "us-east-1"


# A log group without a REPORT line, though one line looks like it (the function printed it).
QUIET = [
    "START RequestId: 1 Version: $LATEST\n",
    "printed: REPORT RequestId: 1\tMemory Size: 256 MB\tMax Memory Used: 250 MB\n",
    "END RequestId: 1\n",
]


def report(used: int, size: int, request: str) -> str:
    return (
        f"REPORT RequestId: {request}\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        f"Memory Size: {size} MB\tMax Memory Used: {used} MB\tInit Duration: 210.11 ms\t\n"
    )


def invocations(size: int, *peaks: int) -> list[str]:
    """What Lambda writes for one invocation per peak: START, the function's line, END, REPORT."""
    lines = []
    for index, peak in enumerate(peaks):
        request = f"{index:08d}-0000-4000-8000-000000000000"
        lines += [
            f"START RequestId: {request} Version: $LATEST\n",
            "the function says Max Memory Used: 9000 MB\n",
            f"END RequestId: {request}\n",
            report(peak, size, request),
        ]
    return lines


def put_lines(logs: Any, function: str, lines: list[str]) -> None:
    group, stream = f"/aws/lambda/{function}", "2026/01/01/[$LATEST]0123456789abcdef"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )


def test_memory_headroom_from_report_lines(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    tag = uuid.uuid4().hex[:8]
    lam, iam = clients(moto_endpoint, REGION)
    logs = boto3.client("logs", endpoint_url=moto_endpoint, region_name=REGION)
    layer = publish_stand_in_layer(lam, conventions.layer_name("python3.12", "x86_64"))
    role = make_role(iam)
    env = {
        "COVERAGE_S3_BUCKET": f"mem-{tag}",
        conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH,
    }
    # (memory size, layer attached, peaks in the log group; None: no log group at all)
    scenarios: dict[str, tuple[int, bool, list[int] | None]] = {
        "near-limit": (128, True, [70, 118, 96]),
        "no-room-for-layer": (128, False, [60, 128 - LAYER_MEMORY_MB + 1]),
        "roomy": (512, True, [80, 95]),
        "bare-roomy": (512, False, [95]),
        "quiet": (256, True, []),
        "never-ran": (256, True, None),
    }
    names = {}
    for label, (size, attached, peaks) in scenarios.items():
        name = names[label] = f"mem-{label}-{tag}"
        create_function(lam, role, name, layers=[layer] if attached else None, env=env, memory=size)
        if peaks is not None:
            put_lines(logs, name, invocations(size, *peaks) or QUIET)

    argv = ["doctor", *names.values(), "--endpoint-url", moto_endpoint, "--region", REGION]
    _, out, err = run_cli(capsys, *argv, "--json")
    assert "Traceback" not in err
    checks = {
        check["target"]: check
        for check in result_of(out, "doctor")["checks"]
        if check["code"] == "function.memory"
    }
    assert set(checks) == set(names.values())
    found = {label: checks[name] for label, name in names.items()}
    assert {label: check["status"] for label, check in found.items()} == {
        "near-limit": "warn",
        "no-room-for-layer": "warn",
        "roomy": "ok",
        "bare-roomy": "ok",
        "quiet": "skipped",
        "never-ran": "skipped",
    }

    near = found["near-limit"]
    assert near["data"] == {
        "peak_mb": 118,
        "memory_mb": 128,
        "headroom_mb": 10,
        "reports": 3,
        "layer_attached": True,
    }
    assert "near its memory limit" in near["detail"]
    assert "'Runtime exited with error: signal: killed'" in near["detail"]
    assert "at least 132 MB" in near["hint"]  # 118 MB is under 90% of 132 MB

    tight = found["no-room-for-layer"]
    peak = 128 - LAYER_MEMORY_MB + 1
    assert tight["data"]["peak_mb"] == peak and tight["data"]["layer_attached"] is False
    assert (
        f"attaching the layer needs about {LAYER_MEMORY_MB} MB more: "
        f"raise MemorySize to at least {peak + LAYER_MEMORY_MB} MB"
    ) in tight["detail"]

    assert found["roomy"]["data"]["peak_mb"] == 95
    assert "417 MB of headroom" in found["roomy"]["detail"]
    assert "hint" not in found["roomy"] or not found["roomy"]["hint"]
    assert f"room for the layer's ~{LAYER_MEMORY_MB} MB" in found["bare-roomy"]["detail"]
    assert "no REPORT lines" in found["quiet"]["detail"]
    assert "no recent invocations" in found["quiet"]["detail"]
    assert "no log group" in found["never-ran"]["detail"]

    _, human, err = run_cli(capsys, *argv)
    assert "Traceback" not in err
    statuses = re.findall(r"(ok|warn|fail|skipped)\s+function\.memory\s", human)
    assert statuses == ["warn", "warn", "ok", "ok", "skipped", "skipped"], human
    assert "near its memory limit" in human
