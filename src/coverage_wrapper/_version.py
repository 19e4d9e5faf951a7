"""The lambdacov version, shared by the CLI and the runtime it ships."""

from __future__ import annotations

__version__ = "0.1.0"
