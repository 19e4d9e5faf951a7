"""Carrying lines between versions of a file, and writing snapshots for reports."""

from __future__ import annotations

from pathlib import Path

from lambdacov.combine.versions import SnapshotTree, _line_map, _moved_arcs


def test_a_modules_entry_and_exit_stay_minus_one_when_lines_move(tmp_path: Path) -> None:
    # Two comment lines inserted at the top: line n is now line n + 2, but the module's
    # code still starts at line 1, so coverage.py records its entry and exit as -1.
    old = b"x = 1\nif x:\n    y = 2\n"
    local = tmp_path / "m.py"
    local.write_bytes(b"# a\n# b\n" + old)
    mapping = _line_map(old, local)
    assert mapping == {1: 3, 2: 4, 3: 5, 4: 6}
    carried = _moved_arcs({(-1, 1), (1, 2), (2, 3), (3, -1)}, mapping)
    assert carried == {(-1, 3), (3, 4), (4, 5), (5, -1)}


def test_a_functions_entry_moves_with_its_def(tmp_path: Path) -> None:
    old = b"import os\n\ndef f():\n    return 1\n"
    local = tmp_path / "m.py"
    local.write_bytes(b"# moved\n" + old)
    mapping = _line_map(old, local)
    assert _moved_arcs({(-3, 4), (4, -3)}, mapping) == {(-4, 5), (5, -4)}


def test_a_snapshot_that_cannot_be_written_is_none_not_a_crash(tmp_path: Path) -> None:
    digest = "c" * 64
    tree = SnapshotTree(tmp_path / "sources", lambda _: b"x = 1\n")
    assert tree("/var/task/lib.py", digest) is not None
    # The same version names lib.py/mod.py too: a file is where its folder must be.
    assert tree("/var/task/lib.py/mod.py", digest) is None


def test_a_snapshot_is_never_written_through_a_link_out_of_the_cache(tmp_path: Path) -> None:
    digest = "d" * 64
    root = tmp_path / "sources"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / digest[:16]).mkdir(parents=True)
    (root / digest[:16] / "pkg").symlink_to(outside)
    tree = SnapshotTree(root, lambda _: b"x = 1\n")
    assert tree("/var/task/pkg/mod.py", digest) is None
    assert list(outside.iterdir()) == []
