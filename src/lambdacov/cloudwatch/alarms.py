"""CloudWatch alarms for a function: the guide's two (errors, duration) and CoverageFailure.

``put_metric_alarm`` creates or replaces an alarm by name, so creating twice
changes nothing; deleting asks only for the alarms that exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lambdacov.conventions import METRICS_NAMESPACE

KINDS = ("errors", "duration", "coverage-failure")


@dataclass(frozen=True)
class Thresholds:
    """When each alarm fires; the defaults are the guide's."""

    errors: float = 5  # Sum of Errors per period
    duration_ms: float = 10_000  # Average Duration per period
    coverage_failures: float = 0  # Sum of CoverageFailure per period
    period: int = 300
    evaluation_periods: int = 2


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm, as put_metric_alarm takes it."""

    name: str
    kind: str
    namespace: str
    metric: str
    statistic: str
    threshold: float
    function: str
    period: int
    evaluation_periods: int
    description: str

    def arguments(self, actions: Sequence[str] = ()) -> dict[str, Any]:
        """The put_metric_alarm arguments."""
        args: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Statistic": self.statistic,
            "Dimensions": [{"Name": "FunctionName", "Value": self.function}],
            "Period": self.period,
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": self.threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            # No data means no invocations (or no failures): not an alarm.
            "TreatMissingData": "notBreaching",
        }
        if actions:
            args["AlarmActions"] = list(actions)
        return args


def alarm_name(function: str, kind: str) -> str:
    """``lambdacov-<function>-<kind>``: one name per function and kind, so re-creating updates."""
    return f"lambdacov-{function}-{kind}"


def plan_alarms(function: str, thresholds: Thresholds) -> tuple[AlarmSpec, ...]:
    """The three alarms for ``function`` (a name: CloudWatch's dimension is the name)."""

    def spec(
        kind: str,
        namespace: str,
        metric: str,
        statistic: str,
        *,
        threshold: float,
        description: str,
    ) -> AlarmSpec:
        return AlarmSpec(
            name=alarm_name(function, kind),
            kind=kind,
            namespace=namespace,
            metric=metric,
            statistic=statistic,
            threshold=threshold,
            function=function,
            period=thresholds.period,
            evaluation_periods=thresholds.evaluation_periods,
            description=f"{function}: {description}",
        )

    return (
        spec(
            "errors",
            "AWS/Lambda",
            "Errors",
            "Sum",
            threshold=thresholds.errors,
            description="error count is high",
        ),
        spec(
            "duration",
            "AWS/Lambda",
            "Duration",
            "Average",
            threshold=thresholds.duration_ms,
            description="average duration is high",
        ),
        spec(
            "coverage-failure",
            METRICS_NAMESPACE,
            "CoverageFailure",
            "Sum",
            threshold=thresholds.coverage_failures,
            description="coverage could not be recorded or delivered (run `lambdacov doctor`)",
        ),
    )


@dataclass(frozen=True)
class AlarmsResult:
    """What create or delete did: alarm names by outcome."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-ready view."""
        return {
            "created": list(self.created),
            "updated": list(self.updated),
            "deleted": list(self.deleted),
            "absent": list(self.absent),
        }


def _existing(cloudwatch: Any, names: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        page = cloudwatch.describe_alarms(AlarmNames=list(names[start : start + 100]))
        found |= {alarm["AlarmName"] for alarm in page.get("MetricAlarms", [])}
    return found


def create_alarms(
    cloudwatch: Any, specs: Sequence[AlarmSpec], actions: Sequence[str] = ()
) -> AlarmsResult:
    """Create (or bring up to date) each alarm."""
    existing = _existing(cloudwatch, [spec.name for spec in specs])
    for spec in specs:
        cloudwatch.put_metric_alarm(**spec.arguments(actions))
    return AlarmsResult(
        created=tuple(s.name for s in specs if s.name not in existing),
        updated=tuple(s.name for s in specs if s.name in existing),
    )


def delete_alarms(cloudwatch: Any, names: Sequence[str]) -> AlarmsResult:
    """Delete the named alarms that exist; the others are reported absent."""
    existing = _existing(cloudwatch, names)
    present = [name for name in names if name in existing]
    for start in range(0, len(present), 100):
        cloudwatch.delete_alarms(AlarmNames=present[start : start + 100])
    return AlarmsResult(
        deleted=tuple(present), absent=tuple(name for name in names if name not in existing)
    )
