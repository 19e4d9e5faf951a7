"""Shard planning for `combine --remote`: complete, disjoint, stable; the partials' layout."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime

import pytest

from coverage_wrapper.shard import ShardEventError, ShardSpec, key_bucket
from lambdacov.combine.remote import plan
from lambdacov.errors import UsageError

DAY = date(2024, 1, 15)


def keys_for(counts: dict[str, int], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        f"coverage/2024/01/15/{function}-{uuid.UUID(int=rng.getrandbits(128)).hex}.coverage"
        for function, count in counts.items()
        for _ in range(count)
    ]


def specs(shards: list[plan.Shard]) -> list[ShardSpec]:
    return [
        ShardSpec.from_event(shard.event("b", "coverage/", f"out/{shard.name}", "out/m"))
        for shard in shards
    ]


@pytest.mark.parametrize("per_shard", [1, 3, 50, 400, 10_000])
def test_every_key_is_in_exactly_one_shard(per_shard: int) -> None:
    # Names that prefix each other ("fn", "fn-a") share listing prefixes: the filter separates them.
    keys = keys_for({"fn": 700, "fn-a": 40, "fn-ab": 3, "other": 1, "zz": 25})
    shards = plan.plan_day("coverage/", DAY, keys, per_shard=per_shard)
    workers = specs(shards)
    for key in keys:
        owners = [
            s.name
            for s, w in zip(shards, workers, strict=True)
            if any(key.startswith(p) for p in w.prefixes) and w.selects(key)
        ]
        assert len(owners) == 1, (key, owners)
    assert all(len(shard.prefixes) >= 1 for shard in shards)
    if per_shard >= len(keys):
        assert [s.prefixes for s in shards] == [("coverage/2024/01/15/",)]


def test_a_hot_function_is_split_by_key_hash_into_even_buckets() -> None:
    keys = keys_for({"hot": 4000, "cold": 10})
    shards = plan.plan_day("coverage/", DAY, keys, per_shard=1000)
    hot = [s for s in shards if s.functions == ("hot",)]
    assert [s.hash_bucket for s in hot] == [(i, 4) for i in range(4)]
    sizes = [sum(1 for k in keys if "/hot-" in k and key_bucket(k, 4) == i) for i in range(4)]
    assert all(800 < size < 1200 for size in sizes), sizes


def test_key_hash_is_stable() -> None:
    # The worker and the planner run on different machines and Pythons: no salted hash().
    # Pinned: the CLI plans and the deployed layer filters; their versions may differ.
    assert key_bucket("coverage/2024/01/15/fn-0.coverage", 7) == 1
    assert [key_bucket(f"k{n}", 5) for n in range(6)] == [1, 1, 1, 3, 2, 1]


def test_small_functions_share_a_shard_and_the_plan_is_deterministic() -> None:
    keys = keys_for({"a": 2, "b": 2, "c": 2, "d": 9})
    first = plan.plan_day("coverage/", DAY, keys, per_shard=5)
    assert first == plan.plan_day("coverage/", DAY, list(reversed(keys)), per_shard=5)
    assert sorted(s.functions for s in first) == [("a", "b"), ("c",), ("d",), ("d",)]
    assert sum(s.objects for s in first) >= len(keys)


def test_shards_target_follows_the_requested_count() -> None:
    assert plan.objects_per_shard(10_000, 8) == 1250
    assert plan.objects_per_shard(3, 8) == 1
    assert plan.objects_per_shard(10, None) == plan.OBJECTS_PER_SHARD
    with pytest.raises(UsageError):
        plan.objects_per_shard(10, 0)


def test_partials_live_beside_the_data_never_under_it() -> None:
    out = plan.default_output_prefix("coverage/")
    assert out == "coverage.lambdacov/"
    digest = plan.filter_hash("coverage/", ["fn-b", "fn-a"])
    assert digest == plan.filter_hash("coverage/", ["fn-a", "fn-b", "fn-a"])
    assert digest != plan.filter_hash("coverage/", [])
    key = plan.day_partial_key(out, DAY, digest)
    assert key == f"coverage.lambdacov/partials/days/2024/01/15/{digest}.coverage"
    assert not key.startswith("coverage/")
    assert plan.default_output_prefix("") == ".lambdacov/"
    with pytest.raises(UsageError, match="under the data prefix"):
        plan.check_output_prefix("coverage/", "coverage/partials/")


def test_a_day_is_closed_after_its_end_plus_the_margin() -> None:
    assert not plan.is_closed(DAY, datetime(2024, 1, 16, 1, 59, tzinfo=UTC))
    assert plan.is_closed(DAY, datetime(2024, 1, 16, 2, 0, tzinfo=UTC))


def test_tree_reduce_levels() -> None:
    assert plan.chunks([str(n) for n in range(5)], 2) == [["0", "1"], ["2", "3"], ["4"]]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"output_key": "o", "prefixes": ["p/"]}, "bucket"),
        ({"bucket": "b", "output_key": "o"}, "either prefixes"),
        ({"bucket": "b", "output_key": "p/x", "prefixes": ["p/"]}, "own inputs"),
        ({"bucket": "b", "output_key": "o", "keys": ["o"]}, "own inputs"),
        ({"bucket": "b", "output_key": "o", "prefixes": ["p/"], "hash_bucket": [2, 2]}, "hash"),
        ({"bucket": "b", "output_key": "o", "root": "q/", "prefixes": ["p/"]}, "under root"),
    ],
)
def test_the_worker_refuses_events_that_are_not_shards(
    event: dict[str, object], message: str
) -> None:
    with pytest.raises(ShardEventError, match=message):
        ShardSpec.from_event(event)


def test_the_worker_selects_only_the_layout_combine_reads() -> None:
    spec = ShardSpec.from_event(
        {"bucket": "b", "output_key": "o", "root": "coverage/", "prefixes": ["coverage/"]}
    )
    assert spec.selects("coverage/2024/01/15/fn-1.coverage")
    assert not spec.selects("coverage/2024/02/30/fn-1.coverage")  # no such date
    assert not spec.selects("coverage/2024/01/15/deeper/fn-1.coverage")
    assert not spec.selects("coverage/combined.coverage")
