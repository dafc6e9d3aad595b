"""The check, run by the engine at `pulumi up`, that a cluster's CNI enforces NetworkPolicy.

The API server accepts NetworkPolicies whatever the CNI does with them: on a cluster whose CNI ignores them (an
older kind's kindnet, flannel without a policy controller, k3s with `--disable-network-policy`, a CNI with policy
off) every isolation the platform declares is decoration, and `pulumi up` would succeed. So the first thing on
every cluster is a namespace whose policies deny everything but what they name, a server there on three ports,
and a Job whose client must be answered on the port both policies allow (the control: DNS, the image, the pod
network work) and refused on the port the server's ingress policy leaves out and on the port its own egress policy
leaves out. Every namespace of the platform and the tenants waits for that Job (`ClusterHandle.policies_enforced`).

How the engine runs it (pulumi-kubernetes, provider/pkg at 94977969): the Job is awaited until its `Complete`
condition (await/job.go lines 49-55, 10 minutes by default, line 79) and a `Failed` one fails the update
(await/checker/job/check.go lines 94-100), showing the pod's termination message (await/checker/pod/check.go
lines 143-157: the script's verdict, `FallbackToLogsOnError`). A completed Job whose spec is unchanged is not run
again, and need not be: the CNI is the cluster's. It runs again when
* its pod template changes (the script, the image, or `checked-cluster`, a checksum of the cluster's API server and
  CA, and on EKS of the VPC CNI add-on's version and configuration: a new cluster, or the program's own CNI change):
  provider/diff.go lines 178-186 make `.spec.template` a replacement;
* it failed: `pulumi.com/replaceUnready` replaces a Job that is not complete on the next `up` (provider.go lines
  1622-1639), so once the CNI is fixed the next `up` checks again and goes on;
* on demand: `pulumi up --replace <the Job's URN>` (after changing a cluster's CNI by hand).
Replacing it replaces nothing else: the namespaces wait for it by `dependsOn` only, which never makes a dependent
replaced (pulumi pkg/resource/deploy/step_generator.go at 1b594989, lines 3287 and 3337).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s

from components.backup_jobs import pod_spec
from components.backups import restricted_container
from components.cluster import ADDON_CONFIGURATION, ClusterHandle
from components.common import PlatformNamespace, checksum
from components.egress import dns, hold_egress, tcp
from components.helm import metadata, namespace
from components.versions import BUSYBOX_IMAGE, EKS_ADDONS
from policy.labels import pod_security_admission

# Gatekeeper's constraints leave it out, with the reason (stacks/services.py lists it with the platform's own): the
# check runs before Harbor exists, so its image comes from Docker Hub by digest, not from `approved`. Otherwise its
# pods pass the constraints as they are (tests/test_netpol_enforcement_attacks.py, in OPA) and Pod Security
# `restricted` is enforced on the namespace.
PLATFORM_NAMESPACE = PlatformNamespace(
    "network-policy-check",
    "the check that the CNI enforces NetworkPolicy, run before Harbor exists: busybox from Docker Hub by digest",
)
SERVER = "server"  # its Deployment and headless Service (DNS answers the ready pod's address)
JOB = "network-policy-check"
ALLOWED_PORT = 8080  # both policies allow it: must answer
INGRESS_DENIED_PORT = 8081  # the client's egress allows it, the server's ingress does not: must be refused
EGRESS_DENIED_PORT = 8082  # the server's ingress allows it, the client's egress does not: must be refused
PORTS = (ALLOWED_PORT, INGRESS_DENIED_PORT, EGRESS_DENIED_PORT)
_USER = 65534  # nobody
_SERVER_PODS = {"app.kubernetes.io/name": SERVER}
_CLIENT_PODS = {"app.kubernetes.io/name": "client"}
_RESOURCES = k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "16Mi"}, limits={"cpu": "100m", "memory": "32Mi"})

FIX_KUBECONFIG = (
    "Install a CNI that enforces NetworkPolicy: Calico, Cilium, or kind v0.24.0 or newer (kindnetd enforces since "
    "kubernetes-sigs/kind#3612); on k3s keep its network policy controller (no --disable-network-policy); flannel "
    "alone enforces nothing (add Calico's policy controller, canal, or kube-router's). Then run `pulumi up` again."
)
FIX_EKS = (
    "The vpc-cni add-on must run with enableNetworkPolicy \"true\" (components/cluster.py ADDON_CONFIGURATION) and "
    "the aws-node pods with their aws-network-policy-agent container. Then run `pulumi up` again."
)

# The server: busybox's httpd on each port, answering "ok" (a file in an emptyDir: the root file system is read-only).
SERVER_SH = """set -eu
echo ok > "$WWW/index.html"
trap 'exit 0' TERM INT
for port in $PORTS; do httpd -f -p "$port" -h "$WWW" & done
wait
"""
# Ready once every port answers inside the pod (loopback: no policy applies), so a refused port is the policies' doing.
SERVER_READY_SH = 'for port in $PORTS; do timeout 2 wget -q -O /dev/null "http://127.0.0.1:$port/" || exit 1; done'

# The client. A port is retried while it answers where it must not: some CNIs apply a new pod's policies a moment
# after it starts (aws-network-policy-agent's standard mode), so only answers for ATTEMPTS x PAUSE seconds say the
# policies are ignored. Exit 0: enforced; 1: not enforced (with FIX); 2: inconclusive (the control did not answer).
# `timeout`, not wget's -T: it bounds the whole exchange (a dropped SYN or an answer that never comes), and Debian's
# busybox 1.35 wget, which the tests run, crashes with -T.
CHECK_SH = """set -u
answers() { timeout "$TIMEOUT" wget -q -O /dev/null "http://$SERVER:$1/" 2>/dev/null; }
# becomes PORT yes|no: true once PORT answers (yes) or does not (no), within ATTEMPTS tries PAUSE seconds apart.
becomes() {
  tries=1
  while :; do
    if answers "$1"; then now=yes; else now=no; fi
    if [ "$now" = "$2" ]; then return 0; fi
    if [ "$tries" -ge "$ATTEMPTS" ]; then return 1; fi
    tries=$((tries + 1)); sleep "$PAUSE"
  done
}
ignored() {
  echo "NetworkPolicy is not enforced on this cluster: $SERVER:$1 answered though $2 denies it, so every NetworkPolicy of the platform is ignored. $FIX" >&2
  exit 1
}
if ! becomes "$ALLOWED_PORT" yes; then
  echo "Inconclusive: $SERVER:$ALLOWED_PORT, which the policies allow, did not answer (DNS, the server pod or the pod network): nothing is known about NetworkPolicy on this cluster yet." >&2
  exit 2
