"""The package map of docs/architecture.md, enforced: which part may import which.

Every import in src/ (at the top of a module or inside a function) is read with
``ast``; a part importing one it may not fails the test with the module and
the import. The runtime (``coverage_wrapper``) ships in the Lambda layer and
imports nothing of the CLI; the core never imports the CLI; each subsystem
reaches only the ones below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Each part of the tree, by module name (the longest prefix wins).
PARTS = {
    "coverage_wrapper": "runtime",
    "lambdacov": "package",
    "lambdacov.__main__": "cli",
    "lambdacov.cli": "cli",
    "lambdacov.errors": "foundations",
    "lambdacov.closing": "foundations",
    "lambdacov.paths": "foundations",
    "lambdacov.policy": "foundations",
    "lambdacov.untrusted": "foundations",
    "lambdacov.conventions": "foundations",
    "lambdacov.aws": "aws",
    "lambdacov.layer": "layer",
    "lambdacov.local": "local",
    "lambdacov.attach": "attach",
    "lambdacov.combine": "combine",
    "lambdacov.combine.remote": "remote",
    "lambdacov.cloudwatch": "cloudwatch",
    "lambdacov.doctor": "doctor",
    "lambdacov.demo": "demo",
}

# What each part may import besides itself (the package's __init__ holds the version).
BASE = {"package", "foundations"}
ALLOWED = {
    "runtime": set(),
    "package": {"runtime"},
    "foundations": {"package", "layer"},  # conventions names layers by their targets
    "aws": BASE | {"runtime"},
    "layer": BASE | {"aws"},
    "local": BASE | {"aws", "layer"},
    "attach": BASE | {"aws", "layer", "runtime"},
    "combine": BASE | {"aws", "runtime"},
    "remote": BASE | {"aws", "layer", "local", "attach", "combine", "runtime"},
    "cloudwatch": BASE | {"aws"},
    "doctor": BASE | {"aws", "layer", "attach", "cloudwatch", "runtime"},
    "demo": BASE | {"aws", "layer", "local"},
    "cli": BASE
    | {"aws", "layer", "local", "attach", "combine", "remote", "cloudwatch", "doctor", "demo"}
    | {"runtime", "cli"},
}


def part_of(module: str) -> str | None:
    """The part a module belongs to, or None for a module outside lambdacov's code."""
    best = None
    for prefix in PARTS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return PARTS[best] if best else None


def imports(path: Path, module: str) -> set[str]:
    """The absolute module names ``path`` imports (relative imports made absolute)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def test_every_module_belongs_to_a_part() -> None:
    assert [name for name, _ in modules() if part_of(name) is None] == []


def test_each_part_imports_only_what_the_map_allows() -> None:
    wrong = []
    for name, path in modules():
        source = part_of(name)
        assert source is not None
        for target in sorted(imports(path, name)):
            part = part_of(target)
            if part is not None and part != source and part not in ALLOWED[source]:
                wrong.append(f"{name} ({source}) imports {target} ({part})")
    assert wrong == []


def test_the_map_forbids_what_it_must() -> None:
    # The checks above would pass on an empty map: these directions must stay closed.
    assert "cli" not in set().union(*(ALLOWED[p] for p in ALLOWED if p != "cli"))
    assert ALLOWED["runtime"] == set()
    assert "doctor" not in ALLOWED["attach"] and "combine" not in ALLOWED["attach"]
    assert "attach" not in ALLOWED["combine"] and "doctor" not in ALLOWED["combine"]
    assert imports(SRC / "lambdacov" / "combine" / "reports.py", "lambdacov.combine.reports") >= {
        "lambdacov.combine.merge"
    }
