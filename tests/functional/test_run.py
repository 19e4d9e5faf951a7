"""`lambdacov run -- CMD` against the moto server: attach, CMD, settle, combine, detach.

The proof: a small integration suite, written here into tmp_path, invokes the
deployed function in lambdacov's local Lambda "as deployed" (the real layer,
published to moto, the configuration `run` attached); the run's report equals
`coverage run` of exactly the events that suite sent, not of an invocation
made before the run, and the function's configuration is as before the run,
also when the suite fails or the run is stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest

from lambdacov.attach import fleet
from lambdacov.cli import main
from lambdacov.runner import RunId, holder, settle
from tests.conftest import HOST_ARCH, HOST_PYTHON
from tests.support.envelope import envelope
from tests.support.lambda_fleet import (
    create_function,
    make_role,
    publish_stand_in_layer,
    run_cli,
    snapshot,
)
from tests.support.location_proxy import LocationProxy
from tests.support.oracle import run_oracle_report

REGION = "us-east-1"
RUNTIME = f"python{HOST_PYTHON}"

FUNCTION = """\
def classify(n):
    if n < 0:
        return "negative"
    if n == 0:
        return "zero"
    if n % 2:
        return "odd"
    return "even"


def handler(event, context):
    label = classify(event["n"])
    if label == "negative":
        sign = -1
    else:
        sign = 1
    return {"label": label, "sign": sign}
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def aws(moto_endpoint: str) -> Any:
    return boto3.client("lambda", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def role(moto_endpoint: str) -> str:
    return make_role(boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION))


@pytest.fixture
def stand_in_layer(aws: Any) -> str:
    return publish_stand_in_layer(aws, unique("layer"), RUNTIME, HOST_ARCH)


@pytest.fixture
def function(aws: Any, role: str) -> str:
    """A function moto holds but never runs, with variables and a layer of its own."""
    own_layer = publish_stand_in_layer(aws, unique("own"), RUNTIME, HOST_ARCH)
    name = unique("run-fn")
    create_function(
        aws,
        role,
        name,
        runtime=RUNTIME,
        arch=HOST_ARCH,
        layers=[own_layer],
        env={"STAGE": "test"},
    )
    return name


