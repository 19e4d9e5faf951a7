"""Run a deployed function locally, as it is configured in Lambda.

:func:`deployed_lambda` reads the function's configuration (GetFunction):
handler, runtime, variables (the exec wrapper among them), memory size,
timeout and layers, downloads each layer version's zip (GetLayerVersion's
``Content.Location``) and, unless a local checkout of the code is given, the
deployment package (``Code.Location``), and returns a :class:`LocalLambda`
configured alike::

    with deployed_lambda("orders", lambda_client=client, scratch=tmp) as fn:
        fn.invoke({"path": "/orders"})

Only what the emulator can run faithfully is accepted: zip functions on a
``python3.11`` or later runtime. Downloads are bounded by Lambda's quota for a
function's code and layers unzipped, and unpacked as untrusted zips
(:mod:`lambdacov.local.layers`). A location is fetched only over HTTPS, or,
when the Lambda client talks to a loopback endpoint (moto, LocalStack), only
from a loopback address: what such an emulator returns never sends a request
off the machine.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lambdacov.aws import translating
from lambdacov.conventions import PYTHON_RUNTIMES
from lambdacov.errors import AwsError, EmulatorError
from lambdacov.local.emulator import LocalLambda
from lambdacov.local.layers import MAX_UNZIPPED_BYTES, Budget, extract_zip
from lambdacov.local.process import LogCallback

_LAYER_VERSION_ARN = re.compile(r"^(arn:[^:]+:lambda:[^:]+:\d+:layer:[^:]+):(\d+)$")
#: Seconds a download waits to connect, and for each part of the answer.
DOWNLOAD_TIMEOUT = 60.0
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DeployedFunction:
    """What GetFunction says about a function, as the emulator needs it."""

    name: str
    region: str
    handler: str
    runtime: str
    env: Mapping[str, str]
    memory_mb: int
    timeout: float
    layer_arns: tuple[str, ...]
    code_location: str | None
    code_size: int

    @property
    def python(self) -> str:
        """The runtime's ``3.X`` version."""
        return self.runtime.removeprefix("python")  # one of PYTHON_RUNTIMES (describe_function)


@dataclass(frozen=True)
class DeployedRun:
    """A deployed function made ready to run locally: its code and layers on disk.

    ``code_source`` says where the code comes from, for people: the deployment
    package or the local ``--function-dir``; ``layers_replaced`` that local
    layers were given instead of the function's. :meth:`local_lambda` makes a fresh
    environment each call (several environments share one download).
    """

    function: DeployedFunction
    function_dir: Path
    layers: tuple[Path, ...]
    code_source: str
    python: str
    env: Mapping[str, str] = field(default_factory=dict)
    layers_replaced: bool = False

    def local_lambda(self, on_log: LogCallback | None = None) -> LocalLambda:
        """A not-yet-entered :class:`LocalLambda` configured as the function is deployed."""
        function = self.function
        return LocalLambda(
            self.function_dir,
            function.handler,
            layers=self.layers,
            python=self.python,
            env=self.env,
            timeout=function.timeout,
            memory_mb=function.memory_mb,
            function_name=function.name,
            region=function.region,
            on_log=on_log,
        )


def deployed_lambda(
    name: str,
    *,
    lambda_client: Any,
    scratch: Path,
    function_dir: Path | None = None,
    python: str | None = None,
    env_overrides: Mapping[str, str] | None = None,
    on_log: LogCallback | None = None,
) -> LocalLambda:
    """A not-yet-entered :class:`LocalLambda` running function ``name`` as it is deployed.

    The code comes from ``function_dir`` when given (a local checkout: nothing
    is downloaded for it), else from the deployment package. Downloads go
    under ``scratch``, which the caller owns and removes. ``python``
    replaces the runtime's version, ``env_overrides`` add to or replace the
    function's variables. Raises EmulatorError for a function the emulator
    cannot run or a layer or package it cannot fetch, AwsError when AWS
    refuses the calls.
    """
    run = prepare_deployed(
        name,
        lambda_client=lambda_client,
        scratch=scratch,
        function_dir=function_dir,
        python=python,
        env_overrides=env_overrides,
    )
    return run.local_lambda(on_log)


