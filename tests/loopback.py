"""The lifecycle the HTTP stubs share: serve on an ephemeral 127.0.0.1 port for a `with` block.

A stub subclasses `LoopbackServer` and names its request handler class; each request is handled
by a subclass of it whose `state` is the stub, so handlers read and change the stub's state.
Handlers of JSON APIs subclass `JsonHandler`.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def tls_context(self) -> ssl.SSLContext | None:
        """A server TLS context, or None for plain HTTP."""
        return None

    def __enter__(self) -> Any:
        class Handler(self.handler_class()):  # type: ignore[misc]
            state = self

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # ephemeral port, loopback only
        context = self.tls_context()
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if context is not None else "http"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert getattr(self, "_server", None) is not None, "use the stub as a context manager"
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"


class JsonHandler(BaseHTTPRequestHandler):
    """A stub's request handler that answers with JSON documents and logs nothing."""

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, document: Any = None) -> None:
        """`document` as JSON; None: an empty body."""
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
