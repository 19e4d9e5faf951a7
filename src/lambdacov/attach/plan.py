"""Plan, then apply: what attach and detach change on one function.

:func:`plan_attach` and :func:`plan_detach` are pure: a function's
configuration and tags in, a frozen :class:`FunctionPlan` out, refusals
included as data, so ``--dry-run`` shows exactly what :func:`apply` would do
(after newrelic-lambda-cli's ``_add_new_relic``).

Attach is declarative: it first undoes its own previous record (if any) on
paper, then attaches afresh. So attaching twice with the same options is a
no-op, attaching with other options replaces exactly lambdacov's entries, and
the record always holds the values from before the first attach.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from coverage_wrapper.errors import ConfigurationError
from coverage_wrapper.models import CoverageConfig
from lambdacov import conventions
from lambdacov.attach import iam
from lambdacov.attach.record import (
    MAX_TAGS,
    AttachRecord,
    EnvChange,
    ImageChange,
    RecordError,
    decode_tags,
    encode_tags,
    record_tag_keys,
)
from lambdacov.aws import Retrier, translating
from lambdacov.errors import AwsError, UsageError

#: Lambda's limits: layers per function, and the environment's size (its JSON, in bytes).
MAX_LAYERS = 5
MAX_ENVIRONMENT_BYTES = 4096
#: How long apply waits for one update to finish.
MAX_WAIT_SECONDS = 300.0
#: The fields of a container image function's ImageConfig, as UpdateFunctionConfiguration
#: takes them: it replaces the whole ImageConfig, so every update sends all that are set.
IMAGE_FIELDS = ("EntryPoint", "Command", "WorkingDirectory")
# A Python handler as Lambda names it: module path, a dot, the function.
_HANDLER = re.compile(r"[A-Za-z0-9_./-]+\.[A-Za-z_][A-Za-z0-9_]*")

Action = Literal["update", "unchanged", "skip", "refuse"]
Kind = Literal["attach", "detach"]
#: What apply is doing to a function: putting the role policy, writing or removing
#: the record, updating the configuration, putting the record back after a failed
#: update, deleting the role policy, or finished.
Step = Literal["grant", "record", "update", "restore", "revoke", "done"]


@dataclass(frozen=True)
class AttachSettings:
    """The COVERAGE_* variables attach sets, and whether to grant the role its policy."""

    variables: tuple[tuple[str, str], ...]
    bucket: str
    prefix: str
    kms_key_id: str | None = None
    grant: bool = False
    #: The handler a container image's CMD names, for image functions whose
    #: ImageConfig sets no command (Lambda does not show the image's CMD).
    image_handler: str | None = None

    @classmethod
    def create(
        cls,
        bucket: str,
        *,
        prefix: str | None = None,
        include: tuple[str, ...] = (),
        omit: tuple[str, ...] = (),
        sample_rate: float | None = None,
        branch: bool | None = None,
        flush: str | None = None,
        kms_key_id: str | None = None,
        upload_timeout: float | None = None,
        debug: bool | None = None,
        grant: bool = False,
        image_handler: str | None = None,
    ) -> AttachSettings:
        """Validated settings; only the options given become variables (the rest keep defaults).

        Raises UsageError for a value the runtime would reject, so a bad
        option fails here instead of turning coverage off in Lambda.
        """
        optional: dict[str, str | None] = {
            "COVERAGE_S3_PREFIX": prefix,
            "COVERAGE_INCLUDE_PATTERNS": ",".join(include) or None,
            "COVERAGE_EXCLUDE_PATTERNS": ",".join(omit) or None,
            "COVERAGE_SAMPLE_RATE": None if sample_rate is None else f"{sample_rate:g}",
            "COVERAGE_BRANCH": None if branch is None else str(branch).lower(),
            "COVERAGE_FLUSH": flush,
            "COVERAGE_KMS_KEY_ID": kms_key_id,
            "COVERAGE_UPLOAD_TIMEOUT": None if upload_timeout is None else f"{upload_timeout:g}",
            "COVERAGE_DEBUG": None if debug is None else str(debug).lower(),
        }
        variables = {"COVERAGE_S3_BUCKET": bucket}
        variables.update({name: value for name, value in optional.items() if value is not None})
        try:
            config = CoverageConfig.from_environment(variables)
        except ConfigurationError as error:
            raise UsageError(str(error), "fix the option (see docs/configuration.md)") from None
        if image_handler is not None and not _HANDLER.fullmatch(image_handler):
            raise UsageError(
                f"--image-handler {image_handler!r} is not a handler",
                "give it as the image's CMD names it: module.function, e.g. app.handler",
            )
        return cls(
            tuple(sorted(variables.items())),
            config.s3_bucket,
            config.s3_prefix,
            config.kms_key_id,
            grant,
            image_handler,
        )


@dataclass(frozen=True)
class EnvDiff:
    """One variable that changes: None means absent."""

    name: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class FunctionPlan:
    """What attach or detach will do to one function, or why it will not."""

    kind: Kind
    function: str
    arn: str
    action: Action
    reason: str = ""
    layers_before: tuple[str, ...] = ()
    layers_after: tuple[str, ...] = ()
    # Whole maps, needed to send the update; never rendered (they may hold secrets).
    env_before: Mapping[str, str] = field(default_factory=dict, repr=False)
    env_after: Mapping[str, str] = field(default_factory=dict, repr=False)
    handler: str = ""
    set_tags: Mapping[str, str] = field(default_factory=dict)
    remove_tags: tuple[str, ...] = ()
    grant: iam.PolicyGrant | None = None
    revoke: tuple[str, str] | None = None
    previous_tags: Mapping[str, str] = field(default_factory=dict, repr=False)
    # A container image function's ImageConfig (its set fields) before and after;
    # None for a zip function.
    image_before: Mapping[str, Any] | None = None
    image_after: Mapping[str, Any] | None = None

    @property
    def is_image(self) -> bool:
        """Whether the function is a container image (its handler is redirected by its command)."""
        return self.image_before is not None

    @property
    def image_changes(self) -> bool:
        """Whether the function's ImageConfig changes."""
        return self.image_before is not None and dict(self.image_before) != dict(
            self.image_after or {}
        )

    @property
    def region(self) -> str:
        """The function's region, from its ARN."""
        parts = self.arn.split(":")
        return parts[3] if len(parts) > 3 else ""

    @property
    def configuration_changes(self) -> bool:
        """Whether the function's configuration itself changes (not only its tags)."""
        return (
            self.layers_before != self.layers_after
            or dict(self.env_before) != dict(self.env_after)
            or self.image_changes
        )

    def env_diff(self) -> tuple[EnvDiff, ...]:
        """The variables that change, by name."""
        names = sorted(set(self.env_before) | set(self.env_after))
        return tuple(
            EnvDiff(name, self.env_before.get(name), self.env_after.get(name))
            for name in names
            if self.env_before.get(name) != self.env_after.get(name)
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON: changes only, never the values of untouched variables."""
        return {
            "kind": self.kind,
            "function": self.function,
            "arn": self.arn,
            "region": self.region,
            "action": self.action,
            "reason": self.reason,
            "handler": self.handler,
            "layers": {"before": list(self.layers_before), "after": list(self.layers_after)},
            "environment": {
                diff.name: {"before": diff.before, "after": diff.after} for diff in self.env_diff()
            },
            "grant": (
                {"role": self.grant.role_name, "policy": self.grant.policy_name}
                if self.grant
                else None
            ),
            "revoke": ({"role": self.revoke[0], "policy": self.revoke[1]} if self.revoke else None),
            "image_config": (
                {"before": dict(self.image_before), "after": dict(self.image_after or {})}
                if self.image_changes and self.image_before is not None
                else None
            ),
        }


class _RefusalError(Exception):
    """Raised inside the planner to turn into a "refuse" plan."""


def plan_attach(
    configuration: Mapping[str, Any],
    tags: Mapping[str, str],
    settings: AttachSettings,
    layer_arn: str | None,
) -> FunctionPlan:
    """Plan attaching lambdacov to one function.

    ``layer_arn`` is the lambdacov layer version for the function's runtime and
    architecture in its region (None when there is none). The plan adds that
    layer (replacing an older lambdacov layer in place, keeping every other
    layer in order), merges the COVERAGE_* variables, and sets
    AWS_LAMBDA_EXEC_WRAPPER to lambdacov's wrapper, chaining to a wrapper that
    was there. The handler is never rewritten: the wrapper redirects it at run
    time, and a vendor's handler redirect stays first in line.

    A container image function takes no layer (its image carries lambdacov's
    files, docs/where-it-runs.md) and may run an entrypoint that ignores
    AWS_LAMBDA_EXEC_WRAPPER, so its handler is redirected where every Lambda
    image entrypoint reads it: ImageConfig.Command becomes the redirect
    handler, and LAMBDACOV_ORIGINAL_HANDLER keeps the function's own.
    """
    name, arn = _identity(configuration)
    image = _image_config(configuration)
    skip = "" if image is not None else _non_python_reason(configuration)
    if skip:
        return FunctionPlan("attach", name, arn, "skip", skip)
    handler = str(configuration.get("Handler") or "")
    layers, env = _layers(configuration), _variables(configuration)
    try:
        previous = _record(tags)
        base_layers, base_env = undo(previous, layers, env) if previous else (layers, env)
        base_image = undo_image(previous, image) if previous and image is not None else image
        new_image: dict[str, Any] | None = None
        if base_image is not None:
            handler = _image_handler(base_image, settings)
            new_layers, added, replaced = layers, None, None
            wiring = {conventions.ORIGINAL_HANDLER_VAR: handler}
            new_image = base_image | {"Command": [conventions.REDIRECT_HANDLER]}
        else:
            layer_arn = _layer_for(configuration, arn, layer_arn)
            _check_handler(handler, base_env)
            new_layers, added, replaced = _with_layer(base_layers, layer_arn)
            wiring = _wrapper_variables(base_env)
        desired = dict(settings.variables) | wiring
        new_env = base_env | desired
        _check_environment_size(new_env)
        changes = tuple(
            EnvChange(key, base_env.get(key), value)
            for key, value in sorted(desired.items())
            if base_env.get(key) != value
        )
        grant = _grant(configuration, settings, name) if settings.grant else None
        policy = (
            (grant.role_name, grant.policy_name)
            if grant
            else (previous.policy if previous else None)
        )
        image_change = (
            ImageChange(base_image or None, new_image)
            if base_image is not None and new_image is not None and new_image != base_image
            else None
        )
        record = AttachRecord(added, replaced, changes, policy, image_change)
        record_tags = encode_tags(record) if record != AttachRecord() else {}
        _check_tag_count(tags, record_tags)
    except _RefusalError as refusal:
        return FunctionPlan("attach", name, arn, "refuse", str(refusal), handler=handler)

    old_record_tags = {key: tags[key] for key in record_tag_keys(tags)}
    unchanged = (
        new_layers == layers
        and new_env == env
        and new_image == image
        and record_tags == old_record_tags
    )
    return FunctionPlan(
        "attach",
        name,
        arn,
        "unchanged" if unchanged else "update",
        "already attached" if unchanged else "",
        layers,
        new_layers,
        env,
        new_env,
        handler,
        record_tags,
        tuple(sorted(set(old_record_tags) - set(record_tags))),
        grant,
        None,
        old_record_tags,
        image,
        new_image,
    )


def plan_detach(configuration: Mapping[str, Any], tags: Mapping[str, str]) -> FunctionPlan:
    """Plan undoing exactly what attach recorded on one function.

    Lambdacov's layer goes (the lambdacov layer it replaced comes back in its
    place), each variable attach set goes back to its previous value, and
    the record tags and any inline policy --grant put are removed. A layer or
    variable that someone changed after attach is left as it is now.
    """
    name, arn = _identity(configuration)
    handler = str(configuration.get("Handler") or "")
    layers, env = _layers(configuration), _variables(configuration)
    image = _image_config(configuration)
    try:
        record = _record(tags)
    except _RefusalError as refusal:
        return FunctionPlan("detach", name, arn, "refuse", str(refusal), handler=handler)
    if record is None:
        skip = "" if image is not None else _non_python_reason(configuration)
        if skip:
            return FunctionPlan("detach", name, arn, "skip", skip, handler=handler)
        reason = "not attached"
        if any(conventions.is_lambdacov_layer_arn(layer) for layer in layers):
            reason = "not attached by lambdacov attach (no record): its lambdacov layer is kept"
        return FunctionPlan(
            "detach",
            name,
            arn,
            "unchanged",
            reason,
            layers,
            layers,
            env,
            env,
            image_before=image,
            image_after=image,
        )
    new_layers, new_env = undo(record, layers, env)
    new_image = undo_image(record, image) if image is not None else None
    if image is not None:
        handler = env.get(conventions.ORIGINAL_HANDLER_VAR, "")
    return FunctionPlan(
        "detach",
        name,
        arn,
        "update",
        "",
        layers,
        new_layers,
        env,
        new_env,
        handler,
        {},
        record_tag_keys(tags),
        None,
        record.policy,
        image_before=image,
        image_after=new_image,
    )


def undo(
    record: AttachRecord, layers: tuple[str, ...], env: Mapping[str, str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Layers and variables with the record's changes undone, where they are still in place."""
    new_layers = list(layers)
    if record.layer_added in new_layers:
        index = new_layers.index(record.layer_added)
        if record.layer_replaced:
            new_layers[index] = record.layer_replaced
        else:
            del new_layers[index]
    new_env = dict(env)
    for change in record.env:
        if new_env.get(change.name) != change.after:
            continue  # changed since attach: the user's value stays
        if change.before is None:
            del new_env[change.name]
        else:
            new_env[change.name] = change.before
    return tuple(new_layers), new_env


