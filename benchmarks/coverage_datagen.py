"""Realistic, distinct per-invocation coverage data files for the combine benchmark.

The benchmark function (benchmarks/workload.py, 10 modules) is run under
coverage.py with varied orders, once per event, to record what real
invocations measure (lines, or arcs with ``branch=True``). Each generated data
file starts from one of those real measurements, keeps a random subset of the
modules (a router reaching only some stages) and drops a few executed lines
(an invocation that failed part-way), so no two files are byte-identical:
``coverage combine`` skips identical files, and copies would flatter it.
Paths are recorded as in Lambda, under ``/var/task``.

    python benchmarks/coverage_datagen.py OUT_DIR --files 1000 [--branch]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import random
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import coverage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import write_workload

FUNCTIONS = ("orders-api", "orders-worker", "orders-report")


def _events(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for variant in range(count):
        items = [
            {"sku": f"s{rng.randint(0, 99)}-{i}", "quantity": rng.randint(-2, 14)}
            for i in range(rng.randint(0, 12))
        ]
        coupon = f"P{rng.randint(0, 12)}" if variant % 3 else None
        out.append({"body": json.dumps({"items": items, "coupon": coupon})})
    return out


def measure(source: Path, branch: bool, rng: random.Random) -> list[dict[str, set[Any]]]:
    """Run the workload under coverage once per event; return each run's data by file."""
    sys.path.insert(0, str(source))
    for name in [m for m in sys.modules if m == "app" or m.startswith("part")]:
        del sys.modules[name]  # a fresh import from this source, module lines measured
    runs = []
    for index, event in enumerate(_events(rng, 24)):
        cov = coverage.Coverage(data_file=None, branch=branch, include=[f"{source}/*"])
        cov.start()
        try:
            if index == 0:
                importlib.import_module("app")  # module lines: the first invocation only
            sys.modules["app"].handler(event, None)
        finally:
            cov.stop()
        data = cov.get_data()
        runs.append(
            {
                name: set((data.arcs(name) if branch else data.lines(name)) or [])
                for name in data.measured_files()
            }
        )
    return runs


def generate(out: Path, files: int, *, branch: bool = False, seed: int = 7) -> list[Path]:
    """Write ``files`` distinct data files into ``out`` (kept between runs); return them."""
    marker = out / f".complete-{files}-{int(branch)}-{seed}-identity"
    if marker.exists():
        return sorted(out.glob("*.coverage"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.coverage"):
        old.unlink()
    rng = random.Random(seed)
    source = write_workload(out / "source")
    runs = measure(source, branch, rng)
    seen: set[str] = set()
    written = []
    while len(written) < files:
        base = rng.choice(runs)
        measured: dict[str, list[Any]] = {}
        for name, items in base.items():
            if Path(name).name != "app.py" and rng.random() < 0.3:
                continue  # this invocation's route did not reach the module
            kept = sorted(items)
            for _ in range(rng.randint(0, 3)):
                if kept:
                    kept.pop(rng.randrange(len(kept)))
            if kept:
                measured["/var/task/" + Path(name).name] = kept
        digest = hashlib.sha256(json.dumps(sorted(measured.items())).encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        path = out / f"{rng.choice(FUNCTIONS)}-{uuid.UUID(int=rng.getrandbits(128))}.coverage"
        data = coverage.CoverageData(basename=str(path))
        if branch:
            data.add_arcs(measured)
        else:
            data.add_lines(measured)
        data.close()
        _stamp(path, measured, source)
        written.append(path)
    marker.touch()
    return sorted(written)


def _stamp(path: Path, measured: dict[str, list[Any]], source: Path) -> None:
    """The code identity rows the layer writes into every object (coverage_wrapper.identity)."""
    from coverage_wrapper import identity

    rows = [
        (identity.FUNCTION, path.name.rsplit("-", 5)[0]),
        (identity.FUNCTION_VERSION, "$LATEST"),
        (identity.TASK_ROOT, "/var/task"),
        (identity.STARTED, "2026-12-01T00:00:00+00:00"),
    ]
    for name in measured:
        content = (source / Path(name).name).read_bytes()
        rows.append((identity.SHA256 + name, hashlib.sha256(content).hexdigest()))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("insert into meta (key, value) values (?, ?)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--branch", action="store_true")
    args = parser.parse_args()
    paths = generate(args.out, args.files, branch=args.branch)
    print(f"{len(paths)} files in {args.out}")


if __name__ == "__main__":
    main()
