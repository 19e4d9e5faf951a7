"""``lambdacov combine``: S3 objects -> combined coverage -> the reports developers use."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from lambdacov.aws import DEFAULT_TIMEOUT, translating
from lambdacov.cli import freeze_heap, outcome
from lambdacov.cli._options import (
    Bucket,
    DataFile,
    EndpointUrl,
    FailUnder,
    HtmlReport,
    LcovReport,
    MarkdownReport,
    Prefix,
    Profile,
    Region,
    SourceRoot,
    Timeout,
    Verbose,
    XmlReport,
    aws_clients,
    console,
    data_prefix,
    progress_console,
)
from lambdacov.combine.collect import DOWNLOAD_WORKERS, default_cache_dir, parse_when
from lambdacov.combine.merge import CombineRequest, CombineResult, combine, upload_combined
from lambdacov.combine.reports import ReportPlan, Reports, check_plan, write_reports
from lambdacov.errors import ExitCode, NoDataError, UsageError
from lambdacov.untrusted import printable

SHOWN = 20  # paths and keys listed in a warning before "... and N more"


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A progress callback drawing bars on a terminal's stderr, or None on a pipe."""
    target = progress_console() if enabled else None
    if target is None:
        yield None
        return
    # Imported here: bars are drawn only on a terminal, and rich.progress is slow to import.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # No refresh thread (auto_refresh=False): the merge forks a process only while this
    # process has no other thread, so the bars are redrawn from the callback instead.
    with Progress(*columns, console=target, transient=True, auto_refresh=False) as bars:
        tasks: dict[str, Any] = {}
        drawn = [0.0]

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(phase, total=total)
            bars.update(tasks[phase], completed=done, total=total)
            now = time.monotonic()
            if done >= total or now - drawn[0] >= 0.1:  # at most ten redraws a second
                drawn[0] = now
                bars.refresh()

        yield update


def _warn(result: CombineResult, reports: Reports | None, verbose: bool) -> None:
    """Skipped objects, unmapped paths and report notes, on stderr; object-borne text escaped."""
    err = _err()
    if result.skipped:
        err.print(f"[yellow]warning:[/] {len(result.skipped)} object(s) skipped:")
        for item in result.skipped[: None if verbose else SHOWN]:
            err.print(f"  {printable(item.key)}: {printable(item.reason)}", markup=False)
        if not verbose and len(result.skipped) > SHOWN:
            err.print(f"  ... and {len(result.skipped) - SHOWN} more (--verbose lists all)")
    for title, paths in (
        (
            f"file(s) ran in Lambda but are not under {result.source_root} (pass --source-root)",
            result.missing_files,
        ),
        ("measured path(s) resolve outside the source root and were dropped", result.outside_files),
    ):
        if paths:
            err.print(f"[yellow]warning:[/] {len(paths)} {escape(title)}:")
            for path in paths[: None if verbose else SHOWN]:
                err.print(f"  {printable(path)}", markup=False)
            if not verbose and len(paths) > SHOWN:
                err.print(f"  ... and {len(paths) - SHOWN} more")
    _notes(result, verbose)
    _warn_changed(result, verbose)
    if result.combined.mixed:
        err.print("[yellow]warning:[/] line and branch data were mixed: combined as line data")
    for note in reports.notes if reports else ():
        err.print(f"[yellow]warning:[/] {note}", markup=False)


def _notes(result: CombineResult, verbose: bool) -> None:
    """What the choice of versions and environments left out or took from snapshots."""
    err = _err()
    if result.from_snapshots:
        root = escape(str(result.source_root))
        err.print(
            f"note: {len(result.from_snapshots)} file(s) not under {root} are reported "
            "from the source snapshots of their newest version:"
        )
        for path, copy in list(result.from_snapshots.items())[: None if verbose else SHOWN]:
            err.print(f"  {printable(path)} -> {printable(copy)}", markup=False)
        if not verbose and len(result.from_snapshots) > SHOWN:
            err.print(f"  ... and {len(result.from_snapshots) - SHOWN} more (--verbose lists all)")
    if result.before_deploy:
        err.print(
            f"note: {len(result.before_deploy)} object(s) of environments started before "
            "the last update were left out (--since-deploy)"
        )


