"""`lambdacov local ...`: run a function through the local Lambda emulator."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from lambdacov.cli import outcome
from lambdacov.errors import ExitCode, UsageError
from lambdacov.layer.targets import host_python
from lambdacov.local import InvocationResult, LocalLambda, LogLine

app = typer.Typer(help="Run functions through a local Lambda emulator.", no_args_is_help=True)

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command("invoke")
def invoke(
    *,
    function_dir: Annotated[
        Path,
        typer.Option(
            "--function-dir", help="Directory holding the function's code (Lambda's /var/task)."
        ),
    ],
    handler: Annotated[str, typer.Option("--handler", help="The handler, as module.function.")],
    layer: Annotated[
        Path | None,
        typer.Option(
            "--layer", help="A layer .zip or an /opt-like directory to run the function with."
        ),
    ] = None,
    event: Annotated[
        str | None,
        typer.Option("--event", help="The event as a JSON document (default: {})."),
    ] = None,
    event_file: Annotated[
        str | None,
        typer.Option("--event-file", help="Read the event from this JSON file ('-' for stdin)."),
    ] = None,
    count: Annotated[
        int,
        typer.Option("--count", min=1, help="Invoke this many times in one warm environment."),
    ] = 1,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="A function environment variable as KEY=VALUE (repeatable)."),
    ] = None,
    python: Annotated[
        str,
        typer.Option(
            "--python",
            help="The runtime's Python version (3.11, 3.12, 3.13).",
            show_default="this interpreter's version",
        ),
    ] = host_python(),
    timeout: Annotated[
        float, typer.Option("--timeout", help="The function timeout in seconds.")
    ] = 30.0,
    memory: Annotated[
        int,
        typer.Option(
            "--memory",
            min=128,
            max=10240,
            help="The function's memory size in MB. As in Lambda, the runtime and extensions "
            "are killed when together they use more (their memory is read every 10 ms).",
        ),
    ] = 128,
    function_name: Annotated[
        str, typer.Option("--function-name", help="The function's name, as Lambda reports it.")
    ] = "local-function",
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="The region the function runs in.",
            show_default="AWS_REGION, AWS_DEFAULT_REGION or us-east-1",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document (the list of results), nothing else."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Stream the function's and extensions' logs to stderr."),
    ] = False,
) -> None:
    """Invoke a function in a local Lambda environment and print its responses.

    The environment is shut down afterwards, so extensions do their SHUTDOWN
    work. Exit status 1 if any invocation returned an error.
    """
    payload = _read_event(event, event_file)
    function_env = _parse_env(env or [])
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    results: list[InvocationResult] = []
    with LocalLambda(
        function_dir,
        handler,
        layer=layer,
        python=python,
        env=function_env,
        timeout=timeout,
        memory_mb=memory,
        function_name=function_name,
        region=region or "us-east-1",
        on_log=_print_log if verbose else None,
    ) as function:
        for _ in range(count):
            result = function.invoke(payload)
            results.append(result)
            if not as_json:
                _print_result(result, show_logs=not verbose)
        shutdown_logs = function.shutdown()
    if as_json:
        outcome.set_result([result.to_dict() for result in results])
    elif not verbose and any(not result.ok for result in results):
        for line in shutdown_logs:
            _print_log(line)
    if any(not result.ok for result in results):
        outcome.exit_with(ExitCode.CHECK_FAILED)


def _read_event(event: str | None, event_file: str | None) -> Any:
    if event is not None and event_file is not None:
        raise UsageError("give the event with --event or --event-file, not both")
    if event_file == "-":
        text = sys.stdin.read()
        source = "stdin"
    elif event_file is not None:
        try:
            text = Path(event_file).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read the event file: {error}") from error
        source = event_file
    else:
        text = event if event is not None else "{}"
        source = "--event"
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(
            f"the event from {source} is not valid JSON: {error}",
            hint='for example --event \'{"key": "value"}\'',
        ) from error


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def _print_result(result: InvocationResult, *, show_logs: bool) -> None:
    if result.ok:
        typer.echo(json.dumps(result.payload))
        return
    error = result.error or {}
    if show_logs:
        for line in result.logs:
            _print_log(line)
    typer.echo(f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}")


def _print_log(line: LogLine) -> None:
    # awslambdaric writes a multi-line record as one line with \r between its
    # lines (one CloudWatch event); show them as lines again.
    text = escape(line.text).replace("\r", "\n    ")
    _stderr.print(f"[dim]\\[{escape(line.source)}][/dim] {text}")
