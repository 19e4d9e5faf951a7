"""The local Lambda emulator, with real processes: awslambdaric, extensions, signals.

Every environment starts in well under a second (the runtime venv is cached),
so most tests take a fresh one and stay independent of each other.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lambdacov.errors import EmulatorError, UsageError
from lambdacov.local import LocalLambda, find_python, runtime_python
from lambdacov.local.runtime_env import current_version
from tests.support.envelope import result_of

FIXTURES = Path(__file__).parent.parent / "fixtures"
FUNCTION = FIXTURES / "functions" / "basic"
RECORDER = FIXTURES / "extensions" / "recorder"
SIGTERM_REACHES_PYTHON = sys.version_info >= (3, 12)  # awslambdaric polls in a thread from 3.12


def make_layer(tmp_path: Path, *extensions: str, wrapper: str | None = None) -> Path:
    """An /opt-like directory with copies of the recorder extension under the given names."""
    opt = tmp_path / "opt"
    (opt / "extensions").mkdir(parents=True)
    for name in extensions:
        shutil.copy(RECORDER, opt / "extensions" / name)
        (opt / "extensions" / name).chmod(0o755)
    if wrapper is not None:
        (opt / "wrapper").write_text(wrapper)
        (opt / "wrapper").chmod(0o755)
    return opt


def zip_layer(opt: Path, target: Path) -> Path:
    """Zip a layer directory keeping unix modes in external_attr, as `zip -r` does."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(opt.rglob("*")):
            info = zipfile.ZipInfo(str(path.relative_to(opt)) + ("/" if path.is_dir() else ""))
            info.external_attr = (
                stat.S_IMODE(path.stat().st_mode) | (0o40000 if path.is_dir() else 0o100000)
            ) << 16
            archive.writestr(info, b"" if path.is_dir() else path.read_bytes())
    return target


def function_dir(tmp_path: Path, app: str) -> Path:
    """A function's directory holding ``app`` as its app.py."""
    code = tmp_path / "function"
    code.mkdir()
    (code / "app.py").write_text(app)
    return code


