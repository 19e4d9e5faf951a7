"""The IAM evaluator attach and doctor share, against a brute-force reference written here.

The reference restates IAM's rules as plainly as possible: a character-by-character
glob matcher (no regular expressions) and the order Deny, then Allow, then
implicit, where a statement without a Condition settles the outcome and one
with a Condition only might. Policies are generated around a small vocabulary
so that matches, near misses and case differences are all common.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lambdacov.policy import evaluate

ACTIONS = ["s3:PutObject", "s3:GetObject", "kms:GenerateDataKey", "iam:PassRole"]
RESOURCES = [
    "arn:aws:s3:::cov/coverage/x.coverage",
    "arn:aws:s3:::cov/coverage/*",
    "arn:aws:s3:::cov/other/x",
    "arn:aws:s3:::Cov/coverage/x.coverage",
    "arn:aws:kms:us-east-1:111122223333:key/*",
    "arn:aws:kms:us-east-1:111122223333:key/abc",
    "arn:aws:s3:::cov/x",
    "arn:aws:s3:::cov/x\n",
]
ROLE = "arn:aws:iam::111122223333:role/fn"
PRINCIPALS = [
    ROLE,
    "arn:aws:iam::111122223333:role/other",
    "arn:aws:iam::111122223333:root",
    "111122223333",
    "444455556666",
    "*",
]


# The reference -------------------------------------------------------------------------------


def glob(pattern: str, text: str) -> bool:
    """IAM's glob by brute force: '*' tries every split, '?' takes one character."""
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(glob(rest, text[cut:]) for cut in range(len(text) + 1))
    if not text:
        return False
    return (head == "?" or head == text[0]) and glob(rest, text[1:])


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def covers_action(patterns: Any, action: str) -> bool:
    # Actions ignore case: compare both lowered (the vocabulary is ASCII).
    return any(glob(pattern.lower(), action.lower()) for pattern in listed(patterns))


def covers_resource(patterns: Any, resource: str) -> bool:
    return any(glob(pattern, resource) for pattern in listed(patterns))


def names_caller(principal: Any, caller: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    account = caller.split(":")[4]
    names = {"*", caller, account, f"arn:aws:iam::{account}:root"}
    return any(value in names for value in listed(principal.get("AWS")))


def applies(statement: dict[str, Any], action: str, resource: str, caller: str | None) -> bool:
    if statement.get("Effect") not in ("Allow", "Deny"):
        return False
    if "Action" in statement:
        action_ok = covers_action(statement["Action"], action)
    elif "NotAction" in statement:
        action_ok = not covers_action(statement["NotAction"], action)
    else:
        action_ok = False
    if "Resource" in statement:
        resource_ok = covers_resource(statement["Resource"], resource)
    elif "NotResource" in statement:
        resource_ok = not covers_resource(statement["NotResource"], resource)
    else:
        resource_ok = True
    if caller is None:
        principal_ok = True
    elif "Principal" in statement:
        principal_ok = names_caller(statement["Principal"], caller)
    elif "NotPrincipal" in statement:
        principal_ok = not names_caller(statement["NotPrincipal"], caller)
    else:
        principal_ok = False
    return action_ok and resource_ok and principal_ok


def reference(
    documents: list[dict[str, Any]], action: str, resource: str, caller: str | None
) -> tuple[str, bool, tuple[str, ...]]:
    """(decision, conditional, deciding statements), by IAM's rules."""
    matched: dict[tuple[str, bool], list[str]] = {}
    for document in documents:
        for index, statement in enumerate(listed(document["Statement"])):
            if applies(statement, action, resource, caller):
                key = (statement["Effect"], bool(statement.get("Condition")))
                name = statement.get("Sid") or f"statement {index + 1}"
                matched.setdefault(key, []).append(name)
    for key, decision in (
        (("Deny", False), ("denied", False)),
        (("Deny", True), ("denied", True)),
        (("Allow", False), ("allowed", False)),
        (("Allow", True), ("allowed", True)),
    ):
        if key in matched:
            return decision[0], decision[1], tuple(matched[key])
    return "implicit", False, ()


# Generated policies --------------------------------------------------------------------------


@st.composite
def pattern(draw: st.DrawFn, vocabulary: list[str]) -> str:
    """A word of the vocabulary, maybe with a slice made '*', a character made '?', case flipped."""
    text = draw(st.sampled_from([*vocabulary, "*"]))
    if draw(st.booleans()) and text:
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, len(text)))
        text = text[:start] + "*" + text[end:]
    for _ in range(draw(st.integers(0, 2))):
        if text:
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + draw(st.sampled_from("?*xX")) + text[at + 1 :]
    if draw(st.booleans()):
        text = text.swapcase() if draw(st.booleans()) else text.upper()
    return text


def one_or_many(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, st.lists(strategy, min_size=1, max_size=3))


@st.composite
def statement(draw: st.DrawFn, *, resource_policy: bool) -> dict[str, Any]:
    built: dict[str, Any] = {}
    effect = draw(st.sampled_from(["Allow", "Allow", "Deny", "Deny", "allow", None]))
    if effect is not None:
        built["Effect"] = effect
    if draw(st.booleans()):
        built["Sid"] = draw(st.sampled_from(["A", "B", "C"]))
    action_key = draw(st.sampled_from(["Action", "Action", "NotAction", None]))
    if action_key:
        built[action_key] = draw(one_or_many(pattern(ACTIONS)))
    resource_key = draw(st.sampled_from(["Resource", "Resource", "NotResource", None]))
    if resource_key:
        built[resource_key] = draw(one_or_many(pattern(RESOURCES)))
    condition = draw(
        st.sampled_from([None, {}, {"Bool": {"aws:SecureTransport": "true"}}, {"x": {}}])
    )
    if condition is not None:
        built["Condition"] = condition
    if resource_policy:
        principal_key = draw(st.sampled_from(["Principal", "Principal", "NotPrincipal", None]))
        if principal_key:
            built[principal_key] = draw(
                st.one_of(
                    st.just("*"),
                    st.builds(
                        lambda values: {"AWS": values}, one_or_many(st.sampled_from(PRINCIPALS))
                    ),
                    st.just({"Service": "lambda.amazonaws.com"}),
                )
            )
    return built


