"""`lambdacov combine` against hostile input and wrong arguments: nothing lost, one clear line.

Each test runs the CLI as users do (in-process through ``main``, or as a
process where signals are involved) against the moto server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_combine_s3 import cli_args, put_data, put_many, run_cli
from tests.support.combine_data import ORDERS, write_data
from tests.support.faulty_s3 import FaultyS3


def user_tree(root: Path) -> dict[str, bytes]:
    """A directory with the user's files in it; returns what it holds, to compare later."""
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (root / "pkg" / "notes.md").write_text("my notes\n")
    return snapshot(root)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["source tree", "working directory"])
def test_html_never_replaces_a_directory_of_the_users_files(
    tmp_path: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    put_many(s3, bucket, tmp_path, 3)
    mine = tmp_path / "checkout"
    before = user_tree(mine)
    target = str(mine)
    if where == "working directory":
        monkeypatch.chdir(mine)
        target = "."
    code, _, stderr = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--html", target), capsys)
    assert code == 2, stderr
    assert stderr.startswith("lambdacov: error [report-target]: --html ")
    if where == "working directory":
        assert "is the current directory" in stderr and "directory of its own" in stderr
    else:
        assert "holds files lambdacov did not write" in stderr
        assert "new or empty directory" in stderr
    assert "Traceback" not in stderr
    assert snapshot(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == ["app.py", "pkg"]  # nothing added either


def test_html_never_replaces_a_file(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 2)
    precious = tmp_path / "report"
    precious.write_text("keep me")
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--html", str(precious)), capsys
    )
    assert code == 2 and "is not a directory" in stderr, stderr
    assert precious.read_text() == "keep me"


def test_html_replaces_its_own_report_and_refuses_once_a_user_file_is_added(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 3)
    html = tmp_path / "htmlcov"
    html.mkdir()  # an empty directory is fine
    args = cli_args(moto_endpoint, bucket, tmp_path, "--html", str(html))
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    first = snapshot(html)
    assert "index.html" in first and ".lambdacov-report.json" in first
    manifest = json.loads(first[".lambdacov-report.json"])
    assert sorted(manifest["files"]) == sorted(first)
    # Again: the earlier report is lambdacov's, so it is replaced.
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert set(snapshot(html)) == set(first)
    # A file the user put there is never deleted: the report is refused instead.
    (html / "my-notes.txt").write_text("mine")
    code, _, stderr = run_cli(args, capsys)
    assert code == 2 and "my-notes.txt" in stderr, stderr
    assert (html / "my-notes.txt").read_text() == "mine"
    assert set(snapshot(html)) == {*first, "my-notes.txt"}


def test_outputs_inside_the_html_directory_or_at_one_path_are_refused_before_any_work(
    tmp_path: Path, moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bucket is empty: a check that came after listing would say "no data" instead.
    html = tmp_path / "out"
    for extra, text in (
        (["--html", str(html), "--json", str(html / "c.json")], "inside the --html directory"),
        (["--xml", str(tmp_path / "r"), "--lcov", str(tmp_path / "r")], "both name"),
        (["--xml", str(tmp_path)], "is a directory"),
    ):
        code, _, stderr = run_cli(cli_args(moto_endpoint, bucket, tmp_path, *extra), capsys)
        assert code == 2 and text in stderr, stderr
        assert "Traceback" not in stderr
    assert not html.exists()


def test_a_source_root_holding_none_of_the_measured_files_fails_fail_under(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 3)
    wrong = tmp_path / "wrong-checkout"
    wrong.mkdir()
    args = cli_args(moto_endpoint, bucket, tmp_path, "--fail-under", "10")
    args[args.index("--source-root") + 1] = str(wrong)
    code, stdout, stderr = run_cli([*args, "--json", str(tmp_path / "c.json")], capsys)
    assert code == 1, stderr
    assert "none of the" in stderr and f"--source-root {wrong}" in stderr
    assert "hint: pass --source-root the checkout" in stderr
    assert "ran in Lambda but are not under" in stderr  # the list of what is missing comes first
    assert not (tmp_path / "c.json").exists() and "100" not in stdout
    # Only the combined data file asked for: it needs no checkout, and is complete.
    args = cli_args(moto_endpoint, bucket, tmp_path, "--data-file", str(tmp_path / "all.coverage"))
    args[args.index("--source-root") + 1] = str(wrong)
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert (tmp_path / "all.coverage").is_file()


def test_when_every_object_is_bad_each_is_named_with_its_reason(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = []
    for body in (b"", b"not sqlite at all", b"SQLite format 3\x00" + b"\x00" * 10):
        key = f"coverage/2024/01/15/fn-a-{uuid.uuid4().hex}.coverage"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    code, _, stderr = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--html", "h"), capsys)
    assert code == 1, stderr
    for key in keys:
        assert key in stderr
    assert "empty object" in stderr and "not SQLite" in stderr
    assert "every object under" in stderr and "was skipped (3, reasons above)" in stderr
    assert "check --bucket" not in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["combine", "--since", "99999999999d"],
        ["combine", "--until", "9999-12-31T23:59:59-01:00"],
        ["combine", "--since", "0001-01-01T00:00:00+01:00"],
        ["logs", "fn", "--since", "99999999999d"],
        ["doctor", "fn", "--since", "99999999999d"],
        ["combine", "--bucket", "my coverage bucket"],
        ["attach", "fn", "--bucket", "coverage/2024"],
        ["doctor", "fn", "--bucket", "x" * 300],
        ["combiner", "deploy", "--bucket", "bad|name"],
    ],
)
def test_out_of_range_dates_and_bad_bucket_names_are_one_line_and_exit_2(
    args: list[str], moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--bucket", "my-bucket"] if "--bucket" not in args and args[0] == "combine" else []
    code, _, stderr = run_cli(
        [*args, *extra, "--endpoint-url", moto_endpoint, "--region", "us-east-1"], capsys
    )
    assert code == 2, stderr
    assert stderr.startswith("lambdacov: error [") and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 2  # the error and its hint


def test_markdown_appends_to_the_step_summary_and_outputs_keep_usual_modes(
    tmp_path: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_many(s3, bucket, tmp_path, 2)
    summary = tmp_path / "step_summary"
    summary.write_text("## Integration tests\n\nall passed\n")
    summary.chmod(0o664)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    old_umask = os.umask(0o022)
    try:
        code, _, stderr = run_cli(
            cli_args(
                moto_endpoint,
                bucket,
                tmp_path,
                "--markdown",
                str(summary),
                "--xml",
                str(tmp_path / "coverage.xml"),
                "--html",
                str(tmp_path / "htmlcov"),
            ),
            capsys,
        )
    finally:
        os.umask(old_umask)
    assert code == 0, stderr
    text = summary.read_text()
    assert text.startswith("## Integration tests\n\nall passed\n\n### Lambda coverage: ")
    assert stat.S_IMODE(summary.stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "coverage.xml").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "htmlcov").stat().st_mode) == 0o755
    # Any other markdown path is a report of its own, replaced on each run.
    other = tmp_path / "summary.md"
    for _ in range(2):
        code, _, _ = run_cli(
            cli_args(moto_endpoint, bucket, tmp_path, "--markdown", str(other)), capsys
        )
        assert code == 0
    assert other.read_text().count("### Lambda coverage") == 1


def test_object_keys_and_paths_cannot_drive_the_terminal_or_inject_markdown(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile_function = "fn\x1b]0;owned\x07<img src=x onerror=alert(1)>`|[x](javascript:alert(1))"
    hostile_path = "/var/task/\x1b[2J\x1b[31mgone\u202e.py"
    odd, _ = put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1, 2]}, function=hostile_function)
    put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1], hostile_path: [1]})
    key = f"coverage/2024/01/15/bad\x1b[2J-{uuid.uuid4().hex}.coverage"
    s3.put_object(Bucket=bucket, Key=key, Body=b"junk")
    md = tmp_path / "summary.md"
    html = tmp_path / "html"
    code, stdout, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--markdown", str(md), "--html", str(html)),
        capsys,
    )
    assert code == 0, stderr
    for stream in (stdout, stderr):
        assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream
    assert "\\x1b[2J" in stderr  # shown, escaped: the user sees what the key holds
    # A name that is no function's (a '|' would put its lines on another row) is skipped.
    assert "is not a function name" in stderr
    document_rows = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert not any("owned" in row for row in document_rows)
    text = md.read_text()
    assert "\x1b" not in text and "\u202e" not in text
    outside_code = re.sub(r"(`+)(.+?)\1", "", text)  # what is not in a code span is markup
    assert "<img" not in outside_code.replace("\\<img", "")
    assert "](" not in outside_code.replace("\\]\\(", "")
    index = (html / "index.html").read_text()
    assert "\x1b" not in index and "\u202e" not in index and "<img src=x" not in index
    assert odd in stderr.replace("\\x1b", "\x1b").replace("\\x07", "\x07")
    code, stdout, stderr = run_cli(cli_args(moto_endpoint, bucket, tmp_path), capsys)  # the table
    assert code == 0, stderr
    assert "\x1b" not in stdout + stderr and "\\x1b[2J" in stderr