def _warn_changed(result: CombineResult, verbose: bool) -> None:
    """Files whose data came partly from other code: what was left out, and the way out."""
    if not result.changed:
        return
    err = _err()
    carried = result.changed[0].carried
    err.print(
        f"[yellow]warning:[/] {len(result.changed)} file(s) also ran as other code than "
        f"under {escape(str(result.source_root))}; lines recorded on other versions are "
        + ("carried where unchanged:" if carried else "not shown:")
    )
    for item in result.changed[: None if verbose else SHOWN]:
        text = (
            f"  {item.path}: {item.objects} object(s) of {len(item.versions)} other "
            f"version(s), {item.shown_objects} of this one"
        )
        if carried:
            text += f"; {item.carried_lines} line(s) carried"
            if item.no_snapshot:
                text += f", {len(item.no_snapshot)} version(s) without a source snapshot"
        err.print(printable(text), markup=False)
    if not verbose and len(result.changed) > SHOWN:
        err.print(f"  ... and {len(result.changed) - SHOWN} more (--verbose lists all)")
    if not carried:
        err.print(
            "  check out the code that ran, or pass --carry-forward to carry unchanged lines",
            markup=False,
        )


def _table(result: CombineResult, reports: Reports) -> None:
    from rich.table import Table  # only when no report is asked for
    from rich.text import Text

    out = console()
    summary = reports.summary
    files = Table(title="Coverage by file", show_footer=True)
    files.add_column("File", footer="Total")
    files.add_column("Statements", justify="right", footer=str(summary.statements))
    files.add_column("Missing", justify="right", footer=str(summary.missing))
    files.add_column("Cover", justify="right", footer=f"{summary.percent_display}%")
    if result.changed:
        files.add_column("Other versions of the code")
    for row in summary.files:  # names are local files' and keys' text: never rich markup
        cells: list[Text | str] = [Text(printable(row.name)), str(row.statements)]
        cells.append(str(row.missing))
        cells.append(f"{row.percent_display}%")
        if result.changed:
            cells.append(row.versions)
        files.add_row(*cells)
    out.print(files)
    functions = Table(title="Coverage by function")
    for name in ("Function", "Objects", "Statements run", "Of all statements"):
        functions.add_column(name, justify="left" if name == "Function" else "right")
    for fn in summary.functions:
        functions.add_row(
            Text(printable(fn.name)),
            str(fn.objects),
            f"{fn.covered}/{fn.statements}",
            f"{fn.percent:.1f}%",
        )
    out.print(functions)
    out.print(
        f"{len(result.inputs)} objects combined ({result.downloaded} downloaded, "
        f"{result.cache_hits} cached, {len(result.skipped)} skipped)"
    )