def prepare_deployed(
    name: str,
    *,
    lambda_client: Any,
    scratch: Path,
    function_dir: Path | None = None,
    python: str | None = None,
    env_overrides: Mapping[str, str] | None = None,
    layers: Sequence[Path] | None = None,
) -> DeployedRun:
    """Read the function, fetch what it needs, and return it ready to run (see above).

    ``layers``, when given, replace the function's layers (local copies of
    layers whose content cannot be downloaded): none is fetched then.
    """
    function = describe_function(name, lambda_client)
    scratch.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="deployed-", dir=scratch))
    budget = Budget()
    endpoint = str(lambda_client.meta.endpoint_url)
    if layers is None:
        layer_zips = tuple(
            fetch_layer(arn, lambda_client, workdir / f"layer-{index}.zip", endpoint)
            for index, arn in enumerate(function.layer_arns, start=1)
        )
    else:
        layer_zips = tuple(Path(layer) for layer in layers)
    for layer in layer_zips:
        _count_unzipped(layer, budget)
    if function_dir is not None:
        code_dir = Path(function_dir)
        source = f"code from --function-dir {code_dir} (not the deployment package)"
    else:
        code_dir = fetch_code(function, workdir, endpoint, budget)
        source = "code from the deployment package (GetFunction Code.Location)"
    return DeployedRun(
        function=function,
        function_dir=code_dir,
        layers=layer_zips,
        code_source=source,
        python=python or function.python,
        env={**function.env, **(env_overrides or {})},
        layers_replaced=layers is not None,
    )


def describe_function(name: str, lambda_client: Any) -> DeployedFunction:
    """GetFunction, checked: a zip function on a python3.11+ runtime, variables readable."""
    with translating("read the function", name):
        response = lambda_client.get_function(FunctionName=name)
    config = response.get("Configuration") or {}
    label = str(config.get("FunctionName") or name)
    package_type = config.get("PackageType") or "Zip"
    if package_type != "Zip":
        raise EmulatorError(
            f"function {label} is a container image function; --deployed runs zip functions",
            "run the image itself, or give --function-dir and --handler without --deployed",
        )
    runtime = str(config.get("Runtime") or "")
    if runtime not in PYTHON_RUNTIMES:
        raise EmulatorError(
            f"function {label} runs on {runtime or 'no managed runtime'}; "
            f"the local Lambda runs {', '.join(PYTHON_RUNTIMES)}",
            f"update the function's runtime to one of {', '.join(PYTHON_RUNTIMES)}",
        )
    environment = config.get("Environment") or {}
    if environment.get("Error"):
        error = environment["Error"]
        raise EmulatorError(
            f"function {label}: Lambda cannot read its variables: "
            f"{error.get('ErrorCode', '')} {error.get('Message', '')}".rstrip(),
            "fix the function's KMS key or variables in Lambda",
        )
    code = response.get("Code") or {}
    arn = str(config.get("FunctionArn") or "")
    return DeployedFunction(
        name=label,
        region=arn.split(":")[3] if arn.count(":") >= 6 else str(lambda_client.meta.region_name),
        handler=str(config.get("Handler") or ""),
        runtime=runtime,
        env=dict(environment.get("Variables") or {}),
        memory_mb=int(config.get("MemorySize") or 128),
        timeout=float(config.get("Timeout") or 3),
        layer_arns=tuple(str(layer["Arn"]) for layer in config.get("Layers") or []),
        code_location=code.get("Location"),
        code_size=int(config.get("CodeSize") or 0),
    )


def fetch_layer(arn: str, lambda_client: Any, destination: Path, endpoint: str) -> Path:
    """Download the zip of layer version ``arn`` to ``destination``.

    GetLayerVersion with the layer's ARN and version number is
    GetLayerVersionByArn's twin (same permission, same answer, other accounts'
    layers too), and the one the moto server implements.
    """
    match = _LAYER_VERSION_ARN.match(arn)
    if match is None:
        raise EmulatorError(f"layer {arn!r} is not a layer version ARN", "check the function")
    with translating("read the layer version", arn):
        response = lambda_client.get_layer_version(
            LayerName=match.group(1), VersionNumber=int(match.group(2))
        )
    content = response.get("Content") or {}
    size = int(content.get("CodeSize") or 0)
    hint = (
        "download the layer version yourself and pass it with --layer "
        "(which replaces the function's layers)"
    )
    _check_size(size, f"layer {arn}", hint)
    location = str(content.get("Location") or "")
    download(location, destination, endpoint, what=f"layer {arn}", hint=hint)
    return destination