def test_outputs_through_links_and_pipes_never_replace_them(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    put_many(s3, bucket, tmp_path, 2)
    real = tmp_path / "real.lcov"
    real.write_text("old")
    link = tmp_path / "link.lcov"
    link.symlink_to(real)
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--lcov", str(link), "--xml", str(fifo)), capsys
    )
    reader.join(timeout=30)
    assert code == 0, stderr
    assert link.is_symlink() and "end_of_record" in real.read_text()
    assert stat.S_ISFIFO(fifo.stat().st_mode) and b"<coverage" in received[0]


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        (["--xml", "sub/../a.xml", "--lcov", "a.xml"], "both name"),
        (["--html", "h", "--xml", "sub/../h/x.xml"], "inside the --html directory"),
        (["--html", "."], "is the current directory"),
        (["--xml", "/proc/x.xml"], "cannot write in /proc"),
        (["--html", "h", "--cache-dir", "h/cache"], "--cache-dir"),
        (["--timeout", "nan"], "--timeout nan"),
    ],
)
def test_paths_that_name_one_place_twice_or_an_unwritable_one_fail_before_any_work(
    extra: list[str],
    text: str,
    tmp_path: Path,
    moto_endpoint: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    args = [a for a in cli_args(moto_endpoint, bucket, tmp_path) if a]
    cache = args.index("--cache-dir")
    if "--cache-dir" in extra:
        del args[cache : cache + 2]
    code, _, stderr = run_cli([*args, *extra], capsys)  # the bucket is empty: no data
    assert code == 2, stderr
    assert text in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_a_window_that_ends_on_the_last_day_there_is_is_listed(
    tmp_path: Path, moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--since", "9999-12-30", "--until", "9999-12-31"),
        capsys,
    )
    assert code == 1 and "no objects under" in stderr, stderr


def test_an_output_name_of_250_bytes_is_written(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 2)
    long_name = tmp_path / ("r" * 246 + ".xml")
    long_dir = tmp_path / ("h" * 250)
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--xml", str(long_name), "--html", str(long_dir)),
        capsys,
    )
    assert code == 0, stderr
    assert long_name.is_file() and (long_dir / "index.html").is_file()


