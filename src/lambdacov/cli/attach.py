"""`lambdacov attach` and `detach`: parse, call the core, render.

Plans and results come from lambdacov.attach as frozen values; this module only
turns them into a rich table and diffs for people, or one JSON document for
``--json``.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lambdacov.attach import fleet
from lambdacov.attach.plan import AttachSettings, FunctionPlan
from lambdacov.attach.selection import Selection, SelectionResult, select_functions
from lambdacov.aws import DEFAULT_TIMEOUT, AwsContext, Clients, Retrier, redact_url
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    Branch,
    Bucket,
    Concurrency,
    EndpointUrl,
    Everything,
    Excludes,
    Functions,
    GrantPolicy,
    Include,
    JsonOutput,
    KmsKeyId,
    LayerArns,
    Omit,
    Patterns,
    Prefix,
    Profile,
    Region,
    Tags,
    Timeout,
    Verbose,
    aws_clients,
    console,
    progress_bar,
    progress_console,
    selection,
)
from lambdacov.errors import ExitCode

DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print what would change, per function, and change nothing."),
]


def register(app: typer.Typer) -> None:
    """Add attach and detach to the root app."""
    app.command("attach")(attach_command)
    app.command("detach")(detach_command)


def attach_command(
    functions: Functions = None,
    *,
    bucket: Bucket,
    prefix: Prefix = None,
    include: Include = None,
    omit: Omit = None,
    sample_rate: Annotated[
        float | None,
        typer.Option(
            "--sample-rate", help="Fraction of execution environments that record, in [0, 1]."
        ),
    ] = None,
    branch: Branch = None,
    flush: Annotated[
        str | None,
        typer.Option("--flush", help="One data object per 'environment' or per 'invocation'."),
    ] = None,
    kms_key_id: KmsKeyId = None,
    upload_timeout: Annotated[
        float | None,
        typer.Option("--upload-timeout", help="Seconds one upload may take."),
    ] = None,
    debug: Annotated[
        bool | None,
        typer.Option("--debug/--no-debug", help="Log the runtime's DEBUG records."),
    ] = None,
    layer_arn: LayerArns = None,
    grant: GrantPolicy = False,
    image_handler: Annotated[
        str | None,
        typer.Option(
            "--image-handler",
            help="For container image functions whose ImageConfig sets no command: the handler "
            "their image's CMD names (e.g. app.handler).",
        ),
    ] = None,
    pattern: Patterns = None,
    tag: Tags = None,
    everything: Everything = False,
    exclude: Excludes = None,
    dry_run: DryRun = False,
    concurrency: Concurrency = 8,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Add the layer and the COVERAGE_* variables to functions, recording what changed."""
    settings = AttachSettings.create(
        bucket,
        prefix=prefix,
        include=tuple(include or ()),
        omit=tuple(omit or ()),
        sample_rate=sample_rate,
        branch=branch,
        flush=flush,
        kms_key_id=kms_key_id,
        upload_timeout=upload_timeout,
        debug=debug,
        grant=grant,
        image_handler=image_handler,
    )
    chosen = selection(functions, pattern, tag, everything, exclude)
    clients = aws_clients(profile, region, endpoint_url, timeout)
    retrier = Retrier()
    selected = _select(chosen, clients, retrier, concurrency)
    layers = fleet.find_layers(
        selected.functions, clients.lambda_in, retrier, layer_arns=layer_arn or ()
    )
    plans = fleet.plan_attach_all(selected.functions, settings, layers)
    iam_client = clients.get("iam") if any(plan.action != "skip" for plan in plans) else None
    policies = (
        fleet.missing_policies(
            plans, selected.functions, settings, iam_client, concurrency=concurrency
        )
        if iam_client is not None
        else {}
    )
    _run_and_render(
        plans,
        clients,
        retrier,
        iam_client=iam_client,
        missing=selected.missing,
        policies=policies,
        dry_run=dry_run,
        concurrency=concurrency,
        as_json=as_json,
        verbose=verbose,
    )


