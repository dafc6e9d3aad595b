"""The private path from the control plane's VPC to a workload cluster's API endpoint (EKS).

One VPC peering per workload cluster, hub and spoke from the control plane: three VPCs and two
connections need no Transit Gateway (hourly per attachment, per GB processed), and peering is
not transitive, so dev and prod never reach each other. With more workload clusters or
accounts, a Transit Gateway would replace the peerings.

The endpoints are private only (stacks/config.py refuses a public one behind an EKS control
plane), so EKS publishes their private addresses under the endpoint's public DNS name: the
control plane resolves them with its own VPC resolver, no Route 53 resolver or peering DNS
option needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from policy.labels import managed_by

API_PORT = 443  # the EKS API server, public or private


@dataclass(frozen=True)
class VpcNetwork:
    """A VPC the program created for an EKS cluster: what a connection to it needs."""

    vpc_id: pulumi.Output[str]
    cidr: str
    region: str
    provider: aws.Provider
    route_tables: tuple[aws.ec2.RouteTable, ...]  # every table of its subnets (the API endpoint's ENIs may sit in any)
    node_route_tables: tuple[aws.ec2.RouteTable, ...]  # the private subnets', where the nodes run
    node_cidrs: tuple[str, ...]  # the private subnets
    # EKS's cluster security group: on the API endpoint's ENIs and on every managed node.
    cluster_security_group_id: pulumi.Output[str]
    private_subnet_ids: tuple[pulumi.Output[str], ...] = ()  # where the nodes, RDS and ElastiCache run
    public_subnet_ids: tuple[pulumi.Output[str], ...] = ()  # where internet-facing load balancers run
    egress_addresses: tuple[pulumi.Output[str], ...] = ()  # its NAT gateways' public addresses: what others allow in


@dataclass(frozen=True)
class ApiConnectionArgs:
    source: VpcNetwork  # the control plane's
    target: VpcNetwork  # the workload cluster's
    target_name: str


class ApiConnection(pulumi.ComponentResource):
    """Peering, routes both ways and one rule: the source's nodes reach the target's API on 443."""

    peering: aws.ec2.VpcPeeringConnection
    ready: list[pulumi.Resource]  # what must exist before anything uses the path

    def __init__(self, name: str, args: ApiConnectionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:network:ApiConnection", name, None, opts)
        source, target = args.source, args.target
        same_region = source.region == target.region
        tags = {**managed_by(), "Name": f"control-plane-to-{args.target_name}"}
        self.peering = aws.ec2.VpcPeeringConnection(
            name,
            vpc_id=source.vpc_id,
            peer_vpc_id=target.vpc_id,
            # One account: the requester accepts in its own region; across regions the peer's side does.
            auto_accept=True if same_region else None,
            peer_region=None if same_region else target.region,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, provider=source.provider),
        )
        accepted: pulumi.Resource = self.peering
        if not same_region:
            accepted = aws.ec2.VpcPeeringConnectionAccepter(
                name,
                vpc_peering_connection_id=self.peering.id,
                auto_accept=True,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, provider=target.provider),
            )
        after = pulumi.ResourceOptions(parent=self, depends_on=[accepted])
        self.ready = [
            # The first keeps its name from when there was one table: AWS refuses a second route to a CIDR in a table.
            *(
                self._route(f"{name}-forward{f'-{index}' if index else ''}", table, target.cidr, source.provider, after)
                for index, table in enumerate(source.node_route_tables)
            ),
            *(
                self._route(f"{name}-return-{index}", table, source.cidr, target.provider, after)
                for index, table in enumerate(target.route_tables)
            ),
            *self._api_rules(name, source, target, same_region, after),
        ]
        self.register_outputs({"peeringId": self.peering.id})

    def _route(
        self, name: str, table: aws.ec2.RouteTable, cidr: str, provider: aws.Provider, opts: pulumi.ResourceOptions
    ) -> aws.ec2.Route:
        return aws.ec2.Route(
            name,
            route_table_id=table.id,
            destination_cidr_block=cidr,
            vpc_peering_connection_id=self.peering.id,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider)),
        )

    @staticmethod
    def _api_rules(
        name: str, source: VpcNetwork, target: VpcNetwork, same_region: bool, opts: pulumi.ResourceOptions
    ) -> list[aws.vpc.SecurityGroupIngressRule]:
        """TCP 443 into the target's cluster security group from the source's nodes only.

        Security-group references cross a peering within one region only; across regions the
        rule names the source's private subnets, where its nodes run.
        """
        sources: list[dict[str, object]] = (
            [{"referenced_security_group_id": source.cluster_security_group_id}]
            if same_region
            else [{"cidr_ipv4": cidr} for cidr in source.node_cidrs]
        )
        return [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-{index}",
                security_group_id=target.cluster_security_group_id,
                ip_protocol="tcp",
                from_port=API_PORT,
                to_port=API_PORT,
                description="the control plane's nodes (ArgoCD, OpenUnison, Pulumi) to the API server",
                tags=managed_by(),
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=target.provider)),
                **peer,
            )
            for index, peer in enumerate(sources)
        ]
