"""Finding and fetching coverage objects: partition-pruned listing, parallel download, cache.

Objects live at ``PREFIX/YYYY/MM/DD/<function>-<id>.coverage`` (UTC dates).
A ``--since/--until`` window becomes the list of date partitions to list, so a
one-day window costs one list call however large the bucket; wider windows and
no window walk the year and month levels with a delimiter and descend only
where the window reaches. Partitions are listed concurrently.

Downloads run in a thread pool, each retried with backoff on network faults
and checked against the listed size. Every object is kept in a local cache
named by its key and ETag: a second run fetches only objects that are new or
were rewritten since (an environment's object is rewritten as it grows).
A key that cannot be fetched (AccessDenied, deleted meanwhile) is skipped with
its reason; the caller decides what a partial result means.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from coverage_wrapper.datafiles import DAY_KEY
from lambdacov.aws import (
    CONTINUATION_TOKEN,
    RETRYABLE_CODES,
    Retrier,
    each_page,
    error_code,
    translating,
)
from lambdacov.errors import UsageError
from lambdacov.paths import cache_root

# Windows up to this many days are listed one day partition at a time, with no
# discovery calls; wider ones walk the year/month levels first.
MAX_DIRECT_DAYS = 62
# Objects are a few KB; anything this large is not a coverage data file.
MAX_OBJECT_BYTES = 256 * 1024 * 1024
# Faults worth another try: a connection or a body cut short, and S3's "try again".
# Not a refused connection or silence (EndpointConnectionError, ConnectTimeoutError,
# ReadTimeoutError): botocore has already made its attempts, each waiting the
# client's timeout, and the client's guard then fails every later call at once.
NETWORK_FAULTS = frozenset(
    {
        "ConnectionClosedError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ProtocolError",
        "ConnectionError",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "ShortReadError",
    }
)
# Parallel downloads. An object is small (tens of KB), so a GET's time is S3's
# latency: more requests in flight cover more of it. With 64 objects or more the
# merge runs in a process of its own (see combine._Merging), so the threads
# compete only with each other for the GIL; 32 did a run of 1,000 objects 6%
# faster than 10 (the AWS CLI's default). Never more than the client's connection
# pool (see `in_flight`): each extra request would open and discard a connection.
DOWNLOAD_WORKERS = 32
LIST_WORKERS = 16
DOWNLOAD_RETRIER = Retrier(
    attempts=5, base_delay=0.2, max_delay=5.0, retry_on=RETRYABLE_CODES | NETWORK_FAULTS
)

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ShortReadError(Exception):
    """An object's body was shorter than S3 said: the transfer broke off."""


def parse_when(text: str, *, now: datetime, end_of_day: bool = False) -> datetime:
    """A UTC datetime from ``2024-01-15``, an ISO datetime, or ``24h``/``7d``/``2w``/``30m`` ago.

    A bare date means the start of that day, or its end with ``end_of_day``
    (``--until 2024-01-15`` includes the 15th).
    """
    value = text.strip()
    try:
        match = _RELATIVE.match(value.lower())
        if match:
            amount, unit = int(match[1]), _UNITS[match[2]]
            return now - timedelta(**{unit: amount})
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError as error:  # an age beyond year 1, a date past 9999 once in UTC
        raise UsageError(
            f"{text!r} is outside the dates lambdacov can use",
            "use a date such as 2024-01-15 or an age such as 7d",
        ) from error
    except ValueError as error:
        raise UsageError(
            f"cannot read {text!r} as a date",
            "use a date (2024-01-15), a datetime (2024-01-15T10:00Z) or an age (24h, 7d, 2w)",
        ) from error


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when its block fails or is interrupted, drops the work not started.

    ``with ThreadPoolExecutor()`` waits for every queued task on the way out:
    after Ctrl-C in a combine of thousands of objects, that is the whole
    download. Here only the calls in flight are waited for, each bounded by the
    client's timeouts.
    """
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def in_flight(client: Any, wanted: int) -> int:
    """How many of ``wanted`` concurrent requests ``client`` can carry: its pool's size at most."""
    return max(1, min(wanted, int(client.meta.config.max_pool_connections)))


