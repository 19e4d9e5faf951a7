"""What writing one data file to S3 costs a fresh process: boto3 against coverage_wrapper.s3_client.

The layer uploads from the function's runtime process, after the first
response; on a cold start it pays for every import before that upload. Each
variant here runs in a new process (medians of --runs, the variants
interleaved) and puts one object, with SSE and metadata as the layer does, to
a moto server this script starts on 127.0.0.1:

  nothing (the floor) the interpreter (and the setup) starting and exiting
  boto3               import boto3; boto3.client("s3").put_object(...)
  s3_client           from coverage_wrapper.s3_client import S3Client; ...put_object(...)
  s3_client + TLS     the same, plus ssl.create_default_context(): what an https
                      endpoint (S3 itself) adds to it; boto3 loads its CA bundle then too

"process" is the wall time from spawn to exit, "import + put" the time
inside the child from its first line to the answer, "peak RSS" the child's
VmHWM (/proc/self/status). Every object is checked to be in the bucket.

A second table runs the same after ``import coverage_wrapper.engine``
(outside the "import + put" time): what the client costs a runtime that has
already started the layer's recording.

    .venv/bin/python benchmarks/s3_client_cost.py [--runs 7] [--size 32768]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench"

PROLOGUE = """
import time
started = time.perf_counter()
import os, sys, json
body = os.urandom(int(sys.argv[1]))
key = sys.argv[2]
metadata = {"lambdacov-version": "0.1.0", "function": "bench", "measurement": "lines"}
"""
EPILOGUE = """
took = time.perf_counter() - started
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": took, "hwm_kib": hwm}))
"""
VARIANTS = {
    "nothing (the floor)": "key = None",
    "boto3": """
import boto3
boto3.client("s3").put_object(
    Bucket="bench", Key=key, Body=body, ContentType="application/vnd.sqlite3",
    Metadata=metadata, ServerSideEncryption="AES256",
)
""",
    "s3_client": """
from coverage_wrapper.s3_client import S3Client
S3Client.from_environment().put_object(
    "bench", key, body, content_type="application/vnd.sqlite3",
    metadata=metadata, sse="AES256",
)
""",
    "s3_client + TLS": """
import ssl
ssl.create_default_context()
from coverage_wrapper.s3_client import S3Client
S3Client.from_environment().put_object(
    "bench", key, body, content_type="application/vnd.sqlite3",
    metadata=metadata, sse="AES256",
)
""",
}


SETUPS = {
    "a bare process": "",
    "after the runtime's imports": "import coverage_wrapper.engine",
}


def run_child(
    setup: str, code: str, size: int, key: str, env: dict[str, str]
) -> tuple[float, float, int]:
    """(process wall seconds, in-child seconds, peak RSS KiB) of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", setup + PROLOGUE + code + EPILOGUE, str(size), key],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, report["seconds"], report["hwm_kib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=32768, help="object size in bytes")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "src"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    cases = [(setup, name) for setup in SETUPS for name in VARIANTS]
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {c: [] for c in cases}
    try:
        for setup, name in cases:  # a first run each: .pyc written, caches warm
            run_child(SETUPS[setup], VARIANTS[name], args.size, f"warmup/{setup}/{name}", env)
        for run in range(args.runs):
            for setup, name in cases:
                key = f"run-{run}/{setup}/{name}"
                found = run_child(SETUPS[setup], VARIANTS[name], args.size, key, env)
                samples[setup, name].append(found)
                if name != "nothing (the floor)":
                    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == args.size
    finally:
        server.stop()

    print(
        f"Python {sys.version.split()[0]}, {args.size} B object, "
        f"median of {args.runs} fresh processes each"
    )
    for setup in SETUPS:
        print(f"\n{setup}:\n")
        print("| variant | process (ms) | import + put (ms) | peak RSS (MiB) |")
        print("| --- | ---: | ---: | ---: |")
        for name in VARIANTS:
            found = samples[setup, name]
            wall = statistics.median(s[0] for s in found) * 1000
            inside = statistics.median(s[1] for s in found) * 1000
            rss = statistics.median(s[2] for s in found) / 1024
            print(f"| {name} | {wall:.0f} | {inside:.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()
