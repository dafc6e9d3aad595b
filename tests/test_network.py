"""The prod network: the control plane reaches each workload cluster's private API endpoint.

A walker follows the prod plan hop by hop, from ArgoCD and OpenUnison on the control plane to
each workload endpoint (DNS, routes both ways, the peering, the security-group rule), and fails
naming the first hop with nothing behind it. AWS ids are the mock provider's
(platformctl/mocks.py), so a reference is matched to the very resource it names.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from pulumi.runtime.mocks import MockResourceArgs

from components.cluster import EksCluster, EksClusterArgs, NodeGroupArgs
from components.network import API_PORT
from platformctl.mocks import PlatformMocks
from platformctl.render import Render
from tests.mock_program import run_program

PEERING = "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
ACCEPTER = "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
ROUTE = "aws:ec2/route:Route"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
WORKLOADS = ("dev", "prod")


class NoPath(AssertionError):
    """A hop of the path has no resource, rule or route behind it."""


class Plan:
    """A plan's AWS resources by the id the (mock) provider gives them, and its outputs."""

    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.resources = plan["resources"]
        self.by_urn = {r["urn"]: r for r in self.resources}
        self.by_id = {self.output(r, "id"): r for r in self.resources if r["type"].startswith("aws:")}

    @staticmethod
    def output(resource: dict[str, Any], key: str) -> Any:
        """What the provider (as the mocks model it) returns for `resource`: its id or an output."""
        rid, outputs = PlatformMocks().new_resource(MockResourceArgs(resource["type"], resource["name"], resource["inputs"]))
        return rid if key == "id" else outputs[key]

    def of_type(self, type_: str, **inputs: Any) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_ and all(r["inputs"].get(k) == v for k, v in inputs.items())]

    def one(self, type_: str, name: str) -> dict[str, Any]:
        found = [r for r in self.resources if r["type"] == type_ and r["name"] == name]
        if len(found) != 1:
            raise NoPath(f"{type_} {name}: {len(found)} in the plan")
        return found[0]

    def tables_of(self, subnet_ids: list[str]) -> list[dict[str, Any]]:
        """The route table of each subnet (its association)."""
        tables = []
        for subnet in subnet_ids:
            associations = self.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation", subnetId=subnet)
            if len(associations) != 1:
                raise NoPath(f"subnet {self.by_id[subnet]['name']} has {len(associations)} route table associations")
            tables.append(self.by_id[associations[0]["inputs"]["routeTableId"]])
        return tables


def _cidrs(plan: Plan, subnet_ids: list[str]) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(plan.by_id[s]["inputs"]["cidrBlock"]) for s in subnet_ids]


def _routes_through(plan: Plan, table: dict[str, Any], peering_id: str, to: list[ipaddress.IPv4Network], hop: str) -> None:
    """`table` sends every network in `to` through the peering, and no wider than the peer's VPC."""
    routes = [r for r in plan.of_type(ROUTE, routeTableId=plan.output(table, "id")) if r["inputs"].get("vpcPeeringConnectionId") == peering_id]
    covered = [ipaddress.ip_network(r["inputs"]["destinationCidrBlock"]) for r in routes]
    missing = [str(n) for n in to if not any(n.subnet_of(c) for c in covered)]
    if missing:
        raise NoPath(f"{hop}: route table {table['name']} has no route to {', '.join(missing)} through the peering")


