"""Publishing layer zips as Lambda layer versions: idempotent by content hash, many regions at once.

Each (Python, arch) layer is published under ``conventions.layer_name`` with a
description carrying the lambdacov version and the content hash. When the
newest version of that layer already carries the same content hash, nothing
is published and its ARN is returned: publishing again is free and safe.
Grants (``--public``, ``--principal``) are added to the version only when a
statement of that id is not there yet.
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdacov import __version__, conventions
from lambdacov.aws import Retrier, each_page, map_calls, translating
from lambdacov.errors import LambdacovError, UsageError
from lambdacov.layer.build import MANIFEST_NAME, LayerBuild

_ACCOUNT = re.compile(r"^\d{12}$")
_ORGANIZATION = re.compile(r"^o-[a-z0-9]{10,32}$")
LICENSE = "Apache-2.0"


@dataclass(frozen=True)
class LayerArtifact:
    """A built layer zip and what it is for."""

    path: Path
    python: str
    arch: str
    content_hash: str

    @property
    def runtime(self) -> str:
        """Lambda's runtime identifier, e.g. ``python3.12``."""
        return f"python{self.python}"

    @property
    def layer_name(self) -> str:
        """The layer's name, e.g. ``lambdacov-python312-x86_64``."""
        return conventions.layer_name(self.python, self.arch)

    @classmethod
    def from_build(cls, build: LayerBuild) -> LayerArtifact:
        """The artifact of a fresh ``build_layer``."""
        return cls(build.path, build.python, build.arch, build.content_hash)

    @classmethod
    def from_zip(cls, path: Path) -> LayerArtifact:
        """The artifact of a zip written by ``lambdacov build-layer``, read from its manifest."""
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read(MANIFEST_NAME))
            return cls(path, manifest["python"], manifest["arch"], manifest["content_hash"])
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as error:
            raise UsageError(
                f"{path} is not a layer zip built by lambdacov ({error})",
                "build it with `lambdacov build-layer`, or leave out --zip",
            ) from None


@dataclass(frozen=True)
class Grant:
    """Who may use the layer: a statement of add_layer_version_permission."""

    statement_id: str
    principal: str
    organization_id: str | None = None

    @classmethod
    def public(cls) -> Grant:
        """Every AWS account."""
        return cls("lambdacov-public", "*")

    @classmethod
    def parse(cls, principal: str) -> Grant:
        """An account id (12 digits) or an organization id (``o-...``)."""
        if _ACCOUNT.match(principal):
            return cls(f"lambdacov-account-{principal}", principal)
        if _ORGANIZATION.match(principal):
            return cls(f"lambdacov-org-{principal}", "*", principal)
        raise UsageError(
            f"--principal {principal!r} is neither an account id nor an organization id",
            "give 12 digits (123456789012) or an organization id (o-abc123defg)",
        )


