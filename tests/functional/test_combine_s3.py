"""`lambdacov combine` against moto server over HTTP: listing, cache, faults, reports."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lambdacov.aws import Retrier
from lambdacov.cli import main
from lambdacov.combine.collect import DOWNLOAD_RETRIER, Downloader, ObjectCache
from lambdacov.combine.merge import CombineRequest, combine
from tests.support.combine_data import (
    ORDERS,
    as_dict,
    oracle_combine,
    random_measurement,
    read,
    write_data,
)
from tests.support.faulty_s3 import FaultyS3


def put_data(
    s3: Any,
    bucket: str,
    tmp_path: Path,
    measured: dict[str, list[Any]],
    *,
    function: str = "fn-a",
    day: str = "2024/01/15",
    branch: bool = False,
) -> tuple[str, Path]:
    key = f"coverage/{day}/{function}-{uuid.uuid4().hex}.coverage"
    local = write_data(tmp_path / key.replace("/", "_"), measured, branch=branch)
    s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())
    return key, local


def put_many(s3: Any, bucket: str, tmp_path: Path, count: int, seed: int = 3) -> list[Path]:
    rng = random.Random(seed)
    return [
        put_data(s3, bucket, tmp_path, random_measurement(ORDERS, rng), function=f"fn-{n % 3}")[1]
        for n in range(count)
    ]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def cli_args(moto_endpoint: str, bucket: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "combine",
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_endpoint,
        "--region",
        "us-east-1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--source-root",
        str(ORDERS),
        *extra,
    ]


def test_reports_match_coverage_combine(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = put_many(s3, bucket, tmp_path, 30)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        cli_args(
            moto_endpoint,
            bucket,
            tmp_path,
            "--html",
            str(out / "html"),
            "--xml",
            str(out / "cov.xml"),
            "--json",
            str(out / "cov.json"),
            "--lcov",
            str(out / "cov.lcov"),
            "--markdown",
            str(out / "summary.md"),
            "--data-file",
            str(out / "combined.coverage"),
        ),
        capsys,
    )
    assert code == 0, stderr
    oracle = oracle_combine(files, ORDERS, tmp_path)
    ours = read(out / "combined.coverage")
    assert as_dict(ours) == as_dict(oracle)
    assert ours.measured_contexts() == {"fn-0", "fn-1", "fn-2"}

    document = json.loads((out / "cov.json").read_text())
    assert set(document["files"]) and document["totals"]["num_statements"] > 0
    section = document["lambdacov"]
    assert sorted(section["functions"]) == ["fn-0", "fn-1", "fn-2"]
    assert section["objects"]["combined"] == 30 and len(section["inputs"]) == 30
    assert section["skipped"] == []
    assert (out / "html" / "index.html").is_file()
    assert (out / "html" / "coverage_index.html").is_file()
    assert "<coverage" in (out / "cov.xml").read_text()
    assert "end_of_record" in (out / "cov.lcov").read_text()
    assert "| fn-0 |" in (out / "summary.md").read_text()
    assert f"Total coverage: {document['totals']['percent_covered_display']}%" in stdout
    # Nothing half-written or temporary left beside the outputs.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["html", "cov.xml", "cov.json", "cov.lcov", "summary.md", "combined.coverage"]
    )


def test_json_dash_is_the_only_thing_on_stdout_and_no_option_prints_tables(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 4)
    code, stdout, _ = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--json", "-"), capsys)
    assert code == 0
    document = json.loads(stdout)
    assert document["lambdacov"]["objects"]["combined"] == 4
    assert document["lambdacov"]["objects"]["cache_hits"] == 0

    code, stdout, _ = run_cli(cli_args(moto_endpoint, bucket, tmp_path), capsys)
    assert code == 0
    assert "Coverage by file" in stdout and "Coverage by function" in stdout
    assert "4 cached" in stdout


def _counting_client(moto_endpoint: str) -> tuple[Any, list[str]]:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    prefixes: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        prefixes.append(params["Prefix"])

    client.meta.events.register("provide-client-params.s3.ListObjectsV2", record)
    return client, prefixes


def test_a_window_lists_only_its_partitions(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    days = ["2023/05/31", "2023/06/01", "2023/12/31", "2024/01/14", "2024/01/15", "2024/01/16"]
    keys = {
        day: put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1]}, day=day, function=name)[0]
        for day in days
        for name in ("fn-a",)
    }
    put_data(s3, bucket, tmp_path, {"/var/task/app.py": [2]}, day="2024/01/15", function="fn-b")
    s3.put_object(Bucket=bucket, Key="coverage/combined/all.coverage", Body=b"not in the layout")

    def run(since: str, until: str, functions: tuple[str, ...] = ()) -> tuple[Any, list[str]]:
        client, prefixes = _counting_client(moto_endpoint)
        request = CombineRequest(
            bucket,
            "coverage/",
            functions,
            since=datetime.fromisoformat(since).replace(tzinfo=UTC),
            until=datetime.fromisoformat(until).replace(tzinfo=UTC),
            source_root=ORDERS,
            cache_dir=tmp_path / "cache",
        )
        return combine(client, request), prefixes

    result, prefixes = run("2024-01-14", "2024-01-15T23:59:59.999999")
    assert sorted(prefixes) == ["coverage/2024/01/14/", "coverage/2024/01/15/"]
    assert result.list_calls == 2 and result.listed == 3

    result, prefixes = run("2024-01-15", "2024-01-15T23:59:59.999999", ("fn-a",))
    assert prefixes == ["coverage/2024/01/15/fn-a-"]
    assert result.inputs == (keys["2024/01/15"],)

    # A wide window walks years and months with a delimiter, and descends only into it.
    result, prefixes = run("2023-06-01", "2024-01-14T23:59:59.999999")
    assert "coverage/2023/05/" not in prefixes and "coverage/2023/05/31/" not in prefixes
    assert set(result.inputs) == {keys["2023/06/01"], keys["2023/12/31"], keys["2024/01/14"]}
    assert len(prefixes) < 40


def test_second_run_downloads_only_new_or_rewritten_objects(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    put_many(s3, bucket, tmp_path, 12)
    request = CombineRequest(bucket, source_root=ORDERS, cache_dir=tmp_path / "cache")
    first = combine(s3, request)
    assert (first.downloaded, first.cache_hits) == (12, 0)
    second = combine(s3, request)
    assert (second.downloaded, second.cache_hits) == (0, 12)
    assert second.combined == first.combined

    key, _ = put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1]})
    rewritten = first.inputs[0]
    write_data(tmp_path / "again.coverage", {"/var/task/app.py": [1, 2, 3]})
    s3.put_object(Bucket=bucket, Key=rewritten, Body=(tmp_path / "again.coverage").read_bytes())
    third = combine(s3, request)
    assert (third.downloaded, third.cache_hits) == (2, 11)
    assert key in third.inputs
    assert len(list((tmp_path / "cache").glob("*.coverage"))) == 13  # old version dropped


def test_a_version_evicted_by_a_concurrent_run_is_still_combined(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    # Two combines on one --cache-dir: after this run found its cached copies, the
    # other one stores newer versions of the same keys, evicting them, just before
    # this run merges each object. Every object must still be combined.
    put_many(s3, bucket, tmp_path, 6)
    cache_dir = tmp_path / "cache"
    first = combine(s3, CombineRequest(bucket, source_root=ORDERS, cache_dir=cache_dir))
    assert first.downloaded == 6
    from lambdacov.combine.collect import Lister
    from lambdacov.combine.merge import _Accumulator

    objects = Lister(s3, bucket).list("coverage/").objects
    other_run = ObjectCache(cache_dir)
    merged = _Accumulator()

    def evict_then_merge(item: Any) -> None:
        other_run.store(bucket, item.key, "a-newer-etag", b"another version")
        merged.add(item.key, str(item.path))

    cache = ObjectCache(cache_dir)
    download = Downloader(s3, bucket, cache, workers=2).fetch(objects, evict_then_merge)
    cache.release()
    other_run.release()
    assert download.cache_hits == 6 and not download.skipped
    assert merged.skipped == [] and sorted(merged.inputs) == sorted(first.inputs)


BAD_OBJECTS = {
    "empty": b"",
    "text": b"hello, not coverage",
    "sqlite-header-only": b"SQLite format 3\x00" + b"\x00" * 84,
}


def test_bad_objects_are_skipped_reported_and_strict_fails(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 3)
    truncated = write_data(
        tmp_path / "big.coverage", {f"/var/task/m{n}.py": list(range(1, 300)) for n in range(300)}
    ).read_bytes()
    bad = {**BAD_OBJECTS, "truncated": truncated[: len(truncated) // 3]}
    bad_keys = {}
    for name, body in bad.items():
        key = f"coverage/2024/01/15/bad-{name}-{uuid.uuid4().hex}.coverage"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        bad_keys[key] = name
    code, stdout, stderr = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--json", "-"), capsys)
    assert code == 0
    section = json.loads(stdout)["lambdacov"]
    assert section["objects"]["combined"] == 3
    assert {item["key"] for item in section["skipped"]} == set(bad_keys)
    assert all(item["reason"] for item in section["skipped"])
    assert f"{len(bad)} object(s) skipped" in stderr

    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--json", "-", "--strict"), capsys
    )
    assert code == 1
    assert "partial" in stderr


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultyS3]:
    """A loopback proxy to moto, to deny one key or reset connections as S3 would."""
    with FaultyS3("forward", upstream=moto_endpoint) as server:
        yield server


def test_access_denied_on_one_key_skips_only_that_key(
    tmp_path: Path, s3: Any, bucket: str, proxy: FaultyS3, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 4)
    denied, _ = put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1]})
    proxy.denied_keys.add(f"{bucket}/{denied}")
    code, stdout, stderr = run_cli(
        cli_args(proxy.endpoint, bucket, tmp_path, "--json", "-"), capsys
    )
    assert code == 0, stderr
    section = json.loads(stdout)["lambdacov"]
    assert section["skipped"] == [
        {
            "key": denied,
            "reason": "AccessDenied: An error occurred (AccessDenied) when calling "
            "the GetObject operation: Access Denied",
        }
    ]
    assert section["objects"]["combined"] == 4


def test_network_faults_are_retried_with_backoff(
    tmp_path: Path, s3: Any, bucket: str, proxy: FaultyS3
) -> None:
    import boto3
    from botocore.config import Config

    put_many(s3, bucket, tmp_path, 3)
    # No botocore retries: the downloader's own retries must carry the run.
    client = boto3.client(
        "s3",
        endpoint_url=proxy.endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    listing = combine(client, CombineRequest(bucket, source_root=ORDERS, cache_dir=tmp_path / "c0"))
    assert listing.downloaded == 3
    sleeps: list[float] = []
    proxy.resets_left = 4
    retrier = Retrier(
        attempts=6, base_delay=0.1, sleep=sleeps.append, retry_on=DOWNLOAD_RETRIER.retry_on
    )
    from lambdacov.combine.collect import Lister

    objects = Lister(client, bucket).list("coverage/").objects
    download = Downloader(
        client, bucket, ObjectCache(tmp_path / "c1"), workers=1, retrier=retrier
    ).fetch(objects)
    assert download.downloaded == 3 and not download.skipped
    assert len(sleeps) == 4 and sleeps[1] > sleeps[0] / 2


def test_hostile_paths_cannot_escape_the_source_root(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "secret.py").write_text("SECRET = 1\n")
    hostile = {
        "/var/task/app.py": [1, 2],
        "/var/task/../../" + str(tmp_path / "secret.py").lstrip("/"): [1],
        str(tmp_path / "secret.py"): [1],
        "/var/task/../../etc/passwd": [1],
        "/var/task/ghost.py": [1],
        "/opt/python/coverage_wrapper/handler.py": [1],
        "/var/runtime/bootstrap.py": [1],
        "/var/lang/lib/python3.12/site-packages/boto3/session.py": [1],
        "/var/task/" + "../" * 40 + "x.py": [1],
    }
    put_data(s3, bucket, tmp_path, hostile)
    before = {p for p in tmp_path.rglob("*") if "cache" not in p.parts}
    html = tmp_path / "report"
    code, stdout, stderr = run_cli(
        [
            *cli_args(moto_endpoint, bucket, tmp_path, "--json", "-", "--html", str(html))[:-4],
            "--source-root",
            str(root),
            "--json",
            "-",
            "--html",
            str(html),
        ],
        capsys,
    )
    assert code == 0, stderr
    document = json.loads(stdout)
    assert [Path(name).name for name in document["files"]] == ["app.py"]
    warnings = document["lambdacov"]["warnings"]
    assert warnings["missing_files"] == ["/var/task/ghost.py"]
    assert warnings["runtime_files_dropped"] == 3
    assert warnings["outside_source_root_count"] == 4
    after = {p for p in tmp_path.rglob("*") if "cache" not in p.parts}
    created = {p for p in after - before if not p.is_relative_to(html)}
    assert created == set()
    assert (html / "index.html").is_file()
    assert "ghost.py" in stderr


def test_fail_under_and_upload_key(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 5)
    code, _, stderr = run_cli(
        cli_args(
            moto_endpoint,
            bucket,
            tmp_path,
            "--fail-under",
            "100",
            "--json",
            str(tmp_path / "r.json"),
        ),
        capsys,
    )
    assert code == 1 and "below --fail-under 100%" in stderr
    code, _, _ = run_cli(
        cli_args(
            moto_endpoint, bucket, tmp_path, "--fail-under", "1", "--json", str(tmp_path / "r.json")
        ),
        capsys,
    )
    assert code == 0

    key = "coverage/combined/latest.coverage"
    code, stdout, stderr = run_cli(
        cli_args(
            moto_endpoint,
            bucket,
            tmp_path,
            "--upload-key",
            key,
            "--data-file",
            str(tmp_path / "local.coverage"),
        ),
        capsys,
    )
    assert code == 0, stderr
    assert f"uploaded s3://{bucket}/{key}" in stdout
    s3.download_file(bucket, key, str(tmp_path / "back.coverage"))
    assert as_dict(read(tmp_path / "back.coverage")) == as_dict(read(tmp_path / "local.coverage"))
    summary = json.loads(
        s3.get_object(Bucket=bucket, Key="coverage/combined/latest.json")["Body"].read()
    )
    assert summary["lambdacov"]["objects"]["combined"] == 5
    # The uploaded file is not an input of the next combine.
    code, stdout, _ = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--json", "-"), capsys)
    assert json.loads(stdout)["lambdacov"]["objects"]["listed"] == 5


def test_a_large_combine_in_its_own_process_merges_in_a_forked_process_and_matches(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    # The CLI as users run it: a process with no other threads, enough objects for
    # the merge to move to a forked process (the in-process tests merge in-thread).
    from lambdacov.combine.merge import MERGE_PROCESS_THRESHOLD

    files = put_many(s3, bucket, tmp_path, MERGE_PROCESS_THRESHOLD + 6, seed=11)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            *cli_args(
                moto_endpoint,
                bucket,
                tmp_path,
                "--data-file",
                str(out / "all.coverage"),
                "--json",
                str(out / "all.json"),
            ),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert as_dict(read(out / "all.coverage")) == as_dict(oracle_combine(files, ORDERS, tmp_path))
    section = json.loads((out / "all.json").read_text())["lambdacov"]
    assert section["objects"]["combined"] == len(files)


def test_nothing_to_report_is_one_line_and_exit_1(
    tmp_path: Path, moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--html", str(out / "html")), capsys
    )
    assert code == 1
    assert stderr.startswith("lambdacov: error [no-data]: no coverage data to report")
    assert "lambdacov doctor" in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_an_unwritable_report_path_is_one_line_and_exit_2(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_many(s3, bucket, tmp_path, 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, stderr = run_cli(
        cli_args(moto_endpoint, bucket, tmp_path, "--xml", str(blocker / "cov.xml")), capsys
    )
    assert code == 2, stderr
    assert stderr.startswith(
        f"lambdacov: error [report-target]: --xml {blocker / 'cov.xml'}: cannot write in"
    )
    assert "Traceback" not in stderr


def test_aws_option_mistakes_are_usage_errors_and_urls_are_redacted(
    tmp_path: Path, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for endpoint, region, code, text in (
        ("http://127.0.0.1:1", "bad region", 2, "doesn't match a supported format"),
        ("notaurl", "us-east-1", 2, "Invalid endpoint"),
        ("http://user:hunter2@127.0.0.1:1", "us-east-1", 3, "cannot reach AWS"),
    ):
        args = cli_args(endpoint, bucket, tmp_path)
        args[args.index("--region") + 1] = region
        exit_code, stdout, stderr = run_cli(args, capsys)
        assert exit_code == code, stderr
        assert text in stderr and "Traceback" not in stderr
        assert "hunter2" not in stdout + stderr


def test_the_day_partitions_of_a_wide_window_are_found_by_walking(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    from datetime import date

    from lambdacov.combine.collect import Lister

    for day in ("2023/12/31", "2024/01/15", "2024/03/02", "2024/06/30"):
        put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1]}, day=day)
    lister = Lister(s3, bucket)
    # 100+ days: walked through year and month levels, never the whole bucket.
    assert lister.days("coverage/", date(2024, 1, 1), date(2024, 4, 30)) == [
        date(2024, 1, 15),
        date(2024, 3, 2),
    ]
    assert lister.days("coverage/", None, None) == [
        date(2023, 12, 31),
        date(2024, 1, 15),
        date(2024, 3, 2),
        date(2024, 6, 30),
    ]
    # A short window is named directly: no listing at all.
    calls = lister.calls
    assert lister.days("coverage/", date(2024, 1, 14), date(2024, 1, 16)) == [
        date(2024, 1, 14),
        date(2024, 1, 15),
        date(2024, 1, 16),
    ]
    assert lister.calls == calls


# Run as a script: the CLI in a process of its own, with the forked HTML report
# made to fail (`die`) or left alone.
HTML_SCRIPT = """
import os, sys
from pathlib import Path
import lambdacov.combine.reports as reports
mode, marker = sys.argv[1:3]
parent, write = os.getpid(), reports._coverage_html
def watched(*args, **kwargs):
    if os.getpid() != parent:
        Path(marker).touch()  # the report is being written by a forked process
        if mode == "die":
            os._exit(1)  # which dies before writing a page
    return write(*args, **kwargs)