def combine_command(
    *,
    bucket: Bucket,
    prefix: Prefix = None,
    function: Annotated[
        list[str] | None,
        typer.Option("--function", help="Only this function's objects; repeat for several."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Start of the window, by the UTC day in the objects' keys: 2024-01-15, "
            "or an age like 24h / 7d (rounded down to its day).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End of the window, by UTC day (that day included)."),
    ] = None,
    source_root: SourceRoot = None,
    html: HtmlReport = None,
    xml: XmlReport = None,
    json_report: Annotated[
        str | None,
        typer.Option("--json", help="Write the JSON report to FILE; '-' prints it on stdout."),
    ] = None,
    lcov: LcovReport = None,
    markdown: MarkdownReport = None,
    data_file: DataFile = None,
    fail_under: FailUnder = None,
    upload_key: Annotated[
        str | None,
        typer.Option("--upload-key", help="Also write the data file (and KEY.json) to this key."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if any object had to be skipped, or data recorded on other code "
            "was left out.",
        ),
    ] = False,
    since_deploy: Annotated[
        bool,
        typer.Option(
            "--since-deploy",
            help="Only objects of environments started since each --function's last update "
            "(its code as deployed now).",
        ),
    ] = False,
    carry_forward: Annotated[
        bool,
        typer.Option(
            "--carry-forward",
            help="Carry lines recorded on other versions of a file onto the local one, "
            "where the line is unchanged between them (from the source snapshots).",
        ),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            envvar="LAMBDACOV_CACHE_DIR",
            help="Local cache of objects by ETag (default: ~/.cache/lambdacov/objects).",
        ),
    ] = None,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Fan out to the combiner function (lambdacov combiner deploy) in AWS Lambda.",
        ),
    ] = False,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards", min=1, help="With --remote: about this many shards (default: by size)."
        ),
    ] = None,
    combiner_function: Annotated[
        str,
        typer.Option("--combiner-function", help="With --remote: the combiner function's name."),
    ] = "lambdacov-combiner",
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="With --remote: 'aws' (Lambda), or 'local' (local Lambda emulators, for tests).",
        ),
    ] = "aws",
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    verbose: Verbose = False,
) -> None:
    """Combine the coverage objects in S3 and write reports (a table when no report is asked)."""
    if not remote and (shards is not None or executor != "aws"):
        raise UsageError("--shards and --executor go with --remote", "add --remote")
    now = datetime.now(UTC)
    start, end = _window(since, until, now)
    if fail_under is not None and not 0 <= fail_under <= 100:
        raise UsageError("--fail-under takes a percentage from 0 to 100")
    root = (source_root or Path.cwd()).resolve()
    if not root.is_dir():
        raise UsageError(f"--source-root {root} is not a directory")
    to_stdout = json_report == "-"
    plan = ReportPlan(
        html=html,
        xml=xml,
        json=None if to_stdout or json_report is None else Path(json_report),
        lcov=lcov,
        markdown=markdown,
        data_file=data_file,
    )
    cache = _check_outputs(plan, cache_dir)  # before any download: bad paths fail now
    # combine reads keys, sizes and ETags from listings, never a timestamp.
    clients = aws_clients(profile, region, endpoint_url, timeout)
    client = clients.get("s3", max_pool_connections=DOWNLOAD_WORKERS, raw_timestamps=True)
    deployed = _last_updates(clients, function or [], remote=remote) if since_deploy else {}
    if deployed and start is None:  # nothing older can be kept: list from the oldest update
        start = min(deployed.values()).replace(hour=0, minute=0, second=0, microsecond=0)
    # The downloads and coverage.py's reports allocate a lot: a collector walking
    # botocore's models each time was a third of the reports' time.
    freeze_heap()
    request = CombineRequest(
        bucket=bucket,
        prefix=data_prefix(prefix),
        functions=tuple(function or ()),
        since=start,
        until=end or (_end_of_day(now) if start else None),
        source_root=root,
        cache_dir=cache,
        exclude_keys=(upload_key,) if upload_key else (),
        carry_forward=carry_forward,
        deployed=deployed,
    )
    with _progress(not to_stdout) as progress:
        if remote:
            from lambdacov.cli.combiner import remote_combine, render_stats

            fanned_out = remote_combine(
                clients,
                request,
                shards=shards,
                combiner_function=combiner_function,
                executor=executor,
                progress=progress,
            )
            render_stats(fanned_out.stats)
            result = fanned_out.result
        else:
            result = combine(client, request, progress)
    # S3 stopped answering: the objects it did not send are skipped, and a report of
    # what is left would look complete. It is an AWS failure, as for the listing.
    clients.context.raise_if_unreachable(f"s3:GetObject on s3://{bucket}/{request.prefix}")
    only_data = (
        (plan.data_file is not None or bool(upload_key))
        and dataclasses.replace(plan, data_file=None) == ReportPlan()
        and not to_stdout
        and fail_under is None
    )
    _check_data(result, request, verbose, numbers_wanted=not only_data)
    with tempfile.TemporaryDirectory(prefix="lambdacov-upload-") as scratch:
        if upload_key and data_file is None:
            plan = dataclasses.replace(plan, data_file=Path(scratch) / "combined.coverage")
        reports = _write_reports(result, plan)
        uploaded = []
        if upload_key and plan.data_file:
            uploaded = upload_combined(client, bucket, upload_key, plan.data_file, reports.document)
            reports.document["lambdacov"]["uploaded"] = uploaded
    _warn(result, reports, verbose)
    if to_stdout:  # coverage.py's JSON report, as --json FILE writes it: not an envelope
        outcome.print_document(reports.document)
    elif plan == ReportPlan() and not json_report:
        _table(result, reports)
    else:
        _written(reports, bucket, uploaded)
    _exit_status(result, reports, fail_under, strict)


def _last_updates(clients: Any, functions: list[str], *, remote: bool) -> dict[str, datetime]:
    """Each function's last update (Lambda's LastModified): its code since then."""
    if remote or not functions:
        raise UsageError(
            "--since-deploy needs --function NAME (the functions whose code to report), "
            "and goes without --remote",
            "add --function NAME for each function",
        )
    client = clients.get("lambda")
    updates = {}
    for name in dict.fromkeys(functions):
        with translating("lambda:GetFunctionConfiguration", name):
            configuration = client.get_function_configuration(FunctionName=name)
        updates[name] = datetime.fromisoformat(configuration["LastModified"]).astimezone(UTC)
    return updates


def _end_of_day(moment: datetime) -> datetime:
    """The last instant of ``moment``'s day: a window "until now" takes in today's
    objects whatever S3's clock says (a bound within a day is checked to the second)."""
    return moment.replace(hour=23, minute=59, second=59, microsecond=999999)