def run_fd(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """run_cli, capturing the file descriptors too: the command's output is the process's."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    captured = capfd.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def base_args(name: str, bucket: str, endpoint: str, layer: str) -> list[str]:
    return [
        "run",
        name,
        "--bucket",
        bucket,
        "--layer-arn",
        layer,
        "--endpoint-url",
        endpoint,
        "--region",
        REGION,
        "--settle-quiet",
        "0",
    ]


# -- the run's steps, on a function moto holds but does not run ------------------------------


def test_failing_command_exits_with_its_status_and_detaches(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    tmp_path: Path,
) -> None:
    before = snapshot(aws, function)
    seen = tmp_path / "seen.json"
    # The command reads the function's variables while it runs: attached, to the run's prefix.
    script = (
        "import boto3, json, sys; "
        f"c = boto3.client('lambda', endpoint_url={moto_endpoint!r}, region_name={REGION!r}); "
        f"v = c.get_function_configuration(FunctionName={function!r})['Environment']['Variables']; "
        f"open({str(seen)!r}, 'w').write(json.dumps(v)); sys.exit(4)"
    )
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    code, _, err = run_cli(capsys, *args, "--", sys.executable, "-c", script)
    assert code == 4, err
    during = json.loads(seen.read_text())
    run = RunId.from_prefix(during["COVERAGE_S3_PREFIX"])
    assert run is not None and run.pid == os.getpid(), during
    assert during["COVERAGE_S3_BUCKET"] == bucket and during["STAGE"] == "test"
    # No data under the run's prefix: combine's error is one line, the command's status stays.
    assert "lambdacov: error [no-data]" in err
    assert "Traceback" not in err
    assert snapshot(aws, function) == before


def test_no_data_after_a_passing_command_is_combines_failure(
    capfd: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
) -> None:
    before = snapshot(aws, function)
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    code, out, err = run_fd(capfd, *args, "--json", "--", sys.executable, "-c", "print('hi')")
    assert code == 1, err
    document = envelope(out)  # the command's own stdout went to stderr: one document here
    assert document["error"]["slug"] == "no-data"
    result = document["result"]
    assert result["command_exit_code"] == 0
    assert result["settle"]["settled"] is True
    assert result["detach"]["counts"] == {"changed": 1}
    assert "hi" in err
    assert snapshot(aws, function) == before


def test_functions_attached_by_someone_else_are_refused(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    tmp_path: Path,
) -> None:
    other = "coverage/runs/20261201T204700Z-ci-runner-4242/"
    attach = ["attach", function, "--bucket", bucket, "--prefix", other]
    attach += ["--layer-arn", stand_in_layer, "--endpoint-url", moto_endpoint, "--region", REGION]
    code, _, err = run_cli(capsys, *attach)
    assert code == 0, err
    held = snapshot(aws, function)
    marker = tmp_path / "ran"
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    code, _, err = run_cli(capsys, *args, "--", *command)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == (
        f"lambdacov: error [held]: {function} already attached, held by lambdacov run "
        "on host ci-runner (pid 4242) since 2026-12-01 20:47:00 UTC"
    )
    assert f"lambdacov detach {function}" in lines[1]
    assert not marker.exists()
    assert snapshot(aws, function) == held  # the holder's attach is untouched


def test_a_second_run_on_the_same_functions_is_refused_naming_the_first(
    capfd: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
) -> None:
    before = snapshot(aws, function)
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    # The first run's command is a second run on the same function.
    second = [sys.executable, "-m", "lambdacov", *args, "--", sys.executable, "-c", "pass"]
    code, _, err = run_fd(capfd, *args, "--", *second)
    assert code == 1, err  # the second run's status is the first one's command's
    [line] = [line for line in err.splitlines() if line.startswith("lambdacov: error [held]")]
    assert line.startswith(f"lambdacov: error [held]: {function} already attached, held by ")
    assert f"(pid {os.getpid()})" in line  # the first run: this process
    assert snapshot(aws, function) == before


def test_keep_attached_leaves_a_session_that_detach_ends(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
) -> None:
    before = snapshot(aws, function)
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    code, out, err = run_cli(
        capsys, *args, "--keep-attached", "--json", "--", sys.executable, "-c", "pass"
    )
    assert code == 1, err  # no data yet: combine's no-data
    result = envelope(out)["result"]
    assert result["kept_attached"] is True and result["detach"] is None
    variables = snapshot(aws, function)["Environment"]
    assert variables["COVERAGE_S3_PREFIX"] == result["prefix"]
    assert f"lambdacov detach {function}" in err
    code, _, err = run_cli(
        capsys, "detach", function, "--endpoint-url", moto_endpoint, "--region", REGION
    )
    assert code == 0, err
    assert snapshot(aws, function) == before


def test_a_command_that_cannot_start_is_a_usage_error_and_detaches(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    tmp_path: Path,
) -> None:
    before = snapshot(aws, function)
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    missing = str(tmp_path / "no-such-program")
    code, _, err = run_cli(capsys, *args, "--", missing)
    assert code == 2
    assert f"lambdacov: error [usage]: cannot run {missing}: No such file or directory" in err
    assert snapshot(aws, function) == before


def test_a_run_without_a_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], bucket: str, moto_endpoint: str, stand_in_layer: str
) -> None:
    code, _, err = run_cli(capsys, *base_args("fn", bucket, moto_endpoint, stand_in_layer))
    assert code == 2
    assert err.startswith("lambdacov: error [usage]: no command to run\n")


# -- signals: lambdacov run as a process, stopped while the command runs ----------------------

WAITER = """\
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    marker.write_text(f"signal {signum}")
    sys.exit(3)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
marker.write_text("started")
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize(
    ("signum", "status", "slug"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_reaches_the_command_then_the_run_detaches(
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    tmp_path: Path,
    signum: int,
    status: int,
    slug: str,
) -> None:
    before = snapshot(aws, function)
    waiter = tmp_path / "waiter.py"
    waiter.write_text(WAITER)
    marker = tmp_path / "marker"
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdacov", *args, "--", sys.executable, str(waiter), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal: lambdacov forwards the signal itself
    )
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and marker.read_text() == "started"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        attached = snapshot(aws, function)
        assert attached != before  # the run holds the function now
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status, err
    assert marker.read_text() == f"signal {int(signum)}"  # the command got it, once
    assert f"lambdacov: error [{slug}]" in err
    assert "Traceback" not in err
    assert snapshot(aws, function) == before


def test_sigterm_while_delivery_settles_still_detaches(
    aws: Any, function: str, bucket: str, moto_endpoint: str, stand_in_layer: str
) -> None:
    before = snapshot(aws, function)
    args = base_args(function, bucket, moto_endpoint, stand_in_layer)[:-2]  # no --settle-quiet
    args += ["--settle-quiet", "600", "--settle-timeout", "600", "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdacov", *args, "--", sys.executable, "-c", "pass"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:  # until the run says the command is over: it is settling
            lines.append(line)
            if line.startswith("lambdacov run: command exited with 0"):
                break
        else:
            raise AssertionError("".join(lines))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, err
    document = envelope(out)
    assert document["error"]["slug"] == "terminated"
    result = document["result"]
    assert result["command_exit_code"] == 0 and result["settle"] is None
    assert result["detach"]["counts"] == {"changed": 1}
    assert snapshot(aws, function) == before


# -- settling and the run's identity, without AWS ---------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_settle_waits_for_a_quiet_period_after_the_last_change() -> None:
    clock = FakeClock()
    # Objects arrive until t=3, then nothing changes.
    arrivals = {0.0: "a", 1.0: "b", 3.0: "c"}

    def listing() -> frozenset[str]:
        return frozenset(key for at, key in arrivals.items() if at <= clock.now)

    done = settle(listing, quiet=2.0, limit=60.0, interval=0.5, clock=clock, sleep=clock.sleep)
    assert done.settled and done.objects == 3
    assert done.seconds == pytest.approx(5.0)  # the fake clock's time, not the machine's


def test_settle_gives_up_at_its_limit_when_uploads_keep_coming() -> None:
    clock = FakeClock()

    def listing() -> frozenset[float]:
        return frozenset({clock.now})  # a new object at every listing

    done = settle(listing, quiet=2.0, limit=10.0, interval=1.0, clock=clock, sleep=clock.sleep)
    assert not done.settled
    assert done.seconds == pytest.approx(10.0)


def test_run_prefix_names_its_holder() -> None:
    run = RunId.new()
    prefix = run.prefix("coverage/")
    assert prefix.startswith("coverage/runs/") and prefix.endswith("/")
    assert RunId.from_prefix(prefix) == run
    assert holder(prefix) == run.describe()
    assert holder("coverage/") == "`lambdacov attach` (prefix coverage/)"


# -- the proof: a real suite, the real layer, the local Lambda as deployed --------------------


def zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


SUITE = """\
import json
import os
from pathlib import Path

import boto3

from lambdacov.local.deployed import deployed_lambda

ENDPOINT = {endpoint!r}
os.environ["AWS_ENDPOINT_URL"] = ENDPOINT  # the function's S3 is the moto server too
EVENTS = json.loads(Path({events!r}).read_text())


def invoke_all(events, tmp_path):
    client = boto3.client("lambda", endpoint_url={located!r}, region_name={region!r})
    with deployed_lambda({name!r}, lambda_client=client, scratch=tmp_path) as function:
        results = [function.invoke(event) for event in events]
        function.shutdown()
    return results


def test_first_half(tmp_path):
    results = invoke_all(EVENTS[:2], tmp_path)
    assert [r.error for r in results] == [None, None]


def test_second_half(tmp_path):
    results = invoke_all(EVENTS[2:], tmp_path)
    assert [r.error for r in results] == [None] * len(EVENTS[2:])
    {failure}
"""


def deploy_real(
    aws: Any, role: str, host_layer: Path, function_dir: Path, proxy: LocationProxy
) -> tuple[str, str]:
    """The function deployed on moto, the real layer published; (name, layer ARN).

    The proxy serves their zips where Lambda's locations would (moto's cannot be fetched).
    """
    layer_name = unique("lambdacov-real")
    published = aws.publish_layer_version(
        LayerName=layer_name,
        Content={"ZipFile": host_layer.read_bytes()},
        CompatibleRuntimes=[RUNTIME],
        CompatibleArchitectures=[HOST_ARCH],
    )
    proxy.layers[layer_name, int(published["Version"])] = host_layer.read_bytes()
    name = unique("run-proof")
    code = zip_directory(function_dir)
    proxy.code[name] = code
    aws.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code},
        Architectures=[HOST_ARCH],
        Timeout=30,
        MemorySize=512,
        Environment={"Variables": {"STAGE": "proof"}},
    )
    return name, str(published["LayerVersionArn"])


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[LocationProxy]:
    with LocationProxy(moto_endpoint) as server:
        yield server


@pytest.mark.e2e
@pytest.mark.parametrize("suite_fails", [False, True], ids=["suite-passes", "suite-fails"])
def test_run_reports_exactly_the_suites_events(
    suite_fails: bool,
    capfd: pytest.CaptureFixture[str],
    aws: Any,
    role: str,
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    host_layer: Path,
    proxy: LocationProxy,
    tmp_path: Path,
) -> None:
    function_dir = tmp_path / "function"
    function_dir.mkdir()
    (function_dir / "app.py").write_text(FUNCTION)
    name, layer = deploy_real(aws, role, host_layer, function_dir, proxy)
    located = boto3.client("lambda", endpoint_url=proxy.endpoint, region_name=REGION)
    common = ["--endpoint-url", moto_endpoint, "--region", REGION]

    # Before the run: an invocation of a branch the suite never takes, delivered to S3.
    code, _, err = run_fd(capfd, "attach", name, "--bucket", bucket, "--layer-arn", layer, *common)
    assert code == 0, err
    os.environ["AWS_ENDPOINT_URL"] = moto_endpoint
    try:
        from lambdacov.local.deployed import deployed_lambda

        with deployed_lambda(name, lambda_client=located, scratch=tmp_path / "before") as fn:
            assert fn.invoke({"n": -3}).error is None
            fn.shutdown()
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
    earlier = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert earlier > 0  # that data exists: the run must leave it out
    code, _, err = run_fd(capfd, "detach", name, *common)
    assert code == 0, err
    before = snapshot(aws, name)

    events = [{"n": 0}, {"n": 7}, {"n": 8}, {"n": 11}]
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events))
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_deployed.py").write_text(
        SUITE.format(
            endpoint=moto_endpoint,
            located=proxy.endpoint,
            events=str(events_file),
            region=REGION,
            name=name,
            failure="assert False, 'a failing test'" if suite_fails else "",
        )
    )
    report = tmp_path / "report.json"
    other_cwd = tmp_path / "elsewhere"
    other_cwd.mkdir()
    command = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(suite)]
    args = ["run", name, "--bucket", bucket, "--layer-arn", layer, *common]
    args += ["--source-root", str(function_dir), "--json-report", str(report)]
    args += ["--settle-quiet", "1", "--json", "--"]
    cwd = Path.cwd()
    os.chdir(other_cwd)  # names in the report are relative to --source-root, not to the cwd
    try:
        code, out, err = run_fd(capfd, *args, *command)
    finally:
        os.chdir(cwd)
    result = envelope(out)["result"]
    if suite_fails:  # pytest's status is the run's; the reports are written all the same
        assert code == 1 and result["command_exit_code"] == 1, err
        assert "1 failed, 1 passed" in err
    else:
        assert code == 0, err
        assert result["command_exit_code"] == 0
        assert "2 passed" in err  # the suite's own output, streamed (to stderr under --json)
    assert result["combine_exit_code"] == 0

    (tmp_path / "oracle").mkdir()
    oracle = run_oracle_report(function_dir, events_file, tmp_path / "oracle")
    document = json.loads(report.read_text())
    measured = {
        name_: sorted(entry["executed_lines"])
        for name_, entry in document["files"].items()
        if entry["executed_lines"]
    }
    assert measured == oracle
    assert 3 not in measured["app.py"]  # `return "negative"`: only the earlier invocation ran it
    assert result["total"] == pytest.approx(document["totals"]["percent_covered"])
    assert snapshot(aws, name) == before