def detach_command(
    functions: Functions = None,
    *,
    pattern: Patterns = None,
    tag: Tags = None,
    everything: Everything = False,
    exclude: Excludes = None,
    dry_run: DryRun = False,
    concurrency: Concurrency = 8,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Undo exactly what attach recorded: layer, variables, exec wrapper, record and policy."""
    chosen = selection(functions, pattern, tag, everything, exclude)
    clients = aws_clients(profile, region, endpoint_url, timeout)
    retrier = Retrier()
    selected = _select(chosen, clients, retrier, concurrency)
    plans = fleet.plan_detach_all(selected.functions)
    _run_and_render(
        plans,
        clients,
        retrier,
        iam_client=clients.get("iam") if any(plan.revoke for plan in plans) else None,
        missing=selected.missing,
        policies={},
        dry_run=dry_run,
        concurrency=concurrency,
        as_json=as_json,
        verbose=verbose,
    )


def _select(
    chosen: Selection, clients: Clients, retrier: Retrier, concurrency: int
) -> SelectionResult:
    # The default region's client first: a bad profile or no region fails here, once.
    clients.get("lambda")
    selected = select_functions(chosen, clients.lambda_in, retrier=retrier, concurrency=concurrency)
    # Named functions that cannot be read are reported one by one; an endpoint that
    # does not answer is one error for the command, before anything changes.
    clients.context.raise_if_unreachable("read the functions")
    return selected


def _run_and_render(
    plans: tuple[FunctionPlan, ...],
    clients: Clients,
    retrier: Retrier,
    *,
    iam_client: Any,
    missing: Any,
    policies: Any,
    dry_run: bool,
    concurrency: int,
    as_json: bool,
    verbose: bool,
) -> None:
    err = progress_console()
    shown = err if err is not None and not as_json and not dry_run else None
    updates = sum(plan.action == "update" for plan in plans)
    try:
        with progress_bar(shown, "Updating", updates) as advance:
            result = fleet.execute(
                plans,
                clients.lambda_in,
                retrier,
                iam_client=iam_client,
                dry_run=dry_run,
                concurrency=concurrency,
                missing=missing,
                policies=policies,
                on_result=lambda r: advance() if r.plan and r.plan.action == "update" else None,
                guard=clients.context.guard,
            )
    except fleet.FleetInterrupted as interrupted:
        _show(interrupted.result, as_json=as_json, verbose=verbose)
        sys.stderr.write(_interrupted_summary(interrupted.result, clients.context))
        raise interrupted.cause from None
    _show(result, as_json=as_json, verbose=verbose)
    clients.context.raise_if_unreachable(f"{result.kind} the functions")
    if result.failed:
        outcome.exit_with(ExitCode.CHECK_FAILED)


def _show(result: fleet.FleetResult, *, as_json: bool, verbose: bool) -> None:
    """The fleet's result, also when Ctrl-C cut it off: what changed is shown either way."""
    outcome.show(as_json, result.to_dict(), lambda: _render_fleet(result, verbose=verbose))


def _interrupted_summary(result: fleet.FleetResult, context: AwsContext) -> str:
    """What Ctrl-C left in AWS, and the command that undoes (or finishes) it."""
    counts = result.counts()
    parts = [f"{counts[status]} {status}" for status in sorted(counts)]
    lines = [f"{result.kind} interrupted: {', '.join(parts) or 'no functions'}"]
    touched = result.touched
    if result.kind == "attach":
        if touched:
            names = ", ".join(item.function for item in touched)
            lines.append(f"  changed (or cut off mid-change): {names}")
            lines.append(f"  to undo: {_detach_command(touched, context)}")
        else:
            lines.append("  no function was changed")
    else:
        unfinished = tuple(
            item for item in result.results if item.touched and item.status != "changed"
        ) + tuple(item for item in result.results if item.status == "not-started")
        if unfinished:
            lines.append(f"  to finish: {_detach_command(unfinished, context)}")
    return "".join(f"{line}\n" for line in lines)


def _detach_command(items: tuple[fleet.FunctionResult, ...], context: AwsContext) -> str:
    regions = {item.region for item in items}
    if len(regions) == 1:
        words = [item.function for item in items] + ["--region", regions.pop()]
    else:  # an ARN names its region
        words = [item.plan.arn if item.plan else item.function for item in items]
    if context.profile:
        words += ["--profile", context.profile]
    if context.endpoint_url:
        words += ["--endpoint-url", redact_url(context.endpoint_url)]
    return shlex.join(["lambdacov", "detach", *words])


_STYLE = {
    "changed": "green",
    "planned": "cyan",
    "unchanged": "dim",
    "skipped": "yellow",
    "refused": "red",
    "failed": "red",
    "interrupted": "bold red",
    "not-started": "dim",
}


def _render_fleet(result: fleet.FleetResult, *, verbose: bool) -> None:
    out = console()
    if result.dry_run or verbose:
        for item in result.results:
            if item.plan is not None and item.plan.action == "update":
                out.print(_diff(item.plan), soft_wrap=True, markup=False, highlight=False)
    table = Table(box=None)
    for column in ("Function", "Region", "Result", "Detail"):
        table.add_column(column, overflow="fold")
    for item in result.results:
        style = _STYLE.get(item.status, "")
        table.add_row(
            escape(item.function),
            item.region,
            f"[{style}]{item.status}[/{style}]",
            escape(item.detail),
        )
    out.print(table, soft_wrap=True)
    counts = result.counts()
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    verb = "would change nothing" if result.dry_run and not counts.get("planned") else ""
    out.print(f"{result.kind}: {summary or 'no functions'} {verb}".rstrip(), highlight=False)
    shown: set[str] = set()
    for item in result.results:
        if item.missing_policy is None:
            continue
        document = json.dumps(item.missing_policy, indent=2, sort_keys=True)
        if document in shown:
            continue
        shown.add(document)
        out.print(
            f"\nThe role of {escape(item.function)} (and maybe others) cannot deliver coverage; "
            "add this policy to it, or run attach again with --grant:",
            highlight=False,
        )
        out.print(document, markup=False, highlight=False, soft_wrap=True)


def _image_lines(plan: FunctionPlan) -> list[str]:
    """The ImageConfig fields that change, for a container image function."""
    if not plan.image_changes:
        return []
    before, after = plan.image_before or {}, plan.image_after or {}
    changed = [key for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return ["  image config:"] + [
        f"    ~ {key}: {_shown(before.get(key))} -> {_shown(after.get(key))}" for key in changed
    ]


def _handler_line(plan: FunctionPlan) -> str:
    if plan.is_image:
        if plan.kind == "attach":
            return (
                f"  handler: {plan.handler} (container image: ImageConfig.Command redirects it; "
                "the image must carry lambdacov's files, or init fails: docs/where-it-runs.md)"
            )
        return f"  handler: {plan.handler} (ImageConfig.Command as it was before attach)"
    if plan.kind == "attach":
        return f"  handler: {plan.handler} (unchanged; the exec wrapper redirects it at run time)"
    return f"  handler: {plan.handler} (unchanged)"


def _shown(value: Any) -> str:
    """An ImageConfig field as a diff shows it; "(image's)" when the image's own value applies."""
    return "(image's)" if value is None else json.dumps(value)


def _diff(plan: FunctionPlan) -> str:
    lines = [f"{plan.kind} {plan.function} ({plan.region})"]
    removed = [layer for layer in plan.layers_before if layer not in plan.layers_after]
    if removed or plan.layers_before != plan.layers_after:
        lines.append("  layers:")
        lines.extend(
            f"    {'+' if layer not in plan.layers_before else ' '} {layer}"
            for layer in plan.layers_after
        )
        lines.extend(f"    - {layer}" for layer in removed)
    lines.extend(_image_lines(plan))
    diffs = plan.env_diff()
    if diffs:
        lines.append("  environment:")
        for diff in diffs:
            if diff.before is None:
                lines.append(f"    + {diff.name}={diff.after}")
            elif diff.after is None:
                lines.append(f"    - {diff.name}={diff.before}")
            else:
                lines.append(f"    ~ {diff.name}: {diff.before} -> {diff.after}")
    lines.append(_handler_line(plan))
    if plan.set_tags or plan.remove_tags:
        lines.append(
            f"  record: {len(plan.set_tags)} tag(s) written, {len(plan.remove_tags)} removed"
        )
    if plan.grant:
        lines.append(f"  policy: put {plan.grant.policy_name} on role {plan.grant.role_name}")
    if plan.revoke:
        lines.append(f"  policy: delete {plan.revoke[1]} from role {plan.revoke[0]}")
    return "\n".join(lines)
