"""The extension's final pass: at SHUTDOWN, deliver what the spool still holds.

The layer's external extension (``/opt/extensions/lambdacov``) is a shell
script that holds Lambda's lifecycle while the runtime process uploads after
each response (see :mod:`coverage_wrapper.courier`). An upload can fail (S3
down, throttled, denied) or be cut short by the invocation's deadline; its data
stays in the spool, and the runtime tries again after its next invocation. When
the environment shuts down first, the script runs this module, once, with
SHUTDOWN's deadline::

    python3 -S -c 'from coverage_wrapper.extension import main; ...' DEADLINE_MS

It delivers everything left within the deadline, and says nothing when there
is nothing to deliver, coverage is off, or the configuration is bad (the
runtime, which reads the same variables, has said why). It never raises: a
failure is one JSON log line.
"""

from __future__ import annotations

import os
import sys
import time

# Time kept back from SHUTDOWN's deadline for the process to exit.
_MARGIN = 0.3
# How long the pass may take when the deadline cannot be read (Lambda gives 2 s).
_DEFAULT_SECONDS = 1.5


def _seconds_left(deadline_ms: str) -> float:
    """Seconds until ``deadline_ms`` (milliseconds since the epoch) less the margin."""
    try:
        deadline = int(deadline_ms) / 1000
    except ValueError:
        return _DEFAULT_SECONDS
    return deadline - time.time() - _MARGIN


def final_pass(budget: float) -> int:
    """Deliver what the spool holds within ``budget`` seconds; the exit status (0)."""
    from coverage_wrapper.logging_utils import get_logger
    from coverage_wrapper.models import CoverageConfig
    from coverage_wrapper.spool import SpoolDirectory

    log = get_logger("coverage_wrapper.extension")
    try:
        config = CoverageConfig.from_environment()
        if not config.enabled or budget <= 0:
            return 0
        spool = SpoolDirectory(config.spool_dir)
        spool.prepare()
    except ValueError as error:  # the runtime logged the same reason when it started
        log.debug(f"Final pass skipped: {error}")
        return 0
    deadline = time.monotonic() + budget
    try:
        from coverage_wrapper.delivery import Deliverer
        from coverage_wrapper.s3_uploader import S3Uploader

        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        uploader = S3Uploader(config, attempts=2)
        deliverer = Deliverer(config, spool, uploader, function)
        if deliverer.has_pending():
            deliverer.deliver(deadline, final=True)
    except Exception as error:  # noqa: BLE001 - one line, never a traceback at shutdown
        log.error(f"Coverage delivery failed: {type(error).__name__}: {error}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The final pass, with SHUTDOWN's deadline (milliseconds since the epoch) as argument."""
    args = sys.argv[1:] if argv is None else argv
    return final_pass(_seconds_left(args[0]) if args else _DEFAULT_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
