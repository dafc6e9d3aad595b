"""An attacker's review of P2P image distribution (Dragonfly, components/dragonfly.py).

The attacker is a tenant with a pod on a node that dfdaemon serves (or who knows another tenant's
image name or layer digest). Each test is one attempt, made against what the prod plan really
declares (EKS, Dragonfly on both workload clusters): the Helm-rendered dfdaemon.yaml and DaemonSet,
the tenants' NetworkPolicies as tests/test_delivery_attacks.py's `Network` evaluates them, and the
Gatekeeper constraints in the real OPA engine. What client v1.4.0 and scheduler v2.5.0 do with
that configuration is cited from their sources (dragonflyoss/client @ v1.4.0, dragonflyoss/dragonfly
@ v2.5.0); neither runs here. What no setting of theirs closes: README, P2P distribution.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
import yaml

from components import dragonfly
from policy.labels import TENANT_NAMESPACE_LABEL
from tests.test_delivery_attacks import Network, Pod
from tests.test_dragonfly import WORKLOAD, named
from tests.test_gatekeeper_plan import admission
from tests.test_gatekeeper_policies import container, pod

HARBOR = "harbor.platform.example.com"
# client v1.4.0 binds every listener whose `ip` is unset to 0.0.0.0 (:: with IPv6), every address of
# the node (dragonfly-client-config/src/dfdaemon.rs `Config::convert`).
UNSET = "0.0.0.0"
# dfdaemon.yaml's listeners on the node, and what each gives whoever reaches it.
LISTENERS = {
    # proxy/mod.rs `handler`: a request with a host is forwarded to that host (`proxy_via_http`, any
    # method), CONNECT to any host:port; a mirror request's upstream is the `X-Dragonfly-Registry`
    # header or the `ns` query. From the node's network: the instance metadata (IMDSv2 one hop away
    # answers the node, so the node role's credentials), the manager's REST API (open sign-up, a
    # guest reads every access token), the API server, Vault, any tenant's Service.
    "proxy": ("proxy", "server", "port"),
    # grpc/dfdaemon_upload.rs: DownloadTask of any URL with any headers (the same reach, the body
    # streamed back), StatTask, DeleteTask, SyncPieces; no credential asked.
    "upload": ("upload", "server", "port"),
    # dragonfly-client-storage/src/server/tcp.rs `handle`: any cached piece by task id and number,
    # no credential; with the chart's enableTaskIDBasedBlobDigest a blob's task id is its digest.
    "pieces over TCP": ("storage", "server", "tcpPort"),
    "pieces over QUIC": ("storage", "server", "quicPort"),
    "health": ("health", "server", "port"),
    "metrics": ("metrics", "server", "port"),
    # stats/mod.rs: /debug/pprof/profile, a CPU profile of any length on request.
    "profiling": ("stats", "server", "port"),
}
BLOB = "sha256:" + "ab" * 32


def _rendered(plan: dict[str, Any], cluster: str, kind: str, name: str) -> dict[str, Any]:
    release = named(plan, f"{cluster}-dragonfly", "Release")
    [obj] = [o for o in release["rendered"] if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def dfdaemon_config(plan: dict[str, Any], cluster: str) -> dict[str, Any]:
    """The nodes' dfdaemon.yaml as the chart renders it."""
    return yaml.safe_load(_rendered(plan, cluster, "ConfigMap", "dragonfly-client")["data"]["dfdaemon.yaml"])


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("cluster", WORKLOAD)
def test_a_tenant_pod_reaches_no_dfdaemon_listener_on_its_node(prod: dict[str, Any], cluster: str, listener: str) -> None:
    """A tenant's pod connects to its node's address on a dfdaemon port. dfdaemon is on the host's
    network, and no NetworkPolicy keeps a pod from its own node: Kubernetes' cannot ("Pods cannot
    block ... access from their resident node") and EKS's network policy agent admits every pod's
    traffic to its node's IP (aws/aws-network-policy-agent#65; pkg/fwruleprocessor/fw_rule_processor.go
    puts the node's IP, every port, in each pod's allow map), the tenants' default deny
    notwithstanding. Only a listener on the loopback address is the node's alone."""
    daemonset = _rendered(prod, cluster, "DaemonSet", "dragonfly-client")
    assert daemonset["spec"]["template"]["spec"]["hostNetwork"] is True  # why the node's addresses are its own
    section, server, port = LISTENERS[listener]
    config = dfdaemon_config(prod, cluster)[section][server]
    assert isinstance(config[port], int)
    address = ipaddress.ip_address(config.get("ip") or UNSET)
    assert address.is_loopback, f"dfdaemon's {listener} answers every pod on the node at {address}:{config[port]}"


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_containerd_still_reaches_the_mirror_and_no_tenant_pod_reaches_the_nodes_loopback(prod: dict[str, Any], cluster: str) -> None:
    """The loopback listeners must still serve containerd (dfinit's hosts.toml names dfinit's
    `proxy.addr`), and a tenant must not get onto the node's network or at dfdaemon's download socket
    (a hostPath): the plan's Gatekeeper constraints, in OPA, refuse both pods."""
    proxy = dfdaemon_config(prod, cluster)["proxy"]["server"]
    dfinit = yaml.safe_load(_rendered(prod, cluster, "ConfigMap", "dragonfly-dfinit")["data"]["dfinit.yaml"])
    assert dfinit["proxy"]["addr"] == f"http://{proxy['ip']}:{proxy['port']}"
    socket = dfdaemon_config(prod, cluster)["download"]["server"]["socketPath"]
    [namespace] = [r["inputs"]["metadata"]["name"] for r in prod["resources"] if r.get("cluster") == cluster
                   and r["type"] == "kubernetes:core/v1:Namespace" and r["name"] == f"payments-{cluster}"]
    image = f"{HARBOR}/payments/app:v1.0.0"
    host_network = pod(container(image=image), hostNetwork=True)
    socket_dir = pod(container(image=image, volumeMounts=[{"name": "dragonfly", "mountPath": "/run/df"}]),
                     volumes=[{"name": "dragonfly", "hostPath": {"path": socket.rsplit("/", 1)[0]}}])
    for attempt, refusal in ((host_network, "hostNetwork is true"), (socket_dir, "must not mount the host path")):
        attempt["metadata"]["namespace"] = namespace
        _, failures = admission(prod, cluster, attempt)
        assert any(refusal in f for f in failures), failures


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_no_node_serves_its_cached_layers_to_peers(prod: dict[str, Any], cluster: str) -> None:
    """Another node's dfdaemon (or a tenant pretending to be one) asks this node for a cached layer's
    pieces. A node shares none: the scheduler never makes a host with `disableShared` a parent
    (scheduler/scheduling/scheduling.go, v2.5.0), so the nodes' upload and piece servers can answer
    the node alone; the seed peers serve the cluster."""
    assert dfdaemon_config(prod, cluster)["upload"]["disableShared"] is True


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_no_tenant_pod_reaches_the_seed_peers_scheduler_or_managers_ports(prod: dict[str, Any], cluster: str) -> None:
    """What serves pieces to anyone who asks (the seed peers' upload, piece and proxy ports), hands
    out parents and takes a peer's word for the pieces it holds (the scheduler's gRPC: AnnouncePeer,
    AnnounceHost, DeleteTask, no credential), or issues schedulers and tokens (the manager): a
    tenant's pod, any labels it likes, reaches none of their ports. These are pods of their own
    addresses, which the tenants' default deny governs (not the node's)."""
    network = Network(prod, cluster)
    dragonflys = [p for p in network.pods if p.namespace == dragonfly.NAMESPACE]
    ports = {p.what.rsplit("/", 1)[1]: {number for _, number, _ in p.ports} for p in dragonflys}
    assert ports["dragonfly-seed-client"] >= {4000, 4001, 4005, 4006} and 8002 in ports["dragonfly-scheduler"]
    assert dragonfly.GRPC_PORT in ports[dragonfly.MANAGER]
    tenants = [ns for ns, labels in network.namespaces.items() if labels.get(TENANT_NAMESPACE_LABEL) == "true"]
    assert tenants
    for namespace in tenants:
        attacker = Pod(f"{namespace}/attacker", namespace, {"app": "attacker"}, ())
        reached = [(p.what, number) for p in dragonflys for _, number, protocol in p.ports if network.reaches(attacker, p, number, protocol)]
        assert not reached, (namespace, reached)


