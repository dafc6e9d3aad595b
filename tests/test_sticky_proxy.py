"""OpenUnison with replicas keeps each browser on the pod that began its login, with Traefik out of OpenUnison's
namespace: the plan's route reaches the sticky proxy (components/sticky_proxy.py), and the real HAProxy, with the
configuration the prod plan declares, pins by cookie over the pods it finds by DNS.

The real run swaps three lines of that configuration for the loopback: the cluster's resolver (a DNS server here
that answers the pods' name with two loopback addresses), the listener's address and the pods' port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.openunison import NAMESPACE, OPENUNISON_HTTP_PORT, POD_LABELS, STICKY_COOKIE, STICKY_SERVICE
from components.sticky_proxy import PORT, StickyProxyArgs
from tests.test_sso_attacks import route

CONTROL_PLANE = "control-plane"


def objects(plan: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The control plane's objects of `kind` the program declares in OpenUnison's namespace, by name."""
    return {r["inputs"]["metadata"]["name"]: r for r in plan["resources"] if r.get("cluster") == CONTROL_PLANE
            and r["inputs"].get("kind") == kind and r["inputs"]["metadata"].get("namespace") == NAMESPACE}


def test_replicated_openunison_is_reached_through_the_sticky_proxy(prod: dict, renders: dict) -> None:
    """prod (three replicas): the public name reaches the proxy's Service, which the proxy's pods back; the pods'
    headless Service selects OpenUnison's pods; the proxy holds no token, and only it and Traefik reach the pods.
    dev (one replica): no proxy, the route names OpenUnison's Service."""
    issuer = prod["outputs"]["issuerUrl"]
    assert route(prod, f"{issuer}/.well-known/openid-configuration") == f"{NAMESPACE}/{STICKY_SERVICE}"
    services, deployments = objects(prod, "Service"), objects(prod, "Deployment")
    pods = {"app.kubernetes.io/name": "sticky-proxy", "app.kubernetes.io/instance": STICKY_SERVICE}
    assert services[STICKY_SERVICE]["inputs"]["spec"]["selector"] == pods
    headless = services[f"{STICKY_SERVICE}-pods"]["inputs"]["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == POD_LABELS
    proxy = deployments[STICKY_SERVICE]["inputs"]["spec"]
    assert proxy["replicas"] == 3 and proxy["template"]["metadata"]["labels"] == pods
    assert proxy["template"]["spec"]["automountServiceAccountToken"] is False
    policies = {name: r["inputs"]["spec"] for name, r in objects(prod, "NetworkPolicy").items()}
    assert policies[STICKY_SERVICE]["podSelector"] == {"matchLabels": pods}
    assert policies[STICKY_SERVICE]["ingress"][0]["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}
    assert policies[f"{STICKY_SERVICE}-to-pods"] == {"podSelector": {"matchLabels": POD_LABELS}, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"podSelector": {"matchLabels": pods}}], "ports": [{"protocol": "TCP", "port": OPENUNISON_HTTP_PORT}]}]}
    # The Service main declared under the OpenUnison component itself (same name): taken over in place, not created
    # beside the old object of that name.
    [component] = [r["urn"] for r in prod["resources"] if r["type"] == "platform:openunison:OpenUnison"]
    assert services[STICKY_SERVICE]["options"]["aliases"] == [{"name": f"{CONTROL_PLANE}-{STICKY_SERVICE}", "parentUrn": component}]
    assert services[STICKY_SERVICE]["parent"] != component
    dev = renders["dev"].plan
    assert route(dev, f"{dev['outputs']['issuerUrl']}/.well-known/openid-configuration") == f"{NAMESPACE}/openunison-orchestra"
    assert STICKY_SERVICE not in objects(dev, "Deployment")


def test_one_replica_needs_no_proxy() -> None:
    with pytest.raises(ValueError, match="two or more replicas, got 1"):
        StickyProxyArgs(STICKY_SERVICE, None, NAMESPACE, POD_LABELS, OPENUNISON_HTTP_PORT, STICKY_COOKIE, 1)  # type: ignore[arg-type]


