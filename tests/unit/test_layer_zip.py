"""The reproducible zip writer, the content hash, and the target and wheel-tag rules (no IO)."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdacov import conventions
from lambdacov.errors import UsageError
from lambdacov.layer import wheels
from lambdacov.layer.targets import SUPPORTED_ARCHS, SUPPORTED_PYTHONS, parse_target
from lambdacov.layer.zipfile_repro import (
    FIXED_DATE_TIME,
    ZipEntry,
    content_hash,
    directories_of,
    write_reproducible_zip,
)

_segment = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8
).filter(lambda part: part not in (".", ".."))
_names = st.lists(_segment, min_size=1, max_size=4).map("/".join)
_entry_sets = st.dictionaries(
    _names,
    st.tuples(st.binary(max_size=300), st.sampled_from([0o644, 0o755])),
    min_size=1,
    max_size=12,
)


def _zip_bytes(entries: list[ZipEntry]) -> bytes:
    buffer = io.BytesIO()
    write_reproducible_zip(buffer, entries)
    return buffer.getvalue()


def _without_file_dir_clashes(files: dict[str, tuple[bytes, int]]) -> list[ZipEntry]:
    # A name cannot be both a file and a directory ("a" and "a/b").
    directories = {name.rstrip("/") for name in directories_of(files)}
    return [
        ZipEntry(name, data, mode)
        for name, (data, mode) in files.items()
        if name not in directories
    ]


@settings(max_examples=60, deadline=None)
@given(_entry_sets, st.randoms(use_true_random=False))
def test_same_entries_in_any_order_give_identical_bytes(files, random) -> None:
    entries = _without_file_dir_clashes(files)
    shuffled = list(entries)
    random.shuffle(shuffled)

    assert _zip_bytes(entries) == _zip_bytes(shuffled)
    assert content_hash(entries) == content_hash(shuffled)


@settings(max_examples=60, deadline=None)
@given(_entry_sets)
def test_zip_round_trips_with_fixed_times_modes_and_sorted_parent_first_order(files) -> None:
    entries = _without_file_dir_clashes(files)
    with zipfile.ZipFile(io.BytesIO(_zip_bytes(entries))) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        assert set(names) == {entry.name for entry in entries} | set(directories_of(names))
        for info in infos:
            assert info.date_time == FIXED_DATE_TIME
            assert info.create_system == 3
        for entry in entries:
            info = archive.getinfo(entry.name)
            assert archive.read(info) == entry.data
            assert info.external_attr >> 16 == stat.S_IFREG | entry.mode
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_every_parent_directory_has_an_explicit_0755_entry() -> None:
    data = _zip_bytes([ZipEntry("python/pkg/mod.py", b"x = 1\n"), ZipEntry("top", b"", 0o755)])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        directories = [info for info in archive.infolist() if info.is_dir()]
    assert [info.filename for info in directories] == ["python/", "python/pkg/"]
    for info in directories:
        assert info.external_attr >> 16 == stat.S_IFDIR | 0o755
        assert info.file_size == 0


def test_one_changed_byte_or_mode_changes_both_the_zip_and_the_content_hash() -> None:
    base = [ZipEntry("a/b.py", b"print(1)\n"), ZipEntry("run", b"#!/bin/sh\n", 0o755)]
    changed_byte = [ZipEntry("a/b.py", b"print(2)\n"), base[1]]
    changed_mode = [base[0], ZipEntry("run", b"#!/bin/sh\n", 0o644)]

    hashes = {content_hash(entries) for entries in (base, changed_byte, changed_mode)}
    archives = {_zip_bytes(entries) for entries in (base, changed_byte, changed_mode)}

    assert len(hashes) == 3
    assert len(archives) == 3
    assert content_hash(base).startswith("sha256:")


def test_content_hash_framing_keeps_name_and_data_apart() -> None:
    assert content_hash([ZipEntry("ab", b"c")]) != content_hash([ZipEntry("a", b"bc")])


@pytest.mark.parametrize("name", ["", "/abs/path", "a/../b", "dir/", "back\\slash"])
def test_unsafe_or_empty_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a relative file path"):
        ZipEntry(name, b"")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        _zip_bytes([ZipEntry("a", b"1"), ZipEntry("a", b"2")])


def test_mode_must_be_permission_bits() -> None:
    with pytest.raises(ValueError, match="permission bits"):
        ZipEntry("a", b"", stat.S_IFREG | 0o644)


@pytest.mark.parametrize(
    ("python", "arch", "expected"),
    [
        ("3.12", "x86_64", ("3.12", "x86_64", "x86_64")),
        ("python3.11", "arm64", ("3.11", "arm64", "aarch64")),
        ("3.13", "aarch64", ("3.13", "arm64", "aarch64")),
    ],
)
def test_targets_accept_lambda_spellings(python: str, arch: str, expected: tuple[str, ...]) -> None:
    target = parse_target(python, arch)
    assert (target.python, target.arch, target.machine) == expected


@pytest.mark.parametrize(
    ("python", "arch"), [("3.10", "x86_64"), ("3.15", "x86_64"), ("3.12", "s390x")]
)
def test_unsupported_targets_are_usage_errors_with_a_hint(python: str, arch: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_target(python, arch)
    assert raised.value.hint


def test_the_runtimes_commands_accept_are_exactly_those_a_layer_is_built_for() -> None:
    # attach, doctor and fleet read conventions; build-layer and publish-layer read targets.
    built = {
        (parse_target(python, arch).runtime, parse_target(python, arch).arch)
        for python in SUPPORTED_PYTHONS
        for arch in SUPPORTED_ARCHS
    }
    accepted = {
        (runtime, arch)
        for runtime in conventions.PYTHON_RUNTIMES
        for arch in conventions.ARCHITECTURES
    }
    assert accepted == built
    assert len(conventions.PYTHON_RUNTIMES) == len(SUPPORTED_PYTHONS)
    for runtime, arch in accepted:
        # Every layer build-layer can make has a name attach and doctor recognise.
        target = parse_target(runtime, arch)
        assert conventions.parse_layer_name(conventions.layer_name(runtime, arch)) == (
            target.python,
            target.arch,
        )


@pytest.mark.parametrize(
    ("python", "platform", "accepted"),
    [
        ("3.12", "manylinux2014_x86_64", True),
        ("3.12", "manylinux_2_28_x86_64", True),
        ("3.12", "manylinux_2_34_x86_64", True),
        ("3.12", "manylinux_2_35_x86_64", False),  # newer glibc than Amazon Linux 2023
        ("3.11", "manylinux_2_28_x86_64", False),  # newer glibc than Amazon Linux 2
        ("3.11", "manylinux1_x86_64", True),
        ("3.12", "musllinux_1_2_x86_64", False),
        ("3.12", "linux_x86_64", False),
        ("3.12", "manylinux2014_aarch64", False),
    ],
)
def test_platform_tags_follow_the_runtime_glibc(python: str, platform: str, accepted: bool) -> None:
    assert parse_target(python, "x86_64").accepts_platform(platform) is accepted


def test_wheel_tags_must_match_the_cpython_abi() -> None:
    target = parse_target("3.12", "arm64")
    assert target.accepts_tag("cp312", "cp312", "manylinux_2_17_aarch64")
    assert not target.accepts_tag("cp313", "cp313", "manylinux_2_17_aarch64")
    assert not target.accepts_tag("py3", "none", "any")


@pytest.mark.parametrize(
    "parse", [wheels.parse_wheel_name, wheels._parse_wheel_name_plainly], ids=["packaging", "plain"]
)
def test_wheel_names_expand_compressed_tag_sets(parse) -> None:
    name = parse("coverage-7.17.5-cp312-cp312-manylinux1_x86_64.manylinux_2_28_x86_64.whl")
    assert name is not None
    assert (name.project, name.version) == ("coverage", "7.17.5")
    assert name.tags == {
        ("cp312", "cp312", "manylinux1_x86_64"),
        ("cp312", "cp312", "manylinux_2_28_x86_64"),
    }
    assert parse("coverage-7.17.5.tar.gz") is None
    assert parse("not-a-wheel.whl") is None


def test_tracer_name_must_match_abi_and_machine() -> None:
    names = ["coverage/__init__.py", "coverage/tracer.cpython-312-x86_64-linux-gnu.so"]
    assert wheels.find_tracer(names, parse_target("3.12", "x86_64")) == names[1]
    assert wheels.find_tracer(names, parse_target("3.12", "arm64")) is None
    assert wheels.find_tracer(names, parse_target("3.13", "x86_64")) is None
