"""A minimal S3 client on the standard library: PutObject and HeadObject, nothing else.

The layer's runtime delivers coverage data files to S3 from the function's own
process, after its responses. With boto3 it would grow by about 49 MB and take
150 ms more to import: on a 128 MB function, a third of the memory. The layer
needs two operations, so this client speaks them over :mod:`coverage_wrapper.http11`,
signed by :mod:`coverage_wrapper.sigv4`.

What it keeps of botocore's behaviour, so that the runtime reads its errors
the same way (``errors.error_code`` and the uploader's hints):

* the error codes: S3's ``Code`` from the error document, the HTTP status as
  text when there is none (a HEAD's answer has no body: ``404``, ``403``),
  and botocore's names for network failures (``ConnectTimeoutError``,
  ``ReadTimeoutError``, ``EndpointConnectionError``, ``ConnectionClosedError``);
* the addressing: virtual-hosted style on AWS for bucket names that are valid
  DNS labels without dots, path style otherwise and always with a custom
  endpoint (``AWS_ENDPOINT_URL_S3``), as botocore does;
* retries of what may succeed later (5xx, 429, ``SlowDown``,
  ``RequestTimeout``, network failures) with jittered exponential backoff,
  and one retry in the bucket's own region when S3 says it is elsewhere.

One client holds one keep-alive connection and is not thread-safe: give each
thread its own client, or serialise calls.
"""

from __future__ import annotations

import binascii  # base64's b64encode, without importing base64
import contextlib
import os
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from coverage_wrapper import http11
from coverage_wrapper._version import __version__
from coverage_wrapper.credentials import (
    CredentialsError,
    CredentialSource,
    StaticCredentials,
    credential_source,
)
from coverage_wrapper.sigv4 import (
    Credentials,
    canonical_header_value,
    canonical_uri,
    payload_hash,
    sign_request,
)

if TYPE_CHECKING:
    import ssl  # imported for https only: an http endpoint never needs it

DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.2  # seconds: the first retry waits up to this long, the next twice that
_BACKOFF_CAP = 5.0
# S3's answers to these operations are empty or a short error document; anything
# longer is not S3, and is neither read further nor parsed.
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_MESSAGE_CHARS = 200
_RETRYABLE_CODES = frozenset({"SlowDown", "RequestTimeout"})
_SSE = frozenset({"AES256", "aws:kms"})
# A bucket name that is one DNS label: addressable as <bucket>.s3.<region>.amazonaws.com
# (with dots the name would not match the certificate's wildcard).
_VIRTUAL_HOSTABLE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")
_REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_METADATA_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP header token
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_TRUE = frozenset({"1", "true", "yes", "on"})


class S3Error(Exception):
    """A request S3 refused, or that never got an answer.

    ``code`` is S3's error code (``NoSuchBucket``, ``AccessDenied``...), the
    HTTP status as text when the answer had no error document, or botocore's
    name for a network failure; ``status`` is the HTTP status (None without
    an answer) and ``message`` a short, single-line reason. ``retryable``
    says whether the same request may succeed later.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retryable = retryable

    @property
    def response(self) -> dict[str, Any]:
        """The error shaped as botocore's ClientError.response (``error_code`` reads it)."""
        return {
            "Error": {"Code": self.code, "Message": self.message},
            "ResponseMetadata": {"HTTPStatusCode": self.status, "RequestId": self.request_id},
        }


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        return http11.host_header(self.host, self.port, secure=self.scheme == "https")


class _Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def credentials_from_environment(environ: Mapping[str, str] | None = None) -> CredentialSource:
    """The keys Lambda gives the function (see :mod:`coverage_wrapper.credentials`);
    S3Error when it gives none."""
    try:
        return credential_source(environ)
    except CredentialsError as error:
        raise S3Error(error.code, error.message) from None