def _goes_peer_to_peer(plan: dict[str, Any], cluster: str, url: str) -> bool:
    """Whether dfdaemon's proxy takes `url` as a P2P task: the first rule whose regex (Rust's `regex`,
    unanchored) matches the URL without its query and fragment, as the `url` crate parsed it: dot
    segments, `%2e` spelled too, resolved (proxy/mod.rs `find_matching_rule`; WHATWG URL path parsing)."""
    rules = dfdaemon_config(plan, cluster)["proxy"].get("rules") or []
    scheme, _, rest = url.split("#", 1)[0].split("?", 1)[0].partition("://")
    authority, _, path = rest.partition("/")
    segments: list[str] = []
    for segment in path.split("/"):
        dots = segment.lower().replace("%2e", ".")
        if dots == "..":
            segments = segments[:-1]
        elif dots != ".":
            segments.append(segment)
    bare = f"{scheme}://{authority}/" + "/".join(segments)
    return any(re.search(rule["regex"], bare) for rule in rules)


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_a_cached_layer_is_served_only_under_the_repository_it_was_pulled_from(prod: dict[str, Any], cluster: str) -> None:
    """Tenant `catalog` knows a layer digest of `payments`' private image and asks a dfdaemon for
    /v2/catalog/<any repository>/blobs/<that digest>. With the chart's enableTaskIDBasedBlobDigest the
    task id is the digest alone (client dragonfly-client-util/src/id_generator/mod.rs `BlobDigestBased`,
    chosen for any blob URL in grpc/dfdaemon_download.rs and dfdaemon_upload.rs), and the pull's
    Authorization header is no part of it: the layer `payments` pulled is served from the cache, and
    Harbor, which would refuse that repository the blob, is never asked. Keyed by the URL (the client's
    default), a task is its repository's, and a miss goes to Harbor with the puller's credentials.
    (The pod's own request was the way in, test_a_tenant_pod_reaches_no_dfdaemon_listener_on_its_node.
    A hit is not: the URL itself can be asked for by anyone's image, through a layer's `urls`, which is
    why a tenant project's blobs never go peer to peer:
    test_a_tenant_cannot_claim_a_layer_a_nodes_dfdaemon_cached_for_another_tenant.)"""
    mirror = dfdaemon_config(prod, cluster)["proxy"]["registryMirror"]
    assert mirror["addr"] == f"https://{HARBOR}"
    assert mirror.get("enableTaskIDBasedBlobDigest", False) is False


