"""``@coverage_handler`` and ``CoverageContext``: instrumenting in code.

Both use the same engine as the exec wrapper. Coverage starts when the
decorator is applied (usually at import, in Lambda's init phase) and keeps
running; each decorated call ends with a checkpoint. ``CoverageContext``
measures only the lines run inside its block, unless the whole process is
already measured by the exec wrapper or the decorator.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from coverage_wrapper.engine import get_engine

F = TypeVar("F", bound=Callable[..., Any])


def coverage_handler(handler: F) -> F:
    """Decorate a Lambda handler so its invocations are measured and delivered."""
    engine = get_engine()
    engine.start("decorator")

    @functools.wraps(handler)
    def measured(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(event, context, *args, **kwargs)
        finally:
            if engine.mode == "decorator":  # the exec wrapper checkpoints by itself
                engine.end_invocation(getattr(context, "aws_request_id", None), context)

    return measured  # type: ignore[return-value]


# Blocks open in this process, across threads: tracing is on while any is open.
_open_blocks = 0
_open_blocks_lock = threading.Lock()


class CoverageContext:
    """Measure the lines run inside a ``with`` block.

    When nothing else measures the process, tracing is switched on when the
    first block opens and off when the last one closes (blocks may nest, or run
    in several threads), and the new lines are then spooled for delivery.
    Inside a handler the exec wrapper or the decorator already measures, a
    block changes nothing.
    """

    def __init__(self, request_id: str | None = None) -> None:
        self.request_id = request_id
        self._counted = False

    def __enter__(self) -> CoverageContext:
        global _open_blocks  # noqa: PLW0603 - one count for the whole process
        engine = get_engine()
        if engine.start("context") and engine.mode == "context":
            with _open_blocks_lock:
                _open_blocks += 1
                self._counted = True
                if _open_blocks == 1 and engine.recorder is not None:
                    engine.recorder.resume()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _open_blocks  # noqa: PLW0603 - one count for the whole process
        if not self._counted:
            return
        self._counted = False
        engine = get_engine()
        with _open_blocks_lock:
            _open_blocks -= 1
            last = _open_blocks == 0 and engine.mode == "context"
            if last and engine.recorder is not None:
                engine.recorder.pause()
        if last:
            engine.end_invocation(self.request_id)