# --- the real HAProxy on the prod plan's configuration ---------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _dns_answer(query: bytes, host: str, addresses: list[str]) -> bytes:
    """An answer to `query` (RFC 1035): `addresses` for an A question about `host`, none for any other type,
    NXDOMAIN for any other name."""
    at, labels = 12, []
    while query[at]:
        labels.append(query[at + 1:at + 1 + query[at]].decode())
        at += 1 + query[at]
    qtype, question = int.from_bytes(query[at + 1:at + 3], "big"), query[12:at + 5]
    known = ".".join(labels).rstrip(".") == host
    records = addresses if known and qtype == 1 else []
    header = query[:2] + bytes([0x81, 0x80 if known else 0x83]) + b"\x00\x01" + len(records).to_bytes(2, "big") + b"\x00\x00\x00\x00"
    return header + question + b"".join(
        b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04" + socket.inet_aton(address) for address in records)


@pytest.fixture
def haproxy(prod: dict, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """HAProxy on the prod plan's haproxy.cfg before two loopback "pods" (their answers name them and echo the
    Cookie and X-Forwarded-Proto headers they got): its URL and the pods' addresses."""
    if shutil.which("haproxy") is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("haproxy not installed (.ci/install --tests)")
    config = objects(prod, "ConfigMap")[STICKY_SERVICE]["inputs"]["data"]["haproxy.cfg"]
    host = f"{STICKY_SERVICE}-pods.{NAMESPACE}.svc.cluster.local"
    pods, pod_port, front = ["127.0.0.2", "127.0.0.3"], _free_port("127.0.0.2"), _free_port("127.0.0.1")

    class Pod(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps({"pod": self.server.server_address[0], "cookie": self.headers.get("Cookie"),
                               "proto": self.headers.get("X-Forwarded-Proto")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    servers = [ThreadingHTTPServer((address, pod_port), Pod) for address in pods]
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def resolve() -> None:
        dns.settimeout(0.2)
        while not stop.is_set():
            try:
                query, peer = dns.recvfrom(4096)
            except TimeoutError:
                continue
            dns.sendto(_dns_answer(query, host, pods), peer)

    swaps = {"  parse-resolv-conf": f"  nameserver test 127.0.0.1:{dns.getsockname()[1]}",
             f"  bind :{PORT}": f"  bind 127.0.0.1:{front}", f"{host}:{OPENUNISON_HTTP_PORT} ": f"{host}:{pod_port} "}
    for line, loopback in swaps.items():
        assert config.count(line) == 1, line
        config = config.replace(line, loopback)
    (tmp_path / "haproxy.cfg").write_text(config)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers] + [threading.Thread(target=resolve, daemon=True)]
    for thread in threads:
        thread.start()
    process = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{front}/", pods
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
        stop.set()
        for server in servers:
            server.shutdown()
        dns.close()
        print(output)


def _get(url: str, cookie: str | None = None) -> tuple[dict[str, Any], str | None]:
    headers = {"X-Forwarded-Proto": "https", **({"Cookie": cookie} if cookie else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as answer:
        return json.loads(answer.read()), answer.headers.get("Set-Cookie")


def test_the_proxy_keeps_each_browser_on_one_pod(haproxy: tuple[str, list[str]]) -> None:
    url, pods = haproxy
    seen: dict[str, str] = {}  # pod -> the Set-Cookie that pins to it
    deadline = time.monotonic() + 20
    while set(seen) != set(pods) and time.monotonic() < deadline:  # both pods found by DNS, spread without a cookie
        try:
            answer, set_cookie = _get(url)
        except OSError:
            time.sleep(0.2)
            continue
        if answer["pod"] not in seen:
            seen[answer["pod"]] = set_cookie or ""
    assert set(seen) == set(pods), seen
    for pod, set_cookie in seen.items():
        attributes = [part.strip() for part in set_cookie.split(";")]
        assert attributes[0].startswith(f"{STICKY_COOKIE}=") and {"Secure", "HttpOnly", "SameSite=None"} <= set(attributes[1:]), set_cookie
        # Every later request with that cookie reaches the same pod, which sees OpenUnison's own cookie and Traefik's
        # headers as sent, and never the proxy's cookie.
        for _ in range(10):
            answer, again = _get(url, f"tremolosession=abc; {attributes[0]}")
            assert (answer["pod"], answer["cookie"], answer["proto"], again) == (pod, "tremolosession=abc", "https", None)
