"""Gatekeeper on a cluster: the release, the platform's ConstraintTemplates and Constraints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.egress import Reach
from components.service import AddOnArgs, ChartAddOn, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from components.tenant_secrets import SECRETS_SERVICE_ACCOUNT
from policy.gatekeeper import (
    cluster_constraints, cluster_mutations, disruption_budget_mutation, local_volume_mutation, sync_config, templates,
    tenant_node_mutations,
)
from policy.labels import TENANT_NAMESPACE_LABEL, managed_by

NAMESPACE = "gatekeeper-system"


@dataclass(frozen=True, kw_only=True)
class GatekeeperArgs(AddOnArgs):
    allowed_registries: list[str]
    tenant_namespace_selector: dict[str, Any]
    # The platform's own namespaces: outside the tenant constraints, and skipped by the webhook
    # where each says so (stacks/services.py derives them from the slices).
    platform_namespaces: Sequence[PlatformNamespace]
    # Tenants' claims ask local-path-provisioner for `local` volumes, which Velero's node agent can copy (its default,
    # hostPath, it skips): on kubeconfig clusters, whether or not their namespaces are backed up yet, so that a
    # volume made before `velero.environments` names them is not left out when it does.
    local_volumes: bool = False
    # Tenant namespace -> its tenant, for tenants with nodes of their own (`platform:tenants[].dedicatedNodes`): their
    # pods are placed there (mutators) and must be; no other pod tolerates or selects those nodes (PlatformPodSecurity).
    dedicated_namespaces: Mapping[str, str] = field(default_factory=dict)


class Gatekeeper(ChartAddOn[GatekeeperArgs]):
    type_token = "platform:gatekeeper:Gatekeeper"
    # Its settings' sizing is that of the chart's hook Jobs that run (its controller and audit
    # have the chart's own).
    sized_at = ("postInstall", "crds")
    webhook_port = 8443  # the controller manager's `webhook-server` container port (the chart's default `port`)

    def egress(self, args: GatekeeperArgs) -> Sequence[Reach]:
        """Its API server alone: the controller, the audit and the hook Jobs read and write objects there; no
        external data provider is declared (the only outgoing calls Gatekeeper makes beside, pkg/externaldata)."""
        return []

    def values(self, args: GatekeeperArgs) -> dict[str, Any]:
        return {
            "replicas": args.settings.replicas,
            # With replicas >= 3 (stacks.config) a restart or a node drain leaves two webhooks
            # answering; the chart spreads them over nodes (preferred pod anti-affinity by hostname).
            "pdb": {"controllerManager": {"minAvailable": 2}},
            # Fail closed for everyone but the platform's own namespaces, which are exempt so
            # a Gatekeeper outage can never lock the platform out of repairing itself. ArgoCD's
            # namespace stays checked: tenant Applications there are held by their constraints.
            "validatingWebhookFailurePolicy": "Fail",
            "controllerManager": {"exemptNamespaces": [n.name for n in args.platform_namespaces if n.webhook_exempt]},
            "auditInterval": 60,
        }

    def extend(self, name: str, cluster: ClusterHandle, args: GatekeeperArgs) -> None:
        child = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])
        # The ConstraintTemplates by the constraint kind they define; constraints wait for them.
        self.templates: dict[str, k8s.apiextensions.CustomResource] = {}
        loaded = templates()
        for template in loaded:
            self.templates[template["spec"]["crd"]["spec"]["names"]["kind"]] = _custom_resource(
                f"{cluster.role}-{template['metadata']['name']}", template, child
            )
        # A constraint's kind is a CRD its template creates: each waits for its template.
        platform_namespaces = [n.name for n in args.platform_namespaces]
        constraints = cluster_constraints(args.allowed_registries, args.tenant_namespace_selector, platform_namespaces,
                                          [SECRETS_SERVICE_ACCOUNT], args.dedicated_namespaces)
        policies = [
            _custom_resource(
                f"{cluster.role}-{constraint['metadata']['name']}",
                constraint,
                pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.templates[constraint["kind"]]])),
            )
            for constraint in constraints
        ]
        # Mutators are CRDs of the release itself.
        mutations = [*cluster_mutations(args.tenant_namespace_selector, platform_namespaces),
                     disruption_budget_mutation(args.tenant_namespace_selector, platform_namespaces),
                     *([local_volume_mutation(args.tenant_namespace_selector, platform_namespaces)] if args.local_volumes else []),
                     *(m for ns, tenant in sorted(args.dedicated_namespaces.items()) for m in tenant_node_mutations(ns, tenant))]
        policies += [_custom_resource(f"{cluster.role}-{m['metadata']['name']}", m, child) for m in mutations]
        # What Gatekeeper replicates for the templates that compare an object with others.
        policies.append(_custom_resource(f"{cluster.role}-gatekeeper-sync", sync_config(NAMESPACE), child))
        # One object that exists once every policy above does. Access to a tenant namespace waits for
        # it: one dependency each in the state, not one per policy (a thousand tenants' bindings).
        self.in_force = k8s.core.v1.ConfigMap(
            f"{cluster.role}-admission-in-force",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="platform-admission-in-force", namespace=NAMESPACE, labels=managed_by()),
            data={"policies": "\n".join(sorted(o["metadata"]["name"] for o in [*loaded, *constraints, *mutations]))},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[*self.templates.values(), *policies])),
        )

    def enforce(self, name: str, constraint: dict[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        """Another service's Constraint on this cluster (`opts`: its parent and provider), after its template."""
        return _custom_resource(name, constraint, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[self.templates[constraint["kind"]]])))



def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> Gatekeeper:
    """Every cluster's policy: images from the platform's Harbor only, the tenant constraints."""
    return Gatekeeper(
        f"{parts.cluster.role}-gatekeeper",
        parts.cluster,
        SLICE,
        GatekeeperArgs(
            allowed_registries=[f"harbor.{parts.domain}"],
            tenant_namespace_selector={"matchLabels": {TENANT_NAMESPACE_LABEL: "true"}},
            platform_namespaces=parts.platform_namespaces,
            local_volumes=not parts.cluster.is_eks,
            dedicated_namespaces=parts.dedicated_namespaces,
            settings=settings,
        ),
    )


SLICE: ServiceSlice[Gatekeeper] = ServiceSlice(
    key="gatekeeper",
    namespace=PlatformNamespace(NAMESPACE, "Gatekeeper itself: a broken policy must not lock it out"),
    chart="gatekeeper",
    on_cluster=on_cluster,
    default_replicas=3,  # stacks.config refuses fewer: its webhook fails closed
)


def in_force(addons: dict[str, Any]) -> pulumi.Resource | None:
    """What waits for a cluster's policies to be in force, given its add-ons (None: no Gatekeeper there)."""
    gatekeeper = addons.get(SLICE.key)
    return gatekeeper.in_force if gatekeeper is not None else None


def _custom_resource(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    extra = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], opts=opts, **extra
    )
