"""Recent delivery: the newest coverage object, errors in the logs, and the metrics."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from coverage_wrapper.s3_uploader import generate_s3_key
from lambdacov.aws import error_code
from lambdacov.cloudwatch import logs
from lambdacov.doctor.model import Check, fail, ok, skipped, warn

#: How far back the newest coverage object is looked for, one date partition per day.
LOOKBACK_DAYS = 7
#: Server-side patterns that find the runtime's errors and Lambda's timeout lines.
ERROR_PATTERNS = ("ERROR", '"Task timed out"')
_CAUSE_NAME = re.compile(r"^([A-Z][A-Za-z0-9]+(?:Error|Exception)):")
_MESSAGE_CAUSES = {
    "Coverage data could not be spooled": "SpoolError",
    "Coverage checkpoint failed": "CheckpointError",
    "Skipped an unreadable coverage delta": "CorruptSpoolFile",
}


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def check_recent(
    s3: Any, bucket: str, prefix: str, function_name: str, *, since: timedelta, now: datetime
) -> Check:
    """The newest data file of this function under the prefix, and its age."""
    newest: dict[str, Any] | None = None
    for back in range(LOOKBACK_DAYS + 1):
        day = now - timedelta(days=back)
        # The runtime's own key function gives the listing prefix, so both agree.
        stem = generate_s3_key(function_name, "X", prefix, day).removesuffix("X.coverage")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=stem):
            for item in page.get("Contents", []):
                if newest is None or item["LastModified"] > newest["LastModified"]:
                    newest = item
        if newest is not None:
            break
    if newest is None:
        return warn(
            "delivery.recent",
            f"no coverage object for {function_name} in the last {LOOKBACK_DAYS} days",
            "invoke the function; if it ran, see delivery.logs",
        )
    age = now - newest["LastModified"].astimezone(UTC)
    detail = f"s3://{bucket}/{newest['Key']} ({_ago(age)})"
    if age > since:
        return ok("delivery.recent", f"{detail}; none newer within --since", key=newest["Key"])
    return ok("delivery.recent", detail, key=newest["Key"])


def cause_of(event: logs.LogEvent) -> str | None:
    """The cause a lambdacov error line reports, or None for other lines."""
    if "Task timed out after" in event.message:
        return "Timeout"
    record = event.record
    if record is None:
        named = _CAUSE_NAME.match(event.message.strip())
        return named.group(1) if named and "Coverage" in named.group(1) else None
    if record.get("level") != "ERROR" or not str(record.get("logger", "")).startswith(
        "coverage_wrapper"
    ):
        return None
    message = str(record.get("message", ""))
    data = record.get("data") or {}
    if message.startswith("Failed to upload coverage file to S3"):
        return f"S3UploadError: {data.get('cause') or 'unknown'}"
    for start, cause in _MESSAGE_CAUSES.items():
        if message.startswith(start):
            return cause
    named = _CAUSE_NAME.match(message)
    return named.group(1) if named else "error"


def check_logs(logs_client: Any, group: str, since: timedelta, now: datetime) -> Check:
    """lambdacov errors and timeouts in the window, by cause, with a count and a sample each."""
    start = int((now - since).timestamp() * 1000)
    counts: Counter[str] = Counter()
    samples: dict[str, str] = {}
    seen: set[tuple[int, str, str]] = set()
    try:
        for pattern in ERROR_PATTERNS:
            for event in logs.search(logs_client, group, start_ms=start, pattern=pattern):
                key = (event.timestamp, event.stream, event.message)
                cause = cause_of(event)
                if key in seen or cause is None:
                    continue
                seen.add(key)
                counts[cause] += 1
                samples.setdefault(cause, event.message.strip())
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            return skipped("delivery.logs", f"no log group {group}: the function has not run yet")
        raise
    if not counts:
        return ok(
            "delivery.logs", f"no lambdacov errors in {group} in the last {logs.format_span(since)}"
        )
    summary = ", ".join(f"{cause} x{count}" for cause, count in counts.most_common())
    causes = [
        {"cause": cause, "count": count, "sample": samples[cause]}
        for cause, count in counts.most_common()
    ]
    top = counts.most_common(1)[0][0]
    hint = "run `lambdacov logs FUNCTION --pattern ERROR` for the lines"
    if top.startswith("S3UploadError"):
        hint = "see bucket.* and role.* above; " + hint
    only_timeouts = set(counts) == {"Timeout"}
    make = warn if only_timeouts else fail
    return make(
        "delivery.logs",
        f"{summary} in the last {logs.format_span(since)}; e.g. {samples[top][:200]}",
        hint,
        causes=causes,
    )


def _total(
    cloudwatch: Any, function_name: str, metric: str, stat: str, *, start: datetime, end: datetime
) -> list[float]:
    period = max(60, int((end - start).total_seconds()) // 60 * 60)
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": "FunctionName", "Value": function_name}],
        StartTime=start,
        EndTime=end,
        Period=period,
        Statistics=[stat],
    )
    return [float(point[stat]) for point in answer.get("Datapoints", [])]


def check_metrics(
    cloudwatch: Any, function_name: str, timeout_s: int, since: timedelta, now: datetime
) -> Check:
    """Invocations, Errors and Duration over the window; warn on errors or near-timeouts."""
    start = now - since
    invocations = sum(_total(cloudwatch, function_name, "Invocations", "Sum", start=start, end=now))
    errors = sum(_total(cloudwatch, function_name, "Errors", "Sum", start=start, end=now))
    maxima = _total(cloudwatch, function_name, "Duration", "Maximum", start=start, end=now)
    averages = _total(cloudwatch, function_name, "Duration", "Average", start=start, end=now)
    if not invocations and not maxima:
        return ok("delivery.metrics", f"no invocations in the last {logs.format_span(since)}")
    longest = max(maxima, default=0.0)
    average = sum(averages) / len(averages) if averages else 0.0
    detail = (
        f"{invocations:g} invocations, {errors:g} errors, duration avg {average:.0f} ms, "
        f"max {longest:.0f} ms (timeout {timeout_s} s)"
    )
    data = {"invocations": invocations, "errors": errors, "max_ms": longest, "avg_ms": average}
    if longest >= 0.8 * timeout_s * 1000:
        return warn(
            "delivery.metrics",
            detail + ": close to the timeout",
            "raise the timeout or lower COVERAGE_UPLOAD_TIMEOUT",
            **data,
        )
    if errors:
        return warn(
            "delivery.metrics", detail, "run `lambdacov logs FUNCTION --pattern ERROR`", **data
        )
    return ok("delivery.metrics", detail, **data)
