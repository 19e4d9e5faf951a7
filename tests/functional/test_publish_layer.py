"""`lambdacov publish-layer` against the moto server: idempotent, multi-region, grants."""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest

from lambdacov import conventions
from lambdacov.layer.build import MANIFEST_NAME
from lambdacov.layer.publish import LayerArtifact
from tests.conftest import HOST_ARCH, HOST_PYTHON
from tests.support.envelope import envelope, result_of
from tests.support.lambda_fleet import run_cli

NAME = conventions.layer_name(HOST_PYTHON, HOST_ARCH)


def versions(endpoint: str, region: str, name: str = NAME) -> list[dict[str, object]]:
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name=region)
    return list(lam.list_layer_versions(LayerName=name)["LayerVersions"])


def test_publishing_twice_in_two_regions_publishes_once_per_region(
    moto_endpoint: str, host_layer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    regions = ("eu-west-1", "eu-west-2")
    argv = ["publish-layer", "--zip", str(host_layer), "--endpoint-url", moto_endpoint, "--json"]
    for region in regions:
        argv += ["--region", region]

    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    first = result_of(out, "publish-layer")["layers"]
    assert [layer["region"] for layer in first] == list(regions)
    assert all(layer["published"] and layer["version"] == 1 for layer in first)

    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    second = result_of(out, "publish-layer")["layers"]
    assert [layer["arn"] for layer in second] == [layer["arn"] for layer in first]
    assert not any(layer["published"] for layer in second)

    content_hash = LayerArtifact.from_zip(host_layer).content_hash
    for region in regions:
        (only,) = versions(moto_endpoint, region)
        assert only["CompatibleRuntimes"] == [f"python{HOST_PYTHON}"]
        assert only["CompatibleArchitectures"] == [HOST_ARCH]
        assert conventions.parse_layer_description(str(only["Description"]))[1] == content_hash  # type: ignore[index]


def test_public_and_principal_grants_are_added_once(
    moto_endpoint: str, host_layer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "publish-layer",
        "--zip",
        str(host_layer),
        "--region",
        "eu-west-3",
        "--public",
        "--principal",
        "111122223333",
        "--principal",
        "o-abc1234567",
        "--endpoint-url",
        moto_endpoint,
        "--json",
    ]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    (layer,) = result_of(out, "publish-layer")["layers"]
    assert sorted(layer["granted"]) == [
        "lambdacov-account-111122223333",
        "lambdacov-org-o-abc1234567",
        "lambdacov-public",
    ]
    assert run_cli(capsys, *argv)[0] == 0  # again: nothing to add

    lam = boto3.client("lambda", endpoint_url=moto_endpoint, region_name="eu-west-3")
    policy = json.loads(
        lam.get_layer_version_policy(LayerName=NAME, VersionNumber=layer["version"])["Policy"]
    )
    statements = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert len(policy["Statement"]) == 3
    assert statements["lambdacov-public"]["Principal"] == "*"
    assert statements["lambdacov-org-o-abc1234567"]["OrganizationId"] == "o-abc1234567"
    assert "111122223333" in json.dumps(statements["lambdacov-account-111122223333"])
    assert all(s["Action"] == "lambda:GetLayerVersion" for s in policy["Statement"])


def test_publish_builds_the_layer_when_no_zip_is_given(
    moto_endpoint: str, wheel_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys,
        "publish-layer",
        "--python",
        HOST_PYTHON,
        "--arch",
        HOST_ARCH,
        "--cache-dir",
        str(wheel_cache),
        "--region",
        "eu-central-1",
        "--endpoint-url",
        moto_endpoint,
        "--json",
    )
    assert code == 0, err
    (layer,) = result_of(out, "publish-layer")["layers"]
    assert layer["layer_name"] == NAME and layer["published"]
    assert layer["arn"].startswith("arn:aws:lambda:eu-central-1:")
    assert len(versions(moto_endpoint, "eu-central-1")) == 1


def test_people_get_a_table_of_arns(
    moto_endpoint: str, host_layer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys,
        "publish-layer",
        "--zip",
        str(host_layer),
        "--region",
        "eu-north-1",
        "--endpoint-url",
        moto_endpoint,
    )
    assert code == 0
    assert f"arn:aws:lambda:eu-north-1:123456789012:layer:{NAME}:1" in out
    assert "published" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--principal", "alice"], "neither an account id nor an organization id"),
        (["--python", "3.12"], "--zip publishes existing zips"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    moto_endpoint: str,
    host_layer: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, out, err = run_cli(
        capsys,
        "publish-layer",
        "--zip",
        str(host_layer),
        *args,
        "--region",
        "eu-south-1",
        "--endpoint-url",
        moto_endpoint,
    )
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_region_option_is_enough_without_a_default_region(
    moto_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    # A zip with the manifest of a build: publish-layer reads nothing else of it.
    layer = tmp_path / "layer.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        manifest = {"python": "3.13", "arch": "arm64", "content_hash": uuid.uuid4().hex}
        archive.writestr(MANIFEST_NAME, json.dumps(manifest))
    argv = ["publish-layer", "--zip", str(layer), "--endpoint-url", moto_endpoint, "--json"]

    code, out, err = run_cli(capsys, *argv, "--region", "af-south-1")
    assert code == 0, err
    (published,) = result_of(out, "publish-layer")["layers"]
    assert published["region"] == "af-south-1" and published["published"]
    assert published["arn"].startswith("arn:aws:lambda:af-south-1:")
    assert len(versions(moto_endpoint, "af-south-1", published["layer_name"])) == 1

    # Without --region there is no region at all: the usage error, before any call.
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and envelope(out)["error"]["slug"] == "no-region", err


def test_a_file_that_is_not_a_layer_is_a_usage_error(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"not a zip")
    code, _, err = run_cli(
        capsys,
        "publish-layer",
        "--zip",
        str(bogus),
        "--region",
        "eu-south-1",
        "--endpoint-url",
        moto_endpoint,
    )
    assert code == 2 and "not a layer zip built by lambdacov" in err
