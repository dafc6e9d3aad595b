"""A tenant: everything a team needs, derived from its name only.

Per environment (dev, prod): a namespace labelled for the policies, RoleBindings by role,
a ResourceQuota, a LimitRange and a default-deny NetworkPolicy that allows DNS,
same-namespace traffic and, from outside, the workload ingress controller only. With `isolation: vcluster` that namespace hosts a virtual cluster
whose API server trusts the control plane's issuer for people; the tenant's roles are bound
inside it, and the quota, limits and network policy still hold its pods on the host. ArgoCD
reaches the virtual cluster through token federation like any workload cluster: a
kube-oidc-proxy inside it (components/kube_oidc_proxy.py) accepts OpenUnison's tokens for its
own audience, and the federated user gets the same ClusterRole there as on dev and prod.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import argo_rollouts, gatekeeper, image_verifier, prometheus, prometheus_query, yaml_text
from components.cluster import ClusterHandle
from components.federation import (
    FEDERATED_USER,
    USERNAME_PREFIX,
    FederatedAccessArgs,
    RemoteCluster,
    federated_access_manifests,
    federated_namespace_binding,
    target_name,
)
from components.egress import dns, endpoint_ports, networks_or_internet, tcp, to_api_server
from components.helm import release
from components.inventory import DAY, Credential, CredentialInventory
from components.kube_oidc_proxy import NAMESPACE as PROXY_NAMESPACE
from components.kube_oidc_proxy import SECURE_PORT as PROXY_PORT
from components.kube_oidc_proxy import KubeOidcProxyArgs, VirtualClusterProxy
from components.service import TenantParts
from components.tenancy import (
    ENVIRONMENTS,
    ROLES,
    FederationTenancy,
    Isolation,
    PodSecurityException,
    TenantArgs,
    TenantMembers,
    TenantPlatform,
    TenantQuota,
    tenant_group,
)
from components.tenant_names import namespace_name, sandbox_name, tenant_hostname  # noqa: F401 (part of this module's interface)
from components.tenant_roles import RULES, TENANT_ADMIN, TENANT_EDIT, VIEW, tenant_role_manifests
from components.tenant_secrets import PULL_SECRET
from components.tenant_supply_chain import APPROVED_PROJECT, approved
from components.versions import KUBE_OIDC_PROXY_IMAGE, VCLUSTER_KUBERNETES_TAGS
from components.workload_ingress import from_ingress_controller
from policy.gatekeeper import tenant_namespace_constraints
from policy.labels import (
    ENVIRONMENT_LABEL,
    POD_SECURITY_LABEL,
    SIGNATURE_POLICY_LABEL,
    TENANT_LABEL,
    TENANT_NAMESPACE_LABEL,
    VCLUSTER_MANAGED_BY_LABEL,
    VCLUSTER_NAMESPACE_LABEL,
    pod_security_admission,
    tenant_node_toleration,
)

# Role -> the ClusterRole it is bound to, per environment (components/tenant_roles.py).
ROLE_BINDINGS: dict[str, dict[str, str]] = {
    "owners": {"dev": TENANT_ADMIN, "prod": TENANT_ADMIN},
    "developers": {"dev": TENANT_ADMIN, "prod": VIEW},
    "ops": {"dev": TENANT_ADMIN, "prod": TENANT_EDIT},
}
POD_SECURITY_LEVELS = ("restricted", "baseline")


def pod_security_labels(level: str) -> dict[str, str]:
    """Pod Security Admission enforces `level` (restricted unless the tenant has an exception),
    and always warns and audits against restricted, so an exception stays visible."""
    if level not in POD_SECURITY_LEVELS:
        raise ValueError(f"pod security level {level!r} is not one of {', '.join(POD_SECURITY_LEVELS)}")
    return {**pod_security_admission(level), POD_SECURITY_LABEL: level}


@dataclass(frozen=True)
class NamespacePolicy:
    """A tenant namespace's own Gatekeeper constraints: where its images may come from."""

    registries: list[str]  # image prefixes: its Harbor project and `approved`
    templates: dict[str, pulumi.Resource]  # its cluster's templates by constraint kind
    hosts: tuple[str, ...] = ()  # the hostnames its Ingresses may serve (none: no Ingress at all)
    prometheus_addresses: tuple[str, ...] = ()  # what its analyses may query (none: Job analyses only)
    # Its cluster's policies in force (components.gatekeeper.in_force): access to the namespace waits for them.
    admission: pulumi.Resource | None = None
    # Its cluster's image verifier (components.image_verifier.ready), which checks a pod only when it
    # is admitted: access waits for it too.
    verifier: pulumi.Resource | None = None


