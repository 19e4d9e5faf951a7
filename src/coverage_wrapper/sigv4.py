"""AWS Signature Version 4 for S3 requests, on the standard library alone.

The layer's extension writes a few small objects to S3 per invocation. boto3
would sign them for it, but importing boto3 and making one client costs about
49 MB resident and 150 ms: a third of a 128 MB function, and most of the
layer's cold start. Signing a request is a page of hashing, so it lives here.

This follows the AWS documentation's "Create a signed AWS API request" (IAM
User Guide) and, for what S3 does differently, the S3 API Reference's
"Signature Calculations for the Authorization Header: Transferring Payload in
a Single Chunk (AWS Signature Version 4)". Only header-based authentication
is implemented, always with the payload's SHA-256: "UNSIGNED-PAYLOAD" would
let a body changed in transit be stored, and the bodies are small enough to
hash. Every function is pure (no clock, no environment, no I/O), so each can
be checked against botocore's signer with fixed inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class Credentials:
    """An access key, its secret and the session token that goes with temporary keys.

    The secret and the token are left out of the repr: a credentials object in
    a log line or a traceback must not leak them. Not a tuple either (no dataclass
    here, see :mod:`coverage_wrapper.datafiles`): ``json.dumps`` and ``%`` would
    spell a tuple's items out.
    """

    __slots__ = ("access_key", "secret_key", "token")

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token

    def _key(self) -> tuple[str, str, str | None]:
        return (self.access_key, self.secret_key, self.token)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r})"


def payload_hash(body: bytes) -> str:
    """The hex SHA-256 of a request body: the ``x-amz-content-sha256`` S3 checks."""
    return hashlib.sha256(body).hexdigest()


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode ``text`` as SigV4's UriEncode does.

    Only the unreserved characters (letters, digits, ``-._~``) stay as they
    are; everything else becomes ``%XX`` of its UTF-8 bytes, in upper case,
    a space included (``%20``, never ``+``). ``quote`` does exactly that.
    """
    return urllib.parse.quote(text, safe="/" if keep_slash else "")


def canonical_uri(path: str) -> str:
    """The canonical URI of an S3 path (``/bucket/key`` or ``/key``), also what is sent.

    Other services encode each path segment twice and normalise ``.`` and
    ``//``; S3 does neither (the S3 API Reference's SigV4 pages say so): an
    object key is encoded once with its ``/`` kept, and ``a//b`` or ``./x``
    are keys in their own right. The same string goes on the request line,
    so what is signed is what S3 receives.
    """
    return uri_encode(path or "/", keep_slash=True)


def canonical_query(params: Mapping[str, str] | None) -> str:
    """Names and values encoded, sorted by name then value, joined with ``&``.

    A parameter without a value is ``name=``, as the canonical request format
    requires. Sorting is on the encoded strings, which is byte order.
    """
    if not params:
        return ""
    pairs = sorted((uri_encode(name), uri_encode(value)) for name, value in params.items())
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_header_value(value: str) -> str:
    """A header value trimmed, with inner runs of whitespace made one space.

    The documentation's "Trimall". The client sends values already in this
    form, so S3's canonical header and ours cannot disagree on whitespace.
    """
    return " ".join(value.split())


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The canonical headers block (each line ends in a newline) and the signed header list."""
    names = sorted(headers)
    block = "".join(f"{name}:{canonical_header_value(headers[name])}\n" for name in names)
    return block, ";".join(names)


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The key derived from the secret for one day, region and service.

    A chain of HMACs, so a signature reveals nothing usable outside that
    scope ("Derive a signing key" in the IAM User Guide).
    """
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_request(
    method: str,
    host: str,
    path: str,
    *,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    when: datetime,
    query: Mapping[str, str] | None = None,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to send: ``headers`` and the ones SigV4 adds, with lower-case names.

    ``path`` is the request's path before encoding (see :func:`canonical_uri`)
    and ``host`` the Host header's value (with the port when it is not the
    scheme's default). Every header given is signed, and so are ``host``,
    ``x-amz-date``, ``x-amz-content-sha256`` and, with a session token,
    ``x-amz-security-token``: S3 requires all of these to be signed. Headers
    that must not be signed (User-Agent) are added by the caller afterwards.
    ``when`` is the signing time; a naive datetime is taken as UTC.
    """
    if not _HEX_SHA256.fullmatch(payload_sha256):
        raise ValueError("payload_sha256 must be the body's hex SHA-256 (no UNSIGNED-PAYLOAD)")
    signed = {name.lower(): value for name, value in headers.items()}
    if len(signed) != len(headers):
        raise ValueError("a header is given twice (names differ only in case)")
    stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    timestamp = stamp.strftime(TIMESTAMP_FORMAT)
    signed.update({"host": host, "x-amz-date": timestamp, "x-amz-content-sha256": payload_sha256})
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    block, signed_names = _canonical_headers(signed)
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            block,
            signed_names,
            payload_sha256,
        ]
    )
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_key, timestamp[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope},"
        f" SignedHeaders={signed_names}, Signature={signature}"
    )
    return signed
