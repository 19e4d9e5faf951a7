"""A small, local evaluator of IAM policy documents, for when policy simulation is unavailable.

It follows IAM's order (an explicit Deny wins, then an Allow, else an implicit
deny) over Action/NotAction, Resource/NotResource and Principal, with ``*``
and ``?`` wildcards. Conditions are not evaluated: a statement with a
Condition is counted as matching and the decision is marked conditional.
Permission boundaries, SCPs and session policies are not seen, which is why
the doctor labels such results "estimated".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

Decision = Literal["allowed", "denied", "implicit"]


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome for one action on one resource."""

    decision: Decision
    conditional: bool = False
    statements: tuple[str, ...] = ()  # the Sid (or index) of the statements that decided


@cache
def _pattern(glob: str, *, case: bool) -> re.Pattern[str]:
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in glob
    )
    return re.compile(f"^{body}$", 0 if case else re.IGNORECASE)


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _any_match(globs: Iterable[str], text: str, *, case: bool) -> bool:
    return any(_pattern(glob, case=case).match(text) for glob in globs)


def _matches(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    # Actions compare case-insensitively, resources (ARNs) case-sensitively, as IAM does.
    if "Action" in statement:
        if not _any_match(_listed(statement["Action"]), action, case=False):
            return False
    elif "NotAction" in statement:
        if _any_match(_listed(statement["NotAction"]), action, case=False):
            return False
    else:
        return False
    if "Resource" in statement:
        return _any_match(_listed(statement["Resource"]), resource, case=True)
    if "NotResource" in statement:
        return not _any_match(_listed(statement["NotResource"]), resource, case=True)
    return True  # resource policies (bucket policies) may leave Resource implicit


def principal_matches(statement: Mapping[str, Any], principal_arn: str) -> bool:
    """True when a resource policy statement's Principal covers ``principal_arn``."""
    principal = statement.get("Principal")
    if principal is None:
        return "NotPrincipal" in statement  # NotPrincipal: everyone but the listed ones
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        values = _listed(principal.get("AWS"))
        account = principal_arn.split(":")[4] if principal_arn.count(":") >= 5 else ""
        return any(
            value in ("*", principal_arn, account, f"arn:aws:iam::{account}:root")
            for value in values
        )
    return False


def statements(document: Mapping[str, Any] | str) -> list[dict[str, Any]]:
    """The statements of a policy document (a JSON string or an already decoded one)."""
    doc = json.loads(document) if isinstance(document, str) else document
    found = doc.get("Statement", [])
    return [dict(item) for item in (found if isinstance(found, list) else [found])]


def evaluate(
    documents: Iterable[Mapping[str, Any] | str],
    action: str,
    resource: str,
    *,
    principal_arn: str | None = None,
) -> PolicyDecision:
    """Decide ``action`` on ``resource``; with a principal, as a resource policy."""
    allows: list[str] = []
    denies: list[str] = []
    conditional = False
    for document in documents:
        for index, statement in enumerate(statements(document)):
            if principal_arn is not None and not principal_matches(statement, principal_arn):
                continue
            if not _matches(statement, action, resource):
                continue
            conditional = conditional or bool(statement.get("Condition"))
            name = str(statement.get("Sid") or f"statement {index + 1}")
            (denies if statement.get("Effect") == "Deny" else allows).append(name)
    if denies:
        return PolicyDecision("denied", conditional, tuple(denies))
    if allows:
        return PolicyDecision("allowed", conditional, tuple(allows))
    return PolicyDecision("implicit", conditional)
