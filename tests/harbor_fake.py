"""Harbor for .ci/promote-image.py: a real registry (Debian's `docker-registry`, the CNCF
distribution registry) behind Harbor's REST API as far as promotion reads it (the `approved`
project's severity gate, artifacts' scan overviews), on one HTTPS origin as Harbor serves both.

`/v2/` is forwarded to the registry; a manifest pulled from a `proxy-*` repository counts as
cached, and its scan reports "Running" once, then `counts(digest)`; every manifest pushed is recorded
(`pushed`), and `approved`'s artifacts answer by tag or digest with their digest. Needs `docker-registry`
and `skopeo` on PATH (Debian packages; .ci/install installs them for the tests).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import urllib.parse
import subprocess
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.certs import Tls, server_context
from tests.loopback import LoopbackServer
from tests.openbao import free_port

HOP_BY_HOP = {"host", "transfer-encoding", "connection", "keep-alive"}


def tools_missing() -> list[str]:
    return [tool for tool in ("docker-registry", "skopeo") if shutil.which(tool) is None]


class Registry:
    """The distribution registry on plain HTTP at 127.0.0.1, storing in `directory`."""

    def __init__(self, directory: Path):
        self.port = free_port()
        config = directory / "config.yml"
        config.write_text(json.dumps({
            "version": 0.1, "log": {"level": "error"},
            "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
            "http": {"addr": f"127.0.0.1:{self.port}", "relativeurls": True},  # Locations follow the front
        }))
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/v2/")
                connection.getresponse().read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start")
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


class FakeHarbor(LoopbackServer):
    def __init__(self, tls: Tls, registry: Registry, counts: Callable[[str], dict[str, int]], severity: str = "high"):
        self.tls, self.registry, self.counts, self.severity = tls, registry, counts, severity
        self.cached: set[str] = set()  # digests pulled through a proxy cache
        self.scans: dict[str, int] = {}
        self.pushed: list[str] = []  # `<repository>:<reference>` of every manifest PUT

    def tls_context(self):
        return server_context(self.tls)

    @property
    def host(self) -> str:
        return self.url.removeprefix("https://")

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            state: FakeHarbor
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self) -> None:
                body = self._body()
                match = re.match(r"^/v2/(proxy-[^/]+/.+)/manifests/(.+)$", self.path)
                upstream = http.client.HTTPConnection("127.0.0.1", self.state.registry.port, timeout=60)
                # Repeated headers (skopeo sends one Accept per media type) joined, as HTTP allows.
                headers = {k: ", ".join(self.headers.get_all(k)) for k in set(self.headers.keys()) if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body if body or self.command in ("PUT", "PATCH", "POST") else None,
                                 headers={**headers, "Content-Length": str(len(body))} if body else headers)
                response = upstream.getresponse()
                data = response.read()
                if match and self.command == "GET" and response.status == 200:
                    self.state.cached.add(response.getheader("Docker-Content-Digest", ""))
                if (pushed := re.match(r"^/v2/(.+)/manifests/(.+)$", self.path)) and self.command == "PUT":
                    self.state.pushed.append(f"{pushed.group(1)}:{pushed.group(2)}")
                self._reply(response.status, data, dict(response.getheaders()))

            def _api(self) -> None:
                path = self.path.removeprefix("/api/v2.0/")
                if path == "projects/approved":
                    return self._json(200, {"name": "approved", "metadata": {"prevent_vul": "true", "severity": self.state.severity}})
                if approved := re.match(r"^projects/approved/repositories/([^/?]+)/artifacts/([^/?]+)", path):
                    return self._approved(urllib.parse.unquote(urllib.parse.unquote(approved.group(1))), approved.group(2))
                match = re.match(r"^projects/proxy-[^/]+/repositories/[^/]+/artifacts/(sha256:[0-9a-f]+)\?", path)
                if not match or match.group(1) not in self.state.cached:
                    return self._json(404, {"errors": [{"code": "NOT_FOUND"}]})
                digest = match.group(1)
                self.state.scans[digest] = self.state.scans.get(digest, 0) + 1
                report = {"scan_status": "Running"} if self.state.scans[digest] == 1 else {
                    "scan_status": "Success", "summary": {"summary": self.state.counts(digest)}}
                self._json(200, {"scan_overview": {"application/vnd.security.vulnerability.report; version=1.1": report}})

            def _approved(self, repository: str, reference: str) -> None:
                """An artifact of `approved`, as far as Harbor's answer names it: its digest."""
                registry = http.client.HTTPConnection("127.0.0.1", self.state.registry.port, timeout=60)
                registry.request("HEAD", f"/v2/approved/{repository}/manifests/{reference}", headers={"Accept": ", ".join((
                    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"))})
                response = registry.getresponse()
                response.read()
                if response.status != 200:
                    return self._json(404, {"errors": [{"code": "NOT_FOUND"}]})
                self._json(200, {"digest": response.getheader("Docker-Content-Digest")})

            def _json(self, status: int, document: Any) -> None:
                self._reply(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

            def _handle(self) -> None:
                if self.path.startswith("/api/v2.0/"):
                    assert self.headers.get("Authorization", "").startswith("Basic ")
                    self._api()
                else:
                    self._forward()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler
