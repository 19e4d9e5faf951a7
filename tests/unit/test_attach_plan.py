"""The attach/detach planner, pure: configurations in, plans out, no AWS."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdacov import conventions
from lambdacov.attach.plan import (
    MAX_ENVIRONMENT_BYTES,
    AttachSettings,
    FunctionPlan,
    environment_size,
    plan_attach,
    plan_detach,
)
from lambdacov.attach.record import TAG_PREFIX, AttachRecord, EnvChange, decode_tags, encode_tags
from lambdacov.errors import UsageError
from lambdacov.policy import evaluate

REGION, ACCOUNT = "eu-west-1", "123456789012"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
LAYER = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:lambdacov-python312-x86_64:7"
OLD_LAYER = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:lambdacov-python312-x86_64:3"
SETTINGS = AttachSettings.create("cov-bucket", prefix="team/", branch=True)


def other_layer(name: str, version: int = 1) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:{version}"


def config(
    *,
    layers: list[str] | tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    runtime: str = "python3.12",
    handler: str = "app.handler",
    arch: str = "x86_64",
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "FunctionName": "orders",
        "FunctionArn": ARN,
        "Runtime": runtime,
        "Handler": handler,
        "Role": f"arn:aws:iam::{ACCOUNT}:role/service-role/orders-role",
        "Architectures": [arch],
        "Layers": [{"Arn": layer, "CodeSize": 1} for layer in layers],
    }
    if env is not None:
        document["Environment"] = {"Variables": env}
    return document


def applied(
    configuration: dict[str, Any], tags: dict[str, str], plan: FunctionPlan
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the function looks like after apply(plan): the planner's view of AWS."""
    if plan.action != "update":
        return configuration, tags
    after = dict(configuration)
    after["Layers"] = [{"Arn": layer, "CodeSize": 1} for layer in plan.layers_after]
    after["Environment"] = {"Variables": dict(plan.env_after)}
    new_tags = {k: v for k, v in tags.items() if k not in plan.remove_tags} | dict(plan.set_tags)
    return after, new_tags


def shape(configuration: dict[str, Any]) -> tuple[list[str], dict[str, str], str]:
    env = (configuration.get("Environment") or {}).get("Variables") or {}
    return [layer["Arn"] for layer in configuration["Layers"]], dict(env), configuration["Handler"]


# Configurations users have: other layers (maybe an older lambdacov one), any variables,
# maybe another tool's exec wrapper or handler redirect.
names = st.from_regex(r"[A-Z][A-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not n.startswith(("COVERAGE_", "LAMBDACOV_", "AWS_"))
)
values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
layer_lists = st.lists(
    st.sampled_from(["vendor", "utils", "deps", "ext"]), unique=True, max_size=4
).flatmap(
    lambda picks: st.permutations(
        [other_layer(p) for p in picks] + ([OLD_LAYER] if len(picks) % 2 else [])
    )
)
wrappers = st.sampled_from([None, "/opt/datadog_wrapper", "/opt/otel-instrument"])
handlers = st.sampled_from(["app.handler", "datadog_lambda.handler.handler", "pkg/mod.fn"])


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    env = draw(st.dictionaries(names, values, max_size=6))
    wrapper = draw(wrappers)
    if wrapper:
        env[conventions.EXEC_WRAPPER_VAR] = wrapper
    if draw(st.booleans()):
        env["COVERAGE_S3_PREFIX"] = "user-chosen/"  # a lambdacov variable the user set first
    return config(layers=draw(layer_lists)[:5], env=env, handler=draw(handlers))


