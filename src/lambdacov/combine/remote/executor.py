"""Where ``combine --remote`` runs the combiner: in AWS Lambda, or in local emulators.

The CLI names the executor and supplies the clients; this module chooses the
invoker (building the layer the local emulators run when needed) and hands it
to :func:`lambdacov.combine.remote.run.combine_remote`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

from lambdacov.combine.merge import CombineRequest
from lambdacov.combine.remote.deploy import DEFAULT_TIMEOUT_SECONDS
from lambdacov.combine.remote.invokers import AwsInvoker, LocalInvoker
from lambdacov.combine.remote.run import (
    Progress,
    RemoteCombineResult,
    RemoteSettings,
    combine_remote,
)
from lambdacov.errors import UsageError
from lambdacov.layer import build_layer
from lambdacov.layer.targets import host_arch, host_python

EXECUTORS = ("aws", "local")
#: Seconds the HTTP read of a synchronous invocation may wait beyond the function's own timeout.
INVOKE_READ_MARGIN = 60
# Each emulator is a Lambda environment with its own processes on this machine: a few at most.
LOCAL_INSTANCES = 4


class InvokeClientFactory(Protocol):
    """Makes the Lambda client that invokes the combiner, with the options it needs."""

    def __call__(self, *, read_timeout: float, max_pool_connections: int) -> Any:
        """A Lambda client whose reads wait ``read_timeout`` seconds, pooled for many calls."""


def check_executor(executor: str, endpoint_url: str | None) -> None:
    """Refuse an unknown executor, and the local one without a local S3 to read."""
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}")
    if executor == "local" and not endpoint_url:
        raise UsageError(
            "--executor local runs the combiner against a local S3 only",
            "pass --endpoint-url (a moto server), or use --executor aws",
        )


def host_layer(directory: Path) -> Path:
    """Build the layer for this machine's Python and architecture (what the emulators run)."""
    return build_layer(host_python(), host_arch(), directory / "layer.zip").path


def combine_with_executor(
    executor: str,
    s3: Any,
    request: CombineRequest,
    *,
    invoke_client: InvokeClientFactory,
    endpoint_url: str | None,
    function_name: str,
    settings: RemoteSettings,
    progress: Progress | None = None,
) -> RemoteCombineResult:
    """Combine the request's objects through the combiner run by ``executor``.

    ``"aws"`` invokes the deployed combiner function through a client from
    ``invoke_client``: botocore's default read timeout (60 s) would cut a
    15-minute shard off and retry it, so its reads outlast the function's own
    timeout. ``"local"`` runs the combiner in local Lambda emulators against
    ``endpoint_url`` (moto), for trying the fan-out without AWS; no Lambda
    client is made then. Raises RemoteCombineError when a shard keeps
    failing; no report must be written then.
    """
    check_executor(executor, endpoint_url)
    if executor == "aws":
        client = invoke_client(
            read_timeout=DEFAULT_TIMEOUT_SECONDS + INVOKE_READ_MARGIN,
            max_pool_connections=settings.concurrency + 4,
        )
        invoker = AwsInvoker(client, function_name, concurrency=settings.concurrency)
        return combine_remote(s3, invoker, request, settings, progress=progress)
    assert endpoint_url is not None  # check_executor refused the local executor without one
    with tempfile.TemporaryDirectory(prefix="lambdacov-remote-") as scratch:
        layer = host_layer(Path(scratch))
        env = {"AWS_ENDPOINT_URL": endpoint_url}
        instances = min(settings.concurrency, LOCAL_INSTANCES)
        with LocalInvoker(layer, instances=instances, env=env) as local:
            return combine_remote(s3, local, request, settings, progress=progress)