def recorded(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def warm():
    """One environment shared by the read-only tests."""
    with LocalLambda(FUNCTION, "app.main", env={"FROM_FUNCTION": "yes"}) as function:
        yield function


# -- invocations ----------------------------------------------------------------------


def test_returns_the_handler_value_with_lambda_context(warm):
    result = warm.invoke({"action": "handler", "x": 1})

    assert result.ok
    assert result.payload["event"] == {"action": "handler", "x": 1}
    assert result.payload["request_id"] == result.request_id
    assert result.payload["function_name"] == "local-function"
    assert 29_000 < result.payload["remaining_ms"] <= 30_000
    assert any(line.source == "runtime" and "handler called" in line.text for line in result.logs)


def test_an_exception_has_lambdas_error_shape(warm):
    result = warm.invoke({"action": "fail", "why": "testing"})

    assert not result.ok
    assert result.payload is None
    assert result.error is not None
    assert set(result.error) >= {"errorMessage", "errorType", "stackTrace"}
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "boom: testing"
    assert any("raise ValueError" in frame for frame in result.error["stackTrace"])
    assert any("[ERROR] ValueError: boom: testing" in line.text for line in result.logs)


def test_warm_invocations_reuse_one_process():
    with LocalLambda(FUNCTION, "app.main") as function:
        results = [function.invoke({"action": "handler"}) for _ in range(3)]

    assert [r.payload["count"] for r in results] == [1, 2, 3]
    assert len({r.payload["pid"] for r in results}) == 1
    assert results[0].init_duration_ms is not None
    assert results[1].init_duration_ms is None
    assert results[2].init_duration_ms is None


def test_a_timeout_is_an_error_and_resets_the_environment_but_not_tmp():
    with LocalLambda(FUNCTION, "app.main", timeout=1) as function:
        first = function.invoke({"action": "handler"})
        function.invoke({"action": "write_tmp", "name": "kept", "text": "survives"})
        started = time.monotonic()
        timed_out = function.invoke({"action": "sleep", "seconds": 10})
        elapsed = time.monotonic() - started
        after = function.invoke({"action": "handler"})
        kept = function.invoke({"action": "read_tmp", "name": "kept"})

    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.error["errorMessage"]
    assert elapsed < 3
    assert after.ok
    assert after.payload["count"] == 1  # module state is gone: a fresh init
    assert after.payload["pid"] != first.payload["pid"]
    assert after.init_duration_ms is not None
    assert kept.payload == "survives"


def test_the_environment_is_frozen_between_invocations(tmp_path):
    late = tmp_path / "late"
    with LocalLambda(FUNCTION, "app.main") as function:
        assert function.invoke({"action": "background", "path": str(late)}).ok
        time.sleep(0.8)  # the thread wanted to write after 300 ms
        assert not late.exists(), "a thread ran while the environment was frozen"

        assert function.invoke({"action": "handler"}).ok

        assert wait_for(late.exists), "the thread did not resume with the environment"


def test_an_import_error_is_the_invocations_error_and_init_is_retried():
    with LocalLambda(FUNCTION, "missing_module.handler") as function:
        first = function.invoke({})
        second = function.invoke({})

    assert first.error is not None
    assert first.error["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'missing_module'" in first.error["errorMessage"]
    assert second.init_duration_ms is not None


def test_the_runtime_sees_lambdas_environment_and_nothing_of_ours(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("VIRTUAL_ENV", "/some/venv")
    monkeypatch.setenv("COVERAGE_PROCESS_START", "/some/.coveragerc")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMCALLER")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    with LocalLambda(
        FUNCTION, "app.main", env={"AWS_REGION": "eu-west-1", "MINE": "1"}, memory_mb=256
    ) as function:
        result = function.invoke({"action": "inspect"})
        opt_dir, tmp_dir = function.opt_dir, function.tmp_dir

    env = result.payload["env"]
    assert result.payload["coverage_importable"] is False
    assert result.payload["version"] == current_version()
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{current_version()}"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/local-function"
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
    assert env["AWS_REGION"] == "eu-west-1"  # the function's variables win
    assert env["MINE"] == "1"
    assert env["TZ"] == ":UTC"
    assert env["LAMBDA_TASK_ROOT"] == str(FUNCTION.resolve())
    assert env["_HANDLER"] == "app.main"
    assert env["TMPDIR"] == str(tmp_dir)
    assert env["PYTHONPATH"].split(":") == [
        str(FUNCTION.resolve()),
        f"{opt_dir}/python/lib/python{current_version()}/site-packages",
        f"{opt_dir}/python",
    ]
    assert env["AWS_ACCESS_KEY_ID"] == "AKIDFROMCALLER"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert "VIRTUAL_ENV" not in env
    assert not [name for name in env if name.startswith("COVERAGE_")]
    assert result.payload["sys_path"][0] == str(FUNCTION.resolve())
    local_package = str(Path(__file__).parents[2] / "src" / "lambdacov" / "local")
    assert local_package not in result.payload["sys_path"]


def test_the_function_reaches_the_callers_aws_endpoint(monkeypatch, moto_endpoint, s3, bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    with LocalLambda(FUNCTION, "app.main") as function:
        result = function.invoke({"action": "put_object", "bucket": bucket, "key": "k"})

    assert result.ok, result.error
    assert result.payload["endpoint"] == moto_endpoint
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"from the function"


# -- extensions, wrapper, shutdown ---------------------------------------------------------


def test_an_extension_gets_invoke_and_shutdown_and_delays_the_invocation(tmp_path):
    log, sigterm = tmp_path / "events.jsonl", tmp_path / "sigterm"
    layer = zip_layer(make_layer(tmp_path, "recorder"), tmp_path / "layer.zip")
    env = {"RECORDER_LOG": str(log), "FIXTURE_SIGTERM_FILE": str(sigterm)}
    with LocalLambda(FUNCTION, "app.main", layer=layer, env=env) as function:
        results = [function.invoke({"action": "handler"}) for _ in range(2)]
        shutdown_logs = function.shutdown()

    entries = recorded(log)
    events = [entry["event"] for entry in entries if "event" in entry]
    assert entries[0]["registered"]["functionName"] == "local-function"
    assert entries[0]["registered"]["handler"] == "app.main"
    assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "SHUTDOWN"]
    assert [e["requestId"] for e in events[:2]] == [r.request_id for r in results]
    assert events[2]["shutdownReason"] == "spindown"
    assert {"done": "SHUTDOWN"}.items() <= entries[-1].items()
    for result in results:
        assert result.ok
        assert result.duration_ms >= 200  # the extension's post-response work counts
        assert result.runtime_duration_ms < result.duration_ms
        assert any(line.source == "extension:recorder" for line in result.logs)
    assert any("recorder got SHUTDOWN" in line.text for line in shutdown_logs)
    if SIGTERM_REACHES_PYTHON:
        assert sigterm.read_text() == "SIGTERM\n"


def test_extensions_only_get_the_events_they_registered_for(tmp_path):
    log = tmp_path / "events.jsonl"
    layer = make_layer(tmp_path, "shutdown-only")
    env = {"RECORDER_LOG": str(log), "RECORDER_EVENTS": "SHUTDOWN"}
    with LocalLambda(FUNCTION, "app.main", layer=layer, env=env) as function:
        result = function.invoke({"action": "handler"})
        function.shutdown("failure")

    events = [entry["event"] for entry in recorded(log) if "event" in entry]
    assert [e["eventType"] for e in events] == ["SHUTDOWN"]
    assert events[0]["shutdownReason"] == "failure"
    assert result.duration_ms < 200


def test_the_runtime_gets_no_sigterm_without_extensions(tmp_path):
    sigterm = tmp_path / "sigterm"
    with LocalLambda(FUNCTION, "app.main", env={"FIXTURE_SIGTERM_FILE": str(sigterm)}) as function:
        assert function.invoke({"action": "handler"}).ok
        function.shutdown()

    assert not sigterm.exists()


def test_the_exec_wrapper_runs_and_can_change_the_handler(tmp_path):
    wrapper = '#!/bin/sh\nexport _HANDLER=app.inspect WRAPPED=yes\nexec "$@"\n'
    layer = make_layer(tmp_path, wrapper=wrapper)
    env = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper"}  # as in Lambda: /opt is the layer
    with LocalLambda(FUNCTION, "app.fail", layer=layer, env=env) as function:
        result = function.invoke({})

    assert result.ok, result.error
    assert result.payload["env"]["WRAPPED"] == "yes"
    assert result.payload["env"]["_HANDLER"] == "app.inspect"


# -- memory and phases ---------------------------------------------------------------------


def test_over_its_memory_size_the_whole_environment_is_killed(tmp_path):
    log = tmp_path / "events.jsonl"
    layer = make_layer(tmp_path, "recorder")
    with LocalLambda(
        FUNCTION, "app.main", layer=layer, env={"RECORDER_LOG": str(log)}, memory_mb=128
    ) as function:
        assert function.invoke({"action": "handler"}).ok
        environment = function.environment
        killed = function.invoke({"action": "allocate", "megabytes": 200})
        after = function.invoke({"action": "handler"})

    assert killed.error is not None
    assert killed.error["errorType"] == "Runtime.ExitError"
    assert killed.error["errorMessage"].endswith("Runtime exited with error: signal: killed")
    assert killed.max_memory_used_mb > 128
    # Killed, extension included, rather than shut down: its SHUTDOWN never came.
    assert [proc.exit_code for proc in environment.processes] == [-signal.SIGKILL] * 2
    events = [entry["event"]["eventType"] for entry in recorded(log) if "event" in entry]
    assert events == ["INVOKE", "INVOKE", "INVOKE", "SHUTDOWN"]
    assert after.ok and after.init_duration_ms is not None  # a fresh environment


def test_the_environment_records_when_its_phases_end(tmp_path):
    layer = make_layer(tmp_path, "recorder")
    env = {"RECORDER_LOG": str(tmp_path / "events.jsonl")}
    with LocalLambda(FUNCTION, "app.main", layer=layer, env=env) as function:
        assert function.environment is None
        result = function.invoke({"action": "handler"})
        environment = function.environment
        assert environment is not None
        response, idle = environment.response_at(result.request_id), environment.idle_since()

    assert environment.ready_at is not None and response is not None and idle is not None
    # The extension works after the response: the environment is idle only after it.
    assert environment.started_at < environment.ready_at < response < idle
    assert function.environment is None  # shut down


def test_the_runtime_starts_once_extensions_registered_not_once_they_are_ready(tmp_path):
    """Lambda starts the runtime once every extension has registered: an extension's
    own setup before its first ``event/next`` overlaps the runtime's init."""
    log, imported = tmp_path / "events.jsonl", tmp_path / "imported"
    layer = make_layer(tmp_path, "recorder")
    env = {
        "RECORDER_LOG": str(log),
        "RECORDER_SETUP_SECONDS": "1",
        "FIXTURE_IMPORTED_FILE": str(imported),
    }
    with LocalLambda(FUNCTION, "app.main", layer=layer, env=env) as function:
        assert function.invoke({"action": "handler"}).ok
        environment = function.environment
        assert environment is not None and environment.ready_at is not None

    first_next = next(entry["first_next_at"] for entry in recorded(log) if "first_next_at" in entry)
    assert float(imported.read_text()) < first_next  # the function's init ran meanwhile
    # INIT still ends only once the extension, too, waits for its first event.
    assert environment.ready_at - environment.started_at >= 1.0


# -- configuration errors ------------------------------------------------------------------


def test_configuration_errors_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        LocalLambda(tmp_path / "nowhere", "app.main")
    with pytest.raises(UsageError, match=r"module\.function"):
        LocalLambda(FUNCTION, "handler")
    with pytest.raises(UsageError, match="between 128 and 10240 MB"):
        LocalLambda(FUNCTION, "app.main", memory_mb=64)
    with pytest.raises(UsageError, match="invalid Python version") as invalid:
        runtime_python("python3")
    assert "3.X" in invalid.value.hint
    with pytest.raises(EmulatorError, match=r"Python 3\.99 was not found") as raised:
        find_python("3.99")
    assert "pyenv install 3.99" in raised.value.hint


def test_a_runtime_python_other_than_the_clis():
    """The runtime venv for another version is built with that Python's pip (from PyPI)."""
    version = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"
    with LocalLambda(FUNCTION, "app.main", python=version) as function:
        counted = [function.invoke({"action": "handler"}) for _ in range(2)]
        inspected = function.invoke({"action": "inspect"})

    assert [r.payload["count"] for r in counted] == [1, 2]
    assert inspected.payload["version"] == version
    assert inspected.payload["coverage_importable"] is False


# -- the CLI --------------------------------------------------------------------------------


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            "local",
            "invoke",
            "--function-dir",
            str(FUNCTION),
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_each_response_and_exits_0():
    done = run_cli("--handler", "app.main", "--event", '{"action": "handler"}', "--count", "2")

    assert done.returncode == 0, done.stderr
    counts = [json.loads(line)["count"] for line in done.stdout.splitlines()]
    assert counts == [1, 2]


def test_cli_prints_a_function_error_and_exits_1():
    done = run_cli(
        "--handler", "app.main", "--event-file", "-", stdin='{"action": "fail", "why": "cli"}'
    )

    assert done.returncode == 1
    assert done.stdout.strip() == "ValueError: boom: cli"
    assert "Traceback" in done.stderr  # the invocation's logs, shown on error


def test_cli_json_output_is_one_document():
    done = run_cli("--handler", "app.main", "--event", '{"action": "handler"}', "--json")

    assert done.returncode == 0, done.stderr
    [result] = result_of(done.stdout, "local invoke")
    assert result["payload"]["count"] == 1
    assert result["error"] is None
    assert result["initDurationMs"] is not None


@pytest.mark.parametrize(
    "args",
    [
        ("--handler", "app.main", "--event", "{not json"),
        ("--handler", "app.main", "--event", "{}", "--event-file", "x.json"),
        ("--handler", "app.main", "--env", "NOEQUALS"),
        ("--handler", "app.main", "--python", "three"),
    ],
)
def test_cli_usage_errors_exit_2(args):
    done = run_cli(*args)

    assert done.returncode == 2
    assert done.stdout == ""
    assert "lambdacov: error [" in done.stderr


# --- Managed Instances: several runtime processes, invocations side by side ----------------

SLEEPER = """\
import os
import tempfile
import time


def handler(event, context):
    time.sleep(event["sleep"])
    open(os.path.join(tempfile.gettempdir(), f"ran-{event['n']}"), "w").close()
    return {"n": event["n"], "pid": os.getpid(), "left_ms": context.get_remaining_time_in_millis()}
"""


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    return function_dir(tmp_path, SLEEPER)


def test_an_invocation_queued_behind_a_busy_process_gets_its_whole_timeout(sleeper: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with LocalLambda(sleeper, "app.handler", max_concurrency=1, timeout=3) as function:
        assert function.invoke({"n": 0, "sleep": 0}).ok
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(function.invoke, {"n": 1, "sleep": 2})
            time.sleep(0.2)
            second = pool.submit(function.invoke, {"n": 2, "sleep": 2})
            results = [first.result(), second.result()]

    # The second waited about 2 s for the one process, then ran its 2 s within its own 3 s.
    assert [result.error for result in results] == [None, None]
    assert [result.payload["n"] for result in results] == [1, 2]
    # Its deadline started when it was taken: about 1 s left after its 2 s, not less than 0.
    assert results[1].payload["left_ms"] > 500


def test_an_invocation_no_process_takes_fails_as_busy_and_is_not_run_later(
    sleeper: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with LocalLambda(sleeper, "app.handler", max_concurrency=1, timeout=1) as function:
        assert function.invoke({"n": 0, "sleep": 0}).ok
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(function.invoke, {"n": 1, "sleep": 4})  # times out, runs on
            time.sleep(0.2)
            waiting = pool.submit(function.invoke, {"n": 2, "sleep": 0})
            results = [stuck.result(), waiting.result()]
        time.sleep(3.5)  # the stuck handler ends; the one given up must not run then
        after = function.invoke({"n": 3, "sleep": 0})
        ran = sorted(path.name for path in function.tmp_dir.glob("ran-*"))

    assert results[0].error is not None and "timed out" in results[0].error["errorMessage"]
    assert results[1].error is not None and results[1].error["errorType"] == "Runtime.Busy"
    assert after.ok and after.payload["n"] == 3
    assert ran == ["ran-0", "ran-1", "ran-3"]


EXITER = """\
import os
import threading


def handler(event, context):
    if event.get("exit"):
        threading.Timer(0.3, os._exit, (3,)).start()  # after the response is out
    return {"pid": os.getpid()}
"""


def test_a_runtime_gone_between_invocations_is_replaced_by_a_new_environment(
    tmp_path: Path,
) -> None:
    code = function_dir(tmp_path, EXITER)
    with LocalLambda(code, "app.handler", max_concurrency=1, timeout=3) as function:
        first = function.invoke({"exit": True})
        time.sleep(1.5)  # the only runtime process, and so the runtime, is gone
        gone = function.invoke({})
        again = function.invoke({})

    assert first.ok
    assert gone.error is not None and gone.error["errorType"] == "Runtime.ExitError"
    assert again.ok and again.payload["pid"] != first.payload["pid"]


SNAPSHOTTED = """\
import os
import uuid

from snapshot_restore_py import register_after_restore

MADE_AT_INIT = uuid.uuid4().hex  # in the snapshot: the same in every restored environment
print("init ran", flush=True)
calls = 0
restores = 0
with open(os.path.join(os.environ["TMPDIR"], "at-init"), "w") as file:
    file.write(MADE_AT_INIT)


def restored():
    global restores
    restores += 1


register_after_restore(restored)


def handler(event, context):
    global calls
    calls += 1
    tmp = os.environ["TMPDIR"]
    seen = sorted(name for name in os.listdir(tmp) if name.startswith(("at-", "later-")))
    with open(os.path.join(tmp, f"later-{calls}-{os.getpid()}"), "w") as file:
        file.write("written in an invocation")
    return {
        "made_at_init": MADE_AT_INIT,
        "pid": os.getpid(),
        "calls": calls,
        "restores": restores,
        "tmp": seen,
        "initialization": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"""


def test_snap_start_restores_each_environment_from_the_one_initialised_state(
    tmp_path: Path,
) -> None:
    code = function_dir(tmp_path, SNAPSHOTTED)
    layer = make_layer(tmp_path, "recorder")
    log = tmp_path / "recorder.log"
    env = {"RECORDER_LOG": str(log)}
    with LocalLambda(code, "app.handler", layer=layer, env=env, snap_start=True) as function:
        environments = []
        for _ in range(3):
            environments.append([function.invoke({}).payload for _ in range(2)])
            function.shutdown()
        restores = function.restores
        lines = [line.text for line in function.logs]

    first_calls = [calls[0] for calls in environments]
    # Memory as init left it, in every environment: one init, its value everywhere.
    assert lines.count("init ran") == 1
    assert len({payload["made_at_init"] for payload in first_calls}) == 1
    assert [[payload["calls"] for payload in calls] for calls in environments] == [[1, 2]] * 3
    # Each environment's runtime is a process of its own, restored once (hooks ran).
    assert len({payload["pid"] for calls in environments for payload in calls}) == 3
    assert all(len({payload["pid"] for payload in calls}) == 1 for calls in environments)
    assert [payload["restores"] for payload in first_calls] == [1, 1, 1]
    assert restores == 3 and sum(text.startswith("RESTORE_START") for text in lines) == 3
    # Lambda's log lines: one INIT_REPORT; each environment's first REPORT has its restore's.
    assert sum(text.startswith("INIT_REPORT Init Duration: ") for text in lines) == 1
    reports = [text for text in lines if text.startswith("REPORT ")]
    assert sum("\tRestore Duration: " in text for text in reports) == 3
    assert not [text for text in reports if "Init Duration" in text]
    assert {payload["initialization"] for payload in first_calls} == {"snap-start"}
    # /tmp as the snapshot had it: what an earlier environment wrote is not there.
    assert [payload["tmp"] for payload in first_calls] == [["at-init"]] * 3
    # Extensions start afresh in each restored environment (after the one of init),
    # each gets its environment's events and its SHUTDOWN.
    entries = recorded(log)
    assert sum("registered" in entry for entry in entries) == 4
    events = [entry["event"]["eventType"] for entry in entries if "event" in entry]
    assert events == ["INVOKE", "INVOKE", "SHUTDOWN"] * 3


FAILING_RESTORE = """\
from snapshot_restore_py import register_after_restore

print("init ran", flush=True)


def refuse():
    raise RuntimeError("no restore today")


register_after_restore(refuse)


def handler(event, context):
    return "unreachable"
"""


def test_an_after_restore_hook_that_fails_fails_the_invocation_and_each_restore_after_it(
    tmp_path: Path,
) -> None:
    code = function_dir(tmp_path, FAILING_RESTORE)
    with LocalLambda(code, "app.handler", snap_start=True) as function:
        results = [function.invoke({}) for _ in range(2)]
        lines = [line.text for line in function.logs]

    for result in results:
        assert result.error is not None
        assert result.error["errorType"] == "RuntimeError"  # what the hook raised
        assert "no restore today" in result.error["errorMessage"]
    assert lines.count("init ran") == 1  # the second is restored from the same snapshot
    assert sum(text.startswith("RESTORE_START") for text in lines) == 2


THREADED_AT_INIT = """\
import os
import threading
import time

TICKS = os.environ["TICKS"]


def tick():
    while True:  # in /tmp too: the snapshot and each restore copy it meanwhile
        with open(TICKS, "a") as ticks:
            ticks.write(f"{os.getpid()}\\n")
        with open(os.path.join(os.environ["TMPDIR"], "churn"), "w") as churn:
            churn.write("x")
        time.sleep(0.01)


threading.Thread(target=tick, daemon=True).start()


def handler(event, context):
    return {"pid": os.getpid(), "threads": threading.active_count()}
"""


def test_the_snapshot_runs_nothing_between_restores_not_even_a_thread_started_at_init(
    tmp_path: Path,
) -> None:
    code = function_dir(tmp_path, THREADED_AT_INIT)
    ticks = tmp_path / "ticks"
    env = {"TICKS": str(ticks)}
    with LocalLambda(code, "app.handler", env=env, snap_start=True) as function:
        results = []
        for _ in range(3):
            results.append(function.invoke({}))
            before = ticks.read_text()
            time.sleep(0.5)  # the environment is frozen, and the snapshot stopped
            assert ticks.read_text() == before
            function.shutdown()
        lines = [line.text for line in function.logs]

    assert [result.error for result in results] == [None] * 3
    # A fork copies the thread that asked for the restore, not the one started at init,
    # and the emulator says so once.
    assert [result.payload["threads"] for result in results] == [1, 1, 1]
    warned = [text for text in lines if text.startswith("lambdacov local: 1 thread(s)")]
    assert len(warned) == 1
    assert not [text for text in lines if "DeprecationWarning" in text]


PID_AT_INIT = """\
import os

with open(os.environ["PIDS"], "a") as pids:
    pids.write(f"{os.getpid()}\\n")


def handler(event, context):
    return os.getpid()
"""


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_snapshot_that_fails_ends_init_and_the_next_invocation_inits_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdacov.local import emulator

    copies = []
    replace_tree = emulator._replace_tree

    def full_disk_once(target: Path, source: Path, **options: Any) -> None:
        copies.append(target)
        if len(copies) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        replace_tree(target, source, **options)

    monkeypatch.setattr(emulator, "_replace_tree", full_disk_once)
    code = function_dir(tmp_path, PID_AT_INIT)
    pids = tmp_path / "pids"
    layer = make_layer(tmp_path, "recorder")
    env = {"PIDS": str(pids), "RECORDER_LOG": str(tmp_path / "recorder.log")}
    with LocalLambda(code, "app.handler", layer=layer, env=env, snap_start=True) as function:
        failed = function.invoke({})
        first_init = int(pids.read_text().split()[0])
        assert gone(first_init)  # the snapshot's runtime, not left behind
        after = function.invoke({})

    assert failed.error is not None and failed.error["errorType"] == "SnapStartException"
    assert "No space left on device" in failed.error["errorMessage"]
    assert after.ok and len(pids.read_text().split()) == 2  # a new INIT, a new snapshot
    assert all(gone(int(pid)) for pid in pids.read_text().split())


SLOW_FORK = """\
import atexit
import os
import time

MARK = os.environ["MARK"]


def slow_once():
    if os.path.exists(MARK):
        os.remove(MARK)
        time.sleep(3)


def ran_on():
    with open(os.environ["CHILDREN"] + ".ran-on", "w") as ran:
        ran.write("the runtime went on, and ended as awslambdaric does")


def record_child():
    with open(os.environ["CHILDREN"], "a") as children:
        children.write(f"{os.getpid()}\\n")
    atexit.register(ran_on)


# The first fork (a restore) is slow once, where SLOW_AT says: before it, or after it in
# the parent (the child is forked then).
os.register_at_fork(**{os.environ["SLOW_AT"]: slow_once}, after_in_child=record_child)
with open(os.environ["PIDS"], "a") as pids:
    pids.write(f"{os.getpid()}\\n")


def handler(event, context):
    return os.getpid()
"""


def slow_fork(tmp_path: Path, slow_at: str) -> LocalLambda:
    """A SnapStart function whose first restore is 3 s late, given 1.5 s (see SLOW_FORK)."""
    code = function_dir(tmp_path, SLOW_FORK)
    (tmp_path / "slow").touch()
    env = {
        "MARK": str(tmp_path / "slow"),
        "PIDS": str(tmp_path / "pids"),
        "CHILDREN": str(tmp_path / "children"),
        "SLOW_AT": slow_at,
    }
    return LocalLambda(code, "app.handler", env=env, snap_start=True, init_timeout=1.5)


def test_a_restore_that_does_not_come_in_time_fails_and_the_next_one_inits_again(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    with slow_fork(tmp_path, "before") as function:
        late = function.invoke({})
        assert gone(int(pids.read_text().split()[0]))  # the template that did not fork
        again = function.invoke({})

    assert late.error is not None and late.error["errorType"] == "SnapStartTimeoutException"
    assert again.ok and len(pids.read_text().split()) == 2  # a new INIT, a new snapshot
    assert not (tmp_path / "slow").exists()


def test_a_runtime_api_port_taken_fails_the_restore_not_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdacov.local import emulator

    new_environment = emulator.LocalLambda._new_environment
    refused = []

    def port_taken_once(self: LocalLambda, address: str = "") -> emulator.Environment:
        if address and not refused:
            refused.append(address)
            raise EmulatorError(f"cannot serve the Runtime API at {address}: Address in use")
        return new_environment(self, address)

    monkeypatch.setattr(emulator.LocalLambda, "_new_environment", port_taken_once)
    code = function_dir(tmp_path, PID_AT_INIT)
    env = {"PIDS": str(tmp_path / "pids")}
    with LocalLambda(code, "app.handler", env=env, snap_start=True) as function:
        refused_result = function.invoke({})
        restored = function.invoke({})
        lines = [line.text for line in function.logs]

    assert refused_result.error is not None
    assert refused_result.error["errorType"] == "SnapStartException"
    assert "Address in use" in refused_result.error["errorMessage"]
    assert restored.ok
    assert sum(text.startswith("REPORT ") for text in lines) == 2
    assert len((tmp_path / "pids").read_text().split()) == 1  # restored, not initialised again


HELPER_AT_INIT = """\
import ctypes
import os
import subprocess

helper = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
# The function's own choice, made by native code (Python does not know of it): SIGCHLD
# ignored, kept after a restore.
ctypes.CDLL(None).signal(17, 1)


def sigchld_ignored():
    with open("/proc/self/status") as status:
        mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) >> 16 & 1)


def handler(event, context):
    if event.get("exit"):
        os._exit(3)
    helper.stdin.write("ping\\n")
    helper.stdin.flush()
    return {"echo": helper.stdout.readline().strip(), "sigchld_ignored": sigchld_ignored()}
"""


def test_a_restored_runtime_keeps_what_init_started_and_how_it_ends_is_known(
    tmp_path: Path,
) -> None:
    code = function_dir(tmp_path, HELPER_AT_INIT)
    with LocalLambda(code, "app.handler", snap_start=True, timeout=5) as function:
        answers = []
        for _ in range(2):
            answers.append(function.invoke({}))
            function.shutdown()
        ended = function.invoke({"exit": True})

    # A process the function started at init runs on (the snapshot is stopped, not it).
    assert [answer.payload for answer in answers] == [{"echo": "ping", "sigchld_ignored": True}] * 2
    # Its exit status, though the function has the kernel reap its children.
    assert ended.error is not None
    assert ended.error["errorMessage"].endswith("Runtime exited with error: exit status 3")


def ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_runtime_forked_for_a_restore_given_up_does_not_run_on(tmp_path: Path) -> None:
    children = tmp_path / "children"
    with slow_fork(tmp_path, "after_in_parent") as function:
        late = function.invoke({})
        forked = int(children.read_text().split()[0])
        deadline = time.monotonic() + 5
        while not ended(forked) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(forked)  # it was told to go on by nobody
        assert not Path(f"{children}.ran-on").exists()  # it ended there, not later
        again = function.invoke({})

    assert late.error is not None and late.error["errorType"] == "SnapStartTimeoutException"
    assert again.ok


def test_a_function_whose_module_is_named_as_a_standard_one_is_restored(tmp_path: Path) -> None:
    code = tmp_path / "function"
    code.mkdir()
    # signal.py: the emulator's template must not take it for the standard module.
    (code / "signal.py").write_text("def handler(event, context):\n    return 'restored'\n")
    with LocalLambda(code, "signal.handler", snap_start=True) as function:
        results = [function.invoke({}) for _ in range(2)]

    assert [result.payload for result in results] == ["restored", "restored"]
