"""``lambdacov combine --remote``'s core: fan out to the combiner, reduce, merge here.

1. Find the day partitions in the window. A closed day (its end plus a margin
   has passed) whose kept partial exists for this filter is reused as is: it
   is neither listed nor combined again.
2. List the other days (as ``combine`` does: partition-pruned, concurrent) and
   plan shards (:mod:`lambdacov.combine.remote.plan`).
3. Invoke the combiner for every shard, a bounded number at a time; a failed
   invocation is retried with backoff and, if it keeps failing, the whole run
   fails naming the shards. No shard is ever dropped from the result.
4. Keep each newly closed day's partial (reducing its shards first if it had
   several), then write its manifest, which marks it complete.
5. With more partials than ``reduce_threshold``, reduce them through the
   combiner, level by level, until few remain.
6. Download those, merge them here with the engine and ``combine``'s path
   remapping, and return a :class:`CombineResult`, so the reports are the
   ones a local combine writes.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from coverage_wrapper.datafiles import Merger, read_data_file
from coverage_wrapper.datawriter import InvalidDataFileError
from lambdacov.aws import Retrier, translating
from lambdacov.combine.collect import (
    LIST_WORKERS,
    Lister,
    Listing,
    RemoteObject,
    Skipped,
    in_flight,
    normalise_prefix,
    worker_pool,
)
from lambdacov.combine.merge import CombineRequest, CombineResult, PathRemapper
from lambdacov.combine.remote import plan
from lambdacov.combine.remote.invokers import Invoker
from lambdacov.combine.versions import S3Snapshots
from lambdacov.errors import ExitCode, LambdacovError

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class RemoteCombineError(LambdacovError):
    """Shards kept failing, or the combiner's output could not be used."""

    exit_code = ExitCode.AWS  # the combiner, in AWS, failed: not a usage error
    slug = "remote-combine"


@dataclass(frozen=True)
class RemoteSettings:
    """How to fan out: shard sizes, concurrency, retries, reduce and incremental policy."""

    shards: int | None = None  # about this many shards; None: OBJECTS_PER_SHARD each
    concurrency: int = 64
    attempts: int = 3
    reduce_threshold: int = 64  # more partials than this: tree-reduce through the combiner
    closed_margin: timedelta = plan.CLOSED_MARGIN
    incremental: bool = True
    output_prefix: str | None = None  # None: plan.default_output_prefix(prefix)
    keep_run_partials: bool = False
    retrier: Retrier = field(
        default_factory=lambda: Retrier(
            attempts=3, base_delay=1.0, max_delay=30.0, retry_on=frozenset({"ShardFailed"})
        )
    )


@dataclass(frozen=True)
class RemoteStats:
    """What the fan-out did."""

    run_id: str
    days: int
    reused_days: int  # closed days whose kept partial was reused
    kept_days: int  # closed days whose partial was written by this run
    shards: int
    invocations: int  # shard, day-reduce and tree-reduce invocations, retries included
    retries: int
    reduce_levels: int
    partials_merged: int  # partials merged locally at the end


@dataclass(frozen=True)
class RemoteCombineResult:
    """The combine result (for the usual reports) and the fan-out's statistics."""

    result: CombineResult
    stats: RemoteStats


@dataclass
class _Manifest:
    """What a partial holds: from a shard's manifest, a day's, or several merged."""

    partial: str | None
    etag: str | None = None
    inputs: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    objects_by_function: Counter[str] = field(default_factory=Counter)
    listed: int = 0
    mixed: bool = False

    @classmethod
    def parse(cls, document: dict[str, Any]) -> _Manifest:
        return cls(
            partial=document.get("output_key"),
            etag=document.get("etag"),
            inputs=list(document.get("inputs", [])),
            skipped=list(document.get("skipped", [])),
            objects_by_function=Counter(document.get("objects_by_function", {})),
            listed=int(document.get("listed", 0)),
            mixed=bool(document.get("mixed", False)),
        )

    def document(self) -> dict[str, Any]:
        return {
            "format": plan.PARTIALS_FORMAT,
            "output_key": self.partial,
            "etag": self.etag,
            "inputs": sorted(self.inputs),
            "skipped": sorted(self.skipped, key=lambda item: str(item["key"])),
            "objects_by_function": dict(sorted(self.objects_by_function.items())),
            "listed": self.listed,
            "mixed": self.mixed,
        }

    @property
    def transient(self) -> bool:
        return any(item.get("transient") for item in self.skipped)


