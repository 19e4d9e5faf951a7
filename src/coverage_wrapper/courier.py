"""Delivery from a thread of the runtime process, after the response has gone out.

The handler's checkpoint writes the invocation's data to the spool and hands it
over here; the handler's result goes back to Lambda at once. The courier's
thread then uploads (while the runtime waits for its next event, its main
thread out of the way) and says ``done`` to the extension, which has held
Lambda's freeze until then. So the upload is billed after the response, as an
extension's would be, without a second interpreter in the environment.

On Lambda Managed Instances the environment is never frozen and several runtime
processes finish invocations side by side: the courier waits
:data:`GATHER_SECONDS` after a hand-over so that invocations finishing together
share one upload, and tries again while work is left (the deliverer's backoff
keeps those passes to merging while S3 is failing).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from coverage_wrapper.notify import DONE, RuntimeNotifier

# Managed Instances: how long a pass waits after a hand-over.
GATHER_SECONDS = 1.0
# Managed Instances: how long one pass may take (SHUTDOWN's final pass waits for it).
PASS_SECONDS = 1.0


class Courier:
    """One thread that runs delivery passes when handed work.

    ``deliver(deadline)`` runs one pass, starting no upload after ``deadline``
    (``time.monotonic()``), and returns True when work is left for a later pass.
    ``on_error`` is told what a pass raised.
    """

    def __init__(
        self,
        deliver: Callable[[float], bool],
        notifier: RuntimeNotifier,
        on_error: Callable[[Exception], None],
        *,
        concurrent: bool = False,
    ) -> None:
        self._deliver = deliver
        self._notifier = notifier
        self._on_error = on_error
        self._concurrent = concurrent
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also in a forked child (a function that forks with multiprocessing after its
        # first upload): the parent's thread does not exist there.
        self._work = threading.Condition(threading.Lock())
        self._requests: list[str] = []
        self._deadline = 0.0
        self._seconds = 0.0
        self._handed = False
        self._thread: threading.Thread | None = None

    def hand_over(self, request_id: str | None, seconds: float) -> None:
        """Deliver what the spool holds within ``seconds``, then say ``done request_id``.

        On Managed Instances the seconds count from the pass's start (after the
        gathering), at most :data:`PASS_SECONDS`; elsewhere from now: the
        invocation's deadline does not move.
        """
        with self._work:
            if request_id is not None:
                self._requests.append(request_id)
            self._deadline = time.monotonic() + seconds
            self._seconds = min(seconds, PASS_SECONDS)
            self._handed = True
            self._work.notify()
            if self._thread is None or not self._thread.is_alive():
                # Kept only once started: a thread that could not start (no memory, a
                # thread limit) is tried again at the next hand-over.
                thread = threading.Thread(target=self._run, name="lambdacov-courier", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        # Nothing this thread runs is the function's code. On 3.11 the recorder's C
        # tracer is set on every new thread, and it would see each call of the
        # imports and uploads here: a first delivery about 14 ms longer.
        sys.settrace(None)
        while True:
            with self._work:
                while not self._handed:
                    self._work.wait()
            if self._concurrent:
                time.sleep(GATHER_SECONDS)
            with self._work:
                requests, self._requests = self._requests, []
                deadline = self._deadline
                if self._concurrent:
                    deadline = time.monotonic() + self._seconds
                self._handed = False
            left = False
            try:
                left = self._deliver(deadline)
            except Exception as error:  # noqa: BLE001 - the thread must keep serving
                self._on_error(error)
            for request_id in requests:
                self._notifier.send(DONE, request_id)
            if left and self._concurrent:
                with self._work:
                    self._handed = True  # another pass after GATHER_SECONDS
