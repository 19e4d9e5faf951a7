"""Cold start, memory and delivery cost of the layer, measured in the local Lambda.

For each Python (3.11, 3.12, 3.13 when found), the benchmark workload
(benchmarks/workload.py) runs in lambdacov's local Lambda (the real awslambdaric,
real extensions, frozen between invocations) bare and with the layer built as
`lambdacov build-layer` builds it (exec wrapper and extension, delivering to a
moto server on 127.0.0.1), interleaved: bare, layered, bare, layered... for
--rounds rounds, each round in a fresh environment. Per environment:

  init            from the environment's start until the runtime and every extension
                  wait in /next (the emulator's Environment.started_at to ready_at)
  peak memory     the sum of VmHWM (peak resident set) over the runtime's and the
                  extensions' processes, read from /proc just before shutdown
  first response  from the first invocation's event to its response (the runtime's
                  POST): what the caller of a cold function waits for after init
  first delivery  from the first response until the environment is idle again (every
                  process back in /next): what Lambda bills after the response
  warm per call   median Duration (the invoke phase, as REPORT shows it) of --calls
                  warm invocations

The table shows medians over the rounds (bare -> layered, the difference and
the ratio), then their ranges. The first use of a Python builds the emulator's
runtime venv for it (see lambdacov.local.runtime_env).

--https runs moto over TLS, with a certificate for 127.0.0.1 added to a copy of the
system's trust store (SSL_CERT_FILE): the layer then pays what S3's own endpoint costs it,
`ssl` and the trust store included.

--against REV adds a third environment to each round: the layer as the git revision REV
builds it (its src/ exported with `git archive`), so a change is measured against what
it changes, side by side in one run; a last table shows what each layer adds to the bare
function.

    python benchmarks/cold_start.py [--rounds 7] [--calls 200] [--pythons 3.11,3.12,3.13]
                                    [--against REV] [--https] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from lambdacov.errors import EmulatorError
from lambdacov.layer import build_layer
from lambdacov.layer.targets import host_arch
from lambdacov.local import LocalLambda, find_python

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from workload import write_workload  # noqa: E402

BUCKET = "lambdacov-cold-start"
VARIANTS = ("bare", "layered", "baseline")
# Builds a layer with the lambdacov on PYTHONPATH (the baseline's tree): version, target.
BUILD = (
    "import sys; from pathlib import Path; from lambdacov.layer import build_layer; "
    "from lambdacov.layer.targets import host_arch; "
    "build_layer(sys.argv[1], host_arch(), Path(sys.argv[2]))"
)
# (key, column title, decimals, whether a ratio means something: a bare environment
# has nothing to deliver, so its first delivery is ~0)
METRICS = (
    ("init_ms", "init (ms)", 1, True),
    ("first_response_ms", "first response (ms)", 1, True),
    ("peak_memory_mb", "peak memory (MB)", 1, True),
    ("first_delivery_ms", "first delivery (ms)", 1, False),
    ("warm_ms", "warm per call (ms)", 3, True),
)


@contextlib.contextmanager
def moto_server(tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """moto's server in its own process on 127.0.0.1, so it never competes with the
    emulator for this process's GIL; over TLS with ``tls`` (certificate, key); yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ["-s", "-c", str(tls[0]), "-k", str(tls[1])] if tls else []
    context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1, context=context).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def loopback_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1, its key, and a trust store: the system's and it."""
    sys.path.insert(0, str(ROOT))  # the tests' helper, shared
    from tests.support.tls import self_signed

    cert_file, key_file = self_signed(directory)
    paths = ssl.get_default_verify_paths()
    system = Path(paths.cafile or paths.openssl_cafile)
    if not system.is_file():  # no system bundle here: the loading costs less than on Lambda
        print(f"no system trust store at {system}: the certificate alone", file=sys.stderr)
    trusted = system.read_bytes() + b"\n" if system.is_file() else b""
    trust_store = directory / "trust-store.pem"
    trust_store.write_bytes(trusted + cert_file.read_bytes())
    return cert_file, key_file, trust_store


