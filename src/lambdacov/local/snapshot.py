"""SnapStart in the local Lambda: init once, then restore environments from that one state.

Lambda initialises a SnapStart version once, runs the runtime's before-snapshot
hooks, and snapshots the microVM, memory and disk. Every execution environment
after that is restored from the snapshot, so whatever init made (an id, a
random number, a file in /tmp) is the same in all of them until the
after-restore hooks run.

The emulator does the same for the runtime with ``fork``. Where awslambdaric
asks for its restore, the emulated bootstrap (:func:`~lambdacov.local.bootstrap.serve_restores`)
keeps the initialised process as a *template*, stopped (SIGSTOP) as a snapshot
is: nothing of it runs, threads included, but to fork. For each environment the
emulator restores, the template forks a runtime process with its memory, which
asks for its restore on that environment's Runtime API, at the same address (it
is in the snapshot). The emulator copies /tmp back from the copy it took at the
snapshot.

What a fork cannot give: the extensions' state (a process cannot be forked from
outside), so each restored environment starts its extensions afresh and they
register again; threads the function started at init, which a fork leaves
behind (Lambda's snapshot keeps them); a process the function started at init,
which goes on running, one for every restored runtime; and a file the function
opened in /tmp at init, which stays open on the snapshot's copy of it, shared by
every restored runtime, not on the environment's.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from pathlib import Path

from lambdacov.local.bootstrap import RESTORE_FD
from lambdacov.local.process import ManagedProcess

# The longest line the template sends ("snapshot PID").
_MAX_LINE = 32


class RuntimeTemplate:
    """The emulator's end of a SnapStart runtime: the process that ran init, and what it says.

    Create it before the runtime starts: :attr:`environ` and :attr:`pass_fds` go to
    the runtime's process, then :meth:`adopt` takes the process. Called from the
    emulator's thread only (the restored runtimes it returns are used from others).
    """

    def __init__(self) -> None:
        self._socket, self._theirs = socket.socketpair()
        self._socket.setblocking(False)
        self._buffer = b""
        self._snapshotted = False
        self._template_pid = 0  # the process that ran init: the managed one, or its child
        self._pids: list[int] = []
        self._gone = False
        self._closed = False
        self.process: ManagedProcess | None = None

    @property
    def environ(self) -> dict[str, str]:
        """The variable telling the emulated bootstrap which descriptor to serve on."""
        return {RESTORE_FD: str(self._theirs.fileno())}

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._theirs.fileno(),)

    def adopt(self, process: ManagedProcess) -> None:
        """The runtime started with :attr:`environ`: its end is its own now."""
        self.process = process
        self._theirs.close()

    @property
    def snapshotted(self) -> bool:
        """True once init and the before-snapshot hooks have run (the runtime waits to be
        forked)."""
        self._poll(0)
        return self._snapshotted

    @property
    def alive(self) -> bool:
        """True while the template can fork restored runtimes."""
        self._poll(0)
        return (
            self._snapshotted
            and not self._gone
            and not self._closed
            and self.process is not None
            and self.process.running
        )

    def stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the template to have stopped itself, every
        thread of it (it does after ``snapshot`` and after each fork); False if it has
        not, or is gone."""
        deadline = time.monotonic() + timeout
        while True:
            if self._template_pid and _all_stopped(self._template_pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)

    def _signal(self, signum: signal.Signals) -> None:
        if self._template_pid and not self._closed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._template_pid, signum)

    def restore(self, timeout: float) -> RestoredRuntime | None:
        """Fork a restored runtime. None if the template did not answer in ``timeout``
        seconds: it is then closed (a late child would belong to no environment)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        known = len(self._pids)
        # Stopped as it stopped itself after the last fork, or a continue would be lost.
        if not self.stopped(timeout) and not self.alive:
            self.close()
            return None
        self._signal(signal.SIGCONT)
        with contextlib.suppress(OSError):
            self._socket.sendall(b"restore\n")
        while len(self._pids) == known and not self._gone:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._poll(min(remaining, 0.1))
            if not self.process.running:
                break
        if len(self._pids) == known:
            self.close()
            return None
        return RestoredRuntime(self._pids[known])

    def close(self) -> None:
        """End the template and collect its output; a child it was forking is killed too."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._theirs.close()
        if self._template_pid:  # in the group below, unless a wrapper moved it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._template_pid, signal.SIGKILL)
        if self.process is not None:
            self.process.kill()  # its group, the template with it; a stopped one too
        known = len(self._pids)
        self._poll(0)  # a pid said as it was killed
        for pid in self._pids[known:]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._socket.close()

    def _poll(self, timeout: float) -> None:
        """Read what the template said, waiting up to ``timeout`` seconds for something."""
        if self._gone:
            return
        try:
            readable, _, _ = select.select([self._socket], [], [], max(timeout, 0))
        except (OSError, ValueError):  # closed
            self._gone = True
            return
        if not readable:
            return
        while True:
            try:
                data = self._socket.recv(4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._gone = True
                break
            self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self._buffer = self._buffer[-_MAX_LINE:]
        for line in lines:
            words = line.decode("ascii", errors="replace").split()
            if words[:1] == ["snapshot"]:
                self._snapshotted = True
                given = words[1] if len(words) > 1 else ""
                self._template_pid = int(given) if given.isdigit() else 0
            elif len(words) == 1 and words[0].isdigit():
                self._pids.append(int(words[0]))


class RestoredRuntime:
    """A runtime process forked from the template: a process of one restored environment.

    It is not the emulator's child, but it is frozen, signalled and killed as a
    :class:`~lambdacov.local.process.ManagedProcess` is, as a process group of its
    own. How it ended is read from /proc: the template, stopped, leaves it a
    zombie until the next restore. Its output goes to the template's pipes,
    collected as the runtime's.
    """

    def __init__(self, pid: int) -> None:
        self.name = "runtime"
        self._pid = pid
        # Its start time tells it from a later process given the same pid (possible
        # only once it is reaped: by the next restore, or by init if the template died).
        fields = _stat(pid)
        self._started = fields[19] if fields else b""
        self._exit_code: int | None = None if fields is not None else -signal.SIGKILL

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self._pid

    @property
    def exit_code(self) -> int | None:
        """The exit status (negative for a signal), or None while it runs; a process gone
        without a status to read (reaped elsewhere) counts as killed."""
        if self._exit_code is None:
            fields = _stat(self._pid)
            if not fields:  # gone (None), or /proc unreadable now ([]): running, then
                if fields is None:
                    self._exit_code = -signal.SIGKILL
                return self._exit_code
            self._started = self._started or fields[19]
            if fields[19] != self._started:  # reaped, its pid another process's now
                self._exit_code = -signal.SIGKILL
            elif fields[0] == b"Z":
                self._exit_code = os.waitstatus_to_exitcode(int(fields[49]))
        return self._exit_code

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def signal_group(self, signum: signal.Signals) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signum)

    def signal(self, signum: signal.Signals) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._pid, signum)

    def freeze(self) -> None:
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_group(signal.SIGCONT)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to exit."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.005)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.wait(5.0)

    def __repr__(self) -> str:
        return f"RestoredRuntime(pid={self.pid}, exit_code={self.exit_code})"


def _all_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (a group stop shows on the first
    thread before the others have stopped)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        fields = _stat(int(task.name))
        if fields is not None and (not fields or fields[0] not in (b"T", b"t")):
            return False
    return bool(tasks)


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first); None when the
    process is gone, [] when /proc cannot be read now (out of descriptors, say)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return []
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields if len(fields) > 49 else []
