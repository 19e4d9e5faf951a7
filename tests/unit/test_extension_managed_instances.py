"""The extension on Managed Instances: passes short enough for SHUTDOWN's final one.

The deliverer is a stand-in that keeps time as the real one does (one pass at a
time under the spool's lock, no upload started after a pass's deadline), so the
threads of :meth:`CoverageExtension.serve_concurrently` can be timed against
Lambda's 2-second SHUTDOWN window. The real deliverer and S3 are in
tests/e2e/test_managed_instances_in_local_lambda.py.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from coverage_wrapper import extension
from coverage_wrapper.extension import CoverageExtension
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.notify import ExtensionListener, RuntimeNotifier

UPLOAD_SECONDS = 0.3  # one S3 request


class Events:
    """The Extensions API's side: events handed out one by one."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()

    def next_event(self) -> dict[str, Any]:
        return self.events.get(timeout=30)


class Deliverer:
    """Deltas to merge and one upload of the aggregate after new data, then source
    snapshots, each upload UPLOAD_SECONDS; nothing starts after the pass's deadline."""

    def __init__(self, snapshots: int) -> None:
        self.lock = threading.Lock()  # the spool's
        self.pending = 0
        self.merged = 0
        self.delivered = 0  # deltas in an uploaded aggregate
        self.snapshots = snapshots
        self.passes: list[bool] = []  # final or not, in order

    def has_pending(self) -> bool:
        return self.pending > 0 or self.merged > self.delivered or self.snapshots > 0

    def deliver(self, deadline: float, *, final: bool = False) -> None:
        if not self.lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return  # busy: deferred
        try:
            self.passes.append(final)
            self.merged, self.pending = self.merged + self.pending, 0
            if self.merged > self.delivered and time.monotonic() < deadline:
                time.sleep(UPLOAD_SECONDS)
                self.delivered = self.merged
            while self.snapshots and time.monotonic() < deadline:
                time.sleep(UPLOAD_SECONDS)
                self.snapshots -= 1
        finally:
            self.lock.release()


class Running(NamedTuple):
    """An extension serving in a thread, its events, its deliverer, the runtime's end."""

    events: Events
    deliverer: Deliverer
    runtime: RuntimeNotifier
    serving: threading.Thread

    def done(self, request_id: str) -> None:
        """A runtime process spooled a delta and says so."""
        self.deliverer.pending += 1
        assert self.runtime.send("done", request_id, "1")

    def shut_down(self) -> float:
        """SHUTDOWN with Lambda's 2 s; how long the extension took to return."""
        started = time.monotonic()
        self.events.events.put({"eventType": "SHUTDOWN", "deadlineMs": (time.time() + 2) * 1000})
        self.serving.join(10)
        assert not self.serving.is_alive()
        return time.monotonic() - started


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setenv("COVERAGE_S3_BUCKET", "bucket")
    monkeypatch.setenv("COVERAGE_SPOOL_DIR", str(tmp_path / "spool"))
    config = CoverageConfig.from_environment()
    listener = ExtensionListener(tmp_path / "spool" / "extension.sock")
    events = Events()
    ours = CoverageExtension(events, config, listener)  # type: ignore[arg-type]
    deliverer = Deliverer(snapshots=10)  # a first pass of 3 s, if nothing cut it short
    ours._deliverer = deliverer
    serving = threading.Thread(target=ours.serve_concurrently)
    serving.start()
    started = Running(events, deliverer, RuntimeNotifier(listener.path), serving)
    yield started
    if serving.is_alive():
        started.shut_down()


def test_data_spooled_during_a_long_first_pass_goes_out_at_shutdown(running: Running) -> None:
    running.done("first")
    time.sleep(extension.GATHER_SECONDS + 0.2)  # the first pass is under way
    running.done("second")  # a second invocation's delta, spooled meanwhile
    took = running.shut_down()

    # Within Lambda's 2 s SHUTDOWN window by design (the deadline less a 0.3 s margin);
    # the rest of the bound is room for a busy machine's scheduling.
    assert took < 2.5
    assert running.deliverer.passes[-1] is True  # the final pass ran
    assert running.deliverer.delivered == 2  # both invocations' data in the last upload


def test_work_left_by_a_pass_gets_another_pass_before_any_new_done(running: Running) -> None:
    running.done("only")
    give_up = time.monotonic() + 15
    while running.deliverer.snapshots and time.monotonic() < give_up:
        time.sleep(0.1)
    running.shut_down()

    assert running.deliverer.snapshots == 0 and running.deliverer.delivered == 1
    assert running.deliverer.passes.count(False) >= 3  # 10 snapshots at most 3 to a pass
