"""The environment variables Lambda defines for the runtime and its extensions.

Built from scratch rather than from the host's environment: nothing of the
developer's shell (PYTHONPATH, VIRTUAL_ENV, COVERAGE_*...) may leak into the
function, except the AWS credentials and endpoint a test points it at.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lambdacov.errors import UsageError

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
    snap_start: bool = False
    #: Lambda Managed Instances: the runtime processes per environment
    #: (PerExecutionEnvironmentMaxConcurrency); None for Lambda's default compute.
    max_concurrency: int | None = None

    @property
    def initialization_type(self) -> str:
        """AWS_LAMBDA_INITIALIZATION_TYPE, as Lambda sets it."""
        if self.max_concurrency is not None:
            return "lambda-managed-instances"
        return "snap-start" if self.snap_start else "on-demand"

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
    credentials_uri: str = "",
    credentials_token: str = "",
) -> dict[str, str]:
    """Return the complete environment of the runtime and extensions processes.

    With ``config.snap_start`` and a ``credentials_uri``, the keys are not in the
    environment but served there, for ``credentials_token`` (as Lambda does for
    SnapStart versions). ``host_env`` is only consulted for credentials and AWS_ENDPOINT_URL; the
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
        "AWS_LAMBDA_INITIALIZATION_TYPE": config.initialization_type,
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
    if config.max_concurrency is not None:
        # The Python runtime forks this many processes (awslambdaric's multi-concurrent mode).
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(config.max_concurrency)
    env.update(credentials(host_env))
    if config.snap_start and credentials_uri:
        # A SnapStart version gets no keys in its environment (they would be in the
        # snapshot, stale after a restore): the AWS SDKs' container provider asks an endpoint.
        for name in CREDENTIALS:
            env.pop(name, None)
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = credentials_uri
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = credentials_token
    for name in PASSED_THROUGH:
        if host_env.get(name):
            env[name] = host_env[name]
    env.update({name: lambda_path(value, opt_dir, task_root) for name, value in config.env.items()})
    return env


def credentials(host_env: Mapping[str, str]) -> dict[str, str]:
    """The keys the environment's processes get: the host's, else stand-ins (which moto,
    and every endpoint that does not check signatures, accept)."""
    keys = {}
    for name in CREDENTIALS:
        value = host_env.get(name)
        if value:
            keys[name] = value
        elif name != "AWS_SESSION_TOKEN" or "AWS_ACCESS_KEY_ID" not in host_env:
            keys[name] = _FAKE_CREDENTIAL
    return keys


def lambda_path(value: str, opt_dir: Path, task_root: str) -> str:
    """Translate Lambda's fixed paths in a function variable to their local places.

    A configuration copied from Lambda (``AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper``,
    as ``lambdacov attach`` sets it) then works unchanged in the emulator.
    """
    for lambda_dir, local_dir in (("/opt", str(opt_dir)), ("/var/task", task_root)):
        if value == lambda_dir or value.startswith(lambda_dir + "/"):
            return local_dir + value[len(lambda_dir) :]
    return value


_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOUBLE_QUOTED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a dotenv file: ``KEY=VALUE`` lines, as docker and python-dotenv read them.

    Blank lines and ``#`` comments are skipped, ``export`` before a key is
    allowed, a single-quoted value is taken literally, a double-quoted one
    understands ``\\n``, ``\\t``, ``\\"`` and ``\\\\``, an unquoted one ends at
    `` #`` and is stripped. Nothing is expanded (``$OTHER`` stays as written).
    A line that is none of these is a UsageError naming the file and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM is not part of the first key
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the env file {path}: {error}") from error
    variables: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            parsed = parse_env_line(line)
        except ValueError as error:
            raise UsageError(
                f"{path}, line {number}: {error}",
                "write KEY=VALUE, with KEY made of letters, digits and _",
            ) from error
        if parsed is not None:
            key, value = parsed
            variables[key] = value
    return variables


def parse_env_line(line: str) -> tuple[str, str] | None:
    """One dotenv line: (key, value), or None for a blank line or a comment."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith(("export ", "export\t")):
        stripped = stripped[len("export") :].lstrip()
    key, sep, rest = stripped.partition("=")
    key = key.strip()
    if not sep:  # the line is not shown: it may hold a secret (a value without its key)
        raise ValueError("the line is not KEY=VALUE (it has no '=')")
    if not _ENV_KEY.match(key):
        raise ValueError(f"{_shown(key)} is not a variable name")
    return key, _env_value(rest.strip())


def _env_value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        value, end = _quoted(raw, quote)
        trailing = raw[end + 1 :].strip()
        if trailing and not trailing.startswith("#"):
            raise ValueError("unexpected text after the closing quote")
        return value
    comment = re.search(r"\s#", raw)
    return (raw[: comment.start()] if comment else raw).strip()


def _quoted(raw: str, quote: str) -> tuple[str, int]:
    """The value between ``quote`` at raw[0] and its closing quote, and that quote's index."""
    chars: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == quote:
            return "".join(chars), index
        if quote == '"' and char == "\\" and index + 1 < len(raw):
            following = raw[index + 1]
            chars.append(_DOUBLE_QUOTED_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        chars.append(char)
        index += 1
    raise ValueError(f"no closing {quote} (a value spans one line)")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
