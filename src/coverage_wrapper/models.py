"""Configuration of the runtime, read from the function's environment variables.

Every variable is documented in docs/configuration.md; the names the user guide
uses (COVERAGE_S3_BUCKET, COVERAGE_S3_PREFIX, COVERAGE_INCLUDE_PATTERNS,
COVERAGE_EXCLUDE_PATTERNS, COVERAGE_DEBUG, COVERAGE_UPLOAD_TIMEOUT) keep their
meaning; the others follow the same style.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from coverage_wrapper import locations
from coverage_wrapper.errors import ConfigurationError

FlushMode = Literal["environment", "invocation"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# S3's naming rules for general purpose buckets: 3-63 characters, lowercase
# letters, digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_UPLOAD_TIMEOUT = 900.0  # Lambda's own maximum timeout: a larger value cannot be honoured
# An S3 key is at most 1,024 bytes; the date, function name and id take up to about 120.
MAX_PREFIX_BYTES = 900


class CoverageConfig(NamedTuple):
    """The validated configuration of one function.

    A named tuple, not a dataclass: the runtime reads it as it starts, and
    ``dataclasses`` (with ``inspect`` under it) costs the cold start milliseconds.
    """

    s3_bucket: str
    s3_prefix: str = "coverage/"
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    debug: bool = False
    upload_timeout: float = 10.0
    enabled: bool = True
    branch: bool = False
    sample_rate: float = 1.0
    flush: FlushMode = "environment"
    kms_key_id: str | None = None
    upload_sources: bool = True
    spool_dir: Path = Path(locations.spool_root({}))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CoverageConfig:
        """Read and validate the configuration; raise ConfigurationError (a ValueError)."""
        env = os.environ if environ is None else environ
        bucket = env.get("COVERAGE_S3_BUCKET", "").strip()
        if not bucket:
            raise ConfigurationError("COVERAGE_S3_BUCKET is required")
        if bucket.startswith("s3://") or "/" in bucket:
            raise ConfigurationError(
                f"COVERAGE_S3_BUCKET must be a bucket name, not a URL or path: {bucket!r}"
                " (put the path in COVERAGE_S3_PREFIX)"
            )
        if not _BUCKET_NAME.match(bucket):
            raise ConfigurationError(
                f"COVERAGE_S3_BUCKET is not a valid S3 bucket name: {bucket!r}"
            )
        flush = env.get("COVERAGE_FLUSH", "environment").strip().lower()
        if flush not in ("environment", "invocation"):
            raise ConfigurationError(
                f"COVERAGE_FLUSH must be 'environment' or 'invocation', not {flush!r}"
            )
        spool = locations.spool_root(env)
        if not Path(spool).is_absolute():
            # The runtime and the extension run in different working directories:
            # a relative path would give them two spools that never meet.
            named = "COVERAGE_SPOOL_DIR" if env.get("COVERAGE_SPOOL_DIR", "").strip() else "TMPDIR"
            given = env[named].strip()
            raise ConfigurationError(f"{named} must be an absolute path, not {given!r}")
        return cls(
            s3_bucket=bucket,
            s3_prefix=_prefix(env.get("COVERAGE_S3_PREFIX", "coverage/")),
            include_patterns=_patterns(env.get("COVERAGE_INCLUDE_PATTERNS", "")),
            exclude_patterns=_patterns(env.get("COVERAGE_EXCLUDE_PATTERNS", "")),
            debug=_flag(env, "COVERAGE_DEBUG", default=False),
            upload_timeout=_number(env, "COVERAGE_UPLOAD_TIMEOUT", 10.0, 0.0, MAX_UPLOAD_TIMEOUT),
            enabled=_flag(env, "COVERAGE_ENABLED", default=True),
            branch=_flag(env, "COVERAGE_BRANCH", default=False),
            sample_rate=_number(env, "COVERAGE_SAMPLE_RATE", 1.0, 0.0, 1.0, inclusive_low=True),
            flush="invocation" if flush == "invocation" else "environment",
            kms_key_id=env.get("COVERAGE_KMS_KEY_ID", "").strip() or None,
            upload_sources=_flag(env, "COVERAGE_UPLOAD_SOURCES", default=True),
            spool_dir=Path(spool),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, as shown in debug logs and by the health check."""
        doc = self._asdict()
        doc["spool_dir"] = str(self.spool_dir)
        doc["include_patterns"] = list(self.include_patterns)
        doc["exclude_patterns"] = list(self.exclude_patterns)
        return doc


def _prefix(raw: str) -> str:
    """Normalise a key prefix: no leading slash, one trailing slash (or empty)."""
    prefix = raw.strip().lstrip("/")
    if ".." in prefix.split("/"):
        raise ConfigurationError(f"COVERAGE_S3_PREFIX must not contain '..': {raw!r}")
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:  # a variable that was not UTF-8: no S3 key can hold it
        raise ConfigurationError(f"COVERAGE_S3_PREFIX must be UTF-8 text, not {raw!r}") from None
    if size > MAX_PREFIX_BYTES:
        raise ConfigurationError(
            f"COVERAGE_S3_PREFIX must be at most {MAX_PREFIX_BYTES} bytes, not {size}"
        )
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _patterns(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {env[name]!r}")


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    inclusive_low: bool = False,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None
    too_low = value < low if inclusive_low else value <= low
    if too_low or value > high or math.isnan(value):
        bound = "[" if inclusive_low else "("
        raise ConfigurationError(f"{name} must be in {bound}{low:g}, {high:g}], not {raw!r}")
    return value
