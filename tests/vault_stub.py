"""A small stateful Vault on 127.0.0.1, served over TLS, for what a real server cannot do here.

The `VaultInit` provider runs against real OpenBao servers (tests/openbao.py) except in two
cases, which this stub serves: KMS auto-unseal (no KMS here: `auto_unseal` nodes unseal
themselves and return recovery keys from init) and a broken ingress (`fail_status`: every
request answered with that status). It implements `GET/PUT /v1/sys/init`,
`GET /v1/sys/seal-status`, `PUT /v1/sys/unseal` and `GET /v1/sys/health` with Vault's status
codes and messages.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.certs import Tls, server_context
from tests.loopback import LoopbackServer


@dataclass
class VaultStub(LoopbackServer):
    tls: Tls
    auto_unseal: bool = False
    fail_status: int | None = None  # answer every request with this status (a broken Vault or ingress)
    initialized: bool = False
    sealed: bool = True
    threshold: int = 0
    keys: list[str] = field(default_factory=list)
    recovery_keys: list[str] = field(default_factory=list)
    root_token: str = ""
    progress: int = 0
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (method, path, body)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def tls_context(self) -> ssl.SSLContext:
        return server_context(self.tls)

    def calls(self, path: str, *methods: str) -> list[dict[str, Any]]:
        """Request bodies sent to `path`, by any of `methods` (default: all)."""
        return [body for method, p, body in self.requests if p == path and (not methods or method in methods)]

    # --- Vault's behaviour -------------------------------------------------------
    def seal_status(self) -> dict[str, Any]:
        return {
            "type": "awskms" if self.auto_unseal else "shamir",
            "initialized": self.initialized,
            "sealed": self.sealed,
            "t": self.threshold,
            "n": len(self.recovery_keys if self.auto_unseal else self.keys),
            "progress": self.progress,
            "nonce": "",
            "version": "1.21.0",
            "recovery_seal": self.auto_unseal,
        }

    def init(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.initialized:
            return 400, {"errors": ["Vault is already initialized"]}
        if self.auto_unseal:
            shares, threshold = body.get("recovery_shares"), body.get("recovery_threshold")
        else:
            shares, threshold = body.get("secret_shares"), body.get("secret_threshold")
        if not isinstance(shares, int) or not isinstance(threshold, int) or not 1 <= threshold <= shares:
            return 400, {"errors": [f"invalid shares/threshold: {shares}/{threshold}"]}
        generated = [secrets.token_hex(32) for _ in range(shares)]
        self.initialized, self.threshold, self.root_token = True, threshold, f"hvs.{secrets.token_urlsafe(18)}"
        if self.auto_unseal:
            self.recovery_keys, self.sealed = generated, False
            return 200, {"keys": [], "keys_base64": [], "recovery_keys": generated,
                         "recovery_keys_base64": generated, "root_token": self.root_token}
        self.keys = generated
        return 200, {"keys": generated, "keys_base64": generated, "root_token": self.root_token}

    def unseal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("reset"):
            self.progress = 0
            return 200, self.seal_status()
        if not self.initialized:
            return 400, {"errors": ["Vault is not initialized"]}
        if not self.sealed:
            return 200, self.seal_status()
        if body.get("key") not in self.keys:
            return 400, {"errors": ["invalid key"]}
        self.progress += 1
        if self.progress >= self.threshold:
            self.sealed, self.progress = False, 0
        return 200, self.seal_status()

    def health(self, query: dict[str, list[str]]) -> int:
        def code(name: str, default: int) -> int:
            return int(query.get(name, [default])[0])

        if not self.initialized:
            return code("uninitcode", 501)
        if self.sealed:
            return code("sealedcode", 503)
        return code("activecode", 200)


class _Handler(BaseHTTPRequestHandler):
    state: VaultStub

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        stub = self.state
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        with stub._lock:
            stub.requests.append((self.command, split.path, body))
            if stub.fail_status is not None:
                self._reply(stub.fail_status, {"errors": [f"stub failing with {stub.fail_status}"]})
                return
            route = (self.command, split.path)
            if route == ("GET", "/v1/sys/init"):
                self._reply(200, {"initialized": stub.initialized})
            elif route in (("PUT", "/v1/sys/init"), ("POST", "/v1/sys/init")):
                self._reply(*stub.init(body))
            elif route == ("GET", "/v1/sys/seal-status"):
                self._reply(200, stub.seal_status())
            elif route in (("PUT", "/v1/sys/unseal"), ("POST", "/v1/sys/unseal")):
                self._reply(*stub.unseal(body))
            elif split.path == "/v1/sys/health" and self.command in ("GET", "HEAD"):
                status = stub.health(parse_qs(split.query))
                self._reply(status, {"initialized": stub.initialized, "sealed": stub.sealed, "standby": False})
            else:
                self._reply(404, {"errors": [f"no handler for {self.command} {split.path}"]})

    do_GET = do_PUT = do_POST = do_HEAD = _handle
