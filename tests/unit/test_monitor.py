"""The layer's own recorders against coverage.py, their oracle.

The same patterns must select the same files, and the same program must give the
same lines (and arcs) as `coverage run` with the same --include and --omit: the
sys.monitoring recorder against coverage.py's sysmon core, the C tracer driven
alone against coverage.py driving it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

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


SRC = str(Path(__file__).resolve().parents[2] / "src")
# The layer's recorders on this Python: sys.monitoring's from 3.12, the C tracer's on all.
RECORDERS = [*(["monitor"] if sys.version_info >= (3, 12) else []), "tracer"]


def run_script(
    script: str, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter with the runtime package importable."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, **env},
        check=check,
    )


PROGRAM = {
    "app/__init__.py": "",
    "app/main.py": """
        import asyncio
        import threading
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

        def in_thread(box):
            box.append(helpers.helper(0))

        def main():
            box = []
            worker = threading.Thread(target=in_thread, args=(box,))
            worker.start()
            worker.join()
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
                box,
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

RUN_TRACER = """
import json, runpy, sys
from coverage_wrapper.ctracer import TraceMonitor, load_tracer_module
module = load_tracer_module()
assert module is not None
arcs = sys.argv[2] == "arcs"
tracer = TraceMonitor(
    [sys.argv[1] + "/*"], [sys.argv[1] + "/app/skipped.py"], arcs=arcs, module=module
)
tracer.start()
runpy.run_module("app.main", run_name="__main__")
print(json.dumps({name: sorted(items) for name, items in tracer.take()}))
print("coverage imported:", "coverage" in sys.modules)
"""


def test_the_recorder_uses_it_for_line_coverage_on_3_12_and_later_only() -> None:
    from coverage_wrapper.models import CoverageConfig
    from coverage_wrapper.recorder import _monitor_applies, _tracer_applies

    lines = CoverageConfig(s3_bucket="b")
    branches = CoverageConfig(s3_bucket="b", branch=True)
    assert _monitor_applies(lines) is (sys.version_info >= (3, 12))
    assert _monitor_applies(branches) is False
    # Where coverage.py would use its C tracer, the layer drives that tracer alone.
    assert _tracer_applies(lines) is (sys.version_info < (3, 12))
    assert _tracer_applies(branches) is (sys.version_info < (3, 14))


def _write_program(root: Path) -> dict[str, str]:
    for name, text in PROGRAM.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return {"PYTHONPATH": f"{root}:{Path(__file__).resolve().parents[2] / 'src'}"}


def _run(script: str, root: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], str]:
    ours = subprocess.run(
        [sys.executable, "-c", script, str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=env,
    )
    output = ours.stdout.strip().splitlines()
    measured = next(json.loads(line) for line in reversed(output) if line.startswith("{"))
    return measured, ours.stdout


def _oracle(root: Path, env: dict[str, str], core: str, *, branch: bool) -> dict[str, Any]:
    data_file = root.parent / f"oracle-{core}-{branch}.coverage"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--data-file={data_file}",
            f"--include={root}/*",
            f"--omit={root}/app/skipped.py",
            *(["--branch"] if branch else []),
            "-m",
            "app.main",
        ],
        capture_output=True,
        check=True,
        cwd=root,
        env={**env, "COVERAGE_CORE": core},
    )
    import coverage

    oracle = coverage.CoverageData(basename=str(data_file))
    oracle.read()
    if branch:
        arcs = {name: oracle.arcs(name) or [] for name in oracle.measured_files()}
        return {name: sorted(map(list, items)) for name, items in arcs.items()}
    return {name: sorted(oracle.lines(name) or []) for name in oracle.measured_files()}


def test_a_program_gives_the_lines_coverage_run_gives(tmp_path: Path) -> None:
    if sys.version_info < (3, 12):  # no sys.monitoring: the C tracer records (below)
        with pytest.raises(AttributeError):
            sys.monitoring  # noqa: B018
        return
    root = tmp_path / "proj"
    env = _write_program(root)
    measured, output = _run(RUN_MONITOR, root, env)
    assert measured == _oracle(root, env, "sysmon", branch=False)
    assert set(measured) == {str(root / f"app/{n}.py") for n in ("__init__", "main", "helpers")}
    assert re.search(r"'omitted'", output)
    # The line only the thread runs.
    assert 7 in measured[str(root / "app/helpers.py")]