fi
becomes "$INGRESS_DENIED_PORT" no || ignored "$INGRESS_DENIED_PORT" "the server's ingress policy"
becomes "$EGRESS_DENIED_PORT" no || ignored "$EGRESS_DENIED_PORT" "the client's egress policy"
echo "NetworkPolicy enforced: $SERVER:$ALLOWED_PORT answered; $INGRESS_DENIED_PORT (ingress) and $EGRESS_DENIED_PORT (egress) were refused."
"""
_ATTEMPTS, _PAUSE, _TIMEOUT = 6, 5, 3  # a denied port may answer for up to 30 s after the client starts


def check_env(server: str, fix: str) -> dict[str, str]:
    """The client's environment (the tests run CHECK_SH with it)."""
    return {
        "SERVER": server, "ALLOWED_PORT": str(ALLOWED_PORT), "INGRESS_DENIED_PORT": str(INGRESS_DENIED_PORT),
        "EGRESS_DENIED_PORT": str(EGRESS_DENIED_PORT), "ATTEMPTS": str(_ATTEMPTS), "PAUSE": str(_PAUSE),
        "TIMEOUT": str(_TIMEOUT), "FIX": fix,
    }


def _env(values: dict[str, str]) -> list[k8s.core.v1.EnvVarArgs]:
    return [k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in values.items()]


@dataclass(frozen=True)
class NetworkPolicyCheckArgs:
    cluster_key: pulumi.Input[str]  # what identifies the cluster and its CNI as far as the program knows (`cluster_key`)
    fix: str  # what the failure tells the operator to do


def cluster_key(cluster: ClusterHandle) -> pulumi.Output[str]:
    """A checksum of the cluster's API server and CA and, on EKS, of the VPC CNI add-on the program sets: the check
    runs again on a new cluster or a new CNI of the program's."""
    cni = json.dumps([EKS_ADDONS[cluster.kubernetes_version].get("vpc-cni"), ADDON_CONFIGURATION["vpc-cni"]]) if cluster.is_eks else ""
    return checksum(pulumi.Output.concat(cluster.endpoint, "\n", cluster.ca_data, "\n", cni))


