"""moto behind a loopback proxy that hands out locations a test can fetch.

moto hands out no location that can be fetched: GetFunction's ``Code.Location``
is a made-up https://awslambda-<region>-tasks.s3... URL (not on this machine,
so never fetched from a test) and a layer version's ``Content.Location`` is
``s3://``. :class:`LocationProxy` stands in front of moto on 127.0.0.1 and
does what Lambda does instead: it answers GetFunction and GetLayerVersion with
locations it serves itself, over loopback, for the zips the test registered.
Everything else is moto's answer, unchanged.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer


class LocationProxy(LoopbackServer):
    """moto behind 127.0.0.1, with fetchable code and layer locations (see the module's doc).

    ``code[function name]`` and ``layers[(layer name, version)]`` hold the zips
    to serve; ``downloads`` lists the paths fetched from the proxy's own store.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.code: dict[str, bytes] = {}
        self.layers: dict[tuple[str, int], bytes] = {}
        self.downloads: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith("/stored/"):
                    owner._serve(self, path)
                    return
                status, headers, payload = owner._forward(self, body)
                payload = owner._rewrite(self.command, path, status, payload)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=30
        )
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response.status, response.getheaders(), payload

    def _rewrite(self, method: str, path: str, status: int, payload: bytes) -> bytes:
        """GetFunction's and GetLayerVersion's locations, pointed at this proxy's store."""
        parts = [urllib.parse.unquote(part) for part in path.strip("/").split("/")]
        if method != "GET" or status != 200:
            return payload
        if parts[:2] == ["2015-03-31", "functions"] and len(parts) == 3:
            name = parts[2].rsplit(":", 1)[-1]
            if name in self.code:
                document = json.loads(payload)
                document["Code"]["Location"] = f"{self.endpoint}/stored/code/{name}"
                return json.dumps(document).encode()
        elif parts[:2] == ["2018-10-31", "layers"] and len(parts) == 5:
            key = (parts[2].rsplit(":", 1)[-1], int(parts[4]))
            if key in self.layers:
                document = json.loads(payload)
                document["Content"]["Location"] = f"{self.endpoint}/stored/layer/{key[0]}/{key[1]}"
                return json.dumps(document).encode()
        return payload

    def _serve(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        parts = path.strip("/").split("/")
        self.downloads.append(path)
        if parts[1] == "code":
            data = self.code.get(parts[2])
        else:
            data = self.layers.get((parts[2], int(parts[3])))
        handler.send_response(200 if data is not None else 404)
        handler.send_header("Content-Length", str(len(data or b"")))
        handler.end_headers()
        handler.wfile.write(data or b"")
