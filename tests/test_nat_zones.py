"""Egress on EKS survives a zone: each zone's private subnets leave through a NAT gateway in their own zone.

A NAT gateway lives in one zone (AWS VPC user guide, "NAT gateways": "create a NAT gateway in each
Availability Zone ... so that if one zone goes down, resources in the other zones keep internet access").
With one for the VPC, a zone's outage cut every node's egress: image pulls from outside Harbor's cache, AWS
APIs without an endpoint (STS for IRSA, EC2 for the autoscaler), ACME. `eks.vpc.natGateways: single`
keeps one, for a cheaper dev. Their addresses are what third parties allow in: protected with the stack.
"""

from __future__ import annotations

import pytest

from components.cluster import EksCluster, EksClusterArgs, NatGateways, NodeGroupArgs
from platformctl.render import Render
from tests.mock_program import run_program
from tests.test_network import Plan

NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
CLUSTERS = ("control-plane", "dev", "prod")


def egress_zones(plan: Plan, cluster: str) -> dict[str, str]:
    """Each private subnet's zone -> the zone of the NAT gateway its route table's default route names."""
    subnets = [s for s in plan.of_type(SUBNET) if s["name"].startswith(f"{cluster}-private-")]
    assert subnets, cluster
    egress = {}
    for subnet in subnets:
        [table] = plan.tables_of([plan.output(subnet, "id")])
        [default] = plan.of_type(ROUTE, routeTableId=plan.output(table, "id"), destinationCidrBlock="0.0.0.0/0")
        nat = plan.by_id[default["inputs"]["natGatewayId"]]
        nat_subnet = plan.by_id[nat["inputs"]["subnetId"]]
        assert nat_subnet["name"].startswith(f"{cluster}-public-"), nat["name"]  # it reaches the internet gateway
        egress[subnet["inputs"]["availabilityZone"]] = nat_subnet["inputs"]["availabilityZone"]
    return egress


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_each_zone_leaves_through_its_own_nat_gateway(renders: dict[str, Render], cluster: str) -> None:
    plan = Plan(renders["prod"].plan)
    egress = egress_zones(plan, cluster)
    assert len(egress) == 3 and egress == {zone: zone for zone in egress}, egress
    nats = [n for n in plan.of_type(NAT) if plan.by_urn[n["parent"]]["name"] == cluster]
    eips = {n["inputs"]["allocationId"] for n in nats}
    assert len(nats) == 3 and len(eips) == 3  # an address of its own each
    # Each zone's address in the stack's outputs, for partners' allowlists.
    addresses = [plan.output(plan.by_id[allocation], "publicIp") for allocation in sorted(eips)]
    assert sorted(plan.plan["outputs"]["clusters"][cluster]["egressAddresses"]) == sorted(addresses)


def test_the_egress_addresses_are_protected_on_prod(renders: dict[str, Render]) -> None:
    """Partners allow these addresses in, and the ingress ones are in every client's egress policy: a replaced EIP
    is a new address, so `pulumi destroy` or a rename must not free them silently."""
    plan = Plan(renders["prod"].plan)
    eips = plan.of_type(EIP)
    assert len(eips) >= 9 and all(e["options"]["protect"] for e in eips), [e["name"] for e in eips if not e["options"]["protect"]]


def _one_vpc(nat_gateways: NatGateways) -> None:
    EksCluster("dev", EksClusterArgs(
        role="dev", region="eu-west-1", kubernetes_version="1.33", admin_principal_arns=["arn:aws:iam::123456789012:role/a"],
        node_groups=[NodeGroupArgs("general", ["m7i.large"], 1, 3, 1)], vpc_cidr="10.41.0.0/16",
        availability_zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"], nat_gateways=nat_gateways))


def test_single_keeps_one_nat_gateway_for_the_vpc() -> None:
    plan = Plan(run_program(lambda: _one_vpc(NatGateways.SINGLE)).plan)
    assert egress_zones(plan, "dev") == {f"eu-west-1{z}": "eu-west-1a" for z in "abc"}
    assert [n["name"] for n in plan.of_type(NAT)] == ["dev-nat"] and not plan.of_type(EIP)[0]["options"]["protect"]


def test_the_first_zone_keeps_the_single_gateways_names() -> None:
    """A VPC made with one NAT gateway keeps it, its address and its table when it moves to one per zone:
    a renamed EIP would be a new address, a renamed route table a moment without egress."""
    names = {kind: lambda plan, kind=kind: {r["name"] for r in plan.of_type(kind)} for kind in (NAT, EIP, ROUTE)}
    single = Plan(run_program(lambda: _one_vpc(NatGateways.SINGLE)).plan)
    zonal = Plan(run_program(lambda: _one_vpc(NatGateways.PER_ZONE)).plan)
    for kind, of in names.items():
        assert of(single) < of(zonal), kind
    assert {r["name"] for r in zonal.of_type("aws:ec2/routeTable:RouteTable")} >= {"dev-private", "dev-public"}

