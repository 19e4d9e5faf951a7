"""Render the CLI reference (docs/cli.md) from the CLI itself.

    python -m lambdacov.cli.reference > docs/cli.md

A test compares docs/cli.md with this output, so a command or option that is
added without documentation, or documented but gone, fails the suite.
"""

from __future__ import annotations

from typing import Any

import typer.main

from lambdacov.errors import ExitCode

_HEADER = """# CLI reference

Generated from the CLI by `python -m lambdacov.cli.reference > docs/cli.md`; a test keeps it
in step with the code.

Exit codes: {codes}.

Every error line names its slug (`lambdacov: error [no-credentials]: ...`). With `--json`, stdout
holds one JSON document: `{{"lambdacov", "command", "ok", "exit_code", "result"}}`, or `"error"`
in place of (or beside) `"result"`. docs/messages.md describes the slugs and the document.
"""


# Typer ships its own copy of click in recent versions, so commands and options are
# recognised by what they have, not by click's classes.
def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    for name in sorted(getattr(command, "commands", {}) or {}):
        found += _walk(command.commands[name], [*path, name])
    return found


def _option_line(param: Any) -> str:
    names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
    help_text = " ".join((getattr(param, "help", None) or "").split())
    extra = []
    if getattr(param, "required", False) and param.param_type_name == "option":
        extra.append("required")
    if getattr(param, "multiple", False):
        extra.append("repeatable")
    suffix = f" ({', '.join(extra)})" if extra else ""
    return f"- {names}{suffix}: {help_text}"


def render() -> str:
    """The whole reference as markdown."""
    root = typer.main.get_command(_app())
    codes = ", ".join(f"{int(code)} {code.name.lower().replace('_', ' ')}" for code in ExitCode)
    parts = [_HEADER.format(codes=codes)]
    for path, command in _walk(root, ["lambdacov"]):
        if command.hidden:
            continue
        parts.append(f"## `{' '.join(path)}`\n")
        parts.append(" ".join((command.help or "").split("\n\n")[0].split()) + "\n")
        params = [p for p in command.params if p.name not in ("help",) and p.opts]
        options = [_option_line(p) for p in params if not getattr(p, "hidden", False)]
        if getattr(command, "commands", None):
            names = ", ".join(f"`{name}`" for name in sorted(command.commands))
            options.append(f"- commands: {names}")
        if options:
            parts.append("\n".join(options) + "\n")
    return "\n".join(parts)


def _app() -> typer.Typer:
    from lambdacov.cli import build_app

    return build_app()  # every command module


if __name__ == "__main__":
    print(render(), end="")  # noqa: T201 - this module's output is the document
