"""A datagram socket between the runtime process and the extension process.

The runtime says ``armed`` once at start-up (it will report the end of every
invocation), ``done <request id>`` after each invocation's data is in the
spool, and ``disarmed`` if it stops recording after all. The extension waits
for ``done`` before it uploads and lets Lambda freeze the environment.
Sending never blocks the handler: with no extension listening,
:meth:`RuntimeNotifier.send` returns False at once and the runtime delivers
by itself.

The extension binds its end before it registers with Lambda (so before the
runtime starts and says ``armed``), and the runtime imports this module as it
starts: both are on the path of every cold start. So the sockets are those of
``_socket``, the C module under :mod:`socket`, whose own import (its enums and
selectors) takes longer than Python's start without ``site``.
"""

from __future__ import annotations

import _socket
import errno
import os
import stat
import time

ARMED = "armed"
DONE = "done"
# The runtime stopped recording after it said ``armed`` (SnapStart: left out by
# COVERAGE_SAMPLE_RATE after the restore): no ``done`` will come.
DISARMED = "disarmed"


class RuntimeNotifier:
    """The runtime's end of the channel."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._socket: _socket.socket | None = None

    def send(self, *words: str) -> bool:
        """Send one message; True if an extension is listening."""
        message = " ".join(words).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message, self.path)
        except OSError:
            # No listener (ENOENT, ECONNREFUSED) or a full queue (EAGAIN): the
            # caller falls back to delivering by itself.
            return False
        return True


class ExtensionListener:
    """The extension's end of the channel: a bound datagram socket."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)  # noqa: PTH103, PTH120 - no pathlib
        # A socket left by an extension process that was killed goes; anything else
        # there is not ours to remove.
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise FileExistsError(errno.EEXIST, "in the way, and not a socket", self.path)
            os.unlink(self.path)  # noqa: PTH108 - no pathlib (see the module's docstring)
        self._socket = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        # Request ids reported done before the extension asked: a fast handler can
        # finish before the extension has even read its INVOKE event.
        self._done: set[str] = set()

    def receive(self, timeout: float) -> list[str] | None:
        """Return the next message's words, or None when ``timeout`` seconds pass."""
        self._socket.settimeout(timeout if timeout > 0 else 0.0)  # 0: non-blocking
        try:
            payload = self._socket.recv(4096)
        except (TimeoutError, BlockingIOError):
            return None
        return payload.decode("utf-8", errors="replace").split()

    def wait_for(self, request_id: str, deadline: float) -> tuple[bool, list[list[str]]]:
        """Wait for ``done <request_id>`` until ``deadline`` (time.monotonic).

        Returns whether it arrived, and every other message seen meanwhile.
        """
        others: list[list[str]] = []
        if request_id in self._done:
            self._done.discard(request_id)
            return True, others
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, others
            words = self.receive(remaining)
            if words is None:
                return False, others
            if words[:2] == [DONE, request_id]:
                return True, others
            others.append(words)

    def drain(self) -> list[list[str]]:
        """Every message already queued, without waiting (``done`` ones are remembered)."""
        messages = []
        while (words := self.receive(0)) is not None:
            if words[:1] == [DONE] and len(words) > 1:
                self._done.add(words[1])
            messages.append(words)
        return messages

    def forget_done(self) -> None:
        """Drop remembered ``done`` ids (called when a new invocation starts)."""
        self._done.clear()

    def close(self) -> None:
        """Close and remove the socket."""
        self._socket.close()
        try:  # noqa: SIM105 - as in __init__
            os.unlink(self.path)  # noqa: PTH108 - as in __init__
        except OSError:
            pass
