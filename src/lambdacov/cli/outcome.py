"""The output contract every command shares: the error line, the exit code, the ``--json`` envelope.

``lambdacov.cli.main`` calls :func:`start` with the command line, then
:func:`finish` or :func:`fail` once the command is done; commands only hand
over their result (:func:`show`, or :func:`set_result`) and end with :func:`exit_with`.

With ``--json``, stdout holds exactly one JSON document, whatever happens
(docs/messages.md)::

    {"lambdacov": "1.2.0", "command": "attach", "ok": true, "exit_code": 0,
     "result": {...}}
    {"lambdacov": "1.2.0", "command": "attach", "ok": false, "exit_code": 2,
     "error": {"slug": "invalid-bucket", "message": "...", "hint": "...",
               "docs": "docs/messages.md#invalid-bucket"}}

``ok`` is ``exit_code == 0``; ``result`` is there when the command produced
one (also when it then failed, e.g. attach cut off by Ctrl-C), ``error`` when
it stopped on an error. ``combine --json -`` is a report, not an envelope: it
prints coverage.py's JSON report as ``--json FILE`` writes it, and only an
error prints the envelope. ``logs --follow --json`` writes JSON Lines: one
event per line, and the error envelope as a last line if it stops on one.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import typer

from lambdacov import __version__
from lambdacov.errors import ExitCode, LambdacovError

#: The page that documents every slug, one heading each. The path is the one in
#: lambdacov's source tree; make it the published page's URL once there is one.
MESSAGES_PAGE = "docs/messages.md"
#: lambdacov's own slugs; any other slug is the error code AWS answered with.
OWN_SLUG = re.compile(r"^[a-z]+(-[a-z]+)*$")

# Command groups: their sub-command is part of the command's name ("alarms create").
_GROUPS = ("alarms", "combiner", "local")


def docs_link(slug: str) -> str:
    """Where ``slug`` is explained: its own heading, or the section on AWS's error codes."""
    anchor = slug if OWN_SLUG.match(slug) else "aws-error-codes"
    return f"{MESSAGES_PAGE}#{anchor}"


def exit_with(code: ExitCode) -> NoReturn:
    """End the command with one of the documented exit codes (``main`` exits with it)."""
    raise typer.Exit(int(code))


_MISSING = object()


@dataclass
class _Run:
    """What ``main`` knows about the command it runs."""

    command: str = ""
    json: bool = False  # --json was asked for (combine: --json -)
    lines: bool = False  # JSON Lines were written (logs --follow): an error goes on one line
    written: bool = False  # the command printed its own document (combine's report)
    result: Any = field(default=_MISSING)


_run = _Run()


def start(args: list[str]) -> None:
    """Note the command named on ``args`` and whether it was asked for JSON."""
    global _run  # noqa: PLW0603 - one run per process (per main() call in tests)
    words: list[str] = []
    json_asked = False
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if not words:
            if arg.startswith("-"):
                break  # a root option (--help, --version): no command
            words.append(arg)
            continue
        if index == 1 and words[0] in _GROUPS and not arg.startswith("-"):
            words.append(arg)
            continue
        if words == ["combine"]:
            following = args[index + 1] if index + 1 < len(args) else ""
            json_asked |= arg == "--json=-" or (arg == "--json" and following == "-")
        else:
            json_asked |= arg == "--json"
    _run = _Run(command=" ".join(words), json=json_asked)


def command() -> str:
    """The command being run, as typed: ``attach``, ``alarms create``; empty for none."""
    return _run.command


def set_result(document: Any) -> None:
    """The command's ``--json`` result; ``main`` prints it in the envelope when the command ends."""
    _run.json = True
    _run.result = document


def show(as_json: bool, document: Any, render: Callable[[], None]) -> None:
    """With ``--json``, ``document`` is the envelope's result; otherwise ``render()`` shows it."""
    if as_json:
        set_result(document)
    else:
        render()


def print_document(document: Any) -> None:
    """Print a document as it is, with no envelope (combine's JSON report on stdout)."""
    print_json(document)
    _run.written = True


def json_lines() -> None:
    """The command writes JSON Lines (``logs --follow``): an error envelope takes one line."""
    _run.json = True
    _run.lines = True


def print_line(document: Any) -> None:
    """Print one JSON Lines record (``logs --follow --json``)."""
    sys.stdout.write(json.dumps(document, sort_keys=True) + "\n")
    sys.stdout.flush()
    _run.lines = True


def finish(code: ExitCode) -> None:
    """The command ended with ``code``: print its envelope if it made a result."""
    if _run.result is not _MISSING and not _run.written:
        print_json(envelope(code, result=_run.result))


def fail(error: LambdacovError) -> None:
    """The command stopped on ``error``: one line (and a hint) on stderr, the envelope on stdout."""
    sys.stderr.write(error_line(error))
    stopped(error)


def error_line(error: LambdacovError) -> str:
    """What stderr says of ``error``: the line with its slug, and the hint's line if it has one."""
    line = f"lambdacov: error [{error.slug}]: {error.message}\n"
    return line + (f"  hint: {error.hint}\n" if error.hint else "")


def stopped(error: LambdacovError) -> None:
    """With ``--json``, the error envelope on stdout (the stderr line is the caller's)."""
    if not _run.json or _run.written:
        return
    document = envelope(error.exit_code, result=_run.result, error=error)
    if _run.lines:
        print_line(document)
    else:
        print_json(document)


def envelope(code: ExitCode, *, result: Any = _MISSING, error: LambdacovError | None = None) -> Any:
    """The ``--json`` document of a command that ended with ``code``."""
    document: dict[str, Any] = {
        "lambdacov": __version__,
        "command": _run.command,
        "ok": code == ExitCode.OK,
        "exit_code": int(code),
    }
    if result is not _MISSING:
        document["result"] = result
    if error is not None:
        document["error"] = {
            "slug": error.slug,
            "message": error.message,
            "hint": error.hint,
            "docs": docs_link(error.slug),
        }
    return document


def print_json(document: Any) -> None:
    """Write ``document`` on stdout as every JSON document of lambdacov's is written."""
    json.dump(document, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()
