"""Client-side CloudWatch filter patterns, --since parsing, and log line classification."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from lambdacov.cloudwatch.logs import LogEvent, describe, format_span, matches, parse_since
from lambdacov.doctor.activity import cause_of
from lambdacov.errors import UsageError

JSON_ERROR = json.dumps(
    {
        "level": "ERROR",
        "logger": "coverage_wrapper.delivery",
        "message": "Failed to upload coverage file to S3: AccessDenied: no",
        "data": {"cause": "AccessDenied", "latency": 3},
    }
)


@pytest.mark.parametrize(
    ("pattern", "message", "kept"),
    [
        ("", "anything", True),
        ("ERROR", JSON_ERROR, True),
        ("ERROR", "error in lower case", False),  # CloudWatch terms are case-sensitive
        ("S3 Failed", JSON_ERROR, True),
        ('"upload coverage"', JSON_ERROR, True),
        ("?WARN ?ERROR", JSON_ERROR, True),
        ("?WARN ?DEBUG", JSON_ERROR, False),
        ("ERROR -AccessDenied", JSON_ERROR, False),
        ("%Access[A-Z]enied%", JSON_ERROR, True),
        ('{ $.level = "ERROR" }', JSON_ERROR, True),
        ('{ $.level = "INFO" }', JSON_ERROR, False),
        ('{ $.data.cause = "Access*" }', JSON_ERROR, True),
        ('{ $.data.latency > 2 && $.level = "ERROR" }', JSON_ERROR, True),
        ('{ $.data.latency > 5 || $.level = "INFO" }', JSON_ERROR, False),
        ('{ $.level = "ERROR" }', "not json", False),
        ("[ip, user]", "anything", True),  # left to CloudWatch
    ],
)
def test_filter_patterns(pattern: str, message: str, kept: bool) -> None:
    assert matches(pattern, message) is kept


def test_since() -> None:
    assert parse_since("1h") == timedelta(hours=1)
    assert parse_since("1h30m") == timedelta(minutes=90)
    assert parse_since("2d") == timedelta(days=2)
    assert format_span(timedelta(minutes=90)) == "1h30m"
    with pytest.raises(UsageError):
        parse_since("yesterday")


def test_causes() -> None:
    assert cause_of(LogEvent(0, JSON_ERROR)) == "S3UploadError: AccessDenied"
    assert cause_of(LogEvent(0, "x Task timed out after 3.00 seconds")) == "Timeout"
    assert (
        cause_of(LogEvent(0, json.dumps({"level": "ERROR", "logger": "app", "message": "x"})))
        is None
    )
    spool = {
        "level": "ERROR",
        "logger": "coverage_wrapper.wrapper",
        "message": "Coverage data could not be spooled: No space left on device",
    }
    assert cause_of(LogEvent(0, json.dumps(spool))) == "SpoolError"
    config = {
        "level": "ERROR",
        "logger": "coverage_wrapper.wrapper",
        "message": "ConfigurationError: coverage is off: COVERAGE_S3_BUCKET is required",
    }
    assert cause_of(LogEvent(0, json.dumps(config))) == "ConfigurationError"


def test_describe_pretty_prints_lambdacov_records() -> None:
    line = describe(LogEvent(0, JSON_ERROR))
    assert "ERROR coverage_wrapper.delivery: Failed to upload" in line
    assert "cause=AccessDenied" in line
    assert describe(LogEvent(0, "START RequestId: x\n")).endswith("START RequestId: x")