def documents(*, resource_policy: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    one = st.builds(
        lambda items, single: {
            "Version": "2012-10-17",
            "Statement": items[0] if single and len(items) == 1 else items,
        },
        st.lists(statement(resource_policy=resource_policy), max_size=4),
        st.booleans(),
    )
    return st.lists(one, max_size=3)


def encoded(document: dict[str, Any], how: int) -> Any:
    """The same document as boto3 returns it, as JSON text, or URL-encoded as IAM's API sends it."""
    text = json.dumps(document)
    return [document, text, urllib.parse.quote(text)][how]


def action_asked() -> st.SearchStrategy[str]:
    return st.sampled_from(ACTIONS).flatmap(lambda a: st.sampled_from([a, a.upper(), a.lower()]))


# Properties ----------------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    documents(resource_policy=False),
    action_asked(),
    st.sampled_from(RESOURCES),
    st.lists(st.integers(0, 2), min_size=3, max_size=3),
)
def test_identity_policies_match_the_reference(
    docs: list[dict[str, Any]], action: str, resource: str, encodings: list[int]
) -> None:
    given_docs = [encoded(doc, how) for doc, how in zip(docs, encodings, strict=False)]
    decided = evaluate(given_docs, action, resource)
    expected = reference(docs, action, resource, None)
    assert (decided.decision, decided.conditional, decided.statements) == expected
    # What attach counts as "the role already allows it": an Allow that no Condition qualifies.
    assert decided.granted == (expected[0] == "allowed" and not expected[1])


@settings(max_examples=400, deadline=None)
@given(
    documents(resource_policy=True),
    action_asked(),
    st.sampled_from(RESOURCES),
    st.sampled_from([ROLE, "arn:aws:iam::444455556666:role/fn"]),
)
def test_resource_policies_match_the_reference(
    docs: list[dict[str, Any]], action: str, resource: str, caller: str
) -> None:
    decided = evaluate(docs, action, resource, principal_arn=caller)
    assert (decided.decision, decided.conditional, decided.statements) == reference(
        docs, action, resource, caller
    )


def test_the_managed_power_user_policy_grants_s3_and_kms_but_not_iam() -> None:
    power_user = {
        "Statement": [
            {
                "Effect": "Allow",
                "NotAction": ["iam:*", "organizations:*", "account:*"],
                "Resource": "*",
            }
        ]
    }
    assert evaluate([power_user], "s3:PutObject", "arn:aws:s3:::cov/coverage/*").granted
    assert evaluate([power_user], "kms:GenerateDataKey", "arn:aws:kms:r:1:key/*").granted
    assert evaluate([power_user], "IAM:PassRole", ROLE).decision == "implicit"


def test_a_condition_qualifies_allows_and_denies_alike() -> None:
    secure = {"Bool": {"aws:SecureTransport": "true"}}
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*", "Condition": secure}
    only_if = evaluate([{"Statement": [{**allow, "Condition": secure}]}], "s3:PutObject", "x")
    assert (only_if.decision, only_if.conditional, only_if.granted) == ("allowed", True, False)
    maybe_denied = evaluate([{"Statement": [allow, deny]}], "s3:PutObject", "x")
    assert (maybe_denied.decision, maybe_denied.conditional) == ("denied", True)
    certain = evaluate(
        [{"Statement": [deny, {**deny, "Condition": {}, "Sid": "Hard"}]}], "s3:PutObject", "x"
    )
    assert (certain.decision, certain.conditional, certain.statements) == (
        "denied",
        False,
        ("Hard",),
    )


def test_tricky_globs_agree_with_the_reference() -> None:
    """Corners a regular expression gets wrong easily: '$' before a newline, metacharacters."""
    cases = [
        ("arn:aws:s3:::cov/x", "arn:aws:s3:::cov/x\n"),
        ("arn:aws:s3:::cov/?", "arn:aws:s3:::cov/x\n"),
        ("arn:aws:s3:::cov/*", "arn:aws:s3:::cov/x\ny"),
        ("arn:aws:s3:::cov/a.b", "arn:aws:s3:::cov/aXb"),
        ("arn:aws:s3:::cov/(a)+[b]", "arn:aws:s3:::cov/(a)+[b]"),
        ("arn:aws:s3:::cov/??", "arn:aws:s3:::cov/x"),
        ("arn:aws:s3:::cov/*?*", "arn:aws:s3:::cov/"),
        ("arn:aws:s3:::cov/**", "arn:aws:s3:::cov/"),
        ("arn:aws:s3:::COV/*", "arn:aws:s3:::cov/x"),
    ]
    for pattern, resource in cases:
        policy = {"Statement": {"Effect": "Allow", "Action": "s3:PutObject", "Resource": pattern}}
        decided = evaluate([policy], "S3:PUTOBJECT", resource).decision
        assert (decided == "allowed") == glob(pattern, resource), (pattern, resource)
