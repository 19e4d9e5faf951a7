"""`lambdacov alarms create|delete`: the CloudWatch alarms of functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.markup import escape

from lambdacov.aws import DEFAULT_TIMEOUT, translating
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    EndpointUrl,
    JsonOutput,
    Profile,
    Region,
    Timeout,
    aws_clients,
    console,
)
from lambdacov.cloudwatch import alarms as alarm_core
from lambdacov.errors import UsageError

RequiredFunctions = Annotated[list[str], typer.Argument(help="Function names.", show_default=False)]

app = typer.Typer(
    help="Create or delete the CloudWatch alarms for functions (errors, duration, coverage).",
    no_args_is_help=True,
)


@app.command("create")
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
    outcome.show(as_json, _document(result, specs), lambda: _render_alarms(result, specs))


@app.command("delete")
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
    outcome.show(as_json, _document(result, []), lambda: _render_alarms(result, []))


def _names(functions: Sequence[str]) -> list[str]:
    # CloudWatch's FunctionName dimension is the name, never the ARN.
    names = [f.split(":")[6] if f.startswith("arn:") else f for f in functions]
    if not names:
        raise UsageError("no function named", "name one or more functions")
    return list(dict.fromkeys(names))


def _document(
    result: alarm_core.AlarmsResult, specs: Sequence[alarm_core.AlarmSpec]
) -> dict[str, Any]:
    """The ``--json`` result: what changed, and the alarms as created (none for delete)."""
    return {**result.to_dict(), "alarms": [spec.arguments() for spec in specs]}


def _render_alarms(result: alarm_core.AlarmsResult, specs: Sequence[alarm_core.AlarmSpec]) -> None:
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
