"""`lambdacov local ...`: run a function through the local Lambda emulator."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from lambdacov.cli import outcome
from lambdacov.cli._options import EndpointUrl, Profile, aws_clients
from lambdacov.errors import ExitCode, UsageError
from lambdacov.layer.targets import SUPPORTED_PYTHONS, host_python
from lambdacov.local import InvocationResult, LocalLambda, LogLine, image_lambda
from lambdacov.local.deployed import DeployedRun, prepare_deployed
from lambdacov.local.variables import read_env_file

app = typer.Typer(help="Run functions through a local Lambda emulator.", no_args_is_help=True)

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command("invoke")
def invoke(
    *,
    function_dir: Annotated[
        Path | None,
        typer.Option(
            "--function-dir",
            help="Directory holding the function's code (Lambda's /var/task). Required, "
            "except with --deployed, where it replaces the deployment package.",
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            help="Run a container image function from its root directory: the code in "
            "var/task, lambdacov's files in opt; --handler is the image's command.",
        ),
    ] = None,
    handler: Annotated[
        str | None,
        typer.Option(
            "--handler",
            help="The handler, as module.function. Required, except with --deployed.",
            show_default="the deployed function's with --deployed",
        ),
    ] = None,
    layer: Annotated[
        list[Path] | None,
        typer.Option(
            "--layer",
            help="A layer .zip or an /opt-like directory (repeatable): merged into /opt in "
            "order, a later layer's file replacing an earlier one's, as in Lambda. With "
            "--deployed, they replace the function's layers.",
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
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            help="Send these events, in order: a file holding a JSON list, or JSON lines (one "
            "event per line); '-' for stdin. Not with --event, --event-file or --count.",
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            help="Invoke this many times in one warm environment.",
            show_default="1",
        ),
    ] = None,
    environments: Annotated[
        int,
        typer.Option(
            "--environments",
            min=1,
            help="Spread the invocations over this many environments, one after the other, "
            "in contiguous chunks (with 5 events and 2 environments: events 1-3, then 4-5); "
            "each environment is shut down after its chunk.",
        ),
    ] = 1,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="A function environment variable as KEY=VALUE (repeatable)."),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read function environment variables from this dotenv file (KEY=VALUE lines, "
            "# comments, optional export, quoted values); --env wins over it.",
        ),
    ] = None,
    deployed: Annotated[
        str | None,
        typer.Option(
            "--deployed",
            help="Run this Lambda function (name or ARN) as it is deployed: its handler, "
            "runtime, variables, memory, timeout and layers are read from AWS (with "
            "--profile, --region, --endpoint-url).",
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            help=f"The runtime's Python version ({', '.join(SUPPORTED_PYTHONS)}).",
            show_default="this interpreter's version, or the deployed function's runtime",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="The function timeout in seconds.",
            show_default="30, or the deployed function's",
        ),
    ] = None,
    memory: Annotated[
        int | None,
        typer.Option(
            "--memory",
            min=128,
            max=10240,
            help="The function's memory size in MB. As in Lambda, the runtime and extensions "
            "are killed when together they use more (their memory is read every 10 ms).",
            show_default="128, or the deployed function's",
        ),
    ] = None,
    snap_start: Annotated[
        bool,
        typer.Option(
            "--snap-start",
            help="Run as a SnapStart version: init and the before-snapshot hooks once, then "
            "every environment (see --environments) restored from that snapshot "
            "(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, after-restore hooks).",
        ),
    ] = False,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            min=1,
            max=64,
            help="Run as on Lambda Managed Instances: this many runtime processes in one "
            "environment (AWS_LAMBDA_MAX_CONCURRENCY), never frozen, and the events sent this "
            "many at a time.",
        ),
    ] = None,
    function_name: Annotated[
        str | None,
        typer.Option("--function-name", help="The function's name, as Lambda reports it."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="The region the function runs in (with --deployed: where it is read from).",
            show_default="AWS_REGION, AWS_DEFAULT_REGION or us-east-1",
        ),
    ] = None,
    profile: Profile = None,
    endpoint_url: EndpointUrl = None,
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

    Each environment is shut down afterwards, so extensions do their SHUTDOWN
    work. Exit status 1 if any invocation returned an error.
    """
    payloads = _read_events(event, event_file, events, count)
    chunks = _chunks(payloads, environments)
    function_env = {**(read_env_file(env_file) if env_file else {}), **_parse_env(env or [])}
    if image_root is not None and (deployed is not None or function_dir or layer):
        raise UsageError(
            "--image-root brings the function's code and /opt itself",
            "leave out --deployed, --function-dir and --layer",
        )
    if max_concurrency is not None and (deployed is not None or snap_start):
        raise UsageError(
            "--max-concurrency runs a function given by --function-dir and --handler",
            "leave out --deployed and --snap-start (Managed Instances have no SnapStart)",
        )
    if snap_start and deployed is not None:
        raise UsageError(
            "--snap-start runs a function given by --function-dir and --handler",
            "leave out --deployed, and pass the function's code and handler",
        )
    with contextlib.ExitStack() as stack:
        if deployed is not None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lambdacov-")))
            run = _deployed_run(
                deployed,
                scratch=scratch,
                function_dir=function_dir,
                layers=layer,
                python=python,
                env=function_env,
                aws=(profile, region, endpoint_url),
            )
            run = _overridden(run, handler, timeout, memory, function_name)
            _stderr.print(escape(_deployed_summary(run)))
            make = functools.partial(run.local_lambda, _print_log if verbose else None)
        else:
            make = functools.partial(
                _local_lambda,
                function_dir,
                handler,
                image_root=image_root,
                layers=layer or [],
                python=python or host_python(),
                env=function_env,
                timeout=30.0 if timeout is None else timeout,
                memory_mb=128 if memory is None else memory,
                function_name=function_name or "local-function",
                snap_start=snap_start,
                max_concurrency=max_concurrency,
                region=(
                    region
                    or os.environ.get("AWS_REGION")
                    or os.environ.get("AWS_DEFAULT_REGION")
                    or "us-east-1"
                ),
                on_log=_print_log if verbose else None,
            )
        results = _run_chunks(
            make,
            chunks,
            as_json=as_json,
            verbose=verbose,
            concurrency=max_concurrency or 1,
            one_snapshot=snap_start,
        )
    failed = [result for _, result in results if not result.ok]
    if as_json:
        outcome.set_result(
            [{**result.to_dict(), "environment": number} for number, result in results]
        )
    else:
        _stderr.print(escape(_summary([len(chunk) for chunk in chunks], len(failed))))
    if failed:
        outcome.exit_with(ExitCode.CHECK_FAILED)


