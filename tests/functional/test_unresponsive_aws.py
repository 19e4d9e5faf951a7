"""An endpoint that never answers, and Ctrl-C mid-fleet, through the `lambdacov` program.

Each command runs in its own process (``python -m lambdacov``), as users run
it, with a short ``--timeout`` so a run takes seconds. Against a silent
endpoint every command must end within the documented bound (one call's worst
case: later calls to an endpoint that never answered fail at once) with exit
code 3 and an error naming the fix. Ctrl-C during ``attach`` must end the
program within a few seconds, say which functions it changed, and print the
detach command that puts them back exactly.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lambdacov import conventions
from lambdacov.aws import call_bound
from lambdacov.cli._options import INTERRUPT_GRACE
from lambdacov.layer.build import MANIFEST_NAME
from tests.support.envelope import envelope
from tests.support.lambda_fleet import (
    clients,
    create_function,
    make_role,
    publish_stand_in_layer,
    run_cli,
    snapshot,
)
from tests.support.unresponsive import HoldingProxy, SilentMode, silent_endpoint

TIMEOUT = 0.5
# Starting Python and importing boto3 takes a second or two on a loaded machine.
STARTUP = 6.0


def lambdacov(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lambdacov", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )


def finish(process: subprocess.Popen[str], limit: float) -> tuple[int, str, str, float]:
    """Wait at most ``limit`` seconds; (exit code, stdout, stderr, seconds it took)."""
    start = time.monotonic()
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still running after {limit:g} s\nstdout: {out}\nstderr: {err}")
    return process.returncode, out, err, time.monotonic() - start


def layer_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            MANIFEST_NAME, json.dumps({"python": "3.12", "arch": "x86_64", "content_hash": "ab"})
        )
    return path


MANY = [f"fn-{index}" for index in range(24)]
COMMANDS: dict[str, list[str]] = {
    "alarms delete": ["alarms", "delete", "fn"],
    "alarms create": ["alarms", "create", "fn"],
    "logs": ["logs", "fn"],
    "doctor": ["doctor", "fn", "--bucket", "some-bucket"],
    # 24 functions, 2 at a time: without the shared verdict on the endpoint,
    # 12 rounds of timeouts.
    "attach": ["attach", *MANY, "--bucket", "some-bucket", "--concurrency", "2"],
    "detach": ["detach", "--all"],
    "publish-layer": ["publish-layer", "--zip", "{zip}"],
}
CASES = [(name, "reads") for name in COMMANDS] + [
    ("alarms create", "never-reads"),
    ("attach", "never-reads"),
]


@pytest.mark.parametrize(("command", "mode"), CASES)
def test_a_command_facing_a_silent_endpoint_ends_within_its_bound_with_exit_3(
    command: str, mode: SilentMode, tmp_path: Path
) -> None:
    argv = [
        arg.replace("{zip}", str(layer_zip(tmp_path / "layer.zip"))) for arg in COMMANDS[command]
    ]
    with silent_endpoint(mode) as endpoint:
        process = lambdacov(
            *argv, "--endpoint-url", endpoint, "--region", "us-east-1", "--timeout", str(TIMEOUT)
        )
        code, out, err, took = finish(process, call_bound(TIMEOUT) + STARTUP + 30)
    assert "Traceback" not in err
    assert code == 3, (out, err)
    assert took < call_bound(TIMEOUT) + STARTUP, (took, err)
    if command == "doctor":  # a checklist, with the verdict, then the error
        assert "AWS unreachable" in out
        assert "raise --timeout" in out
        assert err.startswith("lambdacov: error [unreachable]: cannot reach AWS"), err
        return
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("lambdacov: error [unreachable]: cannot reach AWS for ")
    assert "Read timeout" in lines[0]
    assert lines[1].startswith("  hint: check the network, the --region and any --endpoint-url")
    assert "raise --timeout" in lines[1]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    ("sent", "exit_code", "line"),
    [
        (signal.SIGINT, 130, "lambdacov: error [interrupted]: interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "lambdacov: error [terminated]: terminated (SIGTERM)"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_while_waiting_on_aws_is_one_error_line_with_its_slug(
    sent: signal.Signals, exit_code: int, line: str, as_json: bool
) -> None:
    connected = threading.Event()
    with silent_endpoint("reads", connected) as endpoint:
        process = lambdacov(
            "logs", "fn", "--endpoint-url", endpoint, "--region", "us-east-1",
            "--timeout", "60", *(["--json"] if as_json else []),
        )  # fmt: skip
        assert connected.wait(STARTUP + 30), "the command never called the endpoint"
        process.send_signal(sent)
        code, out, err, _ = finish(process, INTERRUPT_GRACE + 10)
    assert code == exit_code, err
    assert err == f"{line}\n"
    if not as_json:
        assert out == ""
        return
    document = envelope(out)
    slug = line.split("[", 1)[1].split("]", 1)[0]
    assert (document["command"], document["exit_code"]) == ("logs", exit_code)
    assert document["error"]["slug"] == slug
    assert document["error"]["docs"] == f"docs/messages.md#{slug}"


REGION = "ap-south-1"


@pytest.fixture
def fleet(moto_endpoint: str) -> tuple[Any, list[str], dict[str, Any]]:
    """Six functions in the test's region, a lambdacov layer there; their snapshots."""
    lam, iam = clients(moto_endpoint, REGION)
    publish_stand_in_layer(lam, conventions.layer_name("3.12", "x86_64"))
    role = make_role(iam)
    stem = uuid.uuid4().hex[:6]
    names = [f"int-{stem}-{index}" for index in range(6)]
    for name in names:
        create_function(lam, role, name, env={"KEEP": "me"})
    return lam, names, {name: snapshot(lam, name) for name in names}


