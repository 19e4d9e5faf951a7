"""The layer's own line recorder (sys.monitoring) against coverage.py, its oracle.

The same patterns must select the same files, and the same program must give the
same lines as `coverage run` with the same --include and --omit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from coverage.exceptions import ConfigError
from coverage.files import globs_to_regex

from coverage_wrapper.monitor import glob_regex

PATTERNS = [
    "/var/task/*",
    "/var/task/*.py",
    "*/tests/*",
    "src/**/x.py",
    "**/conftest.py",
    "*.py",
    "a?c.py",
    "/x/[ab]*/y.py",
    "/x/**/y/*",
    "foo",
    "/opt/python/*",
    "/var/task/vendor.py",
    "/weird dir/$x+(y)/*",
    "\\var\\task\\*",
    "/var/task/**/*.py",
]
PATHS = [
    "/var/task/app.py",
    "/var/task/pkg/mod.py",
    "/var/task/pkg/tests/test_x.py",
    "/src/a/b/x.py",
    "/src/x.py",
    "/abc.py",
    "/a/abc.py",
    "/x/a1/y.py",
    "/x/c1/y.py",
    "/x/m/n/y/z.py",
    "/foo",
    "/bar/foo",
    "/opt/python/coverage_wrapper/handler.py",
    "/var/task/vendor.py",
    "/weird dir/$x+(y)/m.py",
    "/var/taskx/app.py",
    "/var/task",
    "",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_selects_the_paths_coverage_selects(pattern: str) -> None:
    ours = glob_regex([pattern])
    theirs = globs_to_regex([pattern])
    assert ours is not None
    for path in PATHS:
        assert bool(ours.match(path)) == bool(theirs.match(path)), (pattern, path)


@pytest.mark.parametrize("pattern", ["***", "x**", "**x", "**/**", "[", "a]"])
def test_a_pattern_coverage_refuses_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError):
        globs_to_regex([pattern])
    with pytest.raises(ValueError, match="file pattern can't include"):
        glob_regex([pattern])


def test_several_patterns_match_any_of_them() -> None:
    ours = glob_regex(PATTERNS[:4])
    theirs = globs_to_regex(PATTERNS[:4])
    assert ours is not None
    assert [bool(ours.match(p)) for p in PATHS] == [bool(theirs.match(p)) for p in PATHS]
    assert glob_regex([]) is None


PROGRAM = {
    "app/__init__.py": "",
    "app/main.py": """
        import asyncio
        from app import helpers
        from app.skipped import never_measured

        class Shape:
            sides = 0

            def __init__(self, size):
                self.size = size

            @property
            def area(self):
                if self.sides == 4:
                    return self.size * self.size
                return 0

        class Square(Shape):
            sides = 4

        def numbers(limit):
            for n in range(limit):
                if n % 2:
                    yield n
            return

        async def waited(x):
            await asyncio.sleep(0)
            return x + 1

        def risky(flag):
            try:
                if flag:
                    raise ValueError("no")
                return "fine"
            except ValueError:
                return "caught"
            finally:
                pass

        def main():
            total = sum(numbers(7))
            squares = [Square(n).area for n in range(3)]
            double = lambda v: v * 2  # noqa: E731
            results = (
                total,
                squares,
                double(3),
                risky(True),
                helpers.helper(2),
                asyncio.run(waited(1)),
                never_measured(),
            )
            if total > 1000:
                print("never")
            return results

        print(main())
    """,
    "app/helpers.py": """
        def helper(x):
            def inner(y):
                return y * 3
            if x:
                return inner(x)
            return None

        def unused():
            return 1
    """,
    "app/skipped.py": """
        def never_measured():
            return "omitted"
    """,
}

RUN_MONITOR = """
import json, runpy, sys
from coverage_wrapper.monitor import LineMonitor
monitor = LineMonitor([sys.argv[1] + "/*"], [sys.argv[1] + "/app/skipped.py"])
monitor.start()
runpy.run_module("app.main", run_name="__main__")
print(json.dumps({name: sorted(lines) for name, lines in monitor.take()}))
"""


def test_the_recorder_uses_it_for_line_coverage_on_3_12_and_later_only() -> None:
    from coverage_wrapper.models import CoverageConfig
    from coverage_wrapper.recorder import _monitor_applies

    lines = CoverageConfig(s3_bucket="b")
    branches = CoverageConfig(s3_bucket="b", branch=True)
    assert _monitor_applies(lines) is (sys.version_info >= (3, 12))
    assert _monitor_applies(branches) is False


def test_a_program_gives_the_lines_coverage_run_gives(tmp_path: Path) -> None:
    if sys.version_info < (3, 12):  # no sys.monitoring: coverage.py records (test above)
        with pytest.raises(AttributeError):
            sys.monitoring  # noqa: B018
        return
    root = tmp_path / "proj"
    for name, text in PROGRAM.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    env = {"PYTHONPATH": f"{root}:{Path(__file__).resolve().parents[2] / 'src'}"}
    ours = subprocess.run(
        [sys.executable, "-c", RUN_MONITOR, str(root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=env,
    )
    measured = json.loads(ours.stdout.strip().splitlines()[-1])
    data_file = tmp_path / "oracle.coverage"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--data-file={data_file}",
            f"--include={root}/*",
            f"--omit={root}/app/skipped.py",
            "-m",
            "app.main",
        ],
        capture_output=True,
        check=True,
        cwd=root,
        env={**env, "COVERAGE_CORE": "sysmon"},
    )
    import coverage

    oracle = coverage.CoverageData(basename=str(data_file))
    oracle.read()
    expected = {name: sorted(oracle.lines(name) or []) for name in oracle.measured_files()}
    assert measured == expected
    assert set(measured) == {str(root / f"app/{n}.py") for n in ("__init__", "main", "helpers")}
    assert re.search(r"'omitted'", ours.stdout)