def undo_image(record: AttachRecord | None, image: Mapping[str, Any]) -> dict[str, Any]:
    """An image function's ImageConfig with the record's change undone, field by field.

    A field still as attach set it goes back to its value before attach (or
    away, when it had none); a field someone changed since keeps their value.
    """
    restored = dict(image)
    if record is None or record.image is None:
        return restored
    before = record.image.before or {}
    for key in IMAGE_FIELDS:
        if restored.get(key) != record.image.after.get(key):
            continue  # changed since attach: the user's value stays
        if key in before:
            restored[key] = before[key]
        else:
            restored.pop(key, None)
    return restored


def environment_size(env: Mapping[str, str]) -> int:
    """The size Lambda counts against its 4 KB limit: the variables as compact JSON."""
    return len(json.dumps(dict(env), separators=(",", ":"), ensure_ascii=False).encode())


def _identity(configuration: Mapping[str, Any]) -> tuple[str, str]:
    return str(configuration.get("FunctionName", "")), str(configuration.get("FunctionArn", ""))


def _region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else "its region"


def _layers(configuration: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(layer["Arn"]) for layer in configuration.get("Layers") or ())


def _variables(configuration: Mapping[str, Any]) -> dict[str, str]:
    environment = configuration.get("Environment") or {}
    return {str(k): str(v) for k, v in (environment.get("Variables") or {}).items()}