def update_of(name: str) -> Any:
    return lambda method, path: method == "PUT" and path.endswith(f"{name}/configuration")


def record_of(name: str) -> Any:
    return lambda method, path: method == "POST" and "/tags/" in path and path.endswith(name)


@pytest.mark.parametrize(
    ("held", "release_after", "status", "detail"),
    [
        # The update reached Lambda; its answer never came back.
        (update_of, None, "interrupted", "interrupted while updating the configuration"),
        # The record was written; the configuration was never sent.
        (record_of, None, "interrupted", "interrupted while writing the record"),
        # The answer comes within the grace period: the function is finished, exactly.
        (update_of, 0.5, "changed", "+layer"),
    ],
    ids=["update-in-flight", "record-in-flight", "finished-in-grace"],
)
def test_ctrl_c_during_attach_stops_at_once_and_names_the_changes_to_undo(
    moto_endpoint: str,
    fleet: tuple[Any, list[str], dict[str, Any]],
    held: Any,
    release_after: float | None,
    status: str,
    detail: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lam, names, before = fleet
    # The second function's call is held: the first is done, the other four wait.
    with HoldingProxy(moto_endpoint, held(names[1])) as proxy:
        process = lambdacov(
            "attach", *names, "--bucket", "cov-bucket", "--concurrency", "1",
            "--endpoint-url", proxy.url, "--region", REGION, "--timeout", "30", "--json",
        )  # fmt: skip
        assert proxy.holding.wait(60), "attach never reached the second function"
        process.send_signal(signal.SIGINT)
        if release_after is not None:
            time.sleep(release_after)
            proxy.release()
        code, out, err, took = finish(process, 60)
        proxy.release()  # the undo command goes through the same endpoint
        assert code == 130, err
        assert took < INTERRUPT_GRACE + 2, took
        assert "Traceback" not in err
        assert err.endswith("lambdacov: error [interrupted]: interrupted (Ctrl-C)\n"), err

        whole = envelope(out)  # the functions it changed, and why it stopped
        assert (whole["command"], whole["exit_code"]) == ("attach", 130)
        assert whole["error"]["slug"] == "interrupted"
        document = whole["result"]
        statuses = {item["function"]: item["status"] for item in document["functions"]}
        assert statuses == {
            names[0]: "changed",
            names[1]: status,
            **dict.fromkeys(names[2:], "not-started"),
        }
        second = next(item for item in document["functions"] if item["function"] == names[1])
        assert detail in second["detail"]
        assert [item["touched"] for item in document["functions"]] == [True, True] + [False] * 4

        # AWS holds exactly this: the first function attached, a record on the second
        # (with or without its update), nothing on the others.
        after = {name: snapshot(lam, name) for name in names}
        assert after[names[0]]["Layers"] and after[names[0]]["Tags"] != before[names[0]]["Tags"]
        assert after[names[1]]["Tags"] != before[names[1]]["Tags"]
        assert all(after[name] == before[name] for name in names[2:])

        undo = next(line for line in err.splitlines() if line.startswith("  to undo: "))
        argv = shlex.split(undo.removeprefix("  to undo: "))
        assert argv[:4] == ["lambdacov", "detach", names[0], names[1]]
        code, out, err = run_cli(capsys, *argv[1:])
        assert code == 0, err
        assert {name: snapshot(lam, name) for name in names} == before
