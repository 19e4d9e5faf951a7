"""Combine throughput: lambdacov against `coverage combine`, side by side in one run.

1. Merge of N distinct local data files (N = 1,000 and 5,000; lines and branches):
   ``coverage combine --keep`` against lambdacov's engine (read + merge + write),
   each a whole process; files/s, peak RSS, and whether the results are identical.
2. End to end from a moto server in its own process (E objects):
   ``lambdacov combine --html`` (list + download + merge + HTML) against
   ``aws s3 sync`` then ``coverage combine`` + ``coverage html``; the transfer floor
   (GET every object, 32 threads, nothing else) is measured too, so the ratio of
   the time beyond it is reported beside the whole-run ratio.
3. A second ``lambdacov combine`` with the ETag cache.

Each figure is the median of ``--repeat`` runs, the two sides taking turns, so
a comparison holds while the machine's speed drifts. Both sides run from
bytecode, as installed packages do (an editable checkout would otherwise be
compiled again in every process when PYTHONDONTWRITEBYTECODE is set).

    python benchmarks/combine_throughput.py [--sizes 1000,5000] [--e2e 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from coverage_datagen import generate  # noqa: E402

WORK = Path(os.environ.get("LAMBDACOV_BENCH_DIR", Path(tempfile.gettempdir()) / "lambdacov-bench"))
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

# Each side is a whole process, timed from outside: interpreter start and imports included.
# Both are given the same list of files on their command line.
LAMBDACOV_MERGE = r"""
import json, resource, sys
from pathlib import Path
from lambdacov.combine.merge import merge_local
paths = [Path(name) for name in sys.argv[3:]]
combined, skipped = merge_local(paths, workers=int(sys.argv[2]))
combined.write(Path(sys.argv[1]))
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"skipped": len(skipped), "rss_mb": max(own, workers) / 1024}))
"""

COVERAGE_COMBINE = r"""
import json, resource, subprocess, sys
subprocess.run([sys.executable, "-m", "coverage", "combine", "--keep", "-q",
                "--data-file=" + sys.argv[1], *sys.argv[2:]], check=True)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def precompile() -> None:
    """Write the bytecode of lambdacov's packages (the other side's is installed with it)."""
    import coverage_wrapper
    import lambdacov

    for package in (lambdacov, coverage_wrapper):
        folder = str(Path(package.__file__).parent)
        subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=True, env=ENV)


def run_json(code: str, *args: str) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=ENV
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    return result


def union(path: Path) -> dict[str, list[object]]:
    import coverage

    data = coverage.CoverageData(basename=str(path))
    data.read()
    return {
        name: sorted((data.arcs(name) if data.has_arcs() else data.lines(name)) or [])
        for name in data.measured_files()
    }


