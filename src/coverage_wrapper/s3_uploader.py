"""Writing coverage data files (and source snapshots) to S3: the key layout and the upload.

Uploads go through the layer's own S3 client (:mod:`coverage_wrapper.s3_client`,
the standard library and SigV4), never boto3: importing boto3 and creating a
client costs the extension about 130 ms and 27 MB at its first delivery, on
functions that may have 128 MB in all. A boto3 client handed in by the caller
(``upload_coverage_file(..., client=)``) is used as it is.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from coverage_wrapper._version import __version__
from coverage_wrapper.errors import S3UploadError, error_code
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.s3_client import S3Client, checksum_of

if TYPE_CHECKING:
    import coverage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
DATA_FILE_TYPE = "application/vnd.sqlite3"
#: What S3 answers for an object that is not there: 404 (NoSuchKey), or 403 to a role
#: that may not read it (S3 will not tell it whether the key exists).
ABSENT = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"})

# What usually fixes each failure, keyed by AWS error code or botocore exception name.
_HINTS = {
    "NoSuchBucket": "create the bucket or fix COVERAGE_S3_BUCKET (`lambdacov doctor` checks it)",
    "AccessDenied": "allow s3:PutObject on arn:aws:s3:::BUCKET/PREFIX* for the function's role",
    "AllAccessDisabled": "the bucket's owner has disabled access to it",
    "InvalidAccessKeyId": "the function's credentials are not valid for this endpoint",
    "KMS.AccessDeniedException": "allow kms:GenerateDataKey on COVERAGE_KMS_KEY_ID for the role",
    "ConnectTimeoutError": "check the VPC route to S3 or raise COVERAGE_UPLOAD_TIMEOUT",
    "ReadTimeoutError": "S3 was slow: raise COVERAGE_UPLOAD_TIMEOUT",
    "EndpointConnectionError": "S3 is unreachable: check the VPC route to S3 (gateway endpoint)",
    "NoCredentialsError": "the environment has no AWS credentials (AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_CONTAINER_CREDENTIALS_FULL_URI under SnapStart), which "
    "Lambda gives every function and extension",
    "CredentialRetrievalError": "the credentials endpoint gave no keys: check "
    "AWS_CONTAINER_CREDENTIALS_FULL_URI and the token Lambda gives with it",
    "SSLError": "S3's certificate is not trusted: check AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL",
    "TrustStoreError": "check SSL_CERT_FILE and SSL_CERT_DIR (the trust store) and SSLKEYLOGFILE",
}


def _safe(part: str) -> str:
    """Make a function name or id safe as one path component of a key."""
    cleaned = _UNSAFE.sub("-", part).strip(".-")
    return cleaned or "unknown"


def generate_s3_key(
    function_name: str,
    execution_id: str,
    prefix: str = "coverage/",
    timestamp: datetime | None = None,
) -> str:
    """Return ``PREFIX/YYYY/MM/DD/<function>-<id>.coverage`` for a data file.

    The date is the UTC date of ``timestamp`` (now by default; a naive
    datetime is taken as UTC). The function name and id are reduced to
    letters, digits, ``.``, ``_`` and ``-`` so a key is always one object.
    """
    when = timestamp or datetime.now(UTC)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    base = prefix.lstrip("/")
    if base and not base.endswith("/"):
        base += "/"
    return f"{base}{when:%Y/%m/%d}/{_safe(function_name)}-{_safe(execution_id)}.coverage"


class S3Uploader:
    """Puts objects into the configured bucket with bounded time and encryption."""

    def __init__(self, config: CoverageConfig, client: Any = None, *, attempts: int = 1) -> None:
        self.config = config
        self.attempts = attempts
        self._client = client
        self._lock = threading.Lock()
        # One call at a time: the layer's client keeps one connection, and a call that
        # outlived its bound (see _bounded) may still be using it.
        self._calls = threading.Lock()

    def client(self) -> Any:
        """The S3 client, created on first use with the upload timeout and attempts."""
        with self._lock:
            if self._client is None:
                self._client = S3Client.from_environment(
                    timeout=self.config.upload_timeout, attempts=self.attempts
                )
            return self._client

    def put(
        self,
        key: str,
        body: bytes,
        metadata: dict[str, str] | None = None,
        *,
        within: float | None = None,
        content_type: str = DATA_FILE_TYPE,
        sha256: str | None = None,
    ) -> None:
        """Write one object; raise S3UploadError with the cause and a hint.

        ``within`` bounds the whole call in seconds, creating the client and every
        retry included: the client's own timeouts bound each connect and each
        read, not their sum. A call still running when
        the time is up is left to finish on its own (it writes the same object)
        and reported as a timeout. ``sha256`` (hex) is sent as the object's
        checksum: S3 refuses a body whose digest is another.
        """
        self._bounded(key, within, lambda: self._put(key, body, metadata, content_type, sha256))

    def head(self, key: str, *, within: float | None = None) -> bool:
        """Whether the object exists, within ``within`` seconds as :meth:`put`.

        False when S3 says it does not, and when S3 will not say (403: a role
        allowed to write objects but not to read them): the caller writes it
        then, the same bytes under the same key. Any other failure raises
        S3UploadError.
        """
        return self.modified(key, within=within) is not None

    def modified(self, key: str, *, within: float | None = None) -> datetime | None:
        """When the object was last written; None when there is none, or S3 will not
        say (as :meth:`head`)."""
        found: list[datetime | None] = []
        self._bounded(key, within, lambda: found.append(self._head(key)))
        return found[0]

    def _bounded(self, key: str, within: float | None, call: Callable[[], None]) -> None:
        """Run ``call``, giving up after ``within`` seconds with an UploadTimeout."""
        if within is None or not math.isfinite(within):
            call()
            return
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                call()
            except BaseException as error:  # noqa: BLE001 - handed to the caller below
                outcome.append(error)
            else:
                outcome.append(None)

        worker = threading.Thread(target=attempt, name="lambdacov-upload", daemon=True)
        worker.start()
        worker.join(max(within, 0.0))
        if not outcome:
            raise S3UploadError(
                "UploadTimeout",
                f"no answer from S3 within {max(within, 0.0):.1f} s",
                bucket=self.config.s3_bucket,
                key=key,
                hint=_HINTS["ReadTimeoutError"],
            )
        if outcome[0] is not None:
            raise outcome[0]

    def _put(
        self,
        key: str,
        body: bytes,
        metadata: dict[str, str] | None,
        content_type: str,
        sha256: str | None,
    ) -> None:
        kms = self.config.kms_key_id
        put = _Put(
            self.config.s3_bucket,
            key,
            body,
            content_type=content_type,
            metadata=metadata or {},
            sse="aws:kms" if kms else "AES256",
            kms_key_id=kms,
            sha256=sha256,
        )
        try:
            with self._calls:
                put.send(self.client())
        except Exception as error:
            raise _upload_error(error, put.bucket, key) from error

    def _head(self, key: str) -> datetime | None:
        bucket = self.config.s3_bucket
        try:
            with self._calls:
                client = self.client()
                if isinstance(client, S3Client):
                    found = client.head_object(bucket, key)
                else:
                    found = client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            # A HEAD's answer has no body: its error is named by the HTTP status.
            if error_code(error) in ABSENT:
                return None
            raise _upload_error(error, bucket, key) from error
        if found is None:
            return None
        # An object shown without a date (S3 never does; a stand-in might) is there all the
        # same, as old as can be; a date without a zone is UTC, as S3's are.
        modified = found.get("LastModified")
        if not isinstance(modified, datetime):
            return datetime.fromtimestamp(0, UTC)
        return modified if modified.tzinfo else modified.replace(tzinfo=UTC)


class _Put(NamedTuple):
    """One PutObject, sent with the layer's client or a boto3 client the caller gave."""

    bucket: str
    key: str
    body: bytes
    content_type: str
    metadata: dict[str, str]
    sse: str
    kms_key_id: str | None
    sha256: str | None  # hex: sent as the object's checksum

    def send(self, client: Any) -> None:
        if isinstance(client, S3Client):
            client.put_object(
                self.bucket,
                self.key,
                self.body,
                content_type=self.content_type,
                metadata=self.metadata,
                sse=self.sse,
                kms_key_id=self.kms_key_id,
                checksum_sha256=self.sha256,
            )
            return
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": self.body,
            "ContentType": self.content_type,
            "Metadata": self.metadata,
            "ServerSideEncryption": self.sse,
        }
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        if self.sha256 is not None:
            args["ChecksumSHA256"] = checksum_of(self.sha256)
        client.put_object(**args)


