"""Attach and detach across many functions: find layers, plan each, apply with a bounded pool.

Everything here takes clients as parameters and returns frozen results; the
CLI renders them. A failing function never stops the others: its result says
why, and :attr:`FleetResult.failed` tells the CLI to exit 1.

Ctrl-C stops the fleet between functions: no function starts after it, a
function already started finishes its steps (each one call, bounded), and
:class:`FleetInterrupted` carries the result: which functions changed, which
were left in the middle of a step (and which step), which never started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lambdacov import conventions
from lambdacov.attach import iam
from lambdacov.attach.plan import (
    AttachSettings,
    FunctionPlan,
    Step,
    apply,
    plan_attach,
    plan_detach,
)
from lambdacov.attach.selection import Missing, SelectedFunction
from lambdacov.aws import STOP_GRACE, Abandoned, CallGuard, Retrier, map_calls, translating
from lambdacov.errors import AwsError, LambdacovError, UsageError
from lambdacov.layer.publish import newest_layer_version

Status = Literal[
    "changed", "unchanged", "planned", "skipped", "refused", "failed", "interrupted", "not-started"
]
LayerKey = tuple[str, str, str]  # (region, runtime, arch)
ClientFor = Callable[[str | None], Any]


@dataclass(frozen=True)
class FunctionResult:
    """The outcome for one function, with its plan when there was one."""

    function: str
    region: str
    status: Status
    detail: str = ""
    plan: FunctionPlan | None = None
    missing_policy: Mapping[str, Any] | None = field(default=None, compare=False)
    #: Whether AWS may hold changes of this function that a later detach (or,
    #: for detach, running it again) has to finish: changed, or cut off mid-step.
    touched: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON, the plan's changes included."""
        return {
            "function": self.function,
            "region": self.region,
            "status": self.status,
            "detail": self.detail,
            "touched": self.touched,
            "plan": self.plan.to_dict() if self.plan else None,
            "missing_policy": self.missing_policy,
        }


@dataclass(frozen=True)
class FleetResult:
    """Every function's outcome, in the order they were selected."""

    kind: Literal["attach", "detach"]
    dry_run: bool
    results: tuple[FunctionResult, ...]

    @property
    def failed(self) -> bool:
        """Whether any function failed or was refused (the command exits 1)."""
        return any(result.status in ("failed", "refused") for result in self.results)

    @property
    def touched(self) -> tuple[FunctionResult, ...]:
        """The functions AWS may hold changes of (see :attr:`FunctionResult.touched`)."""
        return tuple(result for result in self.results if result.touched)

    def counts(self) -> dict[str, int]:
        """How many functions ended in each status."""
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The result as the command's JSON document."""
        return {
            "command": self.kind,
            "dry_run": self.dry_run,
            "failed": self.failed,
            "counts": self.counts(),
            "functions": [result.to_dict() for result in self.results],
        }


def find_layers(
    functions: Iterable[SelectedFunction],
    client_for: ClientFor,
    retrier: Retrier,
    layer_arns: Iterable[str] = (),
) -> dict[LayerKey, str]:
    """The lambdacov layer version for each (region, runtime, arch) the functions need.

    With ``layer_arns`` (``--layer-arn``), only those versions are used, matched
    by their region and their compatible runtimes and architectures.
    Otherwise the latest version of ``conventions.layer_name(runtime, arch)``
    in each region is used.
    """
    explicit = tuple(layer_arns)
    if explicit:
        return _explicit_layers(explicit, client_for, retrier)
    needed = sorted(
        {
            (f.region, f.configuration.get("Runtime", ""), _arch(f.configuration))
            for f in functions
            if f.configuration.get("Runtime") in conventions.PYTHON_RUNTIMES
        }
    )
    found: dict[LayerKey, str] = {}
    for region, runtime, arch in needed:
        arn = _latest_layer_arn(client_for(region), conventions.layer_name(runtime, arch), retrier)
        if arn:
            found[region, runtime, arch] = arn
    return found


def _latest_layer_arn(client: Any, name: str, retrier: Retrier) -> str | None:
    """The ARN of a layer's newest version in the client's region, None when it has none."""
    with translating("list the layer's versions", name):
        newest = newest_layer_version(client, name, retrier)
    return str(newest["LayerVersionArn"]) if newest else None


def _explicit_layers(
    arns: tuple[str, ...], client_for: ClientFor, retrier: Retrier
) -> dict[LayerKey, str]:
    found: dict[LayerKey, str] = {}
    for arn in arns:
        parts = arn.split(":")
        if len(parts) != 8 or parts[5] != "layer" or not parts[7].isdigit():
            raise UsageError(
                f"--layer-arn {arn!r} is not a layer version ARN",
                "give arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION",
            )
        region = parts[3]
        client = client_for(region)
        request = {"LayerName": arn.rsplit(":", 1)[0], "VersionNumber": int(parts[7])}
        with translating("read the layer version", arn):
            version = retrier.call(functools.partial(client.get_layer_version, **request))
        # A layer that declares no runtimes or architectures is compatible with all of them.
        runtimes = version.get("CompatibleRuntimes") or conventions.PYTHON_RUNTIMES
        archs = version.get("CompatibleArchitectures") or conventions.ARCHITECTURES
        for runtime in runtimes:
            for arch in archs:
                found.setdefault((region, runtime, arch), arn)
    return found


