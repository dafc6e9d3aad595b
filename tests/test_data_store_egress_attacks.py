"""An attacker's review of where the in-cluster data stores' pods connect to (kubeconfig stacks: the dev stack), as
`Network` evaluates the plan and the real Helm render of the pinned cloudnative-pg chart.

The attacker has taken over a store's pod: a PostgreSQL instance (a malicious extension, `COPY ... PROGRAM` by a role
that may, a vulnerable image), a Valkey (`MODULE LOAD`, a Lua escape) or CloudNativePG's operator. From there: the
node's instance metadata, the kubelets, another namespace's pods (Vault's listeners, other tenants'), the API server
with whatever the pod's service account holds, and the internet (exfiltration). Each store pod reaches only what it
needs (NEEDS, with the evidence); what it needs still goes through.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from components import data_stores, dragonfly, gitlab, harbor
from platformctl.render import Render, render
from tests.test_config import DEV, _write
from tests.test_delivery_attacks import DNS, IMDS, Network, Pod
from tests.test_dragonfly import ARCHIVE_KEYS
from tests.test_workload_ingress_attacks import _api_server

INTERNET = ipaddress.ip_address("203.0.113.7")  # platform:objectStore's public endpoint in Pulumi.dev.yaml, or anyone's host
KUBELET = ipaddress.ip_address("172.18.0.3")  # a kind node on the docker network
# A pod of another namespace as the egress side sees it (an address in the pod network), on Vault's API port: Vault's
# own ingress policy refuses the stores, but the pods of a namespace without one (a tenant's) would answer.
OTHER_POD = ipaddress.ip_address("10.244.1.20")
OPERATOR = f"{data_stores.NAMESPACE}/Deployment/{data_stores.RELEASE}-cloudnative-pg"
STATUS, POSTGRES = data_stores.INSTANCE_MANAGER_PORT, data_stores.POSTGRES_PORT


def _instances(service: str, namespace: str) -> str:
    return f"{namespace}/Cluster/{service}-postgres"


def _valkey(service: str, namespace: str) -> str:
    return f"{namespace}/StatefulSet/{service}-redis"


# service -> its namespace, on the control plane (GitLab, Harbor) and on a workload cluster (Dragonfly's manager).
SERVICES = {gitlab.NAMESPACE: gitlab.NAMESPACE, harbor.NAMESPACE: harbor.NAMESPACE}
WORKLOAD_SERVICES = {dragonfly.RELEASE: dragonfly.NAMESPACE}


def _outside(plan: dict[str, Any], cluster: str, store: tuple[Any, int]) -> dict[str, tuple[Any, int]]:
    """Addresses outside the pod network (and one in it) the attacker tries, on the ports that matter; `store`: where
    platform:objectStore listens."""
    return {"the instance metadata": (IMDS, 80), "a node's kubelet": (KUBELET, 10250), "the object store": store,
            "the API server": _api_server(plan, "dev", cluster),
            "the internet on HTTPS": (INTERNET, 443), "the internet on HTTP": (INTERNET, 80), "the internet over SSH": (INTERNET, 22),
            "another namespace's pod (Vault's API port)": (OTHER_POD, 8200)}


def _needs(services: dict[str, str], public_store: bool) -> dict[str, tuple[set[tuple[str, int]], set[str]]]:
    """Store pod -> (the pods and ports it reaches, the outside addresses it reaches), each with its evidence."""
    store = {"the object store", *(["the internet on HTTPS"] if public_store else [])}
    return {
        # The instance manager (cloudnative-pg v1.30.0): the API server (it watches its Cluster and Secrets); the other
        # instances on PostgreSQL's port (streaming replication, pg_basebackup for a joining replica, pg_rewind: to the
        # -rw Service, the primary) and the status port (the primary's liveness isolation check calls every peer's
        # /failsafe on 8000, pkg/management/postgres/webserver/probes/pinger.go:86); the object store its WAL and base
        # backups go to (barman-cloud; Pulumi.dev.yaml's platform:objectStore is public: the internet on 443); the
        # DNS (the -rw Service, the object store's name). Its own instances are the one modelled pod (itself).
        **{_instances(s, ns): ({(DNS, 53)}, {"the API server", *store}) for s, ns in services.items()},
        # Valkey (docker.io/valkey/valkey, `valkey-server <config>`: no replica, no cluster bus; TCP probes from the
        # kubelet): nothing, not even the DNS.
        **{_valkey(s, ns): (set(), set()) for s, ns in services.items()},
        # The operator: the API server, and each instance's status port (remote.InstanceClient, url.StatusPort:
        # pkg/management/postgres/webserver/client/remote/instance.go:320); no SQL client in internal/controller or
        # pkg/reconciler, so never 5432. The DNS (the shared default of every namespace's egress).
        OPERATOR: ({(DNS, 53), *((_instances(s, ns), STATUS) for s, ns in services.items())}, {"the API server"}),
    }


def _problems(network: Network, plan: dict[str, Any], cluster: str, services: dict[str, str],
              store: tuple[Any, int] = (INTERNET, 443)) -> list[str]:
    problems = []
    outside = _outside(plan, cluster, store)
    for what, (pods, addresses) in _needs(services, public_store=store == (INTERNET, 443)).items():
        source = network.pod(what)
        if not network.selecting(source, "Egress"):
            problems.append(f"{cluster}: {what} is held by no egress policy")
        reached = set(network.reachable(source))
        problems += [f"{cluster}: {what} reaches {target}:{port}" for target, port in sorted(reached - pods)]
        problems += [f"{cluster}: {what} misses {target}:{port}" for target, port in sorted(pods - reached)]
        for name, (address, port) in outside.items():
            if network.reaches(source, address, port) != (name in addresses):
                problems.append(f"{cluster}: {what} {'misses' if name in addresses else 'reaches'} {name} ({address}:{port})")
    return problems


def test_a_taken_over_store_pod_reaches_only_what_it_needs(charted: dict[str, Render]) -> None:
    """GitLab's and Harbor's PostgreSQL instances and Valkeys and CloudNativePG's operator on the dev stack's control
    plane: each held by an egress policy, reaching only NEEDS. On main none was held: each reached the metadata, the
    kubelets, the internet, every other namespace's pod and every pod of its own namespace (Gitaly, the internal API)."""
    plan = charted["dev"].plan
    problems = _problems(Network(plan, "control-plane"), plan, "control-plane", SERVICES)
    assert not problems, f"{len(problems)} paths:\n" + "\n".join(problems)


