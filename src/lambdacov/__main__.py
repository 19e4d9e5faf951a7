"""`python -m lambdacov` is the same as the `lambdacov` command."""

from __future__ import annotations

from lambdacov.cli import run

run()
