"""Which functions the doctor checks: names and ARNs as given, plus --pattern / --tag matches.

Listing and matching are ``lambdacov.selection``'s (the same as attach);
named functions are kept even when they cannot be read, so that
``function.exists`` reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lambdacov.aws import Retrier
from lambdacov.selection import Selection, select_functions


def doctor_targets(
    client_for: Callable[[str | None], Any],
    names: Sequence[str],
    patterns: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> list[str]:
    """The named functions, then those of the region that every --pattern and --tag match."""
    chosen = list(dict.fromkeys(names))
    if patterns or tags:
        selection = Selection.create(patterns=patterns, tags=tags)
        found = select_functions(selection, client_for, retrier=Retrier())
        chosen += [f.name for f in found.functions if f.name not in chosen and f.arn not in chosen]
    return chosen


def function_region(function: str, default: str) -> str:
    """The region of a function ARN, else ``default``."""
    parts = function.split(":")
    return parts[3] if function.startswith("arn:") and len(parts) > 3 and parts[3] else default
