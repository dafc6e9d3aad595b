"""Attack: a cluster whose CNI ignores NetworkPolicy turns every policy of the platform into decoration.

Every isolation the platform claims between pods (the tenants' default-deny, the control plane's
ingress and egress policies: tests/test_lateral_attacks.py, tests/test_workload_lateral_attacks.py,
tests/test_control_plane_isolation_attacks.py) holds only where the CNI enforces NetworkPolicy. The
API server accepts NetworkPolicies whatever the CNI does with them, so on a kind cluster with a CNI
that ignores them (older kindnet, flannel alone, a CNI with policy off) `pulumi up` succeeds and
nothing is isolated. The program never talks to the cluster itself; the engine must find out: a
check the engine runs on every cluster (a default-deny namespace, a server, and a Job whose client
must be refused where the policies deny it and answered where they allow it), which every platform
and tenant namespace waits for, so nothing relying on policies is created on a cluster that ignores them.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import netpol_check
from components.versions import BUSYBOX_IMAGE
from platformctl.render import Render
from policy.labels import TENANT_NAMESPACE_LABEL
from stacks.services import PLATFORM_NAMESPACES
from tests.loopback import JsonHandler, LoopbackServer
from tests.test_config import _problems, _write, setting
from tests.test_gatekeeper_plan import CONSTRAINTS_API, admission, declared

JOB = "kubernetes:batch/v1:Job"
NAMESPACE = "kubernetes:core/v1:Namespace"
CHECK_TYPE = "platform:netpol_check:NetworkPolicyCheck"
ROOT = Path(__file__).resolve().parent.parent


def _check_jobs(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The enforcement check's Job on each cluster, by cluster."""
    checks = {r["urn"] for r in plan["resources"] if r["type"] == CHECK_TYPE}
    jobs: dict[str, dict[str, Any]] = {}
    for r in plan["resources"]:
        if r["type"] == JOB and r.get("parent") in checks:
            assert r["cluster"] not in jobs, f"{r['cluster']}: two enforcement checks"
            jobs[r["cluster"]] = r
    return jobs


