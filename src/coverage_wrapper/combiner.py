"""``combine_coverage_files``: merge the coverage objects under a prefix into one.

This is the core of the guide's "combiner function": a Lambda handler (or any
script) calls it with a bucket, a prefix and an output key. Unreadable objects
are skipped and reported, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from coverage_wrapper.logging_utils import get_logger

log = get_logger("coverage_wrapper.combiner")


def combine_coverage_files(
    bucket_name: str,
    prefix: str,
    output_key: str,
    *,
    s3_client: Any = None,
) -> dict[str, Any]:
    """Combine every ``*.coverage`` object under ``prefix`` and write the result.

    An ``output_key`` ending in ``.json`` receives a JSON summary (executed
    lines per file, the inputs and the skipped objects); any other key
    receives the combined coverage.py data file. Returns the summary.
    """
    import boto3
    import coverage

    client = s3_client or boto3.client("s3")
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket_name, Prefix=prefix):
        keys += [
            item["Key"]
            for item in page.get("Contents", [])
            if item["Key"].endswith(".coverage") and item["Key"] != output_key
        ]
    skipped: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="lambdacov-combine-") as workdir:
        combined = coverage.CoverageData(basename=str(Path(workdir) / "combined.coverage"))
        for index, key in enumerate(sorted(keys)):
            local = Path(workdir) / f"input-{index}.coverage"
            try:
                client.download_file(bucket_name, key, str(local))
                part = coverage.CoverageData(basename=str(local))
                part.read()
                combined.update(part)
            except Exception as error:  # noqa: BLE001 - one bad object must not stop the rest
                skipped.append({"key": key, "reason": f"{type(error).__name__}: {error}"})
            finally:
                with contextlib.suppress(FileNotFoundError):
                    local.unlink()
        files = {
            name: sorted(combined.lines(name) or []) for name in sorted(combined.measured_files())
        }
        summary: dict[str, Any] = {
            "bucket": bucket_name,
            "prefix": prefix,
            "output_key": output_key,
            "inputs": len(keys) - len(skipped),
            "skipped": skipped,
            "files": files,
        }
        if output_key.endswith(".json"):
            body = json.dumps(summary, indent=2).encode()
        else:
            combined.close()
            body = Path(combined.data_filename()).read_bytes()
        client.put_object(
            Bucket=bucket_name, Key=output_key, Body=body, ServerSideEncryption="AES256"
        )
    for entry in skipped:
        log.warning("Skipped a coverage object", extra={"data": entry})
    return summary
