"""``combine_coverage_files``: merge the coverage objects under a prefix into one.

This is the core of the guide's "combiner function": a Lambda handler (or any
script) calls it with a bucket, a prefix and an output key. It uses the same
engine as ``lambdacov combine`` (:mod:`coverage_wrapper.datafiles`), with
one coverage context per function. Paths stay as Lambda recorded them
(``/var/task/...``): remapping to a checkout is the CLI's job. Unreadable
objects are skipped and reported, never fatal.
"""

from __future__ import annotations

import functools
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coverage_wrapper.datafiles import (
    Combined,
    Merger,
    function_context,
    function_of,
    key_day,
    read_data_file,
    split_version,
)
from coverage_wrapper.datawriter import InvalidDataFileError
from coverage_wrapper.logging_utils import get_logger

log = get_logger("coverage_wrapper.combiner")

# Threads, not processes: Lambda has no /dev/shm, so multiprocessing's queues fail there.
DOWNLOAD_THREADS = 8


def _keys(client: Any, bucket_name: str, prefix: str, output_key: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket_name, Prefix=prefix):
        keys += [
            item["Key"]
            for item in page.get("Contents", [])
            if item["Key"].endswith(".coverage") and item["Key"] != output_key
        ]
    return sorted(keys)


def _fetch(client: Any, bucket_name: str, key: str, path: Path) -> Path:
    client.download_file(bucket_name, key, str(path))
    return path


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

    client = s3_client or boto3.client("s3")
    keys = _keys(client, bucket_name, prefix, output_key)
    skipped: list[dict[str, str]] = []
    merger = Merger()
    with tempfile.TemporaryDirectory(prefix="lambdacov-combine-") as workdir:
        paths = [Path(workdir) / f"input-{index}.coverage" for index in range(len(keys))]
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            futures = [
                pool.submit(_fetch, client, bucket_name, key, path)
                for key, path in zip(keys, paths, strict=True)
            ]
            for key, future in zip(keys, futures, strict=True):
                try:
                    label = functools.partial(function_context, function_of(key))
                    local = future.result()
                    merger.add(read_data_file(local), label, key_day(key))
                    local.unlink()
                except InvalidDataFileError as error:
                    skipped.append({"key": key, "reason": str(error)})
                except Exception as error:  # noqa: BLE001 - one bad object must not stop the rest
                    skipped.append({"key": key, "reason": f"{type(error).__name__}: {error}"})
        combined = merger.result()
        summary: dict[str, Any] = {
            "bucket": bucket_name,
            "prefix": prefix,
            "output_key": output_key,
            "inputs": len(keys) - len(skipped),
            "skipped": skipped,
            **_files(combined),
            "kind": combined.kind,
            "mixed_line_and_branch_data": combined.mixed,
        }
        if output_key.endswith(".json"):
            body = json.dumps(summary, indent=2).encode()
        else:
            body = combined.write(Path(workdir) / "combined.coverage").read_bytes()
        client.put_object(
            Bucket=bucket_name, Key=output_key, Body=body, ServerSideEncryption="AES256"
        )
    for entry in skipped:
        log.warning("Skipped a coverage object", extra={"data": entry})
    return summary


def _files(combined: Combined) -> dict[str, Any]:
    """Executed lines per file; a file that ran as several versions of its code has
    each version's lines apart (under ``changed_files``), never one union of them."""
    versions: dict[str, dict[str | None, list[int]]] = {}
    for name in combined.measured_files():
        path, digest = split_version(name)
        versions.setdefault(path, {})[digest] = sorted(combined.executed_lines(name))
    files: dict[str, list[int]] = {}
    digests: dict[str, str] = {}
    changed: dict[str, dict[str, list[int]]] = {}
    for path, found in versions.items():
        if len(found) == 1:
            [(digest, lines)] = found.items()
            files[path] = lines
            if digest is not None:
                digests[path] = digest
        else:  # lines recorded without a version are under "unknown"
            changed[path] = {digest or "unknown": lines for digest, lines in found.items()}
    return {"files": files, "sha256": digests, "changed_files": changed}