def _image_config(configuration: Mapping[str, Any]) -> dict[str, Any] | None:
    """A container image function's ImageConfig, its set fields only; None for a zip function.

    Lambda shows an ImageConfig without overrides as absent, empty, or with
    empty fields (an emulator's way): all mean "as the image says".
    """
    if configuration.get("PackageType") != "Image":
        return None
    shown = (configuration.get("ImageConfigResponse") or {}).get("ImageConfig") or {}
    config: dict[str, Any] = {}
    for key in IMAGE_FIELDS:
        value = shown.get(key)
        if value:
            config[key] = [str(item) for item in value] if isinstance(value, list) else str(value)
    return config


def _image_handler(image: Mapping[str, Any], settings: AttachSettings) -> str:
    """The handler an image function runs: its ImageConfig command, else --image-handler."""
    command = list(image.get("Command") or [])
    if not command:
        if settings.image_handler:
            return settings.image_handler
        raise _RefusalError(
            "a container image function whose ImageConfig sets no command: Lambda does not show "
            "the handler its image's CMD names; pass --image-handler (e.g. app.handler)"
        )
    if command == [conventions.REDIRECT_HANDLER]:
        raise _RefusalError(
            f"ImageConfig.Command is already {conventions.REDIRECT_HANDLER} and no lambdacov "
            "record says what it was: set the command back to the function's handler"
        )
    if len(command) != 1 or not _HANDLER.fullmatch(command[0]):
        raise _RefusalError(
            f"ImageConfig.Command {command!r} is not one handler (module.function): lambdacov "
            "redirects a command that names the handler, as AWS base images and awslambdaric take"
        )
    return str(command[0])


