"""Velero's node agent, declared by the program with an account of its own.

Chart velero 12.1.0 (the newest) runs its node agent as the server's cluster-admin account, with no
option for another (vmware-tanzu/helm-charts#606), and a node taken over holds the token of every
DaemonSet on it. So the release runs without it (`deployNodeAgent: false`) and this module declares
the DaemonSet the chart would (templates/node-agent-daemonset.yaml: its name, labels, args, env and
mounts, which Velero reads back) with its own account. The account's rules are what Velero
v1.18.1's node agent and the pods it starts call, each with where. Since 1.17 the agent copies each
volume in a pod it creates in `velero` on the volume's node (pkg/exposer/pod_volume.go), running as
the agent's account with the agent's image and mounts: Gatekeeper's PlatformNodeAgentPods holds
those pods to exactly that, on the requester's own node, so the right to create them yields
nothing the node does not already have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.gatekeeper import Gatekeeper
from components.helm import grant, metadata
from components.inventory import Credential, projected_token
from components.versions import VELERO_IMAGE, VELERO_TAG
from policy.gatekeeper import node_agent_constraint
from policy.labels import TENANT_NODES_TOLERATION, managed_by

DAEMONSET = "node-agent"  # the name Velero looks its DaemonSet up by (pkg/nodeagent/node_agent.go)
ACCOUNT = "velero-node-agent"
POD_VOLUMES = "/var/lib/kubelet/pods"  # its volume `host-pods`, whose path Velero reads back (GetHostPodPath)
PLUGINS = "/var/lib/kubelet/plugins"
IMAGE = f"{VELERO_IMAGE}:{VELERO_TAG}"
# The server finds the agent on a node by `role` (nodeagent.isRunningInNode); `name` is the chart's selector.
POD_LABELS = {"name": DAEMONSET, "role": DAEMONSET}
CREDENTIALS_FILE = "/credentials/cloud"
# The chart points each object-store plugin's variable at the file; the pods it starts inherit them.
CREDENTIALS_VARIABLES = ("AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_CREDENTIALS_FILE",
                         "ALIBABA_CLOUD_CREDENTIALS_FILE")
VELERO = "velero.io"
READ = ["get", "list", "watch"]

# Cluster-wide, reads only: informers without a namespace and the volumes' own namespaces.
CLUSTER_RULES: list[dict[str, Any]] = [
    # The manager's cache of the pods on its node (cli/nodeagent/server.go, field selector spec.nodeName) and
    # the client pod of each volume, in the tenant's namespace (exposer.Expose).
    {"apiGroups": [""], "resources": ["pods"], "verbs": READ},
    # The volume's directory and mode from its claim and volume (kube.GetVolumeDirectory, GetVolumeMode).
    {"apiGroups": [""], "resources": ["persistentvolumeclaims", "persistentvolumes"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},  # kube.GetNodeOS, per-node concurrency
    # Informers by field selector (metadata.namespace), which list at cluster scope: the hosting pods'
    # events (datapath/micro_service_watcher.go) and Velero's own objects, which live in `velero` only.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
    {"apiGroups": [VELERO], "verbs": READ, "resources": [
        "podvolumebackups", "podvolumerestores", "datauploads", "datadownloads", "backuprepositories", "backupstoragelocations"]},
]


def namespace_rules(repository_secret: str) -> list[dict[str, Any]]:
    """In `velero` only: the pods that copy volumes, Velero's records of the copies, kopia's password."""
    return [
        # exposer.createHostingPod and CleanUp (kube.DeletePodIfAny); their logs when one ends (CollectPodLogs).
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},  # kube.NewEventRecorder
        # The pod spec, labels and host path it copies into the hosting pods (nodeagent.GetPodSpec and the like).
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": [DAEMONSET], "verbs": ["get"]},
        # Progress, phases and finalizers of the copies (UpdatePVBWithRetry, the micro services' status).
        {"apiGroups": [VELERO], "verbs": ["update", "patch"], "resources": [
            "podvolumebackups", "podvolumebackups/status", "podvolumerestores", "podvolumerestores/status"]},
        {"apiGroups": [VELERO], "resources": ["backuprepositories"], "verbs": ["create"]},  # repository.Ensurer
        # kopia's repository password (credentials.NewNamespacedSecretStore); the target's key is the mounted file.
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [repository_secret], "verbs": ["get"]},
    ]


@dataclass(frozen=True)
class NodeAgentArgs:
    namespace: str  # Velero's
    resources: dict[str, Any]  # its container's requests and limits (Velero's sizing)
    credentials_secret: str  # the target's key, mounted as the credentials file
    repository_secret: str  # kopia's repository password
    gatekeeper: Gatekeeper  # holds the pods the agent creates


class NodeAgent(pulumi.ComponentResource):
    """The node agent's account, its rules, the Constraint on its pods and the DaemonSet."""

    daemonset: k8s.apps.v1.DaemonSet

    def __init__(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace, args: NodeAgentArgs,
                 after: Sequence[pulumi.Resource] = (), opts: pulumi.ResourceOptions | None = None):
        """`after`: what the agent waits for besides its namespace (Velero's release, which brings the CRDs it watches)."""
        super().__init__("platform:velero_node_agent:NodeAgent", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns, *after])
        namespace = args.namespace
        account = k8s.core.v1.ServiceAccount(name, metadata=metadata(ACCOUNT, ns), opts=child)
        subject = {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}
        bindings = [grant(name, ACCOUNT, subject, CLUSTER_RULES, child),
                    grant(name, ACCOUNT, subject, namespace_rules(args.repository_secret), child, namespace)]
        confined = args.gatekeeper.enforce(f"{name}-pods", node_agent_constraint(
            namespace, ACCOUNT, [IMAGE], [POD_VOLUMES, PLUGINS], [args.credentials_secret]), child)
        # The agent may create pods only once the Constraint on them is in force.
        self.daemonset = k8s.apps.v1.DaemonSet(
            name, metadata=k8s.meta.v1.ObjectMetaArgs(name=DAEMONSET, namespace=namespace, labels=managed_by()),
            spec=daemonset_spec(args.resources, args.credentials_secret),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[account, *bindings, confined])))
        self.register_outputs({"daemonset": self.daemonset.metadata.name})


