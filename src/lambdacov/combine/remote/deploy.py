"""The combiner function: plan it (pure), then create or update it and its role.

The function's code is a one-file zip; its handler,
``coverage_wrapper.shard.handler``, comes from the lambdacov layer.
Without ``--role-arn`` it gets its own role whose inline policy is least
privilege for what a shard does:

- ``s3:ListBucket`` on the bucket, only for keys under the data prefix
  (an ``s3:prefix`` condition);
- ``s3:GetObject`` under the data prefix, and under the partials prefix
  (a reduce step reads partials);
- ``s3:PutObject`` under the partials prefix only;
- writing its own log group's streams.

Its environment names the bucket and prefixes, and the handler refuses any
event outside them (a second guard, should the role be wider).
"""

from __future__ import annotations

import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_wrapper.shard import BUCKET_VAR, OUTPUT_PREFIX_VAR, PREFIX_VAR
from lambdacov.attach.iam import POLICY_VERSION
from lambdacov.aws import Retrier, error_code, translating
from lambdacov.combine.remote.invokers import COMBINER_HANDLER
from lambdacov.layer import build_layer
from lambdacov.layer.publish import LayerArtifact, publish_layer
from lambdacov.layer.zipfile_repro import ZipEntry, write_reproducible_zip

DEFAULT_FUNCTION_NAME = "lambdacov-combiner"
DEFAULT_MEMORY_MB = 2048  # ~1.2 vCPU: reading data files is CPU-bound
DEFAULT_TIMEOUT_SECONDS = 900  # Lambda's maximum
ROLE_POLICY_NAME = "lambdacov-combiner"
TRUST_POLICY = {
    "Version": POLICY_VERSION,
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
#: The layer a dry run's plan names when no --layer-arn is given (one is published on deploy).
LAYER_PUBLISHED_ON_DEPLOY = "(published on deploy)"
_README = (
    b"lambdacov combiner: the handler (coverage_wrapper.shard.handler) is in the\n"
    b"lambdacov layer. Deployed by `lambdacov combiner deploy`.\n"
)


@dataclass(frozen=True)
class CombinerSettings:
    """What the user asked for."""

    bucket: str
    prefix: str
    output_prefix: str
    layer_arn: str
    python: str = "3.12"
    arch: str = "x86_64"
    function_name: str = DEFAULT_FUNCTION_NAME
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    role_arn: str | None = None


@dataclass(frozen=True)
class CombinerPlan:
    """The function's configuration and, when lambdacov owns the role, the role's policy."""

    settings: CombinerSettings
    role_name: str | None  # None: the caller's --role-arn is used as is
    policy: dict[str, Any] | None
    configuration: dict[str, Any] = field(compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for --dry-run and --json."""
        return {
            "function_name": self.settings.function_name,
            "role_name": self.role_name,
            "role_arn": self.settings.role_arn,
            "policy": self.policy,
            "configuration": self.configuration,
        }


@dataclass(frozen=True)
class DeployedCombiner:
    """What apply did."""

    function_name: str
    function_arn: str
    role_arn: str
    created: bool  # False: an existing function was updated
    layer_arn: str


@dataclass(frozen=True)
class CombinerDeployment:
    """What ``combiner deploy`` planned and, unless it was a dry run, did."""

    plan: CombinerPlan
    deployed: DeployedCombiner | None  # None: a dry run, nothing changed


def partition_of(region: str) -> str:
    """The AWS partition of a region (policy ARNs differ in China and GovCloud)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def combiner_policy(
    settings: CombinerSettings, *, region: str, account: str, partition: str = "aws"
) -> dict[str, Any]:
    """The least-privilege inline policy of the combiner's role (see the module docstring)."""
    bucket = f"arn:{partition}:s3:::{settings.bucket}"
    partials = f"{settings.output_prefix}partials/"
    log_group = (
        f"arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/{settings.function_name}"
    )
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "ListCoveragePrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket,
                "Condition": {"StringLike": {"s3:prefix": [f"{settings.prefix}*"]}},
            },
            {
                "Sid": "ReadCoverageAndPartials",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [f"{bucket}/{settings.prefix}*", f"{bucket}/{partials}*"],
            },
            {
                "Sid": "WritePartials",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"{bucket}/{partials}*",
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group, f"{log_group}:log-stream:*"],
            },
        ],
    }


def role_name_for(function_name: str) -> str:
    """The role lambdacov creates for a combiner function."""
    return f"{function_name}-role"[:64]


def plan_combiner(
    settings: CombinerSettings, *, region: str, account: str, partition: str = "aws"
) -> CombinerPlan:
    """The configuration to create or update, and the role's policy (pure)."""
    configuration: dict[str, Any] = {
        "Runtime": f"python{settings.python}",
        "Handler": COMBINER_HANDLER,
        "Layers": [settings.layer_arn],
        "MemorySize": settings.memory_mb,
        "Timeout": settings.timeout,
        "Environment": {
            "Variables": {
                BUCKET_VAR: settings.bucket,
                PREFIX_VAR: settings.prefix,
                OUTPUT_PREFIX_VAR: f"{settings.output_prefix}partials/",
            }
        },
        "Description": "lambdacov: combines coverage objects, one shard per invocation",
    }
    if settings.role_arn:
        return CombinerPlan(settings, None, None, configuration)
    return CombinerPlan(
        settings,
        role_name_for(settings.function_name),
        combiner_policy(settings, region=region, account=account, partition=partition),
        configuration,
    )


def code_zip() -> bytes:
    """The function's code package: one text file (the handler is in the layer)."""
    buffer = io.BytesIO()
    write_reproducible_zip(buffer, [ZipEntry("README.txt", _README)])
    return buffer.getvalue()


