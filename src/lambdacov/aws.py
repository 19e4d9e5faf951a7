"""The one place boto3 sessions and clients are made, and AWS errors become lambdacov's.

Core modules receive clients from here (or from tests); they never build their
own. :func:`translate` turns botocore's exceptions into :class:`AwsError` with a
one-line message and a hint, so the CLI never shows a traceback for an AWS
refusal. Retries and sleeps are parameters, so tests never sleep.

Every client is bounded in time: each attempt waits at most ``timeout``
seconds to connect and ``timeout`` seconds for each part of the answer, and a
call makes at most :data:`CALL_ATTEMPTS` attempts. Clients of one
:class:`AwsContext` share a :class:`CallGuard`: once an endpoint has let a
call run out of attempts without answering (or a call found no credentials to
sign with), later calls to it fail at once instead of waiting again, and once
the command is interrupted no new call starts. So a command facing an endpoint
that never answers ends after about one call's worst case
(:func:`call_bound`), not one per call it would make.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Re-exported (the alias is mypy's mark for that): the CLI reads AWS error codes
# with the runtime's function, the one definition the layer can import too.
from coverage_wrapper.errors import error_code as error_code  # noqa: PLC0414
from lambdacov import __version__
from lambdacov.errors import AwsError, LambdacovError, UsageError

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
# botocore's errors for an endpoint that refused, dropped or never answered a call.
UNREACHABLE_ERRORS = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)
# botocore's errors for a caller without credentials: no call can be signed.
NO_CREDENTIALS_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError"})
# The errors that make a guard give up on the endpoint: no connection at all, silence,
# or no credentials to sign with. A connection closed mid-answer comes at once and
# often passes (a reset, a proxy's hiccup): the callers that retry it keep their retries.
GIVE_UP_ERRORS = (UNREACHABLE_ERRORS - {"ConnectionClosedError"}) | NO_CREDENTIALS_ERRORS
#: Seconds an attempt waits to connect, and for each part of an answer (``--timeout``).
#: Lambda, IAM, S3, STS, CloudWatch and Logs answer lambdacov's calls in well under a
#: second; ten seconds of silence is a network or endpoint fault, not a slow answer.
DEFAULT_TIMEOUT = 10.0
#: Attempts per call: the first and two retries (botocore's standard mode, as the AWS CLI).
CALL_ATTEMPTS = 3
#: The most botocore sleeps between the attempts of a call that timed out:
#: rand(0, 1) x 0.05 x 2**i seconds before retry i (standard mode, not throttled).
RETRY_PAUSES = 0.05 + 0.1

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


def translate(error: BaseException, action: str, resource: str = "") -> LambdacovError:
    """Turn a botocore exception into an AwsError: what failed, why, and the fix.

    A parameter botocore refused before sending anything is the caller's
    mistake: a UsageError, with botocore's whole reason on one line.
    """
    code = error_code(error)
    target = f" on {resource}" if resource else ""
    name = type(error).__name__
    if name == "ParamValidationError":
        reason = " ".join(line.strip() for line in str(error).splitlines()[1:]) or str(error)
        return UsageError(
            f"invalid value for {action}{target}: {redact_urls(reason)}",
            "check the names and values given on the command line",
            slug="invalid-parameter",
        )
    if name in NO_CREDENTIALS_ERRORS:
        # Half a key pair is no credentials too; botocore's message names the missing half.
        reason = f": {error}" if name == "PartialCredentialsError" else ""
        return AwsError(
            f"no AWS credentials for {action}{reason}",
            "run `aws configure`, set AWS_PROFILE, or pass --profile",
            slug="no-credentials",
        )
    if name in ("NoRegionError",):
        return UsageError(
            f"no AWS region for {action}", "pass --region or set AWS_REGION", slug="no-region"
        )
    if name in UNREACHABLE_ERRORS:
        return AwsError(
            f"cannot reach AWS for {action}: {redact_urls(str(error))}",
            "check the network, the --region and any --endpoint-url; "
            "if AWS is only slow to answer, raise --timeout",
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


#: The names of a listing's page token in the request and in the page: Lambda's.
MARKER = ("Marker", "NextMarker")
#: S3's ListObjectsV2 (a page holds the next token only when the listing is truncated).
CONTINUATION_TOKEN = ("ContinuationToken", "NextContinuationToken")


def each_page(
    call: Callable[..., Mapping[str, Any]],
    request: Mapping[str, Any],
    *,
    token: tuple[str, str] = MARKER,
    retrier: Retrier | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Every page of a listing: ``call(**request)``, then again from each page's next token.

    Token-driven rather than boto3's paginators, so that each page's call goes
    through ``retrier`` when one is given.
    """
    name, next_name = token
    args = dict(request)
    while True:
        page = retrier.call(functools.partial(call, **args)) if retrier else call(**args)
        yield page
        following = page.get(next_name)
        if not following:
            return
        args[name] = following


