"""Local combine vs remote (emulated) combine, and the per-object costs of the scale model.

For each size N: N distinct data files (benchmarks/coverage_datagen.py) spread
over 4 closed days and 3 functions are uploaded to a moto server in its own
process. Then, each timed:

- ``combine`` (local): list + download (16 threads) + merge, cold cache;
- ``combine_remote`` with the local executor: 4 LocalLambda environments
  running the layer's combiner handler, shards of about N/8 objects, the
  partials reduced and merged here; the result is checked identical to the
  local one;
- the same again: every day is closed, so every kept day partial is reused.

moto serves ~130 GETs/s on this 2-core machine and every emulated shard shares
those 2 cores, so the emulated fan-out measures correctness and overheads, not
AWS's throughput; docs/scale.md turns the per-object costs into AWS figures.

    python benchmarks/remote_combine.py [--sizes 5000,20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from combine_throughput import ENV, WORK, start_moto  # noqa: E402
from coverage_datagen import generate  # noqa: E402

DAYS = ("2024/03/01", "2024/03/02", "2024/03/03", "2024/03/04")


def upload(s3: object, paths: list[Path]) -> float:
    def put(item: tuple[int, Path]) -> None:
        index, path = item
        key = f"coverage/{DAYS[index % len(DAYS)]}/{path.name}"
        s3.put_object(Bucket="bench", Key=key, Body=path.read_bytes())  # type: ignore[attr-defined]

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, enumerate(paths)))
    return time.perf_counter() - start


def merge_cost(paths: list[Path]) -> float:
    """Milliseconds to read and merge one object with the engine (no network)."""
    from coverage_wrapper.datafiles import Merger, read_data_file

    merger = Merger()
    start = time.perf_counter()
    for path in paths:
        merger.add(read_data_file(path))
    return (time.perf_counter() - start) * 1000 / len(paths)


def run(count: int, instances: int) -> dict[str, float]:
    import boto3

    from lambdacov.combine.merge import CombineRequest, combine
    from lambdacov.combine.remote import LocalInvoker, RemoteSettings, combine_remote
    from lambdacov.combine.remote.executor import host_layer

    os.environ.update({k: v for k, v in ENV.items() if k.startswith("AWS_")})
    paths = generate(WORK / f"files-lines-remote-{count}", count, branch=False, seed=13)
    source = WORK / f"files-lines-remote-{count}" / "source"
    server, endpoint = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        uploaded = upload(s3, paths)
        with tempfile.TemporaryDirectory() as scratch:
            request = CombineRequest(
                bucket="bench", source_root=source, cache_dir=Path(scratch) / "cache"
            )
            start = time.perf_counter()
            local = combine(s3, request)
            local_s = time.perf_counter() - start

            layer = host_layer(Path(scratch))
            env = {"AWS_ENDPOINT_URL": endpoint}
            with LocalInvoker(layer, instances=instances, env=env) as invoker:
                invoker.warm_up()
                settings = RemoteSettings(shards=8)
                start = time.perf_counter()
                remote = combine_remote(s3, invoker, request, settings)
                remote_s = time.perf_counter() - start
                start = time.perf_counter()
                again = combine_remote(s3, invoker, request, settings)
                again_s = time.perf_counter() - start
        identical = (
            remote.result.combined == local.combined
            and remote.result.inputs == local.inputs
            and again.result.combined == local.combined
        )
    finally:
        server.terminate()
        server.wait()
    return {
        "objects": count,
        "upload_s": round(uploaded, 1),
        "local_s": round(local_s, 1),
        "remote_s": round(remote_s, 1),
        "remote_shards": remote.stats.shards,
        "remote_invocations": remote.stats.invocations,
        "incremental_s": round(again_s, 2),
        "incremental_invocations": again.stats.invocations,
        "reused_days": again.stats.reused_days,
        "identical": identical,
        "merge_ms_per_object": round(merge_cost(paths[:2000]), 3),
        "get_per_s_local": round(count / local_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--instances", type=int, default=4)
    args = parser.parse_args()
    print(f"# {platform.python_version()} on {os.cpu_count()} cores", flush=True)
    for size in (int(n) for n in args.sizes.split(",")):
        print(json.dumps(run(size, args.instances)), flush=True)


if __name__ == "__main__":
    main()
