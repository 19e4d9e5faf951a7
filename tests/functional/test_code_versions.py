"""`lambdacov combine` when the code changed during the window: one version per file.

Objects carry the sha256 of each measured file's code (coverage_wrapper.identity).
Version A of a module ran in some environments, version B (the checkout) in others.
The expected results are written out by hand from how B was made from A, not
computed with the code under test.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.cli import main
from tests.support.combine_data import with_identity, write_data

# Version A: ten statements. B: three comment lines inserted at the top and line 6
# of A edited (so A's line n is B's line n + 3, except A's line 6, which is gone).
VERSION_A = "".join(f"x{n} = {n}\n" for n in range(1, 11)).encode()
VERSION_B = b"# one\n# two\n# three\n" + b"".join(
    (f"x{n} = {n * 100}\n" if n == 6 else f"x{n} = {n}\n").encode() for n in range(1, 11)
)
OTHER = b"y = 1\ny = 2\n"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def put_object(
    s3: Any,
    bucket: str,
    tmp_path: Path,
    measured: dict[str, list[int]],
    digests: dict[str, str],
    *,
    task_root: str = "/var/task",
    function: str = "orders",
) -> str:
    """An object as the runtime writes it: coverage.py's data plus the identity rows."""
    key = f"coverage/2024/01/15/{function}-{uuid.uuid4().hex}.coverage"
    local = write_data(tmp_path / key.replace("/", "_"), measured)
    with_identity(local, digests, function=function, task_root=task_root)
    s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())
    return key


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The source root: version B of app.py, and other.py, unchanged."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "app.py").write_bytes(VERSION_B)
    (root / "other.py").write_bytes(OTHER)
    return root


