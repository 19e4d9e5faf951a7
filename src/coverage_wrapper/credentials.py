"""The keys the layer signs its S3 requests with: from the environment, or from an endpoint.

Lambda gives a function's processes its role's temporary keys in
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``. A
SnapStart version gets none: keys read at init would be in the snapshot, stale
in every environment restored from it. Lambda gives it an endpoint instead, as
ECS and EKS do (the AWS SDKs' container credential provider):
``AWS_CONTAINER_CREDENTIALS_FULL_URI``, answered for the token in
``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (or in the file named by
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``). The keys are asked for when a
request first needs them (after the restore, since nothing is uploaded at
init) and again five minutes before they expire.

As in botocore: the environment's keys win; the endpoint is plain HTTP only on
a loopback address (or the link-local addresses of ECS and EKS), HTTPS anywhere
else, so the token is never sent in the clear off the machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from coverage_wrapper import http11
from coverage_wrapper.sigv4 import Credentials

FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
RELATIVE_URI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a variable's name
TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105 - as above
# ECS's endpoint, to which RELATIVE_URI is relative.
_ECS_HOST = "169.254.170.2"
# The link-local endpoints of ECS and EKS Pod Identity, trusted over plain HTTP.
_TRUSTED_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23"})
# Keys this close to their expiry are asked for again.
REFRESH_MARGIN_SECONDS = 300.0
# After a failed refresh, keys valid for longer than this are kept, and the endpoint is
# asked again after the other.
_STILL_VALID_SECONDS = 10.0
_RETRY_SECONDS = 30.0
_MAX_ANSWER_BYTES = 64 * 1024


class CredentialsError(Exception):
    """No keys: ``code`` names why as botocore would (NoCredentialsError,
    CredentialRetrievalError), ``message`` is one line that names the fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CredentialSource(Protocol):
    """Something that hands out the keys to sign with, current at the time of asking."""

    def get(self) -> Credentials: ...


