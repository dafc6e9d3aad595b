"""An attacker's review of CI: the platform's own pipeline (`.gitlab-ci.yml`, its runner, the merge
request note) and the tenants' runners. The attackers: a platform engineer with Developer rights on
the platform project (opens merge requests, whose jobs run their branch's code on the platform's
runner, but cannot merge or deploy), a tenant's developer and whatever their CI job runs. Each test
is one attempt, made against what the program really creates (both stacks' plans, Kubernetes'
NetworkPolicy rules as tests/test_delivery_attacks.py's `Network` evaluates them); each must fail
for the attacker.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from components.gitlab_runner import JOB_LABEL, NAMESPACE
from platformctl.render import Render
from tests.test_delivery_attacks import DNS, IMDS, TRAEFIK, Network, Pod, _subnet_address

# A job of the platform project's runner: a merge request's (the branch's code) as much as a deploy's.
PLATFORM_JOB = Pod(f"{NAMESPACE}/job", NAMESPACE, {JOB_LABEL: "platform"}, ())
INTERNET = ipaddress.ip_address("203.0.113.7")


def _refused(network: Network, attempts: dict[str, tuple[Any, int]]) -> list[str]:
    return [what for what, (address, port) in attempts.items() if network.reaches(PLATFORM_JOB, address, port)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_platform_merge_request_job_reaches_no_platform_endpoint_but_the_ingress_controller(
        renders: dict[str, Render], stack: str) -> None:
    """A merge request's job runs its branch's code on the platform's runner: it must not talk to
    Vault's internal listener, Gitaly, the databases, Redis, Prometheus or OpenUnison's pods directly.
    What the pipeline needs of the cluster is the DNS and the ingress controller (GitLab, Harbor and
    Vault by their public names)."""
    network = Network(renders[stack].plan, "control-plane")
    assert network.reachable(PLATFORM_JOB) == [(DNS, 53), (DNS, 53), (TRAEFIK, 8443)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_platform_merge_request_job_reaches_no_node_nor_private_service_outside_the_cluster(
        renders: dict[str, Render], stack: str) -> None:
    """Outside the cluster: not the instance metadata, a node's kubelet, nor (EKS) the databases,
    caches and Vault's listeners in the control plane's VPC."""
    plan = renders[stack].plan
    attempts = {
        "the node's instance metadata": (IMDS, 80),
        "a node's kubelet": (ipaddress.ip_address("172.18.0.3"), 10250),
        "a private address's SSH": (ipaddress.ip_address("192.168.10.20"), 22),
    }
    if stack == "prod":
        vpc = _subnet_address(plan, "control-plane-private-eu-west-1a")
        attempts |= {f"{port} in the control plane's VPC": (vpc, port) for port in (5432, 6379, 8200, 8201, 10250)}
    assert not _refused(Network(plan, "control-plane"), attempts)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_platform_pipeline_still_reaches_what_its_jobs_need(renders: dict[str, Render], stack: str) -> None:
    """The fix leaves the pipeline working: PyPI, Pulumi Cloud, AWS and Debian's archive on the internet
    (443, 80), every cluster's API server (kubeconfig: its server's port on whatever address the name
    resolves to; EKS: the private endpoint in each VPC) and the ingress controller."""
    plan = renders[stack].plan
    network = Network(plan, "control-plane")
    needs = [(INTERNET, 443), (INTERNET, 80)]
    if stack == "prod":
        needs += [(_subnet_address(plan, f"{c}-private-eu-west-1{zone}"), 443) for c in ("control-plane", "dev", "prod") for zone in "abc"]
    else:
        needs += [(ipaddress.ip_address(a), 6443) for a in ("172.18.0.2", "172.18.0.4", "192.168.10.20")]
    assert [n for n in needs if not network.reaches(PLATFORM_JOB, *n)] == []
    assert network.reaches(PLATFORM_JOB, network.pod(TRAEFIK), 8443)
