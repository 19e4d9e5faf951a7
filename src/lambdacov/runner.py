"""The mechanics of ``lambdacov run``: a run's identity, its command, and delivery settling.

``lambdacov run`` is ``coverage run`` for deployed functions: attach with a
prefix of the run's own, run the tests, wait for the layer's uploads to
settle, combine, detach. The CLI (``lambdacov.cli.run``) does the AWS part
with attach's and combine's own code; this module holds what is not AWS:

- the run's identity and prefix, which name who holds the functions, so a
  second run on the same functions can say whom it waits for;
- the command, run with its output streaming, the signals that stop
  lambdacov forwarded to it, so Ctrl-C or a cancelled CI job ends the tests
  first and lambdacov then detaches;
- settling: the layer uploads after each response, so the last
  tests' data may reach S3 a moment after the command ends. The run's prefix
  is listed until it stops changing for a quiet period (bounded).

It uses only the standard library: its callers pass the listing in.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

#: The folder under the base prefix that holds one prefix per run.
RUNS_FOLDER = "runs"
_RUN_ID = re.compile(
    r"(?:^|/)" + RUNS_FOLDER + r"/(?P<stamp>\d{8}T\d{6}Z)-(?P<host>[A-Za-z0-9-]*)-(?P<pid>\d+)/?$"
)


@dataclass(frozen=True)
class RunId:
    """Who runs: when it started (UTC), on which host, as which process."""

    started: datetime
    host: str
    pid: int

    @classmethod
    def new(cls) -> RunId:
        """This process's run, now."""
        host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]).strip("-")
        return cls(datetime.now(UTC).replace(microsecond=0), host[:40] or "host", os.getpid())

    @property
    def text(self) -> str:
        """The run id as its prefix spells it: ``20261201T204700Z-ci-runner-1234``."""
        return f"{self.started:%Y%m%dT%H%M%SZ}-{self.host}-{self.pid}"

    def prefix(self, base: str) -> str:
        """The run's own key prefix under ``base`` (a prefix ending in ``/``, or empty)."""
        return f"{base}{RUNS_FOLDER}/{self.text}/"

    def describe(self) -> str:
        """Who holds the functions, for a person: the host, the process and since when."""
        return (
            f"lambdacov run on host {self.host or '?'} (pid {self.pid}) "
            f"since {self.started:%Y-%m-%d %H:%M:%S} UTC"
        )

    @classmethod
    def from_prefix(cls, prefix: str) -> RunId | None:
        """The run a prefix belongs to; None for a prefix that is not a run's (plain attach)."""
        match = _RUN_ID.search(prefix)
        if match is None:
            return None
        started = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return cls(started, match["host"], int(match["pid"]))


def holder(prefix: str | None) -> str:
    """Who holds a function attached with ``prefix`` (its COVERAGE_S3_PREFIX), in a few words."""
    run = RunId.from_prefix(prefix or "")
    if run is not None:
        return run.describe()
    where = f" (prefix {prefix})" if prefix else ""
    return f"`lambdacov attach`{where}"


# -- the command ----------------------------------------------------------------------------

#: The exit status a process reports for each signal that stops a run (as shells do: 128 + n).
SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class Signals:
    """SIGINT and SIGTERM while a run lasts: remembered, forwarded to the command, or raised.

    While the command runs, a signal is passed on to it (the tests stop as
    they would on their own) and the run goes on to detach once the command
    has exited. At any other moment the first signal raises ``interrupt`` in
    the main thread, so attach, settling or combine unwind (and detach runs in
    their ``finally``). A second signal while the command runs kills it.
    """

    interrupt: Callable[[int], BaseException]
    received: int | None = None
    _child: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _forwarded: int = 0
    _starting: bool = False
    _holding: bool = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        """Handle both signals inside the block (only in the main thread; elsewhere: nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._handle) for number in SIGNAL_STATUS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Inside the block a signal is remembered, never raised: what runs there (detach)
        must finish. The caller looks at ``received`` afterwards."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        if first or signum == signal.SIGTERM:
            self.received = signum  # SIGTERM (the CI runner's) outranks an earlier Ctrl-C
        if self._starting or self._holding:
            return  # passed on by run() as soon as the command exists; or held
        child = self._child
        if child is not None and child.poll() is None:
            self._forward(child, signum)
            return
        raise self.interrupt(signum)

    def _forward(self, child: subprocess.Popen[bytes], signum: int) -> None:
        self._forwarded += 1
        with contextlib.suppress(ProcessLookupError):
            if self._forwarded > 1:
                child.kill()  # asked twice: the command does not stop by itself
            elif not _delivered_by_terminal(child, signum):
                child.send_signal(signum)

    def run(self, argv: list[str], *, stdout_to_stderr: bool = False) -> int:
        """Run ``argv`` to its end, output streaming; its exit status (128 + n if killed by n).

        A signal that arrives while the command starts is kept and passed on
        once it runs (blocking signals instead would leave them blocked in the
        command, which inherits the mask).
        """
        self._starting = True
        try:
            # The process's own stderr (fd 2), whatever sys.stderr is at the moment.
            child = subprocess.Popen(argv, stdout=2 if stdout_to_stderr else None)
            self._child = child  # before _starting ends: a signal then finds it
        finally:
            self._starting = False
        try:
            if self.received is not None:
                self._forward(child, self.received)
            status = child.wait()
        finally:
            if child.poll() is None:  # an exception in this process: never leave it running
                child.kill()
                child.wait()
            self._child = None
        return 128 - status if status < 0 else status


def _delivered_by_terminal(child: subprocess.Popen[bytes], signum: int) -> bool:
    """Whether Ctrl-C at the terminal already reached the command (its foreground group).

    The terminal sends SIGINT to every process of its foreground process group,
    the command included: sending it again would stop a test suite's clean-up
    (pytest reports a second Ctrl-C as a harder stop). SIGTERM, and SIGINT sent
    to lambdacov alone (``kill -INT``, a CI runner), are forwarded.
    """
    if signum != signal.SIGINT:
        return False
    try:
        with open("/dev/tty", "rb") as tty:  # noqa: PTH123 - a terminal, not a file
            return os.tcgetpgrp(tty.fileno()) == os.getpgid(child.pid)
    except OSError:
        return False


# -- settling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """How delivery ended: whether the prefix stopped changing, and when."""

    settled: bool
    seconds: float
    objects: int


def settle(
    listing: Callable[[], frozenset[Hashable]],
    *,
    quiet: float,
    limit: float,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Settled:
    """List until the listing has not changed for ``quiet`` seconds, for at most ``limit``.

    ``listing`` returns what identifies the prefix's objects now (key, ETag,
    size): an upload, or the rewrite of an environment's data file, changes
    it. The first listing counts as a change, so ``quiet`` always passes once.
    """
    started = clock()
    state = listing()
    changed_at = clock()
    while True:
        now = clock()
        if now - changed_at >= quiet:
            return Settled(True, now - started, len(state))
        if now - started >= limit:
            return Settled(False, now - started, len(state))
        sleep(max(0.0, min(interval, quiet - (now - changed_at), limit - (now - started))))
        current = listing()
        if current != state:
            state, changed_at = current, clock()
