"""`lambdacov local invoke` with the layer: what the README's first command runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.envelope import result_of
from tests.support.lambda_fleet import run_cli
from tests.support.oracle import ORDERS, measured, run_oracle

pytestmark = pytest.mark.e2e


def test_local_invoke_with_the_layer_lands_coverage_in_s3(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    event = {
        "httpMethod": "POST",
        "path": "/orders",
        "body": json.dumps({"items": [{"sku": "pear", "quantity": 2}]}),
    }
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            "local",
            "invoke",
            "--function-dir",
            str(ORDERS),
            "--handler",
            "app.handler",
            "--layer",
            str(host_layer),
            "--event",
            json.dumps(event),
            "--count",
            "2",
            "--function-name",
            "orders",
            "--json",
            "--env",
            f"COVERAGE_S3_BUCKET={bucket}",
            "--env",
            "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper",
        ],
        env={**os.environ, "AWS_ENDPOINT_URL": moto_endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    results = result_of(process.stdout, "local invoke")
    assert [r["payload"]["statusCode"] for r in results] == [201, 201]
    listed = [
        item
        for item in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if item["Key"].endswith(".coverage")  # not the source snapshots
    ]
    assert len(listed) == 1 and listed[0]["Key"].startswith("coverage/")
    assert "/orders-" in listed[0]["Key"]


# -- --events, --environments, repeatable --layer, --env-file (in-process, as users run it) --


def orders_coverage(s3: Any, bucket: str, workdir: Path) -> tuple[int, dict[str, list[Any]]]:
    """How many data objects the bucket holds, and their lines under ORDERS, combined."""
    import coverage

    keys = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if item["Key"].endswith(".coverage")
    ]
    combined = coverage.CoverageData(basename=str(workdir / "combined.coverage"))
    for number, key in enumerate(keys):
        path = workdir / f"{number}.coverage"
        s3.download_file(bucket, key, str(path))
        data = coverage.CoverageData(basename=str(path))
        data.read()
        combined.update(data)
    return len(keys), measured(combined, ORDERS, branch=False)


@pytest.mark.parametrize(
    ("how", "environments"),
    [
        # two environments, one after the other: events 1-4, then 5-7
        (["--environments", "2"], [1, 1, 1, 1, 2, 2, 2]),
        # Managed Instances: one environment, three runtime processes, three events at a time
        (["--max-concurrency", "3", "--memory", "2048"], [1] * 7),
        # SnapStart: one init, three environments restored from its snapshot
        (["--snap-start", "--environments", "3"], [1, 1, 1, 2, 2, 3, 3]),
    ],
    ids=["two-environments", "managed-instances", "snap-start"],
)
def test_events_cover_what_coverage_run_covers(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: list[str],
    environments: list[int],
) -> None:
    events_file = ORDERS / "events.json"
    events = json.loads(events_file.read_text())
    env_file = tmp_path / "orders.env"
    env_file.write_text(
        "# what attach would set\n"
        f'export COVERAGE_S3_BUCKET="{bucket}"\n'
        "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper\n"
    )
    code, out, err = run_cli(
        capsys,
        "local",
        "invoke",
        "--function-dir",
        str(ORDERS),
        "--handler",
        "app.handler",
        "--layer",
        str(host_layer),
        "--events",
        str(events_file),
        *how,
        "--function-name",
        "orders",
        "--env-file",
        str(env_file),
        "--env",
        f"AWS_ENDPOINT_URL={moto_endpoint}",
        "--json",
    )
    results = result_of(out, "local invoke")
    (tmp_path / "oracle").mkdir()
    expected, oracle_results = run_oracle(ORDERS, events_file, tmp_path / "oracle")
    failures = sum("raised" in outcome for outcome in oracle_results)

    assert failures == 1  # events.json has one crashing event: exit 1, as documented
    assert code == 1, err
    assert [result["environment"] for result in results] == environments
    # In the order of the events, also when they ran three at a time.
    assert [result["error"] is not None for result in results] == [
        "raised" in outcome for outcome in oracle_results
    ]
    assert len(results) == len(events)
    objects, lines = orders_coverage(s3, bucket, tmp_path)
    assert objects == max(environments)  # one per environment, each delivered
    assert lines == expected


APP = """\
import os
import shared


def handler(event, context):
    return {
        "shared": shared.NAME,
        "mode": os.environ.get("MODE"),
        "initialization": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "event": event,
    }
