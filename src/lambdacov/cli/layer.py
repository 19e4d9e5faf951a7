"""`lambdacov build-layer` and `publish-layer`: the layer, built and published."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from lambdacov.aws import DEFAULT_TIMEOUT, Retrier
from lambdacov.cli import outcome
from lambdacov.cli._options import (
    Concurrency,
    EndpointUrl,
    JsonOutput,
    Profile,
    Regions,
    Timeout,
    Verbose,
    aws_clients,
    console,
    progress_bar,
    progress_console,
)
from lambdacov.errors import ExitCode, UsageError
from lambdacov.layer import (
    FORMATS,
    SUPPORTED_ARCHS,
    SUPPORTED_PYTHONS,
    LayerBuild,
    build_layer,
    bytecode,
    default_output_name,
)
from lambdacov.layer.publish import (
    Grant,
    LayerArtifact,
    PublishedLayer,
    PublishFailure,
    publish_everywhere,
)
from lambdacov.layer.targets import host_python, parse_target

NoCompile = Annotated[
    bool,
    typer.Option(
        "--no-compile",
        help="Build without .pyc files when no interpreter of the target Python is at hand "
        "(each cold start then compiles them: the warning says how long).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add build-layer and publish-layer to the root app."""
    app.command("build-layer")(build_layer_command)
    app.command("publish-layer")(publish_layer_command)


def build_layer_command(
    *,
    python: Annotated[
        str,
        typer.Option(
            help=f"Python version of the Lambda runtime: {', '.join(SUPPORTED_PYTHONS)}.",
            show_default="this interpreter's version",
        ),
    ] = host_python(),
    arch: Annotated[
        str,
        typer.Option(help=f"Lambda architecture of the functions: {', '.join(SUPPORTED_ARCHS)}."),
    ] = "x86_64",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the layer zip (with --format dir: the directory).",
            show_default="lambdacov-layer-py3X-<arch>.zip in the current directory",
        ),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"{' or '.join(FORMATS)}: the zip to publish, or its files in a directory laid "
            "out as /opt, to COPY into a container image (docs/where-it-runs.md).",
        ),
    ] = "zip",
    no_compile: NoCompile = False,
    wheel_dir: Annotated[
        Path | None,
        typer.Option(
            help="Take the coverage wheel from this directory, never from PyPI (offline builds)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where downloaded wheels are kept.",
            show_default="$XDG_CACHE_HOME/lambdacov/wheels",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout.")
    ] = False,
) -> None:
    """Build the layer zip: coverage.py for the target runtime plus the coverage_wrapper runtime."""
    destination = output if output is not None else Path(default_output_name(python, arch, layout))
    errors = Console(stderr=True)

    def build() -> LayerBuild:
        return build_layer(
            python,
            arch,
            destination,
            wheel_dir=wheel_dir,
            cache_dir=cache_dir,
            precompile=not no_compile,
            layout=layout,
        )

    # A spinner helps a person waiting on a download; a pipe gets nothing.
    if errors.is_terminal and not as_json:
        with errors.status("Building the layer..."):
            result = build()
    else:
        result = build()

    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    # soft_wrap keeps hashes on one line, whole, for copy and paste.
    outcome.show(
        as_json, result.to_dict(), lambda: Console().print(_summary(result), soft_wrap=True)
    )


def _summary(result: LayerBuild) -> Text:
    rows = [
        ("runtime", f"{result.runtime} {result.arch}"),
        ("format", "directory (copy it to /opt in the image)" if result.format == "dir" else "zip"),
        (
            "coverage",
            f"{result.coverage_version} ({result.coverage_wheel}, from {result.wheel_source})",
        ),
        (
            "size",
            f"{result.size_bytes:,} bytes zipped, {result.unzipped_bytes:,} unzipped, "
            f"{result.entries} files",
        ),
        ("precompiled", "yes" if result.precompiled else "no, --no-compile (see the warning)"),
        ("content hash", result.content_hash),
        ("sha256", result.sha256),
    ]
    text = Text.assemble(("Built ", "bold"), (str(result.path), "bold green"))
    for label, value in rows:
        text.append(f"\n  {label:<13} ", style="dim")
        text.append(value)
    return text


