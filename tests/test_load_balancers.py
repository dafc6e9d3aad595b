"""What implements `LoadBalancer` Services: the AWS Load Balancer Controller on every EKS cluster
(prod), MetalLB with the configured pools on kubeconfig clusters (dev)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import aws_load_balancer_controller as lbc
from components import metallb
from components.aws import web_identity_trust
from components.cluster import ApiServer, ClusterHandle
from components.inventory import CredentialInventory
from components.service import ClusterParts, ServiceSettings
from platformctl.render import Render, read_stack_file
from stacks.config import ConfigError, load_platform_config
from stacks.platform import CLUSTER_NAMES
from stacks.services import PLATFORM_NAMESPACES
from tests.test_network import Plan
from tests.validation import custom_resource_errors

ROOT = Path(__file__).resolve().parent.parent
RELEASE = "kubernetes:helm.sh/v3:Release"
CLUSTERS = tuple(CLUSTER_NAMES.values())


def _release(plan: dict[str, Any], name: str) -> dict[str, Any]:
    found = [r for r in plan["resources"] if r["type"] == RELEASE and r["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _rendered(release: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in release.get("rendered", []) if o["kind"] == kind]


@pytest.fixture(scope="module")
def prod(renders: dict[str, Render]) -> Plan:
    return Plan(renders["prod"].plan)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_each_eks_cluster_runs_the_controller_as_its_own_iam_role(prod: Plan, cluster: str) -> None:
    release = _release(prod.plan, f"{cluster}-aws-load-balancer-controller")
    values = release["inputs"]["values"]
    eks = prod.one("aws:eks/cluster:Cluster", cluster)
    assert release["cluster"] == cluster and release["inputs"]["namespace"] == lbc.NAMESPACE
    assert (values["clusterName"], values["region"]) == (prod.output(eks, "name"), "eu-west-1")
    assert values["vpcId"] == prod.output(prod.one("aws:ec2/vpc:Vpc", f"{cluster}-vpc"), "id")
    role = prod.one("aws:iam/role:Role", f"{cluster}-aws-load-balancer-controller")
    assert values["serviceAccount"] == {"name": lbc.SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": prod.output(role, "arn")}}
    # The role trusts exactly that service account of that cluster's issuer, through the one trust builder.
    oidc = prod.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider", f"{cluster}-oidc")
    issuer = prod.output(eks, "identities")[0]["oidcs"][0]["issuer"]
    subject = f"system:serviceaccount:{lbc.NAMESPACE}:{lbc.SERVICE_ACCOUNT}"
    assert json.loads(role["inputs"]["assumeRolePolicy"]) == web_identity_trust(
        prod.output(oidc, "arn"), issuer, {"sub": subject, "aud": "sts.amazonaws.com"})
    assert oidc["provider"] == role["provider"] == eks["provider"]  # the cluster's own account and region
    policies = prod.of_type("aws:iam/rolePolicy:RolePolicy", role=prod.output(role, "name"))
    # Upstream's document, and the Deny that keeps its security groups and load balancers in the cluster's VPC.
    subnets = [prod.output(s, "id") for s in prod.of_type("aws:ec2/subnet:Subnet", vpcId=values["vpcId"])]
    assert len(subnets) == 6
    assert [p["inputs"]["policy"] for p in policies] == [lbc.POLICY_FILE.read_text(), lbc.own_vpc_policy(values["vpcId"], subnets)]
    assert not prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment", role=prod.output(role, "name"))


def test_the_iam_policy_is_upstreams_pinned_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = json.loads(lbc.iam_policy())
    actions = {a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "elasticloadbalancing:CreateLoadBalancer" in actions and not any(a.endswith(":*") or a == "*" for a in actions)
    # Mutating calls on resources it did not create are conditioned on the controller's own tags.
    deletes = [s for s in document["Statement"] if "elasticloadbalancing:DeleteLoadBalancer" in s["Action"]]
    assert deletes and all("Condition" in s for s in deletes)
    tampered = tmp_path / "policy.json"
    tampered.write_text(lbc.POLICY_FILE.read_text().replace('"Effect": "Allow"', '"Effect":"Allow"', 1))
    monkeypatch.setattr(lbc, "POLICY_FILE", tampered)
    with pytest.raises(ValueError, match="not the pinned"):
        lbc.iam_policy()


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_rendered_controller_takes_the_role_and_serves_the_programs_webhook_certificate(
    charted: dict[str, Render], cluster: str
) -> None:
    release = _release(charted["prod"].plan, f"{cluster}-aws-load-balancer-controller")
    (account,) = _rendered(release, "ServiceAccount")
    (deployment,) = _rendered(release, "Deployment")
    values = release["inputs"]["values"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == lbc.SERVICE_ACCOUNT
    assert deployment["spec"]["replicas"] == 2 and _rendered(release, "PodDisruptionBudget")
    ca = base64.b64encode(values["webhookTLS"]["caCert"].encode()).decode()
    webhooks = [w for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration") for o in _rendered(release, kind) for w in o["webhooks"]]
    assert webhooks and {w["clientConfig"]["caBundle"] for w in webhooks} == {ca}
    # Its Service webhook makes it the implementation of every LoadBalancer Service; no alb IngressClass.
    assert "mservice.elbv2.k8s.aws" in {w["name"] for w in webhooks} and not _rendered(release, "IngressClass")
    assert values["webhookTLS"]["key"] == "[secret]" and release["secretPaths"] == ["values.webhookTLS.key"]


def test_every_controller_credential_is_in_the_inventory(prod: Plan) -> None:
    entries = prod.plan["outputs"]["credentials"]
    for cluster in CLUSTERS:
        name = f"{cluster}-aws-load-balancer-controller"
        irsa = [e for e in entries if name in e.get("resources", []) and e["category"] == "federated"]
        webhook = [e for e in entries if f"{name}-webhook" in e.get("resources", [])]
        assert len(irsa) == 1 and irsa[0]["lifetimeSeconds"] == 3600, cluster
        assert len(webhook) == 1 and webhook[0]["category"] == "issued" and webhook[0]["lifetimeSeconds"] == 90 * 86400
    certificate = prod.one("tls:index/selfSignedCert:SelfSignedCert", "prod-aws-load-balancer-controller-webhook")
    assert (certificate["inputs"]["validityPeriodHours"], certificate["inputs"]["earlyRenewalHours"]) == (90 * 24, 45 * 24)


# --- MetalLB (dev: kind clusters) ---------------------------------------------------------------


def _dev_pools() -> dict[str, list[str]]:
    return yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["platform:services"]["metallb"]["addresses"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_each_kubeconfig_cluster_gets_metallb_with_its_pool(renders: dict[str, Render], cluster: str) -> None:
    plan = renders["dev"].plan
    release = _release(plan, f"{cluster}-metallb")
    assert release["cluster"] == cluster and release["inputs"]["namespace"] == metallb.NAMESPACE
    assert release["inputs"]["values"]["frrk8s"] == {"enabled": False}
    objects = {r["inputs"]["kind"]: r for r in plan["resources"] if r.get("cluster") == cluster and r["inputs"].get("apiVersion") == metallb.API}
    pool, advertisement = objects["IPAddressPool"], objects["L2Advertisement"]
    key = {"control-plane": "controlPlane"}.get(cluster, cluster)
    assert pool["inputs"]["spec"] == {"addresses": _dev_pools()[key]}
    assert advertisement["inputs"]["spec"] == {"ipAddressPools": [pool["inputs"]["metadata"]["name"]]}
    assert release["urn"] in pool["dependsOn"] and pool["urn"] in advertisement["dependsOn"]
    assert custom_resource_errors(pool["inputs"]) == [] and custom_resource_errors(advertisement["inputs"]) == []
    assert not [r for r in plan["resources"] if r["type"] == RELEASE and "aws-load-balancer" in r["name"]]


def test_the_speakers_host_network_and_net_raw_are_exempt_in_one_place(charted: dict[str, Render]) -> None:
    release = _release(charted["dev"].plan, "dev-metallb")
    (speaker,) = [d for d in _rendered(release, "DaemonSet") if d["metadata"]["name"] == "metallb-speaker"]
    spec = speaker["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert "NET_RAW" in next(c for c in spec["containers"] if c["name"] == "speaker")["securityContext"]["capabilities"]["add"]
    (exemption,) = [n for n in PLATFORM_NAMESPACES if n.name == metallb.NAMESPACE]
    assert "host network" in exemption.reason and "NET_RAW" in exemption.reason and exemption.webhook_exempt
    namespace = next(r for r in charted["dev"].plan["resources"] if r["name"] == f"dev-{metallb.NAMESPACE}")
    assert namespace["inputs"]["metadata"]["labels"]["admission.gatekeeper.sh/ignore"] == "platform-namespace"


def _parts(is_eks: bool) -> ClusterParts:
    handle = ClusterHandle(role="dev", provider=None, endpoint=None, ca_data=None, kubernetes_version="1.33",
                           api_server=ApiServer("10.0.0.1/32", 6443), is_eks=is_eks)  # type: ignore[arg-type]
    return ClusterParts(handle, "example.com", False, PLATFORM_NAMESPACES, CredentialInventory())


def test_without_a_pool_or_on_eks_no_metallb_and_off_eks_no_aws_controller() -> None:
    """A kind cluster without a pool uses cloud-provider-kind (README); nothing is declared for it."""
    assert metallb.on_cluster(_parts(False), ServiceSettings(options={"addresses": {"prod": ["10.0.0.0/28"]}})) is None
    assert metallb.on_cluster(_parts(True), ServiceSettings(options={"addresses": {"dev": ["10.0.0.0/28"]}})) is None
    assert lbc.on_cluster(_parts(False), ServiceSettings()) is None


def _load(addresses: Any) -> Any:
    raw, secret_keys = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["platform:services"] = json.dumps({**json.loads(raw["platform:services"]), "metallb": {"addresses": addresses}})
    return load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secret_keys)


@pytest.mark.parametrize(("addresses", "key", "words"), [
    ({"dev": ["172.18.255.300-172.18.255.310"]}, "platform:services.metallb.addresses.dev[0]", "a CIDR such as"),
    ({"dev": ["172.18.255.220-172.18.255.210"]}, "platform:services.metallb.addresses.dev[0]", "from the lower address"),
    ({"dev": ["172.18.255.1/24"]}, "platform:services.metallb.addresses.dev[0]", "a CIDR such as"),
    ({"dev": []}, "platform:services.metallb.addresses.dev", "at least 1"),
    ({"staging": ["172.18.255.0/28"]}, "platform:services.metallb.addresses", "controlPlane"),
    ({"dev": ["172.18.255.0/28"], "prod": ["172.18.255.10-172.18.255.20"]}, "platform:services.metallb.addresses", "overlaps"),
])
def test_a_bad_pool_is_refused_naming_the_key(addresses: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(addresses)
    lines = [line for line in str(raised.value).splitlines() if key in line]
    assert lines and words in lines[0], str(raised.value)


def test_good_pools_are_accepted() -> None:
    config = _load({"dev": ["172.18.255.0/28", "fd00::10-fd00::20"], "prod": ["172.18.255.16-172.18.255.31"]})
    assert config.services.settings("metallb").options["addresses"]["prod"] == ["172.18.255.16-172.18.255.31"]
