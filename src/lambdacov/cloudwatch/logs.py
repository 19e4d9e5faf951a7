"""CloudWatch Logs search for a function: pagination, filter patterns, lambdacov's JSON lines.

Filter patterns are sent to CloudWatch and applied again here. CloudWatch
evaluates them server-side; an emulator that cannot (moto returns every event
for ``?term``, JSON ``{ $.x = ... }`` and ``%regex%`` patterns) is corrected
by the second pass, which keeps exactly what CloudWatch would have kept for
the syntax it understands (terms, "phrases", ``?any``, ``-not``, ``%regex%``,
JSON comparisons); space-delimited ``[...]`` patterns are left to the server.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lambdacov.errors import UsageError

_SINCE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# CloudWatch keeps logs at most 10 years (its longest retention) and metrics 15 months.
MAX_SINCE = timedelta(days=3653)
_COMPARISON = re.compile(r"^\s*\$\.([\w.\[\]]+)\s*(=|!=|<=|>=|<|>)\s*(.+?)\s*$")


def parse_since(text: str) -> timedelta:
    """A duration such as ``90s``, ``15m``, ``1h``, ``2d`` or ``1h30m``."""
    cleaned = text.strip().lower()
    parts = _SINCE.findall(cleaned)
    if not parts or _SINCE.sub("", cleaned).strip():
        raise UsageError(f"not a duration: {text!r}", "use e.g. 30m, 1h, 2d or 1h30m")
    try:
        total = sum(
            (timedelta(**{_UNITS[unit]: int(amount)}) for amount, unit in parts), timedelta()
        )
    except OverflowError:
        total = timedelta.max
    if total > MAX_SINCE:
        raise UsageError(
            f"--since {text.strip()} reaches back more than 10 years, beyond any log or metric",
            "use a shorter window, e.g. 7d",
        )
    return total


def format_span(span: timedelta) -> str:
    """A duration as people write it: ``1h``, ``1h30m``, ``2d``."""
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class LogEvent:
    """One log event of a function."""

    timestamp: int  # milliseconds since the epoch, as CloudWatch gives them
    message: str
    stream: str = ""
    event_id: str = ""

    @property
    def record(self) -> dict[str, Any] | None:
        """The lambdacov JSON record in this event, if it is one."""
        return json_record(self.message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the record decoded when the line is lambdacov's)."""
        doc: dict[str, Any] = {
            "timestamp": self.timestamp,
            "stream": self.stream,
            "message": self.message.rstrip("\n"),
        }
        if self.record is not None:
            doc["record"] = self.record
        return doc


def json_record(message: str) -> dict[str, Any] | None:
    """The JSON record of a runtime log line (level, logger, message, data), else None."""
    text = message.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and "level" in record and "message" in record:
        return record
    return None


def log_group_for(lambda_client: Any, function: str) -> str:
    """The function's log group: its LoggingConfig's, else ``/aws/lambda/<name>``."""
    name = function.split(":")[6] if function.startswith("arn:") else function
    try:
        config = lambda_client.get_function_configuration(FunctionName=function)
    except Exception:  # noqa: BLE001 - the default group is right for most functions
        return f"/aws/lambda/{name}"
    return log_group_of(config, name)


def log_group_of(config: Mapping[str, Any], name: str) -> str:
    """The log group named by a configuration already read (as :func:`log_group_for`)."""
    group = (config.get("LoggingConfig") or {}).get("LogGroup")
    return str(group) if group else f"/aws/lambda/{config.get('FunctionName', name)}"


def _lookup(record: Any, path: str) -> Any:
    for part in re.split(r"\.|\[(\d+)\]", path):
        if part is None or part == "":
            continue
        if isinstance(record, dict):
            record = record.get(part)
        elif isinstance(record, list) and part.isdigit() and int(part) < len(record):
            record = record[int(part)]
        else:
            return None
    return record


