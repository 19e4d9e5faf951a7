"""`lambdacov demo`: the whole product against an embedded AWS, in under two minutes."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.padding import Padding
from rich.text import Text

from lambdacov.cli import outcome
from lambdacov.cli._options import console
from lambdacov.demo import Demo, DemoStep
from lambdacov.errors import ExitCode


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""
    app.command("demo")(demo)


def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for the layer and the reports.")
    ] = Path("lambdacov-demo"),
    invocations: Annotated[
        int, typer.Option("--invocations", min=2, help="How many times to invoke the function.")
    ] = 14,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Leave the embedded AWS up and print its --endpoint-url, until Ctrl-C.",
        ),
    ] = False,
    wheel_dir: Annotated[
        Path | None,
        typer.Option("--wheel-dir", help="Take coverage's wheel from here (offline)."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each command's whole output.")
    ] = False,
) -> None:
    """Run the whole product on this machine: no AWS account needed.

    Starts an embedded AWS (moto server on 127.0.0.1), deploys the example function, and runs
    build-layer, publish-layer, attach, invocations in the local Lambda, doctor and combine.
    """
    out = console()
    out.print("[bold]lambdacov demo[/]: the whole loop on this machine, no AWS account needed\n")
    number = 0

    def show(step: DemoStep) -> None:
        nonlocal number
        number += 1
        mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
        out.print(f"{mark} [bold]{number}. {step.title}[/] [dim]({step.seconds:.1f} s)[/]")
        if step.command:
            out.print(f"    [cyan]$ {step.command}[/]", soft_wrap=True)
        output = "\n".join(line.rstrip() for line in step.output.splitlines())
        text = output if (verbose or not step.ok) else _excerpt(output)
        if text:
            out.print(Padding(Text(text, style="dim"), (0, 0, 0, 6)))

    runner = Demo(
        output,
        invocations=invocations,
        wheel_dir=wheel_dir,
        columns=max(60, out.width - 6),  # the commands' output is shown indented by 6
        on_step=show,
    )
    try:
        result = runner.run()
        if result.ok and result.html_index is not None:
            out.print(f"\n[bold green]Report:[/] {result.html_index}")
            out.print(f"JSON report: {result.report_json}")
        if keep_running:
            out.print(
                f"\nThe embedded AWS is up. Try any command against it:\n"
                f"  export AWS_ENDPOINT_URL={result.endpoint_url} "
                "AWS_ACCESS_KEY_ID=lambdacov-local AWS_SECRET_ACCESS_KEY=lambdacov-local "
                "AWS_DEFAULT_REGION=us-east-1\n"
                "  lambdacov doctor orders-api\n"
                "  lambdacov combine --bucket lambdacov-demo\n"
                "  lambdacov detach orders-api\n"
                "Ctrl-C to stop.",
                soft_wrap=True,  # the export line is meant to be copied whole
            )
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                out.print("stopped")
    finally:
        runner.stop()
    if not result.ok:
        outcome.exit_with(ExitCode.CHECK_FAILED)


def _excerpt(text: str, lines: int = 12) -> str:
    """The first lines and the last one (commands end with their summary)."""
    kept = text.splitlines()
    if len(kept) <= lines + 1:
        return text
    hidden = len(kept) - lines - 1
    return "\n".join([*kept[:lines], f"... {hidden} more lines (--verbose shows them)", kept[-1]])
