"""AWS access: do the credentials work, and which region are we in?"""

from __future__ import annotations

from typing import Any

from lambdacov.aws import translate
from lambdacov.doctor.model import Check, fail, ok


def check_credentials(sts: Any) -> tuple[Check, str | None]:
    """Ask STS who we are; the check and the caller's ARN (None when AWS said no).

    A failure reads as every command reports it (:func:`lambdacov.aws.translate`),
    so the error line that follows the checklist is the one the other commands print.
    """
    try:
        identity = sts.get_caller_identity()
    except Exception as error:  # noqa: BLE001 - any failure here means "AWS unreachable"
        refused = translate(error, "sts:GetCallerIdentity")
        hint = refused.hint or "check credentials, --profile and --endpoint-url"
        check = fail("aws.credentials", refused.message, hint, slug=refused.slug)
        return check, None
    arn = str(identity.get("Arn", ""))
    return ok("aws.credentials", f"{arn} (account {identity.get('Account', '?')})"), arn


def check_region(region: str | None) -> Check:
    """Is a region resolved? Every Lambda call is regional."""
    if not region:
        return fail("aws.region", "no region", "pass --region or set AWS_REGION")
    return ok("aws.region", region)
