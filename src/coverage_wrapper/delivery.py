"""Delivery: from the spool on local disk to S3, nothing lost and nothing duplicated.

Two modes (COVERAGE_FLUSH):

``environment`` (default)
    Pending deltas are merged into one coverage.py data file per execution
    environment, which is uploaded to ``PREFIX/Y/M/D/<function>-<environment
    id>.coverage``, overwriting the previous version. A busy function writes
    one object per environment, and only when its coverage grew.
``invocation``
    Each delta becomes its own data file keyed by the request id that produced it.

A delta leaves the spool only once it is safely merged (environment mode) or
uploaded (invocation mode); an upload that fails is retried on the next pass.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from coverage_wrapper._version import __version__
from coverage_wrapper.errors import S3UploadError
from coverage_wrapper.logging_utils import get_logger
from coverage_wrapper.metrics import FAILURE, emit_metric
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Delta, Kind
from coverage_wrapper.s3_uploader import S3Uploader, generate_s3_key
from coverage_wrapper.spool import SpoolBusyError, SpoolDirectory

if TYPE_CHECKING:
    import coverage

log = get_logger("coverage_wrapper.delivery")


def _data_errors() -> tuple[type[Exception], ...]:
    from coverage.exceptions import CoverageException

    return (CoverageException, sqlite3.DatabaseError)


# While S3 keeps failing, passes back off (5 s, doubling, at most 5 min), so a
# broken bucket costs one timeout now and then rather than one per invocation.
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 300.0


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    uploaded: list[str] = field(default_factory=list)
    failed: list[S3UploadError] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    merged: int = 0
    deferred: bool = False  # out of time: work left for the next pass


def _data_file(path: Path) -> coverage.CoverageData:
    """Open a coverage data file for adding to it (a new file when there is none)."""
    import coverage

    data = coverage.CoverageData(basename=str(path))
    if path.exists():
        data.read()  # without it, the first write would erase what the file holds
    return data


def _add(data: coverage.CoverageData, delta: Delta) -> None:
    if delta.kind == "arcs":
        data.add_arcs({name: list(items) for name, items in delta.files.items()})
    else:
        data.add_lines({name: list(items) for name, items in delta.files.items()})


class Deliverer:
    """Moves spooled deltas to S3 for one function in one execution environment."""

    def __init__(
        self,
        config: CoverageConfig,
        spool: SpoolDirectory,
        uploader: S3Uploader,
        function_name: str,
    ) -> None:
        self.config = config
        self.spool = spool
        self.uploader = uploader
        self.function_name = function_name
        spool.environment_id()  # created now, by whichever process comes first
        self._retry_at = 0.0
        self._backoff = 0.0

    @property
    def environment_id(self) -> str:
        """The environment's id, read from the spool each time: another process may rotate it."""
        return self.spool.environment_id()

    def deliver(self, deadline: float, *, final: bool = False) -> DeliveryReport:
        """Deliver what is pending, starting no upload after ``deadline`` (time.monotonic).

        After a failed upload, passes before the backoff has elapsed only merge
        (nothing is lost, nothing is sent); ``final`` (SHUTDOWN) always tries.
        """
        report = DeliveryReport()
        if not final and time.monotonic() < self._retry_at:
            deadline = 0.0  # merge only; uploads wait for the backoff
        try:
            with self.spool.lock(timeout=max(deadline - time.monotonic(), 0.0)):
                if self.config.flush == "invocation":
                    self._deliver_each(report, deadline)
                else:
                    self._merge_pending(report)
                    if self.spool.dirty_marker.exists():
                        self._upload_aggregate(report, deadline)
        except SpoolBusyError:
            # Another process is delivering (the extension and the runtime share the
            # spool): leave it to that pass rather than wait past the deadline.
            report.deferred = True
            return report
        if report.failed:
            self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
            self._retry_at = time.monotonic() + self._backoff
        elif report.uploaded:
            self._backoff = 0.0
        for error in report.failed:
            log.error(
                str(error),
                extra={
                    "data": {
                        "cause": error.code,
                        "bucket": error.bucket,
                        "key": error.key,
                        "hint": error.hint,
                        "retry": "the data stays in the spool and is retried on the next pass",
                    }
                },
            )
        if report.failed:
            emit_metric(FAILURE, self.function_name, cause=report.failed[0].code)
        if report.uploaded:
            log.debug("Coverage delivered", extra={"data": {"keys": report.uploaded}})
        return report

    def has_pending(self) -> bool:
        """True when deltas or an unsent aggregate are waiting."""
        return bool(self.spool.pending()) or self.spool.dirty_marker.exists()

    def _readable(self, report: DeliveryReport) -> list[tuple[Path, Delta, str]]:
        items = []
        for path in self.spool.pending():
            try:
                spooled = self.spool.read(path)
            except ValueError as error:
                target = self.spool.quarantine(path)
                report.corrupt.append(str(target))
                log.error(
                    "Skipped an unreadable coverage delta",
                    extra={"data": {"path": str(target), "cause": str(error)}},
                )
                continue
            items.append((path, spooled.delta, spooled.request_id))
        return items

    def _merge_pending(self, report: DeliveryReport) -> None:
        items = self._readable(report)
        if not items:
            return
        kind: Kind = "arcs" if self.config.branch else "lines"
        combined = Delta(kind)
        for path, delta, _ in items:
            if delta.kind == kind:
                combined.merge(delta)
            else:  # written under another COVERAGE_BRANCH: cannot join this data file
                report.corrupt.append(str(self.spool.quarantine(path)))
        try:
            self._add_to_aggregate(combined)
        except _data_errors() as error:
            # The aggregate was damaged (a process killed while writing it). Keep it
            # aside and start a new one under a new id, so the object already in S3,
            # which holds the earlier data, is not overwritten with less.
            broken = self.spool.quarantine(self.spool.aggregate_path)
            self.spool.rotate_environment_id()
            self.spool.dirty_marker.unlink(missing_ok=True)
            log.error(
                "The environment's coverage data file was unreadable: starting a new one",
                extra={"data": {"path": str(broken), "cause": str(error)}},
            )
            self._add_to_aggregate(combined)
        # The marker goes down before the deltas go away: a crash in between
        # re-merges them (a set union, harmless) instead of losing them.
        self.spool.dirty_marker.touch()
        for path, _, _ in items:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        report.merged += len(items)

    def _add_to_aggregate(self, delta: Delta) -> None:
        data = _data_file(self.spool.aggregate_path)
        _add(data, delta)
        data.close()

    def _upload_aggregate(self, report: DeliveryReport, deadline: float) -> None:
        if time.monotonic() >= deadline:
            report.deferred = True
            return
        environment = self.environment_id  # read once: the key and metadata must agree
        key = generate_s3_key(
            self.function_name, environment, self.config.s3_prefix, datetime.now(UTC)
        )
        try:
            self.uploader.put(
                key,
                self.spool.aggregate_path.read_bytes(),
                self._metadata(environment),
                within=deadline - time.monotonic(),
            )
        except S3UploadError as error:
            report.failed.append(error)
            return
        with contextlib.suppress(FileNotFoundError):
            self.spool.dirty_marker.unlink()
        report.uploaded.append(key)

    def _deliver_each(self, report: DeliveryReport, deadline: float) -> None:
        for path, delta, request_id in self._readable(report):
            if time.monotonic() >= deadline:
                report.deferred = True
                return
            temp = self.spool.state_dir / f"request-{os.getpid()}.coverage"
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            data = _data_file(temp)
            _add(data, delta)
            data.close()
            key = generate_s3_key(self.function_name, request_id, self.config.s3_prefix)
            try:
                self.uploader.put(
                    key,
                    temp.read_bytes(),
                    self._metadata(self.environment_id),
                    within=deadline - time.monotonic(),
                )
            except S3UploadError as error:
                report.failed.append(error)
                return  # keep the order; the rest waits for the next pass
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            path.unlink()
            report.uploaded.append(key)

    def _metadata(self, environment: str) -> dict[str, str]:
        return {
            "lambdacov-version": __version__,
            "function": self.function_name,
            "environment": environment,
            "measurement": "arcs" if self.config.branch else "lines",
        }