def _non_python_reason(configuration: Mapping[str, Any]) -> str:
    runtime = str(configuration.get("Runtime") or "")
    if not runtime.startswith("python"):
        return f"{runtime or 'unknown'} runtime: lambdacov measures Python functions only"
    return ""


def _python_runtime(configuration: Mapping[str, Any]) -> tuple[str, str]:
    runtime = str(configuration.get("Runtime") or "")
    if runtime not in conventions.PYTHON_RUNTIMES:
        raise _RefusalError(
            f"{runtime} is not supported (lambdacov supports "
            f"{', '.join(conventions.PYTHON_RUNTIMES)})"
        )
    architectures = configuration.get("Architectures") or ["x86_64"]
    return runtime, str(architectures[0])


def _layer_for(configuration: Mapping[str, Any], arn: str, layer_arn: str | None) -> str:
    runtime, arch = _python_runtime(configuration)
    if layer_arn is None:
        raise _RefusalError(
            f"no lambdacov layer for {runtime} {arch} in {_region(arn)}: run "
            f"`lambdacov publish-layer --python {runtime[6:]} --arch {arch} "
            f"--region {_region(arn)}` or pass --layer-arn"
        )
    return layer_arn


def _record(tags: Mapping[str, str]) -> AttachRecord | None:
    try:
        return decode_tags(tags)
    except RecordError as error:
        raise _RefusalError(
            f"the lambdacov:record tags cannot be read ({error}); "
            "restore them, or remove them and undo attach by hand"
        ) from None


