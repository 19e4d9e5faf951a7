"""The one place boto3 sessions and clients are made, and AWS errors become lambdacov's.

Core modules receive clients from here (or from tests); they never build their
own. :func:`translate` turns botocore's exceptions into :class:`AwsError` with a
one-line message and a hint, so the CLI never shows a traceback for an AWS
refusal. Retries and sleeps are parameters, so tests never sleep.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lambdacov import __version__
from lambdacov.errors import AwsError, UsageError

T = TypeVar("T")

# Codes AWS uses for "slow down" and "try again shortly".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "ProvisionedThroughputExceededException",
    }
)
RETRYABLE_CODES = THROTTLING_CODES | {"ResourceConflictException", "ServiceUnavailable"}

_HINTS = {
    "AccessDenied": "grant the caller {action} on {resource} (or use another --profile)",
    "AccessDeniedException": "grant the caller {action} on {resource} (or use another --profile)",
    "UnauthorizedOperation": "grant the caller {action} on {resource}",
    "ExpiredToken": "refresh your credentials (aws sso login, or new session keys)",
    "ExpiredTokenException": "refresh your credentials (aws sso login, or new session keys)",
    "InvalidClientTokenId": "the access key is not valid: check --profile and AWS_* variables",
    "UnrecognizedClientException": "the access key is not valid: check --profile",
    "NoSuchBucket": "create the bucket or fix its name",
    "ResourceNotFoundException": "check the name and the --region",
    "ResourceConflictException": "another update is in progress: retry in a moment",
}


def redact_url(url: str) -> str:
    """An endpoint URL without any user:password part, safe to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """``text`` with every URL's user:password part removed."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ClientError, else the exception's class name."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


def translate(error: BaseException, action: str, resource: str = "") -> AwsError:
    """Turn a botocore exception into an AwsError: what failed, why, and the fix."""
    code = error_code(error)
    target = f" on {resource}" if resource else ""
    name = type(error).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AwsError(
            f"no AWS credentials for {action}",
            "run `aws configure`, set AWS_PROFILE, or pass --profile",
            slug="no-credentials",
        )
    if name in ("NoRegionError",):
        return AwsError(f"no AWS region for {action}", "pass --region or set AWS_REGION")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return AwsError(
            f"cannot reach AWS for {action}: {redact_urls(str(error))}",
            "check the network, the --region and any --endpoint-url",
            slug="unreachable",
        )
    message = redact_urls(str(error).splitlines()[0]) if str(error) else code
    hint = _HINTS.get(code, "").format(action=action, resource=resource or "the resource")
    if code in THROTTLING_CODES:
        hint = "AWS is throttling: retry later or lower --concurrency"
    return AwsError(f"{action}{target} failed: {code}: {message}", hint, slug=code)


@contextlib.contextmanager
def translating(action: str, resource: str = "") -> Iterator[None]:
    """Run a block of AWS calls; any botocore exception leaves as an AwsError."""
    try:
        yield
    except AwsError:
        raise
    except Exception as error:
        if type(error).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise translate(error, action, resource) from error
        raise


@dataclass(frozen=True)
class Retrier:
    """Retries a call on throttling and conflicts with jittered exponential backoff."""

    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    retry_on: frozenset[str] = RETRYABLE_CODES

    def call(self, function: Callable[[], T]) -> T:
        """Call ``function`` until it succeeds or a non-retryable error, or attempts run out."""
        for attempt in range(1, self.attempts + 1):
            try:
                return function()
            except Exception as error:
                if error_code(error) not in self.retry_on or attempt == self.attempts:
                    raise
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter only
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class AwsContext:
    """How to reach AWS: the global options every AWS command accepts."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def session(self) -> Any:
        """A boto3 Session for the profile and region (botocore reads the rest as usual)."""
        import boto3
        import botocore.exceptions

        try:
            return boto3.Session(profile_name=self.profile, region_name=self.region)
        except botocore.exceptions.ProfileNotFound as error:
            raise UsageError(
                f"AWS profile {self.profile!r} not found",
                "check ~/.aws/config or drop --profile",
            ) from error

    def client(
        self,
        service: str,
        session: Any = None,
        *,
        region: str | None = None,
        read_timeout: float | None = None,
        max_pool_connections: int | None = None,
        raw_timestamps: bool = False,
    ) -> Any:
        """A client with standard retries and lambdacov's user agent.

        ``read_timeout`` is for calls that legitimately wait long (a synchronous
        invocation of a 15-minute function); ``max_pool_connections`` for many
        concurrent calls on one client. With ``raw_timestamps``, timestamps in
        the responses of the session's clients stay the strings AWS sent (as
        ``aws --cli-timestamp-format none`` does): parsing them is a quarter of
        botocore's time on a listing of 1,000 keys.
        """
        from botocore.config import Config

        session = session or self.session()
        if raw_timestamps:  # a setting of the botocore session under the boto3 one
            factory = session._session.get_component("response_parser_factory")
            factory.set_parser_defaults(timestamp_parser=str)
        # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda and most tools set.
        region_name = region or self.region or session.region_name or os.environ.get("AWS_REGION")
        if not region_name:
            raise UsageError("no AWS region", "pass --region or set AWS_REGION")
        options: dict[str, Any] = {
            "retries": {"max_attempts": 6, "mode": "standard"},
            "user_agent_extra": f"lambdacov/{__version__}",
        }
        if read_timeout is not None:
            options["read_timeout"] = read_timeout
        if max_pool_connections is not None:
            options["max_pool_connections"] = max_pool_connections
        try:
            return session.client(
                service,
                region_name=region_name,
                endpoint_url=self.endpoint_url or None,
                config=Config(**options),
            )
        except ValueError as error:  # botocore's InvalidRegionError is a ValueError too
            raise UsageError(
                f"cannot use {error}",
                "check --region (e.g. eu-west-1) and --endpoint-url (e.g. http://127.0.0.1:5000)",
            ) from error

    def for_region(self, region: str) -> AwsContext:
        """The same context in another region."""
        return AwsContext(self.profile, region, self.endpoint_url)
