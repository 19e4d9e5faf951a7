"""Planning a remote combine: shards of the key space, and where partials live in S3.

Pure functions, no IO. A shard never spans two days, so a closed day's
partial is made of that day's objects only and can be kept. Within a day the
objects are grouped by function; small groups share a shard, and a hot group
(more objects than a shard should take) is split by a stable hash of the key
into as many buckets as it needs. Each listed key therefore falls in exactly
one shard (tests/unit/test_remote_plan.py checks it with the worker's own
filter, :meth:`ShardSpec.selects`).

Partials are kept beside the data, never under it::

    OUT = PREFIX without its slash + ".lambdacov/"    (coverage/ -> coverage.lambdacov/)
    OUT/partials/days/YYYY/MM/DD/<filter-hash>.coverage   a closed day's partial, kept
    OUT/partials/days/YYYY/MM/DD/<filter-hash>.json       its manifest: written last, so
                                                          its presence means "complete"
    OUT/partials/runs/<run-id>/...                        one run's shard and reduce
                                                          outputs, deleted after the run

The filter hash names what the partial holds (the data prefix and the
``--function`` filter), so runs with different filters never share partials.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from coverage_wrapper.datafiles import function_from_key
from lambdacov.errors import UsageError

#: A day is closed (its objects final) this long after its end, UTC.
CLOSED_MARGIN = timedelta(hours=2)
#: Objects one shard takes when the caller gives no --shards.
OBJECTS_PER_SHARD = 5000
PARTIALS_FORMAT = 1


def default_output_prefix(prefix: str) -> str:
    """Where partials go for a data prefix: a sibling, so no combine reads them as inputs."""
    base = prefix.rstrip("/")
    return f"{base}.lambdacov/" if base else ".lambdacov/"


def check_output_prefix(prefix: str, output_prefix: str) -> None:
    """Refuse an output prefix under the data prefix (the guide's combiner would read it)."""
    if not output_prefix.endswith("/"):
        raise UsageError(f"the output prefix {output_prefix!r} must end with '/'")
    if prefix and output_prefix.startswith(prefix):
        raise UsageError(
            f"the output prefix {output_prefix!r} is under the data prefix {prefix!r}",
            f"use a sibling such as {default_output_prefix(prefix)!r}",
        )


def filter_hash(prefix: str, functions: Iterable[str]) -> str:
    """A short name for what a day partial holds: the data prefix and the function filter."""
    text = json.dumps(
        {"format": PARTIALS_FORMAT, "prefix": prefix, "functions": sorted(set(functions))},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def day_partial_key(output_prefix: str, day: date, digest: str) -> str:
    """The key of a closed day's kept partial."""
    return f"{output_prefix}partials/days/{day:%Y/%m/%d}/{digest}.coverage"


def day_manifest_key(output_prefix: str, day: date, digest: str) -> str:
    """The key of a closed day's manifest (written last: it marks the partial complete)."""
    return f"{output_prefix}partials/days/{day:%Y/%m/%d}/{digest}.json"


def run_prefix(output_prefix: str, run_id: str) -> str:
    """Where one run's temporary partials go."""
    return f"{output_prefix}partials/runs/{run_id}/"


def day_prefix(prefix: str, day: date) -> str:
    """The data partition of one UTC day."""
    return f"{prefix}{day:%Y/%m/%d}/"


def is_closed(day: date, now: datetime, margin: timedelta = CLOSED_MARGIN) -> bool:
    """True once no more objects can land in ``day``: its end plus a margin has passed."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return end + margin <= now


@dataclass(frozen=True)
class Shard:
    """One invocation's share of a day: partitions, a function filter, a hash bucket."""

    name: str
    day: date
    prefixes: tuple[str, ...]
    functions: tuple[str, ...]  # () means every function in the prefixes
    hash_bucket: tuple[int, int] | None
    objects: int  # as listed when planning

    def event(
        self,
        bucket: str,
        root: str,
        output_key: str,
        manifest_key: str,
        exclude: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The combiner's event for this shard (see coverage_wrapper.shard)."""
        event: dict[str, Any] = {
            "bucket": bucket,
            "root": root,
            "prefixes": list(self.prefixes),
            "output_key": output_key,
            "manifest_key": manifest_key,
            "relabel": True,
        }
        if self.functions:
            event["functions"] = list(self.functions)
        if self.hash_bucket is not None:
            event["hash_bucket"] = list(self.hash_bucket)
        if exclude:
            event["exclude"] = list(exclude)
        return event


def reduce_event(bucket: str, keys: Sequence[str], output_key: str) -> dict[str, Any]:
    """The combiner's event that merges partials (contexts already name functions)."""
    return {"bucket": bucket, "keys": list(keys), "output_key": output_key, "relabel": False}


def objects_per_shard(total: int, shards: int | None) -> int:
    """How many objects one shard should take for about ``shards`` shards."""
    if shards is None:
        return OBJECTS_PER_SHARD
    if shards < 1:
        raise UsageError("--shards must be at least 1")
    return max(1, math.ceil(total / shards))


def plan_day(
    prefix: str,
    day: date,
    keys: Sequence[str],
    *,
    per_shard: int,
    functions: Sequence[str] = (),
) -> list[Shard]:
    """Shards for one day's listed keys, each of about ``per_shard`` objects or fewer.

    ``functions`` is the run's own filter (``--function``). A day that fits
    in one shard is one shard over the whole partition; otherwise each
    function's objects go to one shard, shared with other small functions,
    or are split by key hash when they alone are too many.
    """
    if not keys:
        return []
    tag = f"{day:%Y%m%d}"
    partition = day_prefix(prefix, day)
    if len(keys) <= per_shard:
        return [
            Shard(f"{tag}-0", day, (partition,), tuple(sorted(set(functions))), None, len(keys))
        ]
    counts = Counter(function_from_key(key) for key in keys)
    shards: list[Shard] = []
    batch: list[str] = []
    batch_size = 0

    def flush() -> None:
        nonlocal batch, batch_size
        if batch:
            shards.append(
                Shard(
                    f"{tag}-{len(shards)}",
                    day,
                    tuple(partition + name for name in batch),
                    tuple(batch),
                    None,
                    batch_size,
                )
            )
        batch, batch_size = [], 0

    for name in sorted(counts):
        count = counts[name]
        if count > per_shard:
            split = math.ceil(count / per_shard)
            for index in range(split):
                shards.append(
                    Shard(
                        f"{tag}-{len(shards)}",
                        day,
                        (partition + name,),
                        (name,),
                        (index, split),
                        math.ceil(count / split),
                    )
                )
            continue
        if batch_size + count > per_shard:
            flush()
        batch.append(name)
        batch_size += count
    flush()
    return shards


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    """``items`` in consecutive groups of at most ``size`` (a tree-reduce level)."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