# -- detach, whatever happens on the way ------------------------------------------------------


def test_a_function_deleted_during_the_run_does_not_keep_the_others_attached(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    role: str,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
) -> None:
    doomed = unique("run-doomed")
    create_function(aws, role, doomed, runtime=RUNTIME, arch=HOST_ARCH)
    before = snapshot(aws, function)
    delete = (
        f"import boto3; boto3.client('lambda', endpoint_url={moto_endpoint!r},"
        f" region_name={REGION!r}).delete_function(FunctionName={doomed!r})"
    )
    argv = base_args(function, bucket, moto_endpoint, stand_in_layer)
    argv.insert(2, doomed)
    code, _, err = run_cli(capsys, *argv, "--", sys.executable, "-c", delete)

    assert snapshot(aws, function) == before
    assert f"cannot read function {doomed} to detach it" in err
    assert "detached 1 function(s)" in err
    assert code == 1  # no data: combine's no-data exit (the command itself passed)


def test_the_runners_sigterm_after_a_ctrl_c_does_not_stop_the_detach(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancelled CI job: SIGINT, then SIGTERM a few seconds later, here while detaching."""
    before = snapshot(aws, function)
    plan_detach_all = fleet.plan_detach_all

    def sigterm_meanwhile(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return plan_detach_all(*args, **kwargs)

    monkeypatch.setattr(fleet, "plan_detach_all", sigterm_meanwhile)
    ctrl_c = "import os, signal; os.kill(os.getppid(), signal.SIGINT)"
    code, _, err = run_cli(
        capsys,
        *base_args(function, bucket, moto_endpoint, stand_in_layer),
        "--",
        sys.executable,
        "-c",
        ctrl_c,
    )

    assert snapshot(aws, function) == before
    assert "detached 1 function(s)" in err
    assert code == 143  # the SIGTERM, the later and stronger of the two


def test_ctrl_c_during_an_attach_call_detaches_once_that_call_has_ended(
    capsys: pytest.CaptureFixture[str],
    aws: Any,
    function: str,
    bucket: str,
    moto_endpoint: str,
    stand_in_layer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An UpdateFunctionConfiguration slower than attach's grace after Ctrl-C: detach
    must not read the function before the update lands, or the update re-attaches it."""
    before = snapshot(aws, function)
    make_api_call = botocore.client.BaseClient._make_api_call
    slowed = threading.Event()

    def slow_update(client: Any, operation: str, params: Any) -> Any:
        if operation == "UpdateFunctionConfiguration" and not slowed.is_set():
            slowed.set()
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            time.sleep(5)  # longer than the 2.5 s attach gives a started call after Ctrl-C
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", slow_update)
    code, _, err = run_cli(
        capsys,
        *base_args(function, bucket, moto_endpoint, stand_in_layer),
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)

    assert slowed.is_set()
    assert code == 130
    assert "waiting (at most" in err
    assert snapshot(aws, function) == before
