"""The SigV4 signer against botocore's, and against the S3 documentation's own examples.

botocore is the oracle here only (the runtime never imports it): for random
requests (object keys with unicode, spaces, ``+``, ``~``, ``%``, ``=`` and
runs of slashes; user metadata; SSE headers; query parameters; with and
without a session token) every header ``sign_request`` returns must equal
what ``botocore.auth.S3SigV4Auth`` puts on the same request at the same time.
botocore reads the clock through ``botocore.auth.get_current_datetime``,
which the tests replace with the fixed time.
"""

from __future__ import annotations

import string
from datetime import datetime
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.utils import percent_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from coverage_wrapper.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_uri,
    payload_hash,
    sign_request,
)

# The S3 API Reference's examples ("Signature Calculations for the Authorization
# Header: Transferring Payload in a Single Chunk").
DOC_CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DOC_TIME = datetime(2013, 5, 24)

FRAGMENTS = st.one_of(
    st.sampled_from(["/", "//", "///", " ", "  ", "+", "~", "%", "%2F", "=", "&", "?", "#", ".."]),
    st.text(min_size=1, max_size=6),  # any unicode but surrogates, control characters included
    st.sampled_from(["ü", "日本", "é", "😀", "\u00a0", "\u2028"]),
)
KEYS = st.lists(FRAGMENTS, min_size=1, max_size=8).map("".join)
HEADER_TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + " \t-_.:/=+;,"), max_size=20
)
METADATA = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True), HEADER_TEXT, max_size=4
).filter(lambda found: len({name.lower() for name in found}) == len(found))
SSE = st.one_of(
    st.just({}),
    st.just({"x-amz-server-side-encryption": "AES256"}),
    st.builds(
        lambda key: {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": key,
        },
        st.sampled_from(["alias/coverage", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd"]),
    ),
)
ADDRESSING = st.sampled_from(
    [
        ("https", "cov-bucket.s3.eu-west-1.amazonaws.com", None),  # virtual-hosted: no bucket
        ("https", "s3.us-east-1.amazonaws.com", "my.dotted.bucket"),
        ("http", "127.0.0.1:4566", "cov-bucket"),
        ("https", "s3.example.com:8443", "Legacy_Bucket"),
    ]
)
TOKENS = st.one_of(st.none(), st.text(alphabet=string.ascii_letters + "+/=", min_size=1))
WHEN = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(microsecond=0)
)


def botocore_headers(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    when: datetime,
    params: dict[str, str],
) -> tuple[dict[str, str], str]:
    """The headers botocore's S3 signer sets on the request, and the Host it signs."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body, params=params)
    signer = botocore.auth.S3SigV4Auth(
        BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        "s3",
        region,
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        signer.add_auth(request)
    host = signer.headers_to_sign(request)["host"]
    return {name.lower(): str(value) for name, value in request.headers.items()}, host


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["PUT", "HEAD", "GET"]),
    addressing=ADDRESSING,
    key=KEYS,
    metadata=METADATA,
    content_type=st.one_of(st.none(), HEADER_TEXT),
    sse=SSE,
    params=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    body=st.binary(max_size=200),
    access_key=st.from_regex(r"(AKIA|ASIA)[A-Z0-9]{16}", fullmatch=True),
    secret_key=st.text(alphabet=string.ascii_letters + string.digits + "+/", min_size=1),
    token=TOKENS,
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"]),
    when=WHEN,
)
def test_every_header_equals_botocores(
    method: str,
    addressing: tuple[str, str, str | None],
    key: str,
    metadata: dict[str, str],
    content_type: str | None,
    sse: dict[str, str],
    params: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    when: datetime,
) -> None:
    scheme, host, bucket = addressing
    path = f"/{bucket}/{key}" if bucket else f"/{key}"
    headers = {f"x-amz-meta-{name}": value for name, value in metadata.items()} | sse
    if content_type is not None:
        headers["Content-Type"] = content_type
    credentials = Credentials(access_key, secret_key, token)

    # The path as botocore's serializer encodes a bucket and a greedy key label.
    encoded = (f"/{percent_encode(bucket)}" if bucket else "") + "/" + percent_encode(key, "/~")
    assert canonical_uri(path) == encoded
    theirs, their_host = botocore_headers(
        method, f"{scheme}://{host}{encoded}", headers, body, credentials, region, when, params
    )
    ours = sign_request(
        method,
        host,
        path,
        headers=headers,
        payload_sha256=payload_hash(body),
        credentials=credentials,
        region=region,
        when=when,
        query=params,
    )

    assert ours.pop("host") == their_host == host
    assert ours == theirs
    assert ("x-amz-security-token" in ours) == bool(token)


def test_the_documentations_get_object_example() -> None:
    signed = sign_request(
        "GET",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        headers={"Range": "bytes=0-9"},
        payload_sha256=EMPTY_SHA256,
        credentials=DOC_CREDENTIALS,
        region="us-east-1",
        when=DOC_TIME,
    )
    assert signed["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        " SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        " Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_the_documentations_put_object_example_encodes_the_key_once() -> None:
    body = b"Welcome to Amazon S3."
    signed = sign_request(
        "PUT",
        "examplebucket.s3.amazonaws.com",
        "/test$file.text",
        headers={
            "Date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        payload_sha256=payload_hash(body),
        credentials=DOC_CREDENTIALS,
        region="us-east-1",
        when=DOC_TIME,
    )
    assert canonical_uri("/test$file.text") == "/test%24file.text"
    assert signed["x-amz-content-sha256"] == (
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    )
    assert signed["authorization"].endswith(
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        " Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_a_key_is_encoded_once_and_its_slashes_kept() -> None:
    assert canonical_uri("/b/a b+c~d%e=f//g/ü") == "/b/a%20b%2Bc~d%25e%3Df//g/%C3%BC"
    assert canonical_uri("/b/%2F") == "/b/%252F"  # a key with a literal "%2F" in it
    assert canonical_uri("/b/./x/../y") == "/b/./x/../y"  # S3 does not normalise


def test_whitespace_in_values_is_collapsed_in_the_signature_only() -> None:
    def authorization(value: str) -> str:
        return sign_request(
            "PUT",
            "h",
            "/k",
            headers={"x-amz-meta-a": value},
            payload_sha256=EMPTY_SHA256,
            credentials=DOC_CREDENTIALS,
            region="us-east-1",
            when=DOC_TIME,
        )["authorization"]

    assert authorization("  one   two  ") == authorization("one two")
    assert authorization("one two") != authorization("onetwo")


@pytest.mark.parametrize("digest", ["UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", ""])
def test_an_unsigned_payload_is_refused(digest: str) -> None:
    with pytest.raises(ValueError, match="UNSIGNED-PAYLOAD"):
        sign_request(
            "PUT",
            "h",
            "/k",
            headers={},
            payload_sha256=digest,
            credentials=DOC_CREDENTIALS,
            region="us-east-1",
            when=DOC_TIME,
        )


def test_a_header_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sign_request(
            "PUT",
            "h",
            "/k",
            headers={"X-Amz-Meta-A": "1", "x-amz-meta-a": "2"},
            payload_sha256=EMPTY_SHA256,
            credentials=DOC_CREDENTIALS,
            region="us-east-1",
            when=DOC_TIME,
        )


def test_the_secret_and_token_stay_out_of_the_repr() -> None:
    credentials = Credentials("AKIDEXAMPLE", "the-secret-key", "the-session-token")
    assert "AKIDEXAMPLE" in repr(credentials)
    assert "the-secret-key" not in repr(credentials)
    assert "the-session-token" not in repr(credentials)


def test_credentials_never_spell_out_the_secret_or_the_token() -> None:
    import json as jsonlib

    keys = Credentials("AKIDEXAMPLE", "the-secret-key", "the-session-token")
    shown = [
        repr(keys),
        str(keys),
        f"{keys}",
        "%s" % (keys,),  # noqa: UP031 - the old style that spells out a tuple's items
        jsonlib.dumps({"keys": keys}, default=str),
    ]
    for text in shown:
        assert "AKIDEXAMPLE" in text
        assert "the-secret-key" not in text and "the-session-token" not in text
    assert keys == Credentials("AKIDEXAMPLE", "the-secret-key", "the-session-token")
    assert len({keys, Credentials("AKIDEXAMPLE", "the-secret-key", "the-session-token")}) == 1
