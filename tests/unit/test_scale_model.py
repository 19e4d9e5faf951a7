"""docs/scale.md's cost/time model runs as printed, and its table is the model's output."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "scale.md"


def run_snippet() -> dict[str, Any]:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code[1], str(DOC), "exec"), namespace)
    return namespace


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shards | one shard alone | run | bottleneck | Lambda | S3 GET | S3 LIST | total / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['shards']:,} | {r['shard_s']} s | {r['run_s']} s | {r['bottleneck']} "
        f"| ${r['lambda']:.3f} | ${r['s3_get']:.3f} | ${r['s3_list']:.3f} | ${r['cost_usd']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines)


def test_the_model_runs_and_its_conclusions_hold() -> None:
    model = run_snippet()["model"]
    five, hundred = model(shards=5), model(shards=100)
    assert five["bottleneck"] == hundred["bottleneck"] == "S3 GETs per prefix"
    assert 180 < hundred["run_s"] < 185  # 1,000,000 / 5,500 GETs/s
    assert hundred["cost_usd"] > five["cost_usd"]  # more shards past the floor only add GB-s
    assert model(shards=1)["bottleneck"] == "per-shard GET latency"
    assert model(shards=2_000, concurrency=1_000)["run_s"] >= hundred["run_s"]
    assert round(model(shards=5)["s3_get"], 2) == 0.40


def test_the_documented_table_is_the_models_output() -> None:
    rows = run_snippet()["ROWS"]
    assert table(rows) in DOC.read_text(encoding="utf-8")
