"""Call a handler with a list of events in one process, like a warm Lambda would.

    python drive_handler.py FUNCTION_DIR EVENTS_JSON OUTPUT_JSON [--plain HANDLER]

Without ``--plain`` the handler is reached the way the exec wrapper reaches it
(``coverage_wrapper.handler.lambda_handler`` with LAMBDACOV_ORIGINAL_HANDLER
set by the caller). With ``--plain mod.fn`` the function's own handler is
called directly: run under ``coverage run`` that is the oracle. Each result or
exception is written to OUTPUT_JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import uuid
from pathlib import Path


class Context:
    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = "orders"

    def get_remaining_time_in_millis(self) -> int:
        # LAMBDACOV_TEST_REMAINING_MS: a function close to its timeout.
        return int(os.environ.get("LAMBDACOV_TEST_REMAINING_MS", "60000"))


def main() -> None:
    function_dir, events_path, output_path = sys.argv[1:4]
    sys.path.insert(0, function_dir)
    if len(sys.argv) > 5 and sys.argv[4] == "--plain":
        module_name, _, name = sys.argv[5].rpartition(".")
        handler = getattr(importlib.import_module(module_name), name)
    else:
        handler = importlib.import_module("coverage_wrapper.handler").lambda_handler
    with open(events_path, encoding="utf-8") as handle:
        events = json.load(handle)
    # LAMBDACOV_TEST_UNLINK_AFTER=N:PATH deletes PATH after the Nth event: a
    # full /tmp that frees up in the middle of a warm environment's life.
    unlink_after, _, unlink_path = os.environ.get("LAMBDACOV_TEST_UNLINK_AFTER", "").partition(":")
    results = []
    for number, event in enumerate(events, 1):
        if unlink_after and number == int(unlink_after) + 1:
            Path(unlink_path).unlink()
        try:
            results.append({"ok": handler(event, Context())})
        except Exception as error:
            results.append({"raised": type(error).__name__, "message": str(error)})
    with open(output_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, sort_keys=True)


if __name__ == "__main__":
    main()