def namespace_constraints(
    name: str, ns_name: str, policy: NamespacePolicy, users: list[str], groups: list[str], opts: pulumi.ResourceOptions,
    pod_security_exception: dict[str, Any] | None = None, controllers: Sequence[dict[str, str]] = (),
) -> list[pulumi.Resource]:
    """A tenant namespace's Gatekeeper constraints (policy.gatekeeper.tenant_namespace_constraints),
    each after its template."""
    return [
        k8s.apiextensions.CustomResource(
            f"{name}-{constraint['metadata']['name'].removeprefix(ns_name + '-')}",
            api_version=constraint["apiVersion"],
            kind=constraint["kind"],
            metadata=constraint["metadata"],
            spec=constraint["spec"],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[policy.templates[constraint["kind"]]])),
        )
        for constraint in tenant_namespace_constraints(
            ns_name, policy.registries, users, groups, policy.hosts, pod_security_exception, policy.prometheus_addresses,
            prometheus_query.HEADER if policy.prometheus_addresses else None, controllers,
        )
    ]


@dataclass(frozen=True)
class VirtualClusterArgs:
    hostname: str  # how ArgoCD reaches the virtual API server
    issuer_url: str  # OpenUnison, whose tokens the virtual API server accepts
    client_id: str
    ca_bundle: pulumi.Output[str]  # the issuer's CA; "" means public roots
    pull_secret: str  # synced from the host namespace into the tenant's virtual namespace
    registry_host: str  # harbor.<domain>: the proxy's image comes from its `approved` project
    federation: FederationTenancy | None = None  # None: no ArgoCD, no proxy
    inventory: CredentialInventory | None = None  # where the proxy's certificate is registered
    chart_version: str | None = None
    issuer_networks: tuple[pulumi.Input[str], ...] = ()  # where its pods reach the issuer (TenantPlatform.control_plane_ingress)

    @property
    def proxy_hostname(self) -> str:
        """Where ArgoCD and OpenUnison reach the virtual cluster's kube-oidc-proxy (a DNS record
        for its LoadBalancer, owned by the cluster's operators like the workload clusters' ones)."""
        return f"oumgmt-proxy.{self.hostname}"


# At most this many objects of each kind a tenant may create, per namespace: CPU and memory alone
# do not bound how many 1m pods or megabyte ConfigMaps and Secrets one makes, and the API server's
# storage and the nodes' pod slots are every tenant's.
OBJECTS_PER_KIND = 200


def object_counts() -> dict[str, str]:
    """The quota's count of each kind the tenant roles may create (`count/<resource>[.<group>]`);
    not the access reviews, which the API server answers and does not store."""
    return {
        f"count/{resource}" + (f".{group}" if group else ""): str(OBJECTS_PER_KIND)
        for rule in RULES[TENANT_ADMIN] if "create" in rule["verbs"]
        for group in rule["apiGroups"] if group != "authorization.k8s.io"
        for resource in rule["resources"] if "/" not in resource
    }


def load_balancers(virtual: VirtualClusterArgs | None) -> int:
    """The LoadBalancer Services the platform puts in a tenant namespace: a virtual cluster's API
    server and its kube-oidc-proxy, and no more. Each takes an address of the cluster's shared pool
    (or a cloud load balancer) and a node port on every node: a tenant's own would serve nothing
    past its default-deny policy, and enough of them would leave no address for another tenant."""
    if virtual is None:
        return 0
    return 2 if virtual.federation is not None else 1


