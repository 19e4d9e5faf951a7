"""Windows, partitions, path remapping and atomic outputs: combine's pure parts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lambdacov.combine.collect import ObjectCache, normalise_prefix, parse_when, partition_prefixes
from lambdacov.combine.merge import PathRemapper, is_runtime_path
from lambdacov.combine.reports import atomic_directory, atomic_file
from lambdacov.errors import UsageError

NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("24h", False, datetime(2024, 1, 14, 12, 0, tzinfo=UTC)),
        ("7d", False, datetime(2024, 1, 8, 12, 0, tzinfo=UTC)),
        ("2w", False, datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        ("2024-01-10", False, datetime(2024, 1, 10, tzinfo=UTC)),
        ("2024-01-10", True, datetime(2024, 1, 10, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-01-10T10:00:00+02:00", False, datetime(2024, 1, 10, 8, 0, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, end: bool, expected: datetime) -> None:
    assert parse_when(text, now=NOW, end_of_day=end) == expected


def test_parse_when_refuses_nonsense() -> None:
    with pytest.raises(UsageError, match="cannot read"):
        parse_when("yesterday-ish", now=NOW)


def test_short_windows_list_day_partitions_and_long_ones_walk() -> None:
    assert partition_prefixes("c/", date(2024, 1, 31), date(2024, 2, 1)) == [
        "c/2024/01/31/",
        "c/2024/02/01/",
    ]
    assert partition_prefixes("c/", date(2024, 1, 2), date(2024, 1, 1)) == []
    assert partition_prefixes("c/", date(2023, 1, 1), date(2024, 1, 1)) is None
    assert normalise_prefix("/coverage") == "coverage/" and normalise_prefix("") == ""


def test_cache_names_are_confined_whatever_the_key_and_etag(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path)
    path = cache.path("b", "../../etc/passwd", '"../x"')
    assert path.parent == tmp_path
    stored = cache.store("b", "k", "abc", b"one")
    newer = cache.store("b", "k", "def", b"two")
    assert not cache.path("b", "k", "abc").exists()  # the older version is evicted
    assert cache.path("b", "k", "def").read_bytes() == b"two"
    # What this run stored stays readable through its own links until it releases them.
    assert stored.read_bytes() == b"one" and newer.read_bytes() == b"two"
    assert stored.parent.parent == tmp_path / ".pins"
    cache.release()
    assert not stored.exists() and list((tmp_path / ".pins").iterdir()) == []


def test_a_run_keeps_reading_what_a_concurrent_run_evicts(tmp_path: Path) -> None:
    # Two combines share one --cache-dir: B stores a newer version of a key, which
    # evicts the version A found in the cache and is about to read.
    earlier_run, run_a, run_b = ObjectCache(tmp_path), ObjectCache(tmp_path), ObjectCache(tmp_path)
    earlier_run.store("b", "k", "v1", b"version one")
    earlier_run.release()
    pinned = run_a.pin(run_a.path("b", "k", "v1"))
    assert pinned is not None
    run_b.store("b", "k", "v2", b"version two")
    assert not run_a.path("b", "k", "v1").exists()
    assert pinned.read_bytes() == b"version one"
    # A version already evicted is not a hit: the run fetches the object again.
    assert run_a.pin(run_a.path("b", "k", "v1")) is None
    run_a.release()
    run_b.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pins", run_a.path("b", "k", "v2").name]


def test_link_folders_of_killed_runs_are_removed_and_only_those(tmp_path: Path) -> None:
    import os
    import time

    pins = tmp_path / ".pins"
    (pins / "run-killed").mkdir(parents=True)
    (pins / "run-killed" / "x.coverage").write_bytes(b"x")
    (pins / "run-recent").mkdir()
    (pins / "someone-elses").mkdir()
    old = time.time() - 2 * 24 * 3600
    os.utime(pins / "run-killed", (old, old))
    os.utime(pins / "someone-elses", (old, old))
    cache = ObjectCache(tmp_path)
    mine = cache.store("b", "k", "v", b"data").parent
    assert sorted(p.name for p in pins.iterdir()) == sorted(
        ["run-recent", "someone-elses", mine.name]
    )
    cache.release()


def test_remapper(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    outside = tmp_path.parent / "outside.py"
    remap = PathRemapper(tmp_path)
    assert remap("/var/task/pkg/mod.py") == str(tmp_path / "pkg" / "mod.py")
    assert remap("/var/task/pkg/gone.py") == "/var/task/pkg/gone.py"
    assert remap("/var/task/../../etc/passwd") is None
    assert remap(str(outside)) is None
    assert remap("/opt/python/coverage_wrapper/handler.py") is None
    assert remap.missing == {"/var/task/pkg/gone.py"}
    assert is_runtime_path("/var/lang/lib/python3.12/site-packages/boto3/session.py")
    assert not remap.reportable("/var/task/pkg/gone.py")


def test_interrupted_outputs_leave_the_previous_ones(tmp_path: Path) -> None:
    report = tmp_path / "html"
    with atomic_directory(report) as work:
        (work / "index.html").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(report) as work:
        (work / "index.html").write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "r.xml") as temporary:
        temporary.write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["html"]
    assert (report / "index.html").read_text() == "old"
    with atomic_directory(report) as work:
        (work / "index.html").write_text("new")
    assert (report / "index.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["html"]


def test_a_download_that_ends_after_the_run_released_its_links_adds_none(tmp_path: Path) -> None:
    # Ctrl-C: the run releases its links while a download is still in flight; what
    # that download stores then goes nowhere, and no link folder is left behind.
    cache = ObjectCache(tmp_path)
    cache.store("b", "k1", "v", b"one")
    cache.release()
    with pytest.raises(RuntimeError):
        cache.store("b", "k2", "v", b"two")
    assert not cache.path("b", "k2", "v").exists()
    assert list((tmp_path / ".pins").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pins", cache.path("b", "k1", "v").name]
