"""Running a function deployed to the moto server locally, as it is deployed.

moto's own code and layer locations cannot be fetched: the tests put
:class:`~tests.support.location_proxy.LocationProxy` in front of it.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambdacov.errors import AwsError, EmulatorError
from lambdacov.local.deployed import deployed_lambda, is_loopback, unfetchable
from tests.conftest import HOST_PYTHON
from tests.support.envelope import result_of
from tests.support.lambda_fleet import clients, make_role, run_cli
from tests.support.location_proxy import LocationProxy
from tests.support.oracle import ORDERS

REGION = "us-east-1"
APP = """\
import os
import greeting


def handler(event, context):
    return {
        "greeting": greeting.TEXT,
        "colour": os.environ.get("COLOUR"),
        "source": os.environ.get("SOURCE"),
        "memory": context.memory_limit_in_mb,
        "name": context.function_name,
        "event": event,
    }
"""


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[LocationProxy]:
    with LocationProxy(moto_endpoint) as server:
        yield server


def publish(lam: Any, proxy: LocationProxy | None, files: dict[str, str]) -> str:
    """Publish a layer version of ``files``; its ARN. The proxy will serve its zip."""
    name = f"layer-{uuid.uuid4().hex[:8]}"
    data = zip_of(files)
    response = lam.publish_layer_version(
        LayerName=name, Content={"ZipFile": data}, CompatibleRuntimes=[f"python{HOST_PYTHON}"]
    )
    if proxy is not None:
        proxy.layers[(name, int(response["Version"]))] = data
    return str(response["LayerVersionArn"])


def deploy(
    lam: Any,
    iam: Any,
    *,
    layers: list[str],
    env: dict[str, str],
    code: bytes | None = None,
    runtime: str | None = None,
    package_type: str = "Zip",
) -> str:
    name = f"deployed-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "FunctionName": name,
        "Role": make_role(iam),
        "Layers": layers,
        "Environment": {"Variables": env},
        "MemorySize": 256,
        "Timeout": 20,
    }
    if package_type == "Image":
        request.update(PackageType="Image", Code={"ImageUri": "123.dkr.ecr/fn:latest"})
    else:
        request.update(
            Runtime=runtime or f"python{HOST_PYTHON}",
            Handler="app.handler",
            Code={"ZipFile": code or zip_of({"app.py": APP})},
        )
    lam.create_function(**request)
    return name


def lambda_client(endpoint: str) -> Any:
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION)


def test_deployed_function_runs_with_its_package_layers_and_variables(
    proxy: LocationProxy, tmp_path: Path
) -> None:
    lam, iam = clients(proxy.endpoint, REGION)
    first = publish(lam, proxy, {"python/greeting.py": "TEXT = 'first'\n"})
    second = publish(lam, proxy, {"python/greeting.py": "TEXT = 'second'\n"})
    name = deploy(lam, iam, layers=[first, second], env={"COLOUR": "green", "SOURCE": "lambda"})
    proxy.code[name] = zip_of({"app.py": APP})

    with deployed_lambda(
        name,
        lambda_client=lambda_client(proxy.endpoint),
        scratch=tmp_path / "scratch",
        env_overrides={"SOURCE": "override"},
    ) as function:
        result = function.invoke({"n": 1})
        assert function.config.timeout == 20

    assert result.ok, result.error
    assert result.payload == {
        "greeting": "second",  # the later layer's file wins, as in Lambda
        "colour": "green",
        "source": "override",
        "memory": "256",
        "name": name,
        "event": {"n": 1},
    }
    assert sorted(proxy.downloads) == sorted(
        [f"/stored/code/{name}"]
        + [f"/stored/layer/{arn.split(':')[-2]}/{arn.split(':')[-1]}" for arn in (first, second)]
    )


def test_function_dir_replaces_the_package_which_is_then_not_fetched(
    proxy: LocationProxy, tmp_path: Path
) -> None:
    lam, iam = clients(proxy.endpoint, REGION)
    layer = publish(lam, proxy, {"python/greeting.py": "TEXT = 'layer'\n"})
    name = deploy(lam, iam, layers=[layer], env={"COLOUR": "blue"})
    proxy.code[name] = zip_of({"app.py": "def handler(event, context):\n    return 'package'\n"})
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "app.py").write_text(APP)

    with deployed_lambda(
        name,
        lambda_client=lambda_client(proxy.endpoint),
        scratch=tmp_path / "scratch",
        function_dir=checkout,
    ) as function:
        result = function.invoke()

    assert result.ok, result.error
    assert result.payload["greeting"] == "layer"
    assert result.payload["colour"] == "blue"
    assert not any(path.startswith("/stored/code/") for path in proxy.downloads)


def test_mocked_locations_are_refused_without_leaving_the_machine(
    moto_endpoint: str, tmp_path: Path
) -> None:
    # Straight to moto: its Code.Location is an amazonaws.com URL, its layer location s3://.
    lam, iam = clients(moto_endpoint, REGION)
    name = deploy(lam, iam, layers=[], env={})
    with pytest.raises(EmulatorError, match=r"endpoint .* is local but the location is not") as e:
        deployed_lambda(name, lambda_client=lambda_client(moto_endpoint), scratch=tmp_path)
    assert "--function-dir" in e.value.hint

    layer = publish(lam, None, {"python/greeting.py": "TEXT = 1\n"})
    with_layer = deploy(lam, iam, layers=[layer], env={})
    with pytest.raises(EmulatorError, match=r"layer .* cannot be fetched: .*'s3://'"):
        deployed_lambda(
            with_layer,
            lambda_client=lambda_client(moto_endpoint),
            scratch=tmp_path,
            function_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("runtime", "package_type", "message"),
    [
        ("python3.10", "Zip", "runs on python3.10"),
        ("nodejs20.x", "Zip", "runs on nodejs20.x"),
        (None, "Image", "container image function"),
    ],
)
def test_functions_the_emulator_cannot_run_are_refused(
    moto_endpoint: str, tmp_path: Path, runtime: str | None, package_type: str, message: str
) -> None:
    lam, iam = clients(moto_endpoint, REGION)
    name = deploy(lam, iam, layers=[], env={}, runtime=runtime, package_type=package_type)
    with pytest.raises(EmulatorError, match=message):
        deployed_lambda(
            name,
            lambda_client=lambda_client(moto_endpoint),
            scratch=tmp_path,
            function_dir=tmp_path,
        )


def test_a_missing_function_is_aws_s_refusal(moto_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(AwsError, match="ResourceNotFoundException"):
        deployed_lambda(
            f"missing-{uuid.uuid4().hex[:8]}",
            lambda_client=lambda_client(moto_endpoint),
            scratch=tmp_path,
        )


@pytest.mark.parametrize(
    ("location", "endpoint", "allowed"),
    [
        ("https://bucket.s3.amazonaws.com/x?sig=1", "https://lambda.us-east-1.amazonaws.com", True),
        ("http://bucket.s3.amazonaws.com/x", "https://lambda.us-east-1.amazonaws.com", False),
        ("s3://", "https://lambda.us-east-1.amazonaws.com", False),
        ("https://bucket.s3.amazonaws.com/x", "http://127.0.0.1:5000", False),
        ("http://127.0.0.1:9/x", "http://localhost:5000", True),
        ("http://[::1]:9/x", "http://127.0.0.1:5000", True),
        ("http://localstack:4566/code.zip", "http://localstack:4566", True),
        ("http://other:4566/code.zip", "http://localstack:4566", False),
    ],
)
def test_where_a_location_may_be_fetched_from(location: str, endpoint: str, allowed: bool) -> None:
    assert (unfetchable(location, endpoint) is None) is allowed


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://127.8.9.10", True),
        ("http://localhost:4566", True),
        ("http://[::1]:5000", True),
        ("http://localstack:4566", False),
        ("https://lambda.us-east-1.amazonaws.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


# -- the CLI: lambdacov local invoke --deployed ---------------------------------------------


def test_cli_runs_the_deployed_function_with_its_layer_and_variables(
    proxy: LocationProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, iam = clients(proxy.endpoint, REGION)
    layer = publish(lam, proxy, {"python/greeting.py": "TEXT = 'from the layer'\n"})
    name = deploy(lam, iam, layers=[layer], env={"COLOUR": "red", "SOURCE": "lambda"})
    proxy.code[name] = zip_of({"app.py": APP})
    env_file = tmp_path / "local.env"
    env_file.write_text("SOURCE=env-file\n")

    code, out, err = run_cli(
        capsys,
        "local",
        "invoke",
        "--deployed",
        name,
        "--endpoint-url",
        proxy.endpoint,
        "--region",
        REGION,
        "--env-file",
        str(env_file),
        "--event",
        '{"k": "v"}',
    )

    assert code == 0, err
    assert json.loads(out) == {
        "greeting": "from the layer",
        "colour": "red",
        "source": "env-file",
        "memory": "256",
        "name": name,
        "event": {"k": "v"},
    }
    assert f"{name} as deployed: python{HOST_PYTHON}" in err
    assert "256 MB, 20 s, 1 layer(s) from Lambda" in err
    assert "code from the deployment package" in err


def test_cli_deployed_with_the_checkout_and_local_layers(
    proxy: LocationProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lam, iam = clients(proxy.endpoint, REGION)
    # Not registered with the proxy: moto's s3:// location, which cannot be fetched.
    unfetchable_layer = publish(lam, None, {"python/greeting.py": "TEXT = 'remote'\n"})
    name = deploy(lam, iam, layers=[unfetchable_layer], env={"COLOUR": "grey"})
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "app.py").write_text(APP)
    local_layer = tmp_path / "layer.zip"
    local_layer.write_bytes(zip_of({"python/greeting.py": "TEXT = 'local copy'\n"}))
    common = ("local", "invoke", "--deployed", name, "--endpoint-url", proxy.endpoint)

    refused, out, err = run_cli(capsys, *common, "--function-dir", str(checkout))
    assert refused == 2
    assert out == ""
    assert "cannot be fetched" in err and "--layer" in err
    assert len(err.strip().splitlines()) == 2  # the error line and its hint

    code, out, err = run_cli(
        capsys, *common, "--function-dir", str(checkout), "--layer", str(local_layer), "--json"
    )
    assert code == 0, err
    [result] = result_of(out, "local invoke")
    assert result["payload"]["greeting"] == "local copy"
    assert result["payload"]["colour"] == "grey"
    assert f"code from --function-dir {checkout}" in err
    assert "1 layer(s) from --layer instead of the function's 1" in err
    assert not any(path.startswith("/stored/code/") for path in proxy.downloads)


def zip_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


@pytest.mark.e2e
def test_cli_deployed_with_the_real_layer_delivers_coverage(
    host_layer: Path,
    proxy: LocationProxy,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What attach leaves in Lambda (the layer, the wrapper, the bucket), run locally."""
    lam, iam = clients(proxy.endpoint, REGION)
    name = f"orders-{uuid.uuid4().hex[:10]}"
    layer_name = f"lambdacov-{uuid.uuid4().hex[:8]}"
    layer_zip = host_layer.read_bytes()
    published = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": layer_zip})
    proxy.layers[(layer_name, int(published["Version"]))] = layer_zip
    package = zip_dir(ORDERS)
    lam.create_function(
        FunctionName=name,
        Runtime=f"python{HOST_PYTHON}",
        Role=make_role(iam),
        Handler="app.handler",
        Code={"ZipFile": package},
        Layers=[published["LayerVersionArn"]],
        Environment={
            "Variables": {
                "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper",
                "COVERAGE_S3_BUCKET": bucket,
            }
        },
        Timeout=30,
    )
    proxy.code[name] = package

    code, out, err = run_cli(
        capsys,
        "local",
        "invoke",
        "--deployed",
        name,
        "--endpoint-url",
        proxy.endpoint,
        "--events",
        str(ORDERS / "events.json"),
        "--environments",
        "2",
        "--json",
    )

    results = result_of(out, "local invoke")
    assert code == 1, err  # events.json has one crashing event
    assert [r["error"] is None for r in results].count(False) == 1
    assert "exec wrapper /opt/lambdacov-wrapper" in err
    objects = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if item["Key"].endswith(".coverage")
    ]
    assert len(objects) == 2  # one per environment
    assert all(f"/{name}-" in key for key in objects)
