"""How a check that cannot run becomes a skipped check, and error messages for checks.

The doctor's clients come from ``lambdacov.aws.Clients`` (several services,
sometimes in another region: the bucket's, a function ARN's); a check that
meets an AWS error it did not expect is reported by :func:`guard`, never raised.
"""

from __future__ import annotations

from collections.abc import Callable

from lambdacov.aws import error_code
from lambdacov.doctor.model import Check, skipped

# Error codes meaning "you may not look", as opposed to "what you looked at is wrong".
DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden"}
)


def first_line(error: BaseException) -> str:
    """An exception's message, one line, without botocore's preamble."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    marker = "operation: "
    return text.split(marker, 1)[1] if marker in text else text


def guard(code: str, run: Callable[[], Check]) -> Check:
    """Run one check; if it cannot run, a skipped check that says why, never an exception."""
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - one check must never stop the others
        reason = error_code(error)
        if reason in DENIED_CODES:
            return skipped(
                code,
                f"not permitted to look: {reason}: {first_line(error)}",
                "grant the caller read access for this check (or use another --profile)",
            )
        return skipped(code, f"could not run: {reason}: {first_line(error)}")
