"""Shared fixtures: one moto server per test session, over real HTTP on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/package checks an installed wheel; `nox -s package` builds one and sets WHEEL.
collect_ignore = [] if os.environ.get("WHEEL") else ["package"]

# Tests must never reach a real AWS account, whatever the developer's shell holds.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server started for this test session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket on the moto server."""
    name = f"cov-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel cache per test session: each target's coverage wheel is downloaded once."""
    return tmp_path_factory.mktemp("wheel-cache")


from lambdacov.layer.targets import host_arch, host_python  # noqa: E402

HOST_ARCH = host_arch()
HOST_PYTHON = host_python()


@pytest.fixture(scope="session")
def host_layer(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Path:
    """The layer zip for the Python running the tests, built as `lambdacov build-layer` does."""
    from lambdacov.layer import build_layer

    output = tmp_path_factory.mktemp("host-layer") / "layer.zip"
    return build_layer(HOST_PYTHON, HOST_ARCH, output, cache_dir=wheel_cache).path