def normalise_prefix(prefix: str) -> str:
    """``coverage`` -> ``coverage/``; no leading slash (as the runtime writes keys)."""
    base = prefix.lstrip("/")
    return base if not base or base.endswith("/") else base + "/"


@dataclass(frozen=True)
class RemoteObject:
    """One coverage object as listed."""

    key: str
    etag: str
    size: int
    day: date


@dataclass(frozen=True)
class Listing:
    """What listing found: the objects in the window, and what it cost."""

    objects: tuple[RemoteObject, ...]
    list_calls: int
    prefixes: tuple[str, ...]  # the partitions listed


def _days(since: date, until: date) -> Iterator[date]:
    day = since
    while day <= until:
        yield day
        if day == date.max:
            return
        day += timedelta(days=1)


def partition_prefixes(prefix: str, since: date, until: date) -> list[str] | None:
    """The day partitions of a short window, or None when the window needs a walk."""
    if until < since:
        return []
    if (until - since).days + 1 > MAX_DIRECT_DAYS:
        return None
    return [f"{prefix}{day:%Y/%m/%d}/" for day in _days(since, until)]


class Lister:
    """Lists coverage objects under a prefix, pruned by date window and function names."""

    def __init__(self, client: Any, bucket: str, *, workers: int = 8) -> None:
        self.client = client
        self.bucket = bucket
        self.workers = workers
        self._calls = 0
        self._lock = threading.Lock()

    def _list(self, prefix: str, delimiter: str = "") -> tuple[list[dict[str, Any]], list[str]]:
        contents: list[dict[str, Any]] = []
        common: list[str] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            request["Delimiter"] = delimiter
        with translating("s3:ListBucket", f"s3://{self.bucket}/{prefix}"):
            for page in each_page(self.client.list_objects_v2, request, token=CONTINUATION_TOKEN):
                with self._lock:
                    self._calls += 1
                contents += page.get("Contents", [])
                common += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
        return contents, common

    def _walk(self, prefix: str, since: date | None, until: date | None) -> list[str]:
        """Year and month partitions that meet the window, as listing prefixes."""
        low = since or date.min
        high = until or date.max
        _, years = self._list(prefix, "/")
        wanted_years = [
            year
            for year in years
            if (y := _number(year, prefix)) is not None and low.year <= y <= high.year
        ]
        result: list[str] = []
        with worker_pool(self.workers) as pool:
            for year, (_, months) in zip(
                wanted_years, pool.map(lambda p: self._list(p, "/"), wanted_years), strict=True
            ):
                y = _number(year, prefix)
                assert y is not None
                for month in months:
                    m = _number(month, year)
                    if m is None or not 1 <= m <= 12:
                        continue
                    first = date(y, m, 1)
                    last = date(y, m, calendar.monthrange(y, m)[1])
                    if last < low or first > high:
                        continue
                    if low <= first and last <= high:
                        result.append(month)  # the whole month is in the window
                    else:
                        result += [
                            f"{month}{day:%d}/" for day in _days(max(first, low), min(last, high))
                        ]
        return result

    def days(self, prefix: str, since: date | None, until: date | None) -> list[date]:
        """The day partitions in the window: named for a short one, found by walking otherwise."""
        prefix = normalise_prefix(prefix)
        if since and until and partition_prefixes(prefix, since, until) is not None:
            return list(_days(since, until))
        low, high = since or date.min, until or date.max
        found: set[date] = set()
        partitions = self._walk(prefix, since, until)
        months = [p for p in partitions if p.count("/") - prefix.count("/") == 2]
        with worker_pool(self.workers) as pool:
            listed = list(pool.map(lambda p: self._list(p, "/")[1], months))
        for entry in [p for p in partitions if p not in months] + [e for m in listed for e in m]:
            parts = entry[len(prefix) :].rstrip("/").split("/")
            try:
                day = date(int(parts[0]), int(parts[1]), int(parts[2]))
            except (ValueError, IndexError):
                continue
            if low <= day <= high:
                found.add(day)
        return sorted(found)

    @property
    def calls(self) -> int:
        """How many list calls this lister has made."""
        return self._calls

    def list(
        self,
        prefix: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        functions: Sequence[str] = (),
        exclude: Iterable[str] = (),
    ) -> Listing:
        """List the coverage objects in the window whose function is one of ``functions``."""
        prefix = normalise_prefix(prefix)
        low = since.date() if since else None
        high = until.date() if until else None
        direct = partition_prefixes(prefix, low, high) if low and high else None
        partitions = direct if direct is not None else self._walk(prefix, low, high)
        if functions and direct is not None:
            # Keys start with the function's name: list just its objects in each day.
            partitions = [f"{day}{name}-" for day in partitions for name in sorted(set(functions))]
        wanted = set(functions)
        skip = set(exclude)
        # A bound within a day is checked to the second, against when the object was written.
        since_cut = since if since and within_day(since) else None
        until_cut = until if until and within_day(until, end=True) else None
        with worker_pool(self.workers) as pool:
            pages = list(pool.map(lambda p: self._list(p)[0], partitions))
        found: dict[str, RemoteObject] = {}
        for entries in pages:
            for entry in entries:
                remote = _remote(entry, prefix)
                if remote is None or remote.key in skip:
                    continue
                if (low and remote.day < low) or (high and remote.day > high):
                    continue
                if (since_cut or until_cut) and not _written_within(entry, since_cut, until_cut):
                    continue
                if wanted and _function(remote.key) not in wanted:
                    continue
                found[remote.key] = remote
        objects = tuple(found[key] for key in sorted(found))
        return Listing(objects, self._calls, tuple(partitions))


