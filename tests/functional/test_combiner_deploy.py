"""`lambdacov combiner deploy` against moto server: create, update, least-privilege role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambdacov.cli import main
from lambdacov.combine.remote.deploy import CombinerSettings, combiner_policy
from tests.support.envelope import result_of


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SystemExit) as done:
        main(args)
    out = capsys.readouterr().out
    return int(done.value.code or 0), result_of(out, "combiner deploy") if out.strip() else {}


def test_deploy_creates_then_updates_with_a_least_privilege_role(
    moto_endpoint: str, bucket: str, host_layer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_endpoint,
        "--region",
        "us-east-1",
        "--json",
    ]
    code, first = run(["combiner", "deploy", "--layer-zip", str(host_layer), *common], capsys)
    assert code == 0 and first["created"] is True
    assert first["function_name"] == "lambdacov-combiner"
    code, second = run(
        ["combiner", "deploy", "--layer-arn", first["layer_arn"], "--memory", "4096", *common],
        capsys,
    )
    assert code == 0 and second["created"] is False and second["role_arn"] == first["role_arn"]

    aws = boto3.client("lambda", endpoint_url=moto_endpoint, region_name="us-east-1")
    config = aws.get_function_configuration(FunctionName="lambdacov-combiner")
    assert config["Handler"] == "coverage_wrapper.shard.handler"
    assert config["MemorySize"] == 4096 and config["Timeout"] == 900
    assert [layer["Arn"] for layer in config["Layers"]] == [first["layer_arn"]]
    assert config["Environment"]["Variables"] == {
        "LAMBDACOV_COMBINER_BUCKET": bucket,
        "LAMBDACOV_COMBINER_PREFIX": "coverage/",
        "LAMBDACOV_COMBINER_OUTPUT_PREFIX": "coverage.lambdacov/partials/",
    }

    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    role = "lambdacov-combiner-role"
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["lambdacov-combiner"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    policy = iam.get_role_policy(RoleName=role, PolicyName="lambdacov-combiner")["PolicyDocument"]
    account = boto3.client("sts", endpoint_url=moto_endpoint, region_name="us-east-1")
    expected = combiner_policy(
        CombinerSettings(bucket, "coverage/", "coverage.lambdacov/", "unused"),
        region="us-east-1",
        account=account.get_caller_identity()["Account"],
    )
    assert policy == expected
    b = f"arn:aws:s3:::{bucket}"
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"][:3]] == [
        ("s3:ListBucket", b),
        ("s3:GetObject", [f"{b}/coverage/*", f"{b}/coverage.lambdacov/partials/*"]),
        ("s3:PutObject", f"{b}/coverage.lambdacov/partials/*"),
    ]
    assert policy["Statement"][0]["Condition"] == {"StringLike": {"s3:prefix": ["coverage/*"]}}
    assert "s3:DeleteObject" not in json.dumps(policy) and '"*"' not in json.dumps(policy)


def test_deploy_dry_run_changes_nothing_and_refuses_partials_under_the_data(
    moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--bucket", bucket, "--endpoint-url", moto_endpoint, "--region", "us-east-1"]
    code, plan = run(
        ["combiner", "deploy", "--function-name", "dry", "--dry-run", "--json", *common], capsys
    )
    assert code == 0 and plan["dry_run"] is True and plan["role_name"] == "dry-role"
    aws = boto3.client("lambda", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert "dry" not in [f["FunctionName"] for f in aws.list_functions()["Functions"]]
    with pytest.raises(SystemExit) as done:
        main(["combiner", "deploy", "--output-prefix", "coverage/partials/", *common])
    assert done.value.code == 2
    assert "under the data prefix" in capsys.readouterr().err