def _compare(record: Any, comparison: str) -> bool:
    match = _COMPARISON.match(comparison)
    if not match:
        return True  # syntax we do not know: trust the server
    path, operator, raw = match.groups()
    value = _lookup(record, path)
    if raw.startswith('"') and raw.endswith('"'):
        expected = raw[1:-1]
        if value is None:
            return operator == "!="
        matched = re.fullmatch(re.escape(expected).replace(r"\*", ".*"), str(value)) is not None
        return matched if operator == "=" else not matched
    try:
        number = float(raw)
        actual = float(value)
    except (TypeError, ValueError):
        return operator == "!=" if value is None else str(value) == raw
    return {
        "=": actual == number,
        "!=": actual != number,
        "<": actual < number,
        ">": actual > number,
        "<=": actual <= number,
        ">=": actual >= number,
    }[operator]


def _json_matches(pattern: str, message: str) -> bool:
    try:
        record = json.loads(message.strip())
    except ValueError:
        return False
    body = pattern.strip()[1:-1]
    return any(
        all(_compare(record, part) for part in alternative.split("&&"))
        for alternative in body.split("||")
    )


def matches(pattern: str, message: str) -> bool:
    """True when CloudWatch's filter ``pattern`` keeps ``message`` (case-sensitive)."""
    text = pattern.strip()
    if not text:
        return True
    if text.startswith("{") and text.endswith("}"):
        return _json_matches(text, message)
    if len(text) > 1 and text.startswith("%") and text.endswith("%"):
        return re.search(text[1:-1], message) is not None
    if text.startswith("["):
        return True
    try:
        terms = shlex.split(text)
    except ValueError:
        terms = text.split()
    required = [t for t in terms if not t.startswith(("?", "-"))]
    optional = [t[1:] for t in terms if t.startswith("?")]
    excluded = [t[1:] for t in terms if t.startswith("-") and len(t) > 1]
    return (
        all(term in message for term in required)
        and (not optional or any(term in message for term in optional))
        and not any(term in message for term in excluded)
    )


def search(
    logs_client: Any,
    group: str,
    *,
    start_ms: int,
    end_ms: int | None = None,
    pattern: str = "",
    page_size: int | None = None,
) -> Iterator[LogEvent]:
    """Every event of ``group`` in the window that ``pattern`` keeps, oldest first, all pages."""
    args: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if end_ms is not None:
        args["endTime"] = end_ms
    if pattern.strip():
        args["filterPattern"] = pattern
    if page_size:
        args["limit"] = page_size
    token: str | None = None
    while True:
        page = logs_client.filter_log_events(**args, **({"nextToken": token} if token else {}))
        for item in page.get("events", []):
            message = str(item.get("message", ""))
            if matches(pattern, message):
                yield LogEvent(
                    int(item.get("timestamp", 0)),
                    message,
                    str(item.get("logStreamName", "")),
                    str(item.get("eventId", "")),
                )
        next_token = page.get("nextToken")
        if not next_token or next_token == token:
            return
        token = next_token


def follow(
    logs_client: Any,
    group: str,
    *,
    start_ms: int,
    pattern: str = "",
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> Iterator[LogEvent]:
    """Events as they arrive, like ``tail -f``: search again from the newest seen, forever.

    ``polls`` bounds the number of searches (tests); each event is yielded once.
    """
    seen: set[tuple[int, str, str]] = set()
    since = start_ms
    done = 0
    while polls is None or done < polls:
        for event in search(logs_client, group, start_ms=since, pattern=pattern):
            key = (event.timestamp, event.stream, event.event_id or event.message)
            if key in seen:
                continue
            seen.add(key)
            since = max(since, event.timestamp)
            yield event
        done += 1
        if polls is None or done < polls:
            sleep(poll_seconds)


def describe(event: LogEvent) -> str:
    """A readable line: lambdacov records as ``LEVEL logger: message  key=value ...``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.timestamp / 1000))
    record = event.record
    if record is None:
        return f"{when}  {event.message.rstrip()}"
    data = record.get("data") or {}
    extras = "  ".join(
        f"{key}={value}" for key, value in sorted(data.items()) if value not in ("", None)
    )
    line = (
        f"{when}  {record.get('level', '')} {record.get('logger', '')}: {record.get('message', '')}"
    )
    return f"{line}  {extras}" if extras else line
