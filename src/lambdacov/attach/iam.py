"""The least-privilege policy a function's role needs to deliver coverage, and checks of it.

The runtime writes objects under the configured prefix, and before uploading a
source snapshot asks (HEAD) whether ``PREFIX/sources/<sha256>`` is there already.
So the policy allows ``s3:PutObject`` on ``arn:aws:s3:::BUCKET/PREFIX*``,
``s3:GetObject`` (what a HEAD needs) on ``arn:aws:s3:::BUCKET/PREFIXsources/*``
only, and, when objects are encrypted with a KMS key, ``kms:GenerateDataKey`` on
that key. Nothing else.

:func:`role_allows` reads the role's inline and attached policies and asks
:mod:`lambdacov.policy`, the evaluator the doctor uses too, whether they grant
every permission of that policy. Only a grant that does not rest on a
Condition counts, so a role whose access depends on one is reported as
lacking the policy (the doctor warns about the same role).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coverage_wrapper.identity import SOURCES
from lambdacov import policy
from lambdacov.aws import translating

POLICY_VERSION = "2012-10-17"


@dataclass(frozen=True)
class PolicyGrant:
    """An inline policy to put on a role: ``--grant``."""

    role_name: str
    policy_name: str
    document: Mapping[str, Any] = field(compare=False)

    @property
    def document_json(self) -> str:
        """The policy document as IAM stores it."""
        return json.dumps(self.document, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FunctionArn:
    """The parts of a Lambda function ARN that a policy needs."""

    partition: str
    region: str
    account: str

    @classmethod
    def parse(cls, arn: str) -> FunctionArn:
        """Split ``arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME``."""
        parts = arn.split(":")
        if len(parts) < 7 or parts[0] != "arn":
            raise ValueError(f"not a function ARN: {arn!r}")
        return cls(parts[1], parts[3], parts[4])


def coverage_policy(
    bucket: str, prefix: str, kms_key_id: str | None, function_arn: str
) -> dict[str, Any]:
    """The policy document that lets a function deliver its coverage, and nothing more.

    ``prefix`` is the normalised key prefix (``coverage/``). A KMS key given
    by ARN or by id is named exactly; a key given by alias can only be named
    as "any key of this account and region", because IAM authorises
    GenerateDataKey on the key, not on its alias (pass the key's ARN for the
    tightest policy).
    """
    where = FunctionArn.parse(function_arn)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "LambdacovPutCoverage",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": f"arn:{where.partition}:s3:::{bucket}/{prefix}*",
        },
        {
            # Without it a HEAD is refused, and every environment uploads each source again.
            "Sid": "LambdacovFindSources",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:{where.partition}:s3:::{bucket}/{prefix}{SOURCES}*",
        },
    ]
    if kms_key_id:
        statements.append(
            {
                "Sid": "LambdacovEncryptCoverage",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": kms_key_resource(kms_key_id, where),
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def kms_key_resource(kms_key_id: str, where: FunctionArn) -> str:
    """The ARN that names a KMS key given as an ARN, an id or an alias.

    ``where`` supplies the partition, region and account of a bare id or alias
    (the function's). IAM authorises GenerateDataKey on the key, never on an
    alias, so an alias names every key of its account and region (``key/*``):
    what ``--grant`` allows and what the doctor checks.
    """
    keys = f"arn:{where.partition}:kms:{where.region}:{where.account}:key/"
    if kms_key_id.startswith("arn:"):
        if ":alias/" not in kms_key_id:
            return kms_key_id
        parts = kms_key_id.split(":")
        return f"arn:{parts[1]}:kms:{parts[3]}:{parts[4]}:key/*"
    if kms_key_id.startswith("alias/"):
        return f"{keys}*"
    return f"{keys}{kms_key_id}"


def role_name(role_arn: str) -> str:
    """The role's name from its ARN (the last part of a path like ``service-role/x``)."""
    return role_arn.rsplit("/", 1)[-1]


def policy_name(function_name: str) -> str:
    """The inline policy's name for a function: one per function, so detach removes only its own."""
    return f"lambdacov-{function_name}"[:128]


def required_permissions(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource) pairs a policy document grants."""
    pairs: list[tuple[str, str]] = []
    for statement in policy.statements(document):
        for action in _as_list(statement.get("Action")):
            pairs.extend((action, resource) for resource in _as_list(statement.get("Resource")))
    return pairs


def role_policies(iam: Any, role: str) -> list[Mapping[str, Any] | str]:
    """Every identity policy document of the role ``role`` (a name): attached and inline.

    botocore errors leave as they are, so callers can tell a missing role
    (``NoSuchEntity``) from other failures.
    """
    documents: list[Mapping[str, Any] | str] = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        for attached in page.get("AttachedPolicies", []):
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            found = iam.get_policy_version(PolicyArn=arn, VersionId=version)
            documents.append(found["PolicyVersion"]["Document"])
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        documents.extend(
            iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in page.get("PolicyNames", [])
        )
    return documents


def role_allows(iam: Any, role: str, document: Mapping[str, Any]) -> bool:
    """Whether the role's own policies already grant everything ``document`` grants.

    Granted means allowed without depending on a Condition: see :mod:`lambdacov.policy`.
    """
    with translating("read the role's policies", role):
        documents = role_policies(iam, role)
    return all(
        policy.evaluate(documents, action, resource).granted
        for action, resource in required_permissions(document)
    )


def put_grant(iam: Any, grant: PolicyGrant) -> None:
    """Put the inline policy on the role (idempotent: IAM replaces a policy of that name)."""
    with translating("put the coverage policy on the role", grant.role_name):
        iam.put_role_policy(
            RoleName=grant.role_name,
            PolicyName=grant.policy_name,
            PolicyDocument=grant.document_json,
        )


def delete_grant(iam: Any, role: str, name: str) -> None:
    """Delete the inline policy --grant put on the role; already gone is fine."""
    with (
        translating("delete the coverage policy from the role", role),
        contextlib.suppress(iam.exceptions.NoSuchEntityException),
    ):
        iam.delete_role_policy(RoleName=role, PolicyName=name)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
