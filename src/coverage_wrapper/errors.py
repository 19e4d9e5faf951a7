"""The runtime's exceptions, with the messages the user guide documents."""

from __future__ import annotations


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ClientError, else the exception's class name.

    The one reading of a code from an AWS error, for the runtime and for the
    CLI (``lambdacov.aws`` takes it from here: the layer cannot import lambdacov).
    """
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


class CoverageWrapperError(Exception):
    """Root of every error the runtime raises."""


class CoverageInitializationError(CoverageWrapperError):
    """Coverage could not be started in this execution environment."""

    def __init__(self, cause: str = "") -> None:
        message = "Failed to initialize coverage tracking"
        super().__init__(f"{message}: {cause}" if cause else message)
        self.cause = cause


class S3UploadError(CoverageWrapperError):
    """A coverage data file could not be written to S3.

    ``code`` is the AWS error code (``NoSuchBucket``, ``AccessDenied``...) or
    the name of the network failure (``ConnectTimeoutError``...), and ``hint``
    says what usually fixes it.
    """

    def __init__(self, code: str, detail: str, *, bucket: str, key: str, hint: str = "") -> None:
        super().__init__(f"Failed to upload coverage file to S3: {code}: {detail}")
        self.code = code
        self.detail = detail
        self.bucket = bucket
        self.key = key
        self.hint = hint


class ConfigurationError(ValueError, CoverageWrapperError):
    """An environment variable is missing or malformed.

    It is a ``ValueError`` so that ``except ValueError`` from the guide keeps working.
    """
