"""Doctor checks that need no AWS: policy evaluation, health documents, wiring, resources."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from coverage_wrapper import metrics
from coverage_wrapper.health_check import health_check_handler
from lambdacov import conventions
from lambdacov.doctor import CODES, Check, DoctorReport
from lambdacov.doctor.clients import guard
from lambdacov.doctor.function import check_resources, check_wiring
from lambdacov.doctor.health import check_invoke, validate_health_document
from lambdacov.policy import evaluate

ROOT = Path(__file__).resolve().parent.parent.parent
BUCKET_OBJECTS = "arn:aws:s3:::b/coverage/x.coverage"


def allow(action: str, resource: str, **extra: Any) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


def test_policy_allow_deny_and_implicit() -> None:
    assert (
        evaluate(
            [allow("s3:PutObject", "arn:aws:s3:::b/coverage/*")], "s3:PutObject", BUCKET_OBJECTS
        ).decision
        == "allowed"
    )
    assert evaluate([allow("s3:*", "*")], "S3:PUTOBJECT", BUCKET_OBJECTS).decision == "allowed"
    assert (
        evaluate(
            [allow("s3:PutObject", "arn:aws:s3:::b/other/*")], "s3:PutObject", BUCKET_OBJECTS
        ).decision
        == "implicit"
    )
    deny = {
        "Statement": [{"Sid": "NoWrites", "Effect": "Deny", "Action": "s3:Put*", "Resource": "*"}]
    }
    decided = evaluate([allow("*", "*"), json.dumps(deny)], "s3:PutObject", BUCKET_OBJECTS)
    assert decided.decision == "denied" and decided.statements == ("NoWrites",)
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert evaluate([not_action], "s3:PutObject", BUCKET_OBJECTS).decision == "allowed"
    conditional = evaluate(
        [allow("s3:PutObject", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})],
        "s3:PutObject",
        BUCKET_OBJECTS,
    )
    assert conditional.decision == "allowed" and conditional.conditional


def test_bucket_policy_principals() -> None:
    deny_everyone = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::b/*",
            }
        ]
    }
    deny_other = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": "arn:aws:iam::1:role/x"},
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::b/*",
            }
        ]
    }
    role = "arn:aws:iam::1:role/fn"
    assert (
        evaluate([deny_everyone], "s3:PutObject", BUCKET_OBJECTS, principal_arn=role).decision
        == "denied"
    )
    assert (
        evaluate([deny_other], "s3:PutObject", BUCKET_OBJECTS, principal_arn=role).decision
        == "implicit"
    )


def test_the_runtime_health_document_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_S3_BUCKET", "my-coverage-bucket")
    assert validate_health_document(health_check_handler()) == []
    guide = {
        "status": "healthy",
        "coverage_enabled": True,
        "layer_version": "1.0.0",
        "s3_config": {"bucket": "b", "prefix": "coverage/"},
        "timestamp": "2024-01-15T10:30:00Z",
    }
    assert validate_health_document(guide) == []
    assert validate_health_document({"statusCode": 200, "body": "OK"})
    assert validate_health_document("error running docker")


class FakeLambda:
    """The slice of the Lambda client's interface that check_invoke uses."""

    def __init__(self, payload: Any, error: str | None = None) -> None:
        self.payload, self.error = payload, error

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        assert json.loads(kwargs["Payload"]) == {"action": "health_check"}
        body = self.payload if isinstance(self.payload, str) else json.dumps(self.payload)
        answer: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(body.encode())}
        if self.error:
            answer["FunctionError"] = self.error
        return answer


def test_invoke_judges_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_S3_BUCKET", "my-coverage-bucket")
    assert check_invoke(FakeLambda(health_check_handler()), "fn").status in ("ok", "fail")
    # moto answers every invocation with this error: it cannot run code.
    emulator = check_invoke(FakeLambda("error running docker: ...", "Handled"), "fn")
    assert emulator.status == "fail" and "error running docker" in emulator.detail
    plain = check_invoke(FakeLambda({"statusCode": 200}), "fn")
    assert plain.status == "fail" and "health_check_handler" in plain.hint


@pytest.mark.parametrize(
    ("handler", "env", "status"),
    [
        ("app.handler", {conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH}, "ok"),
        (conventions.REDIRECT_HANDLER, {conventions.ORIGINAL_HANDLER_VAR: "app.handler"}, "ok"),
        (conventions.REDIRECT_HANDLER, {}, "fail"),
        (
            conventions.REDIRECT_HANDLER,
            {conventions.ORIGINAL_HANDLER_VAR: conventions.REDIRECT_HANDLER},
            "fail",
        ),
        (
            "app.handler",
            {
                conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH,
                conventions.NEXT_WRAPPER_VAR: conventions.WRAPPER_PATH,
            },
            "fail",
        ),
        ("app.handler", {conventions.EXEC_WRAPPER_VAR: "/opt/other-wrapper"}, "warn"),
        ("app.handler", {}, "warn"),
    ],
)
def test_wiring(handler: str, env: dict[str, str], status: str) -> None:
    check = check_wiring({"Handler": handler, "Environment": {"Variables": env}})
    assert check.status == status, check


def test_resources_thresholds() -> None:
    assert check_resources({"MemorySize": 512, "Timeout": 30}, None).status == "ok"
    small = check_resources({"MemorySize": 128, "Timeout": 3}, None)
    assert small.status == "warn" and "128 MB" in small.detail and "3 s" in small.detail


def test_guard_turns_exceptions_into_skipped_checks() -> None:
    class DeniedError(Exception):
        response = {"Error": {"Code": "AccessDenied", "Message": "no"}}  # noqa: RUF012

    def boom() -> Check:
        raise DeniedError("An error occurred (AccessDenied) when calling the X operation: no")

    assert guard("bucket.policy", boom).status == "skipped"
    assert "not permitted" in guard("bucket.policy", boom).detail
    assert guard("bucket.policy", lambda: 1 / 0).detail.startswith("could not run")  # type: ignore[arg-type,return-value]


def test_report_exit_codes() -> None:
    ok = Check("aws.credentials", "ok", "me")
    assert DoctorReport((ok, Check("function.wiring", "warn", "x"))).exit_code == 0
    assert DoctorReport((ok, Check("bucket.exists", "fail", "x"))).exit_code == 1
    assert DoctorReport((Check("aws.credentials", "fail", "x"),)).exit_code == 3


def test_docs_list_every_code() -> None:
    table = (ROOT / "docs" / "doctor.md").read_text(encoding="utf-8")
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(CODES)


def test_emf_line_is_a_metric_and_a_log_record() -> None:
    stream = io.StringIO()
    metrics.emit_metric(metrics.FAILURE, "fn", cause="NoSuchBucket", stream=stream)
    line = json.loads(stream.getvalue())
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == conventions.METRICS_NAMESPACE == metrics.NAMESPACE
    assert directive["Metrics"] == [{"Name": "CoverageFailure", "Unit": "Count"}]
    assert line["CoverageFailure"] == 1 and line["FunctionName"] == "fn"
    assert line["level"] == "INFO" and line["cause"] == "NoSuchBucket"
