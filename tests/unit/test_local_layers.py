"""Layers merged into one /opt as Lambda does, and untrusted zips kept in their place."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from lambdacov.errors import UsageError
from lambdacov.local.layers import Budget, extract_zip, merge_layers


def make_zip(path: Path, files: dict[str, bytes | str], *, modes: dict[str, int] | None = None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            mode = (modes or {}).get(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def symlink_zip(path: Path, name: str, target: str) -> Path:
    return make_zip(path, {name: target}, modes={name: stat.S_IFLNK | 0o777})


def test_later_layers_replace_earlier_files_and_keep_the_rest(tmp_path: Path) -> None:
    first = make_zip(
        tmp_path / "first.zip",
        {"python/shared.py": "A = 'first'\n", "python/only_first.py": "", "bin/tool": "v1"},
    )
    second_dir = tmp_path / "second"
    (second_dir / "python").mkdir(parents=True)
    (second_dir / "python" / "shared.py").write_text("A = 'second'\n")
    third = make_zip(tmp_path / "third.zip", {"bin/tool": "v3"})

    opt = merge_layers([first, second_dir, third], tmp_path / "opt")

    assert opt == tmp_path / "opt"
    assert (opt / "python" / "shared.py").read_text() == "A = 'second'\n"
    assert (opt / "python" / "only_first.py").exists()
    assert (opt / "bin" / "tool").read_text() == "v3"
    assert (second_dir / "python" / "shared.py").read_text() == "A = 'second'\n"  # untouched


def test_one_directory_is_used_in_place_and_none_gives_an_empty_opt(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    assert merge_layers([layer], tmp_path / "opt") == layer
    empty = merge_layers([], tmp_path / "empty")
    assert empty.is_dir() and not any(empty.iterdir())


def test_unix_modes_survive_extraction(tmp_path: Path) -> None:
    layer = make_zip(
        tmp_path / "l.zip",
        {"extensions/ext": "#!/bin/sh\n", "data.txt": "x"},
        modes={"extensions/ext": stat.S_IFREG | 0o755, "data.txt": stat.S_IFREG | 0o644},
    )
    opt = merge_layers([layer], tmp_path / "opt")
    assert os.access(opt / "extensions" / "ext", os.X_OK)
    assert not os.access(opt / "data.txt", os.X_OK)


def test_a_symlink_inside_the_layer_is_kept(tmp_path: Path) -> None:
    layer = make_zip(tmp_path / "l.zip", {"lib/libx.so.1": "elf"})
    with zipfile.ZipFile(layer, "a") as archive:
        info = zipfile.ZipInfo("lib/libx.so")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "libx.so.1")
    opt = merge_layers([layer], tmp_path / "opt")
    assert (opt / "lib" / "libx.so").is_symlink()
    assert (opt / "lib" / "libx.so").read_text() == "elf"


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "../.."])
def test_a_symlink_out_of_opt_is_refused(tmp_path: Path, target: str) -> None:
    layer = symlink_zip(tmp_path / "l.zip", "python/escape", target)
    with pytest.raises(UsageError, match="points outside /opt"):
        merge_layers([layer], tmp_path / "opt")


def test_writing_through_an_earlier_layers_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    first = tmp_path / "first"
    first.mkdir()
    (first / "python").symlink_to(outside)  # a directory layer may hold anything
    second = make_zip(tmp_path / "second.zip", {"python/evil.py": "x"})
    with pytest.raises(UsageError, match="outside /opt"):
        merge_layers([first, second], tmp_path / "opt")
    assert not (outside / "evil.py").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "a/../../escape.txt"])
def test_entries_outside_the_root_are_refused(tmp_path: Path, name: str) -> None:
    layer = make_zip(tmp_path / "l.zip", {name: "x"})
    with pytest.raises(UsageError, match="entry outside its root"):
        merge_layers([layer], tmp_path / "deep" / "opt")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "deep" / "escape.txt").exists()


def test_the_unzipped_size_is_bounded_before_anything_is_written(tmp_path: Path) -> None:
    layer = tmp_path / "bomb.zip"
    with zipfile.ZipFile(layer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.bin", b"\0" * 4096)
    target = tmp_path / "opt"
    target.mkdir()
    with pytest.raises(UsageError, match="over Lambda's limit"):
        extract_zip(layer, target, Budget(limit=4095))
    assert not any(target.iterdir())


def test_the_budget_is_shared_by_all_layers(tmp_path: Path) -> None:
    one = make_zip(tmp_path / "one.zip", {"a": b"x" * 600})
    two = make_zip(tmp_path / "two.zip", {"b": b"x" * 600})
    with pytest.raises(UsageError, match=r"two\.zip: over Lambda.s limit"):
        merge_layers([one, two], tmp_path / "opt", Budget(limit=1000))


def test_something_else_than_a_zip_or_directory_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "layer.txt"
    text.write_text("not a zip")
    with pytest.raises(UsageError, match=r"neither a directory nor a \.zip"):
        merge_layers([text], tmp_path / "opt")


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # b is re-pointed on purpose
def test_a_link_re_pointed_later_so_that_another_leads_out_is_refused(tmp_path: Path) -> None:
    """``L -> b/../..`` stays inside while ``b -> s/t/u``; once ``b -> .`` it leads out."""
    archive = tmp_path / "chain.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("s/t/u/x.txt", "x")
        for name, target in (("b", "s/t/u"), ("L", "b/../.."), ("b", ".")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, target)
    with pytest.raises(UsageError, match=r"symlink L -> b/\.\./\.\. leads outside /opt"):
        merge_layers([archive, make_zip(tmp_path / "other.zip", {"a.txt": "a"})], tmp_path / "opt")


def test_a_loop_of_links_leads_nowhere_and_is_kept_as_lambda_keeps_it(tmp_path: Path) -> None:
    archive = tmp_path / "loop.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, target in (("a", "b"), ("b", "a")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, target)
    extract_zip(archive, tmp_path / "opt")
    assert (tmp_path / "opt" / "a").readlink() == Path("b")
    assert (tmp_path / "opt" / "b").readlink() == Path("a")