@settings(max_examples=150, deadline=None)
@given(configurations())
def test_attach_then_detach_restores_any_configuration(original: dict[str, Any]) -> None:
    plan = plan_attach(original, {}, SETTINGS, LAYER)
    assert plan.action == "update", plan.reason
    attached, tags = applied(original, {}, plan)
    layers, env, handler = shape(attached)
    assert LAYER in layers and handler == original["Handler"]
    assert env[conventions.EXEC_WRAPPER_VAR] == conventions.WRAPPER_PATH
    assert env["COVERAGE_S3_BUCKET"] == "cov-bucket"

    again = plan_attach(attached, tags, SETTINGS, LAYER)
    assert again.action == "unchanged"

    undo = plan_detach(attached, tags)
    restored, left_tags = applied(attached, tags, undo)
    assert shape(restored)[:2] == shape(original)[:2]
    assert left_tags == {}
    assert plan_detach(restored, left_tags).action == "unchanged"


@settings(max_examples=60, deadline=None)
@given(configurations(), values)
def test_detach_keeps_what_the_user_changed_after_attach(
    original: dict[str, Any], new_value: str
) -> None:
    attached, tags = applied(original, {}, plan_attach(original, {}, SETTINGS, LAYER))
    env = dict(attached["Environment"]["Variables"])
    env["COVERAGE_S3_BUCKET"] = "their-own-" + new_value
    env["USER_ADDED_LATER"] = "x"
    attached["Environment"] = {"Variables": env}
    restored, _ = applied(attached, tags, plan_detach(attached, tags))
    after = restored["Environment"]["Variables"]
    assert after["COVERAGE_S3_BUCKET"] == "their-own-" + new_value
    assert after["USER_ADDED_LATER"] == "x"
    assert conventions.EXEC_WRAPPER_VAR not in after or original["Environment"]["Variables"].get(
        conventions.EXEC_WRAPPER_VAR
    )


def test_an_existing_exec_wrapper_is_chained_and_restored() -> None:
    original = config(env={conventions.EXEC_WRAPPER_VAR: "/opt/vendor-wrapper", "A": "1"})
    plan = plan_attach(original, {}, SETTINGS, LAYER)
    assert plan.env_after[conventions.EXEC_WRAPPER_VAR] == conventions.WRAPPER_PATH
    assert plan.env_after[conventions.NEXT_WRAPPER_VAR] == "/opt/vendor-wrapper"
    attached, tags = applied(original, {}, plan)
    restored, _ = applied(attached, tags, plan_detach(attached, tags))
    assert restored["Environment"]["Variables"] == {
        conventions.EXEC_WRAPPER_VAR: "/opt/vendor-wrapper",
        "A": "1",
    }


def test_a_vendor_handler_redirect_is_kept_and_never_pointed_at_itself() -> None:
    vendor = config(handler="datadog_lambda.handler.handler", env={"DD_LAMBDA_HANDLER": "app.h"})
    plan = plan_attach(vendor, {}, SETTINGS, LAYER)
    assert plan.action == "update" and plan.handler == "datadog_lambda.handler.handler"
    assert conventions.ORIGINAL_HANDLER_VAR not in plan.env_after  # the wrapper sets it at run time

    looping = config(handler=conventions.REDIRECT_HANDLER)
    refused = plan_attach(looping, {}, SETTINGS, LAYER)
    assert refused.action == "refuse" and "point at itself" in refused.reason
    manual = config(
        handler=conventions.REDIRECT_HANDLER,
        env={conventions.ORIGINAL_HANDLER_VAR: "app.handler"},
    )
    assert plan_attach(manual, {}, SETTINGS, LAYER).action == "update"


def test_an_older_lambdacov_layer_is_replaced_in_place_and_restored() -> None:
    layers = [other_layer("a"), OLD_LAYER, other_layer("b")]
    original = config(layers=layers, env={})
    plan = plan_attach(original, {}, SETTINGS, LAYER)
    assert plan.layers_after == (other_layer("a"), LAYER, other_layer("b"))
    attached, tags = applied(original, {}, plan)
    restored, _ = applied(attached, tags, plan_detach(attached, tags))
    assert shape(restored)[0] == layers


