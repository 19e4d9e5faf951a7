"""Options shared by every AWS command, Ctrl-C for them, and output helpers.

Every AWS command declares the same global options, after its own name as users
type them: ``lambdacov attach my-fn --region eu-west-1 --json``, and gets its
clients from :func:`aws_clients`. An option meaning the same in several
commands (the function selection, ``--bucket``, ``--prefix``) is declared here
once. Output is JSON on stdout with ``--json``, rich otherwise.

Ctrl-C in an AWS command (in the ``lambdacov`` program) stops every AWS call
that has not started yet, raises KeyboardInterrupt in the main thread as
usual, and ends the process :data:`INTERRUPT_GRACE` seconds later if it is
still waiting for calls in flight (a second Ctrl-C ends it at once). Commands
that change AWS (attach, detach) use that time to report exactly what they
changed and how to undo it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from coverage_wrapper.models import CoverageConfig
from lambdacov.attach.selection import Selection
from lambdacov.aws import DEFAULT_TIMEOUT, AwsContext, CallGuard, Clients
from lambdacov.cli import outcome
from lambdacov.errors import ExitCode, InterruptionError, UsageError

Profile = Annotated[
    str | None, typer.Option("--profile", help="AWS profile to use (as the AWS CLI's).")
]
Region = Annotated[
    str | None,
    typer.Option("--region", help="AWS region (default: the profile's or AWS_REGION)."),
]
Regions = Annotated[
    list[str] | None,
    typer.Option("--region", help="AWS region; repeat to cover several regions at once."),
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help="Send AWS calls to this endpoint (e.g. a local moto server).",
        show_envvar=True,
    ),
]


def _timeout_seconds(value: float) -> float:
    """Typer callback for ``--timeout``: a number of seconds from 0.1 to an hour."""
    if not 0.1 <= value <= MAX_TIMEOUT:  # also refuses nan, which no comparison holds for
        raise UsageError(
            f"--timeout {value:g} is not a number of seconds from 0.1 to {MAX_TIMEOUT:g}",
            "pass e.g. --timeout 30",
        )
    return value


MAX_TIMEOUT = 3600.0
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        callback=_timeout_seconds,
        envvar="LAMBDACOV_TIMEOUT",
        show_envvar=True,
        help="Seconds to wait for AWS to connect, and for each part of an answer, per attempt "
        "(3 attempts per call).",
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Say more about each step.")]


def bucket_name(value: str | None) -> str | None:
    """Typer callback for every ``--bucket``: a malformed name fails before any AWS call."""
    from lambdacov.conventions import check_bucket_name

    return None if value is None else check_bucket_name(value)


Bucket = Annotated[
    str,
    typer.Option("--bucket", help="The bucket the layer writes to.", callback=bucket_name),
]
#: The runtime's default key prefix: where the layer writes when attach is not told.
DEFAULT_PREFIX: str = CoverageConfig._field_defaults["s3_prefix"]
# None when not given: attach then leaves COVERAGE_S3_PREFIX unset (the runtime's
# default); the commands that read or check the objects use data_prefix().
Prefix = Annotated[
    str | None,
    typer.Option(
        "--prefix", help="Key prefix of the coverage objects.", show_default=DEFAULT_PREFIX
    ),
]


def data_prefix(prefix: str | None) -> str:
    """``--prefix`` as keys start: the runtime's default when not given, ending in ``/``."""
    from lambdacov.combine.collect import normalise_prefix

    return normalise_prefix(DEFAULT_PREFIX if prefix is None else prefix)


# Choosing functions: the same for every command that acts on several (lambdacov.attach.selection).
Functions = Annotated[
    list[str] | None,
    typer.Argument(help="Function names or ARNs.", show_default=False),
]
Patterns = Annotated[
    list[str] | None,
    typer.Option("--pattern", help="Select the region's functions whose name matches this regex."),
]
Tags = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Select the region's functions with this tag (KEY=VALUE or KEY)."),
]
Everything = Annotated[bool, typer.Option("--all", help="Select every function of the region.")]
Excludes = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="Leave out functions whose name matches this regex."),
]
Concurrency = Annotated[
    int,
    typer.Option("--concurrency", min=1, max=64, help="How many functions to update at once."),
]


