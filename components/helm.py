"""A pinned Helm release in a namespace of its own: the shape every add-on shares."""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
from pathlib import Path
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.common import PlatformNamespace
from components.versions import CHARTS
from policy.labels import MANAGED_BY, managed_by


# Gatekeeper skips a namespace only when it is both in its exempt list and labelled so.
GATEKEEPER_IGNORE = {"admission.gatekeeper.sh/ignore": "platform-namespace"}
RBAC_GROUP = "rbac.authorization.k8s.io"
READ = ("get", "list", "watch")


def rbac_rule(groups: list[str], resources: list[str], verbs: tuple[str, ...] = READ) -> dict[str, Any]:
    """A rule of a Role or ClusterRole the platform grants in place of a chart's."""
    return {"apiGroups": groups, "resources": resources, "verbs": list(verbs)}


Role = k8s.rbac.v1.Role | k8s.rbac.v1.ClusterRole


def grant(
    name: str, role: str, account: dict[str, str], rules: list[dict[str, Any]], opts: pulumi.ResourceOptions, namespace: str | None = None
) -> pulumi.Resource:
    """`rules` for service account `account` ({kind, name, namespace}): a ClusterRole `role` bound cluster-wide, or
    with `namespace` a Role `role` bound there. Returns the binding, which waits for its role (what a release waits for)."""
    metadata = k8s.meta.v1.ObjectMetaArgs(name=role, namespace=namespace, labels=managed_by())
    kind = k8s.rbac.v1.ClusterRole if namespace is None else k8s.rbac.v1.Role
    return bind(name, account, kind(name, metadata=metadata, rules=rules, opts=opts), opts, namespace)


def bind(
    name: str, account: dict[str, str], role: Role, opts: pulumi.ResourceOptions, namespace: str | None = None, binding: str | None = None
) -> pulumi.Resource:
    """`role` for `account`: cluster-wide, or with `namespace` there only (a ClusterRole's rules too), by a binding
    named `binding` (default: the role's name). Its roleRef names the role's output, so it waits for the role."""
    ref = {"apiGroup": RBAC_GROUP, "kind": "Role" if isinstance(role, k8s.rbac.v1.Role) else "ClusterRole", "name": role.metadata.name}
    metadata = k8s.meta.v1.ObjectMetaArgs(name=binding or role.metadata.name, namespace=namespace, labels=managed_by())
    kind = k8s.rbac.v1.ClusterRoleBinding if namespace is None else k8s.rbac.v1.RoleBinding
    return kind(name, metadata=metadata, subjects=[account], role_ref=ref, opts=opts)


def namespace(
    platform_namespace: PlatformNamespace, cluster: ClusterHandle, parent: pulumi.Resource, labels: dict[str, str] | None = None
) -> k8s.core.v1.Namespace:
    """A namespace of the platform, labelled for Gatekeeper's webhook to skip it where it is exempt."""
    name = platform_namespace.name
    exempt = GATEKEEPER_IGNORE if platform_namespace.webhook_exempt else {}
    cluster.namespaces[name] = k8s.core.v1.Namespace(
        f"{cluster.role}-{name}",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=name, labels={**MANAGED_BY, **exempt, **(labels or {})}
        ),
        opts=pulumi.ResourceOptions(parent=parent, provider=cluster.provider, depends_on=cluster.policies_enforced),
    )
    return cluster.namespaces[name]


@functools.cache
def chart_archive(directory: str) -> bytes:
    """The chart in `directory` (a verified local copy) as a .tgz such as `helm package` makes: its
    files under a folder named after the chart. The same bytes on every run (sorted entries, no
    times, owners or gzip name), so the plan does not change while the chart does not."""
    root = Path(directory)
    folder = root.parent.name  # <charts>/<chart>/<version>
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{folder}/{path.relative_to(root).as_posix()}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def release(
    name: str,
    chart_key: str,
    ns: k8s.core.v1.Namespace,
    values: pulumi.Input[dict[str, Any]],
    cluster: ClusterHandle,
    parent: pulumi.Resource,
    *,
    version: str | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    protect: bool = False,
) -> k8s.helm.v3.Release:
    """Release `name` of a chart pinned in `components.versions.CHARTS`, waiting until it is ready."""
    chart = CHARTS[chart_key]
    version = version or chart.version
    # Air-gapped: the verified local copy (a directory path is a chart to Helm); else the repository.
    source = (
        {"chart": f"{cluster.local_charts}/{chart.chart}/{version}"}
        if cluster.local_charts
        else {"chart": chart.chart, "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo)}
    )
    return k8s.helm.v3.Release(
        f"{cluster.role}-{name}",
        name=name,
        version=version,
        **source,
        namespace=ns.metadata.name,
        create_namespace=False,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        timeout=900,
        opts=pulumi.ResourceOptions(
            parent=parent, provider=cluster.provider, depends_on=[ns, *depends_on], protect=protect
        ),
    )


def sized(values: dict[str, Any], resources: dict[str, Any], *paths: str) -> dict[str, Any]:
    """`values` with `resources` (requests and memory limit) set at each dotted path's `resources`
    ("" for the top level): where a chart takes each of its containers' resources."""
    if not resources:
        return values
    out = dict(values)
    for path in paths:
        node = out
        for key in filter(None, path.split(".")):
            node[key] = dict(node.get(key) or {})  # copies along the path only: values may hold Outputs
            node = node[key]
        node["resources"] = resources
    return out


def metadata(
    name: str, ns: k8s.core.v1.Namespace, annotations: dict[str, pulumi.Input[str]] | None = None
) -> k8s.meta.v1.ObjectMetaArgs:
    """Metadata of an object the platform keeps in a service's namespace."""
    return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=ns.metadata.name, labels=managed_by(), annotations=annotations)


def workload_service_account(
    resource_name: str, name: str, ns: k8s.core.v1.Namespace, role_arn: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.ServiceAccount:
    """A service account whose pods take an IAM role from their projected token (IRSA): no AWS keys anywhere."""
    return k8s.core.v1.ServiceAccount(
        resource_name,
        metadata=metadata(name, ns, {"eks.amazonaws.com/role-arn": role_arn}),
        automount_service_account_token=False,
        opts=opts,
    )


SPREAD_KEYS = ("topology.kubernetes.io/zone", "kubernetes.io/hostname")


def spread(match_labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Topology spread of a replicated tier: across zones, then across nodes. ScheduleAnyway: a
    rollout or a zone outage never leaves pods pending (and a one-node cluster still schedules).
    `match_labels`: the pods' labels, for charts that do not add the selector themselves."""
    selector = {"labelSelector": {"matchLabels": match_labels}} if match_labels else {}
    return [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", **selector}
        for key in SPREAD_KEYS
    ]


def spread_affinity(match_labels: dict[str, str]) -> dict[str, Any]:
    """The same preference as `spread`, for charts that take only an `affinity`: pods of one tier
    avoid sharing a zone, then a node."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": match_labels}, "topologyKey": key}}
        for key in SPREAD_KEYS
    ]}}


def disruption_budget(
    resource_name: str, name: str, ns: k8s.core.v1.Namespace, match_labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.policy.v1.PodDisruptionBudget:
    """A PodDisruptionBudget keeping all but one replica of a tier through drains, for charts without one."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource_name,
        metadata=metadata(name, ns),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match_labels)
        ),
        opts=opts,
    )