def test_attaching_a_newer_layer_keeps_the_original_record() -> None:
    original = config(layers=[other_layer("a")], env={"COVERAGE_S3_PREFIX": "mine/"})
    attached, tags = applied(original, {}, plan_attach(original, {}, SETTINGS, OLD_LAYER))
    plan = plan_attach(attached, tags, SETTINGS, LAYER)
    assert plan.action == "update"
    assert plan.layers_after == (other_layer("a"), LAYER)
    upgraded, tags = applied(attached, tags, plan)
    record = decode_tags(tags)
    assert record is not None and record.layer_added == LAYER and record.layer_replaced is None
    assert EnvChange("COVERAGE_S3_PREFIX", "mine/", "team/") in record.env
    restored, _ = applied(upgraded, tags, plan_detach(upgraded, tags))
    assert shape(restored)[:2] == shape(original)[:2]


def test_reattaching_with_fewer_options_drops_the_old_ones() -> None:
    original = config(env={})
    attached, tags = applied(original, {}, plan_attach(original, {}, SETTINGS, LAYER))
    plain = AttachSettings.create("cov-bucket")
    again, tags = applied(attached, tags, plan_attach(attached, tags, plain, LAYER))
    assert "COVERAGE_BRANCH" not in again["Environment"]["Variables"]
    assert plan_attach(again, tags, plain, LAYER).action == "unchanged"


@pytest.mark.parametrize(
    ("configuration", "layer", "words"),
    [
        (config(layers=[other_layer(f"l{i}") for i in range(5)]), LAYER, "5 layers"),
        (config(env={"BIG": "x" * (MAX_ENVIRONMENT_BYTES - 60)}), LAYER, "4096-byte"),
        (config(arch="arm64"), None, "no lambdacov layer for python3.12 arm64 in eu-west-1"),
        (config(runtime="python3.9"), LAYER, "python3.9 is not supported"),
        (config(env={conventions.EXEC_WRAPPER_VAR: "wrapper.sh"}), LAYER, "absolute path"),
        (
            config(
                env={
                    conventions.EXEC_WRAPPER_VAR: "/opt/a",
                    conventions.NEXT_WRAPPER_VAR: "/opt/b",
                }
            ),
            LAYER,
            "one wrapper only",
        ),
    ],
)
def test_refusals_change_nothing_and_say_why(
    configuration: dict[str, Any], layer: str | None, words: str
) -> None:
    plan = plan_attach(configuration, {}, SETTINGS, layer)
    assert plan.action == "refuse"
    assert words in plan.reason
    assert "\n" not in plan.reason
    assert not plan.set_tags and not plan.configuration_changes


def test_five_layers_including_ours_is_fine() -> None:
    layers = [other_layer(f"l{i}") for i in range(4)] + [OLD_LAYER]
    assert plan_attach(config(layers=layers), {}, SETTINGS, LAYER).action == "update"


def test_environment_size_is_the_json_of_the_variables() -> None:
    assert environment_size({"A": "1"}) == len('{"A":"1"}')
    assert environment_size({"É": "é"}) == len('{"É":"é"}'.encode())


def test_non_python_functions_are_skipped() -> None:
    node = config(runtime="nodejs20.x")
    assert plan_attach(node, {}, SETTINGS, LAYER).action == "skip"
    assert "nodejs20.x" in plan_attach(node, {}, SETTINGS, LAYER).reason
    assert plan_detach(node, {}).action == "skip"
    # A container image function is planned, not skipped (tests/functional/test_image_functions.py).
    image = config() | {"PackageType": "Image", "Runtime": None}
    assert plan_attach(image, {}, SETTINGS, LAYER).action == "refuse"  # no command to redirect


def test_detach_without_a_record_changes_nothing() -> None:
    plan = plan_detach(config(layers=[LAYER], env={"A": "1"}), {})
    assert plan.action == "unchanged" and "no record" in plan.reason


