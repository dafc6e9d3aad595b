"""The one Vault peer the tests cannot get from a real server: a broken ingress in front of it.

Every other Vault test runs against real OpenBao servers (tests/openbao.py). A real server
cannot be made to answer every request with an error status, as an ingress does while its
backend is missing; `FailingIngress` serves TLS on 127.0.0.1 and answers every request with
`status` and a Vault-style error body, recording the paths it was asked for.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.certs import Tls, server_context
from tests.loopback import LoopbackServer


@dataclass
class FailingIngress(LoopbackServer):
    tls: Tls
    status: int = 503
    requests: list[str] = field(default_factory=list)  # "<method> <path>" of every request

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def tls_context(self) -> ssl.SSLContext:
        return server_context(self.tls)


class _Handler(BaseHTTPRequestHandler):
    state: FailingIngress

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _fail(self) -> None:
        self.state.requests.append(f"{self.command} {self.path}")
        data = json.dumps({"errors": [f"upstream answered {self.state.status}"]}).encode()
        self.send_response(self.state.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = _fail
