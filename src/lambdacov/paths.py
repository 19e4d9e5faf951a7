"""Where lambdacov keeps files on this machine: one definition, read by every cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/lambdacov``, or ``~/.cache/lambdacov`` when it is unset or empty.

    Each cache has its own directory under it: ``objects`` (the S3 objects
    ``combine`` downloaded), ``wheels`` (the coverage wheels ``build-layer``
    downloaded) and ``runtimes`` (the local emulator's runtime venvs).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lambdacov"
