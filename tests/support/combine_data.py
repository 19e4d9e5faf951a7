"""Coverage data files as the layer writes them, and `coverage combine` as the oracle."""

from __future__ import annotations

import ast
import contextlib
import itertools
import random
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import coverage

ROOT = Path(__file__).resolve().parent.parent.parent
ORDERS = ROOT / "examples" / "orders-api"


def statements(path: Path) -> list[int]:
    """Line numbers of the statements of a Python file (a superset of what can run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt)})


def source_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def random_measurement(
    root: Path, rng: random.Random, *, branch: bool = False
) -> dict[str, list[Any]]:
    """A plausible invocation's data: a random subset of each file's statements, as in Lambda."""
    measured: dict[str, list[Any]] = {}
    for path in source_files(root):
        lines = [n for n in statements(path) if rng.random() < 0.6]
        if not lines:
            continue
        name = "/var/task/" + path.relative_to(root).as_posix()
        if branch:
            arcs = [(-1, lines[0]), *itertools.pairwise(lines), (lines[-1], -1)]
            measured[name] = arcs
        else:
            measured[name] = lines
    return measured


def write_data(path: Path, measured: dict[str, list[Any]], *, branch: bool = False) -> Path:
    data = coverage.CoverageData(basename=str(path))
    if branch:
        data.add_arcs(measured)
    else:
        data.add_lines(measured)
    data.close()
    return path


def with_identity(
    path: Path,
    digests: dict[str, str],
    *,
    function: str = "fn",
    task_root: str = "/var/task",
    started: str | None = None,
) -> Path:
    """Add the rows the runtime writes (coverage_wrapper.identity) to a data file."""
    from coverage_wrapper import identity

    rows = [
        (identity.FUNCTION, function),
        (identity.FUNCTION_VERSION, "$LATEST"),
        (identity.TASK_ROOT, task_root),
        *((identity.SHA256 + name, digest) for name, digest in digests.items()),
    ]
    if started is not None:
        rows.append((identity.STARTED, started))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("insert into meta (key, value) values (?, ?)", rows)
    return path


def object_name(function: str) -> str:
    return f"{function}-{uuid.uuid4().hex}.coverage"


def oracle_combine(files: list[Path], root: Path, workdir: Path) -> coverage.CoverageData:
    """What `coverage combine` makes of ``files`` with /var/task mapped to ``root``."""
    rc = workdir / "oracle.rc"
    rc.write_text(f"[paths]\nsource =\n    {root}/\n    /var/task/\n", encoding="utf-8")
    output = workdir / "oracle.coverage"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "combine",
            "--keep",
            "-q",
            f"--rcfile={rc}",
            f"--data-file={output}",
            *map(str, files),
        ],
        check=True,
        cwd=workdir,
        timeout=120,
    )
    data = coverage.CoverageData(basename=str(output))
    data.read()
    return data


def as_dict(data: coverage.CoverageData) -> dict[str, list[Any]]:
    """Every measured file's lines (or arcs), contexts merged."""
    result = {}
    for name in sorted(data.measured_files()):
        items = data.arcs(name) if data.has_arcs() else data.lines(name)
        result[name] = sorted(items or [])
    return result


def read(path: Path) -> coverage.CoverageData:
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return data
