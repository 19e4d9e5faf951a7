"""``@coverage_handler`` and ``CoverageContext``: instrumenting in code.

Both use the same engine as the exec wrapper. Coverage starts when the
decorator is applied (usually at import, in Lambda's init phase) and keeps
running; each decorated call ends with a checkpoint. ``CoverageContext``
measures only the lines run inside its block, unless the whole process is
already measured by the exec wrapper or the decorator.
"""

from __future__ import annotations

import functools
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


class CoverageContext:
    """Measure the lines run inside a ``with`` block.

    When nothing else measures the process, tracing is switched on at the
    start of the block and off at its end, and the block's new lines are
    spooled for delivery. Nested blocks and blocks inside an instrumented
    handler only add a checkpoint where needed.
    """

    _depth = 0

    def __init__(self, request_id: str | None = None) -> None:
        self.request_id = request_id
        self._owner = False

    def __enter__(self) -> CoverageContext:
        engine = get_engine()
        if engine.start("context") and engine.mode == "context":
            self._owner = CoverageContext._depth == 0
            CoverageContext._depth += 1
            if self._owner and engine.recorder is not None:
                engine.recorder.resume()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        engine = get_engine()
        if engine.mode != "context" or not engine.active:
            return
        CoverageContext._depth = max(0, CoverageContext._depth - 1)
        if self._owner and engine.recorder is not None:
            engine.recorder.pause()
            engine.end_invocation(self.request_id)
