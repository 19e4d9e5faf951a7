"""The forked merge process is a speed-up, never a risk: if it dies, the merge finishes here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from lambdacov.combine.merge import MERGE_PROCESS_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: the merge forks only in a process with no other thread.
SCRIPT = textwrap.dedent(
    """
    import json, random, sys, threading
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from lambdacov.combine.collect import Fetched
    from lambdacov.combine.merge import MERGE_PROCESS_THRESHOLD, PathRemapper, _Merging
    from tests.support.combine_data import ORDERS, random_measurement, write_data

    work = Path(sys.argv[1])
    rng = random.Random(7)
    items = []
    for n in range(MERGE_PROCESS_THRESHOLD + 40):
        path = write_data(work / f"{n}.coverage", random_measurement(ORDERS, rng))
        items.append(Fetched(f"coverage/2024/01/15/fn-{n % 3}-{n:032x}.coverage", path, False, 0))

    def merge(kill_at):
        assert threading.active_count() == 1
        merging = _Merging(len(items), None)
        forked = merging._process is not None
        for n, item in enumerate(items):
            if n == kill_at:
                merging._process.kill()  # the merge process dies (OOM killer, a crash)
            merging(item)
        accumulator = merging.finish(PathRemapper(ORDERS))
        combined = accumulator.merger.result()
        lines = {f"{name}|{ctx}": sorted(combined.executed_lines(name, ctx))
                 for name in combined.measured_files() for ctx in combined.contexts()}
        return forked, len(accumulator.inputs), lines

    healthy, crashed = merge(None), merge(40)
    print(json.dumps({"healthy": healthy, "crashed": crashed}))
    """
)


def _report(script: str, work: Path) -> Any:
    """Run ``script`` in a fresh interpreter (no other thread: it may fork); its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(work), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_merge_process_that_dies_mid_run_is_replaced_by_merging_here(tmp_path: Path) -> None:
    report = _report(SCRIPT, tmp_path)
    healthy_forked, healthy_inputs, healthy_lines = report["healthy"]
    crashed_forked, crashed_inputs, crashed_lines = report["crashed"]
    assert healthy_forked and crashed_forked  # both really took the forked path
    assert crashed_inputs == healthy_inputs == MERGE_PROCESS_THRESHOLD + 40
    assert crashed_lines == healthy_lines and healthy_lines


# merge_local: one share read here, the others in forked processes; a process
# that dies at once (here: before reading anything) leaves its share to this one.
LOCAL_SCRIPT = textwrap.dedent(
    """
    import json, os, random, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    import lambdacov.combine.merge as combine
    from tests.support.combine_data import ORDERS, object_name, random_measurement, write_data

    work = Path(sys.argv[1])
    rng = random.Random(3)
    paths = [write_data(work / object_name(f"fn-{n % 3}"), random_measurement(ORDERS, rng))
             for n in range(60)]
    (work / object_name("fn-0")).write_bytes(b"not a data file")
    paths.append(work / sorted(p.name for p in work.iterdir() if p not in paths)[0])
    combine.PARALLEL_THRESHOLD = 10
    started = []
    start = combine._MergeProcess.start
    def counted():
        process = start()
        started.append(process is not None)
        return process
    combine._MergeProcess.start = counted

    def run(workers):
        started.clear()
        combined, skipped = combine.merge_local(paths, ORDERS, workers=workers)
        lines = {f"{name}|{ctx}": sorted(combined.executed_lines(name, ctx))
                 for name in combined.measured_files() for ctx in combined.contexts()}
        return lines, [item.key for item in skipped], sum(started)

    alone = run(1)
    shared = run(3)
    combine._merge_worker = lambda *ends: os._exit(1)  # every forked process dies
    crashed = run(3)
    print(json.dumps({"alone": alone, "shared": shared, "crashed": crashed}))
    """
)


def test_merge_local_in_processes_equals_one_process_even_when_they_die(tmp_path: Path) -> None:
    report = _report(LOCAL_SCRIPT, tmp_path)
    lines, skipped, forked = report["alone"]
    assert lines and len(skipped) == 1 and forked == 0
    # Two processes were really forked each time, and gave the same result.
    assert report["shared"] == report["crashed"] == [lines, skipped, 2]


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from lambdacov.combine.merge import _MergeProcess

    process = _MergeProcess.start()
    print(process._process.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # killed (the OOM killer, a CI timeout)
    """
)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


def test_a_merge_process_ends_when_its_parent_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(ROOT)], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        parent.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    outlived = _running(pid)
    if outlived:
        os.kill(pid, signal.SIGKILL)
    assert not outlived, "the merge process outlived its parent"
