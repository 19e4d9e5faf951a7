"""A local AWS Lambda: the Runtime and Extensions APIs on 127.0.0.1, driving awslambdaric.

``LocalLambda`` runs a function the way Lambda does (layer at an /opt-like
path, extensions, exec wrapper, warm reuse, freeze between invocations,
SHUTDOWN; a container image's root directory with ``image_lambda``; SnapStart's
snapshot and restore with ``snap_start``) so the layer can be tested end to end
without AWS. It is what
``lambdacov local invoke``, ``lambdacov demo`` and the e2e tests use.
"""

from __future__ import annotations

from lambdacov.local.emulator import Environment, InvocationResult, LocalLambda
from lambdacov.local.image import image_lambda
from lambdacov.local.process import LogLine
from lambdacov.local.runtime_env import find_python, runtime_python

__all__ = [
    "Environment",
    "InvocationResult",
    "LocalLambda",
    "LogLine",
    "find_python",
    "image_lambda",
    "runtime_python",
]
