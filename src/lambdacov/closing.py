"""What objects that hold processes, servers or files share: ``with`` closes them.

An emulated execution environment, or a pool of them, owns child processes and
directories that must not outlive the command, whatever ends it (an error,
Ctrl-C). Such an object defines :meth:`Closing.close`; used in a ``with``
block, it is closed on the way out.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Closing(abc.ABC):
    """A base for objects that must be closed: ``with obj:`` yields ``obj``, then closes it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the object holds; safe to call again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