def _local_lambda(
    function_dir: Path | None, handler: str | None, *, image_root: Path | None, **options: Any
) -> LocalLambda:
    if image_root is not None:
        if handler is None:
            raise UsageError(
                "--image-root needs --handler: the image's command",
                "for example --handler app.handler",
            )
        options.pop("layers")  # checked empty: the image brings its /opt
        return image_lambda(image_root, [handler], **options)
    if function_dir is None or handler is None:
        raise UsageError(
            "give --function-dir and --handler (or --deployed FUNCTION, or --image-root DIR)",
            "for example --function-dir src --handler app.handler",
        )
    return LocalLambda(function_dir, handler, **options)


def _run_chunks(
    make: Callable[[], LocalLambda],
    chunks: list[list[Any]],
    *,
    as_json: bool,
    verbose: bool,
    concurrency: int = 1,
    one_snapshot: bool = False,
) -> list[tuple[int, InvocationResult]]:
    """Send each chunk of events to a fresh environment, shut down after the chunk.

    With ``concurrency`` above 1 the events of a chunk go ``concurrency`` at a time
    (Managed Instances); their results are printed in the order of the events. With
    ``one_snapshot`` (SnapStart) every environment is restored from the one snapshot of
    one init. Returns (environment number, result) pairs in the order of the events.
    A failed invocation's SHUTDOWN logs are shown, as before (not with --verbose,
    which already streamed them, nor with --json).
    """
    results: list[tuple[int, InvocationResult]] = []
    with contextlib.ExitStack() as shared:
        snapshotted = shared.enter_context(make()) if one_snapshot else None
        for number, chunk in enumerate(chunks, start=1):
            with contextlib.ExitStack() as own:
                function = snapshotted or own.enter_context(make())
                results.extend(
                    (number, result)
                    for result in _run_chunk(
                        function, chunk, as_json=as_json, verbose=verbose, concurrency=concurrency
                    )
                )
    return results


def _run_chunk(
    function: LocalLambda, chunk: list[Any], *, as_json: bool, verbose: bool, concurrency: int
) -> list[InvocationResult]:
    """One environment's events, then its SHUTDOWN (see :func:`_run_chunks`)."""
    results = []
    for result in _invoke_all(function, chunk, concurrency):
        results.append(result)
        if not as_json:
            _print_result(result, show_logs=not verbose)
    shutdown_logs = function.shutdown()
    if not as_json and not verbose and any(not result.ok for result in results):
        for line in shutdown_logs:
            _print_log(line)
    return results


