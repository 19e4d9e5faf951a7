"""AWS access: do the credentials work, and which region are we in?"""

from __future__ import annotations

from typing import Any

from lambdacov.aws import error_code, translate
from lambdacov.doctor.clients import first_line
from lambdacov.doctor.model import Check, fail, ok

_CREDENTIAL_HINTS = {
    "NoCredentialsError": "run `aws configure`, set AWS_PROFILE, or pass --profile",
    "PartialCredentialsError": "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "InvalidClientTokenId": "the access key is not valid: check --profile and AWS_* variables",
    "ExpiredToken": "refresh your credentials (aws sso login, or new session keys)",
    "EndpointConnectionError": "check the network, the --region and any --endpoint-url",
    "ConnectTimeoutError": "check the network, the --region and any --endpoint-url; "
    "if AWS is only slow to answer, raise --timeout",
    "ReadTimeoutError": "check the network, the --region and any --endpoint-url; "
    "if AWS is only slow to answer, raise --timeout",
    "ConnectionClosedError": "check the network, the --region and any --endpoint-url",
}


def check_credentials(sts: Any) -> tuple[Check, str | None]:
    """Ask STS who we are; the check and the caller's ARN (None when AWS said no)."""
    try:
        identity = sts.get_caller_identity()
    except Exception as error:  # noqa: BLE001 - any failure here means "AWS unreachable"
        code = error_code(error)
        return (
            fail(
                "aws.credentials",
                f"cannot reach AWS: {code}: {first_line(error)}",
                _CREDENTIAL_HINTS.get(code, "check credentials, --profile and --endpoint-url"),
                slug=translate(error, "sts:GetCallerIdentity").slug,
            ),
            None,
        )
    arn = str(identity.get("Arn", ""))
    return ok("aws.credentials", f"{arn} (account {identity.get('Account', '?')})"), arn


def check_region(region: str | None) -> Check:
    """Is a region resolved? Every Lambda call is regional."""
    if not region:
        return fail("aws.region", "no region", "pass --region or set AWS_REGION")
    return ok("aws.region", region)