def test_a_damaged_record_is_refused() -> None:
    tags = {f"{TAG_PREFIX}0": "not base64!", "team": "x"}
    assert plan_detach(config(), tags).action == "refuse"
    assert plan_attach(config(), tags, SETTINGS, LAYER).action == "refuse"
    assert plan_detach(config(), {f"{TAG_PREFIX}1": "abc"}).action == "refuse"


def test_the_record_round_trips_through_tags_of_at_most_256_characters() -> None:
    big = tuple(
        sorted(
            (EnvChange(f"V{i}", "v" * 200 + str(i), f"after{i}") for i in range(20)),
            key=lambda change: change.name,
        )
    )
    record = AttachRecord(LAYER, OLD_LAYER, big, ("role", "lambdacov-orders"))
    tags = encode_tags(record)
    assert len(tags) > 1
    assert all(len(value) <= 256 for value in tags.values())
    alphabet = set(string.ascii_letters + string.digits + "+/=")
    assert all(set(value) <= alphabet for value in tags.values())
    assert decode_tags(tags | {"other": "tag"}) == record


def test_the_record_needs_free_tags() -> None:
    tags = {f"user{i}": "x" for i in range(50)}
    plan = plan_attach(config(), tags, SETTINGS, LAYER)
    assert plan.action == "refuse" and "tags" in plan.reason


def test_the_json_plan_shows_only_changed_variables() -> None:
    plan = plan_attach(config(env={"DB_PASSWORD": "hunter2"}), {}, SETTINGS, LAYER)
    assert "hunter2" not in repr(plan.to_dict())
    assert "hunter2" not in repr(plan)


def test_settings_are_validated_like_the_runtime_validates_them() -> None:
    with pytest.raises(UsageError, match="COVERAGE_S3_BUCKET"):
        AttachSettings.create("s3://nope")
    with pytest.raises(UsageError, match="COVERAGE_SAMPLE_RATE"):
        AttachSettings.create("bucket", sample_rate=2)
    assert dict(AttachSettings.create("bucket", include=("a/*", "b/*")).variables) == {
        "COVERAGE_S3_BUCKET": "bucket",
        "COVERAGE_INCLUDE_PATTERNS": "a/*,b/*",
    }


def test_grant_plans_the_least_privilege_policy() -> None:
    with_key = AttachSettings.create("bucket", prefix="p", kms_key_id="1234abcd", grant=True)
    plan = plan_attach(config(), {}, with_key, LAYER)
    assert plan.grant is not None
    assert plan.grant.role_name == "orders-role" and plan.grant.policy_name == "lambdacov-orders"
    assert plan.grant.document["Statement"] == [
        {
            "Sid": "LambdacovPutCoverage",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::bucket/p/*",
        },
        {
            "Sid": "LambdacovFindSources",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::bucket/p/sources/*",
        },
        {
            "Sid": "LambdacovEncryptCoverage",
            "Effect": "Allow",
            "Action": "kms:GenerateDataKey",
            "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd",
        },
    ]
    detach = plan_detach(*applied(config(), {}, plan))
    assert detach.revoke == ("orders-role", "lambdacov-orders")


def test_local_policy_evaluation() -> None:
    role_policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:Put*", "Resource": "arn:aws:s3:::bucket/*"},
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Condition": {"x": {}}},
            {
                "Effect": "Deny",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::bucket/secret/*",
            },
        ]
    }

    def granted(action: str, resource: str) -> bool:
        return evaluate([role_policy], action, resource).granted

    assert granted("s3:PutObject", "arn:aws:s3:::bucket/coverage/*")
    assert granted("S3:putobject", "arn:aws:s3:::bucket/x")
    assert not granted("s3:PutObject", "arn:aws:s3:::other/x")
    # Allowed only under a Condition: attach does not count it as the role having the policy.
    assert not granted("kms:GenerateDataKey", "arn:aws:kms:r:1:key/k")
    assert not granted("s3:PutObject", "arn:aws:s3:::bucket/secret/*")
