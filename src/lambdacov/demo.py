"""`lambdacov demo`: the whole product on one machine, with no AWS account.

An embedded AWS (moto server, in this process) gets a bucket and a role; the
example function is deployed to it; then the very commands a user runs on AWS
(`build-layer`, `publish-layer`, `attach`, `doctor`, `combine`) run against it
as subprocesses, so the demo shows real commands with real output. Invocations
run in the local Lambda emulator with the configuration `attach` wrote (layer,
variables, exec wrapper), read back from the embedded AWS. Nothing here
prints: each step is reported to a callback, and the CLI renders it.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lambdacov.errors import UsageError
from lambdacov.layer.targets import host_arch, host_python
from lambdacov.local import LocalLambda
from lambdacov.local.embedded_aws import FAKE_CREDENTIALS, EmbeddedAws

FUNCTION_NAME = "orders-api"
BUCKET = "lambdacov-demo"
ROLE = "lambdacov-demo-orders-api"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: what ran, what it said, how long it took."""

    title: str
    command: str = ""  # the lambdacov command line, when the step is one
    output: str = ""
    seconds: float = 0.0
    ok: bool = True


@dataclass
class DemoResult:
    """Where the demo left its results."""

    workdir: Path
    endpoint_url: str
    steps: list[DemoStep] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    report_json: Path | None = None
    html_index: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every step succeeded."""
        return all(step.ok for step in self.steps)


def example_function() -> Path:
    """The demo's function: shipped in the wheel, or examples/ in a source checkout."""
    shipped = Path(str(resources.files("lambdacov"))) / "examples" / "orders-api"
    if (shipped / "app.py").exists():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / "examples" / "orders-api"
    if (checkout / "app.py").exists():
        return checkout
    raise UsageError("the demo's example function is missing", "reinstall lambdacov")


def demo_events(function_dir: Path, invocations: int) -> list[dict[str, Any]]:
    """The example's events, cycled to ``invocations`` of them."""
    events: list[dict[str, Any]] = json.loads((function_dir / "events.json").read_text())
    return [events[i % len(events)] for i in range(invocations)]


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