def call_bound(timeout: float = DEFAULT_TIMEOUT, attempts: int = CALL_ATTEMPTS) -> float:
    """Seconds one call can take against an endpoint that accepts connections and never answers.

    Each attempt waits ``timeout`` for the answer, and botocore pauses briefly
    between attempts. (A connection that itself takes almost ``timeout`` to
    open, then gets no answer, can add up to ``timeout`` per attempt.)
    """
    return attempts * timeout + RETRY_PAUSES


class Interrupted(KeyboardInterrupt):
    """An AWS call refused because the command is being interrupted (Ctrl-C).

    A KeyboardInterrupt, so the ``except Exception`` of code that keeps going
    after one failed call lets it through, and worker threads stop at once.
    """


class CallGuard:
    """What the clients of one command share: endpoints found unreachable, and Ctrl-C.

    A call to an endpoint that already let a call run out of attempts without
    answering, or had no credentials to sign a call with, fails at once with
    that call's error (a fleet of 500 functions does not wait 500 times); after
    :meth:`interrupt`, every call that has not started raises
    :class:`Interrupted`, except in a :meth:`finishing` block, where a worker
    finishes the function it had started changing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unreachable: dict[str, BaseException] = {}
        self._interrupted = threading.Event()
        self._local = threading.local()

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` was called."""
        return self._interrupted.is_set()

    @property
    def unreachable(self) -> BaseException | None:
        """The error of the first call an endpoint never answered or no credentials could sign.

        None while AWS can be reached: the command's verdict on it, one error for
        every call that failed the same way.
        """
        with self._lock:
            return next(iter(self._unreachable.values()), None)

    def interrupt(self) -> None:
        """Let no new call start (safe to call from a signal handler)."""
        self._interrupted.set()

    @contextlib.contextmanager
    def finishing(self) -> Iterator[None]:
        """Calls made by this thread in the block go out even after :meth:`interrupt`."""
        self._local.finishing = True
        try:
            yield
        finally:
            self._local.finishing = False

    def watch(self, client: Any) -> None:
        """Check every call of ``client`` before it is sent, and note the endpoints that fail."""
        endpoint = str(client.meta.endpoint_url)

        def before_call(**_: Any) -> None:
            if self._interrupted.is_set() and not getattr(self._local, "finishing", False):
                raise Interrupted
            with self._lock:
                failed = self._unreachable.get(endpoint)
            if failed is not None:
                raise _replay(failed)

        def after_error(exception: BaseException | None = None, **_: Any) -> None:
            if exception is not None and type(exception).__name__ in GIVE_UP_ERRORS:
                with self._lock:
                    self._unreachable.setdefault(endpoint, exception)

        # Raised from before-call, the error leaves the client at once: botocore
        # retries only what fails inside the request loop that follows.
        client.meta.events.register("before-call", before_call)
        client.meta.events.register("after-call-error", after_error)


