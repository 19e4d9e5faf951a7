"""An embedded AWS for trying lambdacov without an account: moto's server on loopback.

``EmbeddedAws`` starts moto's threaded server in this process on a free
127.0.0.1 port. Every client made through its :class:`~lambdacov.aws.AwsContext`
talks to it over real HTTP, and the credentials it puts in the environment are
fake ones, so nothing can reach a real AWS account by accident.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Any

from lambdacov.aws import AwsContext
from lambdacov.errors import UsageError

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lambdacov-local",
    "AWS_SECRET_ACCESS_KEY": "lambdacov-local",  # moto accepts any key
}


class EmbeddedAws:
    """moto server on 127.0.0.1 for the lifetime of a ``with`` block."""

    def __init__(self, region: str = "us-east-1", port: int = 0) -> None:
        self.region = region
        self.port = port
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint_url(self) -> str:
        """The server's URL (``http://127.0.0.1:PORT``)."""
        if self._server is None:
            raise RuntimeError("the embedded AWS is not running")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def context(self) -> AwsContext:
        """The AwsContext that reaches this server."""
        return AwsContext(region=self.region, endpoint_url=self.endpoint_url)

    def start(self) -> EmbeddedAws:
        """Start the server and point this process's AWS credentials at fake ones."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:
            raise UsageError(
                "the embedded AWS needs moto's server",
                "pip install 'lambdacov[local]'",
            ) from error
        # moto's server logs a line per request, and a traceback for every API it lacks
        # (which lambdacov expects and handles): keep both out of the user's terminal.
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
        for name, value in {
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
        }.items():
            self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the server and restore the environment."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
