"""The remote combiner: one shard of ``lambdacov combine --remote``, run inside Lambda.

``lambdacov combiner deploy`` creates a function whose handler is
:func:`handler`, from the layer. ``lambdacov combine --remote`` invokes it once
per shard of the key space. A shard event names either the partitions to list
(day prefixes, optionally narrowed to some functions and to one bucket of a
key-hash split) or an explicit list of keys (a reduce step over partials), and
the key to write the partial combined data file to. The merge is the engine
``lambdacov combine`` uses (:mod:`coverage_wrapper.datafiles`), so a
partial merged again gives exactly what a local combine gives.

Robustness: an object that cannot be read or fetched is skipped with its
reason, never fatal; only a failure to list or to write the output fails the
invocation (and the caller retries the shard). Memory and /tmp stay bounded:
at most a fixed number of objects are on disk at once, each merged and deleted
as it arrives.

Event::

    {"bucket": "b", "root": "coverage/",            # the data prefix
     "prefixes": ["coverage/2024/01/15/"],          # or "keys": [...] for a reduce step
     "functions": ["fn-a"],                          # optional
     "hash_bucket": [0, 4],                          # optional: this shard's bucket of 4
     "exclude": [], "relabel": true,                 # per-function contexts (false: keep)
     "output_key": "...coverage", "manifest_key": "...json"}

It imports only the standard library, coverage.py and (lazily) boto3.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_wrapper.datafiles import (
    Merger,
    function_context,
    function_from_key,
    function_of,
    key_day,
    read_data_file,
)
from coverage_wrapper.datawriter import InvalidDataFileError
from coverage_wrapper.errors import error_code
from coverage_wrapper.logging_utils import get_logger

log = get_logger("coverage_wrapper.shard")

#: The version of the event, response and manifest documents.
FORMAT = 1
# Downloads are I/O-bound; merging is CPU-bound and runs in the handler's thread.
DOWNLOAD_THREADS = 32
# At most this many objects are downloaded and not yet merged: /tmp is 512 MB by default.
IN_FLIGHT = 2 * DOWNLOAD_THREADS
# The same bound as `lambdacov combine`: anything larger is not a coverage data file.
MAX_OBJECT_BYTES = 256 * 1024 * 1024
# Skipped entries returned in the response; the manifest holds them all.
SKIPPED_IN_RESPONSE = 100
#: When set, the function refuses events for another bucket, data prefix or output prefix.
BUCKET_VAR = "LAMBDACOV_COMBINER_BUCKET"
PREFIX_VAR = "LAMBDACOV_COMBINER_PREFIX"
OUTPUT_PREFIX_VAR = "LAMBDACOV_COMBINER_OUTPUT_PREFIX"
# Keys that mean "the object is gone", a reason that stays true on a later run.
_GONE = frozenset({"NoSuchKey", "404", "NotFound"})
_DAY_NAME = re.compile(r"(\d{4})/(\d{2})/(\d{2})/[^/]+\.coverage")


class ShardEventError(ValueError):
    """The event does not describe a shard; the message says what is wrong."""


def key_bucket(key: str, buckets: int) -> int:
    """The bucket (0..buckets-1) of a key-hash split; stable across runs and machines."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def in_layout(key: str, root: str) -> bool:
    """True for ``ROOT/YYYY/MM/DD/<name>.coverage`` with a real date, as ``combine`` lists."""
    if not key.startswith(root):
        return False
    match = _DAY_NAME.fullmatch(key[len(root) :])
    if not match:
        return False
    try:
        datetime.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ShardSpec:
    """A shard event, validated."""

    bucket: str
    output_key: str
    manifest_key: str | None = None
    root: str = ""
    prefixes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    hash_bucket: tuple[int, int] | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    relabel: bool = True

    @classmethod
    def from_event(cls, event: Any) -> ShardSpec:
        """Read and check an event; raise ShardEventError when it is not a shard."""
        if not isinstance(event, dict):
            raise ShardEventError("the event must be a JSON object")
        bucket, output_key = event.get("bucket"), event.get("output_key")
        if not isinstance(bucket, str) or not bucket:
            raise ShardEventError("bucket is required")
        if not isinstance(output_key, str) or not output_key:
            raise ShardEventError("output_key is required")
        prefixes = _strings(event, "prefixes")
        keys = _strings(event, "keys")
        if bool(prefixes) == bool(keys):
            raise ShardEventError("give either prefixes (a shard) or keys (a reduce step)")
        root = event.get("root", "")
        if not isinstance(root, str) or any(not p.startswith(root) for p in prefixes):
            raise ShardEventError("every prefix must be under root")
        split = event.get("hash_bucket")
        hash_bucket: tuple[int, int] | None = None
        if split is not None:
            if not (
                isinstance(split, list)
                and len(split) == 2
                and all(isinstance(n, int) for n in split)
                and 0 <= split[0] < split[1]
            ):
                raise ShardEventError("hash_bucket must be [i, n] with 0 <= i < n")
            hash_bucket = (split[0], split[1])
        manifest_key = event.get("manifest_key")
        if manifest_key is not None and not isinstance(manifest_key, str):
            raise ShardEventError("manifest_key must be a string")
        if any(output_key.startswith(p) for p in prefixes) or output_key in keys:
            raise ShardEventError("output_key would be one of the shard's own inputs")
        return cls(
            bucket=bucket,
            output_key=output_key,
            manifest_key=manifest_key,
            root=root,
            prefixes=prefixes,
            keys=keys,
            functions=_strings(event, "functions"),
            hash_bucket=hash_bucket,
            exclude=frozenset(_strings(event, "exclude")),
            relabel=bool(event.get("relabel", True)),
        )

    def selects(self, key: str) -> bool:
        """True when a listed key belongs to this shard (layout, functions, hash bucket)."""
        if key in self.exclude or not in_layout(key, self.root):
            return False
        if self.functions and function_from_key(key) not in self.functions:
            return False
        return (
            self.hash_bucket is None or key_bucket(key, self.hash_bucket[1]) == self.hash_bucket[0]
        )