def _invoke_all(
    function: LocalLambda, events: list[Any], concurrency: int
) -> Iterator[InvocationResult]:
    """The results of ``events``, in order: one at a time, or ``concurrency`` at a time.

    Interrupted (Ctrl-C), no event not yet sent is sent.
    """
    if concurrency == 1:
        yield from map(function.invoke, events)
        return
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="lambdacov-invoke")
    try:
        yield from pool.map(function.invoke, events)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_events(
    event: str | None, event_file: str | None, events: str | None, count: int | None
) -> list[Any]:
    """The events to send, in order: ``--events``, or one event ``--count`` times."""
    if events is None:
        return [_read_event(event, event_file)] * (count or 1)
    if event is not None or event_file is not None or count is not None:
        raise UsageError(
            "--events gives every event: use it without --event, --event-file and --count",
            "to send one event several times, use --event or --event-file with --count",
        )
    if events == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        try:
            text, source = Path(events).read_text(encoding="utf-8"), events
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read the events file: {error}") from error
    parsed = _json_list_or_lines(text, source)
    if not parsed:
        raise UsageError(f"{source} holds no event", "give a JSON list or one event per line")
    return parsed


def _json_list_or_lines(text: str, source: str) -> list[Any]:
    """A JSON list's items, else one JSON document per non-blank line (JSON lines)."""
    try:
        whole = json.loads(text)
    except ValueError:
        pass
    else:
        return whole if isinstance(whole, list) else [whole]
    parsed = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append(json.loads(line))
        except ValueError as error:
            raise UsageError(
                f"{source}, line {number}: not JSON: {error}",
                "give a JSON list of events, or one JSON event per line",
            ) from error
    return parsed


def _chunks(payloads: list[Any], environments: int) -> list[list[Any]]:
    """Contiguous chunks, one per environment, their sizes differing by one at most."""
    if environments > len(payloads):
        raise UsageError(
            f"--environments {environments} is more than the {len(payloads)} invocation(s)",
            "give at most one environment per event",
        )
    size, extra = divmod(len(payloads), environments)
    chunks, start = [], 0
    for index in range(environments):
        end = start + size + (1 if index < extra else 0)
        chunks.append(payloads[start:end])
        start = end
    return chunks


def _deployed_run(
    name: str,
    *,
    scratch: Path,
    function_dir: Path | None,
    layers: list[Path] | None,
    python: str | None,
    env: dict[str, str],
    aws: tuple[str | None, str | None, str | None],
) -> DeployedRun:
    """Read the deployed function with the usual AWS options, and fetch what it needs.

    A function read from an ``--endpoint-url`` talks to that endpoint too (its
    AWS_ENDPOINT_URL), unless a variable says otherwise.
    """
    profile, region, endpoint_url = aws
    clients = aws_clients(profile, region, endpoint_url)
    if endpoint_url and "AWS_ENDPOINT_URL" not in env:
        env = {"AWS_ENDPOINT_URL": endpoint_url, **env}
    return prepare_deployed(
        name,
        lambda_client=clients.get("lambda"),
        scratch=scratch,
        function_dir=function_dir,
        python=python,
        env_overrides=env,
        layers=layers or None,
    )


def _overridden(
    run: DeployedRun,
    handler: str | None,
    timeout: float | None,
    memory: int | None,
    function_name: str | None,
) -> DeployedRun:
    """The deployed configuration with what the command line says instead."""
    changes: dict[str, Any] = {}
    if handler is not None:
        changes["handler"] = handler
    if timeout is not None:
        changes["timeout"] = timeout
    if memory is not None:
        changes["memory_mb"] = memory
    if function_name is not None:
        changes["name"] = function_name
    if not changes:
        return run
    return dataclasses.replace(run, function=dataclasses.replace(run.function, **changes))


def _deployed_summary(run: DeployedRun) -> str:
    function = run.function
    layers = (
        f"{len(run.layers)} layer(s) from --layer instead of the function's "
        f"{len(function.layer_arns)}"
        if run.layers_replaced
        else f"{len(run.layers)} layer(s) from Lambda"
    )
    wrapper = run.env.get("AWS_LAMBDA_EXEC_WRAPPER")
    return (
        f"{function.name} as deployed: {function.runtime} (run on Python {run.python}), "
        f"handler {function.handler}, {function.memory_mb} MB, {function.timeout:g} s, "
        f"{layers}, {len(run.env)} variable(s)"
        + (f", exec wrapper {wrapper}" if wrapper else "")
        + f"; {run.code_source}"
    )


def _summary(sizes: list[int], failed: int) -> str:
    total = sum(sizes)
    where = (
        "in 1 environment"
        if len(sizes) == 1
        else f"in {len(sizes)} environments (contiguous chunks of {', '.join(map(str, sizes))})"
    )
    return f"{total} invocation(s) {where}, each shut down: {total - failed} ok, {failed} failed"


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
