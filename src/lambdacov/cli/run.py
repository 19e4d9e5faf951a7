"""``lambdacov run -- CMD``: ``coverage run`` for deployed functions.

attach (with a prefix of the run's own) -> CMD -> delivery settles -> combine
-> detach. Attach and detach are the attach command's core (``lambdacov.attach``)
called as functions, and the reports are the combine command's own code path,
so every option means what it means there. Detach always runs: after a failed
command, Ctrl-C, SIGTERM, or an error of combine; only ``--keep-attached`` skips
it (a later ``lambdacov detach`` ends that session).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from lambdacov.attach import fleet
from lambdacov.attach.plan import AttachSettings, FunctionPlan
from lambdacov.attach.record import RecordError, decode_tags
from lambdacov.attach.selection import SelectedFunction, Selection, select_functions
from lambdacov.aws import (
    CONTINUATION_TOKEN,
    DEFAULT_TIMEOUT,
    Clients,
    Retrier,
    each_page,
    redact_url,
    translating,
)
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    DEFAULT_PREFIX,
    Branch,
    Bucket,
    Concurrency,
    DataFile,
    EndpointUrl,
    Everything,
    Excludes,
    FailUnder,
    Functions,
    GrantPolicy,
    HtmlReport,
    Include,
    JsonOutput,
    KmsKeyId,
    LayerArns,
    LcovReport,
    MarkdownReport,
    Omit,
    Patterns,
    Profile,
    Region,
    SourceRoot,
    Tags,
    Timeout,
    Verbose,
    XmlReport,
    aws_clients,
    data_prefix,
    selection,
)
from lambdacov.combine.reports import ReportPlan, check_plan
from lambdacov.errors import (
    ExitCode,
    InterruptionError,
    LambdacovError,
    Terminated,
    TerminationError,
    UsageError,
)
from lambdacov.runner import RunId, Settled, Signals, holder, settle

#: Where the command line after ``--`` is kept for the command (see _RunCommand).
_ARGV = "lambdacov.run.argv"
#: The variable attach sets to the run's prefix: how a run finds the functions it holds.
_PREFIX_VARIABLE = "COVERAGE_S3_PREFIX"


class _RunCommand(TyperCommand):
    """``run``'s command line: the words after ``--`` are the command to run, not names.

    Function names are ``run``'s positional arguments as they are attach's,
    and click gives every positional word to them, ``--`` or not; the command
    is split off before click parses the rest.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[_ARGV] = args[at + 1 :]
            args = args[:at]
        return list(super().parse_args(ctx, args))


def register(app: typer.Typer) -> None:
    """Add ``run`` to the root app."""
    app.command(
        "run",
        cls=_RunCommand,
        epilog="CMD comes after `--`: lambdacov run my-fn --bucket B -- python -m pytest tests/",
    )(run_command)


RunsPrefix = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="Base key prefix: this run's objects go under PREFIX/runs/<run id>/.",
        show_default=DEFAULT_PREFIX,
    ),
]
SettleTimeout = Annotated[
    float,
    typer.Option(
        "--settle-timeout",
        min=0,
        help="Seconds to wait after CMD for the last uploads to reach S3 (then combine anyway).",
    ),
]
SettleQuiet = Annotated[
    float,
    typer.Option(
        "--settle-quiet",
        min=0,
        help="Delivery has settled when the run's objects did not change for this many seconds.",
    ),
]