def _replay(error: BaseException) -> BaseException:
    """A fresh exception like ``error`` (the same class and message) to raise in another call."""
    kwargs = getattr(error, "kwargs", None)
    try:
        return type(error)(**kwargs) if isinstance(kwargs, dict) else type(error)(str(error))
    except Exception:  # noqa: BLE001 - an exotic constructor: the original will do
        return error


@dataclass(frozen=True)
class AwsContext:
    """How to reach AWS: the global options every AWS command accepts.

    ``timeout`` bounds each attempt of each call (``--timeout``); ``guard`` is
    shared by every client made from this context.
    """

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    guard: CallGuard = field(default_factory=CallGuard, compare=False, repr=False)

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

    def region_name(self, session: Any) -> str | None:
        """The region calls go to unless one is named: --region, the profile's, or AWS_REGION."""
        # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda and most tools set.
        return self.region or session.region_name or os.environ.get("AWS_REGION") or None

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
        """A client with bounded waits and attempts, watched by the guard; lambdacov's user agent.

        ``read_timeout`` is for calls that legitimately wait long (a synchronous
        invocation of a 15-minute function): it replaces ``timeout`` for the
        answer only, never for connecting. ``max_pool_connections`` for many
        concurrent calls on one client. With ``raw_timestamps``, timestamps in
        the responses of the session's clients stay the strings AWS sent (as
        ``aws --cli-timestamp-format none`` does): parsing them is a quarter of
        botocore's time on a listing of 1,000 keys.
        """
        import botocore.exceptions
        from botocore.config import Config

        session = session or self.session()
        if raw_timestamps:  # a setting of the botocore session under the boto3 one
            factory = session._session.get_component("response_parser_factory")
            factory.set_parser_defaults(timestamp_parser=str)
        region_name = region or self.region_name(session)
        if not region_name:
            raise UsageError("no AWS region", "pass --region or set AWS_REGION", slug="no-region")
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": CALL_ATTEMPTS, "mode": "standard"},
            "connect_timeout": self.timeout,
            "read_timeout": self.timeout if read_timeout is None else read_timeout,
            "user_agent_extra": f"lambdacov/{__version__}",
        }
        if max_pool_connections is not None:
            options["max_pool_connections"] = max_pool_connections
        try:
            client = session.client(
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
        except botocore.exceptions.PartialCredentialsError as error:  # read as clients are made
            raise translate(error, f"{service} calls") from error
        self.guard.watch(client)
        return client

    def raise_if_unreachable(self, action: str) -> None:
        """Raise the AwsError for ``action`` when AWS was found unreachable (see the guard).

        Commands call it after a batch of calls: calls that failed one by one
        against a silent endpoint become one error for the command.
        """
        failed = self.guard.unreachable
        if failed is not None:
            raise translate(failed, action)


class Clients:
    """The clients of one command, each made once, shared by its threads.

    Every command gets its clients here: :meth:`AwsContext.client` makes them
    (bounded waits, the shared guard) from one session per command, made when
    first needed and used under a lock (sessions are not thread-safe; clients
    are). A client is kept per service, region and the options that change it;
    no region and the default region are the same client. Clients with
    ``raw_timestamps`` get a session of their own: the setting is the
    session's, and would reach every other client of it.
    """

    def __init__(self, context: AwsContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._sessions: dict[bool, Any] = {}
        self._made: dict[tuple[Any, ...], Any] = {}

    def _session(self, raw_timestamps: bool) -> Any:
        # Callers hold the lock.
        if raw_timestamps not in self._sessions:
            self._sessions[raw_timestamps] = self.context.session()
        return self._sessions[raw_timestamps]

    @property
    def region(self) -> str | None:
        """The default region (see :meth:`AwsContext.region_name`); None when none is set."""
        with self._lock:
            return self.context.region_name(self._session(False))

    def get(
        self,
        service: str,
        region: str | None = None,
        *,
        read_timeout: float | None = None,
        max_pool_connections: int | None = None,
        raw_timestamps: bool = False,
    ) -> Any:
        """The client for ``service`` in ``region`` (None: the default region).

        The options are :meth:`AwsContext.client`'s.
        """
        with self._lock:
            session = self._session(raw_timestamps)
            where = region or self.context.region_name(session)
            key = (service, where, read_timeout, max_pool_connections, raw_timestamps)
            if key not in self._made:
                self._made[key] = self.context.client(
                    service,
                    session,
                    region=where,
                    read_timeout=read_timeout,
                    max_pool_connections=max_pool_connections,
                    raw_timestamps=raw_timestamps,
                )
            return self._made[key]

    def lambda_in(self, region: str | None) -> Any:
        """The Lambda client of ``region`` (None: the default): the core's ``client_for``."""
        return self.get("lambda", region)


R = TypeVar("R")

#: Seconds :func:`map_calls` lets started items finish after Ctrl-C.
STOP_GRACE = 2.5


class Abandoned(KeyboardInterrupt):
    """Ctrl-C during :func:`map_calls`: what finished, what was running, what never started.

    ``done`` maps item indexes to their results; ``running`` holds the items
    whose function had started and had not returned within the grace period
    (``finished`` is set once they have: their calls may still change things
    until then); ``cause`` is the interruption itself (Ctrl-C, or SIGTERM
    unwinding as one).
    """

    def __init__(
        self,
        done: dict[int, Any],
        running: frozenset[int],
        cause: KeyboardInterrupt,
        finished: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.done = done
        self.running = running
        self.cause = cause
        self.finished = finished if finished is not None else threading.Event()
        if not running:
            self.finished.set()


def map_calls(
    function: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    *,
    stop: threading.Event | None = None,
    grace: float = STOP_GRACE,
) -> list[R]:
    """``function(item)`` for each item on at most ``workers`` threads; the results in order.

    Unlike ``ThreadPoolExecutor.map``, Ctrl-C does not wait for the whole queue:
    on KeyboardInterrupt in the caller, ``stop`` is set (no worker starts
    another item, and ``function`` may look at it), the items already started
    get ``grace`` seconds to finish, then :class:`Abandoned` is raised with
    what finished. The workers are daemon threads, so one still blocked on an
    endpoint does not hold the process's exit either. An exception from
    ``function`` stops the other workers taking items and is raised here.
    """
    stop = stop if stop is not None else threading.Event()
    results: dict[int, R] = {}
    errors: dict[int, BaseException] = {}
    running: set[int] = set()
    lock = threading.Lock()
    queue = iter(range(len(items)))

    threads = max(1, min(workers, len(items)))
    left = [threads]  # workers still running
    finished = threading.Event()

    def work() -> None:
        try:
            take()
        finally:
            with lock:
                left[0] -= 1
                if not left[0]:
                    finished.set()

    def take() -> None:
        while not stop.is_set():
            with lock:
                index = next(queue, None)
                if index is None:
                    return
                running.add(index)
            try:
                value = function(items[index])
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                with lock:
                    errors[index] = error
                    running.discard(index)
                stop.set()
                return
            with lock:
                results[index] = value
                running.discard(index)

    for number in range(threads):
        threading.Thread(target=work, name=f"lambdacov-worker-{number}", daemon=True).start()
    # An Event, not Thread.join: a join interrupted by Ctrl-C marks a running thread
    # as finished (CPython 3.12), and the grace period would not wait for it.
    try:
        finished.wait()
    except KeyboardInterrupt as cause:
        stop.set()
        finished.wait(grace)
        with lock:
            raise Abandoned(
                dict(results), frozenset(running | errors.keys()), cause, finished
            ) from None
    if errors:
        raise errors[min(errors)]
    return [results[index] for index in range(len(items))]
