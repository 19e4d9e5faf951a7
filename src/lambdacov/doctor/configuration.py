"""Local configuration: the function's variables as the runtime will read them."""

from __future__ import annotations

from collections.abc import Mapping

from coverage_wrapper.models import CoverageConfig
from lambdacov.doctor.model import Check, fail, ok, warn

TASK_ROOT = "/var/task"

_FIXES = {
    "COVERAGE_S3_BUCKET is required": (
        "set it: `lambdacov attach FUNCTION --bucket BUCKET` (or COVERAGE_S3_BUCKET in the "
        "function's environment)"
    ),
}


def check_environment(env: Mapping[str, str]) -> tuple[Check, CoverageConfig | None]:
    """Validate the variables with the runtime's own ``CoverageConfig.from_environment``."""
    try:
        config = CoverageConfig.from_environment(env)
    except ValueError as error:
        message = str(error)
        hint = _FIXES.get(message, "fix the variable in the function's environment")
        return fail("config.environment", message, hint), None
    if not config.enabled:
        return (
            warn(
                "config.environment",
                "COVERAGE_ENABLED=false: coverage is switched off",
                "remove COVERAGE_ENABLED or set it to true",
            ),
            config,
        )
    detail = f"bucket {config.s3_bucket}, prefix {config.s3_prefix or '(none)'}"
    if config.sample_rate < 1.0:
        detail += f", sample rate {config.sample_rate:g}"
    if config.kms_key_id:
        detail += ", KMS encryption"
    return ok("config.environment", detail, **config.to_dict()), config


def check_patterns(config: CoverageConfig) -> Check:
    """Flag include/exclude patterns that cannot match code under the task root.

    The deployed package is not downloaded, so only patterns that can never
    match are detected: absolute paths outside the task root (the layer and the
    runtime are never measured) and patterns both included and excluded.
    """
    problems = [
        f"include {pattern!r} is outside {TASK_ROOT}"
        for pattern in config.include_patterns
        if pattern.startswith("/") and not pattern.startswith(TASK_ROOT)
    ]
    both = sorted(set(config.include_patterns) & set(config.exclude_patterns))
    problems += [f"{pattern!r} is both included and excluded" for pattern in both]
    if problems:
        return warn(
            "config.patterns",
            "; ".join(problems),
            "patterns are globs relative to the task root, e.g. src/*,handlers/*",
        )
    if not config.include_patterns:
        return ok("config.patterns", f"no include patterns: everything under {TASK_ROOT}")
    return ok(
        "config.patterns",
        f"include {', '.join(config.include_patterns)}"
        + (f"; exclude {', '.join(config.exclude_patterns)}" if config.exclude_patterns else ""),
    )
