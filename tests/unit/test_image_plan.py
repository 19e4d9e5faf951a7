"""Attach and detach plans of container image functions, and their record (pure, no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from lambdacov import conventions
from lambdacov.attach.plan import AttachSettings, plan_attach, plan_detach, undo_image
from lambdacov.attach.record import (
    FORMAT_VERSION,
    IMAGE_FORMAT_VERSION,
    AttachRecord,
    EnvChange,
    ImageChange,
    RecordError,
    decode_tags,
    encode_tags,
)
from lambdacov.errors import UsageError

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
REDIRECT = [conventions.REDIRECT_HANDLER]
SETTINGS = AttachSettings.create("cov-data")


def image(
    config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "FunctionName": "orders",
        "FunctionArn": ARN,
        "PackageType": "Image",
        "Architectures": ["arm64"],
    }
    if config is not None:
        configuration["ImageConfigResponse"] = {"ImageConfig": config}
    if env is not None:
        configuration["Environment"] = {"Variables": env}
    return configuration


def applied(configuration: dict[str, Any], plan: Any) -> dict[str, Any]:
    """The configuration after Lambda applied the plan (the whole ImageConfig replaced)."""
    after = dict(configuration)
    after["ImageConfigResponse"] = {"ImageConfig": dict(plan.image_after)}
    after["Environment"] = {"Variables": dict(plan.env_after)}
    return after


def test_the_command_is_redirected_and_nothing_else_of_the_image_config_changes() -> None:
    original = {"EntryPoint": ["/entry.sh"], "Command": ["app.handler"], "WorkingDirectory": "/w"}
    plan = plan_attach(image(original), {}, SETTINGS, None)
    assert plan.action == "update" and plan.is_image
    assert plan.image_after == original | {"Command": REDIRECT}
    assert plan.layers_after == ()
    assert plan.env_after == {
        "COVERAGE_S3_BUCKET": "cov-data",
        conventions.ORIGINAL_HANDLER_VAR: "app.handler",
    }
    record = decode_tags(dict(plan.set_tags))
    assert record is not None and record.image == ImageChange(original, plan.image_after)
    assert plan.to_dict()["image_config"] == {
        "before": original,
        "after": original | {"Command": REDIRECT},
    }


def test_empty_fields_count_as_none_and_no_config_is_restored_as_none() -> None:
    # An emulator shows "no override" as empty fields; Lambda leaves the response out.
    for shown in (None, {}, {"Command": [], "EntryPoint": [], "WorkingDirectory": ""}):
        configuration = image(shown)
        plan = plan_attach(
            configuration, {}, AttachSettings.create("cov-data", image_handler="m.f"), None
        )
        assert plan.image_before == {}
        assert plan.image_after == {"Command": REDIRECT}
        record = decode_tags(dict(plan.set_tags))
        assert record is not None and record.image is not None and record.image.before is None
        detach = plan_detach(applied(configuration, plan), dict(plan.set_tags))
        assert detach.image_after == {}  # sent as ImageConfig={}: every override cleared


def test_attaching_again_keeps_the_original_command_in_the_record() -> None:
    configuration = image({"Command": ["app.handler"]})
    first = plan_attach(configuration, {}, SETTINGS, None)
    attached = applied(configuration, first)
    again = plan_attach(attached, dict(first.set_tags), SETTINGS, None)
    assert again.action == "unchanged"
    other = plan_attach(attached, dict(first.set_tags), AttachSettings.create("other"), None)
    assert other.action == "update"
    assert other.image_after == {"Command": REDIRECT}
    assert other.env_after[conventions.ORIGINAL_HANDLER_VAR] == "app.handler"
    record = decode_tags(dict(other.set_tags))
    assert record is not None and record.image is not None
    assert record.image.before == {"Command": ["app.handler"]}


def test_detach_keeps_a_field_changed_since_attach() -> None:
    record = AttachRecord(
        env=(EnvChange(conventions.ORIGINAL_HANDLER_VAR, None, "app.handler"),),
        image=ImageChange(
            {"Command": ["app.handler"], "WorkingDirectory": "/w"},
            {"Command": REDIRECT, "WorkingDirectory": "/w"},
        ),
    )
    # Someone pointed the command elsewhere and dropped the working directory after attach.
    assert undo_image(record, {"Command": ["other.handler"]}) == {"Command": ["other.handler"]}
    assert undo_image(record, {"Command": REDIRECT, "WorkingDirectory": "/w"}) == {
        "Command": ["app.handler"],
        "WorkingDirectory": "/w",
    }


def test_only_image_records_carry_version_2() -> None:
    zip_record = AttachRecord("arn:layer", None, (EnvChange("A", None, "1"),))
    assert zip_record.to_dict()["v"] == FORMAT_VERSION
    assert decode_tags(encode_tags(zip_record)) == zip_record
    image_record = AttachRecord(image=ImageChange(None, {"Command": REDIRECT}))
    assert image_record.to_dict()["v"] == IMAGE_FORMAT_VERSION
    assert decode_tags(encode_tags(image_record)) == image_record
    with pytest.raises(RecordError):
        AttachRecord.from_dict({"v": IMAGE_FORMAT_VERSION, "layer": {}, "env": {}})


def test_a_bad_image_handler_option_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a handler"):
        AttachSettings.create("cov-data", image_handler="python -m app")


def test_an_image_function_without_a_record_detaches_to_unchanged() -> None:
    plan = plan_detach(image({"Command": ["app.handler"]}), {})
    assert plan.action == "unchanged" and not plan.image_changes
