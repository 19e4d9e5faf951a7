"""CloudWatch metrics from the runtime as embedded metric format (EMF) log lines.

One JSON line on stdout becomes a metric in namespace ``Lambda/Coverage``
(dimension ``FunctionName``) when CloudWatch Logs ingests it: no
PutMetricData call, no boto3 client, no time added to the invocation.
``lambdacov alarms create`` sets an alarm on ``CoverageFailure``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

#: Kept equal to lambdacov.conventions.METRICS_NAMESPACE (a test checks it).
NAMESPACE = "Lambda/Coverage"
FAILURE = "CoverageFailure"
SUCCESS = "CoverageSuccess"


def emit_metric(
    metric: str,
    function_name: str,
    value: float = 1,
    *,
    cause: str = "",
    stream: TextIO | None = None,
) -> None:
    """Write one metric value as an EMF line (stdout goes to CloudWatch Logs in Lambda)."""
    out = stream or sys.stdout
    document = _emf_document(metric, function_name, value, cause)
    try:
        out.write(json.dumps(document, separators=(",", ":")) + "\n")
        out.flush()
    except (OSError, ValueError):  # a closed stdout must never break the function
        pass


def _emf_document(metric: str, function_name: str, value: float, cause: str) -> dict[str, object]:
    """The EMF document for one metric value: a metric to CloudWatch, a log record to people."""
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": metric, "Unit": "Count"}],
                }
            ],
        },
        "FunctionName": function_name,
        metric: value,
        # The fields of the runtime's other JSON log lines, so log readers see one format.
        "level": "INFO",
        "logger": "coverage_wrapper.metrics",
        "message": f"{metric} {value:g}",
    }
    if cause:
        document["cause"] = cause  # a property, not a dimension: no extra metric per cause
    return document
