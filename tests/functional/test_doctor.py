"""`lambdacov doctor` against a moto server: one scenario per failure in the troubleshooting guide.

Each scenario runs the CLI twice (people's checklist and --json) and asserts
the check codes, their statuses and the exit code in both.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from coverage_wrapper.s3_uploader import generate_s3_key
from lambdacov import conventions
from lambdacov.cli import main
from tests.support.envelope import envelope

REGION = "us-east-1"
LAYER = conventions.layer_name("python3.12", "x86_64")
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _zip(text: str = "def handler(event, context):\n    return 1\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", text)
    return buffer.getvalue()


class World:
    """A bucket, roles, two layer versions and a way to make functions, on one moto server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.tag = uuid.uuid4().hex[:8]
        client = self.client
        self.s3 = client("s3")
        self.iam = client("iam")
        self.lam = client("lambda")
        self.logs = client("logs")
        self.bucket = f"cov-{self.tag}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.west = f"cov-west-{self.tag}"
        client("s3", "eu-west-1").create_bucket(
            Bucket=self.west, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        for name in (self.bucket, self.west):
            self.s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        put = {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::cov-*/coverage/*",
        }
        find = {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::cov-*/coverage/sources/*",
        }
        self.role = self._role("writer", put, find)  # what attach --grant puts
        self.role_without_get = self._role("blind-writer", put)
        self.role_without_s3 = self._role(
            "reader", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
        )
        versions = [
            self.lam.publish_layer_version(
                LayerName=LAYER,
                Content={"ZipFile": _zip("")},
                Description=conventions.layer_description(version, "sha256:" + digit * 64),
                CompatibleRuntimes=["python3.12"],
                CompatibleArchitectures=["x86_64"],
            )["LayerVersionArn"]
            for version, digit in (("0.0.1", "0"), ("0.0.2", "1"))
        ]
        # Other tests may publish versions of the same layer on this server: the newest wins.
        self.old_layer, self.layer = versions

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=region)

    def _role(self, name: str, *statements: dict[str, Any]) -> str:
        role = f"{name}-{self.tag}"
        arn = self.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))
        self.iam.put_role_policy(
            RoleName=role,
            PolicyName="coverage",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
        )
        return str(arn["Role"]["Arn"])

    def healthy_env(self, **changes: str | None) -> dict[str, str]:
        env = {
            "COVERAGE_S3_BUCKET": self.bucket,
            conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH,
        }
        env.update({k: v for k, v in changes.items() if v is not None})
        return {k: v for k, v in env.items() if changes.get(k, "") is not None}

    def function(
        self,
        label: str,
        *,
        env: dict[str, str] | None = None,
        layers: list[str] | None = None,
        role: str | None = None,
        handler: str = "app.handler",
        delivered: bool = True,
    ) -> str:
        name = f"doc-{label}-{self.tag}"
        self.lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role or self.role,
            Handler=handler,
            Code={"ZipFile": _zip()},
            Layers=[self.layer] if layers is None else layers,
            Environment={"Variables": self.healthy_env() if env is None else env},
            MemorySize=512,
            Timeout=30,
        )
        bucket = (env or {}).get("COVERAGE_S3_BUCKET", self.bucket)
        if delivered and bucket in (self.bucket, self.west):
            region = "eu-west-1" if bucket == self.west else REGION
            self.client("s3", region).put_object(
                Bucket=bucket, Key=generate_s3_key(name, "env-1", "coverage/"), Body=b"x"
            )
        return name

    def log_lines(self, function: str, lines: list[str]) -> None:
        group = f"/aws/lambda/{function}"
        self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName="2026/01/01/[$LATEST]abc")
        now = int(time.time() * 1000)
        self.logs.put_log_events(
            logGroupName=group,
            logStreamName="2026/01/01/[$LATEST]abc",
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> World:
    return World(moto_endpoint)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0), capsys.readouterr().out


def doctor(
    capsys: pytest.CaptureFixture[str], endpoint: str, *args: str
) -> tuple[int, dict[str, Any], int, str]:
    common = ["--endpoint-url", endpoint, "--region", REGION]
    code_json, out = run(capsys, "doctor", *args, *common, "--json")
    code_human, human = run(capsys, "doctor", *args, *common)
    document = envelope(out)
    assert document["command"] == "doctor" and document["exit_code"] == code_json
    return code_json, document["result"], code_human, human


def statuses(document: dict[str, Any], target: str) -> dict[str, str]:
    return {c["code"]: c["status"] for c in document["checks"] if c["target"] in ("", target)}


def assert_scenario(
    capsys: pytest.CaptureFixture[str],
    world: World,
    function: str,
    expected: dict[str, str],
    exit_code: int,
) -> dict[str, Any]:
    code_json, document, code_human, human = doctor(capsys, world.endpoint, function)
    assert code_json == code_human == exit_code, human
    assert document["exit_code"] == exit_code
    found = statuses(document, function)
    assert {code: found.get(code) for code in expected} == expected, human
    for code, status in expected.items():
        assert re.search(rf"{status}\s+{re.escape(code)}\s", human), (code, status, human)
    return document


def test_healthy_function_passes(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("healthy")
    world.log_lines(name, ['{"level": "INFO", "logger": "app", "message": "hello"}'])
    document = assert_scenario(
        capsys,
        world,
        name,
        {
            "aws.credentials": "ok",
            "config.environment": "ok",
            "function.layer": "ok",
            "function.layer-current": "ok",
            "function.wiring": "ok",
            "function.resources": "ok",
            "function.vpc": "ok",
            "bucket.exists": "ok",
            "bucket.region": "ok",
            "bucket.probe": "ok",
            "bucket.public-access": "ok",
            "bucket.policy": "ok",
            "role.put-object": "ok",
            "role.find-sources": "ok",
            "delivery.recent": "ok",
            "delivery.logs": "ok",
            "invoke.health": "skipped",
        },
        0,
    )
    assert {c["status"] for c in document["checks"]} <= {"ok", "skipped"}
    role = next(c for c in document["checks"] if c["code"] == "role.put-object")
    assert role["data"]["method"] == "estimated"  # moto has no policy simulator
    probe_keys = world.s3.list_objects_v2(Bucket=world.bucket, Prefix="coverage/.lambdacov")
    assert probe_keys.get("KeyCount", 0) == 0, "the probe object must be deleted"


def test_missing_variable(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("novar", env={conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH})
    document = assert_scenario(
        capsys,
        world,
        name,
        {"config.environment": "fail", "bucket.exists": "skipped", "role.put-object": "skipped"},
        1,
    )
    check = next(c for c in document["checks"] if c["code"] == "config.environment")
    assert check["detail"] == "COVERAGE_S3_BUCKET is required"
    assert "lambdacov attach" in check["hint"]


def test_missing_bucket(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("nobucket", env=world.healthy_env(COVERAGE_S3_BUCKET=f"gone-{world.tag}"))
    document = assert_scenario(
        capsys,
        world,
        name,
        {"bucket.exists": "fail", "bucket.probe": "skipped", "delivery.recent": "skipped"},
        1,
    )
    check = next(c for c in document["checks"] if c["code"] == "bucket.exists")
    assert "NoSuchBucket" in check["detail"] and "aws s3 mb" in check["hint"]


def test_bucket_in_another_region(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("west", env=world.healthy_env(COVERAGE_S3_BUCKET=world.west))
    document = assert_scenario(
        capsys,
        world,
        name,
        {"bucket.exists": "ok", "bucket.region": "warn", "bucket.probe": "ok"},
        0,
    )
    check = next(c for c in document["checks"] if c["code"] == "bucket.region")
    assert "eu-west-1" in check["detail"] and REGION in check["detail"]


def test_role_without_put_object(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("denied", role=world.role_without_s3)
    document = assert_scenario(capsys, world, name, {"role.put-object": "fail"}, 1)
    check = next(c for c in document["checks"] if c["code"] == "role.put-object")
    assert "estimated" in check["detail"] and "s3:PutObject" in check["hint"]


def test_role_that_cannot_find_sources_warns(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # The data arrives; the sources too, but each environment uploads them again.
    name = world.function("blind", role=world.role_without_get)
    document = assert_scenario(
        capsys, world, name, {"role.put-object": "ok", "role.find-sources": "warn"}, 0
    )
    check = next(c for c in document["checks"] if c["code"] == "role.find-sources")
    assert "every environment uploads each source file again" in check["detail"]
    assert f"s3:GetObject on arn:aws:s3:::{world.bucket}/coverage/sources/*" in check["hint"]

    env = world.healthy_env(COVERAGE_UPLOAD_SOURCES="false")
    opted_out = world.function("noupload", role=world.role_without_get, env=env)
    assert_scenario(capsys, world, opted_out, {"role.find-sources": "skipped"}, 0)


def test_layer_not_attached(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("nolayer", layers=[])
    assert_scenario(
        capsys, world, name, {"function.layer": "fail", "function.layer-current": "skipped"}, 1
    )


def test_old_layer_version(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("oldlayer", layers=[world.old_layer])
    document = assert_scenario(
        capsys, world, name, {"function.layer": "ok", "function.layer-current": "warn"}, 0
    )
    check = next(c for c in document["checks"] if c["code"] == "function.layer-current")
    assert check["data"]["attached"] < check["data"]["newest"]


def test_wrapper_not_wired(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("unwired", env={"COVERAGE_S3_BUCKET": world.bucket})
    assert_scenario(capsys, world, name, {"function.wiring": "warn"}, 0)


def test_handler_redirected_to_itself(capsys: pytest.CaptureFixture[str], world: World) -> None:
    env = {
        "COVERAGE_S3_BUCKET": world.bucket,
        conventions.ORIGINAL_HANDLER_VAR: conventions.REDIRECT_HANDLER,
    }
    name = world.function("selfish", env=env, handler=conventions.REDIRECT_HANDLER)
    assert_scenario(capsys, world, name, {"function.wiring": "fail"}, 1)


def test_errors_in_logs(capsys: pytest.CaptureFixture[str], world: World) -> None:
    name = world.function("errors")
    upload = {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "level": "ERROR",
        "logger": "coverage_wrapper.delivery",
        "message": "Failed to upload coverage file to S3: NoSuchBucket: The specified bucket "
        "does not exist",
        "data": {"cause": "NoSuchBucket", "bucket": "b", "key": "k"},
    }
    init = {
        "level": "ERROR",
        "logger": "coverage_wrapper.wrapper",
        "message": "CoverageInitializationError: coverage is off for this execution "
        "environment: Failed to initialize coverage tracking: no coverage",
    }
    world.log_lines(
        name,
        [
            json.dumps(upload),
            json.dumps(upload),
            json.dumps(init),
            "2026-01-01T00:00:03Z abc Task timed out after 3.00 seconds",
            "START RequestId: abc Version: $LATEST",
            '{"level": "ERROR", "logger": "app", "message": "not ours"}',
        ],
    )
    document = assert_scenario(capsys, world, name, {"delivery.logs": "fail"}, 1)
    check = next(c for c in document["checks"] if c["code"] == "delivery.logs")
    causes = {cause["cause"]: cause["count"] for cause in check["data"]["causes"]}
    assert causes == {
        "S3UploadError: NoSuchBucket": 2,
        "CoverageInitializationError": 1,
        "Timeout": 1,
    }


def test_missing_function_and_pattern_selection(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    healthy = world.function("picked")
    code, document, _, human = doctor(
        capsys, world.endpoint, f"nosuch-{world.tag}", "--pattern", f"^doc-picked-{world.tag}$"
    )
    assert code == 1
    assert document["targets"] == [f"nosuch-{world.tag}", healthy]
    assert statuses(document, f"nosuch-{world.tag}")["function.exists"] == "fail"
    assert statuses(document, healthy)["function.exists"] == "ok"
    assert "fail    function.exists" in human


def test_no_credentials_exits_3(
    capsys: pytest.CaptureFixture[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AWS_EC2_METADATA_DISABLED", "true"
    )  # never ask an instance metadata service
    code, document, code_human, human = doctor(capsys, world.endpoint, "anything")
    assert code == code_human == 3
    assert statuses(document, "")["aws.credentials"] == "fail"
    assert "AWS unreachable" in human


# IAM enforcement switches every moto server of this process to checking signatures and
# policies (moto keeps the switch in a module global), so it gets its own server and is
# switched off again before any other test runs.
@pytest.fixture
def enforcing_endpoint() -> Iterator[tuple[str, dict[str, str]]]:
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        s3.create_bucket(Bucket="enforced-bucket")
        iam.create_user(UserName="ci")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": "s3:PutObject",
                    "Resource": "arn:aws:s3:::enforced-bucket/coverage/*",
                },
            ],
        }
        iam.put_user_policy(UserName="ci", PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
        yield (
            endpoint,
            {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        server.stop()


def test_access_denied_on_put_object_with_iam_enforced(
    capsys: pytest.CaptureFixture[str],
    enforcing_endpoint: tuple[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, keys = enforcing_endpoint
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    # moto cannot check Lambda's signatures while enforcing (a moto bug), so this scenario
    # checks the bucket as the CI identity sees it, without a function.
    code, document, code_human, human = doctor(capsys, endpoint, "--bucket", "enforced-bucket")
    assert code == code_human == 1, human
    found = statuses(document, "s3://enforced-bucket/coverage/")
    assert found["aws.credentials"] == "ok"
    assert found["bucket.exists"] == "ok"
    assert found["bucket.probe"] == "fail"
    probe = next(c for c in document["checks"] if c["code"] == "bucket.probe")
    assert "AccessDenied" in probe["detail"] and "s3:PutObject" in probe["hint"]
    assert re.search(r"fail\s+bucket\.probe", human)


def test_all_and_exclude_check_what_attach_would_select(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # A region of its own: --all lists every function of the region on the shared server.
    region = "ap-northeast-2"
    lam = world.client("lambda", region)
    lam.publish_layer_version(
        LayerName=LAYER,
        Content={"ZipFile": _zip("")},
        CompatibleRuntimes=["python3.12"],
        CompatibleArchitectures=["x86_64"],
    )
    names = [f"fleet-{label}-{world.tag}" for label in ("a", "b", "legacy", "node")]
    for name in names:
        node = name.startswith("fleet-node")
        lam.create_function(
            FunctionName=name,
            Runtime="nodejs20.x" if node else "python3.12",
            Role=world.role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
        )
    common = ["--all", "--exclude", "-legacy-", "--endpoint-url", world.endpoint]
    common += ["--region", region, "--json"]

    code, out = run(capsys, "attach", *common, "--bucket", world.bucket, "--dry-run")
    assert code == 0, out
    attached = {item["function"] for item in _document(out)["functions"]}
    _, out = run(capsys, "doctor", *common)
    checked = set(_document(out)["targets"])

    expected = {name for name in names if "-legacy-" not in name}
    assert attached == checked == expected


def _document(out: str) -> dict[str, Any]:
    """A command's result, inside the --json envelope or (before the envelope) the document."""
    document: dict[str, Any] = json.loads(out)
    return dict(document.get("result", document))