class _Runner:
    """Runs invocations a bounded number at a time, retrying each, failing loudly."""

    def __init__(self, invoker: Invoker, settings: RemoteSettings) -> None:
        self.invoker = invoker
        self.settings = settings
        self.invocations = 0
        self.retries = 0

    def run(
        self, jobs: Sequence[tuple[str, dict[str, Any]]], phase: str, progress: Progress | None
    ) -> list[dict[str, Any]]:
        if not jobs:
            return []
        results: dict[int, dict[str, Any]] = {}
        failures: list[tuple[str, str]] = []
        width = max(1, min(self.settings.concurrency, self.invoker.concurrency, len(jobs)))
        with worker_pool(width) as pool:
            futures: dict[Future[dict[str, Any]], int] = {
                pool.submit(self._one, event): index for index, (_, event) in enumerate(jobs)
            }
            for done, future in enumerate(as_completed(futures), 1):
                index = futures[future]
                try:
                    results[index] = future.result()
                except Exception as error:  # noqa: BLE001 - every failure is reported below
                    failures.append((jobs[index][0], str(error) or type(error).__name__))
                if progress:
                    progress(phase, done, len(jobs))
        if failures:
            failures.sort()
            names = ", ".join(name for name, _ in failures[:10])
            more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
            raise RemoteCombineError(
                f"{len(failures)} of {len(jobs)} combiner invocation(s) failed after "
                f"{self.settings.attempts} attempts ({phase}): {names}{more}; "
                f"first error: {failures[0][1]}",
                "see the combiner's logs; nothing was reported, so no partial result can "
                "pass for a complete one",
            )
        return [results[index] for index in range(len(jobs))]

    def _one(self, event: dict[str, Any]) -> dict[str, Any]:
        attempts = 0

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            self.invocations += 1
            if attempts > 1:
                self.retries += 1
            return self.invoker.invoke(event)

        return replace(self.settings.retrier, attempts=self.settings.attempts).call(attempt)


def _get_json(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:
        if type(error).__name__ == "NoSuchKey" or "NoSuchKey" in str(error):
            return None
        with translating("s3:GetObject", f"s3://{bucket}/{key}"):
            raise
    document = json.loads(body)
    return document if isinstance(document, dict) else None


def _put_json(client: Any, bucket: str, key: str, document: dict[str, Any]) -> None:
    with translating("s3:PutObject", f"s3://{bucket}/{key}"):
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(document, separators=(",", ":")).encode(),
            ServerSideEncryption="AES256",
            ContentType="application/json",
        )


def _kept_day(client: Any, bucket: str, manifest_key: str) -> _Manifest | None:
    """A closed day's kept partial, if its manifest exists and the partial is the one it names."""
    document = _get_json(client, bucket, manifest_key)
    if document is None or document.get("format") != plan.PARTIALS_FORMAT:
        return None
    manifest = _Manifest.parse(document)
    if manifest.partial is not None:
        try:
            head = client.head_object(Bucket=bucket, Key=manifest.partial)
        except Exception:  # noqa: BLE001 - gone or unreadable: recombine the day
            return None
        if str(head.get("ETag", "")).strip('"') != manifest.etag:
            return None
    return manifest


@dataclass
class _Day:
    day: date
    closed: bool
    kept: _Manifest | None = None
    objects: tuple[RemoteObject, ...] = ()
    shards: list[plan.Shard] = field(default_factory=list)
    manifests: list[_Manifest] = field(default_factory=list)


