"""The courier: delivery passes on a thread of the runtime, ``done`` after each.

The deliverer is a stand-in that keeps time as the real one does (one pass at a
time, no upload started after the pass's deadline), so the passes can be timed
against Lambda's windows. The real deliverer, S3 and the extension script are in
tests/e2e/test_layer_in_local_lambda.py and test_managed_instances_in_local_lambda.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coverage_wrapper import courier
from coverage_wrapper.courier import Courier
from coverage_wrapper.notify import RuntimeNotifier

UPLOAD_SECONDS = 0.2  # one S3 request


class Deliverer:
    """``uploads`` uploads of UPLOAD_SECONDS; none starts after the pass's deadline."""

    def __init__(self, uploads: int = 1) -> None:
        self.uploads = uploads
        self.passes: list[float] = []  # when each pass started
        self.errors: list[Exception] = []
        self.fail_with: Exception | None = None

    def deliver(self, deadline: float) -> bool:
        self.passes.append(time.monotonic())
        if self.fail_with is not None:
            raise self.fail_with
        while self.uploads and time.monotonic() < deadline:
            time.sleep(UPLOAD_SECONDS)
            self.uploads -= 1
        return self.uploads > 0


class Extension:
    """The extension's end of the FIFO: the lines the runtime sent, as they come."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.descriptor = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.received = b""

    def lines(self, wait: float = 0.0) -> list[str]:
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(BlockingIOError):
                self.received += os.read(self.descriptor, 4096)
            if self.received or time.monotonic() >= deadline:
                return self.received.decode().splitlines()
            time.sleep(0.01)


def courier_of(deliverer: Deliverer, tmp_path: Path, *, concurrent: bool = False) -> Courier:
    """A courier that passes with ``deliverer`` and tells the FIFO in ``tmp_path``."""
    notifier = RuntimeNotifier(tmp_path / "extension.fifo")
    return Courier(deliverer.deliver, notifier, deliverer.errors.append, concurrent=concurrent)


@pytest.fixture
def extension(tmp_path: Path) -> Iterator[Extension]:
    listening = Extension(tmp_path / "extension.fifo")
    yield listening
    os.close(listening.descriptor)


def test_the_hand_over_returns_at_once_and_done_follows_the_upload(
    extension: Extension, tmp_path: Path
) -> None:
    deliverer = Deliverer(uploads=2)
    ours = courier_of(deliverer, tmp_path)

    started = time.monotonic()
    ours.hand_over("req-1", seconds=5)
    assert time.monotonic() - started < UPLOAD_SECONDS  # the response is not held
    assert extension.lines() == []  # not done while uploading
    assert extension.lines(wait=5) == ["done req-1"]
    assert time.monotonic() - started >= 2 * UPLOAD_SECONDS
    assert deliverer.uploads == 0 and deliverer.errors == []


def test_a_pass_that_raises_is_reported_and_still_ends_with_done(
    extension: Extension, tmp_path: Path
) -> None:
    deliverer = Deliverer()
    deliverer.fail_with = OSError("disk gone")
    ours = courier_of(deliverer, tmp_path)

    ours.hand_over("req-1", seconds=5)
    assert extension.lines(wait=5) == ["done req-1"]
    assert [str(error) for error in deliverer.errors] == ["disk gone"]
    deliverer.fail_with = None
    extension.received = b""
    ours.hand_over("req-2", seconds=5)  # the thread serves on
    assert extension.lines(wait=5) == ["done req-2"]


def test_no_upload_starts_after_the_invocations_deadline(
    extension: Extension, tmp_path: Path
) -> None:
    deliverer = Deliverer(uploads=10)
    ours = courier_of(deliverer, tmp_path)

    started = time.monotonic()
    ours.hand_over("req-1", seconds=0.5)
    assert extension.lines(wait=5) == ["done req-1"]
    assert time.monotonic() - started < 0.5 + UPLOAD_SECONDS + 0.3
    assert deliverer.uploads > 0  # left for the next pass


def test_on_managed_instances_hand_overs_share_a_pass_and_work_left_gets_more_passes(
    extension: Extension, tmp_path: Path
) -> None:
    deliverer = Deliverer(uploads=12)  # 2.4 s of uploads: more than one pass can take
    ours = courier_of(deliverer, tmp_path, concurrent=True)

    started = time.monotonic()
    for _ in range(3):  # three invocations ending together
        ours.hand_over(None, seconds=30)
    give_up = time.monotonic() + 20
    while deliverer.uploads and time.monotonic() < give_up:
        time.sleep(0.05)

    assert deliverer.uploads == 0
    assert deliverer.passes[0] - started >= courier.GATHER_SECONDS
    # Each pass at most PASS_SECONDS (and one upload): SHUTDOWN's final pass, which waits
    # for one under way, keeps most of Lambda's 2 s.
    assert len(deliverer.passes) >= 3
    assert extension.lines() == []  # nobody to tell on Managed Instances


# awslambdaric forks its Managed Instances processes from a runtime that has threads.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_gets_a_courier_of_its_own(extension: Extension, tmp_path: Path) -> None:
    deliverer = Deliverer()
    ours = courier_of(deliverer, tmp_path)
    ours.hand_over("parent", seconds=5)  # the parent's thread is running
    assert extension.lines(wait=5) == ["done parent"]
    extension.received = b""

    child = os.fork()
    if child == 0:  # pragma: no cover - reported through the FIFO and the exit status
        try:
            deliverer.uploads = 1
            ours.hand_over("child", seconds=5)  # a thread the child does not have
            give_up = time.monotonic() + 5
            while deliverer.uploads and time.monotonic() < give_up:
                time.sleep(0.01)
            time.sleep(0.1)
        finally:
            os._exit(0 if deliverer.uploads == 0 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert extension.lines(wait=2) == ["done child"]


def test_threads_are_daemons_so_the_runtime_can_exit(tmp_path: Path) -> None:
    ours = Courier(lambda deadline: False, RuntimeNotifier(tmp_path / "none"), print)
    ours.hand_over("req", seconds=1)
    thread = next(t for t in threading.enumerate() if t.name == "lambdacov-courier")
    assert thread.daemon


def test_the_couriers_thread_runs_untraced(tmp_path: Path) -> None:
    # 3.11's recorder sets its C tracer on every new thread (threading.settrace): the
    # courier's imports and uploads are not the function's code and must not pay for it.
    seen: list[object] = []

    def deliver(deadline: float) -> bool:
        seen.append(sys.gettrace())
        return False

    def tracer(*args: object) -> None:
        return None

    ours = Courier(deliver, RuntimeNotifier(tmp_path / "none"), print)
    threading.settrace(tracer)
    try:
        ours.hand_over("req", seconds=1)
        give_up = time.monotonic() + 5
        while not seen and time.monotonic() < give_up:
            time.sleep(0.01)
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    assert seen == [None]


def test_a_thread_that_could_not_start_is_started_at_the_next_hand_over(
    extension: Extension, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliverer = Deliverer()
    ours = courier_of(deliverer, tmp_path)
    real_start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        monkeypatch.setattr(threading.Thread, "start", real_start)  # once
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(RuntimeError):
        ours.hand_over("req-1", seconds=5)  # the engine logs it and says done itself
    ours.hand_over("req-2", seconds=5)
    assert extension.lines(wait=5) == ["done req-1", "done req-2"]
    assert deliverer.uploads == 0


def test_on_managed_instances_each_pass_gets_the_time_it_was_handed_at_most_a_pass(
    extension: Extension, tmp_path: Path
) -> None:
    deliverer = Deliverer(uploads=3)
    ours = courier_of(deliverer, tmp_path, concurrent=True)
    ours.hand_over(None, seconds=0.3)
    give_up = time.monotonic() + 15
    while deliverer.uploads and time.monotonic() < give_up:
        time.sleep(0.05)
    assert deliverer.uploads == 0  # every retry had its 0.3 s, not what was left of it


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_child_forked_during_a_pass_can_deliver() -> None:
    from coverage_wrapper.engine import Engine

    engine = Engine()
    engine._delivering.acquire()  # the parent's courier, mid-upload
    engine._deliverer = object()  # its connections
    child = os.fork()
    if child == 0:  # pragma: no cover - reported through the exit status
        fresh = engine._delivering.acquire(timeout=1) and engine._deliverer is None
        os._exit(0 if fresh else 1)
    _, status = os.waitpid(child, 0)
    engine._delivering.release()
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_inline_pass_does_not_wait_past_its_deadline_for_the_couriers() -> None:
    from coverage_wrapper.engine import Engine

    engine = Engine()
    engine._delivering.acquire()  # the courier's pass, still under way
    try:
        started = time.monotonic()
        assert engine._deliver_pass(started + 0.2) is True  # work left for a later pass
        assert time.monotonic() - started < 1.0
    finally:
        engine._delivering.release()


def test_a_pass_that_gave_up_waiting_leaves_work_for_the_next_one() -> None:
    from coverage_wrapper.engine import Engine

    class Slow:
        """A pass that lists the spool, uploads for 0.5 s, and succeeds."""

        def deliver(self, deadline: float) -> Any:
            time.sleep(0.5)
            return type("Report", (), {"failed": [], "deferred": False})()

    engine = Engine()
    engine._deliverer = Slow()
    courier_pass = threading.Thread(target=engine._deliver_pass, args=(time.monotonic() + 5,))
    courier_pass.start()
    time.sleep(0.1)
    assert engine._deliver_pass(time.monotonic() + 0.1) is True  # gave up waiting
    courier_pass.join()
    # The courier's pass listed the spool before the checkpoint that waited: the next
    # invocation must still deliver, not tell the extension "done" at once.
    assert engine._backlog is True