def endpoint_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint configured as botocore reads it; None for AWS's own."""
    environ = os.environ if environ is None else environ
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() in _TRUE:
        return None
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def prepare(environ: Mapping[str, str] | None = None, *, background: bool = False) -> None:
    """Load now what the first request to the configured endpoint needs.

    For https (S3's own endpoint): ``ssl``, and the system's trust store (OpenSSL
    parses some 150 certificates: 20-30 ms of CPU here, outside the GIL). With
    ``background`` the trust store loads on a thread, beside the caller's own work,
    until :func:`await_prepared`; a request that comes first waits for it rather
    than loading another. Under SnapStart only ``ssl`` is imported: a TLS context
    seeds OpenSSL's random generator, which the snapshot would give every restored
    environment alike.
    """
    environ = os.environ if environ is None else environ
    endpoint = endpoint_from_environment(environ)
    if endpoint is not None and urllib.parse.urlsplit(endpoint).scheme.lower() != "https":
        return
    import ssl  # noqa: F401 - here, not in the thread: an import a fork cuts short stays locked

    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        return
    if background:
        _trust.load_in_background()
    else:
        _trust.load()


def checksum_of(sha256: str) -> str:
    """S3's ``x-amz-checksum-sha256`` (base64) for a hex sha256."""
    return binascii.b2a_base64(bytes.fromhex(sha256), newline=False).decode()


def await_prepared(timeout: float) -> None:
    """Wait up to ``timeout`` seconds for what :func:`prepare` loads in the background."""
    _trust.await_loading(timeout)


class _TrustStore:
    """The process's one TLS context, with the system's trust store, loaded once."""

    def __init__(self) -> None:
        self.reset()
        # A child must not start with OpenSSL or the lock held by a thread it does not have.
        os.register_at_fork(before=lambda: self.await_loading(5.0), after_in_child=self.reset)

    def reset(self) -> None:
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                import ssl

                self._context = ssl.create_default_context()
            return self._context

    def load(self) -> None:
        """Load it now; a failure is left for the first request to meet and report."""
        with contextlib.suppress(Exception):
            self.context()

    def load_in_background(self) -> None:
        with self._lock:  # the thread starts once this is released
            if self._context is None and self._loading is None:
                loading = threading.Thread(target=self.load, name="lambdacov-tls", daemon=True)
                loading.start()
                self._loading = loading

    def await_loading(self, timeout: float) -> None:
        loading = self._loading
        if loading is not None:
            loading.join(timeout)


_trust = _TrustStore()


def _ssl_error(error: Exception, name: str) -> bool:
    """Whether ``error`` is ``ssl``'s exception ``name`` (never while ``ssl`` is not loaded:
    no TLS connection was made)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(error, getattr(ssl, name, ()))


def _check_region(region: str) -> str:
    # It becomes part of a host name: nothing but a region's letters, digits and dashes.
    if not _REGION.fullmatch(region):
        raise ValueError(f"not an AWS region: {region!r}")
    return region


def _aws_host(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"s3.{region}.{suffix}"


def _clean(text: str) -> str:
    """One short printable line: an error message may end up in a log."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line[:_MAX_MESSAGE_CHARS]


def _error_document(body: bytes) -> dict[str, str]:
    """``Code``, ``Message``, ``RequestId`` and ``Region`` of an S3 error document.

    The body comes from the network: it is parsed only when it is short UTF-8
    without any ``<!`` (so without a DTD, hence without entities to expand),
    and only direct children of the root are looked up.
    """
    if not body or len(body) > _MAX_ANSWER_BYTES:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    if "<!" in text:
        return {}
    from xml.etree import ElementTree  # only when S3 refused something

    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - bounded, and no DTD (above)
    except ElementTree.ParseError:
        return {}
    if root.tag != "Error":  # a proxy's page, not S3's answer
        return {}
    found: dict[str, str] = {}
    for name in ("Code", "Message", "RequestId", "Region"):
        node = root.find(name)
        if node is not None and node.text:
            found[name] = _clean(node.text)
    return found


