"""`lambdacov doctor`, `logs` and `alarms`: parse, call the core, render.

The checks, the log search and the alarm plans live in lambdacov.doctor,
lambdacov.logs and lambdacov.alarms; this module builds the clients from the
global options and renders the frozen results: a rich checklist for people,
one JSON document for ``--json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from lambdacov import alarms as alarm_core
from lambdacov import logs as log_core
from lambdacov.aws import DEFAULT_TIMEOUT, translating
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
    Tags,
    Timeout,
    Verbose,
    aws_clients,
    bucket_name,
    console,
    data_prefix,
    selection,
)
from lambdacov.doctor import AREAS, Check, DoctorReport, DoctorRequest, run_doctor
from lambdacov.errors import UsageError

RequiredFunctions = Annotated[list[str], typer.Argument(help="Function names.", show_default=False)]
Since = Annotated[str, typer.Option("--since", help="How far back to look: 30m, 1h, 2d, 1h30m.")]

_MARKS = {
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "bold red"),
    "skipped": ("-", "dim"),
}

alarms_app = typer.Typer(
    help="Create or delete the CloudWatch alarms for functions (errors, duration, coverage).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add doctor, logs and alarms to the root app."""
    app.command("doctor")(doctor_command)
    app.command("logs")(logs_command)
    app.add_typer(alarms_app, name="alarms")


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
    if as_json:
        outcome.set_result(report.to_dict())
    else:
        _render_report(report, verbose=verbose)
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
    if check.hint and check.status in ("warn", "fail"):
        out.print(Text(f"        hint: {check.hint}", style="dim"))
    if verbose:
        for cause in check.data.get("causes", []):
            out.print(Text(f"        {cause['cause']} x{cause['count']}: {cause['sample']}"))


def logs_command(
    function: Annotated[str, typer.Argument(help="Function name or ARN.", show_default=False)],
    *,
    pattern: Annotated[
        str,
        typer.Option(
            "--pattern",
            help="CloudWatch filter pattern, e.g. ERROR, coverage, S3 (case-sensitive).",
        ),
    ] = "",
    since: Since = "1h",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until interrupted.")
    ] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Search the function's CloudWatch logs; lambdacov's JSON lines are shown readably."""
    clients = aws_clients(profile, region, endpoint_url, timeout)
    window = log_core.parse_since(since)
    start = int((time.time() - window.total_seconds()) * 1000)
    with translating("read the function's logs", function):
        group = log_core.log_group_for(clients.get("lambda"), function)
        client = clients.get("logs")
        if follow:
            _follow(client, group, pattern, start, as_json=as_json)
            return
        events = list(log_core.search(client, group, start_ms=start, pattern=pattern))
    if as_json:
        outcome.set_result(
            {"log_group": group, "pattern": pattern, "events": [e.to_dict() for e in events]}
        )
        return
    out = console()
    if verbose:
        out.print(Text(f"{group}: {len(events)} events", style="dim"))
    for event in events:
        _render_event(out, event)


def _render_event(out: Any, event: log_core.LogEvent) -> None:
    record = event.record
    text = log_core.describe(event)
    # soft_wrap: one event per line, whole, for grep and copy and paste.
    if record is None:
        out.print(Text(text), soft_wrap=True)
        return
    level = str(record.get("level", ""))
    style = {"ERROR": "red", "WARNING": "yellow", "DEBUG": "dim"}.get(level, "")
    out.print(Text(text, style=style), soft_wrap=True)


def _follow(client: Any, group: str, pattern: str, start: int, *, as_json: bool) -> None:
    out = console()
    if as_json:
        outcome.json_lines()
    try:
        for event in log_core.follow(client, group, start_ms=start, pattern=pattern):
            if as_json:  # one JSON document per line while following
                outcome.print_line(event.to_dict())
            else:
                _render_event(out, event)
    except KeyboardInterrupt:
        return


@alarms_app.command("create")
def alarms_create_command(
    functions: RequiredFunctions,
    *,
    errors: Annotated[
        float, typer.Option("--errors", help="Alarm when Errors (Sum per period) exceed this.")
    ] = 5,
    duration_ms: Annotated[
        float,
        typer.Option(
            "--duration-ms", help="Alarm when Duration (Average per period, ms) exceeds this."
        ),
    ] = 10_000,
    coverage_failures: Annotated[
        float,
        typer.Option(
            "--coverage-failures",
            help="Alarm when CoverageFailure (Sum per period, Lambda/Coverage) exceeds this.",
        ),
    ] = 0,
    period: Annotated[
        int, typer.Option("--period", min=10, help="Seconds per evaluation period.")
    ] = 300,
    evaluation_periods: Annotated[
        int,
        typer.Option("--evaluation-periods", min=1, help="Periods over the threshold to alarm."),
    ] = 2,
    actions: Annotated[
        list[str] | None,
        typer.Option("--alarm-action", help="ARN to notify (an SNS topic); repeatable."),
    ] = None,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
) -> None:
    """Create (or update) the error, duration and CoverageFailure alarms of each function."""
    thresholds = alarm_core.Thresholds(
        errors=errors,
        duration_ms=duration_ms,
        coverage_failures=coverage_failures,
        period=period,
        evaluation_periods=evaluation_periods,
    )
    clients = aws_clients(profile, region, endpoint_url, timeout)
    specs = [
        spec for name in _names(functions) for spec in alarm_core.plan_alarms(name, thresholds)
    ]
    with translating("create the alarms"):
        result = alarm_core.create_alarms(clients.get("cloudwatch"), specs, actions or ())
    _render_alarms(result, specs, as_json=as_json)


@alarms_app.command("delete")
def alarms_delete_command(
    functions: RequiredFunctions,
    *,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
) -> None:
    """Delete the alarms `alarms create` made for each function (absent ones are fine)."""
    clients = aws_clients(profile, region, endpoint_url, timeout)
    names = [
        alarm_core.alarm_name(name, kind) for name in _names(functions) for kind in alarm_core.KINDS
    ]
    with translating("delete the alarms"):
        result = alarm_core.delete_alarms(clients.get("cloudwatch"), names)
    _render_alarms(result, [], as_json=as_json)


def _names(functions: Sequence[str]) -> list[str]:
    # CloudWatch's FunctionName dimension is the name, never the ARN.
    names = [f.split(":")[6] if f.startswith("arn:") else f for f in functions]
    if not names:
        raise UsageError("no function named", "name one or more functions")
    return list(dict.fromkeys(names))


def _render_alarms(
    result: alarm_core.AlarmsResult, specs: Sequence[alarm_core.AlarmSpec], *, as_json: bool
) -> None:
    if as_json:
        document: dict[str, Any] = result.to_dict()
        document["alarms"] = [spec.arguments() for spec in specs]
        outcome.set_result(document)
        return
    out = console()
    by_name = {spec.name: spec for spec in specs}
    for verb, names in result.to_dict().items():
        for name in names:
            spec = by_name.get(name)
            what = (
                f"  {spec.namespace} {spec.metric} {spec.statistic} > {spec.threshold:g}"
                if spec
                else ""
            )
            out.print(f"{verb:<8} {escape(name)}{escape(what)}")