def _ensure_role(iam: Any, plan: CombinerPlan) -> tuple[str, bool]:
    """The role's ARN (created if missing, policy always put); and whether it was created."""
    assert plan.role_name is not None and plan.policy is not None
    created = False
    with translating("iam:CreateRole", plan.role_name):
        try:
            arn = str(iam.get_role(RoleName=plan.role_name)["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            arn = str(
                iam.create_role(
                    RoleName=plan.role_name,
                    AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                    Description="lambdacov combiner: reads coverage objects, writes partials",
                )["Role"]["Arn"]
            )
            created = True
        iam.put_role_policy(
            RoleName=plan.role_name,
            PolicyName=ROLE_POLICY_NAME,
            PolicyDocument=json.dumps(plan.policy, sort_keys=True),
        )
    return arn, created


def apply_combiner(
    plan: CombinerPlan,
    lambda_client: Any,
    iam: Any,
    *,
    retrier: Retrier | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployedCombiner:
    """Create or update the role and the function as planned."""
    retrier = retrier or Retrier(sleep=sleep)
    settings = plan.settings
    role_arn, fresh_role = (
        (settings.role_arn, False) if settings.role_arn else _ensure_role(iam, plan)
    )
    name = settings.function_name
    config = {**plan.configuration, "Role": role_arn}
    with translating("deploy the combiner function", name):
        try:
            lambda_client.get_function(FunctionName=name)
            exists = True
        except lambda_client.exceptions.ResourceNotFoundException:
            exists = False
        if exists:
            retrier.call(
                lambda: lambda_client.update_function_code(FunctionName=name, ZipFile=code_zip())
            )
            _wait(lambda_client, name)
            response = retrier.call(
                lambda: lambda_client.update_function_configuration(FunctionName=name, **config)
            )
        else:
            response = _create(
                lambda_client, name, config, arch=settings.arch, fresh_role=fresh_role, sleep=sleep
            )
        _wait(lambda_client, name)
    return DeployedCombiner(
        function_name=name,
        function_arn=str(response["FunctionArn"]),
        role_arn=role_arn,
        created=not exists,
        layer_arn=settings.layer_arn,
    )


def _create(
    client: Any,
    name: str,
    config: dict[str, Any],
    *,
    arch: str,
    fresh_role: bool,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    # A new role takes some seconds to become assumable by Lambda: IAM is eventually consistent.
    for attempt in range(12):
        try:
            response: dict[str, Any] = client.create_function(
                FunctionName=name,
                Code={"ZipFile": code_zip()},
                Architectures=[arch],
                PackageType="Zip",
                **config,
            )
        except Exception as error:
            assumable = "cannot be assumed" in str(error) or "role" in str(error).lower()
            if not (
                fresh_role
                and error_code(error) == "InvalidParameterValueException"
                and assumable
                and attempt < 11
            ):
                raise
            sleep(2.0 + attempt)
        else:
            return response
    raise AssertionError("unreachable")  # pragma: no cover


def _wait(client: Any, name: str) -> None:
    """Wait until the function may be updated or invoked again."""
    client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
    )


def caller_account(sts: Any) -> str:
    """The account of the caller's credentials (the role's policy names its log group by ARN)."""
    with translating("sts:GetCallerIdentity"):
        return str(sts.get_caller_identity()["Account"])


def combiner_layer(
    lambda_client: Any, *, layer_zip: Path | None, python: str, arch: str, retrier: Retrier
) -> str:
    """Publish the lambdacov layer the combiner runs and return its version's ARN.

    The zip ``layer_zip`` (from ``lambdacov build-layer``) when given, else a
    layer built now for ``python`` and ``arch``. An unchanged layer is not
    published again: its newest version is reused.
    """
    if layer_zip is not None:
        return publish_layer(lambda_client, LayerArtifact.from_zip(layer_zip), retrier=retrier).arn
    with tempfile.TemporaryDirectory(prefix="lambdacov-combiner-layer-") as scratch:
        build = build_layer(python, arch, Path(scratch) / "layer.zip")
        return publish_layer(lambda_client, LayerArtifact.from_build(build), retrier=retrier).arn


def deploy_combiner(
    settings: CombinerSettings,
    lambda_client: Any,
    iam: Any,
    sts: Any,
    *,
    layer_zip: Path | None = None,
    dry_run: bool = False,
    retrier: Retrier | None = None,
) -> CombinerDeployment:
    """Plan the combiner in the Lambda client's region and the caller's account, then deploy it.

    An empty ``settings.layer_arn`` means "publish one": the layer from
    ``layer_zip``, else one built for the settings' Python and architecture
    (:func:`combiner_layer`). A dry run only plans: it publishes nothing, and
    its plan names :data:`LAYER_PUBLISHED_ON_DEPLOY` for a layer to publish.
    """
    retrier = retrier or Retrier()
    region = str(lambda_client.meta.region_name)
    account = caller_account(sts)
    partition = partition_of(region)
    if dry_run:
        pending = dataclasses.replace(
            settings, layer_arn=settings.layer_arn or LAYER_PUBLISHED_ON_DEPLOY
        )
        plan = plan_combiner(pending, region=region, account=account, partition=partition)
        return CombinerDeployment(plan, None)
    layer_arn = settings.layer_arn or combiner_layer(
        lambda_client,
        layer_zip=layer_zip,
        python=settings.python,
        arch=settings.arch,
        retrier=retrier,
    )
    plan = plan_combiner(
        dataclasses.replace(settings, layer_arn=layer_arn),
        region=region,
        account=account,
        partition=partition,
    )
    return CombinerDeployment(plan, apply_combiner(plan, lambda_client, iam, retrier=retrier))
