"""`attach` and `doctor` judge a role's policies alike, through the CLI against the moto server.

attach warns ("the role lacks the coverage policy") exactly when the doctor's
role checks are not ok: a role allowed by a NotAction statement, as AWS's
PowerUserAccess allows, passes both; a role allowed only under a Condition
gets attach's warning and the doctor's warning; a role without the permission
gets the warning and a failure; a role that may write but not read the source
snapshots gets the warning and a doctor's warning (its data still arrives).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from lambdacov import conventions
from tests.support.envelope import result_of
from tests.support.lambda_fleet import (
    clients,
    create_function,
    make_role,
    publish_stand_in_layer,
    run_cli,
)

REGION = "us-west-2"
POWER_USER = {
    "Effect": "Allow",
    "NotAction": ["iam:*", "organizations:*", "account:*"],
    "Resource": "*",
}
SECURE = {"Bool": {"aws:SecureTransport": "true"}}
ROLE_CODES = ("role.put-object", "role.find-sources", "role.kms")
# Each scenario: the role's statements, and the doctor's status for each of ROLE_CODES.
SCENARIOS: dict[str, tuple[list[dict[str, Any]], tuple[str, str, str]]] = {
    "power-user": ([POWER_USER], ("ok", "ok", "ok")),
    "conditional": (
        [
            {"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": "*", "Condition": SECURE},
        ],
        ("warn", "warn", "warn"),
    ),
    "no-access": (
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        ("fail", "ok", "fail"),
    ),
    "write-only": (
        [{"Effect": "Allow", "Action": ["s3:PutObject", "kms:*"], "Resource": "*"}],
        ("ok", "warn", "ok"),
    ),
}


def cli(capsys: pytest.CaptureFixture[str], endpoint: str, *argv: str) -> tuple[int, str, str]:
    code, out, err = run_cli(capsys, *argv, "--endpoint-url", endpoint, "--region", REGION)
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_attach_warns_exactly_when_the_doctor_does_not_pass_the_role(
    moto_endpoint: str, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    statements, expected = SCENARIOS[scenario]
    tag = uuid.uuid4().hex[:8]
    lam, iam = clients(moto_endpoint, REGION)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = f"agree-{tag}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    alias = f"alias/agree-{tag}"
    kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    publish_stand_in_layer(lam, conventions.layer_name("3.12", "x86_64"))

    role_name = f"{scenario}-{tag}"
    role = make_role(iam, role_name)
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})
    if scenario == "power-user":
        # As AWS's managed PowerUserAccess: an attached managed policy, not an inline one.
        arn = iam.create_policy(PolicyName=f"PowerUser-{tag}", PolicyDocument=document)
        iam.attach_role_policy(RoleName=role_name, PolicyArn=arn["Policy"]["Arn"])
    else:
        iam.put_role_policy(RoleName=role_name, PolicyName="access", PolicyDocument=document)
    name = f"agree-{scenario}-{tag}"
    create_function(lam, role, name)

    args = (name, "--bucket", bucket, "--kms-key-id", alias)
    code, out, err = cli(capsys, moto_endpoint, "attach", *args, "--json")
    assert code == 0, err
    (result,) = result_of(out, "attach")["functions"]
    assert result["status"] == "changed"
    code, human, err = cli(capsys, moto_endpoint, "attach", *args)
    assert code == 0, err
    warned = "cannot deliver coverage" in " ".join(human.split())  # the table may wrap
    if set(expected) == {"ok"}:
        assert result["missing_policy"] is None, result
        assert "lacks the coverage policy" not in result["detail"]
        assert not warned, human
    else:
        assert result["missing_policy"] is not None, result
        assert "lacks the coverage policy" in result["detail"]
        assert warned, human

    code, out, err = cli(capsys, moto_endpoint, "doctor", name, "--json")
    assert "Traceback" not in err
    checks = {check["code"]: check for check in result_of(out)["checks"] if check["target"] == name}
    found = {code: checks[code]["status"] for code in ROLE_CODES}
    assert found == dict(zip(ROLE_CODES, expected, strict=True)), checks
    assert checks["role.put-object"]["data"]["method"] == "estimated"
    assert checks["role.find-sources"]["data"]["method"] == "estimated"