class Demo:
    """Runs the steps in order; each step is reported to ``on_step`` as it ends."""

    def __init__(
        self,
        workdir: Path,
        *,
        invocations: int = 14,
        python: str | None = None,
        wheel_dir: Path | None = None,
        columns: int = 100,
        on_step: Callable[[DemoStep], None] | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.invocations = invocations
        self.python = python or host_python()
        self.arch = host_arch()
        self.wheel_dir = wheel_dir
        self.columns = columns  # the width the commands' tables are laid out for
        self.on_step = on_step or (lambda step: None)
        self.function_dir = example_function()
        self.aws = EmbeddedAws()

    # -- the steps --------------------------------------------------------------------------

    def run(self) -> DemoResult:
        """Run every step; the embedded AWS is left running (call :meth:`stop`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.aws.start()
        result = DemoResult(self.workdir, self.aws.endpoint_url)
        self._report(
            result,
            DemoStep(
                "Started an embedded AWS (moto server) on "
                f"{self.aws.endpoint_url}: S3, Lambda, IAM, Logs, CloudWatch",
                seconds=time.monotonic() - started,
            ),
        )
        for step in self._steps(result):
            self._report(result, step)
            if not step.ok:
                break
        return result

    def stop(self) -> None:
        """Stop the embedded AWS."""
        self.aws.stop()

    def _report(self, result: DemoResult, step: DemoStep) -> None:
        result.steps.append(step)
        self.on_step(step)

    def _steps(self, result: DemoResult) -> Iterator[DemoStep]:
        layer = self.workdir / f"lambdacov-py{self.python.replace('.', '')}-{self.arch}.zip"
        yield self._setup_account()
        build = ["build-layer", "--python", self.python, "--arch", self.arch, "-o", str(layer)]
        if self.wheel_dir:
            build += ["--wheel-dir", str(self.wheel_dir)]
        yield self._lambdacov("Built the layer for this machine's Python", build)
        yield self._lambdacov(
            "Published it (idempotent: the same content is never published twice)",
            ["publish-layer", "--zip", str(layer)],
        )
        yield self._deploy()
        yield self._lambdacov(
            "Attached lambdacov: layer, COVERAGE_* variables, exec wrapper, least-privilege "
            "policy (detach undoes exactly this)",
            [
                "attach",
                FUNCTION_NAME,
                "--bucket",
                BUCKET,
                "--grant",
            ],
        )
        yield self._invoke(result, layer)
        yield self._lambdacov(
            "Ran every check of the troubleshooting guide",
            ["doctor", FUNCTION_NAME],
            ok_codes=(0, 1),
        )
        report = self.workdir / "coverage.json"
        html = self.workdir / "htmlcov"
        step = self._lambdacov(
            "Combined the objects into coverage.py's reports",
            [
                "combine",
                "--bucket",
                BUCKET,
                "--source-root",
                ".",
                "--html",
                str(html),
                "--json",
                str(report),
            ],
            cwd=self.function_dir,  # so the report names files as the repository does
        )
        if step.ok:
            result.report_json = report
            result.html_index = html / "index.html"
        yield step

    def _setup_account(self) -> DemoStep:
        started = time.monotonic()
        context = self.aws.context()
        context.client("s3").create_bucket(Bucket=BUCKET)
        context.client("iam").create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
        return DemoStep(
            f"Created the bucket s3://{BUCKET} and the function's role {ROLE}",
            seconds=time.monotonic() - started,
        )

    def _deploy(self) -> DemoStep:
        started = time.monotonic()
        context = self.aws.context()
        role = context.client("iam").get_role(RoleName=ROLE)["Role"]["Arn"]
        context.client("lambda").create_function(
            FunctionName=FUNCTION_NAME,
            Runtime=f"python{self.python}",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _zip_directory(self.function_dir)},
            Architectures=[self.arch],
            MemorySize=512,
            Timeout=30,
            Environment={"Variables": {"STAGE": "demo"}},
        )
        return DemoStep(
            f"Deployed the example function {FUNCTION_NAME} ({self.function_dir.name}, "
            f"python{self.python}, {self.arch})",
            seconds=time.monotonic() - started,
        )

    def _invoke(self, result: DemoResult, layer: Path) -> DemoStep:
        """Run the function as deployed: the configuration attach wrote, in the emulator."""
        started = time.monotonic()
        configuration = (
            self.aws.context()
            .client("lambda")
            .get_function_configuration(FunctionName=FUNCTION_NAME)
        )
        env = dict(configuration.get("Environment", {}).get("Variables", {}))
        env["AWS_ENDPOINT_URL"] = self.aws.endpoint_url  # the function's S3 is the embedded one
        result.events = demo_events(self.function_dir, self.invocations)
        half = len(result.events) // 2
        lines = []
        outcomes = {"ok": 0, "error": 0}
        log_lines: list[tuple[int, str]] = []
        # Two execution environments: warm reuse in each, a SHUTDOWN between them.
        for batch in (result.events[:half], result.events[half:]):
            with LocalLambda(
                self.function_dir,
                configuration["Handler"],
                layer=layer,
                python=self.python,
                env=env,
                timeout=float(configuration.get("Timeout", 30)),
                memory_mb=int(configuration.get("MemorySize", 128)),
                function_name=FUNCTION_NAME,
            ) as function:
                for event in batch:
                    outcome = function.invoke(event)
                    outcomes["ok" if outcome.error is None else "error"] += 1
                function.shutdown()
                log_lines += [(int(line.timestamp * 1000), line.text) for line in function.logs]
        self._ship_logs(log_lines)
        keys = [
            item["Key"]
            for item in self.aws.context()
            .client("s3")
            .list_objects_v2(Bucket=BUCKET)
            .get("Contents", [])
        ]
        lines.append(
            f"{len(result.events)} invocations in 2 execution environments (warm reuse, "
            f"a freeze after each response, SHUTDOWN at the end): {outcomes['ok']} responses, "
            f"{outcomes['error']} function errors (the example raises on purpose)"
        )
        lines.append(f"{len(keys)} objects delivered by the layer's extension:")
        lines += [f"  s3://{BUCKET}/{key}" for key in keys]
        return DemoStep(
            "Invoked the deployed function in the local Lambda emulator",
            output="\n".join(lines),
            seconds=time.monotonic() - started,
            ok=bool(keys),
        )

    def _ship_logs(self, lines: list[tuple[int, str]]) -> None:
        """Put the emulator's log lines in CloudWatch Logs, where Lambda would put them."""
        logs = self.aws.context().client("logs")
        group = f"/aws/lambda/{FUNCTION_NAME}"
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="demo")
        events = [{"timestamp": ts, "message": text} for ts, text in sorted(lines) if text]
        for start in range(0, len(events), 1000):
            logs.put_log_events(
                logGroupName=group, logStreamName="demo", logEvents=events[start : start + 1000]
            )

    def _lambdacov(
        self,
        title: str,
        args: Sequence[str],
        *,
        ok_codes: Sequence[int] = (0,),
        cwd: Path | None = None,
    ) -> DemoStep:
        """Run one lambdacov command against the embedded AWS, as a user would."""
        started = time.monotonic()
        env = {
            **os.environ,
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "AWS_DEFAULT_REGION": self.aws.region,
            "AWS_REGION": self.aws.region,
            "COLUMNS": str(self.columns),
        }
        done = subprocess.run(
            [sys.executable, "-m", "lambdacov", *args],
            env=env,
            cwd=cwd or self.workdir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = (done.stdout + done.stderr).strip()
        return DemoStep(
            title,
            command="lambdacov " + " ".join(shlex.quote(a) for a in args),
            output=output,
            seconds=time.monotonic() - started,
            ok=done.returncode in ok_codes,
        )
