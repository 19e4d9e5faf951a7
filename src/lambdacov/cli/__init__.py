"""The ``lambdacov`` command: a typer app composed of one module per command group.

The CLI only parses, calls the core and renders. ``main`` is the single place
where expected errors become one line on stderr and a documented exit code.
"""

from __future__ import annotations

import sys

import typer

from lambdacov import __version__
from lambdacov.errors import ExitCode, LambdacovError

app = typer.Typer(
    name="lambdacov",
    help="Code coverage for Python functions running in AWS Lambda.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lambdacov {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Code coverage for Python functions running in AWS Lambda."""


def _register_commands() -> None:
    from lambdacov.cli import combine, demo, deploy, diagnose, layer, local

    layer.register(app)  # build-layer
    deploy.register(app)  # publish-layer, attach, detach
    combine.register(app)  # combine
    diagnose.register(app)  # doctor, logs, alarms
    demo.register(app)  # demo
    app.add_typer(local.app, name="local")


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected failures print one line and exit with their code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except LambdacovError as error:
        sys.stderr.write(f"lambdacov: error: {error.message}\n")
        if error.hint:
            sys.stderr.write(f"  hint: {error.hint}\n")
        sys.exit(int(error.exit_code))
    except KeyboardInterrupt:
        sys.stderr.write("lambdacov: interrupted\n")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.stderr.write("lambdacov: aborted\n")
        sys.exit(1)
    except Exception as error:
        # click's usage errors; typer may ship its own copy of click, so match by shape.
        show = getattr(error, "show", None)
        if callable(show) and hasattr(error, "exit_code"):
            show()
            sys.exit(int(ExitCode.USAGE))
        raise
    sys.exit(code if isinstance(code, int) else int(ExitCode.OK))
