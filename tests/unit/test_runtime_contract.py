"""The user guide's imports, names and values, verbatim (docs/troubleshooting.md)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.s3_uploader import generate_s3_key


def test_guide_imports_work_verbatim() -> None:
    from coverage_wrapper import (  # noqa: F401
        CoverageContext,
        CoverageInitializationError,
        S3UploadError,
        coverage_handler,
    )
    from coverage_wrapper.combiner import combine_coverage_files  # noqa: F401
    from coverage_wrapper.health_check import health_check_handler  # noqa: F401
    from coverage_wrapper.logging_utils import get_logger  # noqa: F401
    from coverage_wrapper.models import CoverageConfig as Config  # noqa: F401
    from coverage_wrapper.s3_uploader import (  # noqa: F401
        generate_s3_key as key,
    )


def test_guide_key_example() -> None:
    key = generate_s3_key(
        function_name="my-function",
        execution_id="abc-123",
        prefix="coverage/",
        timestamp=datetime(2024, 1, 15, 10, 30),
    )
    assert key == "coverage/2024/01/15/my-function-abc-123.coverage"


def test_key_uses_the_utc_date() -> None:
    late_in_tokyo = datetime(2024, 1, 16, 3, 0, tzinfo=timezone(timedelta(hours=9)))
    assert generate_s3_key("f", "i", "coverage/", late_in_tokyo).startswith("coverage/2024/01/15/")


@pytest.mark.parametrize(
    ("name", "ident", "expected"),
    [
        ("../../etc", "x/../y", "p/2024/01/15/etc-x-..-y.coverage"),
        ("fn", "", "p/2024/01/15/fn-unknown.coverage"),
        ("arn:aws:lambda:fn", "a b", "p/2024/01/15/arn-aws-lambda-fn-a-b.coverage"),
    ],
)
def test_hostile_names_stay_one_key_component(name: str, ident: str, expected: str) -> None:
    key = generate_s3_key(name, ident, "p", datetime(2024, 1, 15, tzinfo=UTC))
    assert key == expected
    assert ".." not in key.split("/")


def test_missing_bucket_is_the_guides_value_error() -> None:
    with pytest.raises(ValueError, match=r"^COVERAGE_S3_BUCKET is required$"):
        CoverageConfig.from_environment({})


def test_defaults() -> None:
    config = CoverageConfig.from_environment({"COVERAGE_S3_BUCKET": "my-bucket", "TMPDIR": "/tmp"})
    assert config.s3_bucket == "my-bucket"
    assert config.s3_prefix == "coverage/"
    assert config.include_patterns == () and config.exclude_patterns == ()
    assert (config.debug, config.enabled, config.branch) == (False, True, False)
    assert config.upload_timeout == 10.0 and config.sample_rate == 1.0
    assert config.flush == "environment" and config.kms_key_id is None
    assert str(config.spool_dir) == "/tmp/lambdacov"


def test_every_variable_is_read() -> None:
    config = CoverageConfig.from_environment(
        {
            "COVERAGE_S3_BUCKET": "b.example-1",
            "COVERAGE_S3_PREFIX": "/team/cov",
            "COVERAGE_INCLUDE_PATTERNS": "src/*, lib/*,,handlers/*",
            "COVERAGE_EXCLUDE_PATTERNS": "tests/*",
            "COVERAGE_DEBUG": "TRUE",
            "COVERAGE_UPLOAD_TIMEOUT": "120",
            "COVERAGE_ENABLED": "yes",
            "COVERAGE_BRANCH": "1",
            "COVERAGE_SAMPLE_RATE": "0.25",
            "COVERAGE_FLUSH": "invocation",
            "COVERAGE_KMS_KEY_ID": "alias/cov",
            "COVERAGE_SPOOL_DIR": "/var/spool/x",
        }
    )
    assert config.s3_prefix == "team/cov/"
    assert config.include_patterns == ("src/*", "lib/*", "handlers/*")
    assert config.exclude_patterns == ("tests/*",)
    assert config.debug and config.enabled and config.branch
    assert config.upload_timeout == 120.0 and config.sample_rate == 0.25
    assert config.flush == "invocation" and config.kms_key_id == "alias/cov"
    assert str(config.spool_dir) == "/var/spool/x"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COVERAGE_S3_BUCKET", "s3://bucket/x", "not a URL"),
        ("COVERAGE_S3_BUCKET", "Bad_Bucket", "not a valid S3 bucket name"),
        ("COVERAGE_S3_PREFIX", "a/../b", "must not contain '..'"),
        ("COVERAGE_DEBUG", "maybe", "COVERAGE_DEBUG must be true or false"),
        ("COVERAGE_UPLOAD_TIMEOUT", "soon", "must be a number"),
        ("COVERAGE_UPLOAD_TIMEOUT", "0", "must be in (0, 900]"),
        ("COVERAGE_UPLOAD_TIMEOUT", "nan", "must be in"),
        ("COVERAGE_SAMPLE_RATE", "1.5", "must be in [0, 1]"),
        ("COVERAGE_FLUSH", "sometimes", "must be 'environment' or 'invocation'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    environ = {"COVERAGE_S3_BUCKET": "bucket", name: value}
    with pytest.raises(ValueError) as caught:
        CoverageConfig.from_environment(environ)
    assert message in str(caught.value)
    assert name in str(caught.value) or value in str(caught.value)


def _logger_lines(debug: str) -> list[dict[str, object]]:
    script = (
        "from coverage_wrapper.logging_utils import get_logger\n"
        "log = get_logger('app')\n"
        "log.debug('Function started', extra={'event_keys': ['a'], 'data': {'x': 1}})\n"
        "log.info('hello')\n"
        "try:\n    1/0\nexcept ZeroDivisionError:\n    log.exception('failed')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"COVERAGE_DEBUG": debug, "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_logger_writes_json_lines_and_debug_only_when_asked() -> None:
    quiet = _logger_lines("false")
    assert [entry["message"] for entry in quiet] == ["hello", "failed"]
    assert quiet[1]["error"] == {"type": "ZeroDivisionError", "message": "division by zero"}
    loud = _logger_lines("true")
    assert loud[0]["level"] == "DEBUG" and loud[0]["logger"] == "app"
    assert loud[0]["data"] == {"event_keys": ["a"], "x": 1}
    assert str(loud[0]["timestamp"]).endswith("Z")


def _runtime_modules() -> list[str]:
    """Every module of the runtime package, subpackages included, found by walking it."""
    import coverage_wrapper

    walked = pkgutil.walk_packages(coverage_wrapper.__path__, "coverage_wrapper.")
    return ["coverage_wrapper", *sorted(info.name for info in walked)]


def test_importing_any_runtime_module_loads_no_cli_or_aws_library() -> None:
    modules = _runtime_modules()
    package = Path(sys.modules["coverage_wrapper"].__file__ or "").parent
    assert len(modules) == len(list(package.rglob("*.py")))  # the walk saw every file
    # One child process imports them one by one and says what each brought in.
    # handler.py starts the engine and imports the function's handler when
    # imported: coverage switched off and a stdlib callable keep that inert.
    script = (
        "import importlib, json, sys\n"
        "heavy = {'typer', 'rich', 'jinja2', 'boto3', 'botocore', 'click', 'lambdacov'}\n"
        "loaded = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    importlib.import_module(name)\n"
        "    loaded[name] = sorted(heavy & {m.split('.')[0] for m in sys.modules})\n"
        "print(json.dumps(loaded))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "LAMBDACOV_"))}
    env.update(COVERAGE_ENABLED="false", LAMBDACOV_ORIGINAL_HANDLER="json.dumps")
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert sorted(loaded) == modules
    assert {name: heavy for name, heavy in loaded.items() if heavy} == {}


# Lambda's /bin/sh is bash; this machine's may be dash: the wrapper is run by both.
SHELLS = [shell for shell in ("/bin/sh", "/bin/bash", "/bin/dash") if Path(shell).exists()]
KILL_SWITCH = ["false", "FALSE", "No", " off ", "0", "Off", "\tfalse\n", " \t OFF\r\n"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("value", [*KILL_SWITCH, "true", " yes ", "", "falsey", "f alse"])
def test_the_exec_wrapper_reads_the_kill_switch_as_the_runtime_does(value: str, shell: str) -> None:
    wrapper = Path(__file__).resolve().parents[2] / "src/lambdacov/layer/files/lambdacov-wrapper"
    try:
        enabled = CoverageConfig.from_environment(
            {"COVERAGE_S3_BUCKET": "bucket", "COVERAGE_ENABLED": value}
        ).enabled
    except ValueError:  # not a flag: the runtime reports it and records nothing
        enabled = True
    assert enabled is (value not in KILL_SWITCH)
    done = subprocess.run(
        [shell, str(wrapper), "sh", "-c", 'printf %s "$_HANDLER"'],
        env={"PATH": "/usr/bin:/bin", "_HANDLER": "app.handler", "COVERAGE_ENABLED": value},
        capture_output=True,
        text=True,
        check=True,
    )
    # Off: not redirected, the function runs untouched; otherwise the runtime decides.
    expected = "coverage_wrapper.handler.lambda_handler" if enabled else "app.handler"
    assert done.stdout == expected


def test_the_exec_wrapper_starts_no_process_of_its_own(tmp_path: Path) -> None:
    wrapper = Path(__file__).resolve().parents[2] / "src/lambdacov/layer/files/lambdacov-wrapper"
    # A PATH with nothing on it but the command the wrapper hands over to.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "runtime").write_text('#!/bin/sh\nprintf %s "$_HANDLER"\n')
    (bin_dir / "runtime").chmod(0o755)
    done = subprocess.run(
        ["/bin/sh", str(wrapper), "runtime"],
        env={"PATH": str(bin_dir), "_HANDLER": "app.handler", "COVERAGE_ENABLED": " Off "},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "app.handler", "")


def test_the_exec_wrapper_redirects_when_enabled() -> None:
    wrapper = Path(__file__).resolve().parents[2] / "src/lambdacov/layer/files/lambdacov-wrapper"
    done = subprocess.run(
        [str(wrapper), "sh", "-c", 'printf "%s %s" "$_HANDLER" "$LAMBDACOV_ORIGINAL_HANDLER"'],
        env={"PATH": "/usr/bin:/bin", "_HANDLER": "app.handler"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "coverage_wrapper.handler.lambda_handler app.handler"


@pytest.mark.parametrize(
    ("env", "named", "given"),
    [
        ({"COVERAGE_SPOOL_DIR": "spool"}, "COVERAGE_SPOOL_DIR", "spool"),
        ({"TMPDIR": "reltmp"}, "TMPDIR", "reltmp"),
    ],
)
def test_a_relative_spool_names_the_variable_that_made_it(
    env: dict[str, str], named: str, given: str
) -> None:
    with pytest.raises(ValueError) as error:
        CoverageConfig.from_environment({"COVERAGE_S3_BUCKET": "my-bucket", **env})
    assert str(error.value) == f"{named} must be an absolute path, not {given!r}"
