"""A local AWS Lambda: one execution environment driving the real runtime client.

:class:`LocalLambda` follows Lambda's lifecycle. INIT starts the layer's
external extensions, waits until each has registered, then starts the runtime
(``bootstrap.py`` under awslambdaric); INIT ends when the runtime and every
extension wait in ``next`` (an extension may go on with its own setup while the
runtime starts, as in Lambda). INVOKE thaws the environment, hands the
event to the runtime and INVOKE to the extensions, waits for the response and
then for everyone to be idle again, and freezes every process with SIGSTOP:
a thread left running by the handler does not run until the next invocation,
which is why coverage data needs an extension to leave the environment.
A timeout resets the environment (processes killed, /tmp kept); SHUTDOWN
sends the event to the extensions, SIGTERM to the runtime when extensions are
registered, and SIGKILL to whatever is left two seconds later. The memory size
is a limit on all the environment's processes together: above it, everything
is killed and the invocation fails as in Lambda (see :mod:`.memory`).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdacov.closing import Closing
from lambdacov.errors import EmulatorError, UsageError
from lambdacov.local.api import Invocation, RuntimeApi
from lambdacov.local.layers import merge_layers
from lambdacov.local.memory import MIB, MemoryWatch
from lambdacov.local.process import (
    EnvironmentProcess,
    LogCallback,
    LogCollector,
    LogLine,
    ManagedProcess,
)
from lambdacov.local.runtime_env import current_version, runtime_python
from lambdacov.local.snapshot import RuntimeTemplate
from lambdacov.local.variables import (
    FUNCTION_VERSION,
    FunctionConfig,
    credentials,
    lambda_environment,
    new_log_stream_name,
)

#: Lambda's limit for the init phase of an on-demand environment.
INIT_TIMEOUT_SECONDS = 10.0
#: How long extensions (and the runtime, once SIGTERMed) get to handle SHUTDOWN.
SHUTDOWN_GRACE_SECONDS = 2.0
SHUTDOWN_REASONS = frozenset({"spindown", "timeout", "failure"})
#: The emulated /var/runtime/bootstrap, run by the runtime's own interpreter.
BOOTSTRAP = Path(__file__).resolve().with_name("bootstrap.py")
#: The emulator's bound on runtime processes per environment (Managed Instances).
MAX_CONCURRENCY = 64
#: Lambda's bounds for a function's memory size, in MB.
MEMORY_MB_RANGE = (128, 10240)


@dataclass(frozen=True)
class InvocationResult:
    """The outcome of one invocation, as Lambda's Invoke API and logs would show it.

    ``payload`` is the response, parsed as JSON when it is JSON (raw text
    otherwise), and None when the invocation failed; ``error`` is then the
    error document Lambda returns (errorMessage, errorType, stackTrace...).
    ``duration_ms`` covers the whole invoke phase, including the extensions'
    work after the response; ``runtime_duration_ms`` stops at the response.
    ``init_duration_ms`` is set on the invocation that initialised the
    environment (under SnapStart, restored it: the restore's duration, as REPORT's
    "Restore Duration"; the one INIT is logged as INIT_REPORT). ``max_memory_used_mb``
    is the environment's peak memory so far, as REPORT shows it. ``logs`` are the lines
    written during this invocation.
    """

    request_id: str
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float
    runtime_duration_ms: float
    init_duration_ms: float | None
    logs: tuple[LogLine, ...]
    max_memory_used_mb: int = 0

    @property
    def ok(self) -> bool:
        """True when the function returned a response rather than an error."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document with Lambda's field names."""
        return {
            "requestId": self.request_id,
            "payload": self.payload,
            "error": self.error,
            "durationMs": round(self.duration_ms, 2),
            "runtimeDurationMs": round(self.runtime_duration_ms, 2),
            "initDurationMs": (
                None if self.init_duration_ms is None else round(self.init_duration_ms, 2)
            ),
            "maxMemoryUsedMB": self.max_memory_used_mb,
            "logs": [{"source": line.source, "text": line.text} for line in self.logs],
        }


