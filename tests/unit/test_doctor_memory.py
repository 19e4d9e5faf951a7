"""function.memory's reading of Lambda's REPORT lines: strict, bounded, the peak of several."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lambdacov.doctor.memory import (
    LAYER_MEMORY_MB,
    MAX_LINE,
    MAX_MEMORY_MB,
    Report,
    parse_report,
    peak_of,
)


def report(
    used: int, size: int = 128, request: str = "8f5c1e9a-0b7d-4c3e-9a1f-2d6b8e4c7a01"
) -> str:
    """A REPORT line exactly as Lambda writes it (tab-separated, a tab and newline at the end)."""
    return (
        f"REPORT RequestId: {request}\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        f"Memory Size: {size} MB\tMax Memory Used: {used} MB\tInit Duration: 210.11 ms\t\n"
    )


def test_lambdas_report_line() -> None:
    assert parse_report(report(95)) == Report(memory_size_mb=128, max_memory_used_mb=95)
    assert parse_report(report(1769, size=10240)) == Report(10240, 1769)


@pytest.mark.parametrize(
    "line",
    [
        # Warm invocations have no Init Duration; spaces as some log viewers copy it.
        "REPORT RequestId: abc\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 80 MB",
        "REPORT RequestId: abc Duration: 12.34 ms Billed Duration: 13 ms Memory Size: 256 MB "
        "Max Memory Used: 80 MB Init Duration: 210.11 ms",
        # X-Ray and SnapStart add fields after the memory.
        "REPORT RequestId: abc\tDuration: 3.10 ms\tBilled Duration: 4 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 80 MB\tRestore Duration: 300.00 ms\t\nXRAY TraceId: 1-5e-1\t",
    ],
)
def test_variants_lambda_writes(line: str) -> None:
    assert parse_report(line) == Report(256, 80), line


@pytest.mark.parametrize(
    "line",
    [
        "",
        "START RequestId: abc Version: $LATEST",
        "END RequestId: abc",
        # Missing fields.
        "REPORT RequestId: abc\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB",
        "REPORT RequestId: abc\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMax Memory Used: 95 MB",
        "REPORT RequestId: \tDuration: 1.00 ms\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        "REPORT Duration: 1.00 ms\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        # Not at the start of the event: the function printed it.
        "app says REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        " REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        "hello\nREPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        # Fields swapped, units wrong, numbers that are not plain decimal.
        "REPORT RequestId: abc\tMax Memory Used: 95 MB\tMemory Size: 128 MB",
        "REPORT RequestId: abc\tMemory Size: 128 GB\tMax Memory Used: 95 MB",
        "REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 95 MBX",
        "REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: -95 MB",
        "REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 9.5 MB",
        "REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 1e9 MB",
        "REPORT RequestId: abc\tMemory Size: \u0661\u0662\u0668 MB\tMax Memory Used: 95 MB",
        "REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: 999999999999 MB",
        # Out of Lambda's range.
        "REPORT RequestId: abc\tMemory Size: 0 MB\tMax Memory Used: 0 MB",
        f"REPORT RequestId: abc\tMemory Size: {MAX_MEMORY_MB + 1} MB\tMax Memory Used: 95 MB",
        f"REPORT RequestId: abc\tMemory Size: 128 MB\tMax Memory Used: {MAX_MEMORY_MB + 1} MB",
        # A request id that is not one.
        "REPORT RequestId: a;b\tMemory Size: 128 MB\tMax Memory Used: 95 MB",
        '{"type": "platform.report", "record": {"metrics": {"maxMemoryUsedMB": 95}}}',
    ],
)
def test_other_and_hostile_lines_are_not_reports(line: str) -> None:
    assert parse_report(line) is None, line


def test_long_lines_are_refused_quickly() -> None:
    # A real report followed by more text than any Lambda writes.
    assert parse_report(report(95) + "XRAY TraceId: 1-5e-1\t" * 10) is not None
    assert parse_report(report(95) + "x" * MAX_LINE) is None
    hostile = [
        "REPORT RequestId: a" + "\tA: 1 ms" * (MAX_LINE // 8),
        "REPORT RequestId: a" + " A" * (MAX_LINE // 2 - 10),
        "REPORT RequestId: a" + "\tMemory Size: 128 MB" * (MAX_LINE // 20 - 1),
        "REPORT RequestId: " + "a" * 10**6,
    ]
    started = time.perf_counter()
    assert [parse_report(line) for line in hostile] == [None] * len(hostile)
    assert time.perf_counter() - started < 0.5


def test_the_peak_of_several_lines() -> None:
    lines = [
        "START RequestId: a Version: $LATEST",
        report(70),
        "some output Max Memory Used: 500 MB",
        report(118, request="b"),
        "REPORT RequestId: c\tMemory Size: 128 MB\tMax Memory Used: 99999 MB",
        report(90, request="d"),
        "END RequestId: d",
    ]
    assert peak_of(lines) == (118, 3)
    assert peak_of(["START RequestId: a", "END RequestId: a"]) == (None, 0)
    assert peak_of([]) == (None, 0)


def test_the_docs_name_the_layers_footprint() -> None:
    docs = Path(__file__).resolve().parent.parent.parent / "docs"
    for page in ("doctor.md", "troubleshooting.md"):
        assert f"about {LAYER_MEMORY_MB} MB" in (docs / page).read_text(encoding="utf-8"), page
