"""Deploy tests' helpers: functions, roles and small layers on the moto server; the CLI."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import pytest

from lambdacov.cli import main

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def small_zip(
    name: str = "app.py", text: str = "def handler(event, context):\n    return 1\n"
) -> bytes:
    """A tiny zip: function code or a stand-in layer (moto never runs either)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


CODE = small_zip()


def clients(endpoint: str, region: str) -> tuple[Any, Any]:
    """(lambda, iam) clients on the moto server."""
    import boto3

    return (
        boto3.client("lambda", endpoint_url=endpoint, region_name=region),
        boto3.client("iam", endpoint_url=endpoint, region_name=region),
    )


def make_role(iam: Any, name: str | None = None) -> str:
    """A role Lambda can assume; its ARN."""
    role = iam.create_role(
        RoleName=name or f"fn-{uuid.uuid4().hex[:10]}", AssumeRolePolicyDocument=TRUST
    )
    return str(role["Role"]["Arn"])


def publish_stand_in_layer(
    lam: Any, name: str, runtime: str = "python3.12", arch: str = "x86_64"
) -> str:
    """Publish a tiny zip as a layer version; its ARN (keeps tests from building real layers)."""
    response = lam.publish_layer_version(
        LayerName=name,
        Content={"ZipFile": small_zip("python/placeholder.py", "")},
        CompatibleRuntimes=[runtime],
        CompatibleArchitectures=[arch],
    )
    return str(response["LayerVersionArn"])


def create_function(
    lam: Any,
    role: str,
    name: str,
    *,
    runtime: str = "python3.12",
    layers: list[str] | None = None,
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    arch: str = "x86_64",
    handler: str = "app.handler",
    memory: int | None = None,
) -> dict[str, Any]:
    """Create a function; its configuration."""
    request: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": runtime,
        "Role": role,
        "Handler": handler,
        "Code": {"ZipFile": CODE},
        "Architectures": [arch],
    }
    if layers:
        request["Layers"] = layers
    if env is not None:
        request["Environment"] = {"Variables": env}
    if tags:
        request["Tags"] = tags
    if memory is not None:
        request["MemorySize"] = memory
    return dict(lam.create_function(**request))


def snapshot(lam: Any, name: str) -> dict[str, Any]:
    """What attach may change and detach must restore: layers, variables, handler, tags."""
    configuration = lam.get_function_configuration(FunctionName=name)
    tags = lam.list_tags(Resource=configuration["FunctionArn"])["Tags"]
    return {
        "Layers": [layer["Arn"] for layer in configuration.get("Layers") or []],
        "Environment": (configuration.get("Environment") or {}).get("Variables") or {},
        "Handler": configuration["Handler"],
        "Tags": tags,
    }


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``lambdacov ARGV`` in this process as users do; (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    captured = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err