class _RemoteCombine:
    def __init__(
        self,
        client: Any,
        invoker: Invoker,
        *,
        request: CombineRequest,
        settings: RemoteSettings,
        now: datetime,
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.request = request
        self.settings = settings
        self.now = now
        self.progress = progress
        self.prefix = normalise_prefix(request.prefix)
        self.output_prefix = settings.output_prefix or plan.default_output_prefix(self.prefix)
        plan.check_output_prefix(self.prefix, self.output_prefix)
        self.digest = plan.filter_hash(self.prefix, request.functions)
        self.run_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.run_prefix = plan.run_prefix(self.output_prefix, self.run_id)
        self.runner = _Runner(invoker, settings)
        self.lister = Lister(
            client, request.bucket, workers=in_flight(client, min(request.workers, LIST_WORKERS))
        )
        self.written: list[str] = []  # this run's temporary objects
        self.levels = 0
        self.bytes = 0
        self.list_calls = 0  # made by the shards

    # -- steps ------------------------------------------------------------------------

    def days(self) -> list[_Day]:
        since = self.request.since.date() if self.request.since else None
        until = self.request.until.date() if self.request.until else None
        found = self.lister.days(self.prefix, since, until)
        days = [
            _Day(day, plan.is_closed(day, self.now, self.settings.closed_margin)) for day in found
        ]
        if self.settings.incremental:
            closed = [day for day in days if day.closed]
            with worker_pool(16) as pool:
                kept = pool.map(
                    lambda d: _kept_day(
                        self.client,
                        self.request.bucket,
                        plan.day_manifest_key(self.output_prefix, d.day, self.digest),
                    ),
                    closed,
                )
                for day, manifest in zip(closed, kept, strict=True):
                    day.kept = manifest
        return days

    def list_days(self, days: list[_Day]) -> int:
        def listed(day: _Day) -> Listing:
            start = datetime(day.day.year, day.day.month, day.day.day, tzinfo=UTC)
            return self.lister.list(
                self.prefix,
                since=start,
                until=start + timedelta(days=1, microseconds=-1),
                functions=self.request.functions,
                exclude=self.request.exclude_keys,
            )

        todo = [day for day in days if day.kept is None]
        with worker_pool(8) as pool:
            for day, listing in zip(todo, pool.map(listed, todo), strict=True):
                day.objects = listing.objects
        total = sum(len(day.objects) for day in todo)
        per_shard = plan.objects_per_shard(total, self.settings.shards)
        for day in todo:
            day.shards = plan.plan_day(
                self.prefix,
                day.day,
                [item.key for item in day.objects],
                per_shard=per_shard,
                functions=self.request.functions,
            )
        if self.progress:
            self.progress("list", total, total)
        return total

    def shard_outputs(self, day: _Day, shard: plan.Shard) -> tuple[str, str]:
        if day.closed and len(day.shards) == 1:
            output = plan.day_partial_key(self.output_prefix, day.day, self.digest)
        else:
            output = f"{self.run_prefix}shards/{shard.name}.coverage"
        return output, f"{self.run_prefix}shards/{shard.name}.json"

    def run_shards(self, days: list[_Day]) -> None:
        jobs: list[tuple[str, dict[str, Any]]] = []
        owners: list[_Day] = []
        for day in days:
            for shard in day.shards:
                output, manifest = self.shard_outputs(day, shard)
                event = shard.event(
                    self.request.bucket, self.prefix, output, manifest, self.request.exclude_keys
                )
                jobs.append((f"shard {shard.name}", event))
                owners.append(day)
                self.written += [
                    key for key in (output, manifest) if key.startswith(self.run_prefix)
                ]
        responses = self.runner.run(jobs, "shards", self.progress)
        self.bytes += sum(int(r.get("bytes", 0)) for r in responses)
        self.list_calls += sum(int(r.get("list_calls", 0)) for r in responses)
        manifests = self._manifests([str(r["manifest_key"]) for r in responses])
        for owner, found in zip(owners, manifests, strict=True):
            owner.manifests.append(found)

    def _manifests(self, keys: list[str]) -> list[_Manifest]:
        def read(key: str) -> _Manifest:
            document = _get_json(self.client, self.request.bucket, key)
            if document is None:
                raise RemoteCombineError(f"the combiner wrote no manifest at {key}")
            return _Manifest.parse(document)

        with worker_pool(16) as pool:
            return list(pool.map(read, keys))

    def keep_closed_days(self, days: list[_Day]) -> None:
        """Give each newly combined closed day one partial, then its manifest."""
        reduce_jobs: list[tuple[str, dict[str, Any]]] = []
        reduced: list[_Day] = []
        for day in days:
            if not (day.closed and day.kept is None and day.manifests):
                continue
            parts = [m.partial for m in day.manifests if m.partial]
            if len(day.manifests) > 1 and parts:
                target = plan.day_partial_key(self.output_prefix, day.day, self.digest)
                reduce_jobs.append(
                    (f"day {day.day}", plan.reduce_event(self.request.bucket, parts, target))
                )
                reduced.append(day)
        responses = self.runner.run(reduce_jobs, "reduce days", self.progress)
        etags = {day.day: r for day, r in zip(reduced, responses, strict=True)}
        for day in days:
            if not (day.closed and day.kept is None and day.manifests):
                continue
            merged = _merge_manifests(day.manifests)
            if day.day in etags:
                merged.partial = etags[day.day].get("output_key")
                merged.etag = etags[day.day].get("etag")
            day.kept = merged
            if not merged.transient:
                key = plan.day_manifest_key(self.output_prefix, day.day, self.digest)
                _put_json(self.client, self.request.bucket, key, merged.document())

    def tree_reduce(self, partials: list[str]) -> list[str]:
        threshold = max(2, self.settings.reduce_threshold)
        while len(partials) > threshold:
            self.levels += 1
            groups = plan.chunks(partials, threshold)
            jobs = [
                (
                    f"reduce {self.levels}-{index}",
                    plan.reduce_event(
                        self.request.bucket,
                        group,
                        f"{self.run_prefix}reduce/{self.levels}-{index}.coverage",
                    ),
                )
                for index, group in enumerate(groups)
            ]
            responses = self.runner.run(jobs, f"reduce level {self.levels}", self.progress)
            partials = [str(r["output_key"]) for r in responses if r.get("output_key")]
            self.written += partials
        return partials

    def merge_here(self, partials: list[str], remapper: PathRemapper) -> Merger:
        merger = Merger(remapper)

        def fetch(key: str, path: Path) -> Path:
            with translating("s3:GetObject", f"s3://{self.request.bucket}/{key}"):
                self.client.download_file(self.request.bucket, key, str(path))
            return path

        with TemporaryDirectory(prefix="lambdacov-partials-") as scratch:
            paths = [Path(scratch) / f"{n}.coverage" for n in range(len(partials))]
            with worker_pool(16) as pool:
                futures = list(map(lambda k, p: pool.submit(fetch, k, p), partials, paths))
                for done, (key, future) in enumerate(zip(partials, futures, strict=True), 1):
                    try:
                        merger.add(read_data_file(future.result()))
                    except InvalidDataFileError as error:
                        raise RemoteCombineError(
                            f"the combiner's partial {key} is not readable: {error}"
                        ) from error
                    if self.progress:
                        self.progress("merge", done, len(partials))
        return merger

    def cleanup(self) -> None:
        if self.settings.keep_run_partials or not self.written:
            return
        try:
            for group in plan.chunks(sorted(set(self.written)), 1000):
                self.client.delete_objects(
                    Bucket=self.request.bucket,
                    Delete={"Objects": [{"Key": key} for key in group], "Quiet": True},
                )
        except Exception:  # noqa: BLE001, S110 - leftovers under runs/ are harmless (lifecycle rule)
            pass


def _merge_manifests(manifests: Sequence[_Manifest]) -> _Manifest:
    merged = _Manifest(partial=None)
    for manifest in manifests:
        merged.inputs += manifest.inputs
        merged.skipped += manifest.skipped
        merged.objects_by_function.update(manifest.objects_by_function)
        merged.listed += manifest.listed
        merged.mixed = merged.mixed or manifest.mixed
        if manifest.partial:
            merged.partial, merged.etag = manifest.partial, manifest.etag
    return merged


def combine_remote(
    client: Any,
    invoker: Invoker,
    request: CombineRequest,
    settings: RemoteSettings | None = None,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RemoteCombineResult:
    """Combine the request's objects through the combiner function; see the module docstring.

    ``client`` is an S3 client for listing, manifests and the final merge;
    ``invoker`` runs the combiner. Raises RemoteCombineError when a shard
    keeps failing: the caller must not write reports then.
    """
    settings = settings or RemoteSettings()
    job = _RemoteCombine(
        client,
        invoker,
        request=request,
        settings=settings,
        now=now or datetime.now(UTC),
        progress=progress,
    )
    try:
        days = job.days()
        job.list_days(days)
        job.run_shards(days)
        job.keep_closed_days(days)
        sources: list[_Manifest] = []
        for day in days:
            sources += [day.kept] if day.kept is not None else day.manifests
        partials = job.tree_reduce([m.partial for m in sources if m.partial])
        remapper = PathRemapper(request.source_root)
        merger = job.merge_here(partials, remapper)
    finally:
        job.cleanup()
    everything = _merge_manifests(sources)
    combined = merger.result()
    if everything.mixed and not combined.mixed:
        combined = combined.replace(mixed=True)
    reused = [day for day in days if day.kept is not None and not day.manifests]
    reused_inputs = sum(len(day.kept.inputs) for day in reused if day.kept)
    skipped = sorted(
        (Skipped(str(item["key"]), str(item["reason"])) for item in everything.skipped),
        key=lambda item: item.key,
    )
    result = CombineResult.build(
        combined,
        remapper,
        request,
        inputs=everything.inputs,
        skipped=skipped,
        objects_by_function=everything.objects_by_function,
        listed=everything.listed,
        list_calls=job.lister.calls + job.list_calls,
        downloaded=len(everything.inputs) - reused_inputs,
        cache_hits=reused_inputs,
        bytes_downloaded=job.bytes,
        snapshot=S3Snapshots(client, request.bucket, job.prefix),
    )
    stats = RemoteStats(
        run_id=job.run_id,
        days=len(days),
        reused_days=len(reused),
        kept_days=sum(1 for day in days if day.closed and day.manifests),
        shards=sum(len(day.shards) for day in days),
        invocations=job.runner.invocations,
        retries=job.runner.retries,
        reduce_levels=job.levels,
        partials_merged=len(partials),
    )
    return RemoteCombineResult(result, stats)
