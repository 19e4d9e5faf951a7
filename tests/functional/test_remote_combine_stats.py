"""`lambdacov combine --remote` says what the fan-out did: shards, days kept and reused."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_combine_s3 import cli_args, put_data, run_cli
from tests.support.combine_data import ORDERS, random_measurement

pytestmark = pytest.mark.e2e

STATS = re.compile(
    r"^remote run \S+: (?P<shards>\d+) shard\(s\) over (?P<days>\d+) day\(s\)(?P<rest>.*)$"
)


def stats_line(stderr: str) -> re.Match[str]:
    found = [match for line in stderr.splitlines() if (match := STATS.match(line))]
    assert len(found) == 1, stderr
    return found[0]


def test_the_remote_combine_reports_its_fan_out_then_reuses_the_kept_days(
    moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(7)
    for day in ("2024/01/15", "2024/01/16"):
        put_data(s3, bucket, tmp_path, random_measurement(ORDERS, rng), day=day)
    remote = ["--remote", "--executor", "local", "--data-file", str(tmp_path / "c.coverage")]
    args = cli_args(moto_endpoint, bucket, tmp_path, *remote)

    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    first = stats_line(stderr)
    # Both days are long closed: each is combined once and its partial kept for later runs.
    assert (first["shards"], first["days"]) == ("2", "2")
    assert first["rest"] == ", 2 kept, 2 invocation(s), 2 partial(s) merged here"

    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    second = stats_line(stderr)
    assert (second["shards"], second["days"]) == ("0", "2")
    assert second["rest"] == ", 2 reused, 0 invocation(s), 2 partial(s) merged here"
