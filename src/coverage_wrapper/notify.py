"""The runtime's messages to the extension: lines written to a FIFO in the spool.

The extension (``/opt/extensions/lambdacov``, a shell script) makes the FIFO and
holds it open before it registers with Lambda, so before the runtime starts. The
runtime says ``armed <pid>`` at start-up, and under SnapStart again after the
restore (it will report the end of every invocation), ``done <request id>``
once an invocation's data is delivered (or there was none to deliver), and
``disarmed <pid>`` if it stops recording after all (SnapStart: left out by
COVERAGE_SAMPLE_RATE after the restore). The extension holds Lambda's freeze
until the ``done`` of the invocation it was told of, or until the invocation's
deadline.

Sending never blocks the handler: with no extension holding the FIFO open (none
started, or it died), opening it fails at once, :meth:`RuntimeNotifier.send`
returns False, and the runtime uploads within the invocation instead. A line is
far below ``PIPE_BUF``, so it arrives whole, never mixed with another process's.
"""

from __future__ import annotations

import errno
import os
import stat

ARMED = "armed"
DONE = "done"
DISARMED = "disarmed"


class RuntimeNotifier:
    """The runtime's end of the FIFO."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._descriptor: int | None = None

    def listening(self) -> bool:
        """True if an extension holds the FIFO open (it will read what is sent)."""
        if self._descriptor is None:
            self._descriptor = _open_fifo(self.path)
        return self._descriptor is not None

    def send(self, *words: str) -> bool:
        """Send one line; True if an extension holds the FIFO open to read it."""
        line = (" ".join(words) + "\n").encode("utf-8", errors="replace")
        for _ in range(2):  # once more after EPIPE: a new extension process may hold it now
            if not self.listening():
                return False
            assert self._descriptor is not None
            try:
                return os.write(self._descriptor, line) == len(line)
            except OSError as error:
                self.close()
                if error.errno != errno.EPIPE:
                    return False  # EAGAIN: a pipe full of lines nobody reads
        return False

    def close(self) -> None:
        """Close the FIFO (opened again by the next send)."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            try:  # noqa: SIM105 - contextlib is not imported on the runtime's start
                os.close(descriptor)
            except OSError:
                pass


def _open_fifo(path: str) -> int | None:
    """The FIFO opened for writing without ever blocking, or None without a reader.

    O_NONBLOCK makes the open fail with ENXIO when no process has the FIFO open
    for reading, instead of waiting for one. Anything but a FIFO is refused: a
    regular file would collect the lines and no extension would read them.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if stat.S_ISFIFO(os.fstat(descriptor).st_mode):
            return descriptor
    except OSError:
        pass
    os.close(descriptor)
    return None
