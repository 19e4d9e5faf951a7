"""``lambdacov combiner deploy``, and the ``combine --remote`` entry point for cli/combine.py.

The core is :mod:`lambdacov.remote`; this module makes the clients, builds
or publishes the layer when asked, and renders.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lambdacov.aws import AwsContext, Retrier
from lambdacov.cli._options import (
    Bucket,
    EndpointUrl,
    JsonOutput,
    Profile,
    Region,
    Verbose,
    aws_context,
    console,
    print_json,
)
from lambdacov.collect import normalise_prefix
from lambdacov.combine import CombineRequest, CombineResult
from lambdacov.errors import UsageError
from lambdacov.layer import SUPPORTED_ARCHS, SUPPORTED_PYTHONS, build_layer
from lambdacov.layer.publish import LayerArtifact, publish_layer
from lambdacov.layer.targets import host_arch, host_python
from lambdacov.remote import AwsInvoker, LocalInvoker, RemoteSettings, combine_remote
from lambdacov.remote import deploy as combiner_deploy
from lambdacov.remote.plan import check_output_prefix, default_output_prefix

app = typer.Typer(
    help="The combiner function that `lambdacov combine --remote` fans out to.",
    no_args_is_help=True,
)
EXECUTORS = ("aws", "local")
# Seconds the HTTP read may wait beyond the function's own timeout.
INVOKE_READ_MARGIN = 60


def register(root: typer.Typer) -> None:
    """Add the ``combiner`` command group to the root app."""
    root.add_typer(app, name="combiner")


# combine --remote ------------------------------------------------------------------------


def invoke_client(context: AwsContext, *, timeout: int, concurrency: int) -> Any:
    """A Lambda client fit for long synchronous invocations, many at once.

    botocore's default read timeout (60 s) would cut a 15-minute shard off
    and retry it; the read must outlast the function's own timeout instead.
    """
    return context.client(
        "lambda",
        read_timeout=timeout + INVOKE_READ_MARGIN,
        max_pool_connections=concurrency + 4,
    )


def remote_combine(
    context: AwsContext,
    request: CombineRequest,
    *,
    shards: int | None = None,
    combiner_function: str = combiner_deploy.DEFAULT_FUNCTION_NAME,
    executor: str = "aws",
    concurrency: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> CombineResult:
    """``combine --remote``: what cli/combine.py calls instead of ``combine(client, request)``.

    ``executor="aws"`` invokes the deployed combiner function; ``"local"``
    runs it in local Lambda emulators against ``--endpoint-url`` (moto), for
    trying the fan-out without AWS. Raises RemoteCombineError when a shard
    keeps failing; no report must be written then.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}")
    s3 = context.client("s3")
    settings = RemoteSettings(shards=shards, concurrency=concurrency)
    if executor == "aws":
        client = invoke_client(
            context, timeout=combiner_deploy.DEFAULT_TIMEOUT_SECONDS, concurrency=concurrency
        )
        invoker = AwsInvoker(client, combiner_function, concurrency=concurrency)
        return combine_remote(s3, invoker, request, settings, progress=progress).result
    if not context.endpoint_url:
        raise UsageError(
            "--executor local runs the combiner against a local S3 only",
            "pass --endpoint-url (a moto server), or use --executor aws",
        )
    with tempfile.TemporaryDirectory(prefix="lambdacov-remote-") as scratch:
        layer = host_layer(Path(scratch))
        env = {"AWS_ENDPOINT_URL": context.endpoint_url}
        with LocalInvoker(layer, instances=min(concurrency, 4), env=env) as local:
            return combine_remote(s3, local, request, settings, progress=progress).result


def host_layer(directory: Path) -> Path:
    """The layer for this machine's Python and architecture (what the emulator runs)."""
    return build_layer(host_python(), host_arch(), directory / "layer.zip").path


# combiner deploy -------------------------------------------------------------------------


def _layer_arn(
    context: AwsContext,
    lambda_client: Any,
    *,
    layer_arn: str | None,
    layer_zip: Path | None,
    python: str,
    arch: str,
) -> str:
    if layer_arn:
        return layer_arn
    retrier = Retrier()
    if layer_zip is not None:
        return publish_layer(lambda_client, LayerArtifact.from_zip(layer_zip), retrier=retrier).arn
    with tempfile.TemporaryDirectory(prefix="lambdacov-combiner-layer-") as scratch:
        build = build_layer(python, arch, Path(scratch) / "layer.zip")
        return publish_layer(lambda_client, LayerArtifact.from_build(build), retrier=retrier).arn


@app.command("deploy")
def deploy_command(
    *,
    bucket: Bucket,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Key prefix of the coverage objects.")
    ] = "coverage/",
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
    data_prefix = normalise_prefix(prefix)
    out = normalise_prefix(output_prefix) if output_prefix else default_output_prefix(data_prefix)
    check_output_prefix(data_prefix, out)
    context = aws_context(profile, region, endpoint_url)
    session = context.session()
    lambda_client = context.client("lambda", session)
    where = str(lambda_client.meta.region_name)
    account = str(context.client("sts", session).get_caller_identity()["Account"])
    settings = combiner_deploy.CombinerSettings(
        bucket=bucket,
        prefix=data_prefix,
        output_prefix=out,
        layer_arn=layer_arn or "(published on deploy)",
        python=python,
        arch=arch,
        function_name=function_name,
        memory_mb=memory,
        timeout=timeout,
        role_arn=role_arn,
    )
    partition = combiner_deploy.partition_of(where)
    if dry_run:
        plan = combiner_deploy.plan_combiner(
            settings, region=where, account=account, partition=partition
        )
        _render({"dry_run": True, **plan.to_dict()}, json_output)
        return
    arn = _layer_arn(
        context, lambda_client, layer_arn=layer_arn, layer_zip=layer_zip, python=python, arch=arch
    )
    plan = combiner_deploy.plan_combiner(
        _with_layer(settings, arn), region=where, account=account, partition=partition
    )
    deployed = combiner_deploy.apply_combiner(plan, lambda_client, context.client("iam", session))
    _render(
        {
            "function_name": deployed.function_name,
            "function_arn": deployed.function_arn,
            "role_arn": deployed.role_arn,
            "layer_arn": deployed.layer_arn,
            "created": deployed.created,
            "policy": plan.policy if verbose or json_output else None,
        },
        json_output,
    )


def _with_layer(
    settings: combiner_deploy.CombinerSettings, arn: str
) -> combiner_deploy.CombinerSettings:
    import dataclasses

    return dataclasses.replace(settings, layer_arn=arn)


def _render(document: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(document)
        return
    out = console()
    if document.get("dry_run"):
        out.print(f"Would deploy {document['function_name']} (nothing changed):", markup=False)
        print_json(document)
        return
    verb = "Created" if document["created"] else "Updated"
    out.print(f"{verb} {document['function_arn']}", markup=False)
    out.print(f"  role  {document['role_arn']}", markup=False)
    out.print(f"  layer {document['layer_arn']}", markup=False)
    if document.get("policy"):
        print_json(document["policy"])
