"""`lambdacov attach` / `detach` against the moto server, driven through the CLI as users do.

Each test works in its own region (or with its own function names), because the
moto server and the lambdacov layer names are shared by the whole session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdacov import conventions
from lambdacov.attach.plan import AttachSettings, apply, plan_attach
from lambdacov.aws import Retrier
from lambdacov.errors import AwsError
from tests.support.envelope import result_of
from tests.support.lambda_fleet import (
    clients,
    create_function,
    make_role,
    publish_stand_in_layer,
    run_cli,
    snapshot,
)

OUR_LAYER = conventions.layer_name("3.12", "x86_64")
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def region() -> str:
    return "us-west-2"


@pytest.fixture
def aws(moto_endpoint: str, region: str) -> tuple[Any, Any]:
    return clients(moto_endpoint, region)


@pytest.fixture
def role(aws: tuple[Any, Any]) -> str:
    return make_role(aws[1])


@pytest.fixture
def layer(aws: tuple[Any, Any]) -> str:
    """The newest lambdacov layer for python3.12 x86_64 in the test's region (a stand-in zip)."""
    return publish_stand_in_layer(aws[0], OUR_LAYER)


def cli(capsys: pytest.CaptureFixture[str], endpoint: str, region: str, *argv: str) -> Any:
    code, out, err = run_cli(capsys, *argv, "--endpoint-url", endpoint, "--region", region)
    assert "Traceback" not in err
    return code, out, err


def attach_json(capsys: pytest.CaptureFixture[str], endpoint: str, region: str, *argv: str) -> Any:
    code, out, err = cli(capsys, endpoint, region, "attach", *argv, "--json")
    return code, result_of(out, "attach"), err


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {item["function"]: item["status"] for item in document["functions"]}


