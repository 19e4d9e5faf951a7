"""Memory headroom: the peak of the function's REPORT lines against its MemorySize and the layer.

Lambda ends each invocation's logs with a REPORT line (``Memory Size: 128 MB``,
``Max Memory Used: 95 MB``). Log text is untrusted (the function writes to the same
stream), so a line is read only when it is short and has exactly the shape Lambda writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from lambdacov import conventions
from lambdacov.aws import error_code
from lambdacov.cloudwatch import logs
from lambdacov.doctor.model import Check, ok, skipped, warn

#: What an environment needs beyond the function's own peak once the layer is attached: the
#: peak memory difference bare → layered measured by benchmarks/cold_start.py on the
#: development machine (medians up to +15.2 MB on Python 3.11, +14.8 on 3.12, +14.9 on 3.13:
#: the recorder and the delivery code in the runtime, the extension's shell), the largest
#: rounded up. docs/benchmarks.md has the measurement.
LAYER_MEMORY_MB = 16
#: With the layer attached, a peak at or above this percentage of MemorySize is near the limit.
NEAR_LIMIT_PERCENT = 90
#: Lambda's largest MemorySize; no REPORT line can honestly name more.
MAX_MEMORY_MB = 10240
#: At most this many REPORT lines are read (the oldest of the window first, as CloudWatch
#: returns them); only the peak and a count are kept.
MAX_REPORTS = 10_000
#: A REPORT line is a few hundred characters; longer text is not one.
MAX_LINE = 1024
#: Server-side pattern for Lambda's REPORT lines (the regular expression below decides).
REPORT_PATTERN = '"REPORT RequestId"'
_REPORT = re.compile(
    r"REPORT RequestId: [0-9A-Za-z-]{1,64}"
    r"(?:[\t ]+[A-Z][A-Za-z ]{0,30}: [0-9]{1,9}(?:\.[0-9]{1,3})? ms)*"
    r"[\t ]+Memory Size: ([0-9]{1,5}) MB"
    r"[\t ]+Max Memory Used: ([0-9]{1,5}) MB"
    r"(?:[\t ]|$)"
)


@dataclass(frozen=True)
class Report:
    """The memory figures of one REPORT line."""

    memory_size_mb: int
    max_memory_used_mb: int


def parse_report(message: str) -> Report | None:
    """The memory figures of a Lambda REPORT line, or None for any other text."""
    if len(message) > MAX_LINE:
        return None
    matched = _REPORT.match(message.rstrip("\r\n"))
    if matched is None:
        return None
    size, used = int(matched.group(1)), int(matched.group(2))
    if not 1 <= size <= MAX_MEMORY_MB or used > MAX_MEMORY_MB:
        return None
    return Report(size, used)


def peak_of(messages: Iterable[str]) -> tuple[int | None, int]:
    """The highest Max Memory Used of the REPORT lines among ``messages``, and their number."""
    peak: int | None = None
    count = 0
    for message in messages:
        report = parse_report(message)
        if report is None:
            continue
        count += 1
        peak = report.max_memory_used_mb if peak is None else max(peak, report.max_memory_used_mb)
    return peak, count


def check_memory(
    logs_client: Any, group: str, config: Mapping[str, Any], since: timedelta, now: datetime
) -> Check:
    """Does MemorySize leave room for the function's peak and the layer's footprint?"""
    memory = int(config.get("MemorySize") or 128)
    layers = [str(layer.get("Arn", "")) for layer in config.get("Layers") or []]
    attached = any(conventions.is_lambdacov_layer_arn(arn) for arn in layers)
    span = logs.format_span(since)
    start = int((now - since).timestamp() * 1000)
    events = logs.search(logs_client, group, start_ms=start, pattern=REPORT_PATTERN)
    try:
        peak, count = peak_of(event.message for event in islice(events, MAX_REPORTS))
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            return skipped("function.memory", f"no log group {group}: the function has not run yet")
        raise
    if peak is None:
        json_format = (config.get("LoggingConfig") or {}).get("LogFormat") == "JSON"
        why = (
            "the function logs in JSON format, whose platform.report records are not read"
            if json_format
            else "no recent invocations"
        )
        return skipped("function.memory", f"no REPORT lines in {group} in the last {span}: {why}")
    headroom = memory - peak
    lines = f"{count} REPORT lines" if count < MAX_REPORTS else f"the first {count} REPORT lines"
    detail = f"peak {peak} MB of {memory} MB ({lines} in the last {span})"
    data = {
        "peak_mb": peak,
        "memory_mb": memory,
        "headroom_mb": headroom,
        "reports": count,
        "layer_attached": attached,
    }
    if not attached and headroom < LAYER_MEMORY_MB:
        needed = peak + LAYER_MEMORY_MB
        return warn(
            "function.memory",
            f"{detail}: attaching the layer needs about {LAYER_MEMORY_MB} MB more: "
            f"raise MemorySize to at least {needed} MB",
            f"raise MemorySize to at least {needed} MB before `lambdacov attach`",
            layer_mb=LAYER_MEMORY_MB,
            **data,
        )
    if attached and peak * 100 >= NEAR_LIMIT_PERCENT * memory:
        enough = peak * 100 // NEAR_LIMIT_PERCENT + 1
        return warn(
            "function.memory",
            f"{detail}: near its memory limit; out-of-memory kills show as "
            "'Runtime exited with error: signal: killed'",
            f"raise MemorySize to at least {enough} MB, or record less "
            "(COVERAGE_SAMPLE_RATE, narrower COVERAGE_INCLUDE_PATTERNS)",
            **data,
        )
    room = "" if attached else f", room for the layer's ~{LAYER_MEMORY_MB} MB"
    return ok("function.memory", f"{detail}: {headroom} MB of headroom{room}", **data)
