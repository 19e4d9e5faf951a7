"""The emulator's ``/var/runtime/bootstrap``: starts awslambdaric as Lambda's Python runtime does.

The emulator runs ``<runtime python> <this file>``, behind
``$AWS_LAMBDA_EXEC_WRAPPER`` when the function sets one. Like AWS's bootstrap
it reads the handler from ``_HANDLER`` when it starts (so a wrapper may have
changed it), puts ``LAMBDA_TASK_ROOT`` first on sys.path, and hands over to
``awslambdaric.bootstrap.run`` the way ``python -m awslambdaric`` does.

This file runs inside the runtime's interpreter, where lambdacov is not
installed: it imports nothing but the standard library and awslambdaric.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _lambda_sys_path() -> None:
    # Running a script puts its directory first on sys.path; here that is
    # lambdacov/local, whose module names (api, process...) would shadow the
    # function's own. Lambda's sys.path has no such entry.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root:
        sys.path[:] = [task_root, *(entry for entry in sys.path if entry != task_root)]


def main() -> None:
    """Run the function's handler under awslambdaric until the environment is shut down."""
    _lambda_sys_path()
    handler = os.environ.get("_HANDLER")
    if not handler:
        sys.stderr.write("bootstrap: _HANDLER is not set\n")
        sys.exit(1)

    from awslambdaric import bootstrap
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    try:
        from awslambdaric.lambda_config import LambdaConfigProvider
    except ImportError:  # awslambdaric < 3.1 decided thread polling itself
        api_address = os.environ["AWS_LAMBDA_RUNTIME_API"]
        use_thread_polling = False
    else:
        # The same decisions as awslambdaric's own __main__: poll in a thread on
        # 3.12+ (by AWS_EXECUTION_ENV), which lets signal handlers run, and on
        # Lambda Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY) fork that many
        # runtime processes, each of which imports the handler and asks for work.
        config = LambdaConfigProvider([sys.argv[0], handler])
        api_address = config.api_address
        use_thread_polling = config.use_thread_polling
        if os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY") and not hasattr(
            config, "is_multi_concurrent"
        ):
            sys.stderr.write(
                "bootstrap: this awslambdaric cannot run several runtime processes"
                " (Managed Instances): install awslambdaric 4.2.2 or later\n"
            )
            sys.exit(1)
        if getattr(config, "is_multi_concurrent", False):
            from awslambdaric.lambda_multi_concurrent_utils import MultiConcurrentRunner

            MultiConcurrentRunner.run_concurrent(
                handler,
                api_address,
                use_thread_polling,
                config.lmi_socket_path,
                int(config.max_concurrency),
            )
            return

    bootstrap.run(handler, LambdaRuntimeClient(api_address, use_thread_polling))


if __name__ == "__main__":
    main()