def test_the_stores_still_reach_each_other_as_cloudnative_pg_needs(charted: dict[str, Render]) -> None:
    """Replication and the isolation check between one Cluster's instances (5432, 8000), the operator to each instance's
    status port, and no further: not one Cluster's instances to another's, not the operator to PostgreSQL."""
    network = Network(charted["dev"].plan, "control-plane")
    operator = network.pod(OPERATOR)
    gitlab_db, harbor_db = (network.pod(_instances(s, ns)) for s, ns in SERVICES.items())
    for instances in (gitlab_db, harbor_db):
        assert network.reaches(instances, instances, POSTGRES) and network.reaches(instances, instances, STATUS), instances.what
        assert network.reaches(operator, instances, STATUS) and not network.reaches(operator, instances, POSTGRES), instances.what
    assert not any(network.reaches(a, b, port) for a, b in ((gitlab_db, harbor_db), (harbor_db, gitlab_db)) for port in (POSTGRES, STATUS))
    # A joining replica's pg_basebackup and the bootstrap Jobs carry the Cluster's label too (pkg/specs/jobs.go:359-362).
    job = Pod("gitlab/Job/gitlab-postgres-2-join", gitlab_db.namespace, {"cnpg.io/cluster": "gitlab-postgres", "cnpg.io/jobRole": "join"}, ())
    assert network.reaches(job, gitlab_db, POSTGRES) and not network.reaches(job, harbor_db, POSTGRES)


def test_a_private_object_store_and_a_workload_clusters_stores_are_held_alike(tmp_path: Path) -> None:
    """platform:objectStore on kind's network (its `networks`): the instances reach it on the endpoint's port, and no
    longer the internet; Dragonfly's manager database and Valkey on a workload cluster, with that cluster's own
    operator, are held as the control plane's are (reaching that cluster's API server)."""
    def mutate(doc: dict[str, Any]) -> None:
        doc["config"]["platform:objectStore"]["endpoint"] = "https://minio.kind.internal:9000"
        doc["config"]["platform:objectStore"]["networks"] = ["172.18.0.0/16"]
        doc["config"]["platform:services"]["dragonfly"] = {"enabled": True, "archiveKeys": ARCHIVE_KEYS}

    plan = render(_write(tmp_path, DEV, mutate), "dev", charts=True).plan  # the operator: the chart's Deployment
    minio = (ipaddress.ip_address("172.18.0.9"), 9000)
    problems = [*_problems(Network(plan, "control-plane"), plan, "control-plane", SERVICES, minio),
                *_problems(Network(plan, "dev"), plan, "dev", WORKLOAD_SERVICES, minio)]
    assert not problems, f"{len(problems)} paths:\n" + "\n".join(problems)
