"""Container image functions (PackageType Image): attach, detach and doctor against moto.

moto stores an image function's ImageConfig at CreateFunction without Docker
(it never pulls the image: ECR is stubbed), and these tests never invoke one,
which would need Docker. Two gaps of moto are filled here, each where it
shows: its UpdateFunctionConfiguration drops ImageConfig (the fixture below
applies it, replacing the whole ImageConfig as Lambda does), and it cannot
invoke an image function (botocore's Stubber plays the function's answers).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdacov import conventions
from lambdacov.attach.record import IMAGE_FORMAT_VERSION, decode_tags
from lambdacov.doctor import health
from lambdacov.doctor.function import IMAGE_FIX
from tests.support.envelope import result_of
from tests.support.lambda_fleet import clients, make_role, run_cli
from tests.support.moto_images import apply_image_config_updates

REGION = "eu-north-1"
IMAGE_URI = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/orders:latest"
REDIRECT = [conventions.REDIRECT_HANDLER]


@pytest.fixture(autouse=True)
def lambda_replaces_image_config(monkeypatch: pytest.MonkeyPatch) -> None:
    apply_image_config_updates(monkeypatch)


@pytest.fixture
def aws(moto_endpoint: str) -> tuple[Any, Any]:
    return clients(moto_endpoint, REGION)


@pytest.fixture
def role(aws: tuple[Any, Any]) -> str:
    return make_role(aws[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_image_function(
    lam: Any,
    role: str,
    name: str,
    *,
    image_config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    request: dict[str, Any] = {
        "FunctionName": name,
        "Role": role,
        "PackageType": "Image",
        "Code": {"ImageUri": IMAGE_URI},
        "Architectures": ["arm64"],
    }
    if image_config is not None:
        request["ImageConfig"] = image_config
    if env is not None:
        request["Environment"] = {"Variables": env}
    if tags:
        request["Tags"] = tags
    lam.create_function(**request)


def snapshot(lam: Any, name: str) -> dict[str, Any]:
    """What attach may change on an image function and detach must restore."""
    configuration = lam.get_function_configuration(FunctionName=name)
    return {
        "ImageConfigResponse": configuration.get("ImageConfigResponse"),
        "Layers": configuration.get("Layers") or [],
        "Environment": (configuration.get("Environment") or {}).get("Variables") or {},
        "Tags": lam.list_tags(Resource=configuration["FunctionArn"])["Tags"],
    }


def image_config(lam: Any, name: str) -> dict[str, Any]:
    response = lam.get_function_configuration(FunctionName=name).get("ImageConfigResponse") or {}
    return dict(response.get("ImageConfig") or {})


def cli(capsys: pytest.CaptureFixture[str], endpoint: str, *argv: str) -> tuple[int, str, str]:
    code, out, err = run_cli(capsys, *argv, "--endpoint-url", endpoint, "--region", REGION)
    assert "Traceback" not in err
    return code, out, err


def by_function(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["function"]: item for item in document["functions"]}


def test_attach_redirects_the_image_command_and_detach_restores_it_exactly(
    moto_endpoint: str, aws: tuple[Any, Any], role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, _ = aws
    name = unique("orders-image")
    original = {
        "EntryPoint": ["/lambda-entrypoint.sh"],
        "Command": ["app.handler"],
        "WorkingDirectory": "/var/task",
    }
    create_image_function(
        lam, role, name, image_config=original, env={"TABLE": "orders"}, tags={"team": "blue"}
    )
    before = snapshot(lam, name)

    code, out, err = cli(capsys, moto_endpoint, "attach", name, "--bucket", "cov-data", "--json")
    assert code == 0, err
    assert by_function(result_of(out, "attach"))[name]["status"] == "changed"
    attached = snapshot(lam, name)
    assert image_config(lam, name) == original | {"Command": REDIRECT}
    assert attached["Layers"] == []  # an image takes no layer
    assert attached["Environment"] == {
        "TABLE": "orders",
        "COVERAGE_S3_BUCKET": "cov-data",
        conventions.ORIGINAL_HANDLER_VAR: "app.handler",
    }
    record = decode_tags(attached["Tags"])
    assert record is not None and record.image is not None
    assert record.image.before == original
    assert record.to_dict()["v"] == IMAGE_FORMAT_VERSION

    # Attaching again changes nothing: the record still holds the command from before.
    code, out, err = cli(capsys, moto_endpoint, "attach", name, "--bucket", "cov-data", "--json")
    assert code == 0, err
    assert by_function(result_of(out, "attach"))[name]["status"] == "unchanged"
    assert snapshot(lam, name) == attached

    code, _, err = cli(capsys, moto_endpoint, "detach", name)
    assert code == 0, err
    assert snapshot(lam, name) == before


def test_an_image_without_a_command_needs_the_handler_and_gets_no_image_config_back(
    moto_endpoint: str, aws: tuple[Any, Any], role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, _ = aws
    name = unique("bare-image")
    create_image_function(lam, role, name)
    before = snapshot(lam, name)
    assert image_config(lam, name).get("Command") in (None, [])

    code, out, _ = cli(capsys, moto_endpoint, "attach", name, "--bucket", "cov-data", "--json")
    assert code == 1
    refused = by_function(result_of(out, "attach"))[name]
    assert refused["status"] == "refused"
    assert "--image-handler" in refused["detail"]
    assert snapshot(lam, name) == before

    code, out, err = cli(
        capsys, moto_endpoint, "attach", name, "--bucket", "cov-data", "--image-handler", "app.main"
    )
    assert code == 0, err
    assert image_config(lam, name).get("Command") == REDIRECT
    env = snapshot(lam, name)["Environment"]
    assert env[conventions.ORIGINAL_HANDLER_VAR] == "app.main"
    assert conventions.EXEC_WRAPPER_VAR not in env

    code, _, err = cli(capsys, moto_endpoint, "detach", name)
    assert code == 0, err
    assert snapshot(lam, name) == before  # ImageConfig cleared again: none before


def test_dry_run_shows_the_command_change_and_a_listing_selects_image_functions(
    moto_endpoint: str, aws: tuple[Any, Any], role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, _ = aws
    prefix = unique("listed")
    name = f"{prefix}-fn"
    create_image_function(lam, role, name, image_config={"Command": ["app.handler"]})
    before = snapshot(lam, name)

    code, out, err = cli(
        capsys, moto_endpoint, "attach", "--pattern", f"^{prefix}", "--bucket", "b-1", "--dry-run"
    )
    assert code == 0, err
    assert f'~ Command: ["app.handler"] -> ["{conventions.REDIRECT_HANDLER}"]' in out
    assert f"+ {conventions.ORIGINAL_HANDLER_VAR}=app.handler" in out
    assert "ImageConfig.Command redirects it" in out
    assert snapshot(lam, name) == before


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["python", "-m", "awslambdaric", "app.handler"], "not one handler"),
        (["serve"], "not one handler"),
        (REDIRECT, "no lambdacov record"),
    ],
    ids=["several-words", "not-a-handler", "already-redirected"],
)
def test_a_command_that_is_not_one_handler_is_refused_and_left_alone(
    command: list[str],
    words: str,
    moto_endpoint: str,
    aws: tuple[Any, Any],
    role: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lam, _ = aws
    name = unique("odd-image")
    create_image_function(lam, role, name, image_config={"Command": command})
    before = snapshot(lam, name)
    code, out, _ = cli(capsys, moto_endpoint, "attach", name, "--bucket", "b-1", "--json")
    assert code == 1
    result = by_function(result_of(out, "attach"))[name]
    assert result["status"] == "refused" and words in result["detail"]
    assert snapshot(lam, name) == before


def doctor_checks(
    capsys: pytest.CaptureFixture[str], endpoint: str, name: str
) -> dict[str, dict[str, Any]]:
    code, out, _ = cli(capsys, endpoint, "doctor", name, "--json")
    document = result_of(out, "doctor")
    assert code == document["exit_code"]
    return {check["code"]: check for check in document["checks"] if check["target"] == name}


def test_doctor_on_an_image_function_skips_layers_and_says_what_the_image_needs(
    moto_endpoint: str, aws: tuple[Any, Any], role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, _ = aws
    name = unique("doctor-image")
    create_image_function(lam, role, name, image_config={"Command": ["app.handler"]})

    checks = doctor_checks(capsys, moto_endpoint, name)
    assert checks["function.runtime"]["status"] == "ok"
    assert "container image" in checks["function.runtime"]["detail"]
    assert checks["function.layer"]["status"] == "skipped"
    assert checks["function.layer-current"]["status"] == "skipped"
    assert checks["function.image"]["status"] == "skipped"
    assert "--invoke" in checks["function.image"]["detail"]
    assert "COPY lambdacov-layer/ /opt/" in checks["function.image"]["hint"]
    assert checks["function.wiring"]["status"] == "warn"
    assert "ImageConfig command" in checks["function.wiring"]["hint"]

    code, _, err = cli(capsys, moto_endpoint, "attach", name, "--bucket", "cov-data")
    assert code == 0, err
    checks = doctor_checks(capsys, moto_endpoint, name)
    assert checks["function.wiring"]["status"] == "ok"
    assert checks["function.wiring"]["detail"] == "handler redirect to app.handler"

    # The people's checklist prints the skipped check's hint: what to add to the image.
    code, out, _ = cli(capsys, moto_endpoint, "doctor", name)
    assert "function.image" in out and "COPY lambdacov-layer/ /opt/" in out


def _payload(document: Any) -> io.BytesIO:
    return io.BytesIO(json.dumps(document).encode())


# moto cannot invoke an image function without Docker: the Stubber plays the function.
@pytest.mark.parametrize(
    ("answer", "function_error", "wired", "status", "words"),
    [
        (
            {
                "errorType": "Runtime.ImportModuleError",
                "errorMessage": "Unable to import module 'coverage_wrapper.handler': "
                "No module named 'coverage_wrapper'",
            },
            "Unhandled",
            True,
            "fail",
            "does not carry lambdacov's runtime",
        ),
        (
            {
                "status": "healthy",
                "coverage_enabled": True,
                "layer_version": "1.2.0",
                "s3_config": {"bucket": "b", "prefix": "coverage/"},
                "timestamp": "2026-12-01T00:00:00Z",
            },
            None,
            True,
            "ok",
            "carries lambdacov's runtime 1.2.0",
        ),
        (
            {
                "status": "unhealthy",
                "coverage_enabled": False,
                "layer_version": "1.2.0",
                "s3_config": {"bucket": "b", "prefix": "coverage/"},
                "timestamp": "2026-12-01T00:00:00Z",
                "errors": ["coverage.py is not importable: No module named 'coverage.tracer'"],
            },
            None,
            True,
            "fail",
            "not a coverage.py for its Python",
        ),
        ({"errorType": "KeyError", "errorMessage": "'order'"}, "Unhandled", True, "ok", "imported"),
        ({"errorType": "KeyError", "errorMessage": "'order'"}, "Unhandled", False, "skipped", ""),
    ],
    ids=["missing", "healthy", "wrong-python", "handler-error-wired", "handler-error-unwired"],
)
def test_the_health_invocation_tells_whether_the_image_carries_the_runtime(
    answer: dict[str, Any],
    function_error: str | None,
    wired: bool,
    status: str,
    words: str,
) -> None:
    client = boto3.client("lambda", region_name=REGION)
    response: dict[str, Any] = {"StatusCode": 200, "Payload": _payload(answer)}
    if function_error:
        response["FunctionError"] = function_error
    with Stubber(client) as stub:
        stub.add_response("invoke", response)
        invoked = health.invoke_health(client, "orders-image")
        stub.assert_no_pending_responses()
    check = health.judge_image(invoked, wired=wired, fix=IMAGE_FIX)
    assert check.code == "function.image"
    assert check.status == status
    assert words in check.detail
    if status in ("fail", "skipped"):
        assert check.hint == IMAGE_FIX