class Environment:
    """The processes and API server of one initialisation of the execution environment.

    Its times are ``time.monotonic()`` values taken where Lambda's phases start
    and end, so they can be measured without the emulator's own overhead:
    ``started_at`` (INIT begins), ``ready_at`` (the runtime and every extension
    first blocked in ``next``: INIT is over), :meth:`response_at` and
    :meth:`idle_since` (the invoke phase, as Lambda bills it, ends there).
    """

    def __init__(self, api: RuntimeApi, started_at: float, memory_mb: int) -> None:
        self.api = api
        self.started_at = started_at
        self.ready_at: float | None = None
        self.extensions: list[ManagedProcess] = []
        self.runtime: EnvironmentProcess | None = None
        #: SnapStart, until the snapshot: the runtime as the template of restored ones.
        self.template: RuntimeTemplate | None = None
        self.memory = MemoryWatch(
            memory_mb * MIB, lambda: [proc.pid for proc in self.processes], self._out_of_memory
        )
        self.memory.start()

    @property
    def processes(self) -> list[EnvironmentProcess]:
        """The extensions' processes and the runtime's, in the order they started."""
        return [*self.extensions, *([self.runtime] if self.runtime else [])]

    def response_at(self, request_id: str) -> float | None:
        """When the runtime posted its response (or error) for ``request_id``."""
        outcome = self.api.outcome(request_id)
        return None if outcome is None else outcome.received_at

    def idle_since(self) -> float | None:
        """When the runtime and every extension were last all back in ``next``."""
        return self.api.idle_since()

    def exited_extension(self) -> ManagedProcess | None:
        return next((proc for proc in self.extensions if not proc.running), None)

    def extension_gone(self, name: str) -> bool:
        """True if the extension registered as ``name`` has exited (matched by file name,
        which Lambda requires as the registration name; else by "all have exited")."""
        named = [proc for proc in self.extensions if proc.name == f"extension:{name}"]
        return not any(proc.running for proc in (named or self.extensions))

    def freeze(self) -> None:
        self.memory.pause()
        for proc in self.processes:
            proc.freeze()

    def thaw(self) -> None:
        for proc in self.processes:
            proc.thaw()
        self.memory.resume()

    def kill(self) -> None:
        self.memory.stop()
        for proc in self.processes:
            proc.kill()
        if self.template is not None:
            self.template.close()
        self.api.close()

    def _out_of_memory(self) -> None:
        """What Lambda does to an environment over its memory size: kill every process.

        Called from the memory watch's thread. The waits of the emulator are
        woken once the processes are gone, so the invocation ends when they died.
        """
        processes = self.processes
        for proc in processes:
            proc.signal_group(signal.SIGKILL)
        for proc in processes:
            proc.wait(SHUTDOWN_GRACE_SECONDS)
        self.api.notify()


