"""Clients for the checks, made on demand by a factory the CLI supplies, and a guard.

The doctor needs clients for several services, sometimes in another region
(the bucket's, a function ARN's). The CLI passes a factory built on
``lambdacov.aws.AwsContext``; tests pass one pointing at a moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from lambdacov.aws import error_code
from lambdacov.doctor.model import Check, skipped


class ClientFactory(Protocol):
    """(service, region or None for the default, read timeout for long calls) -> a boto3 client."""

    def __call__(
        self, service: str, region: str | None, /, read_timeout: float | None = None
    ) -> Any:
        """A client; ``read_timeout`` only for calls that legitimately wait long."""


# Error codes meaning "you may not look", as opposed to "what you looked at is wrong".
DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden"}
)


class Clients:
    """Creates each (service, region) client once."""

    def __init__(self, factory: ClientFactory, region: str | None) -> None:
        self.factory = factory
        self.region = region
        self._made: dict[tuple[str, str | None, float | None], Any] = {}

    def get(
        self, service: str, region: str | None = None, *, read_timeout: float | None = None
    ) -> Any:
        """The client for ``service`` in ``region`` (default: the run's region).

        ``read_timeout`` is for a call that waits long (a synchronous invocation).
        """
        key = (service, region or self.region, read_timeout)
        if key not in self._made:
            if read_timeout is None:
                self._made[key] = self.factory(service, key[1])
            else:
                self._made[key] = self.factory(service, key[1], read_timeout=read_timeout)
        return self._made[key]


def first_line(error: BaseException) -> str:
    """An exception's message, one line, without botocore's preamble."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    marker = "operation: "
    return text.split(marker, 1)[1] if marker in text else text


def guard(code: str, run: Callable[[], Check]) -> Check:
    """Run one check; if it cannot run, a skipped check that says why, never an exception."""
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - one check must never stop the others
        reason = error_code(error)
        if reason in DENIED_CODES:
            return skipped(
                code,
                f"not permitted to look: {reason}: {first_line(error)}",
                "grant the caller read access for this check (or use another --profile)",
            )
        return skipped(code, f"could not run: {reason}: {first_line(error)}")
