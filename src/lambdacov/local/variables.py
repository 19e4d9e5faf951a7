"""The environment variables Lambda defines for the runtime and its extensions.

Built from scratch rather than from the host's environment: nothing of the
developer's shell (PYTHONPATH, VIRTUAL_ENV, COVERAGE_*...) may leak into the
function, except the AWS credentials and endpoint a test points it at.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Passed through from the caller when set, so a function can reach a local S3.
PASSED_THROUGH = ("AWS_ENDPOINT_URL",)
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_FAKE_CREDENTIAL = "testing"
FUNCTION_VERSION = "$LATEST"
ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda knows about a function: its code, handler and configuration."""

    function_dir: Path
    handler: str
    python_version: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    memory_mb: int = 128
    function_name: str = "local-function"
    region: str = "us-east-1"

    @property
    def function_arn(self) -> str:
        """The unqualified ARN Lambda passes as the invoked function's ARN."""
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"


def new_log_stream_name() -> str:
    """A log stream name as Lambda gives each environment: ``YYYY/MM/DD/[$LATEST]<32 hex>``."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    return f"{today}/[{FUNCTION_VERSION}]{uuid.uuid4().hex}"


def lambda_environment(
    config: FunctionConfig,
    *,
    runtime_api: str,
    opt_dir: Path,
    tmp_dir: Path,
    runtime_dir: Path,
    runtime_bin: Path,
    log_stream_name: str,
    host_env: Mapping[str, str],
) -> dict[str, str]:
    """Return the complete environment of the runtime and extensions processes.

    ``host_env`` is only consulted for credentials and AWS_ENDPOINT_URL; the
    function's own variables come last and override everything, as a test
    asking for a particular value expects, with ``/opt`` and ``/var/task`` in
    them pointing at the local layer and code (see :func:`lambda_path`).
    """
    version = config.python_version
    task_root = str(config.function_dir)
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": FUNCTION_VERSION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": config.handler,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": f"{runtime_bin}:/usr/local/bin:/usr/bin:/bin",
        # Lambda's sys.path order: the code, then the layers' site-packages, then /opt/python.
        "PYTHONPATH": ":".join(
            [task_root, f"{opt_dir}/python/lib/python{version}/site-packages", f"{opt_dir}/python"]
        ),
        # The environment's private /tmp (Python's tempfile honours TMPDIR).
        "TMPDIR": str(tmp_dir),
    }
    for name in CREDENTIALS:
        value = host_env.get(name)
        if value:
            env[name] = value
        elif name != "AWS_SESSION_TOKEN" or "AWS_ACCESS_KEY_ID" not in host_env:
            env[name] = _FAKE_CREDENTIAL
    for name in PASSED_THROUGH:
        if host_env.get(name):
            env[name] = host_env[name]
    env.update({name: lambda_path(value, opt_dir, task_root) for name, value in config.env.items()})
    return env


def lambda_path(value: str, opt_dir: Path, task_root: str) -> str:
    """Translate Lambda's fixed paths in a function variable to their local places.

    A configuration copied from Lambda (``AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper``,
    as ``lambdacov attach`` sets it) then works unchanged in the emulator.
    """
    for lambda_dir, local_dir in (("/opt", str(opt_dir)), ("/var/task", task_root)):
        if value == lambda_dir or value.startswith(lambda_dir + "/"):
            return local_dir + value[len(lambda_dir) :]
    return value