def walk(plan: Plan, workload: str) -> list[str]:
    """The hops from ArgoCD and OpenUnison on the control plane to `workload`'s API endpoint."""
    hops = []
    endpoint = plan.plan["outputs"]["clusters"][workload]["endpoint"]
    # 1. The clients, on the control plane's nodes: OpenUnison's Target and ArgoCD's cluster Secret.
    target = plan.one("kubernetes:openunison.tremolo.io/v1:Target", f"{workload}-federation-target")
    if {p["name"]: p["value"] for p in target["inputs"]["spec"]["params"]}.get("url") != endpoint:
        raise NoPath(f"OpenUnison: its Target for {workload} does not name the endpoint {endpoint}")
    secret = plan.one("kubernetes:core/v1:Secret", f"{workload}-argocd-cluster-secret")
    token_api = plan.one("kubernetes:openunison.tremolo.io/v2:Application", f"{workload}-federation-token-api")
    if token_api["urn"] not in secret["dependsOn"] or secret["cluster"] != "control-plane":
        raise NoPath(f"ArgoCD: its cluster Secret for {workload} does not use OpenUnison's token API for that Target")
    for release in ("control-plane-argocd", "control-plane-orchestra"):
        if plan.one("kubernetes:helm.sh/v3:Release", release)["cluster"] != "control-plane":
            raise NoPath(f"{release} does not run on the control plane")
    hops.append(f"ArgoCD and OpenUnison on control-plane call {endpoint}")
    # 2. DNS: a private-only endpoint's public name answers with its private addresses.
    cluster, source = plan.one("aws:eks/cluster:Cluster", workload), plan.one("aws:eks/cluster:Cluster", "control-plane")
    if plan.output(cluster, "endpoint") != endpoint:
        raise NoPath(f"DNS: {endpoint} is not the EKS cluster {workload}'s endpoint")
    access = cluster["inputs"]["vpcConfig"]
    if not access["endpointPrivateAccess"] or access.get("endpointPublicAccess", True):
        raise NoPath(f"DNS: {workload}'s endpoint is not private only, so its name resolves to public addresses outside its VPC")
    hops.append(f"DNS: {endpoint} resolves to {workload}'s private endpoint addresses")
    # 3. The control plane's nodes: their subnets route the workload's subnets into the peering.
    node_groups = [g for g in plan.of_type("aws:eks/nodeGroup:NodeGroup") if g["inputs"]["clusterName"] == plan.output(source, "name")]
    node_subnets = [s for g in node_groups for s in g["inputs"]["subnetIds"]]
    endpoint_subnets = access["subnetIds"]
    source_vpc, target_vpc = (plan.by_id[plan.by_id[s[0]]["inputs"]["vpcId"]] for s in (node_subnets, endpoint_subnets))
    peerings = [p for p in plan.of_type(PEERING) if {p["inputs"]["vpcId"], p["inputs"]["peerVpcId"]} == {plan.output(source_vpc, "id"), plan.output(target_vpc, "id")}]
    if len(peerings) != 1:
        raise NoPath(f"peering: {len(peerings)} peering connections between {source_vpc['name']} and {target_vpc['name']}")
    peering = peerings[0]
    peering_id = plan.output(peering, "id")
    accepters = [a for a in plan.of_type(ACCEPTER, vpcPeeringConnectionId=peering_id) if a["inputs"].get("autoAccept")]
    if not (peering["inputs"].get("autoAccept") or accepters):
        raise NoPath(f"peering: {peering['name']} is never accepted")
    for table in plan.tables_of(node_subnets):
        _routes_through(plan, table, peering_id, _cidrs(plan, endpoint_subnets), "route out")
    hops.append(f"route out: the control plane's node subnets reach {workload}'s through peering {peering['name']}")
    # 4. Back: every subnet the endpoint's interfaces may sit in routes the node subnets back.
    for table in plan.tables_of(endpoint_subnets):
        _routes_through(plan, table, peering_id, _cidrs(plan, node_subnets), "route back")
    hops.append(f"route back: {workload}'s endpoint subnets reach the control plane's nodes through {peering['name']}")
    # 5. The API port, from the control plane's nodes: EKS puts its cluster security group on the
    # nodes of a managed node group unless its launch template names security groups of its own.
    templates = {plan.output(t, "id"): t for t in plan.of_type("aws:ec2/launchTemplate:LaunchTemplate")}

    def own_groups(group: dict[str, Any]) -> bool:
        template = templates.get((group["inputs"].get("launchTemplate") or {}).get("id"))
        inputs = template["inputs"] if template else {}
        return bool(inputs.get("vpcSecurityGroupIds") or any(i.get("securityGroups") for i in inputs.get("networkInterfaces") or []))

    if not node_groups or any(own_groups(g) for g in node_groups):
        raise NoPath("security group: the control plane's nodes do not carry its cluster security group")
    target_sg, source_sg = plan.output(cluster, "vpcConfig")["clusterSecurityGroupId"], plan.output(source, "vpcConfig")["clusterSecurityGroupId"]
    rules = [r for r in plan.of_type(RULE, securityGroupId=target_sg) if r["inputs"]["ipProtocol"] == "tcp"
             and r["inputs"]["fromPort"] <= API_PORT <= r["inputs"]["toPort"] and r["inputs"].get("referencedSecurityGroupId") == source_sg]
    if not rules:
        raise NoPath(f"security group: {workload}'s cluster security group admits nothing on {API_PORT} from the control plane's nodes")
    hops.append(f"security group: {workload}'s cluster security group admits TCP {API_PORT} from the control plane's nodes")
    return hops


@pytest.fixture(scope="module")
def prod(renders: dict[str, Render]) -> Plan:
    return Plan(renders["prod"].plan)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_control_plane_has_a_path_to_each_private_workload_endpoint(prod: Plan, workload: str) -> None:
    assert [hop.split(":")[0] for hop in walk(prod, workload)] == [
        "ArgoCD and OpenUnison on control-plane call https", "DNS", "route out", "route back", "security group"]