def selection(
    functions: list[str] | None,
    patterns: list[str] | None,
    tags: list[str] | None,
    everything: bool,
    excludes: list[str] | None,
) -> Selection:
    """The options above, parsed and validated (UsageError when they select nothing)."""
    return Selection.create(
        functions or (),
        patterns=patterns or (),
        tags=tags or (),
        everything=everything,
        excludes=excludes or (),
    )


#: Seconds the program may take to stop after Ctrl-C before it stops without waiting.
INTERRUPT_GRACE = 4.0


def aws_clients(
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Clients:
    """The clients for a command's global options; Ctrl-C will stop their calls."""
    context = AwsContext(
        profile=profile, region=region, endpoint_url=endpoint_url or None, timeout=timeout
    )
    _interrupts.watch(context.guard)
    return Clients(context)


class _Interrupts:
    """The program's SIGINT handler while an AWS command runs."""

    def __init__(self) -> None:
        self._guards: list[CallGuard] = []
        self._installed = False
        self._count = 0

    def watch(self, guard: CallGuard) -> None:
        self._guards.append(guard)
        from lambdacov import cli

        # Only in the lambdacov program: a process that calls main() (tests,
        # scripts) keeps its own handling of SIGINT.
        if self._installed or not cli._owns_process:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._handle)
        self._installed = True

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self._count += 1
        for guard in self._guards:
            guard.interrupt()
        if self._count > 1:
            _exit_now("interrupted (Ctrl-C)")
        # A worker blocked on an endpoint that never answers would hold the
        # interpreter's exit (it joins its threads) until its call times out.
        timer = threading.Timer(
            INTERRUPT_GRACE,
            _exit_now,
            ("interrupted (Ctrl-C); stopped without waiting for the AWS calls in flight",),
        )
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt


def _exit_now(message: str) -> None:
    """End the program at once, with the interrupted error line saying ``message``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os.write(2, outcome.error_line(InterruptionError(message)).encode())
    os._exit(int(ExitCode.INTERRUPTED))


_interrupts = _Interrupts()


def console() -> Console:
    """The console for people: stdout, colour only on a terminal."""
    return Console(highlight=False, soft_wrap=False)


def progress_console() -> Console | None:
    """Where progress bars go: stderr on a terminal, nowhere on a pipe."""
    err = Console(stderr=True)
    return err if err.is_terminal else None


Since = Annotated[str, typer.Option("--since", help="How far back to look: 30m, 1h, 2d, 1h30m.")]


@contextlib.contextmanager
def progress_bar(err: Any, label: str, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on a terminal, nothing on a pipe; yields the function that advances it."""
    if err is None or total == 0:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    lock = threading.Lock()
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance() -> None:
            with lock:
                progress.advance(task)

        yield advance


# -- what attach sets and combine reports: shared by attach, combine and run ---------------

Include = Annotated[
    list[str] | None,
    typer.Option("--include", help="Measure only files matching this glob (repeatable)."),
]
Omit = Annotated[
    list[str] | None,
    typer.Option("--omit", help="Do not measure files matching this glob (repeatable)."),
]
Branch = Annotated[
    bool | None, typer.Option("--branch/--no-branch", help="Measure branches as well as lines.")
]
KmsKeyId = Annotated[
    str | None, typer.Option("--kms-key-id", help="Encrypt the data objects with this KMS key.")
]
LayerArns = Annotated[
    list[str] | None,
    typer.Option(
        "--layer-arn",
        help="Use this layer version instead of the latest published one (repeatable).",
    ),
]
GrantPolicy = Annotated[
    bool,
    typer.Option(
        "--grant", help="Put the least-privilege coverage policy on each function's role."
    ),
]
SourceRoot = Annotated[
    Path | None,
    typer.Option("--source-root", help="Local checkout of the functions' code (default: .)."),
]
HtmlReport = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="Write the HTML report to DIR: a new or empty directory, or an earlier report's.",
    ),
]
XmlReport = Annotated[Path | None, typer.Option("--xml", help="Write a Cobertura XML report.")]
LcovReport = Annotated[Path | None, typer.Option("--lcov", help="Write an LCOV report.")]
MarkdownReport = Annotated[
    Path | None,
    typer.Option(
        "--markdown",
        help="Write a markdown summary to FILE; appended when FILE is $GITHUB_STEP_SUMMARY.",
    ),
]
DataFile = Annotated[
    Path | None, typer.Option("--data-file", help="Write the combined coverage.py data file.")
]
FailUnder = Annotated[
    float | None, typer.Option("--fail-under", help="Exit 1 if total coverage is below PCT.")
]