def role_binding_manifests(tenant: TenantArgs, environment: str, namespace: str) -> list[dict]:
    """The tenant's people bound to their roles in `namespace`, one RoleBinding per role with members."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"tenant-{role}", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": per_environment[environment]},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in sorted(tenant.members.of(role))],
        }
        for role, per_environment in ROLE_BINDINGS.items()
        if tenant.members.of(role)
    ]


def virtual_cluster_documents(tenant: TenantArgs, environment: str, federated: bool) -> list[dict]:
    """What the virtual cluster applies at start: the tenant's namespace, the tenant roles and
    their bindings there, and with federation the federated ArgoCD user's roles, allowed to
    write in that namespace only.

    Roles bind in the tenant's namespace, not cluster-wide: the virtual cluster's other
    namespaces (the platform's kube-oidc-proxy, whose host copies a NetworkPolicy opens to
    ArgoCD) stay out of the tenant's reach.
    """
    documents: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.name}},
        *tenant_role_manifests(),
        *role_binding_manifests(tenant, environment, tenant.name),
    ]
    if federated:
        documents.extend(federated_access_manifests(FederatedAccessArgs()))
        documents.append(federated_namespace_binding(tenant.name))
    return documents


# A virtual control plane's CPU limit, within the tenant's quota.
VCLUSTER_CPU_LIMIT = "1"
# The open-source build: the chart defaults to vcluster-pro, whose extra modules stay off here.
VCLUSTER_REPOSITORY = "loft-sh/vcluster-oss"


def virtual_cluster_registry(registry_host: str) -> str:
    """Where virtual clusters pull their own images: `<harbor>/approved/vcluster/<repository>:<tag>`
    (promote e.g. ghcr.io/loft-sh/vcluster-oss:<chart version> to approved/vcluster/loft-sh/vcluster-oss)."""
    return f"{registry_host}/{APPROVED_PROJECT}/vcluster"


# The syncer's only rights beyond its host namespace (`rbac.clusterRole.overwriteRules`): replicating
# the query proxy's Service (`networking.replicateServices.fromHost`) runs a host manager that watches
# Services and Endpoints in every namespace (vcluster v0.36.1 pkg/controllers/register.go:117). The
# chart would add list/watch on every Secret for `sync.fromHost.secrets`; its mappings all come from
# the host namespace, which the syncer's namespaced cache (pkg/setup/controller_context.go:120,
# pkg/config/parse.go:134) and Role already serve.
VCLUSTER_CLUSTER_RULES = [{"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["get", "watch", "list"]}]

# What the syncer asks the virtual API server for, for each projected service-account token of a virtual
# pod, whatever the volume says (vcluster v0.36.1 pods/translate/translator.go:596; loft-sh/vcluster#969,
# open): nothing refreshes it, and it dies with the virtual pod it is bound to (lines 599-605).
SYNCED_TOKEN_SECONDS = 10 * 365 * DAY


def virtual_cluster_tokens(virtual_cluster: str, cluster: str, release_resource: str) -> Credential:
    """The service-account tokens of the pods inside a virtual cluster (`release_resource`: its release)."""
    return Credential(
        what=f"service-account tokens inside the virtual cluster {virtual_cluster} on {cluster}",
        # vCluster's code sets the lifetime; no value of the chart changes it.
        category="external",
        issuer=f"the virtual cluster {virtual_cluster}'s API server, on its syncer's TokenRequest when it syncs the pod to the host",
        holder=(f"each pod of the virtual cluster (its CoreDNS, kube-oidc-proxy and Argo Rollouts controller, the tenant's workloads), "
                f"from a host Secret `<pod>-sa-token-x-<namespace>-x-{virtual_cluster}` in {virtual_cluster} on {cluster} "
                "(useSecretsForSATokens), which only the syncer and the accounts that read every Secret read"),
        scope=("each account's rights inside the virtual cluster only (the kube-oidc-proxy's: impersonate ArgoCD's federated user; "
               "Argo Rollouts': the chart's ClusterRole), for the virtual API server's audiences unless the pod's volume names "
               "another; nothing on the host"),
        lifetime_seconds=SYNCED_TOKEN_SECONDS,
        lifetime="10 years (the syncer's request, which no setting changes), or until its virtual pod is deleted (bound to it)",
        rotation="none while the pod runs (neither the syncer nor the kubelet refreshes it); a new pod gets a new token",
        resources=(release_resource,),
    )


# Pod Security `restricted` for the virtual cluster's own pods (the chart runs them as root by default).
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 12345, "runAsGroup": 12345, "fsGroup": 12345,
                  "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 12345, "runAsGroup": 12345,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def virtual_cluster_values(
    tenant: TenantArgs, environment: str, args: VirtualClusterArgs, ca: str, documents: list[dict],
    secret_mappings: dict[str, str], host_kubernetes_version: str, local_charts: str | None = None,
) -> dict:
    oidc = [
        f"--oidc-issuer-url={args.issuer_url}",
        f"--oidc-client-id={args.client_id}",
        "--oidc-username-claim=sub",
        # People by their bare user id, as the role bindings inside name them ("-": no prefix; by
        # default Kubernetes would name them <issuer>#<sub>, which no binding matches).
        "--oidc-username-prefix=-",
        "--oidc-groups-claim=groups",
    ]
    control_plane: dict = {
        "distro": {"k8s": {
            "apiServer": {"extraArgs": oidc + (["--oidc-ca-file=/etc/platform-ca/ca.crt"] if ca else [])},
            # The virtual control plane runs the host's Kubernetes minor (the chart's default is newer
            # than the hosts), so tenants' manifests meet the same API versions in both.
            "image": {"tag": VCLUSTER_KUBERNETES_TAGS[host_kubernetes_version]},
        }},
        "proxy": {"extraSANs": [args.hostname]},
        "service": {"spec": {"type": "LoadBalancer"}},
        # The host namespace pulls only from Harbor (the allowed-registries constraint), so the
        # vCluster's own images (its syncer, the Kubernetes distro, CoreDNS) come from the
        # `approved` project, under the chart's default repositories and tags.
        "advanced": {"defaultImageRegistry": virtual_cluster_registry(args.registry_host)},
        # The container-resources constraint holds tenant namespaces to a CPU limit too; the chart
        # sets every other request and limit of the control plane. The host namespace enforces Pod
        # Security `restricted` and pulls Always (its constraints).
        "statefulSet": {
            "image": {"repository": VCLUSTER_REPOSITORY},
            "resources": {"limits": {"cpu": VCLUSTER_CPU_LIMIT}},
            "imagePullPolicy": "Always",
            "security": {"podSecurityContext": RESTRICTED_POD, "containerSecurityContext": RESTRICTED_CONTAINER},
        },
        "coredns": {"security": {"podSecurityContext": RESTRICTED_POD, "containerSecurityContext": RESTRICTED_CONTAINER}},
    }
    control_plane["distro"]["k8s"].update({"imagePullPolicy": "Always", "securityContext": RESTRICTED_CONTAINER})
    if ca:
        control_plane["statefulSet"]["persistence"] = {
            "addVolumes": [{"name": "platform-ca", "configMap": {"name": "platform-ca"}}],
            "addVolumeMounts": [{"name": "platform-ca", "mountPath": "/etc/platform-ca", "readOnly": True}],
        }
    if tenant.dedicated_nodes:
        # Placed by the chart, not only by Gatekeeper's mutation (whose webhook fails open, and the constraint then refuses it).
        control_plane["statefulSet"]["scheduling"] = {"nodeSelector": {TENANT_LABEL: tenant.name},
                                                      "tolerations": [tenant_node_toleration(tenant.name)]}
    host_namespace = namespace_name(tenant.name, environment)
    return {
        "controlPlane": control_plane,
        "rbac": {"clusterRole": {"overwriteRules": VCLUSTER_CLUSTER_RULES}},
        # The host's query proxy of this virtual cluster, under the name the AnalysisTemplate uses
        # (the controller runs inside; components/prometheus_query.py).
        "networking": {"replicateServices": {"fromHost": [{
            "from": f"{prometheus.NAMESPACE}/{prometheus.virtual_proxy_name(host_namespace)}",
            "to": f"{prometheus.NAMESPACE}/{prometheus_query.NAME}",
        }]}},
        "sync": {
            # The tenant's Ingresses serve on the host's ingress controller, held to its host rule.
            # A Service with a selector gets its host Endpoints from the host's controller; the tenant's
            # own Endpoints (a Service without one) would point the host's ingress controller at any
            # address, another tenant's pods included (CVE-2021-25740): as in namespaces, none.
            # Pods' tokens in host Secrets, not in host pods' annotations, which host identities that read no Secret
            # read (translator.go:618-660; SYNCED_TOKEN_SECONDS, tests/test_vcluster_attacks.py).
            "toHost": {"ingresses": {"enabled": True}, "endpoints": {"enabled": False}, "endpointSlices": {"enabled": False},
                       "pods": {"useSecretsForSATokens": True}},
            "fromHost": {
                "secrets": {
                    "enabled": True,
                    "mappings": {
                        "byName": {f"{host_namespace}/{args.pull_secret}": f"{tenant.name}/{args.pull_secret}", **secret_mappings}
                    },
                }
            }
        },
        "experimental": {"deploy": {"vcluster": {
            "manifests": yaml_text.dump_all(documents, sort_keys=True),
            "helm": [argo_rollouts.virtual_cluster_deploy(virtual_cluster_registry(args.registry_host), local_charts)],
        }}},
    }


class TenantNamespace(pulumi.ComponentResource):
    """One tenant environment on its cluster: namespace, access, quota, limits and isolation."""

    namespace: k8s.core.v1.Namespace

    def __init__(
        self,
        name: str,
        cluster: ClusterHandle,
        tenant: TenantArgs,
        environment: str,
        virtual: VirtualClusterArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        federated: bool = False,
        policy: NamespacePolicy | None = None,
        rollouts: argo_rollouts.ArgoRollouts | None = None,
    ):
        """`rollouts`: the cluster's Argo Rollouts, which runs the namespace's Rollouts (not a virtual cluster's)."""
        super().__init__("platform:tenant:TenantNamespace", name, None, opts)
        rollouts = rollouts if virtual is None else None
        ns_name = namespace_name(tenant.name, environment)
        labels = {TENANT_LABEL: tenant.name, TENANT_NAMESPACE_LABEL: "true", ENVIRONMENT_LABEL: environment}
        exception = tenant.pod_security_exception
        excepted = exception if exception is not None and environment in exception.environments else None
        # Opted in to the image verifier (components/image_verifier.py) wherever one runs.
        namespace_labels = {
            **labels, **pod_security_labels("baseline" if excepted else "restricted"), SIGNATURE_POLICY_LABEL: "true",
        }
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        self.namespace = k8s.core.v1.Namespace(
            name, metadata=k8s.meta.v1.ObjectMetaArgs(name=ns_name, labels=namespace_labels),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=cluster.policies_enforced)),
        )
        inside = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[self.namespace]))

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns_name, labels=labels)

        # Admission is checked once (Gatekeeper's audit only reports what predates a constraint, a
        # quota counts only what comes after it), so access to the namespace, people's, ArgoCD's
        # or a virtual cluster's, waits for everything that holds what they create there.
        holds = self._guardrails(name, tenant, meta, inside, load_balancers(virtual))
        if policy is not None:
            holds += self._constraints(name, ns_name, tenant, federated, policy, inside, excepted,
                                       [argo_rollouts.TENANT_BINDING] if rollouts is not None else [])
            holds += [hold for hold in (policy.admission, policy.verifier) if hold is not None]
        self.virtual_cluster: k8s.helm.v3.Release | None = None
        self.proxy: VirtualClusterProxy | None = None
        if virtual is not None:
            self.virtual_cluster = self._virtual_cluster(name, cluster, tenant, environment, virtual, inside, holds)
        # A virtual cluster binds its roles inside; ArgoCD reaches it through its own proxy.
        host_bindings = [] if virtual is not None else [
            *role_binding_manifests(tenant, environment, ns_name),
            *([federated_namespace_binding(ns_name)] if federated else []),
        ]
        for binding in host_bindings:
            k8s.rbac.v1.RoleBinding(
                f"{name}-{binding['metadata']['name'].removeprefix('tenant-')}",
                metadata={**binding["metadata"], "labels": {**labels, **binding["metadata"].get("labels", {})}},
                role_ref=binding["roleRef"],
                subjects=binding["subjects"],
                opts=pulumi.ResourceOptions.merge(inside, pulumi.ResourceOptions(depends_on=holds)),
            )
        if rollouts is not None:
            rollouts.serve(f"{name}-argo-rollouts", ns_name, pulumi.ResourceOptions.merge(inside, pulumi.ResourceOptions(depends_on=holds)))
        self.register_outputs({"namespace": ns_name})

    def _guardrails(
        self, name: str, tenant: TenantArgs, meta: Callable[[str], k8s.meta.v1.ObjectMetaArgs], inside: pulumi.ResourceOptions,
        balancers: int,
    ) -> list[pulumi.Resource]:
        """The platform-managed limits of the namespace: its quota (`balancers` LoadBalancer Services),
        container defaults and default-deny network policy."""
        quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("tenant-quota"),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(
                hard={
                    "requests.cpu": tenant.quota.cpu,
                    "limits.cpu": tenant.quota.cpu,
                    "requests.memory": tenant.quota.memory,
                    "limits.memory": tenant.quota.memory,
                    "requests.storage": tenant.quota.storage,
                    # The nodes' disks are every tenant's: a pod past its limit is evicted, not its neighbours.
                    "requests.ephemeral-storage": tenant.quota.ephemeral_storage,
                    "limits.ephemeral-storage": tenant.quota.ephemeral_storage,
                    "services.loadbalancers": str(balancers),
                    **object_counts(),
                }
            ),
            opts=inside,
        )
        # Defaults so that a container without requests and limits still fits the quota.
        limits = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("tenant-limits"),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container",
                        default={"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
                        default_request={"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"},
                    )
                ]
            ),
            opts=inside,
        )
        same_namespace = [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())]
        # From outside the namespace, only the workload ingress controller's pods (components/workload_ingress.py).
        ingress_controller = [from_ingress_controller()]
        default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=meta("tenant-default-deny"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                policy_types=["Ingress", "Egress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=same_namespace),
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=ingress_controller),
                ],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=same_namespace),
                    dns(),
                ],
            ),
            opts=inside,
        )
        return [quota, limits, default_deny]

    def _constraints(
        self, name: str, ns_name: str, tenant: TenantArgs, federated: bool, policy: NamespacePolicy,
        inside: pulumi.ResourceOptions, excepted: PodSecurityException | None, controllers: list[dict[str, str]],
    ) -> list[pulumi.Resource]:
        """Images from the tenant's own project and `approved` only, pulled Always; RoleBindings
        only for the tenant's people, groups, service accounts (and ArgoCD's federated user, and
        `controllers` each to its ClusterRole);
        Ingress hosts only its own, no externalIPs, NodePorts, token Secrets, Helm releases forged by a syncer
        or PersistentVolumes claimed by name; where an exception holds, restricted but for it."""
        users = [*(u for role in ROLES for u in tenant.members.of(role)), *([FEDERATED_USER] if federated else [])]
        groups = [tenant_group(tenant.name, role) for role in ROLES]
        return namespace_constraints(name, ns_name, policy, users, groups, inside, excepted.parameters() if excepted else None, controllers)

    def _virtual_cluster(
        self, name: str, cluster: ClusterHandle, tenant: TenantArgs, environment: str,
        virtual: VirtualClusterArgs, inside: pulumi.ResourceOptions, holds: list[pulumi.Resource],
    ) -> k8s.helm.v3.Release:
        ns_name = namespace_name(tenant.name, environment)
        # The issuer's CA for the virtual API server's --oidc-ca-file (empty on public roots).
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-platform-ca",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-ca", namespace=ns_name),
            data={"ca.crt": virtual.ca_bundle},
            opts=inside,
        )
        traffic = self._virtual_cluster_traffic(name, ns_name, cluster, virtual, inside)
        proxy_manifests: pulumi.Output[list[dict]] = pulumi.Output.from_input([])
        secret_mappings: dict[str, str] = {}
        depends_on: list[pulumi.Resource] = [config_map, *traffic, *holds]
        if virtual.federation is not None:
            assert virtual.inventory is not None, "a virtual cluster's proxy needs the credential inventory"
            self.proxy = VirtualClusterProxy(
                f"{name}-federation-proxy",
                cluster,
                self.namespace,
                ns_name,
                KubeOidcProxyArgs(
                    hostname=virtual.proxy_hostname,
                    issuer_url=virtual.federation.issuer_url,
                    audience=target_name(ns_name),
                    username_prefix=USERNAME_PREFIX,
                    impersonable_users=[FEDERATED_USER],
                    issuer_ca_bundle=virtual.federation.issuer_ca_bundle,
                    inventory=virtual.inventory,
                    # Tenant namespaces pull only from Harbor (the allowed-registries constraint).
                    image=approved(virtual.registry_host, KUBE_OIDC_PROXY_IMAGE.ref),
                ),
                pulumi.ResourceOptions(parent=self),
            )
            proxy_manifests, secret_mappings = self.proxy.manifests, self.proxy.secret_mapping
            depends_on.append(self.proxy.tls_secret)
        documents = virtual_cluster_documents(tenant, environment, federated=virtual.federation is not None)
        if virtual.inventory is not None:
            virtual.inventory.register(virtual_cluster_tokens(ns_name, cluster.name, f"{cluster.role}-{ns_name}"))
        return release(
            ns_name,
            "vcluster",
            self.namespace,
            pulumi.Output.all(virtual.ca_bundle, proxy_manifests).apply(
                lambda resolved: virtual_cluster_values(
                    tenant, environment, virtual, resolved[0], documents + resolved[1], secret_mappings,
                    cluster.kubernetes_version, cluster.local_charts,
                )
            ),
            cluster,
            self,
            version=virtual.chart_version,
            depends_on=depends_on,
        )

    def _virtual_cluster_traffic(
        self, name: str, ns_name: str, cluster: ClusterHandle, virtual: VirtualClusterArgs, inside: pulumi.ResourceOptions
    ) -> list[k8s.networking.v1.NetworkPolicy]:
        """What the default-deny policy must let through for the virtual cluster itself: its control plane
        (syncer and virtual API server) calls the host's API server and fetches the issuer's keys, and serves
        people on its LoadBalancer; the kube-oidc-proxy serves ArgoCD and fetches the issuer's keys. Nothing
        else outside the namespace: a tenant, admin of its virtual cluster, points webhooks and APIServices
        there at any address, which the virtual API server then calls."""
        anywhere = [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0"))]
        issuer = networks_or_internet(virtual.issuer_networks, endpoint_ports([virtual.issuer_url]))

        # The chart's control-plane pods (8443 is the virtual API server's port): never a pod the
        # virtual cluster synced, whatever labels its owner gave it.
        not_synced = [k8s.meta.v1.LabelSelectorRequirementArgs(key=VCLUSTER_MANAGED_BY_LABEL, operator="DoesNotExist")]
        parts = [("control-plane", {"app": "vcluster", "release": ns_name}, not_synced, 8443, [*to_api_server(cluster.api_server), *issuer])]
        if virtual.federation is not None:  # the proxy's pods as the virtual cluster syncs them to the host; tenants
            # cannot create pods in its virtual namespace (their roles bind in their own only)
            parts.append(
                ("federation-proxy", {VCLUSTER_NAMESPACE_LABEL: PROXY_NAMESPACE, VCLUSTER_MANAGED_BY_LABEL: ns_name}, None, PROXY_PORT, issuer)
            )
        # Argo Rollouts inside (components/argo_rollouts.py) asks the host's Prometheus for its
        # analyses, through this virtual cluster's own proxy (never Prometheus itself).
        rollouts = k8s.networking.v1.NetworkPolicy(
            f"{name}-vcluster-argo-rollouts",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="vcluster-argo-rollouts", namespace=ns_name),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={VCLUSTER_NAMESPACE_LABEL: argo_rollouts.NAMESPACE, VCLUSTER_MANAGED_BY_LABEL: ns_name}
                ),
                policy_types=["Egress"],
                egress=[k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[k8s.networking.v1.NetworkPolicyPeerArgs(
                        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": prometheus.NAMESPACE}),
                        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=prometheus_query.pod_labels(prometheus.virtual_proxy_name(ns_name))),
                    )],
                    ports=tcp(prometheus_query.PORT),
                )],
            ),
            opts=inside,
        )
        return [rollouts, *(
            k8s.networking.v1.NetworkPolicy(
                f"{name}-vcluster-{suffix}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"vcluster-{suffix}", namespace=ns_name),
                spec=k8s.networking.v1.NetworkPolicySpecArgs(
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector, match_expressions=expressions),
                    policy_types=["Ingress", "Egress"],
                    ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=anywhere, ports=tcp(ingress_port))],
                    egress=egress,
                ),
                opts=inside,
            )
            for suffix, selector, expressions, ingress_port, egress in parts
        )]