def within_day(moment: datetime, *, end: bool = False) -> bool:
    """True for a bound that is not a whole day's start (or, with ``end``, its last instant)."""
    return moment.timetz().replace(tzinfo=None) != (clock.max if end else clock.min)


def _written_within(entry: dict[str, Any], since: datetime | None, until: datetime | None) -> bool:
    """True if a listed object was last written within the window, to the second.

    An environment's object is rewritten each time its coverage grows: what
    counts is when it was last written.
    """
    written = entry.get("LastModified")
    if written is None:
        return True
    if isinstance(written, str):  # listings keep AWS's text (see aws.Clients.get)
        try:
            written = datetime.fromisoformat(written.replace("Z", "+00:00"))
        except ValueError:
            return True
    moment = written if written.tzinfo else written.replace(tzinfo=UTC)
    # S3 keeps LastModified to the second: an object written in the second --since
    # names is within it.
    return not ((since and moment < since.replace(microsecond=0)) or (until and moment > until))


def _number(child: str, parent: str) -> int | None:
    part = child[len(parent) :].rstrip("/")
    return int(part) if part.isdigit() else None


def _function(key: str) -> str:
    from coverage_wrapper.datafiles import function_from_key

    return function_from_key(key)


def _remote(entry: dict[str, Any], prefix: str) -> RemoteObject | None:
    """The listed object if its key follows the layout ``PREFIX/YYYY/MM/DD/name.coverage``."""
    key = str(entry["Key"])
    match = DAY_KEY.fullmatch(key[len(prefix) :]) if key.startswith(prefix) else None
    if not match:
        return None
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return RemoteObject(key, str(entry.get("ETag", "")).strip('"'), int(entry.get("Size", 0)), day)


@dataclass(frozen=True)
class Fetched:
    """An object available as a local file (downloaded now, or from the cache)."""

    key: str
    path: Path
    cached: bool
    size: int


@dataclass(frozen=True)
class Skipped:
    """An object left out, and why."""

    key: str
    reason: str


