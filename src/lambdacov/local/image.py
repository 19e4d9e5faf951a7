"""Container image functions in the local Lambda: one root directory, a command.

An image function brings its whole file system: the function's code under
its task root (``/var/task`` in AWS base images) and whatever it adds under
``/opt`` (lambdacov's files, copied from ``build-layer --format dir``). Lambda
starts the image's entrypoint with ``ImageConfig.Command`` (or the image's
``CMD``) as its arguments, and the entrypoint of every AWS base image takes
the handler from that one word. :func:`image_lambda` runs such a root
directory as the local Lambda runs a zip function: the task root as the code,
``/opt`` as the one layer, the command's word as the handler. No exec wrapper
is involved, as in an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdacov.errors import UsageError
from lambdacov.local.emulator import LocalLambda

TASK_ROOT = "/var/task"


def image_lambda(
    root: Path, command: Sequence[str], *, task_root: str = TASK_ROOT, **options: Any
) -> LocalLambda:
    """A not-yet-entered :class:`LocalLambda` for the image laid out under ``root``.

    ``command`` is the image's ``ImageConfig.Command`` (one handler,
    ``module.function``); ``task_root`` is where the image keeps its code
    (its ``WORKDIR`` for AWS base images). ``options`` are LocalLambda's
    (``env``, ``python``, ``memory_mb``...).
    """
    if len(command) != 1:
        raise UsageError(
            f"the image's command is {list(command)!r}: the local Lambda runs images whose "
            "command is one handler",
            "give the handler as the command, as AWS base images take it: app.handler",
        )
    code = Path(root, task_root.lstrip("/"))
    opt = Path(root, "opt")
    if not code.is_dir():
        raise UsageError(
            f"the image root {root} has no {task_root}", "copy the function's code there"
        )
    layers = [opt] if opt.is_dir() else []
    return LocalLambda(code, command[0], layers=layers, **options)
