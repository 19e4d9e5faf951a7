"""`lambdacov logs`: search a function's CloudWatch logs; lambdacov's JSON lines shown readably."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from lambdacov.aws import DEFAULT_TIMEOUT, translating
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    EndpointUrl,
    JsonOutput,
    Profile,
    Region,
    Since,
    Timeout,
    Verbose,
    aws_clients,
    console,
)
from lambdacov.cloudwatch import logs as log_core


def register(app: typer.Typer) -> None:
    """Add logs to the root app."""
    app.command("logs")(logs_command)


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
    document = {"log_group": group, "pattern": pattern, "events": [e.to_dict() for e in events]}
    outcome.show(as_json, document, lambda: _render_events(group, events, verbose=verbose))


def _render_events(group: str, events: list[log_core.LogEvent], *, verbose: bool) -> None:
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