class StaticCredentials:
    """Keys that do not change (the environment's)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def get(self) -> Credentials:
        return self.credentials


class ContainerCredentials:
    """Keys from a container credential endpoint, kept until shortly before they expire."""

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        token_file: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.uri = _checked_uri(uri)
        self._token = token
        self._token_file = token_file
        self.timeout = timeout
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._refresh_at = 0.0  # time.time()
        self._expires = 0.0

    def get(self) -> Credentials:
        """Keys good for now: asked for when there are none or they near their expiry.

        A refresh that fails while the keys held are still valid keeps them (as
        botocore does) and is tried again a little later, not at every request.
        """
        with self._lock:
            now = time.time()
            if self._credentials is None or now >= self._refresh_at:
                try:
                    self._credentials, self._expires = self._fetch()
                except CredentialsError:
                    if self._credentials is None or now >= self._expires - _STILL_VALID_SECONDS:
                        raise
                    self._refresh_at = min(
                        now + _RETRY_SECONDS, self._expires - _STILL_VALID_SECONDS
                    )
                else:
                    # Keys that expire sooner than the margin are kept for half their life.
                    left = max(self._expires - now, 0.0)
                    self._refresh_at = self._expires - min(REFRESH_MARGIN_SECONDS, left / 2)
            return self._credentials

    def _fetch(self) -> tuple[Credentials, float]:
        parts = urllib.parse.urlsplit(self.uri)
        headers = {"Accept": "application/json"}
        token = self._read_token()
        if token:
            headers["Authorization"] = token
        secure = parts.scheme == "https"
        tls = None
        if secure:
            import ssl  # an https endpoint: rare (Lambda's is http on loopback)

            tls = ssl.create_default_context()
        connection = http11.Connection(
            parts.hostname or "",
            parts.port or (443 if secure else 80),
            timeout=self.timeout,
            tls=tls,
        )
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        try:
            # The whole answer within the timeout: an endpoint that drips it cannot hold us.
            connection.connect()
            answer = connection.exchange("GET", path, headers, b"", limit=_MAX_ANSWER_BYTES)
        except OSError as error:
            raise _retrieval(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()
        if answer.status != 200:
            raise _retrieval(f"the endpoint answered HTTP {answer.status}")
        if len(answer.body) > _MAX_ANSWER_BYTES:
            raise _retrieval("the endpoint's answer is too large")
        return _parse(answer.body)

    def _read_token(self) -> str | None:
        token = self._token
        if self._token_file:
            try:
                with open(self._token_file, encoding="utf-8") as handle:  # noqa: PTH123
                    token = handle.read(_MAX_ANSWER_BYTES).strip()
            except (OSError, UnicodeDecodeError) as error:
                raise _retrieval(f"{TOKEN_FILE} cannot be read: {error}") from error
        if token is not None and ("\r" in token or "\n" in token):
            raise _retrieval("the authorization token holds a line break")
        if token is not None and not token.isascii():
            raise _retrieval("the authorization token is not ASCII")
        return token


def credential_source(environ: Mapping[str, str] | None = None) -> CredentialSource:
    """The keys this environment gives: AWS_ACCESS_KEY_ID and its secret (and session
    token), else the container credential endpoint; CredentialsError when neither."""
    environ = os.environ if environ is None else environ
    access_key = environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access_key and secret_key:
        token = environ.get("AWS_SESSION_TOKEN") or None
        return StaticCredentials(Credentials(access_key, secret_key, token))
    uri = environ.get(FULL_URI, "")
    if not uri and environ.get(RELATIVE_URI):
        uri = f"http://{_ECS_HOST}{environ[RELATIVE_URI]}"
    if uri:
        try:
            return ContainerCredentials(
                uri,
                token=environ.get(TOKEN) or None,
                token_file=environ.get(TOKEN_FILE) or None,
            )
        except ValueError as error:
            raise CredentialsError("CredentialRetrievalError", str(error)) from error
    raise CredentialsError(
        "NoCredentialsError",
        f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set, and no {FULL_URI} is given",
    )


def _checked_uri(uri: str) -> str:
    try:
        parts = urllib.parse.urlsplit(uri)
        _ = parts.port  # ValueError when it is not a port
        host = parts.hostname or ""
    except ValueError:
        host = ""
    if host and (parts.scheme == "https" or (parts.scheme == "http" and _trusted_host(host))):
        return uri
    raise ValueError(
        f"{FULL_URI} must be an https URL, or http on a loopback address (not {_shown(uri)!r})"
    )


def _shown(uri: str) -> str:
    """The URI as an error may show it: nothing before its last ``@`` (where a user and
    password would be, however malformed the URI), cut short."""
    scheme, separator, rest = uri.partition("://")
    if "@" in uri:
        uri = f"{scheme}://{rest.rpartition('@')[2]}" if separator else uri.rpartition("@")[2]
    return uri[:80]


def _trusted_host(host: str) -> bool:
    if host == "localhost" or host in _TRUSTED_HOSTS:
        return True
    try:
        import ipaddress  # only for a container endpoint's host

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(body: bytes) -> tuple[Credentials, float]:
    """The keys in the endpoint's JSON answer, and when they expire (a POSIX time)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError...
        raise _retrieval("the endpoint's answer is not JSON") from error
    if not isinstance(document, dict):
        raise _retrieval("the endpoint's answer is not a JSON object")
    access_key = document.get("AccessKeyId")
    secret_key = document.get("SecretAccessKey")
    token = document.get("Token")
    if not (isinstance(access_key, str) and access_key and isinstance(secret_key, str)):
        raise _retrieval("the endpoint's answer has no AccessKeyId and SecretAccessKey")
    if secret_key == "" or (token is not None and not isinstance(token, str)):
        raise _retrieval("the endpoint's answer has an empty secret or a bad token")
    expires = _expiry(document.get("Expiration"))
    return Credentials(access_key, secret_key, token or None), expires


def _expiry(value: object) -> float:
    """When keys expire; an hour from now when the endpoint does not say (as keys last)."""
    if not isinstance(value, str) or not value:
        return time.time() + 3600
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise _retrieval(f"the endpoint's Expiration is not a time: {value[:40]!r}") from error
    if when.tzinfo is None:
        raise _retrieval(f"the endpoint's Expiration has no time zone: {value[:40]!r}")
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError) as error:
        raise _retrieval(f"the endpoint's Expiration is out of range: {value[:40]!r}") from error


def _retrieval(reason: str) -> CredentialsError:
    return CredentialsError(
        "CredentialRetrievalError",
        f"the credentials endpoint ({FULL_URI}) gave no keys: {reason}",
    )