def run_command(
    ctx: typer.Context,
    functions: Functions = None,
    *,
    bucket: Bucket,
    prefix: RunsPrefix = None,
    include: Include = None,
    omit: Omit = None,
    branch: Branch = None,
    kms_key_id: KmsKeyId = None,
    layer_arn: LayerArns = None,
    grant: GrantPolicy = False,
    pattern: Patterns = None,
    tag: Tags = None,
    everything: Everything = False,
    exclude: Excludes = None,
    source_root: SourceRoot = None,
    html: HtmlReport = None,
    xml: XmlReport = None,
    json_report: Annotated[
        Path | None,
        typer.Option("--json-report", help="Write combine's JSON report (coverage.py's) to FILE."),
    ] = None,
    lcov: LcovReport = None,
    markdown: MarkdownReport = None,
    data_file: DataFile = None,
    fail_under: FailUnder = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 1 if any object had to be skipped (as combine)."),
    ] = False,
    carry_forward: Annotated[
        bool,
        typer.Option("--carry-forward", help="As combine's: carry unchanged lines of other code."),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            envvar="LAMBDACOV_CACHE_DIR",
            help="Local cache of objects by ETag (default: ~/.cache/lambdacov/objects).",
        ),
    ] = None,
    settle_timeout: SettleTimeout = 60.0,
    settle_quiet: SettleQuiet = 5.0,
    keep_attached: Annotated[
        bool,
        typer.Option(
            "--keep-attached",
            help="Leave the functions attached after CMD (a session: end it with "
            "`lambdacov detach`).",
        ),
    ] = False,
    concurrency: Concurrency = 8,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Attach, run CMD (after `--`), wait for delivery, combine this run's coverage, detach."""
    argv = list(ctx.meta.get(_ARGV) or [])
    if not argv:
        raise UsageError(
            "no command to run", "give it after `--`: lambdacov run FN --bucket B -- pytest"
        )
    run_id = RunId.new()
    base = data_prefix(prefix)
    settings = AttachSettings.create(
        bucket,
        prefix=run_id.prefix(base),
        include=tuple(include or ()),
        omit=tuple(omit or ()),
        branch=branch,
        kms_key_id=kms_key_id,
        grant=grant,
    )
    report = _ReportOptions(
        source_root=source_root,
        plan=ReportPlan(
            html=html, xml=xml, json=json_report, lcov=lcov, markdown=markdown, data_file=data_file
        ),
        fail_under=fail_under,
        strict=strict,
        carry_forward=carry_forward,
        cache_dir=cache_dir,
    )
    report.check()  # before anything changes: a bad path fails now, not after the tests
    chosen = selection(functions, pattern, tag, everything, exclude)
    run = _Run(
        run_id=run_id,
        prefix=settings.prefix,
        bucket=bucket,
        chosen=chosen,
        clients=aws_clients(profile, region, endpoint_url, timeout),
        aws_options=(profile, region, endpoint_url, timeout),
        concurrency=concurrency,
        as_json=as_json,
        verbose=verbose,
        settle_quiet=settle_quiet,
        settle_timeout=settle_timeout,
    )
    signals = Signals(interrupt=_interruption)
    with signals.installed():
        status = _run(
            run,
            signals,
            settings=settings,
            argv=argv,
            report=report,
            layer_arns=layer_arn or (),
            keep_attached=keep_attached,
        )
    _exit(status, run)


def _exit(status: int, run: _Run) -> None:
    """End with ``status``: lambdacov's own codes as every command does, CMD's others as they are.

    A test command's status means what that command says (pytest's 5: no
    tests collected; 130 if it was stopped by its own Ctrl-C handling), so it
    is passed through untouched, with the ``--json`` envelope saying it.
    """
    if status in (ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE, ExitCode.AWS):
        if status:
            outcome.exit_with(ExitCode(status))
        return
    if run.as_json:
        outcome.print_document(outcome.envelope(status, result=run.to_dict()))  # type: ignore[arg-type]
    raise SystemExit(status)


class HeldError(LambdacovError):
    """The functions are attached by another run (or a plain attach): this run must not mix in."""

    exit_code = ExitCode.CHECK_FAILED
    slug = "held"


def _interruption(signum: int) -> BaseException:
    """What a signal raises in lambdacov's main thread: Ctrl-C's or SIGTERM's unwinding."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@dataclass(frozen=True)
class _ReportOptions:
    """combine's report options, as ``run`` passes them on."""

    source_root: Path | None
    plan: ReportPlan
    fail_under: float | None
    strict: bool
    carry_forward: bool
    cache_dir: Path | None

    def check(self) -> None:
        """combine's own checks of these options, made before the run instead of after it."""
        if self.fail_under is not None and not 0 <= self.fail_under <= 100:
            raise UsageError("--fail-under takes a percentage from 0 to 100")
        root = (self.source_root or Path.cwd()).resolve()
        if not root.is_dir():
            raise UsageError(f"--source-root {root} is not a directory")
        check_plan(self.plan)


