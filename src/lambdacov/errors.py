"""One exception root for the CLI and its core, and the documented exit codes.

Every expected failure is a :class:`LambdacovError`: a one-line message saying
what went wrong, a hint naming the fix, and a stable slug naming its kind
(``no-credentials``, ``AccessDenied``...) for code that catches it.
``lambdacov.cli.main`` turns it into that line on stderr and the exit code
below; a traceback means a bug.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes shared by every command (docs/cli.md)."""

    OK = 0
    CHECK_FAILED = 1  # a doctor check or a --fail-under threshold failed
    USAGE = 2  # bad arguments or configuration
    AWS = 3  # AWS refused or could not be reached
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
    TERMINATED = 143  # SIGTERM (128 + SIGTERM), e.g. a cancelled CI job


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI runner cancelling a job): it unwinds as Ctrl-C does, so clean-ups run."""


class LambdacovError(Exception):
    """An expected failure with a message, a hint and an exit code."""

    exit_code: ExitCode = ExitCode.USAGE
    slug: str = "error"

    def __init__(self, message: str, hint: str = "", *, slug: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if slug is not None:
            self.slug = slug

    def __str__(self) -> str:
        return self.message


class UsageError(LambdacovError):
    """Bad input from the user: arguments, configuration, files."""

    exit_code = ExitCode.USAGE
    slug = "usage"


class BuildError(LambdacovError):
    """The layer cannot be built as asked (wrong Python, no wheel, too large)."""

    exit_code = ExitCode.USAGE
    slug = "build"


class AwsError(LambdacovError):
    """AWS refused a call or could not be reached."""

    exit_code = ExitCode.AWS
    slug = "aws"


class NoDataError(LambdacovError):
    """There is nothing to report (as `coverage report` says "No data to report.")."""

    exit_code = ExitCode.CHECK_FAILED
    slug = "no-data"


class EmulatorError(LambdacovError):
    """The local Lambda emulator could not run the function."""

    exit_code = ExitCode.USAGE
    slug = "local-lambda"


class InterruptionError(LambdacovError):
    """Ctrl-C stopped the command; ``--json`` reports it as this error."""

    exit_code = ExitCode.INTERRUPTED
    slug = "interrupted"


class TerminationError(InterruptionError):
    """SIGTERM stopped the command; ``--json`` reports it as this error."""

    exit_code = ExitCode.TERMINATED
    slug = "terminated"
