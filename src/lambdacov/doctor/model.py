"""What a doctor check returns, and the stable codes it may carry.

A :class:`Check` is a frozen value: a stable ``code`` (scripts match on it),
a status, a one-line detail, and a hint naming the fix. The CLI renders a
list of them; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lambdacov.errors import AwsError, ExitCode

Status = Literal["ok", "warn", "fail", "skipped"]

#: Areas in the order they are shown, with their titles.
AREAS: dict[str, str] = {
    "aws": "AWS access",
    "config": "Configuration",
    "function": "Function",
    "bucket": "Bucket",
    "role": "Role permissions",
    "delivery": "Recent delivery",
    "invoke": "Health check invocation",
}

#: Every code a check may carry, with what it verifies (docs/doctor.md lists them; a test agrees).
CODES: dict[str, str] = {
    "aws.credentials": "credentials work: sts:GetCallerIdentity answers",
    "aws.region": "a region is resolved (--region, AWS_REGION or the profile)",
    "config.environment": "the function's variables pass CoverageConfig validation",
    "config.patterns": "include/exclude patterns can match files under the task root",
    "function.exists": "the function exists and its configuration can be read",
    "function.runtime": "the runtime is a Python version lambdacov supports",
    "function.layer": "exactly one lambdacov layer is attached, for the function's Python and arch",
    "function.layer-current": "the attached layer is the newest version of its lambdacov layer",
    "function.image": "a container image function's image carries lambdacov's runtime (--invoke)",
    "function.wiring": "zero-code instrumentation is wired: exec wrapper or handler redirect",
    "function.resources": "memory and timeout leave room for coverage and its upload",
    "function.memory": "the peak Max Memory Used of recent REPORT lines leaves room for the layer",
    "function.vpc": "a function in a VPC has a route to S3 (gateway endpoint or NAT)",
    "bucket.exists": "the bucket exists and is reachable (NoSuchBucket / 404 / 403 told apart)",
    "bucket.region": "the bucket is in the function's region",
    "bucket.probe": "an object can be written, read and deleted under the prefix",
    "bucket.encryption": "the bucket's default encryption (reported)",
    "bucket.public-access": "the bucket blocks public access",
    "bucket.policy": "the bucket policy does not deny s3:PutObject under the prefix",
    "role.put-object": "the function's role may s3:PutObject under the prefix",
    "role.find-sources": "the function's role may s3:GetObject under PREFIX/sources/ (HEAD)",
    "role.kms": "the function's role may use COVERAGE_KMS_KEY_ID (kms:GenerateDataKey)",
    "delivery.recent": "the newest coverage object of the function and its age",
    "delivery.logs": "no lambdacov errors in the function's logs during --since",
    "delivery.metrics": "Invocations / Errors / Duration during --since",
    "invoke.health": 'the function answers {"action": "health_check"} with a healthy document',
}


@dataclass(frozen=True)
class Check:
    """The outcome of one check: a stable code, a status, a detail and a hint."""

    code: str
    status: Status
    detail: str
    hint: str = ""
    target: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def area(self) -> str:
        """The area the code belongs to (``bucket`` for ``bucket.probe``)."""
        return self.code.split(".", 1)[0]

    def for_target(self, target: str) -> Check:
        """The same check, about ``target`` (a function, or ``s3://bucket/prefix``)."""
        return replace(self, target=target)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        doc: dict[str, Any] = {
            "code": self.code,
            "area": self.area,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
            "target": self.target,
        }
        if self.data:
            doc["data"] = dict(self.data)
        return doc


def ok(code: str, detail: str, **data: Any) -> Check:
    """A passed check."""
    return Check(code, "ok", detail, data=data)


def warn(code: str, detail: str, hint: str = "", **data: Any) -> Check:
    """A check that passed with a caveat worth acting on."""
    return Check(code, "warn", detail, hint, data=data)


def fail(code: str, detail: str, hint: str = "", **data: Any) -> Check:
    """A failed check: coverage will not be delivered until it is fixed."""
    return Check(code, "fail", detail, hint, data=data)


def skipped(code: str, reason: str, hint: str = "") -> Check:
    """A check that did not run, and why."""
    return Check(code, "skipped", reason, hint)


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one doctor run, with who asked and where."""

    checks: tuple[Check, ...]
    region: str | None = None
    identity: str | None = None
    targets: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        """False when AWS could not be reached at all (no credentials, no endpoint)."""
        return not any(c.code == "aws.credentials" and c.status == "fail" for c in self.checks)

    def unreachable_error(self) -> AwsError | None:
        """Why AWS could not be reached, as the error the CLI reports (None when it was)."""
        for check in self.checks:
            if check.code == "aws.credentials" and check.status == "fail":
                slug = str(check.data.get("slug", "unreachable"))
                return AwsError(check.detail, check.hint, slug=slug)
        return None

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return any(check.status == "fail" for check in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        """3 when AWS was unreachable, 1 when a check failed, else 0."""
        if not self.reachable:
            return ExitCode.AWS
        return ExitCode.CHECK_FAILED if self.failed else ExitCode.OK

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        tally = {"ok": 0, "warn": 0, "fail": 0, "skipped": 0}
        for check in self.checks:
            tally[check.status] += 1
        return tally

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "ok": not self.failed,
            "exit_code": int(self.exit_code),
            "region": self.region,
            "identity": self.identity,
            "targets": list(self.targets),
            "counts": self.counts(),
            "checks": [check.to_dict() for check in self.checks],
        }
