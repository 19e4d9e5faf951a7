"""A combiner function: merges the coverage objects under a prefix on a schedule.

Deploy it with the lambdacov layer (for coverage.py and coverage_wrapper) and an
EventBridge schedule; its role needs s3:ListBucket on the bucket and
s3:GetObject/s3:PutObject on the prefix (see docs/troubleshooting.md).

Event (all optional): {"prefix": "coverage/2024/01/", "output_key": "combined/report.json"}
"""

from __future__ import annotations

import os
from typing import Any

from coverage_wrapper.combiner import combine_coverage_files


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bucket = os.environ["COVERAGE_S3_BUCKET"]
    prefix = event.get("prefix") or os.environ.get("COVERAGE_S3_PREFIX", "coverage/")
    output_key = event.get("output_key") or "combined/report.json"
    summary = combine_coverage_files(bucket_name=bucket, prefix=prefix, output_key=output_key)
    return {
        "output_key": output_key,
        "inputs": summary["inputs"],
        "skipped": len(summary["skipped"]),
        "files": len(summary["files"]),
    }
