"""The emulator's ``/var/runtime/bootstrap``: starts awslambdaric as Lambda's Python runtime does.

The emulator runs ``<runtime python> <this file>``, behind
``$AWS_LAMBDA_EXEC_WRAPPER`` when the function sets one. Like AWS's bootstrap
it reads the handler from ``_HANDLER`` when it starts (so a wrapper may have
changed it), puts ``LAMBDA_TASK_ROOT`` first on sys.path, and hands over to
``awslambdaric.bootstrap.run`` the way ``python -m awslambdaric`` does.

Under SnapStart the emulator gives it one end of a socket (``RESTORE_FD``), and
the process that ran init becomes the snapshot (see :mod:`lambdacov.local.snapshot`):
where awslambdaric asks to be restored, it forks one runtime process per restored
environment instead.

This file runs inside the runtime's interpreter, where lambdacov is not
installed. Like awslambdaric's own entry point it imports ``os`` and ``sys``
alone before awslambdaric (not even ``pathlib`` or ``typing``), so the modules a
function or a layer imports cost what they cost in Lambda.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable, Iterator
    from typing import Any

#: The variable naming the descriptor of the emulator's SnapStart socket (the
#: emulator's own: the function never sees it).
RESTORE_FD = "_LAMBDACOV_LOCAL_RESTORE_FD"


def _lambda_sys_path() -> None:
    # Running a script puts its directory first on sys.path; here that is
    # lambdacov/local, whose module names (api, process...) would shadow the
    # function's own. Lambda's sys.path has no such entry.
    # os.path, not pathlib: see above.
    here = os.path.dirname(os.path.realpath(__file__))  # noqa: PTH120
    sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != here]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root:
        sys.path[:] = [task_root, *(entry for entry in sys.path if entry != task_root)]


def serve_restores(control: _socket.socket) -> None:
    """Be the snapshot: fork one runtime process per restore the emulator asks for.

    Called where awslambdaric would ask for its restore: init and the
    before-snapshot hooks have run. It says ``snapshot PID`` and stops itself
    (SIGSTOP: nothing of it runs between restores, threads included). For each
    ``restore`` line (the emulator continues it first) it forks a child with this
    process's memory, says its pid, and stops again. The child returns, to ask
    for its restore as this process would have. The parent never returns: it
    exits once the emulator closes its end.

    The child is put in a session of its own before its pid is said (its process
    group is then never orphaned, and SIGHUPed, by this process's exit), and goes
    on only when told to: a child forked for a restore the emulator gave up on
    exits. The emulator reads how each child ended from /proc: the child stays
    unreaped (a zombie keeps its pid) until the next restore, also when the
    function had SIGCHLD ignored (the kernel would reap it at once).

    Only built-in modules are imported here (``_socket``, ``_signal``): the
    function's directory is ahead of the standard library on sys.path, and a
    ``signal.py`` of its own would be taken for the standard one.
    """
    import _signal  # type: ignore[import-not-found]  # built in (typeshed has no stub)
    import _socket

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.stderr.write(
            f"lambdacov local: {threading.active_count() - 1} thread(s) started at init are"
            " not in the restored runtimes (a fork copies only the thread that asks for the"
            " restore; Lambda's snapshot keeps them all), and a restored runtime can hang on"
            " a lock one of them held\n"
        )
    ignored = _sigchld_ignored()
    if ignored:
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    control.sendall(f"snapshot {os.getpid()}\n".encode())
    os.kill(os.getpid(), _signal.SIGSTOP)
    for line in _lines(control):
        if line != b"restore":
            continue
        _reap_ended_children()
        ours, theirs = _socket.socketpair()
        child = _fork()
        if child == 0:
            ours.close()
            control.close()
            os.setsid()
            try:
                theirs.sendall(b"s")
                go = theirs.recv(1)
            except OSError:  # the parent died with "s" unread: a reset
                go = b""
            if not go:  # the emulator gave up on this restore
                os._exit(0)
            theirs.close()
            if ignored:
                _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
            return
        theirs.close()
        try:
            ours.recv(1)  # in its own session (or already gone)
            control.sendall(f"{child}\n".encode())
            ours.sendall(b"g")
        except OSError:
            pass
        ours.close()
        os.kill(os.getpid(), _signal.SIGSTOP)
    os._exit(0)


def _lines(control: _socket.socket) -> Iterator[bytes]:
    """The lines the emulator sends, without their ends, until it closes its end."""
    pending = b""
    while True:
        data = control.recv(4096)
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        pending = pending[-64:]
        yield from (line.strip() for line in lines)


def _sigchld_ignored() -> bool:
    """Whether SIGCHLD is ignored, as the kernel has it (``signal.getsignal`` knows only
    what Python set: not what native code set)."""
    try:
        with open("/proc/self/status", "rb") as status:  # noqa: PTH123 - no pathlib here
            for line in status:
                if line.startswith(b"SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (17 - 1) & 1)  # SIGCHLD is 17
    except (OSError, ValueError):
        pass
    return False


def _fork() -> int:
    """``os.fork()``, without Python's warning about threads (ours above says it better)."""
    warnings = sys.modules.get("warnings")  # imported already, by logging
    if warnings is None:
        return os.fork()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _reap_ended_children() -> None:
    """Reap the restored runtimes that have ended (the emulator is done with them)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _restored_from_snapshot(client_class: Any) -> None:
    """Under the emulator's SnapStart, fork each restored environment's runtime where
    awslambdaric asks for its restore."""
    descriptor = os.environ.pop(RESTORE_FD, "")
    if not descriptor:
        return
    import _socket

    control = _socket.socket(fileno=int(descriptor))
    restore_next: Callable[[Any], None] = client_class.restore_next

    def fork_then_restore(self: Any) -> None:
        serve_restores(control)
        restore_next(self)

    client_class.restore_next = fork_then_restore


def main() -> None:
    """Run the function's handler under awslambdaric until the environment is shut down."""
    _lambda_sys_path()
    handler = os.environ.get("_HANDLER")
    if not handler:
        sys.stderr.write("bootstrap: _HANDLER is not set\n")
        sys.exit(1)

    from awslambdaric import bootstrap
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    _restored_from_snapshot(LambdaRuntimeClient)

    try:
        from awslambdaric.lambda_config import LambdaConfigProvider
    except ImportError:  # awslambdaric < 3.1 decided thread polling itself
        api_address = os.environ["AWS_LAMBDA_RUNTIME_API"]
        use_thread_polling = False
    else:
        # The same decisions as awslambdaric's own __main__: poll in a thread on
        # 3.12+ (by AWS_EXECUTION_ENV), which lets signal handlers run, and on
        # Lambda Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY) fork that many
        # runtime processes, each of which imports the handler and asks for work.
        config = LambdaConfigProvider([sys.argv[0], handler])
        api_address = config.api_address
        use_thread_polling = config.use_thread_polling
        if os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY") and not hasattr(
            config, "is_multi_concurrent"
        ):
            sys.stderr.write(
                "bootstrap: this awslambdaric cannot run several runtime processes"
                " (Managed Instances): install awslambdaric 4.2.2 or later\n"
            )
            sys.exit(1)
        if getattr(config, "is_multi_concurrent", False):
            from awslambdaric.lambda_multi_concurrent_utils import MultiConcurrentRunner

            MultiConcurrentRunner.run_concurrent(
                handler,
                api_address,
                use_thread_polling,
                config.lmi_socket_path,
                int(config.max_concurrency),
            )
            return

    bootstrap.run(handler, LambdaRuntimeClient(api_address, use_thread_polling))


if __name__ == "__main__":
    main()
