"""The bucket: exists, where, writable under the prefix, and how it is protected."""

from __future__ import annotations

import json
import uuid
from typing import Any

from lambdacov.aws import error_code
from lambdacov.doctor.clients import first_line
from lambdacov.doctor.model import Check, fail, ok, warn
from lambdacov.policy import evaluate

PROBE_DIR = ".lambdacov-doctor/"


def _create_hint(bucket: str, region: str) -> str:
    return f"create it (`aws s3 mb s3://{bucket} --region {region}`) or fix COVERAGE_S3_BUCKET"


def _header_region(response: Any) -> str | None:
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None


def check_exists(s3: Any, bucket: str, region: str) -> tuple[Check, str | None]:
    """HeadBucket, with NoSuchBucket (404), Forbidden (403) and another region (301) told apart.

    Returns the check and the bucket's region when S3 said it.
    """
    try:
        response = s3.head_bucket(Bucket=bucket)
    except Exception as error:
        code = error_code(error)
        found = _header_region(getattr(error, "response", None))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return fail(
                "bucket.exists",
                f"NoSuchBucket: s3://{bucket} does not exist (HeadBucket 404)",
                _create_hint(bucket, region),
            ), None
        if code in ("403", "AccessDenied", "Forbidden"):
            return warn(
                "bucket.exists",
                f"s3://{bucket} exists but this identity may not read it (HeadBucket 403): "
                "another account's bucket, or no s3:ListBucket for you",
                "the function's role may still write to it: see bucket.probe and role.put-object",
            ), found
        if code in ("301", "PermanentRedirect"):
            return ok("bucket.exists", f"s3://{bucket} (in {found or 'another region'})"), found
        raise
    found = _header_region(response) or response.get("BucketRegion")
    return ok("bucket.exists", f"s3://{bucket}"), found


def bucket_region(s3: Any, bucket: str) -> str:
    """The bucket's region from GetBucketLocation (None means us-east-1, EU eu-west-1)."""
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, str(location))


def check_region(bucket: str, found: str, function_region: str, *, in_vpc: bool) -> Check:
    """Same region as the function? Across regions uploads are slower; from a VPC they fail."""
    if found == function_region:
        return ok("bucket.region", f"{found}, as the function")
    detail = f"the bucket is in {found}, the function in {function_region}"
    hint = f"use a bucket in {function_region} (one per region), or accept cross-region transfer"
    if in_vpc:
        return fail(
            "bucket.region",
            f"{detail}: an S3 gateway endpoint only reaches buckets in its own region",
            hint,
        )
    return warn(
        "bucket.region", f"{detail}: each upload is redirected and pays cross-region transfer", hint
    )


def check_probe(s3: Any, bucket: str, prefix: str, kms_key_id: str | None) -> Check:
    """Write, read back and delete a small object under the prefix, as the runtime writes.

    The probe object is deleted whatever happens; if even that fails, the check
    says where it was left.
    """
    key = f"{prefix}{PROBE_DIR}{uuid.uuid4().hex}.probe"
    body = b"lambdacov doctor probe\n"
    encryption: dict[str, str] = {"ServerSideEncryption": "AES256"}
    if kms_key_id:
        encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
    step = "PutObject"
    result: Check
    written = False
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, **encryption)
        written = True
        step = "GetObject"
        read = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if read != body:
            result = fail("bucket.probe", f"s3://{bucket}/{key} read back different bytes")
        else:
            result = ok("bucket.probe", f"wrote, read and deleted s3://{bucket}/{key}")
    except Exception as error:  # noqa: BLE001 - the step and the cause are the finding
        code = error_code(error)
        hint = {
            "AccessDenied": f"allow s3:{step} on arn:aws:s3:::{bucket}/{prefix}* (and check the "
            "bucket policy)",
            "NoSuchBucket": "create the bucket or fix COVERAGE_S3_BUCKET",
            "KMS.AccessDeniedException": "allow kms:GenerateDataKey on the key",
        }.get(code, "")
        if written and step == "GetObject" and code == "AccessDenied":
            # Writing is what the runtime needs; reading is only the doctor's double check.
            result = warn("bucket.probe", f"wrote s3://{bucket}/{key}; {step} denied", hint)
        else:
            result = fail(
                "bucket.probe", f"{step} s3://{bucket}/{key}: {code}: {first_line(error)}", hint
            )
    finally:
        if written:
            try:
                s3.delete_object(Bucket=bucket, Key=key)
            except Exception as error:  # noqa: BLE001 - reported, not raised
                leftover = f"; the probe object was left behind: {error_code(error)}"
                result = warn(
                    "bucket.probe",
                    result.detail + leftover,
                    f"delete s3://{bucket}/{key} by hand",
                )
    return result


def _absent(call: Any, *codes: str) -> Any:
    try:
        return call()
    except Exception as error:
        if error_code(error) in codes:
            return None
        raise


def check_encryption(s3: Any, bucket: str) -> Check:
    """Report the bucket's default encryption (lambdacov encrypts each object itself)."""
    found = _absent(
        lambda: s3.get_bucket_encryption(Bucket=bucket),
        "ServerSideEncryptionConfigurationNotFoundError",
    )
    if not found:
        return ok("bucket.encryption", "no default encryption set; lambdacov writes with SSE")
    rules = found["ServerSideEncryptionConfiguration"]["Rules"]
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm", "?")
    key = default.get("KMSMasterKeyID")
    return ok("bucket.encryption", f"default {algorithm}" + (f" with {key}" if key else ""))


def check_public_access(s3: Any, bucket: str) -> Check:
    """Coverage data shows your code's paths: the bucket should block public access."""
    found = _absent(
        lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration"
    )
    hint = (
        f"aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration "
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"
    )
    if not found:
        return warn("bucket.public-access", "no public access block on the bucket", hint)
    settings = found["PublicAccessBlockConfiguration"]
    off = sorted(name for name, value in settings.items() if not value)
    if off:
        return warn("bucket.public-access", f"public access block has {', '.join(off)} off", hint)
    return ok("bucket.public-access", "all public access blocked")


def check_policy(s3: Any, bucket: str, prefix: str, role_arn: str | None) -> Check:
    """Does the bucket policy deny the function's role (or everyone) s3:PutObject?"""
    found = _absent(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy")
    if not found:
        return ok("bucket.policy", "no bucket policy")
    document = json.loads(found["Policy"])
    resource = f"arn:aws:s3:::{bucket}/{prefix}lambdacov-doctor.coverage"
    principal = role_arn or "*"
    result = evaluate([document], "s3:PutObject", resource, principal_arn=principal)
    count = len(document.get("Statement", []))
    if result.decision == "denied":
        # Only a Deny that does not rest on a Condition is certain (a common conditional one
        # refuses plain HTTP, which the runtime never uses): the rest is a warning.
        report = warn if result.conditional else fail
        qualifier = " under conditions" if result.conditional else ""
        return report(
            "bucket.policy",
            f"the bucket policy denies s3:PutObject under {prefix or '/'}{qualifier} "
            f"({', '.join(result.statements)})",
            "change the Deny statement, or exempt the function's role",
            statements=list(result.statements),
        )
    return ok("bucket.policy", f"{count} statement(s); none denies s3:PutObject under the prefix")
