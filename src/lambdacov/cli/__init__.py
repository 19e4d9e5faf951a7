"""The ``lambdacov`` command: a typer app composed of one module per command group.

The CLI only parses, calls the core and renders. ``main`` is the single place
where expected errors become one line on stderr and a documented exit code.

Command modules are imported on demand: each pulls in its own heavy libraries
(boto3, coverage.py, the local emulator...), and a run of one command should
pay only for that one. ``main`` registers just the module of the command named
on the command line; ``--help``, no command, an unknown one, and ``app`` (the
complete app, for tools and tests) register every module.
"""

from __future__ import annotations

import gc
import importlib
import signal
import sys
from types import FrameType
from typing import Any

import typer

from lambdacov import __version__
from lambdacov.cli import outcome
from lambdacov.errors import (
    ExitCode,
    InterruptionError,
    LambdacovError,
    Terminated,
    TerminationError,
    UsageError,
)

# Each module under lambdacov.cli with the top-level commands it adds. A module adds
# them with ``register(app)``; one without it is a sub-app added under its name.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "layer": ("build-layer", "publish-layer"),
    "attach": ("attach", "detach"),
    "combine": ("combine",),
    "combiner": ("combiner",),
    "doctor": ("doctor",),
    "logs": ("logs",),
    "alarms": ("alarms",),
    "demo": ("demo",),
    "local": ("local",),
    "run": ("run",),
}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lambdacov {__version__}")
        outcome.exit_with(ExitCode.OK)


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Code coverage for Python functions running in AWS Lambda."""


def _register(target: typer.Typer, module_name: str) -> None:
    module = importlib.import_module(f"lambdacov.cli.{module_name}")
    register = getattr(module, "register", None)
    if register is not None:
        register(target)
    else:
        target.add_typer(module.app, name=module_name)


def build_app(modules: tuple[str, ...] = tuple(COMMAND_MODULES)) -> typer.Typer:
    """The root app with the commands of ``modules`` (default: all of them)."""
    root = typer.Typer(
        name="lambdacov",
        help="Code coverage for Python functions running in AWS Lambda.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    root.callback()(_root)
    for module_name in modules:
        _register(root, module_name)
    return root


_full_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """``app``: the complete app, built on first use."""
    global _full_app  # noqa: PLW0603 - a lazily built module attribute
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _full_app is None:
        _full_app = build_app()
    return _full_app


def _app_for(args: list[str]) -> typer.Typer:
    """The app for this command line: only the named command's module when there is one."""
    for arg in args:
        if arg.startswith("-"):
            break  # a root option (--help, --version) comes first: the complete app
        for module_name, commands in COMMAND_MODULES.items():
            if arg in commands:
                return build_app((module_name,))
        break
    app: typer.Typer = __getattr__("app")
    return app


# True in the lambdacov program (see run); False where main() is called by others.
_owns_process = False


def run() -> None:
    """The ``lambdacov`` program: :func:`main`, then an exit that skips a last garbage collection.

    At exit the interpreter collects every object it still tracks: with
    botocore's service models and coverage.py loaded that is 70 ms of a
    command's run, for memory the process hands back anyway. Frozen objects are
    left out of that collection (those in reference cycles are never finalized,
    which at exit changes nothing: every file lambdacov writes is closed by then).
    """
    global _owns_process  # noqa: PLW0603 - one flag for the process's lifetime
    _owns_process = True
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    finally:
        gc.freeze()


_terminated = False  # set by SIGTERM's handler


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: unwind like Ctrl-C, so outputs, processes and temporary files are cleaned up.

    A second SIGTERM while that happens is ignored; SIGKILL remains for a
    clean-up that hangs.
    """
    global _terminated  # noqa: PLW0603 - set once, by the signal
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def freeze_heap() -> None:
    """In the lambdacov program, keep every object alive now out of later garbage collections.

    For what lives until exit (the libraries, botocore's service models):
    otherwise the collector walks it again and again while a command allocates.
    Where main() is called by others (tests, scripts), their collector is left alone.
    """
    if _owns_process:
        gc.freeze()


def _interrupted() -> None:
    """Raise again what typer turned into a silent exit code 130: Ctrl-C, or SIGTERM."""
    raise Terminated if _terminated else KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected failures print one line and exit with their code."""
    args = sys.argv[1:] if argv is None else argv
    outcome.start(args)
    try:
        code = _app_for(args)(args=args, standalone_mode=False)
        if code == ExitCode.INTERRUPTED:
            _interrupted()
        status = int(code) if isinstance(code, int) else int(ExitCode.OK)
        outcome.finish(ExitCode(status))
    except LambdacovError as error:
        status = _fail(error)
    except Terminated:
        status = _fail(TerminationError("terminated (SIGTERM)"))
    except KeyboardInterrupt:
        status = _fail(InterruptionError("interrupted (Ctrl-C)"))
    except typer.Exit as done:
        status = int(done.exit_code)
    except typer.Abort:
        status = _fail(InterruptionError("aborted"))
    except Exception as error:
        # click's usage errors; typer may ship its own copy of click, so match by shape.
        format_message = getattr(error, "format_message", None)
        if not (callable(format_message) and hasattr(error, "exit_code")):
            raise
        if str(format_message()).strip():  # empty: click showed the help (no command given)
            outcome.fail(_usage_error(error))
        status = int(ExitCode.USAGE)
    sys.exit(status)


def _fail(error: LambdacovError) -> int:
    """Report ``error`` as every failure is (its line, the envelope); the exit status."""
    outcome.fail(error)
    return int(error.exit_code)


def _usage_error(error: Any) -> UsageError:
    """click's refusal of the command line, as lambdacov's usage error."""
    command = outcome.command()
    name = command.split(" ", 1)[0]
    known = name in {command for names in COMMAND_MODULES.values() for command in names}
    if not known:
        path = "lambdacov"
    elif str(error.format_message()).startswith("No such command"):
        path = f"lambdacov {name}"  # the group's help lists its commands
    else:
        path = f"lambdacov {command}"
    return UsageError(str(error.format_message()), f"see `{path} --help`")
