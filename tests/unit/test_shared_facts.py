"""Facts several commands need, each defined once: layer versions, the cache root, error codes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coverage_wrapper.errors import error_code
from lambdacov import aws
from lambdacov.aws import Retrier
from lambdacov.combine import collect
from lambdacov.layer import wheels
from lambdacov.layer.publish import newest_layer_version
from lambdacov.paths import cache_root


class _NotFoundError(Exception):
    pass


class _ThrottledError(Exception):
    response = {"Error": {"Code": "ThrottlingException"}}  # noqa: RUF012 - botocore's shape


class _Lambda:
    """list_layer_versions over pages of two, as AWS pages with Marker and NextMarker."""

    class exceptions:  # noqa: N801 - boto3's attribute name
        ResourceNotFoundException = _NotFoundError

    def __init__(self, versions: list[int] | None, *, throttle_once: bool = False) -> None:
        self.versions = versions
        self.throttle = throttle_once
        self.requests: list[dict[str, Any]] = []

    def list_layer_versions(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.throttle:
            self.throttle = False
            raise _ThrottledError
        if self.versions is None:
            raise _NotFoundError
        start = int(request.get("Marker", 0))
        page: dict[str, Any] = {
            "LayerVersions": [
                {"Version": v, "LayerVersionArn": f"arn:{v}"}
                for v in self.versions[start : start + 2]
            ]
        }
        if start + 2 < len(self.versions):
            page["NextMarker"] = str(start + 2)
        return page


_NO_WAIT = Retrier(sleep=lambda _seconds: None)


def test_the_newest_version_is_found_on_any_page() -> None:
    client = _Lambda([3, 2, 7, 1, 5])
    newest = newest_layer_version(client, "lambdacov-python312-x86_64", _NO_WAIT)
    assert newest == {"Version": 7, "LayerVersionArn": "arn:7"}
    assert [r.get("Marker") for r in client.requests] == [None, "2", "4"]
    assert {r["LayerName"] for r in client.requests} == {"lambdacov-python312-x86_64"}


def test_a_layer_without_versions_or_unknown_has_no_newest_version() -> None:
    assert newest_layer_version(_Lambda([]), "name", _NO_WAIT) is None
    assert newest_layer_version(_Lambda(None), "name", _NO_WAIT) is None


def test_each_call_goes_through_the_retrier() -> None:
    client = _Lambda([1], throttle_once=True)
    assert newest_layer_version(client, "name", _NO_WAIT) == {
        "Version": 1,
        "LayerVersionArn": "arn:1",
    }
    with pytest.raises(_ThrottledError):
        newest_layer_version(_Lambda([1], throttle_once=True), "name", Retrier(attempts=1))


class _S3:
    """list_objects_v2 over pages of two, as S3 pages with continuation tokens."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.requests: list[dict[str, Any]] = []

    def list_objects_v2(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        keys = [key for key in self.keys if key.startswith(request["Prefix"])]
        start = int(request.get("ContinuationToken", 0))
        page: dict[str, Any] = {
            "Contents": [{"Key": key, "ETag": '"e"', "Size": 1} for key in keys[start : start + 2]],
            "IsTruncated": start + 2 < len(keys),
        }
        if page["IsTruncated"]:
            page["NextContinuationToken"] = str(start + 2)
        return page


def test_s3_listings_are_read_to_the_last_page_as_lambdas_are() -> None:
    keys = [f"coverage/2024/01/15/fn-{n}.coverage" for n in range(5)]
    client = _S3(keys)
    day = datetime(2024, 1, 15, tzinfo=UTC)
    listing = collect.Lister(client, "bucket").list("coverage", since=day, until=day)
    assert [remote.key for remote in listing.objects] == keys
    assert [r.get("ContinuationToken") for r in client.requests] == [None, "2", "4"]
    assert listing.list_calls == 3


@pytest.mark.parametrize("xdg", ["/xdg", ""])
def test_every_cache_lives_under_one_root(
    xdg: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LAMBDACOV_CACHE_DIR", raising=False)
    root = Path(xdg or tmp_path / ".cache") / "lambdacov"
    assert cache_root() == root
    assert collect.default_cache_dir() == root / "objects"
    assert wheels.default_cache_dir() == root / "wheels"


def test_the_object_cache_can_be_moved_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDACOV_CACHE_DIR", "/elsewhere")
    assert collect.default_cache_dir() == Path("/elsewhere")


def test_the_cli_reads_error_codes_with_the_runtimes_function() -> None:
    assert aws.error_code is error_code
    assert error_code(_ThrottledError()) == "ThrottlingException"
    assert error_code(ValueError("no response")) == "ValueError"
    empty = _ThrottledError()
    empty.response = {"Error": {}}  # type: ignore[misc]
    assert error_code(empty) == "_ThrottledError"