def _upload_error(error: Exception, bucket: str, key: str) -> S3UploadError:
    code = error_code(error)
    detail = str(error).splitlines()[0] if str(error) else code
    return S3UploadError(code, detail, bucket=bucket, key=key, hint=_HINTS.get(code, ""))


def upload_coverage_file(
    coverage_data: str | os.PathLike[str] | bytes | coverage.CoverageData,
    function_name: str,
    execution_id: str,
    *,
    config: CoverageConfig | None = None,
    timestamp: datetime | None = None,
    client: Any = None,
) -> str:
    """Upload one coverage data file and return its key.

    ``coverage_data`` is a path to a coverage.py data file, its bytes, or a
    ``coverage.CoverageData``. The bucket, prefix, timeout and encryption come
    from ``config`` (default: the environment). This call waits for S3, within
    COVERAGE_UPLOAD_TIMEOUT; the layer's own deliveries run in its extension,
    after the function's response has been sent.
    """
    config = config or CoverageConfig.from_environment()
    if isinstance(coverage_data, bytes):
        body = coverage_data
    elif isinstance(coverage_data, (str, os.PathLike)):
        body = Path(coverage_data).read_bytes()
    else:
        coverage_data.write()
        body = Path(coverage_data.data_filename()).read_bytes()
    key = generate_s3_key(function_name, execution_id, config.s3_prefix, timestamp)
    S3Uploader(config, client).put(key, body, {"lambdacov-version": __version__})
    return key