def _check_handler(handler: str, env: Mapping[str, str]) -> None:
    # The redirect handler with no original to load would import itself forever.
    original = env.get(conventions.ORIGINAL_HANDLER_VAR)
    if original == conventions.REDIRECT_HANDLER or (
        handler == conventions.REDIRECT_HANDLER and not original
    ):
        raise _RefusalError(
            f"the handler would point at itself: it is {handler!r} and "
            f"{conventions.ORIGINAL_HANDLER_VAR} is {original!r}; "
            "set the handler back to the function's own (e.g. app.handler)"
        )


def _wrapper_variables(env: Mapping[str, str]) -> dict[str, str]:
    """AWS_LAMBDA_EXEC_WRAPPER for lambdacov, chaining to the wrapper it replaces."""
    wanted = {conventions.EXEC_WRAPPER_VAR: conventions.WRAPPER_PATH}
    current = env.get(conventions.EXEC_WRAPPER_VAR) or ""
    if current in ("", conventions.WRAPPER_PATH):
        return wanted
    if not current.startswith("/"):
        raise _RefusalError(
            f"{conventions.EXEC_WRAPPER_VAR} is {current!r}, not an absolute path: "
            "lambdacov cannot chain to it"
        )
    chained = env.get(conventions.NEXT_WRAPPER_VAR)
    if chained and chained != current:
        raise _RefusalError(
            f"{conventions.EXEC_WRAPPER_VAR} is {current!r} and "
            f"{conventions.NEXT_WRAPPER_VAR} already names {chained!r}: "
            "lambdacov can chain to one wrapper only"
        )
    return wanted | {conventions.NEXT_WRAPPER_VAR: current}