class Tenant(pulumi.ComponentResource):
    """Everything a team needs, from its entry in `platform:tenants`."""

    namespaces: dict[str, TenantNamespace]

    def __init__(self, args: TenantArgs, platform: TenantPlatform, opts: pulumi.ResourceOptions | None = None):
        if args.renamed_from:
            # Every child's name starts with the tenant's, so the engine derives each child's
            # former name from this alias (`<old>-dev-quota` for `<new>-dev-quota`) and keeps its state.
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=args.renamed_from)]))
        super().__init__("platform:tenant:Tenant", args.name, None, opts)
        self.namespaces = self._environments(args, platform, pulumi.ResourceOptions(parent=self))
        host_namespaces = {e: namespace_name(args.name, e) for e in ENVIRONMENTS}
        parts = TenantParts(
            tenant=args,
            namespaces=host_namespaces,
            namespace_resources={e: n.namespace for e, n in self.namespaces.items()},
            platform=platform,
            opts=pulumi.ResourceOptions(parent=self),
        )
        for service in platform.tenant_slices:  # what each service declares per tenant (its slice's `tenant`)
            parts.get(service)
        self.register_outputs({"namespaces": host_namespaces})

    def _environments(
        self, args: TenantArgs, platform: TenantPlatform, child: pulumi.ResourceOptions
    ) -> dict[str, TenantNamespace]:
        """The tenant's namespace (or virtual cluster) per environment; virtual clusters join the federation."""
        tenant = args.name
        namespaces = {
            environment: TenantNamespace(
                f"{tenant}-{environment}",
                platform.clusters[environment],
                args,
                environment,
                virtual_cluster_args(platform, tenant, environment) if args.isolation is Isolation.VCLUSTER else None,
                child,
                federated=platform.federation is not None,
                policy=namespace_policy(
                    platform, environment, [tenant, APPROVED_PROJECT], (tenant_hostname(tenant, environment, platform.apps_domain),)
                ),
                rollouts=rollouts_on(platform, environment),
            )
            for environment in ENVIRONMENTS
        }
        for environment, space in namespaces.items():
            if space.proxy is not None and platform.federation is not None:
                assert space.virtual_cluster is not None
                platform.federation.clusters.add_remote_cluster(RemoteCluster(
                    name=namespace_name(tenant, environment),
                    server_url=space.proxy.server_url,
                    ca_data=space.proxy.ca_data,
                    environment=environment,
                    tenant=tenant,
                    depends_on=[space.virtual_cluster],
                    parent=self,
                ))
        return namespaces