def _slow_html_source(root: Path) -> dict[str, list[int]]:
    """A module big enough that coverage.py's HTML of it takes a while, and its data."""
    root.mkdir()
    lines = [f"value_{n} = {n}" for n in range(1, 30001)]
    (root / "big.py").write_text("\n".join(lines) + "\n")
    return {"/var/task/big.py": list(range(1, 30001, 2))}


def test_sigterm_in_the_html_phase_leaves_no_process_and_no_temporary_files(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    source = tmp_path / "src"
    measured = _slow_html_source(source)
    local = write_data(tmp_path / "big.coverage", measured)
    s3.put_object(
        Bucket=bucket,
        Key=f"coverage/2024/01/15/fn-{uuid.uuid4().hex}.coverage",
        Body=local.read_bytes(),
    )
    out = tmp_path / "out"
    out.mkdir()
    args = cli_args(moto_endpoint, bucket, tmp_path, "--html", str(out / "html"))
    args[args.index("--source-root") + 1] = str(source)
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdacov", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the report's temporary directory appears as the HTML phase starts
    assert process.poll() is None, "the run ended before its HTML phase could be interrupted"
    time.sleep(0.2)  # into the HTML process's work
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stdout + stderr
    assert "lambdacov: error [terminated]: " in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []
    assert _processes_mentioning(str(out)) == []


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the HTML process is a fork)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().split(") ", 1)[1][0]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def test_coverage_of_objects_in_range_is_unchanged_by_the_checks(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The ordinary path still works end to end with every output at once.
    put_many(s3, bucket, tmp_path, 3)
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        cli_args(
            moto_endpoint,
            bucket,
            tmp_path,
            "--since",
            "2024-01-01",
            "--until",
            "2024-01-31",
            "--json",
            str(out / "c.json"),
            "--html",
            str(out / "html"),
        ),
        capsys,
    )
    assert code == 0, stderr
    assert json.loads((out / "c.json").read_text())["lambdacov"]["objects"]["combined"] == 3
    assert ORDERS.is_dir()


