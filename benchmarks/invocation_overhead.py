"""Per-invocation overhead and cold start of lambdacov, side by side in one run.

For each Python (3.11, 3.12, 3.13 when found), on the same warm handler
(examples/orders-api, a mix of its events):

  none        the handler alone
  naive       a new coverage.Coverage() started, stopped and saved around each call
  lambdacov   the exec wrapper's engine: coverage running all along, a checkpoint,
              spooling, and the hand-over to the courier or the "done" line to the
              extension after each call (uploads themselves are left out: S3 is
              not part of this benchmark)
  lambdacov (ctrace)   the same with coverage's C tracer forced (3.12+ default to sysmon)

"own" is lambdacov's cost per invocation without tracing: the checkpoint,
spool and notification, timed alone. Cold start: whole-process time to import
the function through the wrapper, against a bare import and against
`import coverage; Coverage().start()`, with the layer's precompiled .pyc.

    python benchmarks/invocation_overhead.py [--calls 3000] [--pythons 3.11,3.12,3.13]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from workload import write_workload  # noqa: E402

ORDERS = write_workload(Path(tempfile.mkdtemp(prefix="lambdacov-bench-")))

CHILD = r"""
import json, os, sys, tempfile, time
variant, calls, orders = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, orders)
events = json.load(open(os.path.join(orders, "events.json")))
events = [e for e in events if e.get("action") != "crash"]

class Context:
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self): return 60000

def timed(fn):
    for i in range(200):  # warm-up: every path seen, caches filled
        fn(events[i % len(events)])
    samples = []
    for i in range(calls):
        event = events[i % len(events)]
        start = time.perf_counter_ns()
        fn(event)
        samples.append(time.perf_counter_ns() - start)
    return samples

own = []
if variant == "none":
    import app
    samples = timed(lambda e: app.handler(e, Context()))
elif variant == "naive":
    import coverage
    import app
    data = os.path.join(tempfile.mkdtemp(), "naive.coverage")
    def naive(event):
        cov = coverage.Coverage(data_file=data, include=[orders + "/*"], config_file=False)
        cov.start()
        try:
            return app.handler(event, Context())
        finally:
            cov.stop()
            cov.save()
    samples = timed(naive)
else:
    from coverage_wrapper.spool import SpoolDirectory
    spool = SpoolDirectory(__import__("pathlib").Path(os.environ["COVERAGE_SPOOL_DIR"]))
    spool.ensure()
    os.mkfifo(spool.fifo_path)
    # Stands in for the extension: holds the FIFO open and reads what the runtime says.
    listener = os.open(spool.fifo_path, os.O_RDWR | os.O_NONBLOCK)
    def drain():
        try:
            os.read(listener, 65536)
        except BlockingIOError:
            pass
    import coverage_wrapper.handler as wrapped
    engine = wrapped._engine
    engine._deliver_pass = lambda deadline: False  # stands in for S3: an upload that succeeds
    original = wrapped._original
    context = Context()
    def measured(event):
        try:
            return original(event, context)
        finally:
            start = time.perf_counter_ns()
            engine.end_invocation("bench", context)
            own.append(time.perf_counter_ns() - start)
            drain()
    samples = timed(measured)
    own = own[200:]
print(json.dumps({"samples": samples, "own": own}))
"""


def find_python(version: str) -> str | None:
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}")):
        return candidate
    if sys.version.startswith(version + "."):
        return sys.executable
    return None


def child_env(python: str, spool: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "PYTHON"))}
    env.update(
        # src/ stands for the layer's /opt/python; the function's dir for /var/task.
        PYTHONPATH=os.pathsep.join([str(ORDERS), str(ROOT / "src"), site_packages(python)]),
        COVERAGE_S3_BUCKET="bench-bucket",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # never AWS: nothing here is meant to reach S3
        COVERAGE_SPOOL_DIR=spool,
        LAMBDA_TASK_ROOT=str(ORDERS),
        LAMBDACOV_ORIGINAL_HANDLER="app.handler",
        AWS_LAMBDA_FUNCTION_NAME="orders",
        **extra,
    )
    return env


_SITE: dict[str, str] = {}


def site_packages(python: str) -> str:
    """Where coverage is installed for ``python`` (the benchmark installs it if missing)."""
    if python not in _SITE:
        target = Path(tempfile.gettempdir()) / f"lambdacov-bench-{Path(python).name}"
        if not (target / "coverage").exists():
            import importlib.metadata

            version = importlib.metadata.version("coverage")
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--target",
                    str(target),
                    f"coverage=={version}",
                ],
                check=True,
            )
        _SITE[python] = str(target)
    return _SITE[python]


def run_variant(python: str, variant: str, calls: int, extra: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as spool:
        out = subprocess.run(
            [python, "-c", CHILD, variant, str(calls), str(ORDERS)],
            env=child_env(python, spool, extra),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    result = {"ms": statistics.mean(doc["samples"]) / 1e6}
    if doc["own"]:
        result["own_ms"] = statistics.mean(doc["own"]) / 1e6
    return result


def cold_start(python: str, runs: int) -> dict[str, float]:
    """Median whole-process seconds for three ways of starting the function."""
    scripts = {
        "bare import": "import sys; sys.path.insert(0, sys.argv[1]); import app",
        "coverage start + import": (
            "import sys; sys.path.insert(0, sys.argv[1]); import coverage; "
            "coverage.Coverage(data_file=None, config_file=False).start(); import app"
        ),
        "lambdacov wrapper + import": "import coverage_wrapper.handler",
    }
    results = {}
    with tempfile.TemporaryDirectory() as spool:
        env = child_env(python, spool, {})
        for name, script in scripts.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                subprocess.run([python, "-c", script, str(ORDERS)], env=env, check=True)
                times.append(time.perf_counter() - start)
            results[name] = statistics.median(times) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--cold-runs", type=int, default=15)
    parser.add_argument("--pythons", default="3.11,3.12,3.13")
    args = parser.parse_args()
    print(f"{'python':8} {'variant':22} {'ms/call':>9} {'x none':>8} {'own ms':>8}")
    for version in args.pythons.split(","):
        python = find_python(version)
        if python is None:
            print(f"{version:8} not found")
            continue
        variants = [("none", {}), ("naive", {}), ("lambdacov", {})]
        if version != "3.11":
            variants.append(("lambdacov (ctrace)", {"COVERAGE_CORE": "ctrace"}))
        base = None
        for name, extra in variants:
            result = run_variant(python, name.split()[0], args.calls, extra)
            base = base or result["ms"]
            own = f"{result['own_ms']:8.3f}" if "own_ms" in result else f"{'':8}"
            print(f"{version:8} {name:22} {result['ms']:9.3f} {result['ms'] / base:8.2f} {own}")
        for name, ms in cold_start(python, args.cold_runs).items():
            print(f"{version:8} cold: {name:28} {ms:7.1f} ms")


if __name__ == "__main__":
    main()
