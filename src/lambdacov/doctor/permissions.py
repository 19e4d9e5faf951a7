"""May the function's role write coverage, find its source snapshots, and use the KMS key?

IAM's policy simulator answers exactly; where it is unavailable (no
iam:SimulatePrincipalPolicy for the caller, or an AWS emulator without it)
the role's attached and inline policies are read and evaluated locally, by
the evaluator attach uses too (:mod:`lambdacov.policy`), and the result is
labelled "estimated". An estimate that rests on a Condition is a warning, the
same roles attach reports as lacking the policy.
"""

from __future__ import annotations

from typing import Any

from coverage_wrapper.identity import SOURCES, source_key
from lambdacov.attach.iam import FunctionArn, kms_key_resource, role_name, role_policies
from lambdacov.aws import error_code
from lambdacov.doctor.model import Check, fail, ok, warn
from lambdacov.policy import evaluate


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
        documents = role_policies(iam, role_name(role_arn))
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return fail(code, f"the role {role_arn} does not exist", "give the function a role")
        raise
    result = evaluate(documents, action, resource)
    how = "estimated from the role's policies"
    data = {"method": "estimated", "statements": list(result.statements)}
    if result.granted:
        return ok(code, f"{subject}: allowed ({how})", **data)
    if result.conditional:
        # Unknown conditions decide it: neither a pass nor a failure (attach warns too).
        verb = "allowed" if result.decision == "allowed" else "denied"
        return warn(code, f"{subject}: {verb} under conditions ({how})", hint, **data)
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


def check_find_sources(iam: Any, role_arn: str, bucket: str, prefix: str) -> Check:
    """May the role ask whether a source snapshot is in S3 already (HEAD: s3:GetObject)?

    Without it the data still arrives and the sources too (a HEAD refused is
    answered with a PUT), but every environment uploads each source again: a
    warning, not a failure.
    """
    resource = f"arn:aws:s3:::{bucket}/{source_key(prefix, 'lambdacov-doctor')}"
    hint = (
        f"allow s3:GetObject on arn:aws:s3:::{bucket}/{prefix}{SOURCES}* for the function's"
        " role, or set COVERAGE_UPLOAD_SOURCES=false"
    )
    found = check_role_action(
        iam,
        "role.find-sources",
        role_arn,
        "s3:GetObject",
        resource,
        hint=hint,
        shown=f"s3://{bucket}/{prefix}{SOURCES}*",
    )
    if found.status != "fail" or "method" not in found.data:  # a missing role fails
        return found
    return warn(
        found.code,
        f"{found.detail}: every environment uploads each source file again",
        hint,
        **found.data,
    )


def check_kms(iam: Any, role_arn: str, kms_key_id: str, function_arn: str) -> Check:
    """May the role create data keys with the configured KMS key (what SSE-KMS puts need)?

    The key is named as attach's ``--grant`` names it (an alias: any key of the
    function's account and region), so the two agree on what suffices.
    """
    key_arn = kms_key_resource(kms_key_id, FunctionArn.parse(function_arn))
    hint = f"allow kms:GenerateDataKey on {key_arn} for the function's role"
    return check_role_action(iam, "role.kms", role_arn, "kms:GenerateDataKey", key_arn, hint=hint)