@dataclass(frozen=True)
class Download:
    """What fetching the listed objects did."""

    fetched: tuple[Fetched, ...]
    skipped: tuple[Skipped, ...]
    downloaded: int
    cache_hits: int
    bytes_downloaded: int


# Inside a cache directory: one folder per running combine, holding hard links to
# the cached versions it reads (see ObjectCache.pin). A folder older than this was
# left by a run that was killed.
PINS = ".pins"
STALE_PINS_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ObjectCache:
    """Local copies of objects, one file per (bucket, key, ETag), shared by concurrent runs.

    Storing a newer version of a key removes the older ones, which another run
    on the same directory may be about to read. So a run never reads a cache
    name: it reads its own hard link to it (:meth:`pin`), made atomically, in a
    folder only it uses; an evicted name then takes nothing from that run.
    :meth:`release` removes the run's links.
    """

    directory: Path
    # The versions on disk by key hash, from one scan of the directory on the first
    # store: finding a key's older versions by globbing the directory on every store
    # made a run quadratic in the cache's size (half a second per 1,000 objects).
    _versions: dict[str, set[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _scanned: list[bool] = field(default_factory=list, init=False, repr=False, compare=False)
    _pins: list[Path] = field(default_factory=list, init=False, repr=False, compare=False)
    _released: list[bool] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def _stem(self, bucket: str, key: str) -> str:
        return hashlib.sha256(f"{bucket}\0{key}".encode()).hexdigest()[:40]

    def path(self, bucket: str, key: str, etag: str) -> Path:
        """Where the version of ``key`` with ``etag`` is (or will be) kept."""
        tag = re.sub(r"[^0-9A-Za-z-]", "", etag)[:80] or "none"
        return self.directory / f"{self._stem(bucket, key)}-{tag}.coverage"

    def _scan(self) -> None:
        """Index the versions on disk (call with the lock held)."""
        if self._scanned:
            return
        self._scanned.append(True)
        try:
            names = os.listdir(self.directory)  # noqa: PTH208 - plain names, no Path per entry
        except OSError:
            return
        for name in names:
            stem, dash, _ = name.partition("-")
            if dash and name.endswith(".coverage"):
                self._versions.setdefault(stem, set()).add(name)

    def _pin_directory(self) -> Path:
        """This run's folder of links, made on first use (stale ones of killed runs go)."""
        with self._lock:
            if self._released:
                # A download still in flight after Ctrl-C: its run is over.
                raise RuntimeError("the run released its cache links")
            if not self._pins:
                root = self.directory / PINS
                root.mkdir(parents=True, exist_ok=True)
                _remove_stale_pins(root)
                self._pins.append(Path(tempfile.mkdtemp(prefix="run-", dir=root)))
            return self._pins[0]

    def pin(self, cached: Path) -> Path | None:
        """This run's own link to the cached file ``cached``, or None if it is gone."""
        try:
            return self._link(cached, cached.name)
        except FileNotFoundError:  # evicted by another run: fetch it again
            return None

    def _link(self, source: Path, name: str) -> Path:
        """Link ``source`` into this run's folder as ``name``, under the lock ``release``
        takes: a download still in flight when the run is interrupted adds nothing after."""
        private = self._pin_directory() / name
        with self._lock:
            if self._released:
                raise RuntimeError("the run released its cache links")
            _link_or_copy(source, private)
        return private

    def store(self, bucket: str, key: str, etag: str, body: bytes) -> Path:
        """Keep ``body`` as this version of ``key``, drop older versions; return this run's link."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(bucket, key, etag)
        handle, temporary = tempfile.mkstemp(prefix=".part-", dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(body)
            # Linked before it is published: another run may evict it at once after.
            private = self._link(Path(temporary), target.name)
            Path(temporary).replace(target)
        finally:
            Path(temporary).unlink(missing_ok=True)
        stem = self._stem(bucket, key)
        with self._lock:
            self._scan()
            older = self._versions.get(stem, set()) - {target.name}
            self._versions[stem] = {target.name}
        for name in older:
            (self.directory / name).unlink(missing_ok=True)
        return private

    def release(self) -> None:
        """Remove this run's links (the cached files stay); the run pins nothing after this."""
        with self._lock:
            pins = list(self._pins)
            self._pins.clear()
            self._released.append(True)
        for folder in pins:
            shutil.rmtree(folder, ignore_errors=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (atomic, no copy), or a copy where the filesystem has no links."""
    try:
        os.link(source, target)
    except FileExistsError:
        pass  # this run pinned that version already
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copyfile(source, target)


def _remove_stale_pins(root: Path) -> None:
    """Remove the link folders of runs that ended without removing theirs (killed)."""
    now = time.time()
    try:
        folders = [entry for entry in os.scandir(root) if entry.name.startswith("run-")]
    except OSError:
        return
    for entry in folders:
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and (
                now - entry.stat(follow_symlinks=False).st_mtime > STALE_PINS_SECONDS
            ):
                shutil.rmtree(entry.path, ignore_errors=True)


def default_cache_dir() -> Path:
    """``$LAMBDACOV_CACHE_DIR``, else ``$XDG_CACHE_HOME/lambdacov/objects`` (~/.cache)."""
    explicit = os.environ.get("LAMBDACOV_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return cache_root() / "objects"


@dataclass
class Downloader:
    """Fetches objects in parallel through the cache, retrying network faults."""

    client: Any
    bucket: str
    cache: ObjectCache
    workers: int = DOWNLOAD_WORKERS
    retrier: Retrier = field(default=DOWNLOAD_RETRIER)

    def _get(self, remote: RemoteObject) -> Fetched:
        def attempt() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=remote.key)
            body: bytes = response["Body"].read()
            expected = response.get("ContentLength")
            if expected is not None and len(body) != int(expected):
                raise ShortReadError(f"{len(body)} of {expected} bytes")
            return body, str(response.get("ETag", remote.etag)).strip('"')

        body, etag = self.retrier.call(attempt)
        path = self.cache.store(self.bucket, remote.key, etag, body)
        return Fetched(remote.key, path, cached=False, size=len(body))

    def fetch(
        self,
        objects: Sequence[RemoteObject],
        on_ready: Callable[[Fetched], None] | None = None,
    ) -> Download:
        """Make every object local; ``on_ready`` runs (in this thread) as each one arrives.

        Calling back as downloads complete lets the caller merge while the
        rest are still in flight.
        """
        fetched: list[Fetched] = []
        skipped: list[Skipped] = []
        missing: list[RemoteObject] = []
        hits: list[Fetched] = []
        for remote in objects:
            if remote.size > MAX_OBJECT_BYTES:
                skipped.append(Skipped(remote.key, f"too large: {remote.size} bytes"))
                continue
            pinned = None
            if remote.etag:
                pinned = self.cache.pin(self.cache.path(self.bucket, remote.key, remote.etag))
            if pinned is not None:
                hits.append(Fetched(remote.key, pinned, cached=True, size=remote.size))
            else:
                missing.append(remote)
        downloaded = 0
        size = 0
        with worker_pool(self.workers) as pool:
            futures: dict[Future[Fetched], RemoteObject] = {
                pool.submit(self._get, remote): remote for remote in missing
            }
            for hit in hits:  # merged while the downloads run
                fetched.append(hit)
                if on_ready:
                    on_ready(hit)
            for future in as_completed(futures):
                remote = futures[future]
                try:
                    item = future.result()
                except Exception as error:  # noqa: BLE001 - one object must not stop the rest
                    skipped.append(Skipped(remote.key, _reason(error)))
                    continue
                downloaded += 1
                size += item.size
                fetched.append(item)
                if on_ready:
                    on_ready(item)
        return Download(tuple(fetched), tuple(skipped), downloaded, len(hits), size)


def _reason(error: BaseException) -> str:
    code = error_code(error)
    message = str(error).splitlines()[0] if str(error) else code
    return message if message.startswith(code) else f"{code}: {message}"
