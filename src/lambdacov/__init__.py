"""lambdacov: which lines of your deployed Lambda functions actually ran."""

from __future__ import annotations

__version__ = "0.1.0"