def peak_resident_mb(pid: int) -> float:
    """VmHWM: the process's own peak (ru_maxrss of an exec'd child inherits its parent's)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def one_environment(
    python: str,
    function_dir: Path,
    events: list[dict[str, Any]],
    calls: int,
    layer: Path | None,
    env: dict[str, str],
) -> dict[str, float]:
    """Start an environment, invoke it 1 + ``calls`` times, and measure it."""
    with LocalLambda(
        function_dir, "app.handler", layer=layer, python=python, env=env, function_name="orders"
    ) as function:
        first = function.invoke(events[0])
        environment = function.environment
        assert environment is not None and first.ok, first.error
        ready, idle = environment.ready_at, environment.idle_since()
        response = environment.response_at(first.request_id)
        assert ready is not None and idle is not None and response is not None
        warm, last = [], first
        for index in range(calls):
            last = function.invoke(events[index % len(events)])
            assert last.ok and function.environment is environment, last.error
            warm.append(last.duration_ms)
        peak = sum(peak_resident_mb(proc.pid) for proc in environment.processes)
        return {
            "init_ms": (ready - environment.started_at) * 1000,
            "first_response_ms": first.runtime_duration_ms,
            "peak_memory_mb": peak,
            "first_delivery_ms": (idle - response) * 1000,
            "warm_ms": statistics.median(warm),
            "max_memory_used_mb": last.max_memory_used_mb,  # REPORT's, for comparison
        }


def _is_commit(revision: str) -> bool:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def baseline_layer(revision: str, version: str, scratch: Path) -> Path:
    """The layer for ``version`` as the git revision ``revision`` builds it."""
    tree = scratch / "baseline-tree"
    if not tree.exists():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    target = scratch / f"baseline-{version}.zip"
    subprocess.run(
        [sys.executable, "-c", BUILD, version, str(target)],
        env={**os.environ, "PYTHONPATH": str(tree / "src")},
        check=True,
    )
    return target


def measure(
    version: str,
    rounds: int,
    calls: int,
    endpoint: str,
    scratch: Path,
    against: str | None,
    trust_store: Path | None,
) -> dict[str, Any]:
    """The variants of one Python, interleaved over ``rounds`` fresh environments."""
    function_dir = write_workload(scratch / "function")
    events = json.loads((function_dir / "events.json").read_text())
    layer = build_layer(version, host_arch(), scratch / f"layer-{version}.zip").path
    layered_env = {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper",
        "COVERAGE_S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL": endpoint,
    }
    if trust_store:
        layered_env["SSL_CERT_FILE"] = str(trust_store)
    layers: dict[str, Path | None] = {"bare": None, "layered": layer}
    if against:
        layers["baseline"] = baseline_layer(against, version, scratch)
    samples: dict[str, list[dict[str, float]]] = {variant: [] for variant in layers}
    for number in range(rounds):
        print(f"python {version}: round {number + 1}/{rounds}", file=sys.stderr)
        for variant, used in layers.items():
            samples[variant].append(
                one_environment(
                    version, function_dir, events, calls, used, layered_env if used else {}
                )
            )
    return {
        variant: {key: summary([run[key] for run in runs]) for key in runs[0]}
        for variant, runs in samples.items()
    }


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def markdown(results: dict[str, dict[str, Any]], rounds: int, calls: int) -> str:
    head = "| Python | " + " | ".join(title for _, title, _, _ in METRICS) + " |"
    rule = "|---" * (len(METRICS) + 1) + "|"
    lines = [
        f"Medians of {rounds} rounds, bare → layered (difference, ratio); "
        f"warm: median of {calls} calls per round.",
        "",
        head,
        rule,
    ]
    for version, variants in results.items():
        cells = []
        for key, _, digits, ratio in METRICS:
            bare, layered = variants["bare"][key]["median"], variants["layered"][key]["median"]
            cell = f"{bare:.{digits}f} → {layered:.{digits}f} ({layered - bare:+.{digits}f}"
            cells.append(cell + (f", {layered / bare:.2f}x)" if ratio else ")"))
        lines.append(f"| {version} | " + " | ".join(cells) + " |")
    ranges_head = head.replace("Python", "Python, variant")
    lines += ["", "Ranges (min-max over the rounds):", "", ranges_head, rule]
    for version, variants in results.items():
        for variant in [v for v in VARIANTS if v in variants]:
            cells = [
                f"{variants[variant][key]['min']:.{digits}f}-{variants[variant][key]['max']:.{digits}f}"
                for key, _, digits, _ in METRICS
            ]
            lines.append(f"| {version} {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def added(results: dict[str, dict[str, Any]], against: str) -> str:
    """What each layer adds to the bare function, the baseline's and this one's (medians)."""
    head = "| Python | " + " | ".join(title for _, title, _, _ in METRICS) + " |"
    lines = [
        f"Added to the bare function: the layer of {against} → this layer (medians).",
        "",
        head,
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for version, variants in results.items():
        cells = []
        for key, _, digits, _ in METRICS:
            bare = variants["bare"][key]["median"]
            before = variants["baseline"][key]["median"] - bare
            after = variants["layered"][key]["median"] - bare
            cells.append(f"{before:+.{digits}f} → {after:+.{digits}f}")
        lines.append(f"| {version} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--pythons", default="3.11,3.12,3.13")
    parser.add_argument("--against", help="a git revision whose layer runs beside this one")
    parser.add_argument("--https", action="store_true", help="moto over TLS, as S3 is")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args()
    if args.against and not _is_commit(args.against):
        parser.error(f"--against {args.against!r}: not a commit of this repository")
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        cert_file, key_file, trust_store = (
            loopback_certificate(Path(scratch)) if args.https else (None, None, None)
        )
        tls = (cert_file, key_file) if cert_file and key_file else None
        endpoint = stack.enter_context(moto_server(tls))
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            verify=str(cert_file) if cert_file else None,
            region_name="us-east-1",
            aws_access_key_id="testing",  # moto accepts any key
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=BUCKET)
        for version in args.pythons.split(","):
            try:
                find_python(version)
            except EmulatorError:
                print(f"python {version}: not found, skipped", file=sys.stderr)
                continue
            workdir = Path(scratch) / version
            results[version] = measure(
                version,
                args.rounds,
                args.calls,
                endpoint,
                workdir,
                args.against,
                trust_store,
            )
    if args.json:
        print(json.dumps({"rounds": args.rounds, "calls": args.calls, "results": results}))
    else:
        print(markdown(results, args.rounds, args.calls))
        if args.against:
            print("\n" + added(results, args.against))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the environments and moto are stopped on the way out
        sys.exit(130)
