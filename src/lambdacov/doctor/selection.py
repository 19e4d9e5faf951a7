"""Which functions the doctor checks: the same selection as attach's, unread names kept.

Listing, matching and ``--exclude`` are ``lambdacov.attach.selection``'s, so
``doctor --all --exclude X`` checks the functions ``attach --all --exclude X``
would change. Named functions are kept even when they cannot be read, so that
``function.exists`` reports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from lambdacov.attach.selection import Selection, select_functions
from lambdacov.aws import Retrier


def doctor_targets(
    selection: Selection | None, client_for: Callable[[str | None], Any]
) -> list[str]:
    """The named functions not excluded, then the region's functions the selection lists.

    ``client_for(region)`` returns the Lambda client of a region (None: the default).
    """
    if selection is None:
        return []
    chosen = [name for name in selection.names if not selection.excluded(_name_of(name))]
    if selection.lists:
        listing = dataclasses.replace(selection, names=())
        found = select_functions(listing, client_for, retrier=Retrier())
        chosen += [f.name for f in found.functions if f.name not in chosen and f.arn not in chosen]
    return chosen


def _name_of(function: str) -> str:
    """A function's name, from its name or ARN (--exclude matches names, as for attach)."""
    parts = function.split(":")
    return parts[6] if function.startswith("arn:") and len(parts) > 6 else function


def function_region(function: str, default: str) -> str:
    """The region of a function ARN, else ``default``."""
    parts = function.split(":")
    return parts[3] if function.startswith("arn:") and len(parts) > 3 and parts[3] else default