@dataclass(frozen=True)
class PublishedLayer:
    """One layer version in one region, and whether this call published it."""

    region: str
    layer_name: str
    arn: str
    version: int
    python: str
    arch: str
    content_hash: str
    published: bool  # False: the newest version already had this content
    granted: tuple[str, ...] = ()  # statement ids added by this call

    def to_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values."""
        return {
            "region": self.region,
            "layer_name": self.layer_name,
            "arn": self.arn,
            "version": self.version,
            "python": self.python,
            "arch": self.arch,
            "runtime": f"python{self.python}",
            "content_hash": self.content_hash,
            "published": self.published,
            "granted": list(self.granted),
        }


@dataclass(frozen=True)
class PublishFailure:
    """A (layer, region) that could not be published, and why."""

    region: str
    layer_name: str
    message: str
    hint: str = ""


def publish_layer(
    client: Any,
    artifact: LayerArtifact,
    *,
    retrier: Retrier,
    grants: Iterable[Grant] = (),
) -> PublishedLayer:
    """Publish ``artifact`` in the client's region unless its newest version has the same content.

    Then add each grant the version does not have yet. Raises AwsError when
    AWS refuses.
    """
    region = str(client.meta.region_name)
    name = artifact.layer_name
    with translating("publish the layer", f"{name} in {region}"):
        existing = newest_layer_version(client, name, retrier)
        parsed = (
            conventions.parse_layer_description(existing.get("Description", ""))
            if existing
            else None
        )
        if existing and parsed and parsed[1] == artifact.content_hash:
            arn, version, published = existing["LayerVersionArn"], existing["Version"], False
        else:
            data = artifact.path.read_bytes()
            response = retrier.call(
                lambda: client.publish_layer_version(
                    LayerName=name,
                    Description=conventions.layer_description(__version__, artifact.content_hash),
                    Content={"ZipFile": data},
                    CompatibleRuntimes=[artifact.runtime],
                    CompatibleArchitectures=[artifact.arch],
                    LicenseInfo=LICENSE,
                )
            )
            arn, version, published = response["LayerVersionArn"], response["Version"], True
        granted = _grant(client, name, int(version), tuple(grants), retrier)
    return PublishedLayer(
        region=region,
        layer_name=name,
        arn=str(arn),
        version=int(version),
        python=artifact.python,
        arch=artifact.arch,
        content_hash=artifact.content_hash,
        published=published,
        granted=granted,
    )


def publish_everywhere(
    artifacts: Iterable[LayerArtifact],
    regions: Iterable[str],
    client_for: Callable[[str], Any],
    *,
    retrier: Retrier,
    grants: Iterable[Grant] = (),
    concurrency: int = 8,
    on_done: Callable[[PublishedLayer | PublishFailure], None] | None = None,
) -> tuple[tuple[PublishedLayer, ...], tuple[PublishFailure, ...]]:
    """Publish every artifact in every region concurrently; a failing region does not stop the rest.

    ``client_for(region)`` returns that region's Lambda client (made in the
    caller's thread: boto3 clients are thread-safe, sessions are not).
    """
    grants = tuple(grants)
    clients = {region: client_for(region) for region in dict.fromkeys(regions)}
    jobs = [(artifact, region) for region in clients for artifact in artifacts]

    def run(job: tuple[LayerArtifact, str]) -> PublishedLayer | PublishFailure:
        artifact, region = job
        outcome: PublishedLayer | PublishFailure
        try:
            outcome = publish_layer(clients[region], artifact, retrier=retrier, grants=grants)
        except LambdacovError as error:
            outcome = PublishFailure(region, artifact.layer_name, error.message, error.hint)
        if on_done is not None:
            on_done(outcome)
        return outcome

    # Ctrl-C: no other upload starts, and the process does not wait for those in
    # flight (a version they publish is found by content hash next time).
    outcomes = map_calls(run, jobs, concurrency)
    published = tuple(o for o in outcomes if isinstance(o, PublishedLayer))
    failures = tuple(o for o in outcomes if isinstance(o, PublishFailure))
    return published, failures


def newest_layer_version(client: Any, name: str, retrier: Retrier) -> dict[str, Any] | None:
    """The newest version of layer ``name`` (a name or a layer ARN), None when it has none.

    The entry is ``ListLayerVersions``'s, with ``Version``, ``LayerVersionArn``
    and ``Description``. Every page is read, each call through ``retrier``.
    botocore's exceptions pass through untouched (a missing layer aside): the
    caller translates them with its own wording.
    """
    # list_layer_versions, not get_layer_version_by_arn: moto lacks the latter, and
    # the newest version is the one every caller compares with anyway.
    versions: list[dict[str, Any]] = []
    try:
        for page in each_page(client.list_layer_versions, {"LayerName": name}, retrier=retrier):
            versions += page.get("LayerVersions") or []
    except client.exceptions.ResourceNotFoundException:
        return None
    return max(versions, key=lambda entry: int(entry["Version"])) if versions else None


def _grant(
    client: Any, name: str, version: int, grants: tuple[Grant, ...], retrier: Retrier
) -> tuple[str, ...]:
    if not grants:
        return ()
    present = _statement_ids(client, name, version, retrier)
    added = []
    for grant in grants:
        if grant.statement_id in present:
            continue
        request: dict[str, Any] = {
            "LayerName": name,
            "VersionNumber": version,
            "StatementId": grant.statement_id,
            "Action": "lambda:GetLayerVersion",
            "Principal": grant.principal,
        }
        if grant.organization_id:
            request["OrganizationId"] = grant.organization_id
        retrier.call(functools.partial(client.add_layer_version_permission, **request))
        added.append(grant.statement_id)
    return tuple(added)


def _statement_ids(client: Any, name: str, version: int, retrier: Retrier) -> set[str]:
    try:
        response = retrier.call(
            lambda: client.get_layer_version_policy(LayerName=name, VersionNumber=version)
        )
    except client.exceptions.ResourceNotFoundException:
        return set()  # no policy yet
    policy = json.loads(response.get("Policy") or "{}")
    return {str(statement.get("Sid")) for statement in policy.get("Statement", [])}