def _waits_for(plan: dict[str, Any], urn: str) -> set[str]:
    """Every resource `urn` waits for (dependsOn, transitively; a component's wait covers its children)."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    children: dict[str, list[str]] = {}
    for r in plan["resources"]:
        if r.get("parent"):
            children.setdefault(r["parent"], []).append(r["urn"])
    seen: set[str] = set()
    todo = list(by_urn[urn].get("dependsOn", []))
    while todo:
        dep = todo.pop()
        if dep in seen or dep not in by_urn:
            continue
        seen.add(dep)
        todo += by_urn[dep].get("dependsOn", []) + children.get(dep, [])
    return seen


def test_every_clusters_namespaces_wait_for_a_network_policy_enforcement_check(renders: dict[str, Render]) -> None:
    problems = []
    for stack, result in renders.items():
        plan = result.plan
        jobs = _check_jobs(plan)
        clusters = sorted({r["cluster"] for r in plan["resources"] if r["type"] == NAMESPACE})
        for cluster in clusters:
            if cluster not in jobs:
                problems.append(f"{stack}/{cluster}: no NetworkPolicy enforcement check in the plan")
                continue
            check = jobs[cluster]
            own = check["inputs"]["metadata"]["namespace"]
            unchecked = sorted(
                r["inputs"]["metadata"]["name"] for r in plan["resources"]
                if r["type"] == NAMESPACE and r["cluster"] == cluster and r["inputs"]["metadata"]["name"] != own
                and check["urn"] not in _waits_for(plan, r["urn"])
            )
            if unchecked:
                problems.append(f"{stack}/{cluster}: namespaces created without waiting for the check: {unchecked}")
    assert not problems, "\n".join(problems)


# --- the check as the plan declares it ------------------------------------------------------------

def _check_objects(plan: dict[str, Any], cluster: str) -> dict[str, dict[str, Any]]:
    """The check's objects on `cluster`, by kind/name."""
    [check] = [r["urn"] for r in plan["resources"] if r["type"] == CHECK_TYPE and r["name"] == f"{cluster}-netpol-check"]
    return {f"{r['inputs']['kind']}/{r['inputs']['metadata']['name']}": r for r in plan["resources"]
            if r.get("parent") == check and "kind" in r["inputs"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_check_holds_a_server_and_a_client_apart_by_policy(renders: dict[str, Render]) -> None:
    for stack, result in renders.items():
        for cluster in ("control-plane", "dev", "prod"):
            objects = _check_objects(result.plan, cluster)
            assert set(objects) == {
                "Namespace/network-policy-check", "NetworkPolicy/deny-all", "NetworkPolicy/server-ingress",
                "NetworkPolicy/client-egress", "Service/server", "Deployment/server", f"Job/{netpol_check.JOB}",
            }, f"{stack}/{cluster}: {sorted(objects)}"
            ns = objects["Namespace/network-policy-check"]["inputs"]["metadata"]["labels"]
            assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
            deny = objects["NetworkPolicy/deny-all"]["inputs"]["spec"]
            assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
            ingress = objects["NetworkPolicy/server-ingress"]["inputs"]["spec"]
            assert [p["port"] for p in ingress["ingress"][0]["ports"]] == [netpol_check.ALLOWED_PORT, netpol_check.EGRESS_DENIED_PORT]
            egress = objects["NetworkPolicy/client-egress"]["inputs"]["spec"]
            assert [p["port"] for p in egress["egress"][1]["ports"]] == [netpol_check.ALLOWED_PORT, netpol_check.INGRESS_DENIED_PORT]
            assert {p["port"] for p in egress["egress"][0]["ports"]} == {53}  # DNS, nothing else
            assert objects["Service/server"]["inputs"]["spec"]["clusterIP"] == "None"  # DNS answers the pod itself

            job = objects[f"Job/{netpol_check.JOB}"]
            spec = job["inputs"]["spec"]
            assert job["inputs"]["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
            assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] <= 600
            [client] = spec["template"]["spec"]["containers"]
            assert client["image"] == BUSYBOX_IMAGE.ref and "@sha256:" in client["image"]
            assert client["terminationMessagePolicy"] == "FallbackToLogsOnError"
            fix = netpol_check.FIX_EKS if stack == "prod" else netpol_check.FIX_KUBECONFIG
            assert _env(client)["FIX"] == fix, f"{stack}/{cluster}: the failure names the wrong fix"
            assert len(spec["template"]["metadata"]["annotations"]["platform.io/checked-cluster"]) == 64
            # The client starts once the server answers and the policies exist.
            deps = set(job["dependsOn"])
            assert {objects[k]["urn"] for k in ("Deployment/server", "Service/server", "NetworkPolicy/deny-all",
                                                 "NetworkPolicy/server-ingress", "NetworkPolicy/client-egress")} <= deps


def test_each_cluster_is_checked_again_when_it_is_a_new_cluster(renders: dict[str, Render]) -> None:
    keys = {}
    for stack, result in renders.items():
        for cluster in ("control-plane", "dev", "prod"):
            job = _check_objects(result.plan, cluster)[f"Job/{netpol_check.JOB}"]
            keys[stack, cluster] = job["inputs"]["spec"]["template"]["metadata"]["annotations"]["platform.io/checked-cluster"]
    # The dev stack's kind clusters differ by API server and CA; the prod stack's EKS clusters are not known yet
    # offline (their endpoints and CAs are outputs), which the mock monitor renders the same.
    assert len({keys["dev", c] for c in ("control-plane", "dev", "prod")}) == 3, keys


def test_the_checks_pods_pass_the_platforms_constraints_in_real_opa(renders: dict[str, Render]) -> None:
    """Held to the constraints as if the namespace were a tenant's, its pods break only the registry rule, the one
    exemption (netpol_check.PLATFORM_NAMESPACE's reason: busybox from Docker Hub before Harbor exists). The one-shot
    Job's client needs no probe (the tenants' probes rule holds pods that restart when they stop)."""
    plan = copy.deepcopy(renders["dev"].plan)
    for r in declared(plan):
        obj = r["inputs"]
        match = obj.get("spec", {}).get("match", {})
        if obj["apiVersion"].startswith(CONSTRAINTS_API) and netpol_check.PLATFORM_NAMESPACE.name in match.get("excludedNamespaces", []):
            match["excludedNamespaces"].remove(netpol_check.PLATFORM_NAMESPACE.name)
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] == netpol_check.PLATFORM_NAMESPACE.name:
            obj["metadata"]["labels"][TENANT_NAMESPACE_LABEL] = "true"
    for cluster in ("control-plane", "dev", "prod"):
        objects = _check_objects(plan, cluster)
        for key in ("Deployment/server", f"Job/{netpol_check.JOB}"):
            obj = objects[key]["inputs"]
            kinds, failures = admission(plan, cluster, obj)
            assert {"PlatformAllowedRegistries", "PlatformDisallowedTags", "PlatformContainerResources",
                    "PlatformPodSecurity", "PlatformPodRestricted"} <= set(kinds), (cluster, key, kinds)
            # The registry (the exemption): nothing else, restricted pod security included.
            assert {f.split(":", 1)[0] for f in failures} == {"PlatformAllowedRegistries"}, (cluster, key, failures)
            assert all("docker.io/library/busybox" in f for f in failures if f.startswith("PlatformAllowedRegistries:")), failures
            # Not vacuous: the pod security constraints do read these pods.
            loose = copy.deepcopy(obj)
            loose["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
            _, refused = admission(plan, cluster, loose)
            assert any("allowPrivilegeEscalation" in f for f in refused), refused
    # And the exemption is where the platform's are, with its reason.
    assert netpol_check.PLATFORM_NAMESPACE in PLATFORM_NAMESPACES and "Harbor" in netpol_check.PLATFORM_NAMESPACE.reason


# --- the check's scripts, run by busybox as the pods run them ---------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def busybox_bin(tmp_path: Path) -> Path:
    """A PATH holding only the busybox applets the scripts use (the image's)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("busybox not installed (.ci/install --tests)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "wget", "httpd", "sleep", "timeout"):
        (bin_dir / applet).symlink_to(busybox)
    return bin_dir


@contextmanager
def _server(bin_dir: Path, www: Path, ports: list[int]) -> Iterator[None]:
    """netpol_check.SERVER_SH answering on `ports`, once SERVER_READY_SH says so."""
    env = {"PATH": str(bin_dir), "PORTS": " ".join(map(str, ports)), "WWW": str(www)}
    www.mkdir()
    process = subprocess.Popen([str(bin_dir / "sh"), "-c", netpol_check.SERVER_SH], env=env, start_new_session=True)
    try:
        for _ in range(50):
            if subprocess.run([str(bin_dir / "sh"), "-c", netpol_check.SERVER_READY_SH], env=env, check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server never became ready")
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@contextmanager
def _dropping() -> Iterator[int]:
    """A port that takes connections and never answers: what a CNI dropping the packets looks like to wget."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


class _AnswersOnce(LoopbackServer):
    """Answers one request, then stops listening: a policy the CNI applied a moment after the client started."""

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        class Handler(JsonHandler):
            state: _AnswersOnce

            def do_GET(self) -> None:
                self._reply(200, "ok")
                threading.Thread(target=self.state.__exit__, daemon=True).start()

        return Handler


def _check(bin_dir: Path, allowed: int, ingress_denied: int, egress_denied: int) -> subprocess.CompletedProcess[str]:
    env = {**netpol_check.check_env("127.0.0.1", "FIX: install a CNI that enforces."), "PATH": str(bin_dir),
           "ALLOWED_PORT": str(allowed), "INGRESS_DENIED_PORT": str(ingress_denied), "EGRESS_DENIED_PORT": str(egress_denied),
           "ATTEMPTS": "3", "PAUSE": "1", "TIMEOUT": "1"}
    return subprocess.run([str(bin_dir / "sh"), "-c", netpol_check.CHECK_SH], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_cni_that_ignores_the_policies_fails_the_check_naming_the_fix(busybox_bin: Path, tmp_path: Path) -> None:
    ports = [_free_port() for _ in range(3)]
    with _server(busybox_bin, tmp_path / "www", ports):  # every port answers: nothing is enforced
        done = _check(busybox_bin, *ports)
    assert done.returncode == 1, done
    assert f"127.0.0.1:{ports[1]} answered though the server's ingress policy denies it" in done.stderr
    assert "NetworkPolicy is not enforced" in done.stderr and "FIX: install a CNI that enforces." in done.stderr


def test_a_cni_that_enforces_ingress_only_fails_the_check(busybox_bin: Path, tmp_path: Path) -> None:
    allowed, refused, egress = _free_port(), _free_port(), _free_port()
    with _server(busybox_bin, tmp_path / "www", [allowed, egress]):
        done = _check(busybox_bin, allowed, refused, egress)
    assert done.returncode == 1, done
    assert f"127.0.0.1:{egress} answered though the client's egress policy denies it" in done.stderr


def test_a_cni_that_enforces_passes_the_check(busybox_bin: Path, tmp_path: Path) -> None:
    allowed, refused = _free_port(), _free_port()
    with _dropping() as dropped, _server(busybox_bin, tmp_path / "www", [allowed]):
        done = _check(busybox_bin, allowed, refused, dropped)  # one port refused, one dropped: both denied
    assert done.returncode == 0, done
    assert "NetworkPolicy enforced" in done.stdout


def test_policies_applied_a_moment_after_the_client_starts_still_pass(busybox_bin: Path, tmp_path: Path) -> None:
    allowed, refused = _free_port(), _free_port()
    with _AnswersOnce() as late, _server(busybox_bin, tmp_path / "www", [allowed]):
        done = _check(busybox_bin, allowed, refused, int(late.url.rsplit(":", 1)[1]))
    assert done.returncode == 0, done


def test_a_server_that_does_not_answer_is_no_verdict_on_the_policies(busybox_bin: Path) -> None:
    with _dropping() as dropped:  # the control itself does not answer (DNS, image, pod network): neither verdict
        done = _check(busybox_bin, dropped, _free_port(), _free_port())
    assert done.returncode == 2, done
    assert "Inconclusive" in done.stderr and "NetworkPolicy enforced" not in done.stdout + done.stderr


# --- the switch ---------------------------------------------------------------------------------------

def test_a_kubeconfig_cluster_can_skip_the_check_and_only_that_one(tmp_path: Path) -> None:
    from platformctl.render import render

    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["platform:clusters"]["dev"]["kubeconfig"]["networkPolicyCheck"] = False
    file = tmp_path / "Pulumi.dev.yaml"
    file.write_text(yaml.safe_dump(doc))
    plan = render(file, "dev", charts=False).plan
    assert set(_check_jobs(plan)) == {"control-plane", "prod"}
    assert not [r for r in plan["resources"] if r["type"] == NAMESPACE and r["cluster"] == "dev"
                and r["inputs"]["metadata"]["name"] == netpol_check.PLATFORM_NAMESPACE.name]


def test_a_check_switch_that_is_not_a_boolean_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text()),
                  setting("platform:clusters", "prod", "kubeconfig", "networkPolicyCheck", value="sometimes"))
    [line] = [line for line in _problems(path) if "networkPolicyCheck" in line]
    assert "platform:clusters.prod.kubeconfig.networkPolicyCheck" in line and "allowed: true or false" in line, line