def namespace_policy(
    platform: TenantPlatform, cluster: str, projects: list[str], hosts: tuple[str, ...] = ()
) -> NamespacePolicy | None:
    """The constraints of a tenant namespace on `cluster` (None without Gatekeeper there)."""
    templates = platform.policy_templates.get(cluster)
    if not templates:
        return None
    # The Rollouts controller calls an analysis's provider from its own namespace: only the
    # cluster's Prometheus (where it runs) is a provider that reaches nothing the tenant should not,
    # through its query proxy, which the namespace's own header scopes (components/prometheus_query.py).
    addons = platform.addons.get(cluster, {})
    queries = (prometheus.QUERY_URL,) if prometheus.SLICE.key in addons else ()
    return NamespacePolicy([f"harbor.{platform.domain}/{project}" for project in projects], templates, hosts, queries,
                           gatekeeper.in_force(addons), image_verifier.ready(addons))


def rollouts_on(platform: TenantPlatform, cluster: str) -> argo_rollouts.ArgoRollouts | None:
    """The Argo Rollouts controller on `cluster`, if it runs there."""
    return platform.addons.get(cluster, {}).get(argo_rollouts.SLICE.key)


def virtual_cluster_args(platform: TenantPlatform, tenant: str, environment: str) -> VirtualClusterArgs:
    return VirtualClusterArgs(
        hostname=f"{namespace_name(tenant, environment)}.vc.{platform.domain}",
        issuer_url=platform.issuer_url,
        client_id=platform.kubernetes_client_id,
        ca_bundle=platform.ca_bundle,
        pull_secret=PULL_SECRET,
        registry_host=f"harbor.{platform.domain}",
        federation=platform.federation,
        inventory=platform.inventory,
        issuer_networks=platform.control_plane_ingress,
    )


SANDBOX_QUOTA = TenantQuota(cpu="2", memory="4Gi", storage="10Gi", ephemeral_storage="10Gi")


class Sandbox(pulumi.ComponentResource):
    """A developer's personal namespace on the dev cluster: admin there, held by the tenant policies."""

    def __init__(self, user: str, platform: TenantPlatform, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:Sandbox", user, None, opts)
        name = sandbox_name(user)
        space = TenantNamespace(
            name, platform.clusters["dev"], TenantArgs(name, TenantMembers((user,)), SANDBOX_QUOTA), "dev", None,
            pulumi.ResourceOptions(parent=self), policy=namespace_policy(platform, "dev", [APPROVED_PROJECT]),
            rollouts=rollouts_on(platform, "dev"),
        )
        self.register_outputs({"namespace": space.namespace.metadata.name})
