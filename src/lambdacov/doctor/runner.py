"""Run every check for the selected functions (and/or a bucket) and collect a report.

The runner never raises for a check: a check that cannot run is reported as
skipped with the reason, and checks that depend on a failed one are skipped
with a reason naming it. Only a usage error (no region, a bad profile)
leaves as an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from coverage_wrapper.models import CoverageConfig
from lambdacov.attach.selection import Selection
from lambdacov.aws import Clients, translating
from lambdacov.cloudwatch import logs
from lambdacov.doctor import (
    activity,
    bucket,
    configuration,
    function,
    health,
    memory,
    permissions,
)
from lambdacov.doctor.clients import guard
from lambdacov.doctor.identity import check_credentials, check_region
from lambdacov.doctor.model import AREAS, CODES, Check, DoctorReport, skipped
from lambdacov.doctor.selection import doctor_targets, function_region

_BUCKET_CODES = tuple(code for code in CODES if code.startswith("bucket."))


@dataclass(frozen=True)
class DoctorRequest:
    """What to check and how far back to look.

    ``selection`` chooses the functions as for attach (None: no function);
    ``region`` is the one the clients default to.
    """

    selection: Selection | None = None
    region: str | None = None
    since: timedelta = timedelta(hours=1)
    invoke: bool = False
    bucket: str | None = None
    prefix: str = "coverage/"
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _skip(codes: Iterable[str], reason: str) -> list[Check]:
    return [skipped(code, reason) for code in codes]


def _ordered(checks: list[Check]) -> list[Check]:
    order = {area: index for index, area in enumerate(AREAS)}
    return sorted(checks, key=lambda check: order.get(check.area, len(order)))


@dataclass(frozen=True)
class _BucketUse:
    """A bucket as a function (or ``--bucket``) uses it: everything the bucket.* checks read."""

    name: str
    prefix: str
    region: str
    kms: str | None = None
    in_vpc: bool = False
    role_arn: str | None = None


class _Run:
    """One doctor run: clients, and bucket results shared between functions."""

    def __init__(self, clients: Clients, request: DoctorRequest, account: str) -> None:
        self.clients = clients
        self.request = request
        self.account = account
        self.now = request.now()
        self._buckets: dict[_BucketUse, tuple[list[Check], bool]] = {}

    def bucket_checks(self, use: _BucketUse) -> tuple[list[Check], bool]:
        """The bucket.* checks (once per use of a bucket) and whether the bucket exists."""
        if use not in self._buckets:
            self._buckets[use] = self._bucket_checks(use)
        return self._buckets[use]

    def _bucket_checks(self, use: _BucketUse) -> tuple[list[Check], bool]:
        name, prefix, region = use.name, use.prefix, use.region
        s3 = self.clients.get("s3", region)
        found: dict[str, str | None] = {}

        def exists() -> Check:
            check, found["region"] = bucket.check_exists(s3, name, region)
            return check

        first = guard("bucket.exists", exists)
        if first.status in {"fail", "skipped"}:
            reason = f"the bucket cannot be used (bucket.exists: {first.status})"
            return [first, *_skip(_BUCKET_CODES[1:], reason)], False

        def where() -> Check:
            where_now = found.get("region") or bucket.bucket_region(s3, name)
            found["region"] = where_now
            return bucket.check_region(name, where_now, region, in_vpc=use.in_vpc)

        checks = [first, guard("bucket.region", where)]
        local = self.clients.get("s3", found.get("region") or region)
        checks += [
            guard("bucket.probe", lambda: bucket.check_probe(local, name, prefix, use.kms)),
            guard("bucket.encryption", lambda: bucket.check_encryption(local, name)),
            guard("bucket.public-access", lambda: bucket.check_public_access(local, name)),
            guard("bucket.policy", lambda: bucket.check_policy(local, name, prefix, use.role_arn)),
        ]
        return checks, True

    def function_checks(self, name: str) -> list[Check]:
        """Every per-function check, in order, with dependants skipped when a check fails."""
        region = function_region(name, self.request.region or "")
        lam = self.clients.get("lambda", region)
        state: dict[str, Any] = {}

        def exists() -> Check:
            check, state["config"] = function.check_exists(lam, name)
            return check

        checks = [guard("function.exists", exists)]
        config: dict[str, Any] | None = state.get("config")
        if config is None:
            rest = [
                code for code in CODES if not code.startswith("aws.") and code != "function.exists"
            ]
            return checks + _skip(rest, "the function could not be read (function.exists)")
        env = (config.get("Environment") or {}).get("Variables") or {}
        env_check, coverage = configuration.check_environment(env)
        checks += [env_check, function.check_runtime(config)]
        checks.append(
            configuration.check_patterns(coverage)
            if coverage
            else skipped("config.patterns", "no valid configuration (config.environment)")
        )
        layer_check, layer_arn = function.check_layer(config)
        checks.append(layer_check)
        checks.append(
            guard("function.layer-current", lambda: function.check_layer_current(lam, layer_arn))
            if layer_arn
            else skipped(
                "function.layer-current",
                "container image: layers do not apply"
                if function.is_image(config)
                else "no lambdacov layer attached (function.layer)",
            )
        )
        checks += [function.check_wiring(config), function.check_resources(config, coverage)]
        group = logs.log_group_of(config, name)
        logs_client = self.clients.get("logs", region)
        since = self.request.since
        checks.append(
            guard(
                "function.memory",
                lambda: memory.check_memory(logs_client, group, config, since, self.now),
            )
        )
        ec2 = self.clients.get("ec2", region)
        checks.append(guard("function.vpc", lambda: function.check_vpc(ec2, config, region)))
        checks += self._delivery_checks(name, region, config, coverage, group)
        return checks

    def _delivery_checks(
        self,
        name: str,
        region: str,
        config: dict[str, Any],
        coverage: CoverageConfig | None,
        group: str,
    ) -> list[Check]:
        role_arn = str(config.get("Role", ""))
        function_name = str(config.get("FunctionName", name))
        since = self.request.since
        checks: list[Check] = []
        usable = False
        if coverage is None:
            reason = "no valid COVERAGE_S3_BUCKET (config.environment)"
            checks += _skip(
                [
                    *_BUCKET_CODES,
                    "role.put-object",
                    "role.find-sources",
                    "role.kms",
                    "delivery.recent",
                ],
                reason,
            )
        else:
            in_vpc = bool((config.get("VpcConfig") or {}).get("SubnetIds"))
            found, usable = self.bucket_checks(
                _BucketUse(
                    coverage.s3_bucket,
                    coverage.s3_prefix,
                    region,
                    kms=coverage.kms_key_id,
                    in_vpc=in_vpc,
                    role_arn=role_arn,
                )
            )
            checks += found
            iam = self.clients.get("iam")
            checks.append(
                guard(
                    "role.put-object",
                    lambda: permissions.check_put_object(
                        iam, role_arn, coverage.s3_bucket, coverage.s3_prefix
                    ),
                )
            )
            checks.append(
                guard(
                    "role.find-sources",
                    lambda: permissions.check_find_sources(
                        iam, role_arn, coverage.s3_bucket, coverage.s3_prefix
                    ),
                )
                if coverage.upload_sources
                else skipped("role.find-sources", "COVERAGE_UPLOAD_SOURCES=false")
            )
            if coverage.kms_key_id:
                key_id, function_arn = coverage.kms_key_id, str(config.get("FunctionArn", ""))
                checks.append(
                    guard(
                        "role.kms",
                        lambda: permissions.check_kms(iam, role_arn, key_id, function_arn),
                    )
                )
            else:
                checks.append(skipped("role.kms", "COVERAGE_KMS_KEY_ID is not set"))
            s3 = self.clients.get("s3", region)
            checks.append(
                guard(
                    "delivery.recent",
                    lambda: activity.check_recent(
                        s3,
                        coverage.s3_bucket,
                        coverage.s3_prefix,
                        function_name,
                        since=since,
                        now=self.now,
                    ),
                )
                if usable
                else skipped("delivery.recent", "the bucket cannot be used (bucket.exists)")
            )
        logs_client = self.clients.get("logs", region)
        checks.append(
            guard("delivery.logs", lambda: activity.check_logs(logs_client, group, since, self.now))
        )
        cloudwatch = self.clients.get("cloudwatch", region)
        timeout = int(config.get("Timeout") or 3)
        checks.append(
            guard(
                "delivery.metrics",
                lambda: activity.check_metrics(cloudwatch, function_name, timeout, since, self.now),
            )
        )
        checks += self._invoke_checks(name, region, config)
        return checks

    def _invoke_checks(self, name: str, region: str, config: dict[str, Any]) -> list[Check]:
        """invoke.health and function.image: one invocation answers both."""
        image = function.is_image(config)
        if not self.request.invoke:
            return [
                skipped("invoke.health", "not requested (pass --invoke)"),
                skipped(
                    "function.image",
                    "not checked: pass --invoke to ask the function whether its image carries "
                    "lambdacov's runtime",
                    function.IMAGE_FIX,
                )
                if image
                else skipped("function.image", "a zip function: the layer brings the runtime"),
            ]
        # The answer can take as long as the function may run, then some.
        timeout = int(config.get("Timeout") or 3)
        invoker = self.clients.get(
            "lambda", region, read_timeout=timeout + health.INVOKE_READ_MARGIN
        )
        answers: list[health.HealthAnswer] = []

        def invoked() -> Check:
            answers.append(health.invoke_health(invoker, name))
            return health.judge_health(answers[0])

        checks = [guard("invoke.health", invoked)]
        if not image:
            checks.append(skipped("function.image", "a zip function: the layer brings the runtime"))
        elif not answers:
            checks.append(
                skipped("function.image", "the invocation did not answer (invoke.health)")
            )
        else:
            wired = function.check_wiring(config).status == "ok"
            checks.append(health.judge_image(answers[0], wired=wired, fix=function.IMAGE_FIX))
        return checks


def run_doctor(clients: Clients, request: DoctorRequest) -> DoctorReport:
    """Check AWS access, then each selected function and/or bucket; never raises for a check."""
    region_check = check_region(request.region)
    if region_check.status == "fail":
        return DoctorReport((region_check,), request.region)
    credentials, identity = check_credentials(clients.get("sts"))
    head = [credentials, region_check]
    if credentials.status == "fail":
        return DoctorReport(tuple(head), request.region, identity)
    account = (identity or "").split(":")[4] if (identity or "").count(":") >= 5 else ""
    run = _Run(clients, request, account)
    with translating("list the functions for --pattern/--tag/--all"):
        names = doctor_targets(request.selection, clients.lambda_in)
    checks = list(head)
    targets: list[str] = []
    for name in names:
        checks += [check.for_target(name) for check in _ordered(run.function_checks(name))]
        targets.append(name)
    if request.bucket:
        target = f"s3://{request.bucket}/{request.prefix}"
        found, _ = run.bucket_checks(
            _BucketUse(request.bucket, request.prefix, request.region or "")
        )
        checks += [check.for_target(target) for check in found]
        targets.append(target)
    return DoctorReport(tuple(checks), request.region, identity, tuple(targets))
