"""Reading the ``--json`` envelope every command prints (docs/messages.md)."""

from __future__ import annotations

import json
from typing import Any

from lambdacov import __version__

KEYS = {"lambdacov", "command", "ok", "exit_code"}


def envelope(stdout: str) -> dict[str, Any]:
    """The one JSON document on ``stdout``, checked for the envelope's shape."""
    document: dict[str, Any] = json.loads(stdout)
    assert KEYS <= set(document) <= KEYS | {"result", "error"}, document
    assert document["lambdacov"] == __version__
    assert document["ok"] is (document["exit_code"] == 0)
    assert "result" in document or "error" in document, document
    if "error" in document:
        assert set(document["error"]) == {"slug", "message", "hint", "docs"}, document
        assert document["error"]["docs"].startswith("docs/messages.md#")
    return document


def result_of(stdout: str, command: str | None = None) -> Any:
    """The ``result`` of the envelope on ``stdout`` (of ``command``, when given)."""
    document = envelope(stdout)
    assert "result" in document, document
    if command is not None:
        assert document["command"] == command, document
    return document["result"]