@pytest.mark.parametrize(("missing", "hop"), [
    (lambda r: r["type"] == ROUTE and r["name"] == "control-plane-to-prod-forward", "route out"),
    (lambda r: r["type"] == ROUTE and r["name"] == "control-plane-to-prod-return-1", "route back"),
    (lambda r: r["type"] == RULE and r["name"].startswith("control-plane-to-prod-api"), "security group"),
    (lambda r: r["type"] == PEERING and r["name"] == "control-plane-to-prod", "peering"),
])
def test_the_walker_names_the_first_hop_without_a_resource(prod: Plan, missing, hop: str) -> None:
    plan = copy.copy(prod.plan)
    plan["resources"] = [r for r in prod.resources if not missing(r)]
    with pytest.raises(NoPath, match=f"^{hop}"):
        walk(Plan(plan), "prod")


def test_a_launch_template_with_security_groups_of_its_own_breaks_the_security_group_hop(prod: Plan) -> None:
    # EKS then leaves the cluster security group off the nodes, which the workload's rule admits.
    plan = copy.deepcopy(prod.plan)
    template = next(r for r in plan["resources"] if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate" and r["name"].startswith("control-plane-"))
    template["inputs"]["vpcSecurityGroupIds"] = ["sg-0123456789abcdef0"]
    with pytest.raises(NoPath, match="^security group: the control plane's nodes do not carry"):
        walk(Plan(plan), "prod")


def test_a_public_workload_endpoint_breaks_the_dns_hop(prod: Plan) -> None:
    plan = copy.deepcopy(prod.plan)
    next(r for r in plan["resources"] if r["name"] == "prod" and r["type"] == "aws:eks/cluster:Cluster")["inputs"]["vpcConfig"]["endpointPublicAccess"] = True
    with pytest.raises(NoPath, match="^DNS"):
        walk(Plan(plan), "prod")


def test_nothing_is_opened_wider_than_the_api_port_from_the_control_plane(prod: Plan) -> None:
    source_sg = prod.output(prod.one("aws:eks/cluster:Cluster", "control-plane"), "vpcConfig")["clusterSecurityGroupId"]
    workload_sgs = {prod.output(prod.one("aws:eks/cluster:Cluster", w), "vpcConfig")["clusterSecurityGroupId"] for w in WORKLOADS}
    rules = prod.of_type(RULE)
    # Besides the API rules, only the data stores' own groups (tests/test_data_stores.py): PostgreSQL
    # and Redis in the control plane's VPC, from its nodes; Dragonfly's in each workload VPC, from its nodes.
    owners = {"data-stores": "control-plane", **{f"{w}-dragonfly-stores": w for w in WORKLOADS}}
    nodes = {o: prod.output(prod.one("aws:eks/cluster:Cluster", o), "vpcConfig")["clusterSecurityGroupId"] for o in owners.values()}
    stores = {prod.output(g, "id"): g["name"] for g in prod.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert sorted(stores.values()) == sorted(f"{prefix}-{store}" for prefix in owners for store in ("postgres", "redis"))
    api = [r for r in rules if r["inputs"]["securityGroupId"] not in stores]
    assert {r["inputs"]["securityGroupId"] for r in api} == workload_sgs
    for rule in api:
        assert (rule["inputs"]["ipProtocol"], rule["inputs"]["fromPort"], rule["inputs"]["toPort"]) == ("tcp", API_PORT, API_PORT)
    assert sorted(r["inputs"]["fromPort"] for r in rules if r["inputs"]["securityGroupId"] in stores) == sorted([5432, 6379] * len(owners))
    for rule in rules:
        store = stores.get(rule["inputs"]["securityGroupId"])
        source = nodes[owners[store.rsplit("-", 1)[0]]] if store else source_sg
        assert rule["inputs"]["referencedSecurityGroupId"] == source and "cidrIpv4" not in rule["inputs"]
    # No other kind of rule anywhere.
    assert not [r for r in prod.resources if r["type"] in (
        "aws:ec2/securityGroupRule:SecurityGroupRule", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]


def test_dev_and_prod_never_reach_each_other(prod: Plan) -> None:
    """Hub and spoke: two peerings, both from the control plane, and only the peer's VPC routed into each."""
    vpcs = {r["name"].removesuffix("-vpc"): prod.output(r, "id") for r in prod.of_type("aws:ec2/vpc:Vpc")}
    cidrs = {r["name"].removesuffix("-vpc"): r["inputs"]["cidrBlock"] for r in prod.of_type("aws:ec2/vpc:Vpc")}
    peerings = {p["name"]: (p["inputs"]["vpcId"], p["inputs"]["peerVpcId"]) for p in prod.of_type(PEERING)}
    assert peerings == {f"control-plane-to-{w}": (vpcs["control-plane"], vpcs[w]) for w in WORKLOADS}
    for route in prod.of_type(ROUTE):
        if "vpcPeeringConnectionId" not in route["inputs"]:
            assert route["inputs"]["destinationCidrBlock"] == "0.0.0.0/0"  # the gateways' default routes
            continue
        owner = prod.by_urn[prod.by_id[route["inputs"]["routeTableId"]]["parent"]]["name"]  # the cluster whose table it is
        peering = prod.by_id[route["inputs"]["vpcPeeringConnectionId"]]["name"].removeprefix("control-plane-to-")
        expected = cidrs[peering] if owner == "control-plane" else cidrs["control-plane"]
        assert owner in ("control-plane", peering) and route["inputs"]["destinationCidrBlock"] == expected, route["name"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_workload_resource_waits_for_the_path(prod: Plan, workload: str) -> None:
    """The workload's Kubernetes provider depends on every route and rule, and they on the accepted peering:
    run from the control plane's network, nothing talks to the private endpoint before the path exists."""
    connection = prod.one("platform:network:ApiConnection", f"control-plane-to-{workload}")
    path = [r for r in prod.resources if r["parent"] == connection["urn"] and r["type"] in (ROUTE, RULE)]
    # Out from each of the control plane's 3 zones, back to its public table and each of its 3 zones', the rule.
    assert {r["type"] for r in path} == {ROUTE, RULE} and len(path) == 3 + 4 + 1
    peering = prod.one(PEERING, f"control-plane-to-{workload}")
    assert all(peering["urn"] in r["dependsOn"] for r in path)
    provider = prod.one("pulumi:providers:kubernetes", f"{workload}-k8s")
    assert {r["urn"] for r in path} <= set(provider["dependsOn"])
    assert prod.by_urn[connection["parent"]]["name"] == workload  # a part of the workload cluster's component


def _two_regions() -> None:
    def cluster(role: str, region: str, cidr: str, reached_from=None) -> EksCluster:
        return EksCluster(role, EksClusterArgs(
            role=role, region=region, kubernetes_version="1.33", admin_principal_arns=["arn:aws:iam::123456789012:role/a"],
            node_groups=[NodeGroupArgs("general", ["m7i.large"], 1, 2, 1)], vpc_cidr=cidr,
            availability_zones=[f"{region}a", f"{region}b"], reached_from=reached_from))

    hub = cluster("control-plane", "eu-west-1", "10.40.0.0/16")
    cluster("prod", "eu-central-1", "10.42.0.0/16", reached_from=hub.handle.network)


def test_across_regions_the_peer_accepts_and_the_rule_names_the_node_subnets() -> None:
    """Security-group references do not cross regions: the rule admits the control plane's private subnets."""
    run = run_program(_two_regions)
    plan = Plan(run.plan)
    peering = plan.one(PEERING, "control-plane-to-prod")
    assert peering["inputs"]["peerRegion"] == "eu-central-1" and "autoAccept" not in peering["inputs"]
    accepter = plan.one(ACCEPTER, "control-plane-to-prod")
    assert accepter["inputs"]["autoAccept"] and accepter["inputs"]["vpcPeeringConnectionId"] == plan.output(peering, "id")
    providers = {r["urn"]: r["inputs"].get("region") for r in plan.of_type("pulumi:providers:aws")}
    assert providers[accepter["provider"]] == "eu-central-1" and providers[peering["provider"]] == "eu-west-1"
    rules = plan.of_type(RULE)
    assert sorted(r["inputs"]["cidrIpv4"] for r in rules) == ["10.40.128.0/18", "10.40.192.0/18"]  # the private subnets
    assert all((r["inputs"]["fromPort"], r["inputs"]["toPort"], r["inputs"]["ipProtocol"]) == (443, 443, "tcp") for r in rules)
    peered_routes = [r for r in plan.of_type(ROUTE) if "vpcPeeringConnectionId" in r["inputs"]]
    # Out from each zone; back to the public table and each zone's.
    assert len(peered_routes) == 2 + 3 and all(accepter["urn"] in r["dependsOn"] for r in [*rules, *peered_routes])


def test_kubeconfig_clusters_get_no_network_of_the_programs(renders: dict[str, Render]) -> None:
    """The dev stack's clusters are reached at the servers its config declares: nothing AWS is declared."""
    assert not [r["name"] for r in renders["dev"].plan["resources"] if r["type"].startswith("aws:") or r["type"] == "platform:network:ApiConnection"]