def test_attach_then_detach_leaves_the_function_as_it_was(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    lam, _ = aws
    others = [publish_stand_in_layer(lam, "deps"), publish_stand_in_layer(lam, "vendor-ext")]
    name = unique("orders")
    create_function(
        lam,
        role,
        name,
        layers=others,
        env={"TABLE": "orders", "LOG_LEVEL": "info"},
        tags={"team": "payments"},
    )
    before = snapshot(lam, name)

    code, document, err = attach_json(capsys, moto_endpoint, region, name, "--bucket", "cov-data")
    assert code == 0, err
    assert statuses(document) == {name: "changed"}
    attached = snapshot(lam, name)
    assert attached["Layers"] == [*others, layer]
    assert attached["Handler"] == "app.handler"
    assert attached["Environment"] == {
        "TABLE": "orders",
        "LOG_LEVEL": "info",
        "COVERAGE_S3_BUCKET": "cov-data",
        conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH,
    }
    assert any(key.startswith("lambdacov:record:") for key in attached["Tags"])

    code, document, _ = attach_json(capsys, moto_endpoint, region, name, "--bucket", "cov-data")
    assert code == 0 and statuses(document) == {name: "unchanged"}
    assert snapshot(lam, name) == attached

    code, out, err = cli(capsys, moto_endpoint, region, "detach", name)
    assert code == 0, err
    assert "changed" in out
    assert snapshot(lam, name) == before


def test_the_aws_cli_sees_what_attach_did(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    aws_cli = shutil.which("aws")
    assert aws_cli, "the AWS CLI (`aws`) is needed for this test: pip install awscli"
    name = unique("cli-check")
    create_function(aws[0], role, name, env={"A": "1"})
    code, _, err = cli(
        capsys,
        moto_endpoint,
        region,
        "attach",
        name,
        "--bucket",
        "cov-data",
        "--prefix",
        "team/",
        "--branch",
    )
    assert code == 0, err
    done = subprocess.run(
        [
            aws_cli,
            "lambda",
            "get-function-configuration",
            "--function-name",
            name,
            "--endpoint-url",
            moto_endpoint,
            "--region",
            region,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [entry["Arn"] for entry in seen["Layers"]] == [layer]
    assert seen["Environment"]["Variables"] == {
        "A": "1",
        "COVERAGE_S3_BUCKET": "cov-data",
        "COVERAGE_S3_PREFIX": "team/",
        "COVERAGE_BRANCH": "true",
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper",
    }
    assert seen["Handler"] == "app.handler"


def test_an_existing_exec_wrapper_is_chained_then_restored(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    lam, _ = aws
    name = unique("chained")
    create_function(
        lam,
        role,
        name,
        handler="vendor.handler",
        env={conventions.EXEC_WRAPPER_VAR: "/opt/vendor-wrapper", "VENDOR_KEY": "k"},
    )
    before = snapshot(lam, name)
    code, _, err = cli(capsys, moto_endpoint, region, "attach", name, "--bucket", "cov-data")
    assert code == 0, err
    env = snapshot(lam, name)["Environment"]
    assert env[conventions.EXEC_WRAPPER_VAR] == conventions.WRAPPER_PATH
    assert env[conventions.NEXT_WRAPPER_VAR] == "/opt/vendor-wrapper"
    assert snapshot(lam, name)["Handler"] == "vendor.handler"

    code, _, err = cli(capsys, moto_endpoint, region, "detach", name)
    assert code == 0, err
    assert snapshot(lam, name) == before


def test_dry_run_prints_the_diff_and_changes_nothing(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    lam, _ = aws
    name = unique("dry")
    create_function(lam, role, name, env={"SECRET_TOKEN": "hunter2"})
    before = snapshot(lam, name)
    code, out, err = cli(
        capsys, moto_endpoint, region, "attach", name, "--bucket", "cov-data", "--dry-run"
    )
    assert code == 0, err
    assert f"+ {layer}" in out
    assert "+ COVERAGE_S3_BUCKET=cov-data" in out
    assert f"+ AWS_LAMBDA_EXEC_WRAPPER={conventions.WRAPPER_PATH}" in out
    assert "handler: app.handler" in out
    assert "planned" in out
    assert "hunter2" not in out
    assert snapshot(lam, name) == before


@pytest.mark.parametrize("region", ["ap-southeast-2"])
def test_each_refusal_changes_nothing(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    lam, _ = aws
    fillers = [publish_stand_in_layer(lam, f"filler{i}") for i in range(5)]
    cases = {
        unique("five-layers"): ({"layers": fillers}, "refused", "5 layers"),
        unique("big-env"): ({"env": {"BLOB": "x" * 4050}}, "refused", "4096-byte"),
        unique("arm"): ({"arch": "arm64"}, "refused", "no lambdacov layer for python3.12 arm64"),
        unique("node"): ({"runtime": "nodejs20.x"}, "skipped", "Python functions only"),
    }
    for name, (options, _, _) in cases.items():
        create_function(lam, role, name, **options)
    before = {name: snapshot(lam, name) for name in cases}

    code, document, err = attach_json(capsys, moto_endpoint, region, *cases, "--bucket", "b-1")
    assert code == 1, err
    results = {item["function"]: item for item in document["functions"]}
    for name, (_, status, words) in cases.items():
        assert results[name]["status"] == status
        assert words in results[name]["detail"]
        assert snapshot(lam, name) == before[name]

    node = next(name for name in cases if name.startswith("node"))
    code, out, _ = cli(capsys, moto_endpoint, region, "attach", node, "--bucket", "b-1")
    assert code == 0 and "skipped" in out  # a skip alone is not a failure


@pytest.mark.parametrize("region", ["ca-central-1"])
def test_fifty_functions_selected_by_pattern_and_tag(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    lam, _ = aws
    for index in range(50):
        group = "api" if index < 30 else "jobs"
        tags = {"team": "blue" if index % 2 == 0 else "green"}
        create_function(lam, role, f"{group}-{index:02d}", tags=tags)

    code, document, err = attach_json(
        capsys,
        moto_endpoint,
        region,
        "--pattern",
        "^api-",
        "--tag",
        "team=blue",
        "--exclude",
        "-0[0-3]$",
        "--bucket",
        "cov-data",
        "--concurrency",
        "8",
    )
    assert code == 0, err
    expected = {f"api-{i:02d}" for i in range(4, 30, 2)}
    assert statuses(document) == dict.fromkeys(expected, "changed")
    for index in (1, 2, 31, 32):  # not selected: untouched
        assert snapshot(lam, f"{'api' if index < 30 else 'jobs'}-{index:02d}")["Layers"] == []

    code, document, err = attach_json(
        capsys, moto_endpoint, region, "--tag", "team=green", "--bucket", "cov-data", "--dry-run"
    )
    assert code == 0 and len(document["functions"]) == 25
    assert set(statuses(document).values()) == {"planned"}

    code, out, err = cli(capsys, moto_endpoint, region, "detach", "--all", "--json")
    assert code == 0, err
    counts = result_of(out, "detach")["counts"]
    assert counts == {"changed": len(expected), "unchanged": 50 - len(expected)}
    assert all(snapshot(lam, name)["Layers"] == [] for name in expected)


@pytest.mark.parametrize("region", ["sa-east-1"])
def test_grant_puts_exactly_the_least_privilege_policy(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], layer: str, capsys: Any
) -> None:
    lam, iam = aws
    role_name = unique("role")
    role = make_role(iam, role_name)
    name = unique("granted")
    create_function(lam, role, name)

    code, document, err = attach_json(capsys, moto_endpoint, region, name, "--bucket", "cov-data")
    assert code == 0, err
    (result,) = document["functions"]
    assert (
        result["missing_policy"]["Statement"][0]["Resource"] == "arn:aws:s3:::cov-data/coverage/*"
    )

    code, document, err = attach_json(
        capsys,
        moto_endpoint,
        region,
        name,
        "--bucket",
        "cov-data",
        "--prefix",
        "svc",
        "--kms-key-id",
        KEY_ID,
        "--grant",
    )
    assert code == 0, err
    policy = iam.get_role_policy(RoleName=role_name, PolicyName=f"lambdacov-{name}")
    assert policy["PolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LambdacovPutCoverage",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::cov-data/svc/*",
            },
            {
                "Sid": "LambdacovFindSources",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::cov-data/svc/sources/*",
            },
            {
                "Sid": "LambdacovEncryptCoverage",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": f"arn:aws:kms:{region}:123456789012:key/{KEY_ID}",
            },
        ],
    }
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [f"lambdacov-{name}"]

    code, _, err = cli(capsys, moto_endpoint, region, "detach", name)
    assert code == 0, err
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == []


def test_a_missing_function_fails_alone_with_one_line(
    moto_endpoint: str, region: str, aws: tuple[Any, Any], role: str, layer: str, capsys: Any
) -> None:
    name = unique("present")
    create_function(aws[0], role, name)
    code, out, _ = cli(
        capsys, moto_endpoint, region, "attach", name, "no-such-function", "--bucket", "cov-data"
    )
    assert code == 1
    assert "no-such-function" in out and "failed" in out and "ResourceNotFoundException" in out
    assert snapshot(aws[0], name)["Layers"] == [layer]


def test_usage_errors_exit_2(moto_endpoint: str, region: str, capsys: Any) -> None:
    for argv in (
        ["attach", "fn"],  # no --bucket
        ["attach", "--bucket", "b-1"],  # nothing selected
        ["attach", "fn", "--bucket", "s3://b-1/x"],
        ["detach", "--pattern", "("],
    ):
        code, _, err = cli(capsys, moto_endpoint, region, *argv)
        assert code == 2, (argv, err)


# moto cannot make Lambda answer ResourceConflictException ("an update is in progress")
# or throttle, nor report LastUpdateStatus=InProgress: botocore's Stubber plays AWS here.
def test_apply_retries_conflicts_and_throttling_and_waits_for_the_update() -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:busy"
    layer = "arn:aws:lambda:us-east-1:123456789012:layer:lambdacov-python312-x86_64:1"
    configuration = {
        "FunctionName": "busy",
        "FunctionArn": arn,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::123456789012:role/r",
        "Layers": [],
    }
    plan = plan_attach(configuration, {}, AttachSettings.create("cov-data"), layer)
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_client_error("tag_resource", "TooManyRequestsException", http_status_code=429)
        stub.add_response("tag_resource", {})
        for _ in range(2):
            stub.add_client_error(
                "update_function_configuration", "ResourceConflictException", http_status_code=409
            )
        stub.add_response("update_function_configuration", {"LastUpdateStatus": "InProgress"})
        stub.add_response("get_function_configuration", {"LastUpdateStatus": "InProgress"})
        stub.add_response("get_function_configuration", {"LastUpdateStatus": "Successful"})
        apply(plan, client, Retrier(sleep=sleeps.append))
        stub.assert_no_pending_responses()
    assert len(sleeps) == 4  # one throttle, two conflicts, one poll


def test_a_failed_update_is_reported_and_the_record_restored() -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:broken"
    configuration = {
        "FunctionName": "broken",
        "FunctionArn": arn,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Layers": [],
    }
    plan = plan_attach(
        configuration,
        {},
        AttachSettings.create("cov-data"),
        "arn:aws:lambda:us-east-1:123456789012:layer:lambdacov-python312-x86_64:1",
    )
    with Stubber(client) as stub:
        stub.add_response("tag_resource", {})
        stub.add_response("update_function_configuration", {})
        stub.add_response(
            "get_function_configuration",
            {"LastUpdateStatus": "Failed", "LastUpdateStatusReason": "layer too big"},
        )
        stub.add_response("untag_resource", {})
        with pytest.raises(AwsError, match="layer too big"):
            apply(plan, client, Retrier(sleep=lambda _: None))
        stub.assert_no_pending_responses()