"""


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    return code


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "local", "invoke", "--handler", "app.handler", *args)


def test_layers_are_merged_in_order(
    function_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.zip"
    with zipfile.ZipFile(first, "w") as archive:
        archive.writestr("python/shared.py", "NAME = 'first'\n")
    second = tmp_path / "second"
    (second / "python").mkdir(parents=True)
    (second / "python" / "shared.py").write_text("NAME = 'second'\n")
    layers = {"first": first, "second": second}

    outputs = {}
    for order in (("first", "second"), ("second", "first")):
        layer_args = [arg for name in order for arg in ("--layer", str(layers[name]))]
        code, out, err = invoke(capsys, "--function-dir", str(function_dir), *layer_args)
        assert code == 0, err
        outputs[order] = json.loads(out.splitlines()[0])["shared"]

    assert outputs == {("first", "second"): "second", ("second", "first"): "first"}


def test_events_as_json_lines_from_stdin_in_order(
    function_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = tmp_path / "layer" / "python"
    layer.mkdir(parents=True)
    (layer / "shared.py").write_text("NAME = 'only'\n")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"n": 1}\n\n{"n": 2}\n[3]\n'))

    code, out, err = invoke(
        capsys,
        "--function-dir",
        str(function_dir),
        "--layer",
        str(layer.parent),
        "--events",
        "-",
        "--environments",
        "2",
    )

    assert code == 0, err
    assert [json.loads(line)["event"] for line in out.splitlines()] == [{"n": 1}, {"n": 2}, [3]]
    assert "3 invocation(s) in 2 environments (contiguous chunks of 2, 1)" in err
    assert "3 ok, 0 failed" in err


def test_env_on_the_command_line_wins_over_the_env_file(
    function_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = tmp_path / "layer" / "python"
    layer.mkdir(parents=True)
    (layer / "shared.py").write_text("NAME = 'x'\n")
    env_file = tmp_path / ".env"
    env_file.write_text("MODE='from file'\n")
    common = ("--function-dir", str(function_dir), "--layer", str(layer.parent))

    _, from_file, _ = invoke(capsys, *common, "--env-file", str(env_file))
    _, from_flag, _ = invoke(capsys, *common, "--env-file", str(env_file), "--env", "MODE=flag")

    assert json.loads(from_file)["mode"] == "from file"
    assert json.loads(from_flag)["mode"] == "flag"


def test_snap_start_runs_the_function_as_a_restored_snapshot(
    function_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = tmp_path / "layer" / "python"
    layer.mkdir(parents=True)
    (layer / "shared.py").write_text("NAME = 'x'\n")
    common = ("--function-dir", str(function_dir), "--layer", str(layer.parent))

    code, snap, err = invoke(capsys, *common, "--snap-start")
    _, plain, _ = invoke(capsys, *common)

    assert code == 0, err
    assert json.loads(snap)["initialization"] == "snap-start"
    assert json.loads(plain)["initialization"] == "on-demand"


def test_an_image_root_runs_with_its_command_as_the_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "image"
    (root / "var" / "task").mkdir(parents=True)
    (root / "var" / "task" / "app.py").write_text(APP)
    (root / "opt" / "python").mkdir(parents=True)
    (root / "opt" / "python" / "shared.py").write_text("NAME = 'from the image'\n")

    code, out, err = invoke(capsys, "--image-root", str(root), "--event", '{"n": 1}')

    assert code == 0, err
    assert json.loads(out)["shared"] == "from the image"
    assert json.loads(out)["event"] == {"n": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--image-root", "IMAGE", "--layer", "IMAGE"), "--image-root brings the function's"),
        (("--image-root", "IMAGE", "--deployed", "f"), "--image-root brings the function's"),
        (("--snap-start", "--deployed", "f"), "--snap-start runs a function given by"),
        (("--events", "EVENTS", "--count", "2"), "--events gives every event"),
        (("--events", "EVENTS", "--event", "{}"), "--events gives every event"),
        (("--events", "EVENTS", "--event-file", "EVENTS"), "--events gives every event"),
        (("--events", "EVENTS", "--environments", "3"), "--environments 3 is more than the 2"),
        (("--events", "BAD_LINES"), "line 2: not JSON"),
        (("--env-file", "BAD_ENV"), "line 2: the line is not KEY=VALUE"),
        (("--environments", "0"), "--environments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    function_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    files = {
        "EVENTS": ('[{"a": 1}, {"a": 2}]', "events.json"),
        "BAD_LINES": ('{"a": 1}\n{nope\n', "events.jsonl"),
        "BAD_ENV": ("A=1\noops\n", "bad.env"),
    }
    for text, name in files.values():
        (tmp_path / name).write_text(text)
    real_args = [str(tmp_path / files[arg][1]) if arg in files else arg for arg in args]

    code, out, err = invoke(capsys, "--function-dir", str(function_dir), *real_args)

    assert code == 2
    assert out == ""
    assert message in err
    if "BAD_ENV" in args:
        assert str(tmp_path / "bad.env") in err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--snap-start"], "--max-concurrency runs a function given by --function-dir"),
        (["--max-concurrency", "65"], "65 is not in the range 1<=x<=64"),
    ],
)
def test_managed_instances_options_that_cannot_be_are_refused_in_one_line(
    function_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    concurrency = [] if "--max-concurrency" in extra else ["--max-concurrency", "2"]
    code, out, err = invoke(capsys, "--function-dir", str(function_dir), *concurrency, *extra)
    assert code == 2 and out == ""
    assert err.startswith("lambdacov: error [usage]: ") and said in err
    assert "Traceback" not in err