def test_ctrl_c_during_the_downloads_stops_promptly_and_cleans_up(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    # 400 objects from an S3 that takes a second per GET: 12 s of downloads with 32
    # threads. Ctrl-C must not wait for the queue, only for the GETs in flight.
    body = write_data(tmp_path / "one.coverage", {"/var/task/app.py": [1, 2]}).read_bytes()
    for n in range(400):
        s3.put_object(Bucket=bucket, Key=f"coverage/2024/01/15/fn-{n:032x}.coverage", Body=body)
    cache = tmp_path / "cache"
    with FaultyS3("forward", upstream=moto_endpoint) as slow:
        slow.get_delay = 1.0
        process = subprocess.Popen(
            [sys.executable, "-m", "lambdacov", *cli_args(slow.endpoint, bucket, tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while slow.object_gets < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        stopped = time.monotonic() - interrupted
        gets = slow.object_gets
    assert process.returncode == 130, stderr
    assert "lambdacov: error [interrupted]: " in stderr and "Traceback" not in stderr
    assert stopped < 4, f"{stopped:.1f} s to stop"  # a hang, not a speed: the queue is 11 s
    assert gets < 150, f"{gets} GETs: the queue went on after Ctrl-C"
    assert list((cache / ".pins").iterdir()) == [], (stderr, stopped)  # this run's links go


def test_s3_that_stops_answering_mid_download_is_exit_3_not_a_partial_report(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 40)
    with FaultyS3("forward", upstream=moto_endpoint) as silent_gets:
        silent_gets.get_delay = 30.0  # listings answer; every GET meets silence
        started = time.monotonic()
        code, _, stderr = run_cli(
            [
                *cli_args(silent_gets.endpoint, bucket, tmp_path, "--json", "-"),
                "--timeout",
                "0.5",
            ],
            capsys,
        )
        took = time.monotonic() - started
    assert code == 3, stderr
    assert "cannot reach AWS for s3:GetObject" in stderr and "raise --timeout" in stderr
    assert "Traceback" not in stderr
    assert took < 20, f"{took:.1f} s"  # 3 attempts of 0.5 s, then every other GET fails at once
