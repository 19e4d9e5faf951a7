"""The demo behind ./scripts/demo (until `lambdacov demo` lands): see README.md."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import coverage
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = ROOT / "examples" / "orders-api"
BUCKET = "lambdacov-demo"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="lambdacov-demo-"))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    layer = work / "layer.zip"
    step(f"lambdacov build-layer --python {python} --output {layer}")
    subprocess.run([sys.executable, "-m", "lambdacov", "build-layer", "--python", python,
                    "--output", str(layer)], check=True)

    step("starting an embedded S3 (moto server on 127.0.0.1)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo",
           "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="demo", aws_secret_access_key="demo")
    s3.create_bucket(Bucket=BUCKET)
    try:
        events = json.loads((FUNCTION / "events.json").read_text())
        step(f"lambdacov local invoke: {len(events)} events, one warm environment, then SHUTDOWN")
        for index, event in enumerate(events):
            event_file = work / f"event-{index}.json"
            event_file.write_text(json.dumps(event))
        # One environment per event keeps the command simple; each delivers its own object.
        for index in range(len(events)):
            subprocess.run(
                [sys.executable, "-m", "lambdacov", "local", "invoke",
                 "--function-dir", str(FUNCTION), "--handler", "app.handler",
                 "--layer", str(layer), "--event-file", str(work / f"event-{index}.json"),
                 "--function-name", "orders-api",
                 "--env", f"COVERAGE_S3_BUCKET={BUCKET}",
                 "--env", "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper"],
                env=env, check=False,
            )
        step(f"objects in s3://{BUCKET}/coverage/")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        for key in keys:
            print(f"  {key}")
        step("combined coverage of the deployed function (coverage.py report)")
        combined = coverage.CoverageData(basename=str(work / ".coverage"))
        for index, key in enumerate(keys):
            part_path = work / f"part-{index}.coverage"
            s3.download_file(BUCKET, key, str(part_path))
            part = coverage.CoverageData(basename=str(part_path))
            part.read()
            combined.update(part)
        combined.write()
        cov = coverage.Coverage(data_file=str(work / ".coverage"))
        cov.load()
        os.chdir(FUNCTION)
        cov.report(show_missing=True)
        html = work / "htmlcov"
        cov.html_report(directory=str(html))
        print(f"\nHTML report: {html / 'index.html'}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