def _unversioned(arn: str) -> str:
    return arn.rsplit(":", 1)[0]


def _with_layer(
    layers: tuple[str, ...], layer_arn: str
) -> tuple[tuple[str, ...], str | None, str | None]:
    """(new layers, layer added, layer it replaced), refusing when there is no room."""
    ours = [
        index
        for index, layer in enumerate(layers)
        if conventions.is_lambdacov_layer_arn(layer)
        or _unversioned(layer) == _unversioned(layer_arn)
    ]
    if len(ours) > 1:
        raise _RefusalError(f"the function has {len(ours)} lambdacov layers: remove all but one")
    if ours:
        index = ours[0]
        if layers[index] == layer_arn:
            return layers, None, None
        updated = (*layers[:index], layer_arn, *layers[index + 1 :])
        return updated, layer_arn, layers[index]
    if len(layers) >= MAX_LAYERS:
        raise _RefusalError(
            f"the function already has {len(layers)} layers, Lambda's maximum: "
            "remove one to make room for lambdacov's"
        )
    return (*layers, layer_arn), layer_arn, None


def _check_environment_size(env: Mapping[str, str]) -> None:
    size = environment_size(env)
    if size > MAX_ENVIRONMENT_BYTES:
        raise _RefusalError(
            f"the environment would be {size} bytes, over Lambda's {MAX_ENVIRONMENT_BYTES}-byte "
            "limit: shorten the variables or the patterns"
        )


def _check_tag_count(tags: Mapping[str, str], record_tags: Mapping[str, str]) -> None:
    others = len(set(tags) - set(record_tag_keys(tags)))
    if others + len(record_tags) > MAX_TAGS:
        raise _RefusalError(
            f"the record needs {len(record_tags)} tags and the function has {others} of "
            f"Lambda's {MAX_TAGS}: remove some tags"
        )


def _grant(
    configuration: Mapping[str, Any], settings: AttachSettings, name: str
) -> iam.PolicyGrant:
    role = str(configuration.get("Role") or "")
    if not role:
        raise _RefusalError("the function has no role to grant the policy to")
    document = iam.coverage_policy(
        settings.bucket, settings.prefix, settings.kms_key_id, str(configuration["FunctionArn"])
    )
    return iam.PolicyGrant(iam.role_name(role), iam.policy_name(name), document)


