"""`combine --remote` for real: moto server, the combiner in several local Lambda environments.

The combiner runs the layer's own handler through the real runtime client, so
the fan-out, the retries, the kept day partials and the reduce are exercised
end to end. The result must be the one a local combine gives for the same objects.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lambdacov.aws import Retrier
from lambdacov.combine.merge import CombineRequest, CombineResult, combine
from lambdacov.combine.remote import (
    LocalInvoker,
    RemoteCombineError,
    RemoteSettings,
    combine_remote,
)
from lambdacov.combine.reports import ReportPlan, write_reports
from tests.support.combine_data import (
    ORDERS,
    as_dict,
    random_measurement,
    read,
    with_identity,
    write_data,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "functions"
# 2024-01-15 is still open at this moment (its end + 2 h margin has not passed).
NOW = datetime(2024, 1, 16, 1, 0, tzinfo=UTC)
DAYS = ("2024/01/13", "2024/01/14", "2024/01/15")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flaky-rules")


@pytest.fixture(scope="module")
def invoker(host_layer: Path, moto_endpoint: str, rules: Path) -> Iterator[LocalInvoker]:
    """Three warm combiner environments, shared by every test of the module."""
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "FLAKY_DIR": str(rules)}
    with LocalInvoker(
        host_layer,
        instances=3,
        env=env,
        function_dir=FIXTURES / "flaky_combiner",
        handler="app.handler",
    ) as local:
        local.warm_up()
        yield local


@pytest.fixture(autouse=True)
def no_rules(rules: Path) -> Iterator[None]:
    yield
    for rule in rules.iterdir():
        rule.unlink()


def put_objects(s3: Any, bucket: str, tmp_path: Path, plan: dict[str, int], seed: int = 5) -> None:
    """``plan``: {"2024/01/13/fn-a": 4, ...}: that many objects of that function on that day."""
    rng = random.Random(seed)
    for where, count in plan.items():
        day, function = where.rsplit("/", 1)
        for _ in range(count):
            key = f"coverage/{day}/{function}-{uuid.uuid4().hex}.coverage"
            local = write_data(
                tmp_path / f"{uuid.uuid4().hex}.coverage", random_measurement(ORDERS, rng)
            )
            s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())


def request(bucket: str, tmp_path: Path) -> CombineRequest:
    return CombineRequest(bucket=bucket, source_root=ORDERS, cache_dir=tmp_path / "cache")


def settings(**changes: Any) -> RemoteSettings:
    no_sleep = Retrier(
        attempts=3, base_delay=0.0, sleep=lambda _: None, retry_on=frozenset({"ShardFailed"})
    )
    return RemoteSettings(retrier=no_sleep, **changes)


def assert_same(remote: CombineResult, local: CombineResult) -> None:
    assert remote.combined == local.combined
    assert remote.inputs == local.inputs
    assert remote.skipped == local.skipped
    assert remote.objects_by_function == local.objects_by_function
    assert (
        remote.missing_files == local.missing_files and remote.outside_files == local.outside_files
    )


@pytest.fixture
def fleet(s3: Any, bucket: str, tmp_path: Path) -> str:
    put_objects(
        s3,
        bucket,
        tmp_path,
        {
            "2024/01/13/fn-a": 3,
            "2024/01/13/fn-b": 2,
            "2024/01/14/fn-a": 9,  # a hot function: split by key hash with 4 shards
            "2024/01/14/fn-b": 1,
            "2024/01/14/fn-c": 2,
            "2024/01/15/fn-a": 2,
            "2024/01/15/fn-c": 3,
        },
    )
    s3.put_object(Bucket=bucket, Key="coverage/2024/01/14/fn-b-broken.coverage", Body=b"not sqlite")
    return bucket


def test_remote_combine_equals_local_combine_and_reports_match(
    s3: Any, fleet: str, tmp_path: Path, invoker: LocalInvoker
) -> None:
    local = combine(s3, request(fleet, tmp_path))
    done = combine_remote(s3, invoker, request(fleet, tmp_path), settings(shards=6), now=NOW)
    assert_same(done.result, local)
    assert [item.key for item in local.skipped] == ["coverage/2024/01/14/fn-b-broken.coverage"]
    assert done.stats.shards >= 6 and done.stats.days == 3
    assert done.stats.kept_days == 2 and done.stats.reused_days == 0
    ours = write_reports(done.result, ReportPlan(json=tmp_path / "remote.json"))
    theirs = write_reports(local, ReportPlan(json=tmp_path / "local.json"))
    assert ours.document["files"] == theirs.document["files"]
    assert ours.document["totals"] == theirs.document["totals"]
    assert ours.summary.functions == theirs.summary.functions
    # The run's own partials are gone; the closed days' are kept beside the data.
    kept = [
        o["Key"] for o in s3.list_objects_v2(Bucket=fleet, Prefix="coverage.lambdacov/")["Contents"]
    ]
    assert all("/partials/days/" in key for key in kept) and len(kept) == 4
    assert all(key.startswith("coverage/20") for key in local.inputs)


def test_remote_combine_keeps_versions_apart_and_resolves_them_as_the_local_combine(
    s3: Any, bucket: str, tmp_path: Path, invoker: LocalInvoker
) -> None:
    # Half the objects ran on the checkout's code, half on code that has changed since.
    rng = random.Random(11)
    for n in range(8):
        measured = random_measurement(ORDERS, rng)
        digests = {
            name: hashlib.sha256(
                (ORDERS / name.removeprefix("/var/task/")).read_bytes()
            ).hexdigest()
            if n % 2
            else "0" * 64
            for name in measured
        }
        local = with_identity(write_data(tmp_path / f"{n}.coverage", measured), digests)
        key = f"coverage/{DAYS[n % 3]}/fn-{n % 2}-{uuid.uuid4().hex}.coverage"
        s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())
    local_result = combine(s3, request(bucket, tmp_path))
    done = combine_remote(s3, invoker, request(bucket, tmp_path), settings(shards=4), now=NOW)
    assert_same(done.result, local_result)
    assert done.result.changed == local_result.changed
    assert local_result.changed and all(item.objects for item in local_result.changed)
    assert local_result.objects_by_function == {"fn-0": 4, "fn-1": 4}


def test_second_run_reuses_closed_days_and_recombines_only_the_open_day(
    s3: Any, fleet: str, tmp_path: Path, invoker: LocalInvoker
) -> None:
    first = combine_remote(s3, invoker, request(fleet, tmp_path), settings(), now=NOW)
    assert first.stats.shards == 3 == first.stats.invocations  # one per day, kept directly
    put_objects(s3, fleet, tmp_path, {"2024/01/15/fn-b": 2}, seed=9)  # new today
    before = invoker.invocations
    again = combine_remote(s3, invoker, request(fleet, tmp_path), settings(), now=NOW)
    assert again.stats.reused_days == 2 and again.stats.kept_days == 0
    assert again.stats.shards == invoker.invocations - before == 1  # the open day only
    assert_same(again.result, combine(s3, request(fleet, tmp_path)))
    assert again.result.cache_hits == 3 + 2 + 9 + 1 + 2


def test_a_shard_that_fails_once_is_retried(
    s3: Any, fleet: str, tmp_path: Path, invoker: LocalInvoker, rules: Path
) -> None:
    (rules / "once-20240114-1").touch()
    before = invoker.invocations
    done = combine_remote(s3, invoker, request(fleet, tmp_path), settings(shards=6), now=NOW)
    assert done.stats.retries == 1
    assert invoker.invocations - before == done.stats.invocations
    assert (rules / "done-20240114-1").exists()
    assert_same(done.result, combine(s3, request(fleet, tmp_path)))


def test_a_shard_that_always_fails_fails_the_run_by_name(
    s3: Any, fleet: str, tmp_path: Path, invoker: LocalInvoker, rules: Path
) -> None:
    (rules / "always-20240115-0").touch()
    with pytest.raises(RemoteCombineError) as failed:
        combine_remote(s3, invoker, request(fleet, tmp_path), settings(shards=6), now=NOW)
    message = failed.value.message
    assert "1 of" in message and "shard 20240115-0" in message
    assert "InjectedError: injected failure for 20240115-0" in message
    # Nothing of the failed run is left to pass for a result.
    left = s3.list_objects_v2(Bucket=fleet, Prefix="coverage.lambdacov/partials/runs/")
    assert left.get("KeyCount", 0) == 0


def test_many_partials_are_tree_reduced_through_the_combiner(
    s3: Any, fleet: str, tmp_path: Path, invoker: LocalInvoker
) -> None:
    done = combine_remote(
        s3,
        invoker,
        request(fleet, tmp_path),
        settings(shards=12, reduce_threshold=2, incremental=False),
        now=NOW,
    )
    assert done.stats.reduce_levels >= 1 and done.stats.partials_merged <= 2
    assert_same(done.result, combine(s3, request(fleet, tmp_path)))


def test_the_cli_remote_combine_with_local_emulators_matches_the_local_combine(
    moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # What a user types, end to end: `lambdacov combine --remote` in its own process.
    put_objects(s3, bucket, tmp_path, {"2024/01/15/fn-a": 12, "2024/01/16/fn-b": 9})
    common = [
        "combine",
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_endpoint,
        "--region",
        "us-east-1",
        "--source-root",
        str(ORDERS),
    ]
    outputs = {}
    for name, extra in (
        ("local", []),
        ("remote", ["--remote", "--executor", "local", "--shards", "3"]),
    ):
        data = tmp_path / f"{name}.coverage"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "lambdacov",
                *common,
                *extra,
                "--data-file",
                str(data),
                "--cache-dir",
                str(tmp_path / f"cache-{name}"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (name, done.stderr)
        outputs[name] = as_dict(read(data))
    assert outputs["remote"] == outputs["local"]
