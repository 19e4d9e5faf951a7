"""Names shared by the commands that deploy, check and read lambdacov: one definition each.

The layer's name per runtime, its description format, the variables attach sets,
and the metric namespace. `attach`, `doctor`, `publish-layer` and the runtime
agree because they all read them from here (the runtime has its own copies of
the two runtime-side names, checked by a test). The supported runtimes and
architectures are not defined here but taken from what the layer can be built
for (lambdacov.layer.targets), under Lambda's names.
"""

from __future__ import annotations

import re

from lambdacov.errors import UsageError
from lambdacov.layer.targets import SUPPORTED_ARCHS, SUPPORTED_PYTHONS

#: Lambda's exec wrapper path for the layer's wrapper script.
WRAPPER_PATH = "/opt/lambdacov-wrapper"
#: The handler that zero-code instrumentation redirects to.
REDIRECT_HANDLER = "coverage_wrapper.handler.lambda_handler"
#: Variables of the runtime's chain: the function's own handler, and a wrapper to hand over to.
ORIGINAL_HANDLER_VAR = "LAMBDACOV_ORIGINAL_HANDLER"
NEXT_WRAPPER_VAR = "LAMBDACOV_NEXT_WRAPPER"
EXEC_WRAPPER_VAR = "AWS_LAMBDA_EXEC_WRAPPER"
#: CloudWatch namespace of the runtime's embedded metrics (CoverageFailure...).
METRICS_NAMESPACE = "Lambda/Coverage"
#: Lambda runtimes lambdacov supports, and architectures: those a layer can be built for.
PYTHON_RUNTIMES: tuple[str, ...] = tuple(f"python{python}" for python in SUPPORTED_PYTHONS)
ARCHITECTURES: tuple[str, ...] = SUPPORTED_ARCHS

_DESCRIPTION = re.compile(r"^lambdacov (?P<version>\S+) (?P<hash>sha256:[0-9a-f]{64})")
_LAYER_NAME = re.compile(
    rf"^lambdacov-python(?P<py>3\d+)-(?P<arch>{'|'.join(map(re.escape, ARCHITECTURES))})$"
)


def layer_name(python: str, arch: str) -> str:
    """The layer's name for a runtime: ``lambdacov-python312-x86_64``."""
    return f"lambdacov-python{python.replace('python', '').replace('.', '')}-{arch}"


def parse_layer_name(name: str) -> tuple[str, str] | None:
    """(``3.12``, ``x86_64``) for a lambdacov layer name, else None."""
    match = _LAYER_NAME.match(name)
    if not match:
        return None
    digits = match["py"]
    return f"{digits[0]}.{digits[1:]}", match["arch"]


def layer_description(version: str, content_hash: str) -> str:
    """A layer version's description: the lambdacov version and the content hash."""
    return f"lambdacov {version} {content_hash}"


def parse_layer_description(text: str) -> tuple[str, str] | None:
    """(version, content hash) from a layer version's description, else None."""
    match = _DESCRIPTION.match(text or "")
    return (match["version"], match["hash"]) if match else None


def is_lambdacov_layer_arn(arn: str) -> bool:
    """True for the ARN of any version of a lambdacov layer."""
    parts = arn.split(":")
    return len(parts) >= 8 and parts[5] == "layer" and parse_layer_name(parts[6]) is not None


# What S3 accepts as a bucket: today's names (3-63 lowercase letters, digits, '.', '-'),
# the older us-east-1 names (up to 255, with capitals and '_'), and access point ARNs.
# botocore checks the same before sending, with a reason it spreads over two lines.
_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
_ACCESS_POINT = re.compile(r"^arn:aws[a-z-]*:s3[a-z-]*:[a-z0-9-]*:\d{12}:[a-z]+[/:]\S+$")


def check_bucket_name(name: str, option: str = "--bucket") -> str:
    """``name`` if S3 could accept it as a bucket; otherwise a UsageError saying what is wrong."""
    if _BUCKET.match(name) or _ACCESS_POINT.match(name):
        return name
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise UsageError(
        f"{option} {shown!r} is not an S3 bucket name",
        "a bucket name has letters, digits, '.', '-' and '_' only (today's rules: 3 to 63 "
        "lowercase letters, digits, '.' and '-'); an access point ARN also works",
        slug="invalid-bucket",
    )
