"""`lambdacov build-layer`: parse the options, build the layer, render the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from lambdacov.cli import outcome
from lambdacov.layer import SUPPORTED_ARCHS, SUPPORTED_PYTHONS, LayerBuild, build_layer
from lambdacov.layer.build import default_output_name
from lambdacov.layer.targets import host_python


def register(app: typer.Typer) -> None:
    """Add the layer commands to the root app."""
    app.command("build-layer")(build_layer_command)


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
            help="Where to write the layer zip.",
            show_default="lambdacov-layer-py3X-<arch>.zip in the current directory",
        ),
    ] = None,
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
    destination = output if output is not None else Path(default_output_name(python, arch))
    errors = Console(stderr=True)
    # A spinner helps a person waiting on a download; a pipe gets nothing.
    if errors.is_terminal and not as_json:
        with errors.status("Building the layer..."):
            result = build_layer(
                python, arch, destination, wheel_dir=wheel_dir, cache_dir=cache_dir
            )
    else:
        result = build_layer(python, arch, destination, wheel_dir=wheel_dir, cache_dir=cache_dir)

    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if as_json:
        outcome.set_result(result.to_dict())
    else:
        # soft_wrap keeps hashes on one line, whole, for copy and paste.
        Console().print(_summary(result), soft_wrap=True)


def _summary(result: LayerBuild) -> Text:
    rows = [
        ("runtime", f"{result.runtime} {result.arch}"),
        (
            "coverage",
            f"{result.coverage_version} ({result.coverage_wheel}, from {result.wheel_source})",
        ),
        (
            "size",
            f"{result.size_bytes:,} bytes zipped, {result.unzipped_bytes:,} unzipped, "
            f"{result.entries} files",
        ),
        ("precompiled", "yes" if result.precompiled else "no (see the warning)"),
        ("content hash", result.content_hash),
        ("sha256", result.sha256),
    ]
    text = Text.assemble(("Built ", "bold"), (str(result.path), "bold green"))
    for label, value in rows:
        text.append(f"\n  {label:<13} ", style="dim")
        text.append(value)
    return text
