"""`lambdacov build-layer` end to end: real wheels, real target interpreters, real zips.

The coverage wheels live in one cache directory per test session, so each
target's wheel is downloaded from PyPI at most once per run.

The target interpreters are found as build-layer finds them: the running one,
``python3.X`` on PATH, then pyenv's versions. A developer without one skips the
tests that need it; in CI (``CI`` set, as CI services do) a missing one fails
them, so a broken CI image cannot pass by skipping most of this file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import marshal
import os
import platform
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lambdacov.errors import BuildError, UsageError
from lambdacov.layer import build_layer
from lambdacov.layer.build import MANIFEST_NAME
from lambdacov.layer.bytecode import NO_PYC_COST, find_interpreter, pyenv_versions
from lambdacov.layer.zipfile_repro import ZipEntry, content_hash
from tests.support.envelope import result_of

COVERAGE_VERSION = importlib.metadata.version("coverage")
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
# A target that is not the interpreter running the tests, to prove .pyc come from the target.
OTHER = "3.13" if RUNNING != "3.13" else "3.12"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _interpreter(python: str) -> Path:
    """An interpreter of ``python``; without one, a skip here and a failure in CI."""
    interpreter = find_interpreter(python)
    if interpreter is None:
        reason = (
            f"no Python {python} interpreter on this machine (looked at the running one, "
            f"python{python} on PATH and pyenv's {pyenv_versions()})"
        )
        if _in_ci():
            pytest.fail(f"{reason}: CI must have every supported Python", pytrace=False)
        pytest.skip(reason)
    return interpreter


@pytest.fixture(scope="session")
def interpreter_312() -> Path:
    return _interpreter("3.12")


@pytest.fixture(scope="session")
def layer_312(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, interpreter_312: Path):
    output = tmp_path_factory.mktemp("layer-312") / "layer.zip"
    return build_layer("3.12", "x86_64", output, cache_dir=wheel_cache)


@pytest.fixture(scope="session")
def extracted_312(tmp_path_factory: pytest.TempPathFactory, layer_312) -> Path:
    # zipfile.extractall drops unix modes; apply them as Lambda's unzip does.
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer_312.path) as archive:
        for info in archive.infolist():
            archive.extract(info, opt)
            if not info.is_dir():
                (opt / info.filename).chmod((info.external_attr >> 16) & 0o777)
    return opt


def _entries(path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: info for info in archive.infolist()}


def _magic_number(interpreter: Path) -> bytes:
    completed = subprocess.run(
        [
            str(interpreter),
            "-I",
            "-c",
            "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return bytes.fromhex(completed.stdout.strip())


def _lambdacov(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdacov", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=300,
    )


def test_the_layer_has_the_documented_layout_and_modes(layer_312) -> None:
    entries = _entries(layer_312.path)
    modes = {name: (info.external_attr >> 16) for name, info in entries.items()}

    assert modes["lambdacov-wrapper"] == stat.S_IFREG | 0o755
    assert modes["extensions/lambdacov"] == stat.S_IFREG | 0o755
    assert "python/coverage/__init__.py" in entries
    assert f"python/coverage-{COVERAGE_VERSION}.dist-info/METADATA" in entries
    assert "python/coverage_wrapper/__init__.py" in entries
    for name, mode in modes.items():
        if name.endswith("/"):
            assert mode == stat.S_IFDIR | 0o755, name
        elif name.endswith(".so") or name in ("lambdacov-wrapper", "extensions/lambdacov"):
            assert mode == stat.S_IFREG | 0o755, name
        else:
            assert mode == stat.S_IFREG | 0o644, name
        assert entries[name].date_time == (1980, 1, 1, 0, 0, 0)
    # Everything from the source tree, nothing from the developer's bytecode caches.
    source = Path(__import__("coverage_wrapper").__file__).parent
    shipped = {
        name.removeprefix("python/coverage_wrapper/")
        for name in entries
        if name.startswith("python/coverage_wrapper/")
        and not name.endswith("/")
        and "__pycache__" not in name
    }
    expected = {
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
    }
    assert shipped == expected | {"_layer.json"}


def test_the_c_tracer_matches_the_target_abi(layer_312) -> None:
    tracers = [
        name for name in _entries(layer_312.path) if "/tracer." in name and name.endswith(".so")
    ]
    assert tracers == ["python/coverage/tracer.cpython-312-x86_64-linux-gnu.so"]


def test_every_py_file_has_a_pyc_from_the_target_python(layer_312, interpreter_312: Path) -> None:
    magic = _magic_number(interpreter_312)
    with zipfile.ZipFile(layer_312.path) as archive:
        names = archive.namelist()
        sources = [name for name in names if name.endswith(".py")]
        assert len(sources) > 40
        for source in sources:
            directory, _, filename = source.rpartition("/")
            pyc = f"{directory}/__pycache__/{filename[:-3]}.cpython-312.pyc"
            data = archive.read(pyc)
            assert data[:4] == magic, pyc
            # PEP 552 flags: hash-based (bit 0), not checked against the source (bit 1 clear).
            assert int.from_bytes(data[4:8], "little") == 0b01, pyc
            if RUNNING == "3.12":
                code = marshal.loads(data[16:])
                assert code.co_filename == f"/opt/{source}"
        # No stray bytecode (say, from the development tree) without its source.
        pycs = {name for name in names if name.endswith(".pyc")}
        assert len(pycs) == len(sources)
    assert layer_312.precompiled
    assert layer_312.warnings == ()


def test_the_manifest_describes_the_layer_and_hashes_everything_else(layer_312) -> None:
    with zipfile.ZipFile(layer_312.path) as archive:
        manifest = json.loads(archive.read(MANIFEST_NAME))
        others = [
            ZipEntry(info.filename, archive.read(info), (info.external_attr >> 16) & 0o777)
            for info in archive.infolist()
            if not info.is_dir() and info.filename != MANIFEST_NAME
        ]
    assert manifest["python"] == "3.12"
    assert manifest["arch"] == "x86_64"
    assert manifest["coverage_version"] == COVERAGE_VERSION
    assert manifest["lambdacov_version"] == importlib.metadata.version("lambdacov")
    assert manifest["content_hash"] == layer_312.content_hash == content_hash(others)
    assert manifest["coverage_wheel_sha256"] == layer_312.coverage_wheel_sha256
    assert layer_312.sha256 == hashlib.sha256(layer_312.path.read_bytes()).hexdigest()
    assert layer_312.size_bytes == layer_312.path.stat().st_size
    assert layer_312.entries == len(others) + 1


def test_building_twice_gives_byte_identical_zips(
    layer_312, wheel_cache: Path, tmp_path: Path
) -> None:
    again = build_layer("3.12", "x86_64", tmp_path / "again.zip", cache_dir=wheel_cache)

    assert again.wheel_source == "cache"
    assert again.path.read_bytes() == layer_312.path.read_bytes()
    assert again.content_hash == layer_312.content_hash


def test_the_unpacked_layer_imports_its_own_coverage_with_the_c_tracer(
    extracted_312: Path, interpreter_312: Path, tmp_path: Path
) -> None:
    site = extracted_312 / "python"
    pycs_before = {path: path.read_bytes() for path in site.rglob("*.pyc")}
    script = (
        "import coverage, coverage_wrapper\n"
        "from coverage.tracer import CTracer\n"
        "import coverage.control, coverage.sqldata\n"
        "print(coverage.__file__)\n"
        "print(coverage_wrapper.__file__)\n"
    )
    # Only the layer on PYTHONPATH, no user site, a neutral working directory.
    environment = {"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    completed = subprocess.run(
        [str(interpreter_312), "-s", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    coverage_file, wrapper_file = completed.stdout.split()
    assert Path(coverage_file).is_relative_to(site)
    assert Path(wrapper_file).is_relative_to(site)
    # Python accepted the shipped .pyc as they are: none was rewritten.
    assert {path: path.read_bytes() for path in site.rglob("*.pyc")} == pycs_before


def test_the_wrapper_script_runs_from_the_unpacked_layer(extracted_312: Path) -> None:
    completed = subprocess.run(
        [str(extracted_312 / "lambdacov-wrapper"), "/bin/sh", "-c", 'echo "$_HANDLER"'],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "_HANDLER": "app.handler"},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "coverage_wrapper.handler.lambda_handler"


def test_an_arm64_layer_carries_the_aarch64_tracer(wheel_cache: Path, tmp_path: Path) -> None:
    result = build_layer("3.12", "arm64", tmp_path / "arm.zip", cache_dir=wheel_cache)
    with zipfile.ZipFile(result.path) as archive:
        tracers = [
            name for name in archive.namelist() if "/tracer." in name and name.endswith(".so")
        ]
        assert tracers == ["python/coverage/tracer.cpython-312-aarch64-linux-gnu.so"]
        elf = archive.read(tracers[0])
    assert int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    assert result.arch == "arm64"
    assert json.loads(zipfile.ZipFile(result.path).read(MANIFEST_NAME))["arch"] == "arm64"


def test_pyc_come_from_the_target_version_not_the_running_one(
    wheel_cache: Path, tmp_path: Path
) -> None:
    interpreter = _interpreter(OTHER)
    result = build_layer(OTHER, "x86_64", tmp_path / "other.zip", cache_dir=wheel_cache)
    tag = f"cpython-3{OTHER.split('.')[1]}"
    with zipfile.ZipFile(result.path) as archive:
        pycs = [name for name in archive.namelist() if name.endswith(".pyc")]
        assert pycs
        assert all(name.endswith(f".{tag}.pyc") for name in pycs)
        assert archive.read(pycs[0])[:4] == _magic_number(interpreter)


def _no_interpreters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point the interpreter lookup at an empty PATH and pyenv; the environment, for a child."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    return dict(os.environ)


def test_without_a_target_interpreter_the_build_refuses_and_names_the_fix(
    wheel_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_interpreters(monkeypatch, tmp_path)
    output = tmp_path / "slow.zip"
    with pytest.raises(BuildError) as refused:
        build_layer(OTHER, "x86_64", output, cache_dir=wheel_cache)
    assert f"no Python {OTHER} interpreter" in refused.value.message
    assert f"install Python {OTHER}" in refused.value.hint
    assert "--no-compile" in refused.value.hint
    assert not output.exists()


def test_no_compile_builds_without_pyc_and_says_what_it_costs(
    wheel_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_interpreters(monkeypatch, tmp_path)
    result = build_layer(
        OTHER, "x86_64", tmp_path / "slow.zip", cache_dir=wheel_cache, precompile=False
    )

    assert not result.precompiled
    assert len(result.warnings) == 1
    assert "--no-compile" in result.warnings[0] and "cold start" in result.warnings[0]
    assert NO_PYC_COST in result.warnings[0]
    assert f"Python {OTHER}" in result.warnings[0]
    assert not any(name.endswith(".pyc") for name in _entries(result.path))
    assert json.loads(zipfile.ZipFile(result.path).read(MANIFEST_NAME))["precompiled"] is False


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_python314_layer_builds_with_no_compile_from_the_cp314_wheel(
    arch: str, wheel_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether or not this machine has Python 3.14, the lookup finds none.
    _no_interpreters(monkeypatch, tmp_path)
    result = build_layer(
        "3.14", arch, tmp_path / "py314.zip", cache_dir=wheel_cache, precompile=False
    )
    machine = "aarch64" if arch == "arm64" else "x86_64"
    names = set(_entries(result.path))
    assert not any(name.endswith(".pyc") or "__pycache__" in name for name in names)
    assert f"python/coverage/tracer.cpython-314-{machine}-linux-gnu.so" in names
    assert not any("tracer.cpython-312" in name for name in names)
    assert result.coverage_wheel.startswith(f"coverage-{COVERAGE_VERSION}-cp314-cp314-")
    assert result.coverage_wheel.endswith(f"_{machine}.whl")
    manifest = json.loads(zipfile.ZipFile(result.path).read(MANIFEST_NAME))
    assert (manifest["python"], manifest["arch"], manifest["precompiled"]) == ("3.14", arch, False)
    assert result.runtime == "python3.14"


def test_the_cli_refuses_python314_without_an_interpreter_and_builds_it_with_no_compile(
    wheel_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = _no_interpreters(monkeypatch, tmp_path)
    arguments = ["--python", "3.14", "--cache-dir", str(wheel_cache)]

    refused = _lambdacov("build-layer", *arguments, cwd=tmp_path, env=environment)
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 2, refused.stderr
    assert lines[0].startswith("lambdacov: error [build]: no Python 3.14 interpreter")
    assert lines[1].startswith("  hint: install Python 3.14") and "--no-compile" in lines[1]
    assert not (tmp_path / "lambdacov-layer-py314-x86_64.zip").exists()

    built = _lambdacov(
        "build-layer", *arguments, "--no-compile", "--json", cwd=tmp_path, env=environment
    )
    assert built.returncode == 0, built.stderr
    assert "warning: --no-compile" in built.stderr and "cold start" in built.stderr
    document = result_of(built.stdout, "build-layer")
    assert document["runtime"] == "python3.14" and document["precompiled"] is False
    assert Path(document["path"]) == tmp_path / "lambdacov-layer-py314-x86_64.zip"


def test_the_dir_format_holds_the_zip_s_files_with_their_modes(
    wheel_cache: Path, tmp_path: Path, layer_312
) -> None:
    output = tmp_path / "lambdacov-layer"
    result = build_layer("3.12", "x86_64", output, cache_dir=wheel_cache, layout="dir")

    assert result.format == "dir" and output.is_dir()
    # The same content as the zip: the same hash, file for file, mode for mode.
    assert result.content_hash == layer_312.content_hash
    assert result.sha256 == layer_312.sha256
    with zipfile.ZipFile(layer_312.path) as archive:
        files = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for name, info in files.items():
            path = output / name
            assert path.read_bytes() == archive.read(info), name
            assert stat.S_IMODE(path.stat().st_mode) == (info.external_attr >> 16) & 0o777, name
    on_disk = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
    assert on_disk == set(files)
    # Where Lambda looks in an image: the extension in /opt/extensions, packages in /opt/python.
    assert os.access(output / "extensions" / "lambdacov", os.X_OK)
    assert os.access(output / "lambdacov-wrapper", os.X_OK)
    assert (output / "python" / "coverage_wrapper" / "handler.py").is_file()

    # Building again replaces the directory it wrote; a directory of other files is refused.
    (output / "python" / "stale.py").write_text("old\n")
    build_layer("3.12", "x86_64", output, cache_dir=wheel_cache, layout="dir")
    assert not (output / "python" / "stale.py").exists()
    foreign = tmp_path / "app"
    foreign.mkdir()
    (foreign / "main.py").write_text("print(1)\n")
    with pytest.raises(UsageError, match="did not write"):
        build_layer("3.12", "x86_64", foreign, cache_dir=wheel_cache, layout="dir")
    assert [path.name for path in foreign.iterdir()] == ["main.py"]


def test_an_explicit_interpreter_of_another_version_is_refused(
    wheel_cache: Path, interpreter_312: Path, tmp_path: Path
) -> None:
    output = tmp_path / "layer.zip"
    with pytest.raises(UsageError, match=r"not a working Python 3\.11"):
        build_layer("3.11", "x86_64", output, cache_dir=wheel_cache, interpreter=interpreter_312)
    assert not output.exists()


def test_the_cli_prints_one_json_document(wheel_cache: Path, tmp_path: Path, layer_312) -> None:
    # The session cache doubles as an offline --wheel-dir.
    arguments = ["--python", "3.12", "--arch", "x86_64", "--wheel-dir", str(wheel_cache), "--json"]
    completed = _lambdacov("build-layer", *arguments, cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    document = result_of(completed.stdout, "build-layer")
    assert document["path"] == str(tmp_path / "lambdacov-layer-py312-x86_64.zip")
    assert document["content_hash"] == layer_312.content_hash
    assert document["sha256"] == layer_312.sha256
    assert document["wheel_source"] == "wheel-dir"
    assert document["warnings"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "3.10"], "unsupported Python version '3.10'"),
        (["--arch", "ppc64le"], "unsupported architecture 'ppc64le'"),
        (["--output", "missing/layer.zip"], "does not exist"),
        (["--output", "layer.tar.gz"], "must be a .zip file"),
        (["--output", "layer.zip", "--wheel-dir", "."], "no coverage"),
    ],
    ids=["python", "arch", "missing-dir", "not-zip", "no-wheel"],
)
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path
) -> None:
    completed = _lambdacov("build-layer", *args, cwd=tmp_path)

    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert lines[0].startswith("lambdacov: error [")
    assert message in lines[0]
    assert lines[1].startswith("  hint: ")
    assert "Traceback" not in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_network_and_no_wheel_is_a_build_error_naming_wheel_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An index on a closed loopback port: pip fails at once, nothing leaves the machine.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    output = tmp_path / "layer.zip"
    # Not this machine's Python and architecture: the installed coverage cannot stand in.
    other = "arm64" if platform.machine() == "x86_64" else "x86_64"
    with pytest.raises(BuildError) as raised:
        build_layer("3.12", other, output, cache_dir=tmp_path / "empty-cache")

    assert "--wheel-dir" in raised.value.hint
    assert not output.exists()


def test_offline_the_installed_coverage_builds_the_layer_for_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = "arm64" if platform.machine() == "aarch64" else "x86_64"
    build = build_layer(python, arch, tmp_path / "layer.zip", cache_dir=tmp_path / "empty-cache")
    assert build.wheel_source == "installed"
    names = zipfile.ZipFile(build.path).namelist()
    assert any(name.startswith("python/coverage/tracer.cpython-") for name in names)
    assert f"python/coverage-{COVERAGE_VERSION}.dist-info/METADATA" in names


def test_a_cached_wheel_whose_recorded_hash_differs_is_not_used(
    wheel_cache: Path, layer_312, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = shutil.copy(wheel_cache / layer_312.coverage_wheel, cache)
    Path(f"{wheel}.sha256").write_text("0" * 64 + "\n")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")

    host = sys.version_info[:2] == (3, 12) and platform.machine() == "x86_64"
    if host:  # offline on a 3.12 x86_64 machine, the installed coverage stands in
        build = build_layer("3.12", "x86_64", tmp_path / "layer.zip", cache_dir=cache)
        assert build.wheel_source == "installed"
    else:
        with pytest.raises(BuildError):
            build_layer("3.12", "x86_64", tmp_path / "layer.zip", cache_dir=cache)
    assert list(cache.iterdir()) == []  # the tampered wheel was discarded, never used


def _rewrite_wheel(
    source: Path, destination: Path, *, drop_tracer: bool = False, tamper: str = ""
) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(destination, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if drop_tracer and "/tracer." in info.filename and info.filename.endswith(".so"):
                continue
            if drop_tracer and info.filename.endswith("/RECORD"):
                data = b"\n".join(
                    line
                    for line in data.split(b"\n")
                    if b"/tracer." not in line or b".so," not in line
                )
            if info.filename == tamper:
                data += b"\n# tampered\n"
            copy.writestr(info, data)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"drop_tracer": True}, "no C tracer"), ({"tamper": "coverage/control.py"}, "is corrupt")],
    ids=["pure-python", "tampered"],
)
def test_a_wheel_without_the_tracer_or_with_a_bad_record_is_refused(
    change: dict[str, object], message: str, wheel_cache: Path, layer_312, tmp_path: Path
) -> None:
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    _rewrite_wheel(
        wheel_cache / layer_312.coverage_wheel, wheel_dir / layer_312.coverage_wheel, **change
    )
    output = tmp_path / "layer.zip"

    with pytest.raises(BuildError, match=message):
        build_layer("3.12", "x86_64", output, wheel_dir=wheel_dir)
    assert not output.exists()


@pytest.mark.parametrize("gate", ["max_zip_bytes", "max_unzipped_bytes"])
def test_the_size_gates_fail_the_build_and_leave_nothing_behind(
    gate: str, wheel_cache: Path, tmp_path: Path
) -> None:
    output = tmp_path / "layer.zip"
    with pytest.raises(BuildError, match="over Lambda's limit"):
        build_layer("3.12", "x86_64", output, cache_dir=wheel_cache, **{gate: 100_000})

    assert list(tmp_path.iterdir()) == []


def test_a_failed_build_keeps_an_existing_layer_untouched(
    wheel_cache: Path, tmp_path: Path
) -> None:
    output = tmp_path / "layer.zip"
    output.write_bytes(b"previous layer")
    with pytest.raises(BuildError):
        build_layer("3.12", "x86_64", output, cache_dir=wheel_cache, max_zip_bytes=1)

    assert output.read_bytes() == b"previous layer"
    assert list(tmp_path.iterdir()) == [output]