def plan_attach_all(
    functions: Iterable[SelectedFunction],
    settings: AttachSettings,
    layers: Mapping[LayerKey, str],
) -> tuple[FunctionPlan, ...]:
    """A plan per function, each with the layer for its region, runtime and architecture."""
    return tuple(
        plan_attach(
            f.configuration,
            f.tags,
            settings,
            layers.get((f.region, f.configuration.get("Runtime", ""), _arch(f.configuration))),
        )
        for f in functions
    )


def plan_detach_all(functions: Iterable[SelectedFunction]) -> tuple[FunctionPlan, ...]:
    """A detach plan per function."""
    return tuple(plan_detach(f.configuration, f.tags) for f in functions)


def missing_policies(
    plans: Iterable[FunctionPlan],
    functions: Iterable[SelectedFunction],
    settings: AttachSettings,
    iam_client: Any,
    *,
    concurrency: int = 8,
) -> dict[str, Mapping[str, Any] | str]:
    """For each attached function's ARN whose role lacks the coverage policy: that policy.

    A role whose policies cannot be read maps to a message instead. Functions
    whose plan grants the policy (``--grant``) are not checked.
    """
    roles = {f.arn: str(f.configuration.get("Role") or "") for f in functions}
    wanted = {
        plan.arn: iam.coverage_policy(
            settings.bucket, settings.prefix, settings.kms_key_id, plan.arn
        )
        for plan in plans
        if plan.action in ("update", "unchanged") and not plan.grant and roles.get(plan.arn)
    }
    checks = {(roles[arn], json.dumps(doc, sort_keys=True)) for arn, doc in wanted.items()}

    def check(key: tuple[str, str]) -> tuple[tuple[str, str], bool | str]:
        try:
            return key, iam.role_allows(iam_client, iam.role_name(key[0]), json.loads(key[1]))
        except AwsError as error:
            return key, f"could not check the role's policies: {error.message}"

    verdicts = dict(map_calls(check, sorted(checks), concurrency))
    missing: dict[str, Mapping[str, Any] | str] = {}
    for arn, doc in wanted.items():
        verdict = verdicts[roles[arn], json.dumps(doc, sort_keys=True)]
        if verdict is not True:
            missing[arn] = doc if verdict is False else str(verdict)
    return missing


class FleetInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`execute`; ``result`` says what each function got.

    ``cause`` is the interruption to raise again once the result is shown;
    ``finished`` is set once no function's calls are still under way (one cut
    off after the grace period may still change its function until then).
    """

    def __init__(
        self, result: FleetResult, cause: KeyboardInterrupt, finished: threading.Event
    ) -> None:
        super().__init__()
        self.result = result
        self.cause = cause
        self.finished = finished


def execute(
    plans: Iterable[FunctionPlan],
    client_for: ClientFor,
    retrier: Retrier,
    *,
    iam_client: Any = None,
    dry_run: bool = False,
    concurrency: int = 8,
    missing: Iterable[Missing] = (),
    policies: Mapping[str, Mapping[str, Any] | str] | None = None,
    on_result: Callable[[FunctionResult], None] | None = None,
    guard: CallGuard | None = None,
    grace: float = STOP_GRACE,
) -> FleetResult:
    """Apply every "update" plan (none with ``dry_run``) with at most ``concurrency`` at once.

    On Ctrl-C, raises :class:`FleetInterrupted` within about ``grace``
    seconds. ``guard`` is the clients' guard: a function already started
    may finish its calls after Ctrl-C, and no other call starts.
    """
    plans = tuple(plans)
    kind: Literal["attach", "detach"] = plans[0].kind if plans else "attach"
    policies = policies or {}
    stop = threading.Event()
    steps: dict[str, Step] = {}
    finishing = guard.finishing if guard is not None else contextlib.nullcontext
    # Backoff pauses end early on Ctrl-C, so a throttled function does not hold the stop.
    stoppable = dataclasses.replace(retrier, sleep=_stoppable_sleep(retrier.sleep, stop))

    def run(plan: FunctionPlan) -> FunctionResult:
        def on_step(step: Step) -> None:
            steps[plan.arn] = step

        with finishing():
            result = _run_one(
                plan,
                client_for,
                stoppable,
                iam_client=iam_client,
                dry_run=dry_run,
                policy=policies.get(plan.arn),
                on_step=on_step,
                stop=stop,
            )
        if on_result is not None:
            on_result(result)
        return result

    failures = [FunctionResult(item.name, "", "failed", item.message) for item in missing]
    try:
        results = map_calls(run, plans, concurrency, stop=stop, grace=grace)
    except Abandoned as abandoned:
        partial = [
            abandoned.done.get(index)
            or _cut_off(plan, steps.get(plan.arn), started=index in abandoned.running)
            for index, plan in enumerate(plans)
        ]
        result = FleetResult(kind, dry_run, (*failures, *partial))
        raise FleetInterrupted(result, abandoned.cause, abandoned.finished) from None
    return FleetResult(kind, dry_run, (*failures, *results))


def _stoppable_sleep(
    sleep: Callable[[float], None], stop: threading.Event
) -> Callable[[float], None]:
    if sleep is not time.sleep:
        return sleep  # a test's sleep: it does not wait anyway

    def pause(seconds: float) -> None:
        stop.wait(seconds)

    return pause


# What a function cut off in the middle of a step may hold, by kind and step.
_CUT_OFF: dict[tuple[str, str], str] = {
    ("attach", "grant"): "interrupted while putting the policy on the role: the function is "
    "unchanged; the role may hold the policy",
    ("attach", "record"): "interrupted while writing the record: the configuration is unchanged; "
    "detach removes a record left behind",
    ("attach", "update"): "interrupted while updating the configuration: the update may have "
    "been applied; the record says what it changes and detach undoes it",
    ("attach", "restore"): "the update failed and the record was being removed when interrupted: "
    "detach removes a record left behind",
    ("detach", "update"): "interrupted while restoring the configuration: run detach again",
    ("detach", "record"): "interrupted while removing the record: run detach again",
    ("detach", "revoke"): "interrupted while deleting the policy from the role: run detach again",
}


def _cut_off(plan: FunctionPlan, step: Step | None, *, started: bool) -> FunctionResult:
    """The result of a function Ctrl-C caught before it started or in the middle of a step."""
    if not started or step is None:
        return FunctionResult(
            plan.function, plan.region, "not-started", "interrupted before it started", plan
        )
    detail = _CUT_OFF.get((plan.kind, step), f"interrupted during {step}")
    # An attach cut off while putting the policy wrote no record: detach cannot undo that.
    touched = not (plan.kind == "attach" and step == "grant")
    return FunctionResult(plan.function, plan.region, "interrupted", detail, plan, touched=touched)


def _run_one(
    plan: FunctionPlan,
    client_for: ClientFor,
    retrier: Retrier,
    *,
    iam_client: Any,
    dry_run: bool,
    policy: Mapping[str, Any] | str | None,
    on_step: Callable[[Step], None] | None = None,
    stop: threading.Event | None = None,
) -> FunctionResult:
    note = policy if isinstance(policy, str) else ""
    document = policy if isinstance(policy, Mapping) else None
    if document is not None:
        note = "the role lacks the coverage policy (printed below)"

    def result(status: Status, detail: str, *, touched: bool = False) -> FunctionResult:
        detail = "; ".join(part for part in (detail, note) if part)
        return FunctionResult(
            plan.function, plan.region, status, detail, plan, document, touched=touched
        )

    if plan.action == "skip":
        return result("skipped", plan.reason)
    if plan.action == "refuse":
        return result("refused", plan.reason)
    if plan.action == "unchanged":
        return result("unchanged", plan.reason)
    if dry_run:
        return result("planned", _summary(plan))
    try:
        finished = apply(
            plan,
            client_for(plan.region),
            retrier,
            iam_client=iam_client,
            on_step=on_step,
            stop=stop,
        )
    except LambdacovError as error:
        return result("failed", error.message)
    summary = _summary(plan)
    if not finished:
        summary += " (interrupted while Lambda was still applying the update)"
    return result("changed", summary, touched=True)


def _summary(plan: FunctionPlan) -> str:
    parts = []
    added = [layer for layer in plan.layers_after if layer not in plan.layers_before]
    removed = [layer for layer in plan.layers_before if layer not in plan.layers_after]
    if added:
        parts.append(f"+layer {added[0].rsplit(':', 2)[-2]}:{added[0].rsplit(':', 1)[-1]}")
    if removed:
        parts.append(f"-layer {removed[0].rsplit(':', 2)[-2]}:{removed[0].rsplit(':', 1)[-1]}")
    if plan.image_changes:
        parts.append("image command")
    diffs = plan.env_diff()
    if diffs:
        parts.append(f"{len(diffs)} variable{'s' if len(diffs) != 1 else ''}")
    if plan.grant:
        parts.append(f"policy {plan.grant.policy_name} on {plan.grant.role_name}")
    if plan.revoke:
        parts.append(f"policy {plan.revoke[1]} removed")
    return ", ".join(parts) or "record tags"


def _arch(configuration: Mapping[str, Any]) -> str:
    return str((configuration.get("Architectures") or ["x86_64"])[0])