reports._coverage_html = watched
from lambdacov.cli import main
main(sys.argv[3:])
"""


def _pages_without_dates(directory: Path) -> dict[str, str]:
    # coverage.py and lambdacov stamp each page with the time it was written; the
    # index says how many objects came from the cache.
    stamp = re.compile(
        r"created at [^<\n]*|\d{4}-\d\d-\d\dT[\d:]+(?:\+00:00|Z)|\d+ downloaded, \d+ from the cache"
    )
    return {
        page.name: stamp.sub("", page.read_text(encoding="utf-8"))
        for page in sorted(directory.iterdir())
        if page.suffix == ".html"
    }


def test_html_from_a_forked_process_a_failed_one_or_this_one_is_the_same(
    tmp_path: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_many(s3, bucket, tmp_path, 6, seed=5)
    # Here: this test process has moto's threads, so the report is written in-process.
    here = tmp_path / "here"
    code, _, err = run_cli(cli_args(moto_endpoint, bucket, tmp_path, "--html", str(here)), capsys)
    assert code == 0, err
    pages = {}
    for mode in ("forked", "die"):
        marker = tmp_path / f"{mode}.forked"
        done = subprocess.run(
            [sys.executable, "-c", HTML_SCRIPT, mode, str(marker),
             *cli_args(moto_endpoint, bucket, tmp_path, "--html", str(tmp_path / mode))],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert marker.exists()  # the forked path was taken
        pages[mode] = _pages_without_dates(tmp_path / mode)
    expected = _pages_without_dates(here)
    assert len(expected) > 3 and {"coverage_index.html", "index.html"} <= expected.keys()
    assert pages["forked"] == pages["die"] == expected


def test_a_window_within_a_day_is_checked_to_the_second_against_last_modified(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    early, _ = put_data(s3, bucket, tmp_path, {"/var/task/app.py": [1]}, day=today)
    time.sleep(1.1)
    between = datetime.now(UTC).isoformat(timespec="seconds")
    time.sleep(1.1)
    late, _ = put_data(s3, bucket, tmp_path, {"/var/task/app.py": [2]}, day=today)
    written = {key: s3.head_object(Bucket=bucket, Key=key)["LastModified"] for key in (early, late)}
    assert written[early] < datetime.fromisoformat(between) < written[late]

    def inputs(*window: str) -> list[str]:
        code, out, err = run_cli(
            cli_args(moto_endpoint, bucket, tmp_path, "--json", "-", *window), capsys
        )
        assert code == 0, err
        return list(json.loads(out)["lambdacov"]["inputs"])

    assert inputs("--since", between) == [late]
    assert inputs("--until", between) == [early]
    assert sorted(inputs("--since", "1d")) == sorted([early, late])