def _mirror_upstream(plan: dict[str, Any], cluster: str, path_and_query: str) -> str:
    """The URL dfdaemon's proxy turns a request without a host (a mirror request) into: the
    `X-Dragonfly-Registry` header's address (dfinit's hosts.toml sends it; a layer URL does not),
    else the `ns` query's (https:// unless it names a scheme), else `registryMirror.addr`, then the
    request's path and query (proxy/mod.rs `make_registry_mirror_request`, query.rs `get_ns_from_query`)."""
    query = dict(pair.split("=", 1) for pair in path_and_query.partition("?")[2].split("&") if "=" in pair)
    ns = query.get("ns")
    upstream = (ns if "://" in ns else f"https://{ns}") if ns else dfdaemon_config(plan, cluster)["proxy"]["registryMirror"]["addr"]
    return f"{upstream}{path_and_query}"


@pytest.mark.parametrize("ns", [f"?ns={HARBOR}", ""])
@pytest.mark.parametrize("cluster", WORKLOAD)
def test_a_tenant_cannot_claim_a_layer_a_nodes_dfdaemon_cached_for_another_tenant(prod: dict[str, Any], cluster: str, ns: str) -> None:
    """Tenant `catalog` knows a layer of `payments`' private image (its digest, size and diff id) and wants
    its bytes. Its CI pushes to its own project a manifest whose layer is that digest with
    `urls: ["http://127.0.0.1:4001/v2/payments/app/blobs/<digest>?ns=harbor..."]`, signs it, and runs it
    on a node where a `payments` pod has pulled the image:

    1. Harbor stores the manifest without the blob: its registry runs with validation off (harbor-helm
       v1.19.1 templates/registry/registry-cm.yaml `validation: disabled: true`), so distribution
       v2.8.3 sets no URL allow-list (registry/handlers/app.go:224-232) and, for a layer that names
       URLs, neither checks them nor asks whether the repository has the blob
       (registry/storage/ocimanifesthandler.go:87-101);
    2. containerd fetches a layer from its `urls` before the registry, with http.DefaultClient from the
       node's network and no credential (containerd v1.7 remotes/docker/fetcher.go:55, v2.1
       core/remotes/docker/fetcher.go:234-263), so its request reaches dfdaemon's loopback proxy, which
       takes it for a mirror request of Harbor (the `ns` query, or its own `registryMirror.addr`);
    3. dfdaemon keys the task by that URL, `ns` filtered out (dfdaemon_download.rs `download_task`,
       query_params.rs `containerd_filtered_query_params`): the very task `payments`' pull left on the
       node, and a task it holds is served as it is, without the HEAD that would have shown Harbor the
       request's (missing) credential (resource/task.rs `download_started`: `prepare_download_task`
       reused; dragonfly-client-storage metadata.rs:536-547). Cached 30 days by default (gc taskTTL).

    containerd checks the digest, which matches: `payments`' layer is unpacked into `catalog`'s
    container. Only what every tenant may read anyway may go peer to peer: the `approved` project's
    blobs (public-read), never a tenant project's, whose pulls dfdaemon forwards to Harbor each time."""
    registry = yaml.safe_load(_harbor_registry_config(prod))
    assert registry["validation"]["disabled"] is True  # step 1: why the manifest is accepted
    dfinit = yaml.safe_load(_rendered(prod, cluster, "ConfigMap", "dragonfly-dfinit")["data"]["dfinit.yaml"])
    assert ipaddress.ip_address(dfinit["proxy"]["addr"].split("//")[1].rsplit(":", 1)[0]).is_loopback  # step 2
    claimed = _mirror_upstream(prod, cluster, f"/v2/payments/app/blobs/{BLOB}{ns}")
    assert claimed.split("?")[0] == f"https://{HARBOR}/v2/payments/app/blobs/{BLOB}"  # the URL payments' pull used
    assert not _goes_peer_to_peer(prod, cluster, claimed), (
        f"dfdaemon serves {claimed} from the node's cache to a request with no credential: another tenant's private layer")


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_every_project_whose_layers_go_peer_to_peer_is_readable_by_every_tenant(prod: dict[str, Any], cluster: str) -> None:
    """A layer that goes peer to peer is served to any request for its URL once cached (above): the
    projects the proxy rule names must be ones Harbor serves to anyone, or the cache would hand out
    what Harbor refuses. Each Harbor project of the plan, tried against the rule with a blob URL."""
    projects = {r["inputs"]["name"]: r["inputs"].get("public", False) for r in prod["resources"] if r["type"] == "harbor:index/project:Project"}
    shared = {name for name in projects if _goes_peer_to_peer(prod, cluster, f"https://{HARBOR}/v2/{name}/some/image/blobs/{BLOB}")}
    assert shared == {dragonfly.APPROVED_PROJECT}  # P2P still carries the platform's images
    assert {name: projects[name] for name in shared} == {name: True for name in shared}


