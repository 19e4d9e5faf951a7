"""lambdacov: which lines of your deployed Lambda functions actually ran."""

from __future__ import annotations

from coverage_wrapper._version import __version__

__all__ = ["__version__"]
