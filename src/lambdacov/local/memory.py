"""The memory of an emulated environment, held to the function's memory size as Lambda does.

In Lambda the runtime and its extensions share one memory limit, the
function's MemorySize: when together they use more, the environment is
killed, the invocation fails with ``Runtime.ExitError`` ("Runtime exited with
error: signal: killed") and REPORT's "Max Memory Used" shows the peak. The
emulator has no cgroup to do this for it, so :class:`MemoryWatch` reads the
resident memory of every process of the environment (and of the processes
they started) from /proc every :data:`POLL_SECONDS`, and calls back when the
sum exceeds the limit.

What this measures, and misses: pages two processes share (the interpreter,
its libraries) count once per process, so the sum is a little above what a
cgroup would charge; and memory held for less than one polling interval, or
allocated in the last interval before the limit is noticed, can go unseen or
be seen late (the peak then exceeds the limit by that much).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable

#: How often the processes' memory is read while the environment runs.
POLL_SECONDS = 0.01
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def resident_bytes(pids: Iterable[int]) -> int:
    """The resident memory of ``pids`` and their descendants; a process gone counts 0."""
    return sum(_resident(pid) for pid in _with_descendants(pids))


def _resident(pid: int) -> int:
    try:
        return int(_read(f"/proc/{pid}/statm").split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def _with_descendants(pids: Iterable[int]) -> list[int]:
    found = list(pids)
    for pid in found:  # grows as children are found
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):  # noqa: PTH208 - see _read
                with contextlib.suppress(OSError):
                    children = _read(f"/proc/{pid}/task/{task}/children")
                    found.extend(int(child) for child in children.split())
    return found


def _read(path: str) -> bytes:
    # Plain descriptors: this runs every few milliseconds in the emulator's
    # process, and pathlib would triple its cost.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.read(descriptor, 65536)
    finally:
        os.close(descriptor)


class MemoryWatch:
    """Polls an environment's memory in a thread; paused while the environment is frozen.

    ``pids`` returns the environment's processes at the time of each sample,
    so processes started after the watch are counted. ``on_exceeded`` runs
    once, in the watch's thread, on the first sample above ``limit_bytes``.
    """

    def __init__(
        self,
        limit_bytes: int,
        pids: Callable[[], Iterable[int]],
        on_exceeded: Callable[[], None],
    ) -> None:
        self.limit_bytes = limit_bytes
        self.peak_bytes = 0
        self.exceeded = False
        self._pids = pids
        self._on_exceeded = on_exceeded
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lambdacov-memory", daemon=True)

    @property
    def peak_mb(self) -> int:
        """The highest sum sampled so far, in whole MB rounded up, as REPORT shows it."""
        return -(-self.peak_bytes // MIB)

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def pause(self) -> None:
        """Stop sampling: a frozen environment's memory does not change."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stopped.set()
        self._running.set()  # release a paused thread so it can see the stop
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            self._running.wait()
            if self._stopped.is_set():
                return
            self._sample()

    def _sample(self) -> None:
        used = resident_bytes(self._pids())
        self.peak_bytes = max(self.peak_bytes, used)
        if used > self.limit_bytes and not self.exceeded:
            self.exceeded = True
            self._on_exceeded()
