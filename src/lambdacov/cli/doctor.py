"""`lambdacov doctor`: parse, call the checks, render a checklist or one JSON document."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from lambdacov.aws import DEFAULT_TIMEOUT
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    EndpointUrl,
    Everything,
    Excludes,
    Functions,
    JsonOutput,
    Patterns,
    Prefix,
    Profile,
    Region,
    Since,
    Tags,
    Timeout,
    Verbose,
    aws_clients,
    bucket_name,
    console,
    data_prefix,
    selection,
)
from lambdacov.cloudwatch import logs as log_core
from lambdacov.doctor import AREAS, Check, DoctorReport, DoctorRequest, run_doctor

_MARKS = {
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "bold red"),
    "skipped": ("-", "dim"),
}


def register(app: typer.Typer) -> None:
    """Add doctor to the root app."""
    app.command("doctor")(doctor_command)


def doctor_command(
    functions: Functions = None,
    *,
    pattern: Patterns = None,
    tag: Tags = None,
    everything: Everything = False,
    exclude: Excludes = None,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            help="Check this bucket (as your identity), with or without functions.",
            callback=bucket_name,
        ),
    ] = None,
    prefix: Prefix = None,
    since: Since = "1h",
    invoke: Annotated[
        bool,
        typer.Option(
            "--invoke",
            help='Invoke each function with {"action": "health_check"} and check the answer.',
        ),
    ] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Check what coverage needs, exit 1 if a check failed, 3 if AWS is unreachable.

    Every check has a stable code (docs/doctor.md).
    """
    # No function at all is fine: the doctor then checks AWS access (and any --bucket).
    chosen = (
        selection(functions, pattern, tag, everything, exclude)
        if functions or pattern or tag or everything or exclude
        else None
    )
    clients = aws_clients(profile, region, endpoint_url, timeout)
    request = DoctorRequest(
        selection=chosen,
        region=clients.region,
        since=log_core.parse_since(since),
        invoke=invoke,
        bucket=bucket,
        prefix=data_prefix(prefix),
    )
    report = run_doctor(clients, request)
    outcome.show(as_json, report.to_dict(), lambda: _render_report(report, verbose=verbose))
    unreachable = report.unreachable_error()
    if unreachable is not None:
        raise unreachable
    outcome.exit_with(report.exit_code)


def _render_report(report: DoctorReport, *, verbose: bool) -> None:
    out = console()
    targets = ["", *report.targets]
    for target in targets:
        checks = [check for check in report.checks if check.target == target]
        if not checks:
            continue
        if target:
            out.print(Text(f"\n{target}", style="bold"))
        for area, title in AREAS.items():
            in_area = [check for check in checks if check.area == area]
            if not in_area:
                continue
            out.print(Text(f"  {title}", style="bold cyan"))
            for check in in_area:
                _render_check(out, check, verbose=verbose)
    counts = report.counts()
    summary = ", ".join(f"{counts[key]} {key}" for key in ("fail", "warn", "ok", "skipped"))
    verdict = "AWS unreachable" if not report.reachable else "FAILED" if report.failed else "OK"
    style = "bold red" if report.failed else "bold green"
    out.print(Text.assemble("\n", (verdict, style), f": {summary}"))


def _render_check(out: Any, check: Check, *, verbose: bool) -> None:
    mark, style = _MARKS[check.status]
    line = Text("    ")
    line.append(f"{mark} {check.status:<7}", style=style)
    line.append(f" {check.code:<22} ", style="bold")
    line.append(check.detail)
    out.print(line)
    if check.hint and check.status in ("warn", "fail", "skipped"):
        out.print(Text(f"        hint: {check.hint}", style="dim"))
    if verbose:
        for cause in check.data.get("causes", []):
            out.print(Text(f"        {cause['cause']} x{cause['count']}: {cause['sample']}"))
