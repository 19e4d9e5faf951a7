"""Options shared by every AWS command, and output helpers (JSON on stdout, rich otherwise).

Every AWS command declares the same global options, after its own name as users
type them: ``lambdacov attach my-fn --region eu-west-1 --json``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from lambdacov.aws import AwsContext

Profile = Annotated[
    str | None, typer.Option("--profile", help="AWS profile to use (as the AWS CLI's).")
]
Region = Annotated[
    str | None,
    typer.Option("--region", help="AWS region (default: the profile's or AWS_REGION)."),
]
Regions = Annotated[
    list[str] | None,
    typer.Option("--region", help="AWS region; repeat to cover several regions at once."),
]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help="Send AWS calls to this endpoint (e.g. a local moto server).",
        show_envvar=True,
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Say more about each step.")]


def aws_context(profile: str | None, region: str | None, endpoint_url: str | None) -> AwsContext:
    """The AwsContext for a command's global options."""
    return AwsContext(profile=profile, region=region, endpoint_url=endpoint_url or None)


def print_json(document: Any) -> None:
    """Write ``document`` as the command's one JSON document on stdout."""
    json.dump(document, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def console() -> Console:
    """The console for people: stdout, colour only on a terminal."""
    return Console(highlight=False, soft_wrap=False)


def progress_console() -> Console | None:
    """Where progress bars go: stderr on a terminal, nowhere on a pipe."""
    err = Console(stderr=True)
    return err if err.is_terminal else None