def _harbor_registry_config(plan: dict[str, Any]) -> str:
    """config.yml of Harbor's registry as the chart renders it (the real Helm engine on the pinned chart)."""
    release = named(plan, "control-plane-harbor", "Release")
    [config_map] = [o for o in release["rendered"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "harbor-registry"]
    return config_map["data"]["config.yml"]


@pytest.mark.parametrize(("url", "p2p"), [
    (f"https://{HARBOR}/v2/approved/docker.io/library/busybox/blobs/{BLOB}", True),  # containerd's layer request
    (f"https://{HARBOR}/v2/approved/docker.io/library/busybox/blobs/{BLOB}?ns={HARBOR}", True),  # its `ns=` query aside
    # A tenant project's layer: to Harbor, with the puller's credentials, every time
    # (test_a_tenant_cannot_claim_a_layer_a_nodes_dfdaemon_cached_for_another_tenant).
    (f"https://{HARBOR}/v2/payments/app/blobs/{BLOB}", False),
    (f"https://{HARBOR}/v2/payments/approved/blobs/{BLOB}", False),
    (f"https://{HARBOR}/v2/approved/x/../../payments/app/blobs/{BLOB}", False),  # what the proxy matches: /v2/payments/...
    (f"https://{HARBOR}/v2/approved/%2e%2e/payments/app/blobs/{BLOB}", False),
    (f"https://{HARBOR}/v2/approved%2F..%2Fpayments/app/blobs/{BLOB}", False),
    (f"https://{HARBOR}/v2/payments/app/manifests/v1.0.0", False),  # by tag: Harbor answers, to the puller's credentials
    (f"https://{HARBOR}/v2/payments/app/manifests/{BLOB}", False),
    (f"https://registry.example.org/v2/payments/app/blobs/{BLOB}", False),  # another registry's "blob"
    (f"https://{HARBOR}.example.org/v2/x/blobs/{BLOB}", False),
    (f"http://{HARBOR}/v2/payments/app/blobs/{BLOB}", False),
    (f"https://registry.example.org/?/v2/x/blobs/{BLOB}", False),
])
@pytest.mark.parametrize("cluster", WORKLOAD)
def test_only_approved_blobs_go_peer_to_peer(prod: dict[str, Any], cluster: str, url: str, p2p: bool) -> None:
    """What the proxy makes a P2P task is cached on the seed peers and the node and served to every
    request for the same task: the public-read `approved` project's blobs by digest, which containerd
    checks, and nothing else. A tenant's layer, a manifest fetched by tag, or another host's content is
    never a cache entry."""
    assert _goes_peer_to_peer(prod, cluster, url) is p2p


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_dfdaemon_verifies_harbors_certificate_on_the_manifests_it_proxies(prod: dict[str, Any], cluster: str) -> None:
    """Someone on the network between a node and Harbor answers for Harbor: a manifest by tag goes
    through dfdaemon's proxy to Harbor (never P2P), and client v1.4.0 verifies that connection only
    against `registryMirror.cert`; without one it takes any certificate (proxy/mod.rs
    `proxy_via_https`: `NoVerifier`, under a comment that says "native roots"). Where Harbor's
    certificate is public (prod: ACME), the client image's own CA bundle is that file."""
    mirror = dfdaemon_config(prod, cluster)["proxy"]["registryMirror"]
    assert mirror.get("cert") == dragonfly.SYSTEM_ROOTS
    daemonset = _rendered(prod, cluster, "DaemonSet", "dragonfly-client")
    [client] = [c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "client"]
    assert client["image"].endswith(f"/dragonflyoss/client:{dragonfly.DRAGONFLY_TAGS['client']}")  # the image the bundle is in
    assert not [m for m in client["volumeMounts"] if dragonfly.SYSTEM_ROOTS.startswith(m["mountPath"].rstrip("/") + "/")]


@pytest.mark.parametrize("cluster", WORKLOAD)
def test_no_pod_borrows_a_seed_peers_place_before_the_managers_rest_api(prod: dict[str, Any], cluster: str) -> None:
    """The manager's REST port (open sign-up; a guest reads every access token) admits Dragonfly's own
    namespace only. A seed peer's proxy, which the chart publishes on its Service, forwards any request
    to any host from there: every pod the manager refuses that reaches a seed peer would be let in
    through it. The namespace's hold refuses them the proxy's port, and the seed peers' proxy (and their
    profiling) answer the pod alone besides; their upload and piece ports stay open, as the scheduler and
    the nodes need them (tests/test_workload_lateral_attacks.py)."""
    network = Network(prod, cluster)
    seed = network.pod(f"{dragonfly.NAMESPACE}/StatefulSet/dragonfly-seed-client")
    manager = network.pod(f"{dragonfly.NAMESPACE}/Deployment/{dragonfly.MANAGER}")
    config = yaml.safe_load(_rendered(prod, cluster, "ConfigMap", "dragonfly-seed-client")["data"]["dfdaemon.yaml"])
    proxy_port = config["proxy"]["server"]["port"]
    # A seed peer's own egress refuses the manager's REST now (components/dragonfly.py `Dragonfly._egress`): its proxy
    # could not forward there either. The namespace's ingress hold stays the first line.
    assert not network.reaches(seed, manager, dragonfly.REST_PORT)
    refused = [p for p in network.pods if p.namespace != dragonfly.NAMESPACE and not network.reaches(p, manager, dragonfly.REST_PORT)]
    assert refused  # the pods the proxy would let in
    assert not [p.what for p in refused if network.reaches(p, seed, proxy_port)]
    for section in ("proxy", "stats"):
        address = ipaddress.ip_address(config[section]["server"].get("ip") or UNSET)
        assert address.is_loopback, f"the seed peers' {section} answers every pod of {dragonfly.NAMESPACE} at {address}"
    assert not ipaddress.ip_address(config["upload"]["server"].get("ip") or UNSET).is_loopback