def daemonset_spec(resources: dict[str, Any], credentials_secret: str) -> dict[str, Any]:
    """The chart's node-agent DaemonSet (12.1.0, the values the platform set), but for its account."""
    credentials = {"name": "cloud-credentials", "secret": {"secretName": credentials_secret}}
    field = lambda path: {"valueFrom": {"fieldRef": {"fieldPath": path}}}  # noqa: E731
    env = [{"name": "VELERO_NAMESPACE", **field("metadata.namespace")}, {"name": "NODE_NAME", **field("spec.nodeName")},
           {"name": "VELERO_SCRATCH_DIR", "value": "/scratch"},
           *({"name": name, "value": CREDENTIALS_FILE} for name in CREDENTIALS_VARIABLES)]
    to_host = "HostToContainer"
    return {
        "selector": {"matchLabels": {"name": DAEMONSET}},
        "template": {
            "metadata": {"labels": {**managed_by(), **POD_LABELS},
                         "annotations": {"prometheus.io/path": "/metrics", "prometheus.io/port": "8085", "prometheus.io/scrape": "true"}},
            "spec": {
                "serviceAccountName": ACCOUNT,
                "securityContext": {"runAsUser": 0},  # reads every volume's files as their owners wrote them
                "terminationGracePeriodSeconds": 3600,
                # On every node whose volumes it copies: tenants' dedicated nodes too.
                "tolerations": [dict(TENANT_NODES_TOLERATION)],
                "containers": [{
                    "name": DAEMONSET, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["/velero"], "args": ["node-agent", "server"], "env": env,
                    "ports": [{"containerPort": 8085, "name": "http-monitoring"}],
                    "resources": resources,
                    "volumeMounts": [{"mountPath": "/credentials", "name": "cloud-credentials"},
                                     {"mountPath": "/host_pods", "mountPropagation": to_host, "name": "host-pods"},
                                     {"mountPath": "/host_plugins", "mountPropagation": to_host, "name": "host-plugins"},
                                     {"mountPath": "/scratch", "name": "scratch"}],
                }],
                "volumes": [credentials, {"name": "host-pods", "hostPath": {"path": POD_VOLUMES}},
                            {"name": "host-plugins", "hostPath": {"path": PLUGINS}}, {"name": "scratch", "emptyDir": {}}],
            },
        },
    }


def credential(cluster: str, namespace: str) -> Credential:
    """The agent's tokens: on every node of `cluster`, so what they may do is what a node taken over may."""
    return projected_token(
        f"service-account tokens of Velero's node agent on {cluster}",
        issuer=f"the {cluster} cluster's service-account issuer",
        holder=f"Velero's node agent on every node of {cluster}, and the pods it starts there to copy volumes "
               f"({namespace}/{ACCOUNT}); each token is bound to its pod and node",
        scope=f"reads pods, claims, volumes, nodes and Velero's objects; in {namespace}: creates and deletes pods only "
              f"on its own node as itself with Velero's image and the kubelet's directories (Gatekeeper PlatformNodeAgentPods), "
              f"updates the volume backups and restores, reads kopia's repository password",
    )