def _window(
    since: str | None, until: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """The --since/--until window as UTC datetimes."""
    start = parse_when(since, now=now) if since else None
    end = parse_when(until, now=now, end_of_day=True) if until else None
    if start and end and end < start:
        raise UsageError("--until is before --since", "swap them")
    return start, end


def _check_outputs(plan: ReportPlan, cache_dir: Path | None) -> Path:
    """Refuse outputs that cannot be written or would replace what is not ours; the cache."""
    check_plan(plan)
    cache = (cache_dir or default_cache_dir()).resolve()
    if plan.html is not None and cache.is_relative_to(plan.html.resolve()):
        raise UsageError(
            f"--cache-dir {cache} is inside --html {plan.html}, which is replaced as a whole",
            "keep the cache outside the report",
        )
    return cache


def _check_data(
    result: CombineResult, request: CombineRequest, verbose: bool, *, numbers_wanted: bool
) -> None:
    """Stop with exit 1 and the reasons when there is nothing to report, as `coverage report`.

    The warnings (skipped objects with their reasons, files not under the
    source root) come first: they are why. A run that only writes the combined
    data file (``--data-file``/``--upload-key``) needs no local source.
    """
    where = f"s3://{request.bucket}/{request.prefix}"
    windowed = request.since is not None or request.until is not None
    if not result.inputs:
        _warn(result, None, verbose)
        if result.skipped:
            raise NoDataError(
                f"no coverage data to report: every object under {where} was skipped "
                f"({len(result.skipped)}, reasons above)",
                "see why each was skipped; `lambdacov doctor FUNCTION` checks how "
                "the functions deliver",
            )
        window = " in the --since/--until window" if windowed else ""
        raise NoDataError(
            f"no coverage data to report: no objects under {where}{window}",
            "check --bucket/--prefix, or run `lambdacov doctor FUNCTION` to see why "
            "the functions deliver nothing",
        )
    if numbers_wanted and not any(map(result.reportable, result.combined.measured_files())):
        _warn(result, None, verbose)
        if result.missing_files:
            raise NoDataError(
                f"no coverage data to report: none of the {len(result.missing_files)} file(s) "
                f"measured in Lambda is under --source-root {result.source_root}",
                "pass --source-root the checkout of the functions' code "
                "(the folder Lambda runs as /var/task)",
            )
        raise NoDataError(
            "no coverage data to report: the objects hold no line of the functions' own code "
            f"({result.runtime_files} file(s) of Lambda's runtime, the layer or installed "
            "packages dropped)",
            "check that the layer measures the function's code: `lambdacov doctor FUNCTION`",
        )


def _write_reports(result: CombineResult, plan: ReportPlan) -> Reports:
    """The reports, or one line naming a path that cannot be written."""
    try:
        return write_reports(result, plan)
    except OSError as error:  # an output path in a missing or read-only place
        name = f" {error.filename}:" if error.filename else ""
        raise UsageError(
            f"cannot write the reports:{name} {error.strerror or error}",
            "choose writable paths for --html/--xml/--json/--lcov/--markdown/--data-file",
        ) from error


def _written(reports: Reports, bucket: str, uploaded: list[str]) -> None:
    out = console()
    out.print(f"Total coverage: {reports.summary.percent_display}%")
    for path in reports.written:
        out.print(f"  wrote {path}", markup=False)
    for key in uploaded:
        out.print(f"  uploaded s3://{bucket}/{key}", markup=False)


def _exit_status(
    result: CombineResult, reports: Reports, fail_under: float | None, strict: bool
) -> None:
    """Exit 1 below --fail-under, or with --strict when objects were skipped (partial)."""
    failed = False
    if fail_under is not None and not reports.summary.files:
        _err().print(
            "lambdacov: no measured file could be analysed: --fail-under cannot pass",
            markup=False,
        )
        failed = True
    elif fail_under is not None and reports.summary.percent < fail_under:
        _err().print(
            f"lambdacov: total coverage {reports.summary.percent:.2f}% "
            f"is below --fail-under {fail_under:g}%",
            markup=False,
        )
        failed = True
    if strict and result.skipped:
        _err().print(
            f"lambdacov: partial: {len(result.skipped)} object(s) skipped (--strict)",
            markup=False,
        )
        failed = True
    if strict and (left_out := [item for item in result.changed if item.left_out]):
        _err().print(
            f"lambdacov: partial: data of {len(left_out)} file(s) recorded on other "
            "code was left out (--strict)",
            markup=False,
        )
        failed = True
    if failed:
        outcome.exit_with(ExitCode.CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``combine`` to the root app."""
    app.command("combine")(combine_command)
