"""Names the exec wrapper script, the redirect handler and `lambdacov attach` share."""

from __future__ import annotations

SELF = "coverage_wrapper.handler.lambda_handler"
ORIGINAL_HANDLER_VAR = "LAMBDACOV_ORIGINAL_HANDLER"