def combine_json(
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli(
        [
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
            str(root),
            "--json",
            "-",
            *extra,
        ],
        capsys,
    )
    return code, json.loads(out), err


def executed(document: dict[str, Any], root: Path, name: str) -> list[int]:
    """The executed lines of ``root / name``: reports name files relative to the source root."""
    assert (root / name).is_file()
    return sorted(document["files"][name]["executed_lines"])


def test_lines_recorded_on_other_code_are_not_shown_and_are_named(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Version A ran lines 1-10 in two environments; B ran its lines 4 and 5 in one.
    for _ in range(2):
        put_object(
            s3,
            bucket,
            tmp_path,
            {"/var/task/app.py": list(range(1, 11)), "/var/task/other.py": [1]},
            {"/var/task/app.py": sha(VERSION_A), "/var/task/other.py": sha(OTHER)},
        )
    put_object(
        s3,
        bucket,
        tmp_path,
        {"/var/task/app.py": [4, 5], "/var/task/other.py": [2]},
        {"/var/task/app.py": sha(VERSION_B), "/var/task/other.py": sha(OTHER)},
    )
    code, document, err = combine_json(moto_endpoint, bucket, tmp_path, checkout, capsys)
    assert code == 0
    assert executed(document, checkout, "app.py") == [4, 5]  # B's own lines only
    assert executed(document, checkout, "other.py") == [1, 2]  # one version: all of it
    assert "1 file(s) also ran as other code" in err
    assert f"{checkout / 'app.py'}: 2 object(s) of 1 other version(s), 1 of this one" in err
    assert "--carry-forward" in err
    [changed] = document["lambdacov"]["changed_files"]
    assert changed == {
        "path": str(checkout / "app.py"),
        "sha256": sha(VERSION_B),
        "objects": 1,
        "other_versions": {sha(VERSION_A): 2},
        "objects_left_out": 2,
        "carried_lines": 0,
        "versions_without_snapshot": [],
    }
    strict, _, strict_err = combine_json(
        moto_endpoint, bucket, tmp_path, checkout, capsys, "--strict"
    )
    assert strict == 1
    assert "data of 1 file(s) recorded on other code was left out (--strict)" in strict_err


def test_carry_forward_moves_unchanged_lines_through_the_diff_and_never_an_edited_one(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3.put_object(Bucket=bucket, Key=f"coverage/sources/{sha(VERSION_A)}", Body=VERSION_A)
    put_object(
        s3,
        bucket,
        tmp_path,
        {"/var/task/app.py": [1, 2, 6, 9]},
        {"/var/task/app.py": sha(VERSION_A)},
    )
    put_object(
        s3, bucket, tmp_path, {"/var/task/app.py": [13]}, {"/var/task/app.py": sha(VERSION_B)}
    )
    code, document, err = combine_json(
        moto_endpoint, bucket, tmp_path, checkout, capsys, "--carry-forward", "--strict"
    )
    assert code == 0, err
    # A's 1, 2 and 9 are B's 4, 5 and 12; A's line 6 was edited: never carried.
    assert executed(document, checkout, "app.py") == [4, 5, 12, 13]
    [changed] = document["lambdacov"]["changed_files"]
    assert changed["carried_lines"] == 3
    assert changed["objects_left_out"] == 0
    assert "3 line(s) carried" in err


def test_a_version_without_a_trustworthy_snapshot_is_not_carried(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A "snapshot" whose bytes are not the version its key names is never used.
    s3.put_object(Bucket=bucket, Key=f"coverage/sources/{sha(VERSION_A)}", Body=VERSION_B)
    put_object(
        s3, bucket, tmp_path, {"/var/task/app.py": [1, 2]}, {"/var/task/app.py": sha(VERSION_A)}
    )
    code, document, err = combine_json(
        moto_endpoint, bucket, tmp_path, checkout, capsys, "--carry-forward", "--strict"
    )
    assert code == 1
    assert executed(document, checkout, "app.py") == []
    [changed] = document["lambdacov"]["changed_files"]
    assert changed["versions_without_snapshot"] == [sha(VERSION_A)]
    assert changed["objects_left_out"] == 1
    assert "1 version(s) without a source snapshot" in err


def test_a_file_recorded_under_another_task_root_maps_onto_the_source_root(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The local emulator's task root is a folder of its own, not /var/task.
    emulated = "/tmp/emulator-1234/task"
    put_object(
        s3,
        bucket,
        tmp_path,
        {f"{emulated}/app.py": [4, 5]},
        {f"{emulated}/app.py": sha(VERSION_B)},
        task_root=emulated,
    )
    code, document, err = combine_json(moto_endpoint, bucket, tmp_path, checkout, capsys)
    assert code == 0, err
    assert executed(document, checkout, "app.py") == [4, 5]
    assert document["lambdacov"]["warnings"]["missing_files_count"] == 0


def test_the_combined_data_file_holds_the_version_shown_and_coverage_reads_it(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The data file written for coverage.py holds the version shown, with its identity.
    put_object(
        s3, bucket, tmp_path, {"/var/task/app.py": [4]}, {"/var/task/app.py": sha(VERSION_B)}
    )
    put_object(
        s3, bucket, tmp_path, {"/var/task/app.py": [1]}, {"/var/task/app.py": sha(VERSION_A)}
    )
    data_file = tmp_path / "out.coverage"
    code, _, err = run_cli(
        [
            "combine",
            "--bucket",
            bucket,
            "--endpoint-url",
            moto_endpoint,
            "--region",
            "us-east-1",
            "--source-root",
            str(checkout),
            "--data-file",
            str(data_file),
        ],
        capsys,
    )
    assert code == 0, err
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    assert data.measured_files() == {str(checkout / "app.py")}
    assert sorted(data.lines(str(checkout / "app.py")) or []) == [4]


def test_the_guides_combiner_keeps_each_version_apart(s3: Any, bucket: str, tmp_path: Path) -> None:
    from coverage_wrapper.combiner import combine_coverage_files
    from coverage_wrapper.datafiles import bits_to_lines, read_data_file, split_version

    put_object(
        s3,
        bucket,
        tmp_path,
        {"/var/task/app.py": [1, 2], "/var/task/other.py": [1]},
        {"/var/task/app.py": sha(VERSION_A), "/var/task/other.py": sha(OTHER)},
    )
    put_object(
        s3,
        bucket,
        tmp_path,
        {"/var/task/app.py": [4]},
        {"/var/task/app.py": sha(VERSION_B)},
    )
    summary = combine_coverage_files(bucket, "coverage/", "combined/all.json", s3_client=s3)
    assert summary["files"] == {"/var/task/other.py": [1]}
    assert summary["sha256"] == {"/var/task/other.py": sha(OTHER)}
    assert summary["changed_files"] == {
        "/var/task/app.py": {sha(VERSION_A): [1, 2], sha(VERSION_B): [4]}
    }
    # The data file output keeps both versions, each with its identity, and
    # coverage.py reads it (each version under a name of its own).
    combine_coverage_files(bucket, "coverage/", "combined/all.coverage", s3_client=s3)
    local = tmp_path / "all.coverage"
    local.write_bytes(s3.get_object(Bucket=bucket, Key="combined/all.coverage")["Body"].read())
    read = read_data_file(local)
    assert {split_version(name): bits_to_lines(bits) for (name, _), bits in read.lines.items()} == {
        ("/var/task/app.py", sha(VERSION_A)): [1, 2],
        ("/var/task/app.py", sha(VERSION_B)): [4],
        ("/var/task/other.py", sha(OTHER)): [1],
    }
    data = coverage.CoverageData(basename=str(local))
    data.read()
    assert len(data.measured_files()) == 3


def test_with_no_checkout_each_file_is_reported_from_its_newest_snapshot(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An empty directory as the source root: every file comes from its snapshot.
    empty = tmp_path / "empty"
    empty.mkdir()
    for content in (VERSION_A, VERSION_B, OTHER):
        s3.put_object(Bucket=bucket, Key=f"coverage/sources/{sha(content)}", Body=content)
    runs = (("2024/01/14", [1, 2, 6], VERSION_A), ("2024/01/15", [4], VERSION_B))
    for day, lines, version in runs:
        key = f"coverage/{day}/orders-{uuid.uuid4().hex}.coverage"
        measured = {"/var/task/app.py": lines, "/var/task/lib/other.py": [1]}
        local = write_data(tmp_path / key.replace("/", "_"), measured)
        digests = {"/var/task/app.py": sha(version), "/var/task/lib/other.py": sha(OTHER)}
        s3.put_object(Bucket=bucket, Key=key, Body=with_identity(local, digests).read_bytes())
    code, document, err = combine_json(
        moto_endpoint, bucket, tmp_path, empty, capsys, "--carry-forward"
    )
    assert code == 0, err
    copies = document["lambdacov"]["from_snapshots"]
    assert set(copies) == {"/var/task/app.py", "/var/task/lib/other.py"}
    # The newest version of app.py (B, from the later day) is shown, with A's unchanged
    # lines carried (A's 1 and 2 are B's 4 and 5; A's 6 was edited).
    app = Path(copies["/var/task/app.py"])
    assert app.read_bytes() == VERSION_B and app.name == "app.py"
    assert Path(copies["/var/task/lib/other.py"]).read_bytes() == OTHER
    assert sorted(document["files"][str(app)]["executed_lines"]) == [4, 5]
    assert document["files"][copies["/var/task/lib/other.py"]]["executed_lines"] == [1]
    assert document["lambdacov"]["warnings"]["missing_files_count"] == 0
    assert "2 file(s) not under" in err and "reported from the source snapshots" in err


@pytest.fixture
def deployed(moto_endpoint: str) -> tuple[str, datetime]:
    """A function created now in moto (its name unique: the server outlives the test),
    and its LastModified."""
    from tests.support.lambda_fleet import clients, create_function, make_role

    lam, iam = clients(moto_endpoint, "us-east-1")
    name = f"orders-{uuid.uuid4().hex[:8]}"
    configuration = create_function(lam, make_role(iam), name)
    return name, datetime.fromisoformat(configuration["LastModified"]).astimezone(UTC)


def put_started(
    s3: Any, bucket: str, tmp_path: Path, function: str, lines: list[int], started: str | None
) -> str:
    """Today's object of ``function``, on version B, from an environment started then."""
    key = f"coverage/{datetime.now(UTC):%Y/%m/%d}/{function}-{uuid.uuid4().hex}.coverage"
    local = write_data(tmp_path / key.replace("/", "_"), {"/var/task/app.py": lines})
    with_identity(local, {"/var/task/app.py": sha(VERSION_B)}, started=started)
    s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())
    return key


def test_since_deploy_keeps_the_environments_started_since_the_last_update(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
    deployed: tuple[str, datetime],
) -> None:
    name, update = deployed
    before = (update - timedelta(hours=1)).isoformat(timespec="seconds")  # the code before
    put_started(s3, bucket, tmp_path, name, [1], before)
    since = (update + timedelta(seconds=30)).isoformat(timespec="seconds")  # the code now
    kept = put_started(s3, bucket, tmp_path, name, [4], since)
    put_started(s3, bucket, tmp_path, name, [5], None)  # an older layer's: start unknown
    code, document, err = combine_json(
        moto_endpoint, bucket, tmp_path, checkout, capsys, "--since-deploy", "--function", name
    )
    assert code == 0, err
    assert document["lambdacov"]["inputs"] == [kept]
    assert executed(document, checkout, "app.py") == [4]
    assert document["lambdacov"]["before_deploy_count"] == 2
    assert "2 object(s) of environments started before the last update" in err
    usage, _, usage_err = run_cli(
        ["combine", "--bucket", bucket, "--since-deploy", "--endpoint-url", moto_endpoint],
        capsys,
    )
    assert usage == 2 and "--since-deploy needs --function NAME" in usage_err


def test_an_environment_start_without_an_offset_is_read_as_utc(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
    deployed: tuple[str, datetime],
) -> None:
    name, update = deployed
    later = (update + timedelta(minutes=1)).replace(tzinfo=None).isoformat(timespec="seconds")
    for started in (later, update.date().isoformat(), "not a time"):
        put_started(s3, bucket, tmp_path, name, [4], started)
    code, document, err = combine_json(
        moto_endpoint, bucket, tmp_path, checkout, capsys, "--since-deploy", "--function", name
    )
    assert code == 0, err
    assert len(document["lambdacov"]["inputs"]) == 1  # the naive time one minute after
    assert document["lambdacov"]["before_deploy_count"] == 2  # midnight, and no time at all


def test_the_table_and_the_html_index_say_what_other_versions_added(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table's cells whole, not folded
    s3.put_object(Bucket=bucket, Key=f"coverage/sources/{sha(VERSION_A)}", Body=VERSION_A)
    put_object(
        s3, bucket, tmp_path, {"/var/task/app.py": [1, 2]}, {"/var/task/app.py": sha(VERSION_A)}
    )
    put_object(
        s3, bucket, tmp_path, {"/var/task/other.py": [1]}, {"/var/task/other.py": sha(OTHER)}
    )
    base = [
        "combine", "--bucket", bucket, "--endpoint-url", moto_endpoint, "--region", "us-east-1",
        "--source-root", str(checkout), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    code, out, err = run_cli([*base, "--carry-forward"], capsys)
    assert code == 0, err
    assert "Other versions of the code" in out
    assert "2 line(s) carried from 1 other version(s)" in out
    html = tmp_path / "html"
    code, _, err = run_cli([*base, "--html", str(html)], capsys)
    assert code == 0, err
    index = (html / "index.html").read_text()
    assert "Other versions of the code" in index
    assert "1 object(s) of 1 other version(s) left out" in index
