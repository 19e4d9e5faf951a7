"""What `coverage run` reports for a function driven by the same events: the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import coverage

SUPPORT = Path(__file__).parent
ROOT = SUPPORT.parent.parent
ORDERS = ROOT / "examples" / "orders-api"


def measured(data: coverage.CoverageData, root: Path, branch: bool) -> dict[str, list[Any]]:
    """Executed lines (or arcs) per file under ``root``, keyed by relative path."""
    result = {}
    for name in data.measured_files():
        path = Path(name)
        if not path.is_relative_to(root):
            continue
        items = data.arcs(name) if branch else data.lines(name)
        if items:
            result[str(path.relative_to(root))] = sorted(items)
    return dict(sorted(result.items()))


def run_oracle(
    function_dir: Path,
    events: Path,
    workdir: Path,
    *,
    handler: str = "app.handler",
    branch: bool = False,
) -> tuple[dict[str, list[Any]], list[Any]]:
    """Run the events under `coverage run`; return (measured, results)."""
    data_file = workdir / "oracle.coverage"
    output = workdir / "oracle-results.json"
    command = [
        sys.executable,
        "-m",
        "coverage",
        "run",
        f"--data-file={data_file}",
        f"--include={function_dir}/*",
    ]
    if branch:
        command.append("--branch")
    command += [
        str(SUPPORT / "drive_handler.py"),
        str(function_dir),
        str(events),
        str(output),
        "--plain",
        handler,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    subprocess.run(command, check=True, env=env, cwd=workdir, timeout=120)
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    return measured(data, function_dir, branch), json.loads(output.read_text())


def run_oracle_report(function_dir: Path, events: Path, workdir: Path) -> dict[str, list[int]]:
    """Executed statements per file, as `coverage json` reports them for `coverage run`."""
    run_oracle(function_dir, events, workdir)
    output = workdir / "oracle-report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "json",
            f"--data-file={workdir / 'oracle.coverage'}",
            "-o",
            str(output),
        ],
        check=True,
        env=env,
        cwd=function_dir,
        timeout=120,
    )
    report = json.loads(output.read_text())
    return {
        str((function_dir / name).resolve().relative_to(function_dir.resolve())): sorted(
            entry["executed_lines"]
        )
        for name, entry in report["files"].items()
        if entry["executed_lines"]
    }
