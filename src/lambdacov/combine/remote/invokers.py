"""Running combiner invocations: on AWS Lambda, or in local Lambda emulators.

Both implement :class:`Invoker`: ``invoke(event)`` returns the combiner's
response, or raises :class:`ShardFailed` when the invocation failed in a way
a retry may fix (a function error, a timeout, throttling). Anything else (no
such function, access denied) leaves as an AwsError at once: retrying a
misconfiguration only delays the message.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from lambdacov.aws import THROTTLING_CODES, error_code, translate
from lambdacov.closing import Closing

#: The handler of the combiner function (it lives in the layer).
COMBINER_HANDLER = "coverage_wrapper.shard.handler"
# Lambda's own "try again" answers to Invoke, beyond throttling.
_RETRYABLE_INVOKE = THROTTLING_CODES | {
    "ServiceException",
    "EC2ThrottledException",
    "ResourceConflictException",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "EndpointConnectionError",
}


class ShardFailed(Exception):  # noqa: N818 - Retrier matches on this name
    """One invocation failed; the message says how (the combiner's error, a timeout)."""


class Invoker(Protocol):
    """Runs one combiner invocation and returns its response document."""

    @property
    def concurrency(self) -> int:
        """How many invocations it can run at once."""
        ...

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the combiner with ``event``; raise ShardFailed when it failed."""
        ...


def _payload(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ShardFailed(f"the combiner returned {type(raw).__name__}, not a JSON object")
    return raw


def _function_error(error: Mapping[str, Any]) -> ShardFailed:
    kind = error.get("errorType") or "Error"
    message = str(error.get("errorMessage") or "").strip().splitlines()
    return ShardFailed(f"{kind}: {message[0] if message else 'no message'}")


class AwsInvoker:
    """Invokes the deployed combiner function synchronously (``RequestResponse``).

    The Lambda client must allow a read timeout longer than the function's
    timeout (see :func:`lambdacov.combine.remote.executor.combine_with_executor`),
    or a long shard would be cut off by the HTTP layer rather than by Lambda.
    """

    def __init__(self, client: Any, function_name: str, *, concurrency: int = 100) -> None:
        self.client = client
        self.function_name = function_name
        self._concurrency = concurrency

    @property
    def concurrency(self) -> int:
        """How many invocations run at once (bounded by the account's Lambda concurrency)."""
        return self._concurrency

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """One synchronous invocation; a function error or throttling raises ShardFailed."""
        try:
            response = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
            )
        except Exception as error:
            if error_code(error) in _RETRYABLE_INVOKE:
                raise ShardFailed(f"{error_code(error)}: {error}") from error
            if type(error).__module__.startswith(("botocore", "urllib3")):
                raise translate(error, "lambda:InvokeFunction", self.function_name) from error
            raise
        body = response["Payload"].read()
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        if response.get("FunctionError"):
            raise _function_error(document if isinstance(document, dict) else {})
        return _payload(document)


class LocalInvoker(Closing):
    """Runs the combiner in several local Lambda environments at once.

    Each environment is a :class:`~lambdacov.local.LocalLambda` with the
    layer zip and the real runtime client; ``env`` should point
    ``AWS_ENDPOINT_URL`` at the embedded S3. Environments start on first use
    and stay warm, so one invoker serves many runs. Use it as a context
    manager (or call :meth:`close`).
    """

    def __init__(
        self,
        layer: Path,
        *,
        instances: int = 4,
        env: Mapping[str, str] | None = None,
        function_dir: Path | None = None,
        handler: str = COMBINER_HANDLER,
        timeout: float = 120.0,
        memory_mb: int = 2048,
        python: str | None = None,
    ) -> None:
        from lambdacov.local import LocalLambda

        self._scratch: Any = None
        if function_dir is None:
            import tempfile

            self._scratch = tempfile.TemporaryDirectory(prefix="lambdacov-combiner-code-")
            function_dir = Path(self._scratch.name)
        self._free: queue.Queue[Any] = queue.Queue()
        self._all = [
            LocalLambda(
                function_dir,
                handler,
                layer=layer,
                python=python,
                env=dict(env or {}),
                timeout=timeout,
                memory_mb=memory_mb,
                function_name=f"lambdacov-combiner-{index}",
            )
            for index in range(max(1, instances))
        ]
        for instance in self._all:
            self._free.put(instance)
        self._lock = threading.Lock()
        self.invocations = 0

    @property
    def concurrency(self) -> int:
        """The number of environments."""
        return len(self._all)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run the event in a free environment; a function error raises ShardFailed."""
        instance = self._free.get()
        try:
            with self._lock:
                self.invocations += 1
            result = instance.invoke(event)
        finally:
            self._free.put(instance)
        if result.error is not None:
            raise _function_error(result.error)
        return _payload(result.payload)

    def warm_up(self) -> None:
        """Initialise every environment now, concurrently (about a second each)."""

        def start(instance: Any) -> None:
            if not instance.is_warm:
                instance.invoke({"warm_up": True})  # refused by the handler, but initialises

        with ThreadPoolExecutor(len(self._all)) as pool:
            list(pool.map(start, self._all))

    def close(self) -> None:
        """Shut every environment down and delete their files."""
        with ThreadPoolExecutor(len(self._all)) as pool:
            list(pool.map(lambda instance: instance.close(), self._all))
        if self._scratch is not None:
            self._scratch.cleanup()


__all__ = ["COMBINER_HANDLER", "AwsInvoker", "Invoker", "LocalInvoker", "ShardFailed"]
