"""May the function's role write coverage (and use the KMS key)?

IAM's policy simulator answers exactly; where it is unavailable (no
iam:SimulatePrincipalPolicy for the caller, or an AWS emulator without it)
the role's attached and inline policies are read and evaluated locally, and
the result is labelled "estimated".
"""

from __future__ import annotations

from typing import Any

from lambdacov.aws import error_code
from lambdacov.doctor.clients import first_line
from lambdacov.doctor.model import Check, fail, ok, warn
from lambdacov.doctor.policy import evaluate


def role_name(role_arn: str) -> str:
    """The role's name from its ARN (roles may have a path: role/service-role/name)."""
    return role_arn.rsplit("/", 1)[-1]


def role_policies(iam: Any, role_arn: str) -> list[Any]:
    """Every identity policy document of the role: attached (default versions) and inline."""
    name = role_name(role_arn)
    documents: list[Any] = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for attached in page.get("AttachedPolicies", []):
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)
            documents.append(document["PolicyVersion"]["Document"])
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        documents.extend(
            iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in page.get("PolicyNames", [])
        )
    return documents


def _simulate(iam: Any, role_arn: str, action: str, resource: str) -> str | None:
    """IAM's decision, or None when the simulator cannot be used."""
    try:
        answer = iam.simulate_principal_policy(
            PolicySourceArn=role_arn, ActionNames=[action], ResourceArns=[resource]
        )
    except Exception as error:  # unavailable for any reason: estimate instead
        if error_code(error) in ("NoSuchEntity",):
            raise
        return None
    results = answer.get("EvaluationResults", [])
    return str(results[0]["EvalDecision"]) if results else None


def check_role_action(
    iam: Any, code: str, role_arn: str, action: str, resource: str, *, hint: str, shown: str = ""
) -> Check:
    """Check that ``role_arn`` may ``action`` on ``resource``, simulated or estimated."""
    decision = _simulate(iam, role_arn, action, resource)
    subject = f"{role_name(role_arn)}: {action} on {shown or resource}"
    if decision is not None:
        if decision == "allowed":
            return ok(code, f"{subject}: allowed (IAM policy simulation)", method="simulated")
        return fail(
            code, f"{subject}: {decision} (IAM policy simulation)", hint, method="simulated"
        )
    try:
        documents = role_policies(iam, role_arn)
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return fail(code, f"the role {role_arn} does not exist", "give the function a role")
        raise
    result = evaluate(documents, action, resource)
    how = "estimated from the role's policies"
    data = {"method": "estimated", "statements": list(result.statements)}
    if result.decision == "allowed":
        if result.conditional:
            return warn(code, f"{subject}: allowed under conditions ({how})", "", **data)
        return ok(code, f"{subject}: allowed ({how})", **data)
    verb = "explicitly denied" if result.decision == "denied" else "not allowed"
    return fail(code, f"{subject}: {verb} ({how})", hint, **data)


def check_put_object(iam: Any, role_arn: str, bucket: str, prefix: str) -> Check:
    """May the role write a data file under the prefix?"""
    resource = f"arn:aws:s3:::{bucket}/{prefix}lambdacov-doctor.coverage"
    hint = f"allow s3:PutObject on arn:aws:s3:::{bucket}/{prefix}* for the function's role"
    return check_role_action(
        iam,
        "role.put-object",
        role_arn,
        "s3:PutObject",
        resource,
        hint=hint,
        shown=f"s3://{bucket}/{prefix}*",
    )


def kms_key_arn(key: str, region: str, account: str) -> str:
    """The ARN of a key given as an ARN, a key id or an alias."""
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def check_kms(iam: Any, role_arn: str, key_arn: str) -> Check:
    """May the role create data keys with the configured KMS key (what SSE-KMS puts need)?"""
    hint = f"allow kms:GenerateDataKey on {key_arn} for the function's role"
    return check_role_action(iam, "role.kms", role_arn, "kms:GenerateDataKey", key_arn, hint=hint)


def describe_error(error: BaseException) -> str:
    """``Code: message`` for an AWS error."""
    return f"{error_code(error)}: {first_line(error)}"
