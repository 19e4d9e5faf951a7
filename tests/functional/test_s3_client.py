"""The standard-library S3 client against moto server, and against endpoints that misbehave.

What it writes is read back with boto3; its error codes are compared with
the ones botocore gives for the same calls; with moto's IAM enforcement on,
a request signed with the wrong secret is refused and the right one passes.
A loopback stand-in (:class:`Scripted`) plays S3's failures that moto cannot:
a 500 once, SlowDown, a bucket in another region, hostile error documents, a
connection closed while kept alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from coverage_wrapper.errors import error_code
from coverage_wrapper.s3_client import S3Client, S3Error
from coverage_wrapper.sigv4 import Credentials, canonical_uri
from tests.support.faulty_s3 import unused_port_endpoint
from tests.support.tls import self_signed
from tests.support.unresponsive import SilentMode, silent_endpoint

REGION = "us-east-1"
TESTING = Credentials("testing", "testing")
TOKEN_VAR = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
KEYS = [
    "plain.coverage",
    "coverage/2024/01/15/fn-abc.coverage",
    "spaces and+plus/tilde~percent%25=equals",
    "unicode/ünïcödé/日本語/😀",
    "slashes//double///triple/",
    "/leading-slash",
    "query?like=1&x#frag",
]


def client(endpoint: str, **options: Any) -> S3Client:
    return S3Client(TESTING, REGION, endpoint_url=endpoint, **options)


@pytest.mark.parametrize("key", KEYS)
def test_what_is_put_is_what_boto3_gets(moto_endpoint: str, s3: Any, bucket: str, key: str) -> None:
    body = os.urandom(70_000) + b"\x00end"
    with client(moto_endpoint) as ours:
        answer = ours.put_object(bucket, key, body)
    # A single-part object's ETag is its MD5.
    assert answer["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_an_empty_body_is_an_empty_object(moto_endpoint: str, s3: Any, bucket: str) -> None:
    client(moto_endpoint).put_object(bucket, "empty", b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


@pytest.mark.parametrize(
    ("sse", "kms_key_id"), [("AES256", None), ("aws:kms", "alias/coverage"), ("aws:kms", None)]
)
def test_type_metadata_and_encryption_are_stored(
    moto_endpoint: str, s3: Any, bucket: str, sse: str, kms_key_id: str | None
) -> None:
    metadata = {"lambdacov-version": "0.1.0", "Function": "orders  api", "empty": ""}
    ours = client(moto_endpoint)
    answer = ours.put_object(
        bucket,
        "k",
        b"data",
        content_type="application/vnd.sqlite3",
        metadata=metadata,
        sse=sse,
        kms_key_id=kms_key_id,
    )
    assert answer["ServerSideEncryption"] == sse
    theirs = s3.head_object(Bucket=bucket, Key="k")
    assert theirs["ServerSideEncryption"] == sse
    assert theirs.get("SSEKMSKeyId") == kms_key_id
    assert theirs["ContentType"] == "application/vnd.sqlite3"
    # S3 lower-cases metadata names; values go as sent, their whitespace runs made one space.
    assert theirs["Metadata"] == {
        "lambdacov-version": "0.1.0",
        "function": "orders api",
        "empty": "",
    }
    head = ours.head_object(bucket, "k")
    assert head is not None
    for name in ("ETag", "ContentType", "ContentLength", "Metadata", "ServerSideEncryption"):
        assert head[name] == theirs[name], name
    assert head["LastModified"] == theirs["LastModified"]


def test_head_of_a_missing_key_is_none(moto_endpoint: str, bucket: str) -> None:
    assert client(moto_endpoint).head_object(bucket, "not/there") is None


def test_a_missing_bucket_has_botocores_error_code(moto_endpoint: str, s3: Any) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as theirs:
        s3.put_object(Bucket=missing, Key="k", Body=b"x")
    with pytest.raises(S3Error) as ours:
        client(moto_endpoint).put_object(missing, "k", b"x")
    assert ours.value.code == error_code(ours.value) == error_code(theirs.value) == "NoSuchBucket"
    assert ours.value.status == 404 and not ours.value.retryable


def test_invalid_arguments_are_refused_before_sending() -> None:
    ours = client(unused_port_endpoint())
    for call in (
        lambda: ours.put_object("b", "k", b"", sse="aws:kms:dsse"),
        lambda: ours.put_object("b", "k", b"", kms_key_id="alias/x"),
        lambda: ours.put_object("b", "k", b"", metadata={"bad name": "v"}),
        lambda: ours.put_object("b", "k", b"", metadata={"n": "line\r\nX-Injected: 1"}),
        lambda: ours.put_object("b", "k", b"", metadata={"n": "ünicode"}),
        lambda: ours.put_object("a/b", "k", b""),
        lambda: ours.head_object("b", ""),
    ):
        with pytest.raises(ValueError):
            call()


# --- with IAM enforcement -------------------------------------------------------------------

# moto keeps its enforcement switch in a module global: this server of its own is switched
# back before any other test runs (as in test_doctor.py).


@dataclass
class Enforcing:
    endpoint: str
    bucket: str
    user: Credentials
    role: Credentials  # temporary: an assumed role's keys and session token


def _reset_auth(endpoint: str, value: bytes) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/moto-api/reset-auth", body=value)
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.fixture
def enforcing() -> Iterator[Enforcing]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    allow_all = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
    )
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    # moto's backends outlive a server (they are this process's): every name is new.
    name = f"enforced-{uuid.uuid4().hex[:8]}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=name)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=allow_all)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
        iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=allow_all)
        sts = boto3.client(
            "sts",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        temporary = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="lambda")["Credentials"]
        _reset_auth(endpoint, b"0")
        yield Enforcing(
            endpoint,
            name,
            Credentials(key["AccessKeyId"], key["SecretAccessKey"]),
            Credentials(
                temporary["AccessKeyId"], temporary["SecretAccessKey"], temporary["SessionToken"]
            ),
        )
    finally:
        _reset_auth(endpoint, b"inf")
        server.stop()


def _put_as(enforcing: Enforcing, credentials: Credentials) -> dict[str, str]:
    ours = S3Client(credentials, REGION, endpoint_url=enforcing.endpoint, attempts=1)
    return ours.put_object(
        enforcing.bucket,
        "a b/ü+~%=//k",
        b"data",
        metadata={"m": "v"},
        sse="aws:kms",
        kms_key_id="k",
    )


def test_the_right_keys_pass_and_a_wrong_secret_is_refused(enforcing: Enforcing) -> None:
    assert _put_as(enforcing, enforcing.user)["ETag"]
    secret = enforcing.user.secret_key
    with pytest.raises(S3Error) as refused:
        _put_as(enforcing, Credentials(enforcing.user.access_key, secret[::-1]))
    assert refused.value.code == "SignatureDoesNotMatch" and refused.value.status == 403
    for text in (str(refused.value), repr(refused.value), json.dumps(refused.value.response)):
        assert secret not in text and secret[::-1] not in text


def test_an_unknown_access_key_is_refused(enforcing: Enforcing) -> None:
    with pytest.raises(S3Error) as refused:
        _put_as(enforcing, Credentials("AKIAUNKNOWNUNKNOWN00", enforcing.user.secret_key))
    assert refused.value.code == "InvalidAccessKeyId"


def test_a_session_token_is_sent_and_signed(enforcing: Enforcing) -> None:
    assert _put_as(enforcing, enforcing.role)["ETag"]
    assert S3Client(enforcing.role, REGION, endpoint_url=enforcing.endpoint).head_object(
        enforcing.bucket, "a b/ü+~%=//k"
    )
    wrong = Credentials(enforcing.role.access_key, enforcing.role.secret_key, "not-the-token")
    with pytest.raises(S3Error) as refused:
        _put_as(enforcing, wrong)
    assert refused.value.code == "InvalidToken"
    assert "not-the-token" not in str(refused.value)


# --- endpoints that never answer, or are not there --------------------------------------------

TIMEOUT = 0.3


@pytest.mark.parametrize("mode", ["reads", "never-reads", "drips"])
def test_a_silent_endpoint_ends_within_timeout_times_attempts(mode: SilentMode) -> None:
    attempts, backoff = 3, 0.05
    with silent_endpoint(mode) as endpoint:
        started = time.monotonic()
        with pytest.raises(S3Error) as failed:
            client(endpoint, timeout=TIMEOUT, attempts=attempts, backoff=backoff).put_object(
                "b", "k", b"x" * 1000
            )
        took = time.monotonic() - started
    assert failed.value.code == "ReadTimeoutError" and failed.value.status is None
    assert error_code(failed.value) == "ReadTimeoutError"  # the uploader's hint for it
    assert took >= attempts * TIMEOUT * 0.9  # every attempt waited its timeout
    backoffs = backoff * (2**attempts - 1)
    assert took < attempts * 2 * TIMEOUT + backoffs + 1.0


def test_nothing_listening_is_an_endpoint_connection_error() -> None:
    started = time.monotonic()
    with pytest.raises(S3Error) as failed:
        client(unused_port_endpoint(), attempts=2, backoff=0.05).head_object("b", "k")
    assert failed.value.code == "EndpointConnectionError" and failed.value.retryable
    assert time.monotonic() - started < 2.0


# --- a scripted stand-in for S3's own failures ----------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    peer: int  # the client's port: one per connection


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def error_document(code: str, message: str = "test", **extra: str) -> bytes:
    more = "".join(f"<{name}>{value}</{name}>" for name, value in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message>{more}<RequestId>REQ</RequestId></Error>"
    ).encode()


class Scripted:
    """Answers from ``script`` first, then forwards to ``upstream`` (or answers 200).

    With ``close_idle``, each connection is closed after its answer without a
    ``Connection: close``: what a kept-alive connection to S3 looks like after
    the environment was frozen for a while.
    """

    def __init__(
        self,
        script: list[Reply],
        upstream: str | None = None,
        *,
        close_idle: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.script = list(script)
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.seen.append(Seen(self.command, self.path, headers, self.client_address[1]))
                if owner.script:
                    reply = owner.script.pop(0)
                elif upstream is not None:
                    reply = self._forward(body)
                else:
                    reply = Reply(200, headers={"ETag": '"scripted"'})
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(reply.body)
                    except OSError:  # the client stopped reading (a body too long): its right
                        self.close_connection = True
                        return
                self.close_connection = close_idle

            def _forward(self, body: bytes) -> Reply:
                assert upstream is not None
                host, port = upstream.removeprefix("http://").split(":")
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                connection.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = connection.getresponse()
                data = response.read()
                connection.close()
                kept = {"etag", "x-amz-server-side-encryption", "content-type"}
                headers = {k: v for k, v in response.getheaders() if k.lower() in kept}
                return Reply(response.status, data, headers)

            do_PUT = do_GET = do_HEAD = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls else "http"
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_500_is_retried_and_the_object_written(moto_endpoint: str, s3: Any, bucket: str) -> None:
    with Scripted([Reply(500, error_document("InternalError"))], moto_endpoint) as stand_in:
        client(stand_in.endpoint, backoff=0.01).put_object(bucket, "k", b"after a 500")
    assert [seen.method for seen in stand_in.seen] == ["PUT", "PUT"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"after a 500"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(503, error_document("SlowDown")), "SlowDown"),
        (Reply(429), "429"),
        (Reply(400, error_document("RequestTimeout")), "RequestTimeout"),
        (Reply(502, b"<html>bad gateway</html>"), "502"),
    ],
)
def test_what_may_pass_later_is_tried_attempts_times(reply: Reply, code: str) -> None:
    with Scripted([reply] * 5) as stand_in, pytest.raises(S3Error) as failed:
        client(stand_in.endpoint, attempts=3, backoff=0.01).put_object("b", "k", b"x")
    assert failed.value.code == code and failed.value.status == reply.status
    assert len(stand_in.seen) == 3


@pytest.mark.parametrize(
    ("method", "reply", "code"),
    [
        ("PUT", Reply(403, error_document("AccessDenied", "Access Denied")), "AccessDenied"),
        ("PUT", Reply(400, error_document("InvalidArgument")), "InvalidArgument"),
        ("HEAD", Reply(403), "403"),  # a HEAD's answer has no body: the status is the code
        ("HEAD", Reply(400), "400"),
    ],
)
def test_a_refusal_is_not_retried(method: str, reply: Reply, code: str) -> None:
    with Scripted([reply]) as stand_in:
        ours = client(stand_in.endpoint, attempts=3, backoff=0.01)
        with pytest.raises(S3Error) as failed:
            if method == "PUT":
                ours.put_object("b", "k", b"x")
            else:
                ours.head_object("b", "k")
    assert failed.value.code == error_code(failed.value) == code
    assert len(stand_in.seen) == 1


def test_a_bucket_in_another_region_is_signed_for_it(moto_endpoint: str, bucket: str) -> None:
    moved = Reply(
        400,
        error_document("AuthorizationHeaderMalformed", Region="eu-west-1"),
        {"x-amz-bucket-region": "eu-west-1"},
    )
    with Scripted([moved], moto_endpoint) as stand_in:
        ours = client(stand_in.endpoint, attempts=1)
        ours.put_object(bucket, "first", b"x")
        ours.put_object(bucket, "second", b"y")
    scopes = [seen.headers["authorization"].split("/")[2] for seen in stand_in.seen]
    assert scopes == ["us-east-1", "eu-west-1", "eu-west-1"]  # the region is remembered


def test_a_region_that_is_not_a_region_is_not_followed() -> None:
    moved = Reply(301, error_document("PermanentRedirect"), {"x-amz-bucket-region": "evil.com/x"})
    with Scripted([moved]) as stand_in, pytest.raises(S3Error) as failed:
        client(stand_in.endpoint).put_object("b", "k", b"x")
    assert failed.value.code == "PermanentRedirect" and len(stand_in.seen) == 1


def test_one_connection_is_kept_alive() -> None:
    with Scripted([]) as stand_in:
        ours = client(stand_in.endpoint)
        for key in ("a", "b", "c"):
            ours.put_object("b", key, b"x")
        ours.head_object("b", "a")
    assert len({seen.peer for seen in stand_in.seen}) == 1


def test_a_kept_connection_closed_meanwhile_is_replaced_without_an_attempt() -> None:
    with Scripted([], close_idle=True) as stand_in:
        ours = client(stand_in.endpoint, attempts=1)
        ours.put_object("b", "a", b"x")
        time.sleep(0.1)  # the server has closed its end by now
        ours.put_object("b", "b", b"y")
    assert [seen.path for seen in stand_in.seen] == ["/b/a", "/b/b"]
    assert len({seen.peer for seen in stand_in.seen}) == 2


def test_user_agent_is_sent_and_not_signed() -> None:
    with Scripted([]) as stand_in:
        client(stand_in.endpoint).put_object("b", "k", b"x")
    headers = stand_in.seen[0].headers
    assert headers["user-agent"].startswith("lambdacov/")
    assert "user-agent" not in headers["authorization"]
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == ["host", "x-amz-content-sha256", "x-amz-date"]


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE Error [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8)
    )
    + b"]><Error><Code>&i;</Code><Message>&i;</Message></Error>"
)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (LAUGHS, "400"),  # a DTD is never parsed: no entity is expanded
        (b'<!DOCTYPE Error [<!ENTITY c "Spoofed">]><Error><Code>&c;</Code></Error>', "400"),
        (error_document("AccessDenied") + b" " * (1 << 20), "400"),  # too long to be S3's
        (b"\xff\xfe<\x00E\x00r\x00r\x00o\x00r\x00>\x00", "400"),  # not UTF-8
        (b"<Error><Code>Unclosed", "400"),
        (b"<Error><Code>Control\x1b[31m</Code></Error>", "400"),  # not XML 1.0
        (b"<Other><Code>Other</Code></Other>", "400"),  # not an S3 error document
        (b"<Error><Detail><Code>Deep</Code></Detail></Error>", "400"),
    ],
)
def test_a_hostile_error_document_is_not_believed(body: bytes, code: str) -> None:
    with Scripted([Reply(400, body)]) as stand_in:
        started = time.monotonic()
        with pytest.raises(S3Error) as failed:
            client(stand_in.endpoint, attempts=1).put_object("b", "k", b"x")
    assert failed.value.code == code
    assert time.monotonic() - started < 2.0


def test_an_error_message_is_one_short_line() -> None:
    message = "line one\n\tline two\u2028\u0085three " + "x" * 5000
    refusal = Reply(403, error_document("AccessDenied", message))
    with Scripted([refusal]) as stand_in, pytest.raises(S3Error) as failed:
        client(stand_in.endpoint).put_object("b", "k", b"x")
    assert failed.value.message.startswith("line one line two three xxx")
    assert len(failed.value.message) <= 200
    assert failed.value.request_id == "REQ"
    assert str(failed.value).isprintable()


def test_an_untrusted_certificate_is_refused_at_once(tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            with contextlib.suppress(OSError):  # the client hangs up mid-handshake
                context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        endpoint = f"https://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(S3Error) as refused:
            client(endpoint, attempts=3, backoff=0.01).put_object("b", "k", b"x")
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert refused.value.code == "SSLError" and not refused.value.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert len(accepted) == 1


def _run_python(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # -W always: a warning Python gives (a fork with threads alive) shows on stderr.
    return subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", script, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prepare_loads_tls_for_https_only_and_in_a_thread_when_asked() -> None:
    script = (
        "import sys, threading\n"
        "from coverage_wrapper import s3_client\n"
        "loading = lambda: [t.name for t in threading.enumerate() if t.name == 'lambdacov-tls']\n"
        "s3_client.prepare({'AWS_ENDPOINT_URL': 'http://127.0.0.1:1'}, background=True)\n"
        "print('ssl' in sys.modules, loading(), s3_client._trust._context)\n"
        "s3_client.prepare({}, background=True)\n"
        "print(loading())\n"
        "s3_client.await_prepared(5.0)\n"
        "context = s3_client._trust._context\n"
        "print(loading(), context is not None and context is s3_client._trust.context())\n"
        "s3_client.prepare({'AWS_ENDPOINT_URL_S3': ' HTTPS://s3.example.com'})\n"
        "print(context is s3_client._trust.context(), loading())\n"
        "print(context.verify_mode.name, context.check_hostname)\n"
    )
    done = _run_python(script)
    assert (done.returncode, done.stderr) == (0, "")
    # http (moto, a local stand-in): no ssl at all; S3's own endpoint: one loading thread,
    # awaited, and one context for the process, with the trust store's checks on.
    assert done.stdout.splitlines() == [
        "False [] None",
        "['lambdacov-tls']",
        "[] True",
        "True []",
        "CERT_REQUIRED True",
    ]


def test_prepare_under_snapstart_makes_no_tls_context_for_the_snapshot() -> None:
    # A context seeds OpenSSL's random generator: every environment restored from the
    # snapshot would start with the same state. ssl is imported, the context waits.
    script = (
        "import sys, threading\n"
        "from coverage_wrapper import s3_client\n"
        "s3_client.prepare({'AWS_LAMBDA_INITIALIZATION_TYPE': 'snap-start'}, background=True)\n"
        "print('ssl' in sys.modules, s3_client._trust._context, threading.active_count())\n"
    )
    done = _run_python(script)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True None 1\n", "")


def test_a_trust_store_that_fails_to_load_is_reported_by_the_first_upload() -> None:
    # Not by the loading thread: nothing reaches the function's stderr or excepthook.
    # The upload's error says what to check: not the endpoint, the trust store's settings.
    script = (
        "from coverage_wrapper import s3_client\n"
        "from coverage_wrapper.models import CoverageConfig\n"
        "from coverage_wrapper.s3_uploader import S3Uploader\n"
        "from coverage_wrapper.sigv4 import Credentials\n"
        "s3_client.prepare({}, background=True)\n"
        "s3_client.await_prepared(5.0)\n"
        "client = s3_client.S3Client(Credentials('a', 'b'), 'us-east-1',\n"
        "                            endpoint_url='https://127.0.0.1:9', attempts=1)\n"
        "try:\n"
        "    S3Uploader(CoverageConfig('bucket'), client).put('k', b'x')\n"
        "except Exception as error:\n"
        "    print(error.code, error.detail, sep='\\n')\n"
        "    print(error.hint)\n"
    )
    done = _run_python(script, SSLKEYLOGFILE="/nonexistent/keys")
    assert (done.returncode, done.stderr) == (0, "")
    code, detail, hint = done.stdout.splitlines()
    assert code == "TrustStoreError" and "/nonexistent/keys" in detail
    assert "cannot load the TLS trust store: " in detail
    assert "SSL_CERT_FILE" in hint and "SSLKEYLOGFILE" in hint


def test_a_fork_while_the_trust_store_loads_waits_for_it() -> None:
    # The child has no half-held lock or OpenSSL state: the loading thread (30 ms of
    # work) is over by the time fork() returns. (Python's warning of a fork with threads
    # alive may still come: it counts the kernel's threads, and the finished one may
    # not have exited yet.)
    script = (
        "import os, threading\n"
        "from coverage_wrapper import s3_client\n"
        "s3_client.prepare({}, background=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    s3_client._trust.context()\n"
        "    os._exit(7)\n"
        "alive = [t.name for t in threading.enumerate() if t.name == 'lambdacov-tls']\n"
        "print(alive, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    done = _run_python(script)
    assert (done.returncode, done.stdout.strip()) == (0, "[] 7"), done.stderr
    assert "Traceback" not in done.stderr


def _start_the_wrapper(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script``, which imports the exec wrapper's handler, in a Lambda-like environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COVERAGE_"))}
    environ.update(COVERAGE_S3_BUCKET="bucket", COVERAGE_SPOOL_DIR=str(tmp_path / "spool"), **env)
    return subprocess.run(
        [sys.executable, "-c", script],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("endpoint", "memory", "initialization", "expected"),
    [
        ("", "128", "on-demand", "[] True True True"),
        ("http://127.0.0.1:9", "128", "on-demand", "[] True False None"),
        ("", "1769", "on-demand", "[] False False -"),
        ("", "1769", "provisioned-concurrency", "[] True True True"),
        ("", "10240", "snap-start", "[] True True None"),
        ("", "4096", "lambda-managed-instances", "[] True True True"),
    ],
)
def test_the_exec_wrappers_init_prepares_delivery_where_cpu_costs_least(
    tmp_path: Path, endpoint: str, memory: str, initialization: str, expected: str
) -> None:
    # Below a vCPU, or ahead of requests, the delivery code is imported at init before
    # the function, and the trust store (S3's own endpoint is https) loaded by the time
    # init ends: no invocation shares its CPU with the load. SnapStart imports ssl but
    # makes no TLS context for the snapshot; with a vCPU the first upload imports it all.
    script = (
        "import sys, threading\n"
        "import coverage_wrapper.handler\n"
        "s3_client = sys.modules.get('coverage_wrapper.s3_client')\n"
        "loading = [t.name for t in threading.enumerate() if t.name == 'lambdacov-tls']\n"
        "print(loading, 'coverage_wrapper.delivery' in sys.modules, 'ssl' in sys.modules,\n"
        "      s3_client._trust._context and True if s3_client else '-')\n"
    )
    done = _start_the_wrapper(
        script,
        tmp_path,
        LAMBDACOV_ORIGINAL_HANDLER="json.dumps",
        AWS_ENDPOINT_URL=endpoint,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=memory,
        AWS_LAMBDA_INITIALIZATION_TYPE=initialization,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, expected, "")


def test_a_function_that_fails_to_import_ends_init_cleanly_while_the_trust_store_loads(
    tmp_path: Path,
) -> None:
    # awslambdaric reports the import error and exits; the trust store's thread must
    # not be left loading then (an interpreter leaving mid-load could crash in OpenSSL).
    script = (
        "import sys, threading\n"
        "try:\n"
        "    import coverage_wrapper.handler\n"
        "except ImportError:\n"
        "    loading = [t for t in threading.enumerate() if t.name == 'lambdacov-tls']\n"
        "    sys.exit(1 if not loading else 3)\n"
    )
    for _ in range(3):
        done = _start_the_wrapper(
            script,
            tmp_path,
            LAMBDACOV_ORIGINAL_HANDLER="no_such_module.handler",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        )
        assert (done.returncode, done.stderr) == (1, "")


def test_the_trust_store_loaded_ahead_is_the_systems(tmp_path: Path) -> None:
    # SSL_CERT_FILE stands for the system's trust store: a server it trusts is reached
    # with the context prepare() loaded before the request, one it does not is refused.
    cert_file, key_file = self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    script = (
        "import sys\n"
        "from coverage_wrapper import s3_client\n"
        "from coverage_wrapper.sigv4 import Credentials\n"
        "s3_client.prepare()\n"
        "ahead = s3_client._trust._context\n"
        "keys = Credentials('a', 'b')\n"
        "client = s3_client.S3Client(keys, 'us-east-1', endpoint_url=sys.argv[1])\n"
        "try:\n"
        "    print(client.put_object('b', 'k', b'x')['ETag'])\n"
        "except s3_client.S3Error as error:\n"
        "    print(error.code)\n"
        "print(ahead is not None and ahead is s3_client._trust._context)\n"
    )
    with Scripted([], tls=server) as stand_in:
        trusted, untrusted = (
            _run_python(
                script, stand_in.endpoint, AWS_ENDPOINT_URL=stand_in.endpoint, SSL_CERT_FILE=ca
            )
            for ca in (str(cert_file), os.devnull)
        )
    assert (trusted.stdout, trusted.stderr) == ('"scripted"\nTrue\n', "")
    assert (untrusted.stdout, untrusted.stderr) == ("SSLError\nTrue\n", "")
    assert [seen.method for seen in stand_in.seen] == ["PUT"]


# --- configuration and addressing -------------------------------------------------------------


def test_the_environment_gives_keys_token_region_and_endpoint() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "the-secret",
        "AWS_SESSION_TOKEN": "the-token",
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2",
    }
    ours = S3Client.from_environment(environ)
    assert ours.credentials == Credentials("AKID", "the-secret", "the-token")
    assert ours.region == "eu-west-3"
    assert repr(ours) == "S3Client(region='eu-west-3', endpoint='127.0.0.1:2')"
    assert "the-secret" not in repr(ours) and "the-token" not in repr(ours)
    del environ["AWS_ENDPOINT_URL_S3"], environ["AWS_REGION"]
    assert repr(S3Client.from_environment(environ)) == (
        "S3Client(region='us-west-2', endpoint='127.0.0.1:1')"
    )
    ignored = S3Client.from_environment({**environ, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})
    assert repr(ignored) == "S3Client(region='us-west-2', endpoint='s3.us-west-2.amazonaws.com')"
    with pytest.raises(S3Error) as missing:
        S3Client.from_environment({"AWS_ACCESS_KEY_ID": "AKID"})
    assert missing.value.code == "NoCredentialsError"


def _botocore_url(region: str, bucket: str, endpoint: str | None) -> str:
    """The URL botocore sends a PutObject to (caught before it is sent: no network)."""
    theirs = boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )

    class CaughtError(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        raise CaughtError(request.url)

    theirs.meta.events.register("before-send.s3", capture)
    with pytest.raises(CaughtError) as caught:
        theirs.put_object(Bucket=bucket, Key="a b/ü+~", Body=b"x")
    return str(caught.value)


@pytest.mark.parametrize(
    ("region", "bucket", "endpoint"),
    [
        ("eu-west-1", "cov-bucket", None),  # virtual-hosted
        ("eu-west-1", "my.dotted.bucket", None),  # path style: a dot breaks the certificate
        ("ap-southeast-2", "Legacy_Bucket", None),  # not a DNS name
        ("cn-north-1", "cov-bucket", None),
        ("us-east-1", "cov-bucket", "http://127.0.0.1:4566"),
        ("us-east-1", "cov-bucket", "https://s3.example.com"),  # custom: path style
        ("us-east-1", "cov-bucket", "https://s3.example.com:8443/base/"),
        ("us-east-1", "cov-bucket", "http://[::1]:9000"),
    ],
)
def test_requests_go_where_botocore_sends_them(
    region: str, bucket: str, endpoint: str | None
) -> None:
    ours = S3Client(TESTING, region, endpoint_url=endpoint)
    origin, path = ours._locate(bucket, "a b/ü+~", region)
    assert f"{origin.scheme}://{origin.host_header}{canonical_uri(path)}" == _botocore_url(
        region, bucket, endpoint
    )


# --- keys from a container credential endpoint (SnapStart) ------------------------------------


class KeyServer:
    """A loopback container credential endpoint: answers ``reply`` to GET /creds."""

    def __init__(self) -> None:
        self.reply: tuple[int, bytes] = (500, b"")
        self.requests: list[str | None] = []  # the Authorization header of each
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                keys.requests.append(self.headers.get("Authorization"))
                status, body = keys.reply
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/creds"

    def serve(self, keys: Credentials, expires_in: float = 3600) -> None:
        expiration = datetime.now(UTC) + timedelta(seconds=expires_in)
        document = {
            "AccessKeyId": keys.access_key,
            "SecretAccessKey": keys.secret_key,
            "Token": keys.token,
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.reply = (200, json.dumps(document).encode())


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_keys_from_the_container_endpoint_sign_requests_iam_accepts(
    enforcing: Enforcing, key_server: KeyServer
) -> None:
    key_server.serve(enforcing.role)
    environ = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "the-token-lambda-gives",
        "AWS_ENDPOINT_URL": enforcing.endpoint,
    }
    ours = S3Client.from_environment(environ, attempts=1)
    assert key_server.requests == []  # nothing asked until a request needs the keys
    ours.put_object(enforcing.bucket, "k", b"data")
    assert ours.head_object(enforcing.bucket, "k")
    assert key_server.requests == ["the-token-lambda-gives"]  # asked once, then kept


def test_keys_about_to_expire_are_asked_for_again(
    moto_endpoint: str, bucket: str, key_server: KeyServer
) -> None:
    key_server.serve(TESTING, expires_in=60)  # within the five minutes kept back
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri}
    ours = S3Client.from_environment({**environ, "AWS_ENDPOINT_URL": moto_endpoint})
    ours.put_object(bucket, "a", b"1")
    assert len(key_server.requests) == 1  # good for half their remaining life
    key_server.serve(TESTING, expires_in=-1)
    time.sleep(0.01)
    ours._credentials._refresh_at = 0  # type: ignore[attr-defined]  # as if 30 s passed
    ours.put_object(bucket, "b", b"2")
    assert len(key_server.requests) == 2
    assert key_server.requests == [None, None]  # no token configured: none sent


def test_the_token_file_wins_and_the_environment_keys_win_over_both(
    key_server: KeyServer, tmp_path: Path
) -> None:
    key_server.serve(Credentials("FROMENDPOINT", "secret"))
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    environ = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "from-the-variable",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }
    assert S3Client.from_environment(environ).credentials.access_key == "FROMENDPOINT"
    assert key_server.requests == ["from-the-file"]
    both = {**environ, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}
    assert S3Client.from_environment(both).credentials.access_key == "AKID"
    assert len(key_server.requests) == 1


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/creds",  # the token would go out in the clear
        "http://10.0.0.1/creds",
        "ftp://127.0.0.1/creds",
        "not a url",
    ],
)
def test_an_endpoint_that_would_expose_the_token_is_refused_before_any_request(uri: str) -> None:
    environ = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "secret-token",
    }
    with pytest.raises(S3Error) as refused:
        S3Client.from_environment(environ)
    assert refused.value.code == "CredentialRetrievalError"
    assert "secret-token" not in str(refused.value)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ((403, b'{"message": "bad token"}'), "HTTP 403"),
        ((200, b"<html>"), "not JSON"),
        ((200, b"[]"), "not a JSON object"),
        ((200, b'{"AccessKeyId": "A"}'), "no AccessKeyId and SecretAccessKey"),
        (
            (200, b'{"AccessKeyId": "A", "SecretAccessKey": "S", "Expiration": "soon"}'),
            "not a time",
        ),
        ((200, b"{" + b" " * 70_000 + b"}"), "too large"),
    ],
)
def test_an_endpoint_that_gives_no_keys_is_one_clear_error(
    key_server: KeyServer, reply: tuple[int, bytes], why: str
) -> None:
    key_server.reply = reply
    environ = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "secret-token",
    }
    ours = S3Client.from_environment(environ)
    with pytest.raises(S3Error) as failed:
        _ = ours.credentials
    assert failed.value.code == "CredentialRetrievalError"
    assert why in failed.value.message and "AWS_CONTAINER_CREDENTIALS_FULL_URI" in str(failed.value)
    assert "secret-token" not in str(failed.value)


def test_a_silent_credentials_endpoint_fails_within_its_timeout() -> None:
    with silent_endpoint("reads") as endpoint:
        environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{endpoint}/creds"}
        ours = S3Client.from_environment(environ)
        started = time.monotonic()
        with pytest.raises(S3Error) as failed:
            _ = ours.credentials
    assert failed.value.code == "CredentialRetrievalError"
    assert time.monotonic() - started < 10


def test_a_failed_refresh_keeps_keys_that_are_still_valid_and_waits_to_ask_again(
    key_server: KeyServer,
) -> None:
    key_server.serve(Credentials("FIRST", "secret"), expires_in=120)  # within the margin
    ours = S3Client.from_environment({"AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri})
    assert ours.credentials.access_key == "FIRST"
    ours._credentials._refresh_at = 0  # type: ignore[attr-defined]  # time to refresh
    key_server.reply = (500, b"")
    assert ours.credentials.access_key == "FIRST"  # 2 minutes left: kept
    assert ours.credentials.access_key == "FIRST"
    assert len(key_server.requests) == 2  # the failed refresh is not repeated at once


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:pa55word@example.com/creds", "http://example.com/creds"),
        ("http://127.0.0.1:99999/creds", "http://127.0.0.1:99999/creds"),  # not a port
    ],
)
def test_a_bad_endpoint_is_named_without_its_password(uri: str, shown: str) -> None:
    with pytest.raises(S3Error) as refused:
        S3Client.from_environment({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri})
    assert refused.value.code == "CredentialRetrievalError"
    assert shown in refused.value.message and "pa55word" not in str(refused.value)


@pytest.mark.parametrize(
    ("body", "token"),
    [
        (b"1" * 5000, "t"),  # a number Python will not parse
        (b"[" * 60_000, "t"),  # nesting deeper than the parser goes
        (b'{"AccessKeyId": "A", "SecretAccessKey": "S"}', "t\u2019k"),  # not ASCII
    ],
)
def test_odd_answers_and_tokens_are_one_clear_error(
    key_server: KeyServer, body: bytes, token: str
) -> None:
    key_server.reply = (200, body)
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri, TOKEN_VAR: token}
    with pytest.raises(S3Error) as failed:
        _ = S3Client.from_environment(environ).credentials
    assert failed.value.code == "CredentialRetrievalError"


@pytest.mark.parametrize(
    ("head", "drop"),
    [(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b" "), (b"HTTP/1.1 200 OK\r\n", b"X")],
    ids=["body", "headers"],
)
def test_an_endpoint_that_drips_its_answer_is_given_up_in_bounded_time(
    head: bytes, drop: bytes
) -> None:
    import socket as sockets

    listener = sockets.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def drip() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(head)
        with contextlib.suppress(OSError):
            for _ in range(30):
                connection.sendall(drop)
                time.sleep(0.5)
        connection.close()

    threading.Thread(target=drip, daemon=True).start()
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}/creds"
    ours = S3Client.from_environment({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri})
    started = time.monotonic()
    with pytest.raises(S3Error) as failed:
        _ = ours.credentials
    listener.close()
    assert failed.value.code == "CredentialRetrievalError"
    assert time.monotonic() - started < 5  # the timeout (2 s) bounds the whole answer


def test_a_failed_refresh_is_tried_again_before_the_keys_expire(key_server: KeyServer) -> None:
    key_server.serve(Credentials("SHORT", "secret"), expires_in=30)
    ours = S3Client.from_environment({"AWS_CONTAINER_CREDENTIALS_FULL_URI": key_server.uri})
    assert ours.credentials.access_key == "SHORT"
    source = ours._credentials
    source._refresh_at = 0  # type: ignore[attr-defined]
    key_server.reply = (500, b"")
    assert ours.credentials.access_key == "SHORT"
    # Not 30 s from now (after the keys expire): while they are still good.
    assert source._refresh_at <= source._expires - 10  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "uri",
    ["https://user:pa/ss@169.254.170.2/creds", "//admin:hunter2@127.0.0.1/x", "ftp://u:p@w@h/"],
)
def test_a_password_in_a_malformed_endpoint_is_not_shown(uri: str) -> None:
    with pytest.raises(S3Error) as refused:
        S3Client.from_environment({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri})
    text = str(refused.value)
    assert "pa/ss" not in text and "hunter2" not in text and "u:p" not in text