def apply(
    plan: FunctionPlan,
    client: Any,
    retrier: Retrier,
    *,
    iam_client: Any = None,
    max_wait: float = MAX_WAIT_SECONDS,
    on_step: Callable[[Step], None] | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Carry out an "update" plan on AWS; raise AwsError when AWS refuses.

    Attach writes its record first, then the configuration, so a failure in
    between leaves a record of changes that never happened (harmless: detach
    only undoes values still in place) rather than changes without a record.
    Detach changes the configuration first and removes the record last, so it
    can be run again after a failure. Conflicts (an update already in
    progress) and throttling are retried with backoff; each update is waited
    on until Lambda reports it finished, or ``stop`` is set (Ctrl-C).

    ``on_step`` hears each step before it starts, so whoever interrupts a
    fleet can tell what a function was doing. Returns False when the wait was
    cut short by ``stop`` (the update was accepted and still in progress).
    """
    if plan.action != "update":
        return True
    step = on_step or (lambda _step: None)
    finished = True
    if plan.kind == "attach":
        if plan.grant:
            step("grant")
            iam.put_grant(_need_iam(iam_client), plan.grant)
        step("record")
        _tag(plan, client, retrier)
        try:
            step("update")
            finished = _update(plan, client, retrier, max_wait, stop)
        except AwsError:
            step("restore")
            _restore_record(plan, client, retrier)
            raise
    else:
        step("update")
        finished = _update(plan, client, retrier, max_wait, stop)
        step("record")
        _tag(plan, client, retrier)
        if plan.revoke:
            step("revoke")
            iam.delete_grant(_need_iam(iam_client), *plan.revoke)
    step("done")
    return finished


def _need_iam(iam_client: Any) -> Any:
    if iam_client is None:
        raise AssertionError("an IAM client is needed for this plan")
    return iam_client


def _tag(plan: FunctionPlan, client: Any, retrier: Retrier) -> None:
    with translating("tag the function", plan.function):
        if plan.remove_tags:
            retrier.call(
                lambda: client.untag_resource(Resource=plan.arn, TagKeys=list(plan.remove_tags))
            )
        if plan.set_tags:
            retrier.call(lambda: client.tag_resource(Resource=plan.arn, Tags=dict(plan.set_tags)))


def _restore_record(plan: FunctionPlan, client: Any, retrier: Retrier) -> None:
    # Best effort: the configuration did not change, so its record should not either.
    try:
        with translating("restore the record tags", plan.function):
            added = sorted(set(plan.set_tags) - set(plan.previous_tags))
            if added:
                retrier.call(lambda: client.untag_resource(Resource=plan.arn, TagKeys=added))
            if plan.previous_tags:
                retrier.call(
                    lambda: client.tag_resource(Resource=plan.arn, Tags=dict(plan.previous_tags))
                )
    except AwsError:
        pass  # the update's own error is the one to report


def _update(
    plan: FunctionPlan,
    client: Any,
    retrier: Retrier,
    max_wait: float,
    stop: threading.Event | None,
) -> bool:
    if not plan.configuration_changes:
        return True
    request: dict[str, Any] = {"FunctionName": plan.arn}
    if plan.layers_before != plan.layers_after:
        request["Layers"] = list(plan.layers_after)
    if plan.image_changes:
        # The whole ImageConfig, as Lambda replaces it whole: {} clears every override.
        request["ImageConfig"] = dict(plan.image_after or {})
    if dict(plan.env_before) != dict(plan.env_after):
        request["Environment"] = {"Variables": dict(plan.env_after)}
    with translating("update the function's configuration", plan.function):
        retrier.call(lambda: client.update_function_configuration(**request))
        return wait_until_updated(client, plan.arn, retrier, max_wait, stop=stop)


def wait_until_updated(
    client: Any,
    function: str,
    retrier: Retrier,
    max_wait: float,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Poll until the function's last update finished; raise AwsError if it failed or hangs.

    ``max_wait`` bounds the wait by the clock as well as by the pauses
    between polls (so slow answers count too). Returns False, without
    waiting further, when ``stop`` is set.
    """
    waited, delay = 0.0, 0.5
    deadline = clock() + max_wait
    while True:
        configuration = retrier.call(
            lambda: client.get_function_configuration(FunctionName=function)
        )
        status = configuration.get("LastUpdateStatus", "Successful")
        if status == "Successful":
            return True
        if status == "Failed":
            raise AwsError(
                f"the update of {function} failed: "
                f"{configuration.get('LastUpdateStatusReason', 'no reason given')}",
                "see the function's configuration in the Lambda console",
            )
        if waited >= max_wait or clock() >= deadline:
            raise AwsError(
                f"the update of {function} is still in progress after {max_wait:g} s",
                "check the function in the Lambda console, then run the command again",
            )
        if stop is not None and stop.wait(0):
            return False
        retrier.sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)