def publish_layer_command(
    *,
    python: Annotated[
        list[str] | None,
        typer.Option(
            "--python",
            help=f"Python version to publish for (repeatable): {', '.join(SUPPORTED_PYTHONS)}.",
            show_default="each of them with an interpreter here to precompile it (or all, "
            "with --no-compile)",
        ),
    ] = None,
    arch: Annotated[
        list[str] | None,
        typer.Option(
            "--arch",
            help=f"Architecture to publish for (repeatable): {', '.join(SUPPORTED_ARCHS)}.",
            show_default="both",
        ),
    ] = None,
    zips: Annotated[
        list[Path] | None,
        typer.Option(
            "--zip",
            help="Publish this zip from `lambdacov build-layer` instead of building (repeatable).",
        ),
    ] = None,
    wheel_dir: Annotated[
        Path | None,
        typer.Option(help="Take coverage wheels from this directory, never from PyPI."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where downloaded wheels are kept.", show_default="the user's cache"),
    ] = None,
    no_compile: NoCompile = False,
    public: Annotated[
        bool, typer.Option("--public", help="Let every AWS account use the layer versions.")
    ] = False,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            help="Let this account id or organization id (o-...) use the layer (repeatable).",
        ),
    ] = None,
    concurrency: Concurrency = 8,
    profile: Profile = None,
    region: Regions = None,
    endpoint_url: EndpointUrl = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    as_json: JsonOutput = False,
    verbose: Verbose = False,
) -> None:
    """Build the layers and publish each in every region, unless that version is already there."""
    grants = ([Grant.public()] if public else []) + [Grant.parse(p) for p in principal or []]
    if zips and (python or arch):
        raise UsageError("--zip publishes existing zips: leave out --python and --arch")
    # The first --region is the command's region, as --region is for every other command.
    clients = aws_clients(profile, region[0] if region else None, endpoint_url, timeout)
    # Each region's client (None: the default region's): a bad profile, a bad region
    # name or no region at all fails here, before building.
    asked: list[str | None] = [*region] if region else [None]
    regions = list(dict.fromkeys(str(clients.lambda_in(name).meta.region_name) for name in asked))
    err = progress_console()
    shown = err if err is not None and not as_json else None
    pythons, skipped = ([], []) if zips else _pythons_to_publish(python, precompile=not no_compile)
    for version in skipped:
        typer.echo(
            f"warning: python{version} skipped: no Python {version} interpreter here to "
            f"precompile its .pyc files (install Python {version}, or pass --no-compile)",
            err=True,
        )
    with tempfile.TemporaryDirectory(prefix="lambdacov-publish-") as scratch:
        if zips:
            artifacts = [LayerArtifact.from_zip(path) for path in zips]
        else:
            artifacts = _build_all(
                pythons,
                arch or list(SUPPORTED_ARCHS),
                Path(scratch),
                wheel_dir,
                cache_dir,
                precompile=not no_compile,
                verbose=verbose,
            )
        with progress_bar(shown, "Publishing", len(artifacts) * len(regions)) as advance:
            published, failures = publish_everywhere(
                artifacts,
                regions,
                clients.lambda_in,
                retrier=Retrier(),
                grants=grants,
                concurrency=concurrency,
                on_done=lambda _outcome: advance(),
            )
    if not published:  # else the layers AWS did not take are failures beside the others
        clients.context.raise_if_unreachable("publish the layers")
    document = {
        "layers": [layer.to_dict() for layer in _ordered(published)],
        "failures": [vars(failure) for failure in failures],
        "skipped_pythons": skipped,
    }
    outcome.show(as_json, document, lambda: _render_published(published, failures))
    if failures:
        outcome.exit_with(ExitCode.AWS)


def _pythons_to_publish(
    asked: list[str] | None, *, precompile: bool
) -> tuple[list[str], list[str]]:
    """The Pythons to build for, and those left out.

    Asked for by name, every one is built (a missing interpreter is then an error
    naming the fix). By default, every supported Python whose interpreter is here
    to precompile the layer; the others are left out with a warning, unless
    ``--no-compile`` builds them all.
    """
    if asked or not precompile:
        return list(asked or SUPPORTED_PYTHONS), []
    found = [version for version in SUPPORTED_PYTHONS if bytecode.find_interpreter(version)]
    if not found:
        return list(SUPPORTED_PYTHONS), []  # the build's error names them all, and the fix
    return found, [version for version in SUPPORTED_PYTHONS if version not in found]


def _build_all(
    pythons: list[str],
    archs: list[str],
    scratch: Path,
    wheel_dir: Path | None,
    cache_dir: Path | None,
    *,
    precompile: bool,
    verbose: bool,
) -> list[LayerArtifact]:
    artifacts = []
    err = progress_console()
    if precompile:
        # Every interpreter before the first build: one error names all that are missing.
        versions = dict.fromkeys(parse_target(python, archs[0]).python for python in pythons)
        bytecode.check_interpreters(list(versions))
    for version in dict.fromkeys(pythons):
        for architecture in dict.fromkeys(archs):
            output = scratch / default_output_name(version, architecture)
            make = functools.partial(
                build_layer,
                version,
                architecture,
                output,
                wheel_dir=wheel_dir,
                cache_dir=cache_dir,
                precompile=precompile,
            )
            if err is not None:
                with err.status(f"Building the layer for Python {version} {architecture}..."):
                    build = make()
            else:
                build = make()
            # stderr, like build-layer: a layer without .pyc is slower to start, worth knowing.
            for warning in build.warnings:
                typer.echo(f"warning: {warning}", err=True)
            if verbose:
                typer.echo(
                    f"built {build.runtime} {build.arch}: {build.size_bytes:,} bytes, "
                    f"{build.content_hash}, coverage {build.coverage_version}",
                    err=True,
                )
            artifacts.append(LayerArtifact.from_build(build))
    return artifacts


def _ordered(published: tuple[PublishedLayer, ...]) -> list[PublishedLayer]:
    return sorted(published, key=lambda layer: (layer.region, layer.layer_name))


def _render_published(
    published: tuple[PublishedLayer, ...], failures: tuple[PublishFailure, ...]
) -> None:
    # One line per layer, never a table: ARNs are for copying and must stay whole.
    out = console()
    for layer in _ordered(published):
        result = "published" if layer.published else "unchanged"
        if layer.granted:
            result += f", granted {', '.join(layer.granted)}"
        out.print(f"{layer.arn}  [dim]({result})[/dim]", soft_wrap=True, highlight=False)
    for failure in failures:
        out.print(
            f"[red]failed[/red] {escape(failure.layer_name)} in {escape(failure.region)}: "
            f"{escape(failure.message)}",
            soft_wrap=True,
            highlight=False,
        )
        if failure.hint:
            out.print(f"  hint: {escape(failure.hint)}", soft_wrap=True, highlight=False)