def fetch_code(function: DeployedFunction, workdir: Path, endpoint: str, budget: Budget) -> Path:
    """Download and unpack the deployment package; the directory it is in."""
    hint = "give the function's code with --function-dir (e.g. your checkout)"
    what = f"the deployment package of {function.name}"
    _check_size(function.code_size, what, hint)
    archive = download(function.code_location or "", workdir / "code.zip", endpoint, what, hint)
    code_dir = workdir / "code"
    code_dir.mkdir()
    try:
        extract_zip(archive, code_dir, budget)
    except Exception as error:
        if isinstance(error, EmulatorError):
            raise
        raise EmulatorError(f"{what} cannot be unpacked: {error}", hint) from error
    return code_dir


def download(location: str, destination: Path, endpoint: str, what: str, hint: str) -> Path:
    """GET ``location`` into ``destination``, bounded in size and in where it may go."""
    reason = unfetchable(location, endpoint)
    if reason is not None:
        raise EmulatorError(f"{what} cannot be fetched: {reason}", hint)
    # A loopback endpoint's locations never go through the environment's HTTP proxy.
    proxies = urllib.request.ProxyHandler({} if is_loopback(endpoint) else None)
    opener = urllib.request.build_opener(_CheckedRedirects(endpoint), proxies)
    try:
        with opener.open(location, timeout=DOWNLOAD_TIMEOUT) as answer:
            declared = answer.headers.get("Content-Length")
            if declared is not None and declared.isdigit():
                _check_size(int(declared), what, hint)
            with destination.open("wb") as sink:
                _copy_bounded(answer, sink, what, hint)
    except urllib.error.HTTPError as error:
        raise AwsError(f"downloading {what} failed: HTTP {error.code}", hint) from error
    except (urllib.error.URLError, OSError) as error:
        reason_text = getattr(error, "reason", error)
        raise AwsError(f"cannot download {what}: {reason_text}", hint) from error
    return destination


def unfetchable(location: str, endpoint: str) -> str | None:
    """Why ``location`` must not be fetched, or None when it may be.

    Lambda hands out presigned HTTPS URLs. Behind a loopback endpoint the
    location must be on loopback too: an emulator's made-up S3 URL would
    otherwise send a request to the internet. The endpoint's own host is
    trusted as the endpoint is (an emulator serving its files over HTTP).
    """
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"its location {location!r} is not an HTTP(S) URL"
    if parts.hostname == urllib.parse.urlsplit(endpoint).hostname:
        return None
    if is_loopback(endpoint):
        if not is_loopback(location):
            return f"the endpoint {endpoint} is local but the location is not ({parts.hostname})"
        return None
    if parts.scheme != "https":
        return f"its location is not HTTPS ({parts.scheme}://{parts.hostname})"
    return None


def is_loopback(url: str) -> bool:
    """True for a URL on this machine: localhost or a loopback address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only where the first URL could have gone."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def redirect_request(  # noqa: PLR0917 - urllib calls it with these positional arguments
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        reason = unfetchable(newurl, self.endpoint)
        if reason is not None:
            raise urllib.error.URLError(f"redirected where it may not go: {reason}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _count_unzipped(layer: Path, budget: Budget) -> None:
    """Count a layer zip's unzipped size against the function's quota (directories are local)."""
    if layer.is_file() and zipfile.is_zipfile(layer):
        with zipfile.ZipFile(layer) as archive:
            budget.spend(sum(info.file_size for info in archive.infolist()), str(layer))


def _copy_bounded(source: IO[bytes], sink: IO[bytes], what: str, hint: str) -> None:
    written = 0
    while chunk := source.read(_CHUNK):
        written += len(chunk)
        _check_size(written, what, hint)
        sink.write(chunk)


def _check_size(size: int, what: str, hint: str) -> None:
    if size > MAX_UNZIPPED_BYTES:
        raise EmulatorError(
            f"{what} is {size // (1024 * 1024)} MB, over Lambda's limit of "
            f"{MAX_UNZIPPED_BYTES // (1024 * 1024)} MB",
            hint,
        )
