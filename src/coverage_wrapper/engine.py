"""The process-wide engine behind all three ways to instrument a function.

The exec wrapper (``coverage_wrapper.handler``), ``@coverage_handler`` and
``CoverageContext`` all call :func:`get_engine`: one ``Recorder`` per process,
one spool, one way to deliver. Nothing here raises into the user's code: a
failure is logged once as a JSON line and the function runs on, unmeasured.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from coverage_wrapper.courier import Courier
from coverage_wrapper.errors import CoverageInitializationError, CoverageWrapperError
from coverage_wrapper.logging_utils import get_logger
from coverage_wrapper.metrics import FAILURE, emit_metric
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.notify import ARMED, DISARMED, DONE, RuntimeNotifier
from coverage_wrapper.recorder import Delta, Recorder
from coverage_wrapper.spool import SpoolDirectory, new_id

log = get_logger("coverage_wrapper.wrapper")

Mode = Literal["wrapper", "decorator", "context"]
# Why an environment left out by COVERAGE_SAMPLE_RATE does not record (the health check
# tells it apart from a failure by this exact text).
NOT_SAMPLED = "not sampled (COVERAGE_SAMPLE_RATE)"
# Time kept back from the invocation's deadline when the runtime uploads by itself.
_DEADLINE_MARGIN = 0.5
# How long the end of init waits for the trust store loading beside it (it takes 20-30 ms).
_PREPARE_SECONDS = 5.0
# Lambda gives an invocation a whole vCPU from this memory size up, a share of one below it.
_FULL_VCPU_MB = 1769
# Initialization types whose init runs before any request comes.
_AHEAD_OF_REQUESTS = ("snap-start", "provisioned-concurrency", "lambda-managed-instances")


class Engine:
    """Starts coverage once, checkpoints each invocation, and gets the data delivered."""

    def __init__(self) -> None:
        self.config: CoverageConfig | None = None
        self.recorder: Recorder | None = None
        self.spool: SpoolDirectory | None = None
        self.mode: Mode | None = None
        self.disabled_reason = ""
        self._notifier: RuntimeNotifier | None = None
        self._courier: Courier | None = None
        # Lambda Managed Instances: several runtime processes, no freeze, no one to tell.
        self._concurrent = bool(os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY", "").strip())
        self._deliverer: Any = None
        self._delivering = threading.Lock()  # the courier's thread and an inline upload
        self._missed = False  # a pass gave up waiting for the one under way
        os.register_at_fork(after_in_child=self._forked)
        self._carry: Delta | None = None  # a delta the spool could not take yet
        # Whether the spool may hold data an earlier pass or process left behind.
        self._backlog = True
        # SnapStart: COVERAGE_SAMPLE_RATE is drawn at the first checkpoint after the restore.
        self._sample_after_restore = False
        self._restored = False
        self._preparing = False  # the trust store loads beside init (see initialized)
        self._lock = threading.RLock()
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")

    def _forked(self) -> None:
        """In a forked child: a pass the parent had under way is not this process's, and
        its lock and connections stay behind."""
        self._delivering = threading.Lock()
        self._deliverer = None

    @property
    def active(self) -> bool:
        """True when coverage is being recorded in this process."""
        return self.recorder is not None and self.recorder.started

    def start(self, mode: Mode) -> bool:
        """Start recording (once per process); False when disabled or failed."""
        with self._lock:
            if self.recorder is not None or self.disabled_reason:
                if self.mode == "context" and mode != "context" and self.recorder is not None:
                    self.mode = mode  # a wrapper or decorator now owns the invocations
                    self.recorder.resume()
                return self.active
            try:
                config = CoverageConfig.from_environment()
            except ValueError as error:
                return self._disable(f"configuration error: {error}", error=error)
            self.config = config
            snapshot = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"
            if reason := _not_recording(config, drawn=not snapshot):
                return self._disable(reason, level="debug")
            if snapshot:
                self._sample_after_restore = 0.0 < config.sample_rate < 1.0
                self._restored = _watch_restore(self._after_restore)
            spool = SpoolDirectory(config.spool_dir)
            try:
                # Before coverage starts: a spool that can never take data must not
                # leave the process traced for nothing.
                spool.prepare()
            except ValueError as error:
                return self._disable(f"configuration error: {error}", error=error)
            if _prepare_at_init(mode):
                self._preparing = _prepare_delivery(background=mode == "wrapper")
            task_root = Path(os.environ.get("LAMBDA_TASK_ROOT") or Path.cwd())
            recorder = Recorder(config, task_root)
            try:
                recorder.start()
            except CoverageInitializationError as error:
                return self._disable(str(error), error=error)
            self.recorder = recorder
            self.mode = mode
            self.spool = spool
            spool.date_environment()
            self._notifier = RuntimeNotifier(spool.fifo_path)
            if mode == "wrapper" and not self._concurrent:
                self._notifier.send(ARMED, str(os.getpid()))
            log.debug(
                "Initializing coverage tracking",
                extra={
                    "data": {
                        "config": config.to_dict(),
                        "function_name": self.function_name,
                        "mode": mode,
                        "core": recorder.core,
                    }
                },
            )
            return True

    def initialized(self) -> None:
        """The end of init (the exec wrapper has imported the function): what started
        loading beside it is awaited here, so that no invocation shares the CPU with it."""
        if self._preparing:
            self._preparing = False
            from coverage_wrapper import s3_client  # imported already, by the preparation

            s3_client.await_prepared(_PREPARE_SECONDS)

    def _disable(
        self, reason: str, *, error: Exception | None = None, level: str = "error"
    ) -> bool:
        self.disabled_reason = reason
        if level == "error":
            name = type(error).__name__ if error else "CoverageInitializationError"
            log.error(
                f"{name}: coverage is off for this execution environment: {reason}",
                extra={"data": {"function_name": self.function_name}},
            )
            emit_metric(FAILURE, self.function_name, cause=name)
        else:
            log.debug(f"Coverage is off: {reason}")
        return False

    def end_invocation(self, request_id: str | None, context: Any = None) -> None:
        """Checkpoint this invocation and see its data delivered; never raises."""
        if not self.active:
            return
        request_id = request_id or new_id()  # ids name S3 keys: never reuse one
        try:
            with self._lock:
                if self._sample_after_restore and not self._restored:
                    # Before the snapshot (a handler primed at init): keep the lines in
                    # memory until the restore's draw says whether they are wanted.
                    self._keep_back()
                    return
                if self._sample_after_restore and self._sampled_out(request_id):
                    return
                wrote = self._spool_checkpoint(request_id)
                if not wrote and not self._backlog and not self._delivering.locked():
                    self._tell(DONE, request_id)  # nothing to deliver: freeze at once
                elif self._notifier is not None and self._notifier.listening():
                    if self._concurrent:  # no freeze: each pass has the upload timeout
                        self._courier_for().hand_over(None, self._budget(None))
                    else:  # a pass under way, too, ends before this invocation's done
                        self._courier_for().hand_over(request_id, self._budget(context))
                else:  # no extension: upload now, within the invocation
                    self._deliver_inline(context)
        except Exception as error:  # noqa: BLE001 - the handler's result must not change
            log.error(
                f"Coverage checkpoint failed: {type(error).__name__}: {error}",
                extra={"data": {"request_id": request_id}},
            )
            self._tell(DONE, request_id)  # the extension need not hold the freeze for it

    def _keep_back(self) -> None:
        self._carry = self._delta()

    def _after_restore(self) -> None:
        """SnapStart: this environment is restored. The extension is told again that this
        process reports the end of each invocation: one restored with the snapshot heard
        it at init, one started after the restore (as the local Lambda's are) did not."""
        self._restored = True
        if self.mode == "wrapper" and self._notifier is not None and not self._concurrent:
            self._notifier.send(ARMED, str(os.getpid()))

    def _sampled_out(self, request_id: str) -> bool:
        """SnapStart: draw COVERAGE_SAMPLE_RATE for this restored environment; when it is
        left out, stop recording, drop what init and this invocation recorded, and tell
        the extension it need not wait for this process any more."""
        assert self.config is not None and self.recorder is not None
        self._sample_after_restore = False
        if _drawn(self.config.sample_rate):
            return False
        self.recorder.pause()
        self.recorder = None
        self._carry = None  # with what checkpoints before the restore kept back
        self.disabled_reason = NOT_SAMPLED
        self._tell(DONE, request_id)
        self._tell(DISARMED, str(os.getpid()))
        log.debug(f"Coverage is off: {NOT_SAMPLED}, drawn after the restore")
        return True

    def _delta(self) -> Delta:
        """What was recorded since the last checkpoint, with what earlier ones kept back."""
        assert self.recorder is not None
        delta = self.recorder.checkpoint()
        if self._carry is not None:
            self._carry.merge(delta)
            delta, self._carry = self._carry, None
        return delta

    def _spool_checkpoint(self, request_id: str) -> bool:
        assert self.spool is not None
        delta = self._delta()
        if not delta:
            return False
        try:
            self.spool.write(delta, request_id)
        except OSError as error:
            # A full or unwritable /tmp: keep the delta in memory and try again
            # at the next checkpoint rather than lose it.
            self._carry = delta
            log.error(
                f"Coverage data could not be spooled: {error.strerror or error}",
                extra={"data": {"spool_dir": str(self.spool.root), "request_id": request_id}},
            )
            return False
        return True

    def _tell(self, *words: str) -> None:
        """Tell the extension, which reads nothing on Managed Instances."""
        if self._notifier is not None and not self._concurrent:
            self._notifier.send(*words)

    def _budget(self, context: Any) -> float:
        """The upload timeout, cut to what the invocation has left."""
        assert self.config is not None
        budget = self.config.upload_timeout
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            budget = min(budget, remaining_ms() / 1000 - _DEADLINE_MARGIN)
        return budget

    def _courier_for(self) -> Courier:
        if self._courier is None:
            assert self._notifier is not None
            self._courier = Courier(
                self._deliver_pass,
                self._notifier,
                _delivery_failed,
                concurrent=self._concurrent,
            )
        return self._courier

    def _deliver_inline(self, context: Any) -> None:
        """No extension is listening: upload now, within the upload timeout."""
        budget = self._budget(context)
        if budget > 0:
            self._deliver_pass(time.monotonic() + budget)

    def _deliver_pass(self, deadline: float) -> bool:
        """One delivery pass; True when work is left for a later one (also when another
        pass of this process holds on past ``deadline``)."""
        if not self._delivering.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            # The pass under way may have listed the spool before this checkpoint's delta.
            self._missed = self._backlog = True
            return True
        try:
            self._missed = False
            report = self.deliverer().deliver(deadline)
            self._backlog = bool(
                report.failed or report.deferred or self._carry is not None or self._missed
            )
        finally:
            self._delivering.release()
        return self._backlog

    def deliverer(self) -> Any:
        """The Deliverer for this process, created on first use (what it imports waits)."""
        if self._deliverer is None:
            assert self.config is not None and self.spool is not None
            from coverage_wrapper.delivery import Deliverer
            from coverage_wrapper.s3_uploader import S3Uploader

            self._deliverer = Deliverer(
                self.config, self.spool, S3Uploader(self.config), self.function_name
            )
        return self._deliverer


def _prepare_at_init(mode: Mode) -> bool:
    """Whether the delivery's one-time cost is better paid at init than by the first upload.

    At init when no request waits for it (SnapStart, provisioned concurrency, Managed
    Instances), and when the function has less than a vCPU: init runs with burst
    CPU, but an invocation of a 128 MB function gets about a fourteenth of one, so
    the first upload's imports would keep the environment busy some 15 times as
    long after the response. With a vCPU or more the first upload costs no more than
    init would, and the cold start the caller waits for stays shorter. Not when
    recording starts within an invocation (``CoverageContext``).
    """
    if mode == "context":
        return False
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in _AHEAD_OF_REQUESTS:
        return True
    try:
        memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", ""))
    except ValueError:
        return True
    return memory_mb < _FULL_VCPU_MB


def _prepare_delivery(*, background: bool) -> bool:
    """Import the delivery code, and for https load the trust store, now, at init.

    Every first delivery needs them (17-21 ms of CPU here, and 30-40 more for
    https; see :func:`_prepare_at_init` for when init is the better time). Before
    the recorder starts, so no tracer sees them. With ``background`` (the exec
    wrapper, which calls :meth:`Engine.initialized` once the function is imported)
    the trust store loads beside the function's import.
    A failure here is met again, and reported, by the first delivery. True when
    something may still be loading in the background.
    """
    try:
        from coverage_wrapper import delivery, s3_client

        del delivery  # imported for its cost
        s3_client.prepare(background=background)
    except Exception as error:  # noqa: BLE001 - the delivery that needs them reports it
        log.debug(f"Delivery not prepared at init: {type(error).__name__}: {error}")
        return False
    return background


def _delivery_failed(error: Exception) -> None:
    log.error(f"Coverage delivery failed: {type(error).__name__}: {error}")


def _not_recording(config: CoverageConfig, *, drawn: bool = True) -> str:
    """Why this environment does not record (switched off, not sampled), or "".

    Without ``drawn`` (SnapStart) only a rate of 0 leaves it out now: a draw made at
    init would be in the snapshot, the same for every environment restored from it.
    """
    if not config.enabled:
        return "COVERAGE_ENABLED=false"
    if config.sample_rate <= 0.0 or (drawn and not _drawn(config.sample_rate)):
        return NOT_SAMPLED
    return ""


def _watch_restore(on_restore: Any) -> bool:
    """Have ``on_restore`` called after SnapStart's restore; True if it is already past.

    A checkpoint can come before the snapshot (a handler primed at init, a
    ``CoverageContext`` block at module level), so "the first checkpoint" is not
    "after the restore": the runtime's after-restore hooks (``snapshot_restore_py``,
    which Lambda's Python runtime runs) say when it is. Started during an invocation
    (awslambdaric has taken a request), the restore is past.
    """
    import sys

    bootstrap = sys.modules.get("awslambdaric.bootstrap")
    if getattr(bootstrap, "_GLOBAL_AWS_REQUEST_ID", None) is not None:
        return True
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:  # no runtime hooks: nothing runs before a restore that could check
        return True
    register_after_restore(on_restore)
    return False


def _drawn(rate: float) -> bool:
    """Whether an environment is in a sample of ``rate``. From os.urandom, not ``random``:
    a function that imported ``random`` at init carries its state in a SnapStart snapshot."""
    return rate >= 1.0 or int.from_bytes(os.urandom(7)) / 2**56 < rate


_engine = Engine()


def get_engine() -> Engine:
    """The engine of this process."""
    return _engine


__all__ = ["CoverageWrapperError", "Engine", "get_engine"]