class NetworkPolicyCheck(pulumi.ComponentResource):
    """The check on one cluster (see the module docstring); `job` is what the namespaces wait for."""

    job: k8s.batch.v1.Job

    def __init__(self, name: str, cluster: ClusterHandle, args: NetworkPolicyCheckArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:netpol_check:NetworkPolicyCheck", name, None, opts)
        ns = namespace(PLATFORM_NAMESPACE, cluster, self, pod_security_admission("restricted"))
        inside = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        meta = lambda object_name: metadata(object_name, ns)  # noqa: E731
        selector = lambda labels: k8s.meta.v1.LabelSelectorArgs(match_labels=labels)  # noqa: E731

        policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-deny-all", metadata=meta("deny-all"), spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress", "Egress"]), opts=inside),
            k8s.networking.v1.NetworkPolicy(f"{name}-server-ingress", metadata=meta("server-ingress"), spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=selector(_SERVER_PODS), policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=selector(_CLIENT_PODS))],
                    ports=tcp(ALLOWED_PORT, EGRESS_DENIED_PORT))]), opts=inside),
            hold_egress(name, ns, "client-egress", _CLIENT_PODS, [
                dns(), k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=selector(_SERVER_PODS))],
                    ports=tcp(ALLOWED_PORT, INGRESS_DENIED_PORT)),
            ], inside),
        ]
        ports = {"PORTS": " ".join(map(str, PORTS))}
        service = k8s.core.v1.Service(f"{name}-server", metadata=meta(SERVER), spec=k8s.core.v1.ServiceSpecArgs(
            cluster_ip="None", selector=_SERVER_PODS,
            ports=[k8s.core.v1.ServicePortArgs(name=f"p{port}", port=port, protocol="TCP") for port in PORTS]), opts=inside)
        serving = k8s.core.v1.ExecActionArgs(command=["/bin/sh", "-c", SERVER_READY_SH])
        container = k8s.core.v1.ContainerArgs(
            name=SERVER, image=BUSYBOX_IMAGE.ref, command=["/bin/sh", "-c", SERVER_SH], env=_env({**ports, "WWW": "/www"}),
            ports=[k8s.core.v1.ContainerPortArgs(container_port=port) for port in PORTS],
            readiness_probe=k8s.core.v1.ProbeArgs(exec_=serving, period_seconds=5, timeout_seconds=10),
            liveness_probe=k8s.core.v1.ProbeArgs(exec_=serving, period_seconds=30, timeout_seconds=10),  # an httpd gone: restarted
            security_context=restricted_container(), resources=_RESOURCES,
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="www", mount_path="/www")],
        )
        www = k8s.core.v1.VolumeArgs(name="www", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Mi"))
        server = k8s.apps.v1.Deployment(f"{name}-server", metadata=meta(SERVER), spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1, selector=selector(_SERVER_PODS), template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=_SERVER_PODS),
                spec=pod_spec("default", [], container, [www], user=_USER, restart_policy="Always"))),
            opts=pulumi.ResourceOptions.merge(inside, pulumi.ResourceOptions(depends_on=policies)))

        client = k8s.core.v1.ContainerArgs(
            name="client", image=BUSYBOX_IMAGE.ref, command=["/bin/sh", "-c", CHECK_SH], env=_env(check_env(SERVER, args.fix)),
            # The verdict (the log's tail) becomes the termination message, which the engine prints on failure.
            termination_message_policy="FallbackToLogsOnError",
            security_context=restricted_container(), resources=_RESOURCES,
        )
        # Not complete (failed, or cut short): replaced, so run again, on the next `up`.
        self.job = k8s.batch.v1.Job(f"{name}-job", metadata=metadata(JOB, ns, {"pulumi.com/replaceUnready": "true"}), spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=0,  # the script retries what may be transient; its verdict stands
            active_deadline_seconds=300,  # an image that cannot be pulled fails the `up` in 5 minutes, not 10
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=_CLIENT_PODS, annotations={"platform.io/checked-cluster": args.cluster_key}),
                spec=pod_spec("default", [], client, [], user=_USER)),
        ), opts=pulumi.ResourceOptions.merge(inside, pulumi.ResourceOptions(depends_on=[*policies, service, server])))
        self.register_outputs({"job": self.job.metadata.name})


def checked(cluster: ClusterHandle) -> ClusterHandle:
    """`cluster` with its check declared: the namespaces declared on it from now on wait for the check."""
    args = NetworkPolicyCheckArgs(cluster_key(cluster), FIX_EKS if cluster.is_eks else FIX_KUBECONFIG)
    return replace(cluster, netpol_check=NetworkPolicyCheck(f"{cluster.role}-netpol-check", cluster, args).job)