class LocalLambda(Closing):
    """One Lambda execution environment for a function, on this machine.

    Use it as a context manager; invocations reuse the warm environment
    until :meth:`shutdown`::

        with LocalLambda(Path("src"), "app.handler", layer=Path("layer.zip")) as fn:
            result = fn.invoke({"hello": "world"})

    ``layer`` is an ``/opt``-like directory or a layer .zip (extracted with its
    file modes); ``layers`` are several, merged into /opt in order as Lambda does
    (``layer`` first when both are given, see :mod:`lambdacov.local.layers`).
    ``python`` is the runtime's ``3.X`` version (default: this interpreter's). ``env`` holds
    the function's environment variables, ``AWS_LAMBDA_EXEC_WRAPPER`` included;
    ``/opt/...`` and ``/var/task/...`` in them mean the layer and code directories, as in
    Lambda. ``memory_mb`` is the memory size
    the runtime and extensions share (see :mod:`lambdacov.local.memory`). ``on_log`` receives
    every log line as it arrives. Raises :class:`EmulatorError` when the runtime cannot be
    prepared.
    """

    def __init__(
        self,
        function_dir: Path,
        handler: str,
        *,
        layer: Path | None = None,
        layers: Sequence[Path] = (),
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        memory_mb: int = 128,
        function_name: str = "local-function",
        region: str = "us-east-1",
        snap_start: bool = False,
        max_concurrency: int | None = None,
        init_timeout: float = INIT_TIMEOUT_SECONDS,
        on_log: LogCallback | None = None,
    ) -> None:
        function_dir = Path(function_dir).resolve()
        if not function_dir.is_dir():
            raise UsageError(f"function directory {function_dir} does not exist")
        if "." not in handler.strip(".") and "AWS_LAMBDA_EXEC_WRAPPER" not in (env or {}):
            raise UsageError(
                f"handler {handler!r} is not of the form module.function",
                hint="for app.py with `def handler(event, context)`, give app.handler",
            )
        if timeout <= 0:
            raise UsageError("timeout must be positive")
        if max_concurrency is not None:
            if not 1 <= max_concurrency <= MAX_CONCURRENCY:
                raise UsageError(
                    f"max concurrency must be between 1 and {MAX_CONCURRENCY} runtime processes"
                )
            if snap_start:
                raise UsageError("SnapStart does not apply to Lambda Managed Instances")
        low, high = MEMORY_MB_RANGE
        if not low <= memory_mb <= high:
            raise UsageError(f"memory size must be between {low} and {high} MB, as in Lambda")
        self.config = FunctionConfig(
            function_dir=function_dir,
            handler=handler,
            python_version=python or current_version(),
            env=dict(env or {}),
            timeout=timeout,
            memory_mb=memory_mb,
            function_name=function_name,
            region=region,
            snap_start=snap_start,
            max_concurrency=max_concurrency,
        )
        self.init_timeout = init_timeout
        #: With ``snap_start``: /tmp as it was when the snapshot was taken (after INIT,
        #: before the restore); every environment restored starts with a copy of it.
        self.snapshot_tmp: Path | None = None
        #: With ``snap_start``: when the latest environment was restored (``time.monotonic()``).
        self.restored_at: float | None = None
        #: With ``snap_start``: how many environments were restored from the snapshot.
        self.restores = 0
        # With ``snap_start``: the initialised runtime, forked into each restored
        # environment, and what the snapshot keeps of init (variables, credentials token).
        self._template: RuntimeTemplate | None = None
        self._snapshot_env: dict[str, str] = {}
        self._credentials_token = ""
        self._python = runtime_python(self.config.python_version)
        self._scratch = Path(tempfile.mkdtemp(prefix="lambdacov-local-"))
        self.tmp_dir = self._scratch / "tmp"
        self.tmp_dir.mkdir()
        try:
            self.opt_dir = merge_layers(
                [*([layer] if layer is not None else []), *layers], self._scratch / "opt"
            )
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self.log_stream_name = new_log_stream_name()
        self._logs = LogCollector(on_log)
        self._lock = threading.Lock()
        self._environment: Environment | None = None
        # The latest environment's watch outlives a reset, for the REPORT of the
        # invocation that ended it.
        self._memory: MemoryWatch | None = None
        self._closed = False
        _LIVE.add(self)

    # -- public API ---------------------------------------------------------------------

    @property
    def logs(self) -> tuple[LogLine, ...]:
        """Every line logged in this environment so far, invocations and shutdowns alike."""
        return self._logs.lines

    @property
    def is_warm(self) -> bool:
        """True while an initialised environment waits (frozen) for the next invocation."""
        return self._environment is not None

    @property
    def environment(self) -> Environment | None:
        """The initialised environment, frozen between invocations; None until the next
        invocation after a shutdown, a reset, or before the first one."""
        return self._environment

    def invoke(self, event: Any = None) -> InvocationResult:
        """Invoke the function with ``event`` (JSON-serialisable) and return its result.

        Initialises the environment first if needed. Function errors, init
        errors and timeouts are results, not exceptions.
        """
        if self._closed:
            raise EmulatorError("this local Lambda has been closed")
        body = json.dumps({} if event is None else event).encode()
        if self.config.max_concurrency is not None:
            return self._invoke_concurrently(body)
        with self._lock:
            mark = self._logs.mark()
            request_id = str(uuid.uuid4())
            self._platform_log(f"START RequestId: {request_id} Version: {FUNCTION_VERSION}")
            result = self._invoke(request_id, body)
            if self._memory is not None:
                result = dataclasses.replace(result, max_memory_used_mb=self._memory.peak_mb)
            self._platform_log(f"END RequestId: {request_id}")
            self._platform_log(self._report_line(result))
            if result.error is not None and result.error.get("errorType") == "Runtime.ExitError":
                # Lambda's two lines after the REPORT of an environment that died.
                self._platform_log(str(result.error.get("errorMessage", "")))
                self._platform_log("Runtime.ExitError")
            self._logs.drain()
            return dataclasses.replace(result, logs=self._logs.since(mark))

    def shutdown(self, reason: str = "spindown") -> tuple[LogLine, ...]:
        """Shut the environment down as Lambda does and return the lines logged meanwhile.

        Extensions registered for SHUTDOWN receive it with ``reason``; a later
        :meth:`invoke` starts a fresh environment (with the same /tmp).
        """
        if reason not in SHUTDOWN_REASONS:
            raise UsageError(f"shutdown reason must be one of {sorted(SHUTDOWN_REASONS)}")
        with self._lock:
            mark = self._logs.mark()
            self._shutdown(reason)
            self._logs.drain()
            return self._logs.since(mark)

    def close(self) -> None:
        """Shut down (if still running) and delete the environment's /tmp and extracted layer."""
        if self._closed:
            return
        try:
            self.shutdown("spindown")
        finally:
            self._closed = True
            _LIVE.discard(self)
            if self._template is not None:
                self._template.close()
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- lifecycle ------------------------------------------------------------------------

    def _warm(self, request_id: str) -> tuple[Environment, float | None] | InvocationResult:
        """The initialised environment, initialising one first if there is none, and INIT's
        duration then (with SnapStart, the restore's, and INIT's too when it ran for it); the
        result of the invocation ``request_id`` when INIT or the restore fails."""
        if self._environment is not None:
            return self._environment, None
        if self.config.snap_start:
            environment, init_error = self._restore()
        else:
            environment, init_error = self._init()
        init_ms = 0.0 if environment is None else _ms_since(environment.started_at)
        if init_error is not None:
            if environment is not None:
                self._teardown(environment, "failure")
            return InvocationResult(request_id, None, init_error, 0.0, 0.0, init_ms, ())
        assert environment is not None
        self._environment = environment
        return environment, init_ms

    def _invoke(self, request_id: str, body: bytes) -> InvocationResult:
        warm = self._warm(request_id)
        if isinstance(warm, InvocationResult):
            return warm
        environment, init_ms = warm
        api, runtime = environment.api, environment.runtime
        assert runtime is not None
        environment.thaw()

        started = time.monotonic()
        deadline = started + self.config.timeout
        api.deliver_invocation(
            Invocation(
                request_id=request_id,
                event=body,
                deadline_ms=int((time.time() + self.config.timeout) * 1000),
                function_arn=self.config.function_arn,
                trace_id=_trace_id(),
            )
        )
        api.wait_until(
            lambda: api.outcome(request_id) is not None or not runtime.running,
            deadline - time.monotonic(),
        )
        outcome = api.outcome(request_id)
        runtime_ms = _ms_since(started)
        if outcome is None:
            if runtime.running:
                failure = _timeout_error(request_id, self.config.timeout)
                self._reset("timeout")
            else:
                failure = _exit_error(request_id, runtime.exit_code)
                self._reset("failure")
            return InvocationResult(request_id, None, failure, runtime_ms, runtime_ms, init_ms, ())

        payload, error = _parse_outcome(outcome.kind, outcome.body, outcome.error_type)
        # Lambda's invoke phase lasts until the runtime and every extension
        # registered for INVOKE ask for their next event.
        idle = api.wait_until(
            lambda: (
                (api.runtime_ready and api.extensions_ready("INVOKE"))
                or not runtime.running
                or environment.exited_extension() is not None
            ),
            deadline - time.monotonic(),
        )
        if idle and runtime.running and environment.exited_extension() is None:
            environment.freeze()
        else:
            self._reset("timeout" if not idle else "failure")
        return InvocationResult(
            request_id, payload, error, _ms_since(started), runtime_ms, init_ms, ()
        )

    def _invoke_concurrently(self, body: bytes) -> InvocationResult:
        """Managed Instances: invocations run side by side, each in a runtime process of
        its own, and nothing is frozen between them.

        Only INIT is serialised. The extensions get no INVOKE event, a timeout ends
        the invocation but not the environment (Lambda does not stop the code), and
        a runtime process that dies leaves the environment to the others. An
        invocation waits while every runtime process is busy (Lambda would refuse it
        until one is free). ``logs`` are the lines logged while it ran: those of
        invocations running meanwhile too.
        """
        request_id = str(uuid.uuid4())
        with self._lock:
            mark = self._logs.mark()
            self._platform_log(f"START RequestId: {request_id} Version: {FUNCTION_VERSION}")
            warm = self._warm(request_id)
        if isinstance(warm, InvocationResult):
            return self._concurrent_result(warm, mark)
        environment, init_ms = warm
        api, runtime = environment.api, environment.runtime
        assert runtime is not None
        timeout = self.config.timeout
        queued = time.monotonic()
        api.deliver_invocation(
            Invocation(
                request_id=request_id,
                event=body,
                deadline_ms=0,  # set when a runtime process takes it
                function_arn=self.config.function_arn,
                trace_id=_trace_id(),
                timeout=timeout,
            )
        )
        # It waits while every process is busy, and gives up when none has taken any
        # invocation for a whole timeout (they are all stuck).
        api.wait_until(
            lambda: (
                api.taken_at(request_id) is not None
                or not runtime.running
                or time.monotonic() - max(api.last_taken_at, queued) > timeout
            ),
            math.inf,
        )
        if api.taken_at(request_id) is None and api.withdraw(request_id):
            waited = _ms_since(queued)
            if runtime.running:
                failure = _error(
                    "Runtime.Busy",
                    f"no runtime process took the invocation in {waited / 1000:.2f} seconds",
                )
            else:
                failure = self._exited(environment, request_id)
            result = InvocationResult(request_id, None, failure, waited, waited, init_ms, ())
            return self._concurrent_result(result, mark)
        started = api.taken_at(request_id) or queued
        api.wait_until(
            lambda: api.outcome(request_id) is not None or not runtime.running,
            started + timeout - time.monotonic(),
        )
        outcome = api.outcome(request_id)
        elapsed = _ms_since(started)
        if outcome is None:
            if runtime.running:
                failure = _timeout_error(request_id, timeout)
            else:
                failure = self._exited(environment, request_id)
            result = InvocationResult(request_id, None, failure, elapsed, elapsed, init_ms, ())
        else:
            payload, error = _parse_outcome(outcome.kind, outcome.body, outcome.error_type)
            result = InvocationResult(request_id, payload, error, elapsed, elapsed, init_ms, ())
        return self._concurrent_result(result, mark)

    def _exited(self, environment: Environment, request_id: str) -> dict[str, Any]:
        """Managed Instances: the runtime is gone, every process of it. The invocation's
        error; the environment is reset, so the next invocation starts a new one."""
        assert environment.runtime is not None
        with self._lock:
            if self._environment is environment:
                self._reset("failure")
        return _exit_error(request_id, environment.runtime.exit_code)

    def _concurrent_result(self, result: InvocationResult, mark: int) -> InvocationResult:
        if self._memory is not None:
            result = dataclasses.replace(result, max_memory_used_mb=self._memory.peak_mb)
        self._platform_log(f"END RequestId: {result.request_id}")
        self._platform_log(self._report_line(result))
        self._logs.drain()
        return dataclasses.replace(result, logs=self._logs.since(mark))

    def _init(self) -> tuple[Environment, dict[str, Any] | None]:
        """Start the extensions, then the runtime; return the environment and any init error."""
        config = self.config
        environment = self._new_environment()
        api = environment.api
        # Managed Instances run invocations concurrently and never freeze the environment:
        # extensions get SHUTDOWN, not INVOKE (there is no one invocation's end to hold).
        api.invoke_extensions = config.max_concurrency is None
        credentials_uri = credentials_token = ""
        if config.snap_start:
            credentials_token = secrets.token_hex(16)
            credentials_uri = api.serve_credentials(credentials(os.environ), credentials_token)
            self._credentials_token = credentials_token
        env = lambda_environment(
            config,
            runtime_api=api.address,
            credentials_uri=credentials_uri,
            credentials_token=credentials_token,
            opt_dir=self.opt_dir,
            tmp_dir=self.tmp_dir,
            runtime_dir=_site_packages(self._python),
            runtime_bin=self._python.parent,
            log_stream_name=self.log_stream_name,
            host_env=os.environ,
        )
        if config.snap_start:
            self._snapshot_env = env
        deadline = time.monotonic() + self.init_timeout
        error = self._init_extensions(environment, env, deadline)
        if error is None:
            template = RuntimeTemplate() if config.snap_start else None
            error = self._init_runtime(environment, env, deadline, template)
        if error is None:
            error = self._extensions_ready(environment, deadline)
        api.mark_init_done()
        return environment, self._ready(environment, error)

    def _new_environment(self, address: str = "") -> Environment:
        """An environment starting now, with its own Runtime API (at ``address``, if given)."""
        config = self.config
        started = time.monotonic()
        api = RuntimeApi(
            function_name=config.function_name,
            function_version=FUNCTION_VERSION,
            handler=config.handler,
            address=address,
        )
        environment = Environment(api, started, config.memory_mb)
        self._memory = environment.memory
        return environment

    def _ready(
        self, environment: Environment, error: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The end of INIT (or of a restore): its error, if any, and when it ended."""
        if environment.memory.exceeded:
            # Whichever process failed first, the limit is why they all did.
            killed = _status(-signal.SIGKILL)
            return _error("Runtime.ExitError", f"Runtime exited with error: {killed}")
        if error is None:
            environment.ready_at = environment.api.idle_since()
        return error

    def _restore(self) -> tuple[Environment | None, dict[str, Any] | None]:
        """SnapStart: an environment restored from the snapshot, taken first if there is none.

        Lambda runs INIT once, takes the snapshot, and restores every environment from
        it (a later one, too, after a shutdown or a reset). Each one gets /tmp as it
        was at the snapshot, its own Runtime API at the address the snapshot knows,
        extensions started afresh, and a runtime forked from the initialised one
        (see :mod:`lambdacov.local.snapshot`), which asks for its restore and runs
        the after-restore hooks (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``).
        The environment is None when none could be made (its Runtime API's port is
        taken).
        """
        if self._template is not None and not self._template.alive:
            self._template.close()  # it died: init again, for a new snapshot
            self._template = None
        if self._template is None:
            initialised, error = self._init()
            if error is None:
                ms = _ms_since(initialised.started_at)
                self._platform_log(f"INIT_REPORT Init Duration: {ms:.2f} ms")
                error = self._snapshot(initialised)
            if error is not None:
                return initialised, error
        template = self._template
        assert template is not None and self.snapshot_tmp is not None
        try:
            environment = self._new_environment(self._snapshot_env["AWS_LAMBDA_RUNTIME_API"])
        except EmulatorError as problem:
            return None, _error("SnapStartException", str(problem))
        api = environment.api
        api.on_restore = self._restored
        api.serve_credentials(credentials(os.environ), self._credentials_token)
        try:
            _replace_tree(self.tmp_dir, self.snapshot_tmp)
        except OSError as problem:
            message = f"the environment's /tmp could not be restored from the snapshot: {problem}"
            return environment, _error("SnapStartException", message)
        deadline = time.monotonic() + self.init_timeout
        timed_out = _error(
            "SnapStartTimeoutException",
            f"the snapshot was not restored within {self.init_timeout:.2f} seconds",
        )
        error = self._init_extensions(environment, self._snapshot_env, deadline)
        if error is None and deadline <= time.monotonic():
            error = timed_out  # the extensions took the time: the template is not asked
        if error is None:
            runtime = template.restore(deadline - time.monotonic())
            if runtime is None:  # the template is closed: the next restore inits again
                self._template = None
                error = timed_out
            else:
                environment.runtime = runtime
                error = self._runtime_ready(
                    environment, deadline, lambda: api.runtime_ready, timed_out=timed_out
                )
        if error is None:
            error = self._extensions_ready(environment, deadline)
        api.mark_init_done()
        return environment, self._ready(environment, error)

    def _snapshot(self, environment: Environment) -> dict[str, Any] | None:
        """SnapStart: INIT is over (the runtime ran its before-snapshot hooks and waits to
        be restored, the extensions wait for their next event): once the initialised
        runtime has stopped itself, keep it and /tmp as they are; the rest of the
        environment ends here, unseen (Lambda sends it no SHUTDOWN). The error if that
        fails (the environment, template included, is then torn down as after a failed
        INIT)."""
        assert environment.template is not None
        if not environment.template.stopped(SHUTDOWN_GRACE_SECONDS):
            return _error("SnapStartException", "the initialised runtime did not stop")
        snapshot = self._scratch / "snapshot" / "tmp"
        try:
            _replace_tree(snapshot, self.tmp_dir, ignore=_sockets)
        except OSError as error:
            return _error("SnapStartException", f"the snapshot of /tmp failed: {error}")
        self.snapshot_tmp = snapshot
        self._template, environment.template = environment.template, None
        environment.runtime = None
        environment.kill()
        return None

    def _restored(self) -> None:
        """A restored runtime asked for its restore: the environment is restored."""
        self.restored_at = time.monotonic()
        self.restores += 1
        self._platform_log(f"RESTORE_START Runtime Version: python:{self.config.python_version}")

    def _init_extensions(
        self, environment: Environment, env: dict[str, str], deadline: float
    ) -> dict[str, Any] | None:
        """Lambda's extension init: each extension registers (Lambda starts the runtime
        once every extension has registered, not once they ask for their first event)."""
        api = environment.api
        for path in _extension_executables(self.opt_dir):
            try:
                environment.extensions.append(
                    ManagedProcess(
                        f"extension:{path.name}",
                        [str(path)],
                        env=env,
                        cwd=self.config.function_dir,
                        logs=self._logs,
                    )
                )
            except OSError as error:
                return _error("Extension.LaunchError", f"{path.name}: {error}")
        expected = len(environment.extensions)
        return self._wait_for_extensions(
            environment, lambda: len(api.extension_names()) >= expected, deadline
        )

    def _extensions_ready(self, environment: Environment, deadline: float) -> dict[str, Any] | None:
        """The end of the extensions' init: each one waits in ``event/next``."""
        api = environment.api
        expected = len(environment.extensions)
        return self._wait_for_extensions(
            environment, lambda: len(api.ready_extension_names()) >= expected, deadline
        )

    def _wait_for_extensions(
        self, environment: Environment, done: Callable[[], bool], deadline: float
    ) -> dict[str, Any] | None:
        """Wait until ``done()``; the init error when an extension fails first."""
        api = environment.api
        api.wait_until(
            lambda: (
                done() or environment.exited_extension() is not None or bool(api.extension_errors)
            ),
            deadline - time.monotonic(),
        )
        crashed = environment.exited_extension()
        if api.extension_errors:
            name, _, body = api.extension_errors[0]
            return _error(
                str(body.get("errorType") or "Extension.InitError"),
                f"extension {name} reported an init error: {body.get('errorMessage', '')}",
            )
        if crashed is not None and not done():
            return _error(
                "Extension.Crash",
                f"{crashed.name} exited with status {crashed.exit_code} before it was ready",
            )
        if not done():
            return _error(
                "Extension.InitTimeout",
                f"extensions not ready after {self.init_timeout:.2f} seconds "
                f"(ready: {', '.join(api.ready_extension_names()) or 'none'}; "
                f"started: {', '.join(proc.name for proc in environment.extensions)})",
            )
        return None

    def _init_runtime(
        self,
        environment: Environment,
        env: dict[str, str],
        deadline: float,
        template: RuntimeTemplate | None = None,
    ) -> dict[str, Any] | None:
        """Start the runtime; its init ends at its first ``invocation/next`` (with a
        SnapStart ``template``, where it would ask for its restore)."""
        api = environment.api
        try:
            runtime = ManagedProcess(
                "runtime",
                self._runtime_command(env),
                env={**env, **(template.environ if template else {})},
                cwd=self.config.function_dir,
                logs=self._logs,
                pass_fds=template.pass_fds if template else (),
            )
        except OSError as error:
            if template is not None:
                template.close()
            return _error("Runtime.InvalidEntrypoint", f"cannot start the runtime: {error}")
        environment.runtime = runtime
        if template is None:
            return self._runtime_ready(environment, deadline, lambda: api.runtime_ready)
        template.adopt(runtime)
        environment.template = template
        return self._runtime_ready(environment, deadline, lambda: template.snapshotted)

    def _runtime_ready(
        self,
        environment: Environment,
        deadline: float,
        ready: Callable[[], bool],
        *,
        timed_out: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Wait until the runtime is ``ready``; the init error when it fails, or
        ``timed_out`` (INIT's by default) when the deadline comes first."""
        api, runtime = environment.api, environment.runtime
        assert runtime is not None
        api.wait_until(
            lambda: ready() or api.init_error is not None or not runtime.running,
            deadline - time.monotonic(),
        )
        if api.init_error is not None:
            return api.init_error
        if not runtime.running:
            return _error(
                "Runtime.ExitError",
                f"Runtime exited with error: {_status(runtime.exit_code)} "
                "before it asked for an invocation",
            )
        if not ready():
            return timed_out or _error(
                "Sandbox.Timedout", f"INIT timed out after {self.init_timeout:.2f} seconds"
            )
        return None

    def _runtime_command(self, env: dict[str, str]) -> list[str]:
        # Lambda runs `$AWS_LAMBDA_EXEC_WRAPPER /var/runtime/bootstrap`.
        command = [str(self._python), str(BOOTSTRAP)]
        wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
        return [wrapper, *command] if wrapper else command

    def _reset(self, reason: str) -> None:
        """Tear the environment down; the next invocation initialises a new one."""
        environment, self._environment = self._environment, None
        if environment is not None:
            self._teardown(environment, reason)

    def _shutdown(self, reason: str) -> None:
        self._reset(reason)

    def _teardown(self, environment: Environment, reason: str) -> None:
        api, runtime = environment.api, environment.runtime
        try:
            environment.thaw()
            deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
            subscribers = api.deliver_shutdown(reason, int((time.time() + 2) * 1000))
            # Lambda's rule: the runtime is only told (SIGTERM) when extensions exist.
            terminated = bool(api.extension_names()) and runtime is not None and runtime.running
            if terminated and runtime is not None:
                runtime.signal(signal.SIGTERM)
            if subscribers or terminated:
                api.wait_until(
                    lambda: (
                        all(
                            environment.extension_gone(name)
                            for name in api.unresponsive_extensions("SHUTDOWN")
                        )
                        and not (terminated and runtime is not None and runtime.running)
                    ),
                    deadline - time.monotonic(),
                )
        finally:
            environment.kill()

    def _report_line(self, result: InvocationResult) -> str:
        """The REPORT line of ``result``; under SnapStart an environment is restored, not
        initialised, and its first REPORT says so."""
        return _report_line(result, self.config.memory_mb, restored=self.config.snap_start)

    def _platform_log(self, text: str) -> None:
        self._logs.add("lambda", "platform", text)


# Environments still open when the interpreter exits are killed, so a failing
# test or an interrupted CLI never leaves frozen processes behind.
_LIVE: weakref.WeakSet[LocalLambda] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for emulator in list(_LIVE):
        with contextlib.suppress(Exception):
            emulator.close()


def _replace_tree(
    target: Path, source: Path, ignore: Callable[[str, list[str]], list[str]] | None = None
) -> None:
    """Make ``target`` a copy of ``source`` (links kept as links), whatever it held before.
    What cannot be removed is an error (an OSError), not a silent mix of the two."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True, ignore=ignore)


def _sockets(directory: str, names: list[str]) -> list[str]:
    """The sockets and FIFOs among ``names`` (copytree's ignore: their files hold nothing
    to copy, and copying a FIFO would wait for a writer)."""
    return [
        name
        for name in names
        if stat.S_ISSOCK(mode := os.lstat(Path(directory, name)).st_mode) or stat.S_ISFIFO(mode)
    ]


def _extension_executables(opt_dir: Path) -> list[Path]:
    folder = opt_dir / "extensions"
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and os.access(path, os.X_OK))


def _site_packages(python: Path) -> Path:
    version = python.parent.parent / "lib"
    found = sorted(version.glob("python3.*/site-packages"))
    return found[0] if found else python.parent


def _parse_outcome(
    kind: str, body: bytes, error_type: str | None
) -> tuple[Any, dict[str, Any] | None]:
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode("utf-8", errors="replace")
    if kind == "response":
        return parsed, None
    error = parsed if isinstance(parsed, dict) else {"errorMessage": str(parsed)}
    error.setdefault("errorType", error_type or "Unhandled")
    return None, error


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message}


def _timeout_error(request_id: str, timeout: float) -> dict[str, Any]:
    return _error(
        "Sandbox.Timedout",
        f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
    )


def _exit_error(request_id: str, exit_code: int | None) -> dict[str, Any]:
    return _error(
        "Runtime.ExitError",
        f"RequestId: {request_id} Error: Runtime exited with error: {_status(exit_code)}",
    )


def _status(exit_code: int | None) -> str:
    """An exit status as Lambda words it (Go's): ``exit status 1``, ``signal: killed``."""
    if exit_code is not None and exit_code < 0:
        name = signal.strsignal(-exit_code) or str(-exit_code)
        return f"signal: {name.lower()}"
    return f"exit status {exit_code}"


def _trace_id() -> str:
    return (
        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
        f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
    )


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _report_line(result: InvocationResult, memory_mb: int, *, restored: bool = False) -> str:
    report = (
        f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, round(result.duration_ms))} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {result.max_memory_used_mb} MB"
    )
    if result.init_duration_ms is not None:
        phase = "Restore" if restored else "Init"
        report += f"\t{phase} Duration: {result.init_duration_ms:.2f} ms"
    return report