@dataclass
class _Run:
    """One run: who it is, where its coverage goes, what it did so far (its JSON result)."""

    run_id: RunId
    prefix: str
    bucket: str
    chosen: Selection
    clients: Clients
    aws_options: tuple[str | None, str | None, str | None, float]
    concurrency: int
    as_json: bool
    verbose: bool
    settle_quiet: float
    settle_timeout: float
    retrier: Retrier = field(default_factory=Retrier)
    attached: fleet.FleetResult | None = None
    detached: fleet.FleetResult | None = None
    command_status: int | None = None
    settled: Settled | None = None
    combine_status: int | None = None
    total: float | None = None
    written: list[str] = field(default_factory=list)
    kept_attached: bool = False
    #: Set once the calls of an attach cut off by Ctrl-C or SIGTERM have ended.
    attach_calls: threading.Event | None = None

    def say(self, text: str) -> None:
        """A line for people, on stderr (stdout is the command's, and combine's)."""
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"lambdacov run: {text}", markup=False
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` result."""
        return {
            "command": "run",
            "run_id": self.run_id.text,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "attach": self.attached.to_dict() if self.attached else None,
            "command_exit_code": self.command_status,
            "settle": (
                {
                    "settled": self.settled.settled,
                    "seconds": round(self.settled.seconds, 3),
                    "objects": self.settled.objects,
                }
                if self.settled
                else None
            ),
            "combine_exit_code": self.combine_status,
            "total": self.total,
            "reports": self.written,
            "detach": self.detached.to_dict() if self.detached else None,
            "kept_attached": self.kept_attached,
        }


def _run(
    run: _Run,
    signals: Signals,
    *,
    settings: AttachSettings,
    argv: list[str],
    report: _ReportOptions,
    layer_arns: tuple[str, ...] | list[str],
    keep_attached: bool,
) -> int:
    """The run's steps; detach in every way out. Returns the exit status."""
    if run.as_json:
        outcome.set_result(run.to_dict())
    try:
        functions = _select(run)
        _refuse_held(run, functions)  # before anything changes: nothing to undo
        try:
            _attach(run, functions, settings, layer_arns)
            run.command_status = _run_command(signals, argv, run.as_json)
            _stop_if_signalled(signals)
            run.say(f"command exited with {run.command_status}")
            run.settled = _settle(run, report)
            _stop_if_signalled(signals)
            run.combine_status = _combine(run, report, failed_already=bool(run.command_status))
        except BaseException:
            with signals.held():  # a second Ctrl-C, or the runner's SIGTERM, must not stop it
                _end(run, keep_attached, failing=True)
            raise
        with signals.held():
            _end(run, keep_attached, failing=False)
        _stop_if_signalled(signals)
    except KeyboardInterrupt as stop:
        raise _interrupted(signals, stop) from None
    return run.command_status or run.combine_status or 0


def _run_command(signals: Signals, argv: list[str], stdout_to_stderr: bool) -> int:
    """CMD's exit status; one line when it cannot be started at all."""
    try:
        return signals.run(argv, stdout_to_stderr=stdout_to_stderr)
    except OSError as error:  # not found, not executable
        raise UsageError(
            f"cannot run {argv[0]}: {error.strerror or error}",
            "check the command after `--` (a program on PATH, or a path to one)",
        ) from None


def _end(run: _Run, keep_attached: bool, *, failing: bool) -> None:
    """Detach (unless the session is kept), whatever ended the run; the JSON result."""
    try:
        if keep_attached:
            run.kept_attached = True
            run.say(
                "functions left attached (--keep-attached); end the session with: "
                f"{_detach_hint(run)}"
            )
        else:
            _detach(run, failing=failing)
    finally:
        if run.as_json:
            outcome.set_result(run.to_dict())


def _stop_if_signalled(signals: Signals) -> None:
    if signals.received is not None:
        raise _interruption(signals.received)


def _interrupted(signals: Signals, stop: KeyboardInterrupt) -> LambdacovError:
    """The error a stopped run ends with: interrupted (130) or terminated (143)."""
    if signals.received == signal.SIGTERM or isinstance(stop, Terminated):
        return TerminationError("terminated (SIGTERM)")
    return InterruptionError("interrupted (Ctrl-C)")


# -- attach ---------------------------------------------------------------------------------


def _select(run: _Run, *, missing_ok: bool = False) -> tuple[SelectedFunction, ...]:
    """The selected functions; a name that cannot be read is an error, or with
    ``missing_ok`` (detach: the others must still be detached) a line."""
    run.clients.get("lambda")  # a bad profile or no region fails here, once
    selected = select_functions(
        run.chosen, run.clients.lambda_in, retrier=run.retrier, concurrency=run.concurrency
    )
    run.clients.context.raise_if_unreachable("read the functions")
    if selected.missing and missing_ok:
        for item in selected.missing:
            run.say(f"cannot read function {item.name} to detach it: {item.message}")
    elif selected.missing:
        names = ", ".join(item.name for item in selected.missing)
        raise UsageError(
            f"cannot read function(s) {names}: {selected.missing[0].message}",
            "check the names and --region",
        )
    return selected.functions


def _run_prefix_of(function: SelectedFunction) -> str | None:
    """The prefix the function's attach record set (None: not attached, or not by a prefix)."""
    try:
        record = decode_tags(function.tags)
    except RecordError:
        return "(an unreadable attach record)"
    if record is None:
        return None
    for change in record.env:
        if change.name == _PREFIX_VARIABLE:
            return change.after
    variables = (function.configuration.get("Environment") or {}).get("Variables") or {}
    return str(variables.get(_PREFIX_VARIABLE, "")) or "(the default prefix)"


def _refuse_held(run: _Run, functions: tuple[SelectedFunction, ...]) -> None:
    """Refuse functions attached by someone else: another run's data must not mix with ours."""
    held = {
        f.name: prefix
        for f in functions
        if (prefix := _run_prefix_of(f)) is not None and prefix != run.prefix
    }
    if not held:
        return
    holders = "; ".join(sorted({holder(prefix) for prefix in held.values()}))
    detach = shlex.join(["lambdacov", "detach", *sorted(held)])
    raise HeldError(
        f"{_few(sorted(held))} already attached, held by {holders}",
        f"wait for that run to end; if it is over, free them with `{detach}`",
    )


def _few(names: list[str], shown: int = 5) -> str:
    """Names for a line: the first few, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _attach(
    run: _Run,
    functions: tuple[SelectedFunction, ...],
    settings: AttachSettings,
    layer_arns: tuple[str, ...] | list[str],
) -> None:
    layers = fleet.find_layers(functions, run.clients.lambda_in, run.retrier, layer_arns=layer_arns)
    plans = fleet.plan_attach_all(functions, settings, layers)
    attachable = [plan for plan in plans if plan.action in ("update", "unchanged")]
    if not attachable:
        raise UsageError(
            "no function to attach: " + _reasons(plans),
            "select Python functions (see `lambdacov attach --dry-run`)",
        )
    iam_client = run.clients.get("iam") if settings.grant else None
    try:
        run.attached = fleet.execute(
            plans,
            run.clients.lambda_in,
            run.retrier,
            iam_client=iam_client,
            concurrency=run.concurrency,
            guard=run.clients.context.guard,
        )
    except fleet.FleetInterrupted as interrupted:
        run.attached = interrupted.result
        run.attach_calls = interrupted.finished
        raise interrupted.cause from None
    run.clients.context.raise_if_unreachable("attach the functions")
    if run.attached.failed:  # as attach: each function's reason, exit 1, CMD never runs
        for item in run.attached.results:
            if item.status in ("failed", "refused"):
                run.say(f"attach {item.status} on {item.function}: {item.detail}")
        outcome.exit_with(ExitCode.CHECK_FAILED)
    # Two runs that started at the same moment both saw free functions: the record each
    # function keeps now says which one holds it; the other stops (and detaches only its own).
    _refuse_held(run, _select(run))
    names = [r.function for r in run.attached.results if r.status in ("changed", "unchanged")]
    run.say(
        f"attached {len(names)} function(s) ({_few(names)}); this run's coverage goes "
        f"to s3://{run.bucket}/{run.prefix}"
    )


def _reasons(plans: tuple[FunctionPlan, ...]) -> str:
    return "; ".join(f"{plan.function}: {plan.reason}" for plan in plans) or "none selected"


# -- detach ---------------------------------------------------------------------------------


def _detach(run: _Run, *, failing: bool) -> None:
    """Undo this run's attach on the functions it holds (and only those), whatever happened.

    Fresh clients: Ctrl-C stops the calls of the clients it interrupted.
    An error here is reported with the command that finishes the detach; it
    does not hide the error the run was already ending with.
    """
    clients = aws_clients(*run.aws_options)
    _wait_for_cut_off_attach(run)
    try:
        run.clients = clients
        mine = tuple(f for f in _select(run, missing_ok=True) if _run_prefix_of(f) == run.prefix)
        plans = fleet.plan_detach_all(mine)
        try:
            run.detached = fleet.execute(
                plans,
                clients.lambda_in,
                run.retrier,
                iam_client=clients.get("iam") if any(plan.revoke for plan in plans) else None,
                concurrency=run.concurrency,
                guard=clients.context.guard,
            )
        except fleet.FleetInterrupted as interrupted:
            run.detached = interrupted.result
            raise interrupted.cause from None
        clients.context.raise_if_unreachable("detach the functions")
    except (LambdacovError, KeyboardInterrupt) as error:
        run.say(f"detach did not finish; finish it with: {_detach_hint(run)}")
        if failing:  # the run's own error (or status) is the one to end with
            if isinstance(error, LambdacovError):
                sys.stderr.write(outcome.error_line(error))
            return
        raise
    if run.detached.failed:  # as detach: each function's reason, then exit 1
        for item in run.detached.results:
            if item.status in ("failed", "refused"):
                run.say(f"detach {item.status} on {item.function}: {item.detail}")
        run.say(f"finish it with: {_detach_hint(run)}")
        if not failing:
            outcome.exit_with(ExitCode.CHECK_FAILED)
        return
    run.say(f"detached {len(plans)} function(s); their configuration is as before the run")


def _wait_for_cut_off_attach(run: _Run) -> None:
    """Let attach calls that an interruption cut off end before detach reads the functions:
    an update still under way would otherwise land after detach, attaching again."""
    if run.attach_calls is None or run.attach_calls.is_set():
        return
    bound = 2 * run.aws_options[3] + 5  # a call's connect and read timeouts, and a margin
    run.say(f"waiting (at most {bound:.0f} s) for the attach calls under way to end")
    if not run.attach_calls.wait(bound):
        run.say("attach calls are still under way; detaching what can be read now")


def _detach_hint(run: _Run) -> str:
    """The detach command for the run's functions."""
    words = ["lambdacov", "detach", *run.chosen.names]
    for option, values in (
        ("--pattern", [p.pattern for p in run.chosen.patterns]),
        ("--tag", [f"{k}={v}" if v is not None else k for k, v in run.chosen.tags]),
        ("--exclude", [p.pattern for p in run.chosen.excludes]),
    ):
        for value in values:
            words += [option, value]
    if run.chosen.everything:
        words.append("--all")
    profile, region, endpoint_url, _ = run.aws_options
    for option, given in (("--profile", profile), ("--region", region)):
        if given:
            words += [option, given]
    if endpoint_url:
        words += ["--endpoint-url", redact_url(endpoint_url)]
    return shlex.join(words)


# -- settle and combine ---------------------------------------------------------------------


def _settle(run: _Run, report: _ReportOptions) -> Settled:
    """Wait until the run's objects stop changing (the last uploads after the last test)."""
    client = run.clients.get("s3")
    quiet, limit = run.settle_quiet, run.settle_timeout

    def listing() -> frozenset[tuple[str, str, int]]:
        with translating("s3:ListObjectsV2", f"s3://{run.bucket}/{run.prefix}"):
            return frozenset(
                (item["Key"], item.get("ETag", ""), int(item.get("Size", 0)))
                for page in each_page(
                    client.list_objects_v2,
                    {"Bucket": run.bucket, "Prefix": run.prefix},
                    token=CONTINUATION_TOKEN,
                    retrier=run.retrier,
                )
                for item in page.get("Contents", [])
            )

    settled = settle(listing, quiet=quiet, limit=limit)
    if settled.settled:
        run.say(f"delivery settled in {settled.seconds:.1f} s ({settled.objects} object(s))")
    else:
        run.say(
            f"delivery did not settle within {limit:g} s ({settled.objects} object(s) so far): "
            "combining what arrived (raise --settle-timeout to wait longer)"
        )
    return settled


def _combine(run: _Run, report: _ReportOptions, *, failed_already: bool) -> int:
    """combine's own command on this run's prefix; its exit status.

    With ``--json``, combine's lines for people go to stderr (stdout holds the
    run's document), and its JSON report is read for the total. After a failed
    command, an error of combine (no data...) is one line: the command's status
    is the run's.
    """
    from lambdacov.cli.combine import combine_command

    profile, region, endpoint_url, timeout = run.aws_options
    with contextlib.ExitStack() as stack:
        json_report = report.plan.json
        if json_report is None and run.as_json:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lambdacov-")))
            json_report = scratch / "coverage.json"
        if run.as_json:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        try:
            combine_command(
                bucket=run.bucket,
                prefix=run.prefix,
                source_root=report.source_root,
                html=report.plan.html,
                xml=report.plan.xml,
                json_report=None if json_report is None else str(json_report),
                lcov=report.plan.lcov,
                markdown=report.plan.markdown,
                data_file=report.plan.data_file,
                fail_under=report.fail_under,
                strict=report.strict,
                carry_forward=report.carry_forward,
                cache_dir=report.cache_dir,
                profile=profile,
                region=region,
                endpoint_url=endpoint_url,
                timeout=timeout,
                verbose=run.verbose,
            )
            status = 0
        except typer.Exit as done:
            status = int(done.exit_code)
        except LambdacovError as error:
            if not failed_already:
                raise
            sys.stderr.write(outcome.error_line(error))
            return int(error.exit_code)
        run.written = [
            str(path)
            for path in (*dataclasses.astuple(report.plan),)
            if isinstance(path, Path) and path.exists()
        ]
        if json_report is not None and json_report.is_file():
            document = json.loads(json_report.read_text("utf-8"))
            run.total = float(document["totals"]["percent_covered"])
    return status