def _refusal(answer: _Answer) -> tuple[S3Error, str | None]:
    """The error S3 answered, and the region it says the bucket is in (if it says).

    The region becomes part of a host name: one that is not a region's letters,
    digits and dashes is ignored.
    """
    document = _error_document(answer.body)
    code = document.get("Code") or str(answer.status)
    message = document.get("Message") or _reason_phrase(answer.status)
    retryable = answer.status >= 500 or answer.status == 429 or code in _RETRYABLE_CODES
    error = S3Error(
        code,
        message,
        status=answer.status,
        request_id=answer.headers.get("x-amz-request-id") or document.get("RequestId"),
        retryable=retryable,
    )
    region = answer.headers.get("x-amz-bucket-region") or document.get("Region") or ""
    return error, region if _REGION.fullmatch(region) else None


def _reason_phrase(status: int) -> str:
    """HTTP's name for ``status`` ("Forbidden"), or "error"."""
    from http import HTTPStatus  # only when S3 refused something

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HTTP_DATE = re.compile(
    r"(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2}):(\d{2})"
    r"\s*(?:GMT|UTC|[+-]0000)?"
)


def _http_date(text: str) -> datetime | None:
    """An HTTP date (``Wed, 02 Dec 2026 05:00:00 GMT``, as S3 writes them) in UTC; None
    for anything else, which the caller reads as "no date"."""
    found = _HTTP_DATE.fullmatch(text.strip())
    if found is None or found[2].title() not in _MONTHS:
        return None
    day, _, year, hour, minute, second = found.groups()
    try:
        return datetime(
            int(year), _MONTHS.index(found[2].title()) + 1, int(day),
            int(hour), int(minute), int(second), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:  # 31 Feb, 25:00...
        return None


def _transport_error(error: Exception, *, connecting: bool) -> S3Error:
    """botocore's name for a failure without an answer, and whether to try again."""
    reason = _clean(str(error)) or type(error).__name__
    if _ssl_error(error, "SSLCertVerificationError"):  # a bad certificate stays bad
        return S3Error("SSLError", reason)
    if isinstance(error, TimeoutError):
        code = "ConnectTimeoutError" if connecting else "ReadTimeoutError"
    else:
        code = "EndpointConnectionError" if connecting else "ConnectionClosedError"
    return S3Error(code, reason, retryable=True)


def _stale(error: Exception) -> bool:
    """A kept-alive connection the server closed while it was idle (or frozen)."""
    closed = (http11.RemoteDisconnectedError, ConnectionResetError, BrokenPipeError)
    return isinstance(error, closed) or _ssl_error(error, "SSLEOFError")


def _metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` headers; ValueError for what HTTP headers cannot carry.

    S3 keeps user metadata in headers, which are ASCII: a name must be a
    header token and a value printable ASCII (no line breaks to inject headers).
    """
    headers = {}
    for name, value in metadata.items():
        if not _METADATA_NAME.fullmatch(name):
            raise ValueError(f"metadata name {name!r} is not an HTTP header token")
        if not _PRINTABLE_ASCII.fullmatch(value):
            raise ValueError(f"metadata {name!r}: the value must be printable ASCII")
        headers[f"x-amz-meta-{name.lower()}"] = canonical_header_value(value)
    return headers


def _fields(headers: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    return {field: headers[header] for field, header in names.items() if header in headers}


_PUT_FIELDS = {
    "ETag": "etag",
    "VersionId": "x-amz-version-id",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "ChecksumSHA256": "x-amz-checksum-sha256",
}
_HEAD_FIELDS = {**_PUT_FIELDS, "ContentType": "content-type"}


class S3Client:
    """PutObject and HeadObject over one keep-alive connection (not thread-safe).

    ``timeout`` bounds each connect, each sending and each answer, in seconds;
    ``attempts`` is how many times a request is sent at most, with a random
    wait of up to ``backoff`` x 2^n seconds (at most 5 s) between attempts.
    A call therefore ends within attempts x 3 x timeout plus the waits (connect,
    send, answer; a request the socket's buffers take is sent at once: 2 x);
    the name lookup is not bounded by ``timeout`` (``socket`` cannot bound it).
    HTTPS certificates are verified with the system's trust store.
    """

    def __init__(
        self,
        credentials: Credentials | CredentialSource,
        region: str,
        *,
        endpoint_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if attempts < 1 or timeout <= 0 or backoff < 0:
            raise ValueError("attempts must be >= 1, timeout > 0 and backoff >= 0")
        self._credentials = (
            StaticCredentials(credentials) if isinstance(credentials, Credentials) else credentials
        )
        self.region = _check_region(region)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._endpoint = self._parse_endpoint(endpoint_url) if endpoint_url else None
        self._regions: dict[str, str] = {}  # bucket -> the region S3 said it is in
        self._connection: http11.Connection | None = None
        self._origin: _Origin | None = None

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
    ) -> S3Client:
        """A client with the credentials, region and endpoint the environment gives.

        The region is AWS_REGION (Lambda sets it), else AWS_DEFAULT_REGION, else
        us-east-1 as botocore's S3 client does.
        """
        environ = os.environ if environ is None else environ
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            credentials_from_environment(environ),
            region,
            endpoint_url=endpoint_from_environment(environ),
            timeout=timeout,
            attempts=attempts,
            backoff=backoff,
        )

    @property
    def credentials(self) -> Credentials:
        """The keys to sign with now (asked of the endpoint when they come from one);
        S3Error when there are none."""
        try:
            return self._credentials.get()
        except CredentialsError as error:
            raise S3Error(error.code, error.message) from None

    def __repr__(self) -> str:
        where = self._endpoint[0].host_header if self._endpoint else _aws_host(self.region)
        return f"S3Client(region={self.region!r}, endpoint={where!r})"

    def __enter__(self) -> S3Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connection, if any (the next call opens another)."""
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._origin = None

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        checksum_sha256: str | None = None,
    ) -> dict[str, str]:
        """Write one object; its ``ETag`` (and ``VersionId``, encryption...) as botocore names them.

        ``sse`` is ``AES256`` or ``aws:kms`` (then ``kms_key_id`` may name the
        key). ``checksum_sha256`` (hex) is stored as the object's checksum:
        S3 refuses the body if its SHA-256 is another. Raises S3Error.
        """
        if sse is not None and sse not in _SSE:
            raise ValueError(f"sse must be one of {sorted(_SSE)}")
        if kms_key_id and sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        headers = _metadata_headers(metadata or {})
        if content_type is not None:
            headers["content-type"] = canonical_header_value(content_type)
        if sse is not None:
            headers["x-amz-server-side-encryption"] = sse
        if kms_key_id:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = kms_key_id
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_of(checksum_sha256)
        answer = self._call("PUT", bucket, key, headers, body)
        return _fields(answer.headers, _PUT_FIELDS)

    def head_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's size, type, ETag, date, metadata and encryption; None if there is none.

        Only a 404 means "none": a 403 (a role that may not read the object)
        raises S3Error with code ``403``, as botocore does, for the caller to judge.
        """
        answer = self._call("HEAD", bucket, key, {}, b"")
        if answer.status == 404:
            return None
        found: dict[str, Any] = _fields(answer.headers, _HEAD_FIELDS)
        found["Metadata"] = {
            name.removeprefix("x-amz-meta-"): value
            for name, value in answer.headers.items()
            if name.startswith("x-amz-meta-")
        }
        if "content-length" in answer.headers:
            found["ContentLength"] = int(answer.headers["content-length"])
        if "last-modified" in answer.headers:
            found["LastModified"] = _http_date(answer.headers["last-modified"])
        return found

    def _call(
        self, method: str, bucket: str, key: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        """Send the request until it succeeds, fails for good, or the attempts are spent."""
        if not _BUCKET.fullmatch(bucket) or not key:
            raise ValueError("a bucket name and a key are required")
        attempt, redirected = 1, False
        while True:
            region = self._regions.get(bucket, self.region)
            try:
                answer = self._attempt(method, bucket, key, headers, body, region=region)
            except S3Error as error:
                failure = error
            else:
                if answer.status < 300 or (method == "HEAD" and answer.status == 404):
                    return answer
                failure, elsewhere = _refusal(answer)
                if not redirected and elsewhere and elsewhere != region:
                    # A bucket in another region than the function's: S3 names it, and
                    # the request is signed for that region (botocore redirects too).
                    self._regions[bucket] = elsewhere
                    redirected = True
                    continue
            if not failure.retryable or attempt >= self.attempts:
                raise failure
            cap = min(_BACKOFF_CAP, self.backoff * 2 ** (attempt - 1))
            time.sleep(cap * int.from_bytes(os.urandom(2)) / 0xFFFF)  # full jitter
            attempt += 1

    def _attempt(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        region: str,
    ) -> _Answer:
        """One signed request (signed again each attempt: the signature holds the time)."""
        origin, path = self._locate(bucket, key, region)
        signed = sign_request(
            method,
            origin.host_header,
            path,
            headers=headers,
            payload_sha256=payload_hash(body),
            credentials=self.credentials,
            region=region,
            when=datetime.now(UTC),
        )
        signed["user-agent"] = f"lambdacov/{__version__}"
        return self._exchange(origin, method, canonical_uri(path), signed, body)

    def _locate(self, bucket: str, key: str, region: str) -> tuple[_Origin, str]:
        """Where to send a request for ``bucket``/``key``: the origin and the path (unencoded)."""
        if self._endpoint is not None:
            origin, base = self._endpoint
            return origin, f"{base}/{bucket}/{key}"
        host = _aws_host(region)
        if _VIRTUAL_HOSTABLE.fullmatch(bucket):
            return _Origin("https", f"{bucket}.{host}", 443), f"/{key}"
        return _Origin("https", host, 443), f"/{bucket}/{key}"

    @staticmethod
    def _parse_endpoint(url: str) -> tuple[_Origin, str]:
        """The origin and base path (unencoded, without a trailing slash) of an endpoint URL."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the S3 endpoint must be an http(s) URL, not {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        base = urllib.parse.unquote(parts.path).rstrip("/")
        return _Origin(parts.scheme, parts.hostname, port), base

    def _exchange(
        self, origin: _Origin, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Answer:
        """Send once and read the answer, on the kept-alive connection when there is one.

        A kept connection may have been closed by S3 while the environment was
        frozen; a failure to use it is retried at once on a new connection,
        without spending an attempt.
        """
        while True:
            connection, fresh = self._connect(origin)
            try:
                response = connection.exchange(
                    method, target, headers, body, limit=_MAX_ANSWER_BYTES
                )
            except OSError as error:
                self.close()
                if not fresh and _stale(error):
                    continue
                raise _transport_error(error, connecting=False) from error
            except BaseException:  # ValueError before sending, or an interrupt: start afresh
                self.close()
                raise
            if response.will_close:  # or more than S3 would send: not worth reading
                self.close()
            return _Answer(response.status, response.headers, response.body)

    def _connect(self, origin: _Origin) -> tuple[http11.Connection, bool]:
        """The kept connection to ``origin`` (False), or a newly opened one (True)."""
        connection = self._connection
        if connection is not None and self._origin == origin and connection.sock is not None:
            return connection, False
        self.close()
        tls = None
        if origin.scheme == "https":
            try:
                tls = _trust.context()
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                reason = _clean(str(error)) or type(error).__name__
                message = f"cannot load the TLS trust store: {reason}"
                raise S3Error("TrustStoreError", message) from None
        connection = http11.Connection(origin.host, origin.port, timeout=self.timeout, tls=tls)
        try:
            connection.connect()
        except OSError as error:
            connection.close()
            raise _transport_error(error, connecting=True) from error
        self._connection, self._origin = connection, origin
        return connection, True
