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

Every data file is stamped with its code identity (:mod:`coverage_wrapper.identity`)
before it is uploaded, and the pass ends with the source snapshots of versions
not yet in S3 (:mod:`coverage_wrapper.sources`), within the same deadline.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from coverage_wrapper import identity
from coverage_wrapper._version import __version__
from coverage_wrapper.datawriter import InvalidDataFileError, add_to_data_file
from coverage_wrapper.errors import S3UploadError
from coverage_wrapper.logging_utils import get_logger
from coverage_wrapper.metrics import FAILURE, emit_metric
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Delta, Kind
from coverage_wrapper.s3_uploader import S3Uploader, generate_s3_key
from coverage_wrapper.sources import Snapshots
from coverage_wrapper.spool import SpoolBusyError, SpoolDirectory

log = get_logger("coverage_wrapper.delivery")


# While S3 keeps failing, passes back off (5 s, doubling, at most 5 min), so a
# broken bucket costs one timeout now and then rather than one per invocation.
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 300.0


class DeliveryReport:
    """What one delivery pass did. (No dataclass here: ``dataclasses`` and what it imports
    would be a megabyte of the runtime's memory, see :mod:`coverage_wrapper.datafiles`.)"""

    def __init__(self) -> None:
        self.uploaded: list[str] = []
        self.sources: list[str] = []  # source snapshots uploaded
        self.failed: list[S3UploadError] = []
        self.corrupt: list[str] = []
        self.merged = 0
        self.deferred = False  # out of time: work left for the next pass

    def __repr__(self) -> str:
        return (
            f"DeliveryReport(uploaded={self.uploaded!r}, sources={self.sources!r}, "
            f"failed={self.failed!r}, corrupt={self.corrupt!r}, merged={self.merged!r}, "
            f"deferred={self.deferred!r})"
        )


def _damaged(error: Exception) -> bool:
    """True when a data file cannot be read as one (not when the disk is full)."""
    if isinstance(error, InvalidDataFileError):
        return True
    name = getattr(error, "sqlite_errorname", "")
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(error)


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
        self.origin = identity.origin(os.environ)
        self.snapshots = Snapshots(spool.state_dir, uploader, config.s3_prefix)
        self._stamp_failed = False
        spool.date_environment()  # by whichever process comes first
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
                # After new data, or when an earlier pass left versions unsent.
                if (
                    self.config.upload_sources
                    and not report.failed
                    and (report.uploaded or self.snapshots.waiting())
                ):
                    self._send_sources(report, deadline)
        except SpoolBusyError:
            # Another process is delivering (the runtime processes and the extension's
            # final pass share the spool): leave it to that pass rather than wait past
            # the deadline.
            report.deferred = True
            return report
        if report.failed:
            self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
            self._retry_at = time.monotonic() + self._backoff
        elif report.uploaded or report.sources:
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
        if report.uploaded or report.sources:
            log.debug(
                "Coverage delivered",
                extra={"data": {"keys": report.uploaded, "sources": report.sources}},
            )
        return report

    def has_pending(self) -> bool:
        """True when deltas, an unsent aggregate or unsent source snapshots are waiting."""
        return (
            bool(self.spool.pending())
            or self.spool.dirty_marker.exists()
            or (self.config.upload_sources and self.snapshots.waiting())
        )

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
        combined = Delta(kind, {})
        for path, delta, _ in items:
            if delta.kind == kind:
                combined.merge(delta)
            else:  # written under another COVERAGE_BRANCH: cannot join this data file
                report.corrupt.append(str(self.spool.quarantine(path)))
        try:
            self._add_to_aggregate(combined)
        except (OSError, sqlite3.Error, InvalidDataFileError) as error:
            if not _damaged(error):
                # No room to write (a full /tmp): the aggregate is as it was (one
                # transaction) and the deltas stay in the spool for the next pass.
                log.error(
                    f"Coverage data could not be merged: {error}",
                    extra={"data": {"path": str(self.spool.aggregate_path)}},
                )
                return
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
        add_to_data_file(self.spool.aggregate_path, delta.kind, delta.files)
        # The aggregate keeps its rows: each file is hashed once in this environment.
        self._stamp(self.spool.aggregate_path)

    def _origin(self) -> dict[str, str]:
        """Where the data was recorded, and since when this environment runs."""
        started = self.spool.environment_started()
        if started is None:
            return self.origin
        moment = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
        return {**self.origin, identity.STARTED: moment}

    def _stamp(self, data_file: Path, known: Mapping[str, str] | None = None) -> None:
        """Record the code identity in a closed data file; failing costs the identity only."""
        try:
            self.snapshots.note(identity.stamp(data_file, self._origin(), known))
        except Exception as error:  # noqa: BLE001 - the data is delivered without it
            if not self._stamp_failed:  # one line, not one per pass
                self._stamp_failed = True
                log.warning(
                    f"Code identity not recorded: {type(error).__name__}: {error}",
                    extra={"data": {"path": str(data_file)}},
                )

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
            add_to_data_file(temp, delta.kind, delta.files)
            # A new file each time: the digests come from the ledger, not from hashing again.
            self._stamp(temp, self.snapshots.known())
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

    def _send_sources(self, report: DeliveryReport, deadline: float) -> None:
        also: dict[str, str] = {}
        if self.config.flush == "environment" and self.spool.aggregate_path.exists():
            # The aggregate's own rows too: they outlive a process killed before noting them.
            with contextlib.suppress(sqlite3.Error):
                also = identity.recorded(self.spool.aggregate_path)
        outcome = self.snapshots.send(deadline, also)
        report.sources += outcome.uploaded
        report.deferred = report.deferred or outcome.deferred
        if outcome.failed is not None:
            report.failed.append(outcome.failed)

    def _metadata(self, environment: str) -> dict[str, str]:
        return {
            "lambdacov-version": __version__,
            "function": self.function_name,
            "environment": environment,
            "measurement": "arcs" if self.config.branch else "lines",
        }
