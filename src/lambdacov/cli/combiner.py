"""``lambdacov combiner deploy``, and the ``combine --remote`` entry point for cli/combine.py.

The core is :mod:`lambdacov.combine.remote`; this module makes the clients, calls it,
and renders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lambdacov.aws import Clients
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    Bucket,
    EndpointUrl,
    JsonOutput,
    Prefix,
    Profile,
    Region,
    Verbose,
    aws_clients,
    console,
    data_prefix,
)
from lambdacov.combine.collect import normalise_prefix
from lambdacov.combine.merge import CombineRequest
from lambdacov.combine.remote import RemoteCombineResult, RemoteSettings, RemoteStats
from lambdacov.combine.remote import deploy as combiner_deploy
from lambdacov.combine.remote.executor import combine_with_executor
from lambdacov.combine.remote.plan import check_output_prefix, default_output_prefix
from lambdacov.errors import UsageError
from lambdacov.layer import SUPPORTED_ARCHS, SUPPORTED_PYTHONS

app = typer.Typer(
    help="The combiner function that `lambdacov combine --remote` fans out to.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    """Add the ``combiner`` command group to the root app."""
    root.add_typer(app, name="combiner")


# combine --remote ------------------------------------------------------------------------


def remote_combine(
    clients: Clients,
    request: CombineRequest,
    *,
    shards: int | None = None,
    combiner_function: str = combiner_deploy.DEFAULT_FUNCTION_NAME,
    executor: str = "aws",
    concurrency: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> RemoteCombineResult:
    """``combine --remote``: the clients for :func:`combine_with_executor`, from the options.

    ``executor="aws"`` invokes the deployed combiner function; ``"local"``
    runs it in local Lambda emulators against ``--endpoint-url`` (moto).
    Raises RemoteCombineError when a shard keeps failing; no report must be
    written then.
    """

    def invoke_client(*, read_timeout: float, max_pool_connections: int) -> Any:
        return clients.get(
            "lambda", read_timeout=read_timeout, max_pool_connections=max_pool_connections
        )

    return combine_with_executor(
        executor,
        clients.get("s3"),
        request,
        invoke_client=invoke_client,
        endpoint_url=clients.context.endpoint_url,
        function_name=combiner_function,
        settings=RemoteSettings(shards=shards, concurrency=concurrency),
        progress=progress,
    )


def render_stats(stats: RemoteStats) -> None:
    """One line on stderr: what the fan-out did (the reports say what it combined)."""
    reuse = f", {stats.reused_days} reused" if stats.reused_days else ""
    kept = f", {stats.kept_days} kept" if stats.kept_days else ""
    retries = f" ({stats.retries} retried)" if stats.retries else ""
    levels = f", {stats.reduce_levels} reduce level(s)" if stats.reduce_levels else ""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"remote run {stats.run_id}: {stats.shards} shard(s) over {stats.days} day(s)"
        f"{reuse}{kept}, {stats.invocations} invocation(s){retries}{levels}, "
        f"{stats.partials_merged} partial(s) merged here",
        markup=False,
    )


# combiner deploy -------------------------------------------------------------------------


@app.command("deploy")
def deploy_command(
    *,
    bucket: Bucket,
    prefix: Prefix = None,
    output_prefix: Annotated[
        str | None,
        typer.Option(
            "--output-prefix",
            help="Where partials go (default: beside the prefix, e.g. coverage.lambdacov/).",
        ),
    ] = None,
    function_name: Annotated[
        str, typer.Option("--function-name", help="The combiner function's name.")
    ] = combiner_deploy.DEFAULT_FUNCTION_NAME,
    layer_arn: Annotated[
        str | None,
        typer.Option("--layer-arn", help="Use this lambdacov layer version (else publish one)."),
    ] = None,
    layer_zip: Annotated[
        Path | None,
        typer.Option("--layer-zip", help="Publish this zip from `lambdacov build-layer`."),
    ] = None,
    python: Annotated[
        str, typer.Option("--python", help=f"Runtime: {', '.join(SUPPORTED_PYTHONS)}.")
    ] = "3.12",
    arch: Annotated[
        str, typer.Option("--arch", help=f"Architecture: {', '.join(SUPPORTED_ARCHS)}.")
    ] = "x86_64",
    memory: Annotated[
        int, typer.Option("--memory", min=128, max=10240, help="Memory in MB (CPU scales with it).")
    ] = combiner_deploy.DEFAULT_MEMORY_MB,
    timeout: Annotated[
        int, typer.Option("--timeout", min=1, max=900, help="Per-shard timeout in seconds.")
    ] = combiner_deploy.DEFAULT_TIMEOUT_SECONDS,
    role_arn: Annotated[
        str | None,
        typer.Option("--role-arn", help="Use this role (else a least-privilege one is made)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (policy included), change nothing.")
    ] = False,
    profile: Profile = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Create or update the combiner function that `combine --remote` invokes."""
    if layer_arn and layer_zip:
        raise UsageError("give --layer-arn or --layer-zip, not both")
    objects = data_prefix(prefix)
    out = normalise_prefix(output_prefix) if output_prefix else default_output_prefix(objects)
    check_output_prefix(objects, out)
    # No --timeout here: this command's --timeout is the combiner function's.
    clients = aws_clients(profile, region, endpoint_url)
    settings = combiner_deploy.CombinerSettings(
        bucket=bucket,
        prefix=objects,
        output_prefix=out,
        layer_arn=layer_arn or "",  # empty: published on deploy
        python=python,
        arch=arch,
        function_name=function_name,
        memory_mb=memory,
        timeout=timeout,
        role_arn=role_arn,
    )
    done = combiner_deploy.deploy_combiner(
        settings,
        clients.get("lambda"),
        clients.get("iam"),
        clients.get("sts"),
        layer_zip=layer_zip,
        dry_run=dry_run,
    )
    deployed = done.deployed
    document = (
        {"dry_run": True, **done.plan.to_dict()}
        if deployed is None
        else {
            "function_name": deployed.function_name,
            "function_arn": deployed.function_arn,
            "role_arn": deployed.role_arn,
            "layer_arn": deployed.layer_arn,
            "created": deployed.created,
            "policy": done.plan.policy if verbose or json_output else None,
        }
    )
    outcome.show(json_output, document, lambda: _render(document))


def _render(document: dict[str, Any]) -> None:
    out = console()
    if document.get("dry_run"):
        out.print(f"Would deploy {document['function_name']} (nothing changed):", markup=False)
        outcome.print_json(document)
        return
    verb = "Created" if document["created"] else "Updated"
    out.print(f"{verb} {document['function_arn']}", markup=False)
    out.print(f"  role  {document['role_arn']}", markup=False)
    out.print(f"  layer {document['layer_arn']}", markup=False)
    if document.get("policy"):
        outcome.print_json(document["policy"])
