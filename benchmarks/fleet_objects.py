"""How many S3 objects and PUTs a fleet produces: per-environment aggregation vs the rest.

Simulates a fleet of E execution environments serving I invocations each
(default 100 x 1,000) of the benchmark workload with varied events. Each
environment is a real process running the exec wrapper's engine and delivering
inline to a counting S3 endpoint on 127.0.0.1 (it accepts every PUT and counts
them and their distinct keys). Compared:

  naive                  one object per invocation (what a per-call upload writes): E x I
  COVERAGE_FLUSH=invocation   one object per invocation that ran new lines
  COVERAGE_FLUSH=environment  one object per environment, rewritten when coverage grows

    python benchmarks/fleet_objects.py [--environments 100] [--invocations 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from workload import write_workload  # noqa: E402

ENVIRONMENT = r"""
import json, random, sys
invocations, seed, function_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, function_dir)
import coverage_wrapper.handler as wrapped
random.seed(seed)
events = json.load(open(function_dir + "/events.json"))

class Context:
    def __init__(self, n): self.aws_request_id = f"{seed:04d}-{n:06d}"
    def get_remaining_time_in_millis(self): return 60000

for n in range(invocations):
    # Real traffic is skewed: most requests take the common path.
    event = events[0] if random.random() < 0.8 else random.choice(events)
    wrapped.lambda_handler(event, Context(n))
"""


class CountingS3:
    """Accepts every request; counts PUTs and the distinct keys they wrote."""

    def __init__(self) -> None:
        self.puts = 0
        self.keys: set[str] = set()
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    owner.puts += 1
                    owner.keys.add(self.path.split("?")[0])
                self.send_response(200)
                self.send_header("ETag", '"0"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def run_fleet(
    mode: str, environments: int, invocations: int, function_dir: Path
) -> tuple[int, int, float]:
    s3 = CountingS3()
    started = time.monotonic()

    def one(index: int) -> None:
        with tempfile.TemporaryDirectory() as spool:
            env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
            env.update(
                PYTHONPATH=os.pathsep.join([str(function_dir), str(ROOT / "src")]),
                AWS_ENDPOINT_URL=s3.endpoint,
                AWS_ACCESS_KEY_ID="x",
                AWS_SECRET_ACCESS_KEY="x",
                AWS_DEFAULT_REGION="us-east-1",
                COVERAGE_S3_BUCKET="fleet",
                COVERAGE_SPOOL_DIR=spool,
                COVERAGE_FLUSH=mode,
                # The data objects only: source snapshots are one PUT per file version
                # across the fleet, whatever the mode (and this endpoint answers no HEAD).
                COVERAGE_UPLOAD_SOURCES="false",
                LAMBDA_TASK_ROOT=str(function_dir),
                LAMBDACOV_ORIGINAL_HANDLER="app.handler",
                AWS_LAMBDA_FUNCTION_NAME="fleet",
            )
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    ENVIRONMENT,
                    str(invocations),
                    str(index),
                    str(function_dir),
                ],
                env=env,
                check=True,
            )

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, range(environments)))
    s3.server.shutdown()
    return s3.puts, len(s3.keys), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=100)
    parser.add_argument("--invocations", type=int, default=1000)
    args = parser.parse_args()
    function_dir = write_workload(Path(tempfile.mkdtemp(prefix="lambdacov-fleet-")))
    total = args.environments * args.invocations
    print(f"fleet: {args.environments} environments x {args.invocations} invocations = {total:,}")
    print(f"{'mode':28} {'PUTs':>9} {'objects':>9} {'objects/invocation':>19}")
    print(f"{'naive (one per invocation)':28} {total:9,} {total:9,} {1:19.4f}")
    for mode in ("invocation", "environment"):
        puts, objects, seconds = run_fleet(mode, args.environments, args.invocations, function_dir)
        print(
            f"{'COVERAGE_FLUSH=' + mode:28} {puts:9,} {objects:9,} {objects / total:19.4f}"
            f"   ({seconds:.0f} s)"
        )


if __name__ == "__main__":
    main()