def _strings(event: dict[str, Any], name: str) -> tuple[str, ...]:
    value = event.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ShardEventError(f"{name} must be a list of non-empty strings")
    return tuple(value)


def _check_allowed(spec: ShardSpec, environ: dict[str, str]) -> None:
    """Refuse what the deployment did not mean this function to touch."""
    bucket = environ.get(BUCKET_VAR)
    if bucket and spec.bucket != bucket:
        raise ShardEventError(f"this combiner serves bucket {bucket}, not {spec.bucket}")
    prefix = environ.get(PREFIX_VAR)
    if prefix is not None and not spec.root.startswith(prefix):
        raise ShardEventError(f"this combiner reads under {prefix!r} only")
    output = environ.get(OUTPUT_PREFIX_VAR)
    if output is not None:
        written = [spec.output_key, *([spec.manifest_key] if spec.manifest_key else [])]
        if any(not key.startswith(output) for key in written):
            raise ShardEventError(f"this combiner writes under {output!r} only")


@dataclass
class _Outcome:
    merger: Merger = field(default_factory=Merger)
    inputs: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    functions: Counter[str] = field(default_factory=Counter)
    bytes: int = 0


def _listed(client: Any, spec: ShardSpec) -> tuple[list[tuple[str, int]], int]:
    """The shard's (key, size) pairs, sorted, and the number of list calls made."""
    if spec.keys:
        return [(key, -1) for key in sorted(set(spec.keys))], 0
    found: dict[str, int] = {}
    calls = 0
    paginator = client.get_paginator("list_objects_v2")
    for prefix in spec.prefixes:
        for page in paginator.paginate(Bucket=spec.bucket, Prefix=prefix):
            calls += 1
            for item in page.get("Contents", []):
                if spec.selects(item["Key"]):
                    found[item["Key"]] = int(item.get("Size", 0))
    return sorted(found.items()), calls


def _fetch(client: Any, bucket: str, key: str, path: Path) -> int:
    for attempt in range(3):
        response = client.get_object(Bucket=bucket, Key=key)
        body: bytes = response["Body"].read()
        expected = response.get("ContentLength")
        if expected is None or len(body) == int(expected):
            path.write_bytes(body)
            return len(body)
        if attempt == 2:
            raise OSError(f"short read: {len(body)} of {expected} bytes")
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(error: BaseException) -> tuple[str, bool]:
    """A skipped object's reason, and whether a later run could succeed (transient)."""
    if isinstance(error, InvalidDataFileError):
        return str(error), False
    code = error_code(error)
    message = str(error).splitlines()[0] if str(error) else code
    text = message if message.startswith(code) else f"{code}: {message}"
    return text, code not in _GONE


