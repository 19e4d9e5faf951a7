"""python3.14 is supported end to end, python3.10 refused like any unsupported runtime (moto).

moto (5.2) accepts any runtime name at CreateFunction and PublishLayerVersion,
python3.14 included, so these functions and layers are created as users would.
The python3.14 layers are built with --no-compile: no 3.14 interpreter is
needed, and the build reaches PyPI for the cp314 coverage wheels.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from lambdacov import conventions
from lambdacov.layer import SUPPORTED_PYTHONS
from tests.support.envelope import envelope, result_of
from tests.support.lambda_fleet import clients, create_function, make_role, run_cli

REGION = "ap-northeast-3"


@pytest.fixture
def aws(moto_endpoint: str) -> tuple[Any, Any]:
    return clients(moto_endpoint, REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cli(capsys: pytest.CaptureFixture[str], endpoint: str, *argv: str) -> tuple[int, str, str]:
    code, out, err = run_cli(capsys, *argv, "--endpoint-url", endpoint, "--region", REGION)
    assert "Traceback" not in err
    return code, out, err


def versions(lam: Any, python: str) -> list[Any]:
    """The versions of the x86_64 lambdacov layer for ``python`` in the test's region."""
    name = conventions.layer_name(python, "x86_64")
    try:
        return list(lam.list_layer_versions(LayerName=name)["LayerVersions"])
    except lam.exceptions.ResourceNotFoundException:
        return []


def no_interpreters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point the interpreter lookup at an empty PATH and pyenv: no python3.14 anywhere."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))


def test_python314_is_one_of_the_supported_runtimes() -> None:
    assert "3.14" in SUPPORTED_PYTHONS
    assert "python3.14" in conventions.PYTHON_RUNTIMES
    assert "3.10" not in SUPPORTED_PYTHONS


def test_publish_then_attach_a_python314_function_on_both_architectures(
    moto_endpoint: str,
    aws: tuple[Any, Any],
    wheel_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    no_interpreters(monkeypatch, tmp_path)
    publish = ["publish-layer", "--python", "3.14", "--cache-dir", str(wheel_cache)]

    # The running interpreter is 3.11-3.13, never 3.14: found, and 3.14 is the one missing.
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    code, out, err = cli(capsys, moto_endpoint, *publish, "--python", running, "--json")
    assert code == 2
    error = envelope(out)["error"]
    assert error["slug"] == "build"
    assert error["message"].startswith("no interpreter of Python 3.14 found")
    assert f"publish only --python {running}" in error["hint"]
    assert "--no-compile" in error["hint"]
    assert versions(aws[0], "3.14") == versions(aws[0], running) == []  # nothing published

    code, out, err = cli(capsys, moto_endpoint, *publish, "--no-compile", "--json")
    assert code == 0, err
    assert "--no-compile" in err and "cold start" in err  # the warning, with its cost
    layers = {layer["arch"]: layer for layer in result_of(out, "publish-layer")["layers"]}
    assert set(layers) == {"x86_64", "arm64"}
    assert {layer["runtime"] for layer in layers.values()} == {"python3.14"}

    lam, iam = aws
    role = make_role(iam)
    names = {arch: unique(f"py314-{arch}") for arch in layers}
    for arch, name in names.items():
        create_function(lam, role, name, runtime="python3.14", arch=arch)
    code, out, err = cli(
        capsys, moto_endpoint, "attach", *names.values(), "--bucket", "b-1", "--json"
    )
    assert code == 0, err
    results = {item["function"]: item for item in result_of(out, "attach")["functions"]}
    for arch, name in names.items():
        assert results[name]["status"] == "changed"
        attached = lam.get_function_configuration(FunctionName=name)
        assert [layer["Arn"] for layer in attached["Layers"]] == [layers[arch]["arn"]]

    code, out, _ = cli(capsys, moto_endpoint, "doctor", names["arm64"], "--json")
    checks = {check["code"]: check for check in result_of(out, "doctor")["checks"]}
    assert checks["function.runtime"]["status"] == "ok"
    assert checks["function.runtime"]["detail"] == "python3.14"
    assert checks["function.layer"]["status"] == "ok"


@pytest.mark.parametrize("retired", ["python3.10", "python3.9"])
def test_python310_is_refused_with_the_message_of_every_unsupported_runtime(
    retired: str,
    moto_endpoint: str,
    aws: tuple[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    lam, iam = aws
    name = unique(retired.replace(".", ""))
    create_function(lam, make_role(iam), name, runtime=retired)
    supported = ", ".join(conventions.PYTHON_RUNTIMES)

    code, out, _ = cli(capsys, moto_endpoint, "attach", name, "--bucket", "b-1", "--json")
    assert code == 1
    (result,) = result_of(out, "attach")["functions"]
    assert result["status"] == "refused"
    assert result["detail"] == f"{retired} is not supported (lambdacov supports {supported})"
    assert lam.get_function_configuration(FunctionName=name).get("Layers") in (None, [])

    code, out, _ = cli(capsys, moto_endpoint, "doctor", name, "--json")
    assert code == 1
    checks = {check["code"]: check for check in result_of(out, "doctor")["checks"]}
    assert checks["function.runtime"]["status"] == "fail"
    assert checks["function.runtime"]["detail"] == f"{retired} is not supported"
    assert checks["function.runtime"]["hint"] == f"lambdacov supports {supported}"

    version = retired.removeprefix("python")
    for argv in (
        ["build-layer", "--python", version, "--json"],
        ["publish-layer", "--python", version, "--json", "--endpoint-url", moto_endpoint],
    ):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 2
        error = envelope(out)["error"]
        assert error["message"] == f"unsupported Python version {version!r}"
        assert error["hint"] == (
            f"use one of {', '.join(SUPPORTED_PYTHONS)} (the Lambda runtime's version)"
        )


def test_publish_by_default_builds_the_pythons_found_here_and_names_the_others(
    moto_endpoint: str,
    wheel_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    no_interpreters(monkeypatch, tmp_path)  # only the running interpreter is found
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    code, out, err = cli(
        capsys,
        moto_endpoint,
        "publish-layer",
        "--arch",
        "x86_64",
        "--cache-dir",
        str(wheel_cache),
        "--json",
    )
    assert code == 0, err
    result = result_of(out, "publish-layer")
    assert [layer["runtime"] for layer in result["layers"]] == [f"python{running}"]
    left_out = [version for version in SUPPORTED_PYTHONS if version != running]
    assert result["skipped_pythons"] == left_out
    for version in left_out:
        assert f"warning: python{version} skipped: no Python {version} interpreter" in err