def merge_benchmark(sizes: list[int], repeat: int) -> list[dict[str, object]]:
    rows = []
    for branch in (False, True):
        for size in sizes:
            folder = WORK / f"files-{'arcs' if branch else 'lines'}-{size}"
            names = [str(path) for path in generate(folder, size, branch=branch)]
            ours_out = WORK / "ours.coverage"
            theirs_out = WORK / "theirs.coverage"
            ours_runs, theirs_runs, single_runs = [], [], []
            for _ in range(repeat):
                single_runs.append(run_json(LAMBDACOV_MERGE, str(ours_out), "1", *names))
                ours_runs.append(run_json(LAMBDACOV_MERGE, str(ours_out), "2", *names))
                theirs_out.unlink(missing_ok=True)
                theirs_runs.append(run_json(COVERAGE_COMBINE, str(theirs_out), *names))
            ours, theirs, single = map(median_of, (ours_runs, theirs_runs, single_runs))
            pairs = [
                t["seconds"] / o["seconds"] for t, o in zip(theirs_runs, ours_runs, strict=True)
            ]
            rows.append(
                {
                    "kind": "branch" if branch else "line",
                    "files": size,
                    "coverage_s": theirs["seconds"],
                    "lambdacov_s": ours["seconds"],
                    "lambdacov_1_process_s": single["seconds"],
                    "coverage_files_per_s": size / theirs["seconds"],
                    "lambdacov_files_per_s": size / ours["seconds"],
                    "ratio": theirs["seconds"] / ours["seconds"],
                    "ratio_range": [min(pairs), max(pairs)],
                    "coverage_rss_mb": theirs["rss_mb"],
                    "lambdacov_rss_mb": ours["rss_mb"],
                    "identical": union(ours_out) == union(theirs_out),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.1)
        else:
            return server, endpoint
    raise RuntimeError("moto server did not start")


def timed(command: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=ENV, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def e2e_benchmark(count: int, repeat: int) -> dict[str, object]:
    import boto3

    os.environ.update({k: v for k, v in ENV.items() if k.startswith("AWS_")})
    folder = WORK / f"files-lines-e2e-{count}"
    paths = generate(folder, count, branch=False, seed=11)
    source = folder / "source"
    server, endpoint = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda p: s3.put_object(
                        Bucket="bench",
                        Key=f"coverage/2024/01/{15 + hash(p.name) % 3:02d}/{p.name}",
                        Body=p.read_bytes(),
                    ),
                    paths,
                )
            )

        def floor() -> float:
            start = time.perf_counter()
            keys = [
                item["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench")
                for item in page.get("Contents", [])
            ]
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda k: s3.get_object(Bucket="bench", Key=k)["Body"].read(), keys))
            return time.perf_counter() - start

        aws = shutil.which("aws")
        if not aws:
            raise SystemExit("the AWS CLI (`aws`) is needed for the baseline")

        def lambdacov_run(scratch: Path) -> tuple[float, float]:
            """A first run (empty cache) and a second one (everything cached)."""
            command = [
                sys.executable, "-m", "lambdacov", "combine", "--bucket", "bench",
                "--endpoint-url", endpoint, "--region", "us-east-1",
                "--cache-dir", str(scratch / "cache"), "--source-root", str(source),
                "--html", str(scratch / "html-lambdacov"),
            ]  # fmt: skip
            return timed(command), timed(command)

        def baseline_run(scratch: Path) -> float:
            synced = scratch / "synced"
            rc = scratch / "rc"
            rc.write_text(f"[paths]\nsource =\n    {source}/\n    /var/task/\n")
            start = time.perf_counter()
            subprocess.run(
                [aws, "s3", "sync", "s3://bench/coverage/", str(synced), "--endpoint-url", endpoint,
                 "--only-show-errors"],
                check=True, env=ENV,
            )  # fmt: skip
            inputs = [str(p) for p in synced.rglob("*.coverage")]
            data_file = scratch / "baseline.coverage"
            subprocess.run(
                [sys.executable, "-m", "coverage", "combine", "--keep", "-q", f"--rcfile={rc}",
                 f"--data-file={data_file}", *inputs],
                check=True, env=ENV, cwd=scratch,
            )  # fmt: skip
            subprocess.run(
                [sys.executable, "-m", "coverage", "html", "-q", f"--rcfile={rc}",
                 f"--data-file={data_file}", "-d", str(scratch / "html-baseline")],
                check=True, env=ENV, cwd=scratch,
            )  # fmt: skip
            return time.perf_counter() - start

        runs = []
        for _ in range(repeat):
            scratch = Path(tempfile.mkdtemp(prefix="bench-e2e-", dir=WORK))
            transfer = floor()
            first, second = lambdacov_run(scratch)
            baseline = baseline_run(scratch)
            shutil.rmtree(scratch)
            runs.append(
                {
                    "transfer_floor_s": transfer,
                    "baseline_s": baseline,
                    "lambdacov_s": first,
                    "lambdacov_cached_s": second,
                    "whole_run_ratio": baseline / first,
                    "beyond_floor_ratio": (baseline - transfer) / max(first - transfer, 1e-3),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    result = {"objects": count, **median_of(runs)}
    result["beyond_floor_ratio_range"] = [
        min(run["beyond_floor_ratio"] for run in runs),
        max(run["beyond_floor_ratio"] for run in runs),
    ]
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="'' for none")
    parser.add_argument("--e2e", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    precompile()
    rows = merge_benchmark([int(n) for n in args.sizes.split(",") if n], args.repeat)
    print(
        f"\nmedians of {args.repeat} runs\n"
        "| data | files | coverage combine | lambdacov (2 proc) | ratio (range) "
        "| lambdacov (1 proc) | files/s (cov / lc) | peak RSS MB (cov / lc) | identical |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        low, high = r["ratio_range"]  # type: ignore[misc]
        print(
            f"| {r['kind']} | {r['files']:,} | {r['coverage_s']:.2f} s | {r['lambdacov_s']:.2f} s "
            f"| {r['ratio']:.1f}x ({low:.1f}-{high:.1f}) | {r['lambdacov_1_process_s']:.2f} s "
            f"| {r['coverage_files_per_s']:.0f} / {r['lambdacov_files_per_s']:.0f} "
            f"| {r['coverage_rss_mb']:.0f} / {r['lambdacov_rss_mb']:.0f} | {r['identical']} |"
        )
    if args.e2e:
        e = e2e_benchmark(args.e2e, args.repeat)
        low, high = e["beyond_floor_ratio_range"]  # type: ignore[misc]
        print(
            f"\nend to end, {e['objects']:,} objects from moto, medians of {args.repeat} runs: "
            f"transfer floor {e['transfer_floor_s']:.2f} s; aws s3 sync + coverage combine + html "
            f"{e['baseline_s']:.2f} s; lambdacov combine --html {e['lambdacov_s']:.2f} s "
            f"({e['whole_run_ratio']:.2f}x whole run, "
            f"{e['beyond_floor_ratio']:.1f}x beyond the floor, "
            f"{low:.1f}-{high:.1f} over the runs); "
            f"second run with the cache {e['lambdacov_cached_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
