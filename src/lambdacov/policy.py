"""The one local evaluator of IAM policy documents, shared by ``attach`` and ``doctor``.

IAM's policy simulator is not available everywhere (moto has none, and callers
may lack ``iam:SimulatePrincipalPolicy``), so both commands decide locally
whether a role, or a bucket policy, allows an action on a resource. They must
agree, so there is exactly one evaluator, here, outside the doctor package so
that attach does not depend on it.

It follows IAM's order: an explicit Deny wins, then an Allow, else the
request is implicitly denied. A statement matches when its ``Action`` (or
everything but its ``NotAction``) covers the action and its ``Resource`` (or
everything but its ``NotResource``) covers the resource; evaluated as a
resource policy (``principal_arn`` given), its ``Principal`` (or everything but
its ``NotPrincipal``) must also cover the caller. ``*`` matches any run of
characters and ``?`` any one character; actions compare case-insensitively,
ARNs case-sensitively, as IAM does. A statement whose ``Effect`` is neither
``Allow`` nor ``Deny`` counts as neither. A resource that itself contains a
wildcard (attach asks about ``arn:aws:s3:::bucket/prefix*``) is compared as
text: a statement covers it when its pattern matches that text, so
``bucket/*`` covers ``bucket/prefix*`` and ``bucket/prefix/x`` does not.

Conditions are not evaluated, because their context keys (source IP, TLS,
tags, time) are not known here. A statement with a Condition is counted as
matching, and :attr:`PolicyDecision.conditional` says whether the decision
rests only on such statements, that is, whether the outcome could differ once
the conditions are known. Both commands then read the decision the same way:
only an Allow that does not depend on a Condition (:attr:`PolicyDecision.granted`)
is a grant; attach treats anything else as "the role lacks the policy", and
the doctor reports a conditional outcome as a warning, a certain Allow as ok,
and a certain Deny or implicit deny as a failure.

Permission boundaries, SCPs and session policies are not seen, which is why
the doctor labels locally evaluated results "estimated".
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Decision = Literal["allowed", "denied", "implicit"]

# IAM's order: any explicit Deny beats any Allow.
_ORDER: tuple[tuple[str, Decision], ...] = (("Deny", "denied"), ("Allow", "allowed"))


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome for one action on one resource.

    ``conditional`` is true when every statement that decided it has a
    Condition, so that unmet conditions could change the outcome.
    ``statements`` names the deciding statements by Sid, else by position.
    """

    decision: Decision
    conditional: bool = False
    statements: tuple[str, ...] = ()

    @property
    def granted(self) -> bool:
        """Allowed whatever the unevaluated Conditions turn out to be."""
        return self.decision == "allowed" and not self.conditional


def document(raw: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """A policy document: decoded by boto3, JSON text, or URL-encoded JSON as IAM's API sends it."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    # Only undo URL encoding when it is there: a '%' in a plain JSON ARN is a character.
    decoded = json.loads(text if text.startswith("{") else urllib.parse.unquote(text))
    # IAM only stores objects; anything else has no statements rather than a crash.
    return decoded if isinstance(decoded, Mapping) else {}


def statements(raw: Mapping[str, Any] | str) -> list[Mapping[str, Any]]:
    """The statements of a policy document: one statement or a list of them."""
    found = document(raw).get("Statement")
    listed = found if isinstance(found, list) else [found]
    return [item for item in listed if isinstance(item, Mapping)]


def evaluate(
    documents: Iterable[Mapping[str, Any] | str],
    action: str,
    resource: str,
    *,
    principal_arn: str | None = None,
) -> PolicyDecision:
    """Decide ``action`` on ``resource``; with ``principal_arn``, as a resource policy."""
    found: dict[tuple[str, bool], list[str]] = {}
    for raw in documents:
        for index, statement in enumerate(statements(raw)):
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                continue
            if principal_arn is not None and not principal_matches(statement, principal_arn):
                continue
            if not statement_matches(statement, action, resource):
                continue
            name = str(statement.get("Sid") or f"statement {index + 1}")
            found.setdefault((effect, bool(statement.get("Condition"))), []).append(name)
    for effect, decision in _ORDER:
        # A statement without a Condition settles it; conditional ones only might.
        for conditional in (False, True):
            names = found.get((effect, conditional))
            if names:
                return PolicyDecision(decision, conditional, tuple(names))
    return PolicyDecision("implicit")


def statement_matches(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    """Whether the statement's action and resource elements cover ``action`` on ``resource``."""
    if "Action" in statement:
        if not _any_match(statement["Action"], action, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _any_match(statement["NotAction"], action, ignore_case=True):
            return False
    else:
        return False  # IAM refuses such a statement; it grants and denies nothing
    if "Resource" in statement:
        return _any_match(statement["Resource"], resource, ignore_case=False)
    if "NotResource" in statement:
        return not _any_match(statement["NotResource"], resource, ignore_case=False)
    return True  # some resource policies leave the resource implicit: the policy's own


def principal_matches(statement: Mapping[str, Any], principal_arn: str) -> bool:
    """Whether a resource policy statement's Principal (or NotPrincipal) covers the caller."""
    if "Principal" in statement:
        return _principal_covers(statement["Principal"], principal_arn)
    if "NotPrincipal" in statement:
        return not _principal_covers(statement["NotPrincipal"], principal_arn)
    return False


def wildcard_match(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """IAM's glob: ``*`` any run of characters (none included), ``?`` exactly one."""
    return _compiled(pattern, ignore_case).fullmatch(value) is not None


def _principal_covers(principal: Any, principal_arn: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    parts = principal_arn.split(":")
    # A role ARN is arn:PARTITION:iam::ACCOUNT:role/NAME; an account principal names them all.
    account = parts[4] if len(parts) > 5 else None
    named = {"*", principal_arn}
    if account:
        named |= {account, f"arn:{parts[1]}:iam::{account}:root"}
    return any(value in named for value in _strings(principal.get("AWS")))


def _any_match(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    return any(
        wildcard_match(pattern, value, ignore_case=ignore_case) for pattern in _strings(patterns)
    )


def _strings(value: Any) -> list[str]:
    # Non-string entries are malformed; they match nothing rather than their repr.
    listed = value if isinstance(value, list) else [value]
    return [item for item in listed if isinstance(item, str)]


@lru_cache(maxsize=4096)
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    # DOTALL: a wildcard covers any character, newlines included.
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