@pytest.mark.parametrize("kind", ["lines", "arcs"])
def test_the_c_tracer_alone_gives_what_coverage_run_gives(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "proj"
    env = _write_program(root)
    measured, output = _run(RUN_TRACER, root, env, kind)
    expected = _oracle(root, env, "ctrace", branch=kind == "arcs")
    assert measured == expected
    assert set(measured) == {str(root / f"app/{n}.py") for n in ("__init__", "main", "helpers")}
    assert "coverage imported: False" in output
    helpers = measured[str(root / "app/helpers.py")]
    if kind == "lines":
        assert 7 in helpers  # the line only the thread runs
    else:
        assert [5, 7] in helpers and [7, -2] in helpers  # the thread's only


def test_the_c_tracer_is_not_driven_for_a_coverage_py_it_was_not_checked_against(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coverage_wrapper import ctracer

    package = tmp_path / "coverage"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "version.py").write_text("version_info = (8, 0, 0, 'final', 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # This process's own coverage.py (the tests') is not the one on the path now.
    for name in ("coverage", "coverage.tracer"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert ctracer.load_tracer_module() is None
    (package / "version.py").write_text("version_info = (7, 17, 5, 'final', 0)\n")
    # A checked version without its compiled tracer (a pure-Python wheel): not driven either.
    assert ctracer.load_tracer_module() is None


HOSTILE = """
import sys
from coverage_wrapper.ctracer import TraceMonitor, load_tracer_module
from coverage_wrapper.monitor import LineMonitor

class Unprintable:
    def __str__(self):
        raise RuntimeError("no name")

root = sys.argv[1]
if sys.argv[2] == "monitor":
    recorder = LineMonitor([root + "/*"], [])
else:
    recorder = TraceMonitor([root + "/*"], [], arcs=False, module=load_tracer_module())
recorder.start()
code = compile("def g():\\n    return 2\\nresult = g()\\n", root + "/odd.py", "exec")
namespace = {"__file__": Unprintable()}
exec(code, namespace)
print("result", namespace["result"], sorted(name for name, _ in recorder.take()))
"""


@pytest.mark.parametrize("recorder", RECORDERS)
def test_a_file_that_cannot_be_named_is_not_measured_and_the_program_runs_on(
    tmp_path: Path, recorder: str
) -> None:
    ran = run_script(HOSTILE, str(tmp_path), recorder, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "result 2 []"


# The layer's Recorder, driven as the engine drives it; with COVERAGE_CORE=ctrace the same
# Recorder runs coverage.py itself, the oracle for what the C tracer alone must give.
RUN_RECORDER = """
import json, sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Recorder
recorder = Recorder(CoverageConfig(s3_bucket="b", branch=sys.argv[2] == "arcs"), Path(sys.argv[1]))
import early  # imported before measuring starts, as a handler module is before @coverage_handler
recorder.start()
import app
app.main(recorder)
recorder.pause()
print(recorder.core, sys.getrecursionlimit())
print(json.dumps({Path(k).name: sorted(v) for k, v in recorder.checkpoint().files.items()}))
"""

RECORDER_PROGRAM = {
    "app.py": """
        import queue
        import threading
        import early
        import helper

        jobs = queue.Queue()

        def worker():
            while True:
                job = jobs.get()
                if job is None:
                    return
                job()

        def main(recorder):
            helper.stop(recorder)  # paused one frame deeper than it resumes
            recorder.resume()
            thread = threading.Thread(target=worker)
            thread.start()  # started while recording, then paused and resumed around
            recorder.pause()
            recorder.resume()
            jobs.put(helper.job)
            jobs.put(None)
            thread.join()
            early.other()
            return 1
    """,
    "helper.py": """
        def stop(recorder):
            recorder.pause()

        def job():
            return "done"
    """,
    "early.py": """
        def other():
            value = 2
            return value
    """,
    "leafmod.py": "",
}
RECORDER_PROGRAM["leafmod.py"] = "def leaf():\n    return 1\n"


# Where the C tracer records: arcs before 3.14, lines too on 3.11 (sys.monitoring's after).
TRACED = ["arcs", *(["lines"] if sys.version_info < (3, 12) else [])]


@pytest.mark.parametrize("kind", TRACED)
def test_pausing_resuming_and_threads_record_what_coverage_py_records(
    tmp_path: Path, kind: str
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    for name, text in RECORDER_PROGRAM.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    runs = {}
    for core in ("", "ctrace"):
        ran = run_script(RUN_RECORDER, str(root), kind, **({"COVERAGE_CORE": core} if core else {}))
        which, data = ran.stdout.strip().splitlines()[-2:]
        runs[which] = json.loads(data)
    # The recursion limit is the process's, shared by its threads: never changed.
    assert set(runs) == {"lambdacov-ctrace 1000", "ctrace 1000"}
    assert runs["lambdacov-ctrace 1000"] == runs["ctrace 1000"]
    assert "helper.py" in runs["ctrace 1000"]  # run by the thread only


COVERAGE_PY_TOO = """
import sys
from pathlib import Path
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Recorder
if sys.argv[2] == "before":
    import coverage
recorder = Recorder(CoverageConfig(s3_bucket="b", branch=True), Path(sys.argv[1]))
recorder.start()
import coverage  # the function's own use of coverage.py, after the layer loaded its tracer
theirs = coverage.Coverage(data_file=None, config_file=False)
theirs.start()
theirs.stop()
print(recorder.core, type(theirs._collector.tracers[0]).__name__)
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="branch coverage: sys.monitoring's")
@pytest.mark.parametrize("imported", ["before", "after"])
def test_the_functions_own_coverage_py_works_beside_the_layers_tracer(
    tmp_path: Path, imported: str
) -> None:
    ran = run_script(COVERAGE_PY_TOO, str(tmp_path), imported, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["lambdacov-ctrace", "CTracer"]


OWN_COVERAGE = """
import sys
from pathlib import Path
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Recorder
recorder = Recorder(CoverageConfig(s3_bucket="b", branch=True), Path(sys.argv[1]))
recorder.start()
sys.path.insert(0, sys.argv[1])  # the function ships a coverage package of its own
import coverage
print(coverage.tracer.WHOSE)
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="branch coverage: sys.monitoring's")
def test_a_coverage_py_the_function_ships_itself_keeps_its_own_tracer(tmp_path: Path) -> None:
    package = tmp_path / "coverage"
    package.mkdir()
    (package / "__init__.py").write_text("from coverage import tracer\n", encoding="utf-8")
    (package / "tracer.py").write_text('WHOSE = "the function\'s"\n', encoding="utf-8")
    ran = run_script(OWN_COVERAGE, str(tmp_path), check=False)
    assert (ran.returncode, ran.stdout.strip()) == (0, "the function's"), ran.stderr


RECURSIVE_NAME = """
import sys
from coverage_wrapper.ctracer import TraceMonitor, load_tracer_module
from coverage_wrapper.monitor import LineMonitor
root, kind = sys.argv[1], sys.argv[2]
asked = [0]

class Endless:
    def __str__(self):
        asked[0] += 1
        return str(self)

if kind == "monitor":
    recorder = LineMonitor([root + "/*"], [])
else:
    recorder = TraceMonitor([root + "/*"], [], arcs=False, module=load_tracer_module())
recorder.start()
namespace = {"__file__": Endless()}
exec(compile("def g():\\n    return 2\\n", root + "/odd.py", "exec"), namespace)
for _ in range(50):
    namespace["g"]()
    list(recorder.take())
print(asked[0], sys.getrecursionlimit())
"""


@pytest.mark.parametrize("recorder", RECORDERS)
def test_a_file_whose_name_recurses_is_decided_once_not_at_every_call(
    tmp_path: Path, recorder: str
) -> None:
    ran = run_script(RECURSIVE_NAME, str(tmp_path), recorder)
    asked, limit = map(int, ran.stdout.split())
    # One decision runs __str__ until the stack is full (about the limit's worth of times);
    # asked again at each of the 50 calls it would be 50 times that.
    assert 0 < asked < 3 * limit and limit == 1000, ran.stdout


AT_THE_LIMIT = """
import sys
from coverage_wrapper.ctracer import TraceMonitor, load_tracer_module
from coverage_wrapper.monitor import LineMonitor
root, kind = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import leafmod, later  # imported first: their first calls are the leaf's and f's
if kind == "monitor":
    recorder = LineMonitor([root + "/*"], [])
else:
    recorder = TraceMonitor([root + "/*"], [], arcs=False, module=load_tracer_module())
recorder.start()

def down(n):
    return leafmod.leaf() if n == 0 else down(n - 1)

if sys.argv[3] == "cached":  # C calls between the frames: 3.11 counts them to the limit
    import functools
    down = functools.lru_cache(maxsize=None)(down)

for depth in range(sys.getrecursionlimit(), 0, -1):  # the deepest first call that returns
    try:
        down(depth)
        break
    except RecursionError:
        continue
leafmod.leaf()  # the leaf again, at an ordinary depth, in the same invocation
later.f()
lines = {name.rsplit("/", 1)[-1]: sorted(items) for name, items in recorder.take()}
print(lines.get("leafmod.py"), sys.getrecursionlimit())
"""


@pytest.mark.parametrize("how", ["plain", "cached"])
@pytest.mark.parametrize("recorder", RECORDERS)
def test_a_file_first_called_at_the_recursion_limit_is_measured_when_it_runs_again(
    tmp_path: Path, recorder: str, how: str
) -> None:
    (tmp_path / "leafmod.py").write_text("def leaf():\n    return 1\n", encoding="utf-8")
    (tmp_path / "later.py").write_text("def f():\n    return 2\n", encoding="utf-8")
    ran = run_script(AT_THE_LIMIT, str(tmp_path), recorder, how)
    assert ran.stdout.split() == ["[2]", "1000"], ran.stdout + ran.stderr


VIA_A_LINK = """
import sys
from pathlib import Path
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Recorder
recorder = Recorder(CoverageConfig(s3_bucket="b", branch=True), Path(sys.argv[1]))
recorder.start()
sys.path.insert(0, sys.argv[2])  # the same coverage.py, named through a link
import coverage
print(coverage.__path__[0].startswith(sys.argv[2]), hasattr(coverage.tracer, "CTracer"))
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="branch coverage: sys.monitoring's")
def test_the_same_coverage_py_named_through_a_link_gets_the_loaded_tracer(tmp_path: Path) -> None:
    import coverage

    link = tmp_path / "alias"
    link.symlink_to(Path(coverage.__file__).resolve().parent.parent)
    ran = run_script(VIA_A_LINK, str(tmp_path), str(link), check=False)
    assert (ran.returncode, ran.stdout.split()) == (0, ["True", "True"]), ran.stderr


ODD_PATHS = """
import os, sys
from coverage_wrapper import ctracer
module = ctracer.load_tracer_module()
loop = os.path.join(sys.argv[1], "loop")
os.symlink(loop, loop)  # a link to itself
for odd in ([loop], [loop + "\\0x"], [b"/bytes"], None):
    assert ctracer._handed.find_spec("coverage.tracer", odd) is None, odd
print("ok")
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="branch coverage: sys.monitoring's")
def test_handing_the_tracer_over_never_fails_an_import_on_an_odd_path(tmp_path: Path) -> None:
    ran = run_script(ODD_PATHS, str(tmp_path), check=False)
    assert (ran.returncode, ran.stdout.strip()) == (0, "ok"), ran.stderr


UNLIKE_THE_CHECKED = """
import sys
from pathlib import Path
from coverage_wrapper import ctracer, recorder
from coverage_wrapper.models import CoverageConfig

real = ctracer.load_tracer_module()

class Unlike:  # a C tracer whose attributes are not the ones checked
    def __setattr__(self, name, value):
        raise AttributeError(name)

class Module:
    CTracer = Unlike
    CFileDisposition = real.CFileDisposition

recorder.load_tracer_module = lambda: Module
measured = recorder.Recorder(CoverageConfig(s3_bucket="b", branch=True), Path(sys.argv[1]))
measured.start()
print(measured.core, type(sys.gettrace()).__name__)
"""


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="branch coverage: sys.monitoring's")
def test_a_c_tracer_that_will_not_start_leaves_coverage_py_to_measure(tmp_path: Path) -> None:
    ran = run_script(UNLIKE_THE_CHECKED, str(tmp_path), check=False)
    assert (ran.returncode, ran.stdout.split()) == (0, ["ctrace", "CTracer"]), ran.stderr
