"""coverage_wrapper: the lambdacov runtime, shipped in the layer at /opt/python.

Three ways to measure a function, one engine: the exec wrapper
(``AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper``, no code change),
``@coverage_handler``, and ``with CoverageContext():``. Importing this package
is cheap: the engine is imported when one of them is first used (PEP 562), and
coverage.py only when recording needs it (branch coverage, Python 3.11).
"""

from __future__ import annotations

from coverage_wrapper._version import __version__
from coverage_wrapper.errors import CoverageInitializationError, S3UploadError

TYPE_CHECKING = False  # typing is not imported: the extension's final pass starts from it too
if TYPE_CHECKING:
    from typing import Any

    from coverage_wrapper.wrapper import CoverageContext, coverage_handler

__all__ = [
    "CoverageContext",
    "CoverageInitializationError",
    "S3UploadError",
    "__version__",
    "coverage_handler",
]


def __getattr__(name: str) -> Any:
    if name in ("CoverageContext", "coverage_handler"):
        from coverage_wrapper import wrapper

        return getattr(wrapper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
