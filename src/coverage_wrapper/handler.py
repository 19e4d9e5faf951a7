"""Zero-code instrumentation: the handler that /opt/lambdacov-wrapper redirects to.

The exec wrapper sets ``_HANDLER=coverage_wrapper.handler.lambda_handler`` and
keeps the function's own handler in ``LAMBDACOV_ORIGINAL_HANDLER``. Importing
this module (during Lambda's init phase) starts coverage and only then imports
the original handler's module, so its module-level lines are measured as
``coverage run`` would measure them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from coverage_wrapper.engine import get_engine
from coverage_wrapper.handler_names import ORIGINAL_HANDLER_VAR, SELF


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Import ``module.function`` the way the Lambda runtime does."""
    if not spec or spec == SELF:
        raise ImportError(
            "LAMBDACOV_ORIGINAL_HANDLER must name the function's own handler"
            f" (got {spec!r}); run `lambdacov attach` again or set it to e.g. app.handler"
        )
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise ImportError(f"Bad handler {spec!r}: expected module.function")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name, None)
    if not callable(handler):
        # ImportError, as the runtime reports a missing handler: Runtime.ImportModuleError.
        raise ImportError(f"Handler {function_name!r} missing on module {module_name!r}")  # noqa: TRY004
    return handler  # type: ignore[no-any-return]


_engine = get_engine()
_engine.start("wrapper")
try:
    _original = load_handler(os.environ.get(ORIGINAL_HANDLER_VAR, ""))
finally:  # also when the function fails to import: the runtime exits then, mid-load otherwise
    _engine.initialized()


def lambda_handler(event: Any, context: Any) -> Any:
    """Run the original handler; its result or exception passes through untouched."""
    try:
        return _original(event, context)
    finally:
        _engine.end_invocation(getattr(context, "aws_request_id", None), context)