def _merge_all(client: Any, spec: ShardSpec, listed: list[tuple[str, int]]) -> _Outcome:
    outcome = _Outcome()

    def merge(key: str, path: Path) -> None:
        label: Callable[[str], str] | None = None
        function = function_of(key)
        if spec.relabel:
            label = functools.partial(function_context, function)
        outcome.merger.add(read_data_file(path), label, key_day(key))
        outcome.inputs.append(key)
        outcome.functions[function] += 1

    def skip(key: str, error: BaseException) -> None:
        reason, transient = _reason(error)
        outcome.skipped.append({"key": key, "reason": reason, "transient": transient})

    with (
        tempfile.TemporaryDirectory(prefix="lambdacov-shard-") as scratch,
        ThreadPoolExecutor(DOWNLOAD_THREADS) as pool,
    ):
        queue: Iterator[tuple[int, tuple[str, int]]] = enumerate(listed)
        pending: dict[Future[int], tuple[str, Path]] = {}

        def refill() -> None:
            for index, (key, size) in queue:
                if size > MAX_OBJECT_BYTES:
                    outcome.skipped.append(
                        {"key": key, "reason": f"too large: {size} bytes", "transient": False}
                    )
                    continue
                path = Path(scratch) / f"{index}.coverage"
                pending[pool.submit(_fetch, client, spec.bucket, key, path)] = (key, path)
                if len(pending) >= IN_FLIGHT:
                    return

        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                key, path = pending.pop(future)
                try:
                    outcome.bytes += future.result()
                    merge(key, path)
                except Exception as error:  # noqa: BLE001 - one bad object must not stop the rest
                    skip(key, error)
                finally:
                    path.unlink(missing_ok=True)
            refill()
    return outcome


def combine_shard(spec: ShardSpec, client: Any) -> dict[str, Any]:
    """Merge the shard's objects, write the partial (and its manifest), return the summary."""
    started = time.monotonic()
    listed, list_calls = _listed(client, spec)
    outcome = _merge_all(client, spec, listed)
    combined = outcome.merger.result()
    output_key: str | None = None
    etag: str | None = None
    if combined.kind is not None:  # nothing measured: no partial, the manifest says so
        with tempfile.TemporaryDirectory(prefix="lambdacov-partial-") as scratch:
            body = combined.write(Path(scratch) / "partial.coverage").read_bytes()
        response = client.put_object(
            Bucket=spec.bucket,
            Key=spec.output_key,
            Body=body,
            ServerSideEncryption="AES256",
            ContentType="application/vnd.sqlite3",
        )
        output_key, etag = spec.output_key, str(response.get("ETag", "")).strip('"')
    skipped = sorted(outcome.skipped, key=lambda item: str(item["key"]))
    manifest = {
        "format": FORMAT,
        "output_key": output_key,
        "etag": etag,
        "kind": combined.kind,
        "mixed": combined.mixed,
        "listed": len(listed),
        "inputs": sorted(outcome.inputs),
        "skipped": skipped,
        "objects_by_function": dict(sorted(outcome.functions.items())),
    }
    if spec.manifest_key:
        client.put_object(
            Bucket=spec.bucket,
            Key=spec.manifest_key,
            Body=json.dumps(manifest, separators=(",", ":")).encode(),
            ServerSideEncryption="AES256",
            ContentType="application/json",
        )
    for entry in skipped[:SKIPPED_IN_RESPONSE]:
        log.warning("Skipped a coverage object", extra={"data": entry})
    return {
        **{k: v for k, v in manifest.items() if k != "inputs"},
        "manifest_key": spec.manifest_key,
        "inputs": len(outcome.inputs),
        "skipped": skipped[:SKIPPED_IN_RESPONSE],
        "skipped_count": len(skipped),
        "transient_skips": sum(1 for item in skipped if item["transient"]),
        "list_calls": list_calls,
        "bytes": outcome.bytes,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


def s3_client() -> Any:
    """An S3 client for the shard: a connection per download thread, standard retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(
            max_pool_connections=DOWNLOAD_THREADS + 2,
            retries={"max_attempts": 8, "mode": "standard"},
        ),
    )


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The combiner function's handler: combine one shard (see the module's docstring)."""
    spec = ShardSpec.from_event(event)
    _check_allowed(spec, dict(os.environ))
    return combine_shard(spec, s3_client())
