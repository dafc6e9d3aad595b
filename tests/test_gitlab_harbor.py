"""GitLab and Harbor components under the mock engine.

Each test program builds a kubeconfig cluster handle and one component, on a plain cluster
or with EKS workload identity, and runs through `platformctl`'s recording monitor, so the
records have the plan.json shape (secrets redacted). Values are checked against the charts'
pinned defaults; the admin-token shell step runs for real against a fake `kubectl`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any, Callable

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml

from components import gitlab as gitlab_component
from components import harbor as harbor_component
from components.aws import AwsWorkloadIdentity
from components.common import Exposure, OidcClient, PlatformGroups
from components.data_stores import DataStores, DataStoresArgs
from components.ingress import NAMESPACE as INGRESS_NAMESPACE
from components.service import ObjectStoreTarget, ServiceSettings
from components.versions import CHARTS, GITLAB_KUBECTL_DIGEST, GITLAB_KUBECTL_TAG
from platformctl.mocks import REDACTED, SECRET_MARK, is_redacted
from tests.mock_program import control_plane_cluster, run_program
from tests.test_openunison import traefik_ingress_route_crd
from tests.validation import crd_errors, custom_resource_errors, is_custom_resource, kubernetes_errors, schema_errors, unknown_value_paths

DOMAIN = "platform.example.com"
ISSUER = f"https://login.{DOMAIN}/auth/idp/k8sIdp"
CA_PEM = "-----BEGIN CERTIFICATE-----\nplatform-ca\n-----END CERTIFICATE-----\n"
OIDC_SECRET = f"{SECRET_MARK}oidc-client-secret"
OBJECT_STORE = ObjectStoreTarget(
    endpoint="https://minio.example.com", region="us-east-1", bucket="platform", access_key_id="platform",
    secret_access_key=pulumi.Output.secret(f"{SECRET_MARK}object-store-key"),
)


# --- running a small program under the mock engine ----------------------------------------


def run(build: Callable[[], None]) -> list[dict[str, Any]]:
    """Run `build` under the mock engine; the plan's resources, each also with its inputs with
    secrets revealed under "raw" (test-only: never part of a plan)."""
    program = run_program(build)
    return [{**record, "raw": program.raw.get(record["urn"], record["inputs"])} for record in program.resources]


def _shared(service: str, eks: bool) -> dict[str, Any]:
    cluster = control_plane_cluster(base64.b64encode(CA_PEM.encode()).decode())
    cert_manager = k8s.core.v1.Namespace(
        "cert-manager-stand-in", metadata={"name": "cert-manager"}, opts=pulumi.ResourceOptions(provider=cluster.provider)
    )
    identity = None
    if eks:
        provider = aws.Provider("control-plane-aws", region="eu-west-1")
        identity = AwsWorkloadIdentity(
            provider=provider,
            oidc_provider_arn=pulumi.Output.from_input(
                "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
            ),
            oidc_issuer_url=pulumi.Output.from_input("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
            region="eu-west-1",
        )
    return {
        "cluster": cluster,
        "exposure": Exposure(
            hostname=f"{service}.{DOMAIN}",
            cluster_issuer="platform-ca",
            ca_bundle=pulumi.Output.from_input(CA_PEM),
        ),
        "oidc": OidcClient(client_id=service, client_secret=pulumi.Output.secret(OIDC_SECRET), issuer_url=ISSUER),
        "groups": PlatformGroups(cluster_admins=["platform-admins"], system_approvers=["platform-approvers"]),
        "cert_manager": cert_manager,
        "aws": identity,
        # A kubeconfig cluster handle either way: CloudNativePG and Valkey (the managed stores are
        # checked on the prod plan, tests/test_data_stores.py).
        "data_stores": DataStores("data-stores", cluster, DataStoresArgs(
            protect=False, settings=ServiceSettings(replicas=3, storage="10Gi"), backup_retention_days=7, instance_class="db.m7g.large",
            node_type="cache.m7g.large", object_store=OBJECT_STORE,
        )),
    }


def gitlab_plan(eks: bool, protect: bool) -> list[dict[str, Any]]:
    def build() -> None:
        s = _shared("gitlab", eks)
        gitlab_component.GitLab(
            "control-plane-gitlab",
            s["cluster"],
            gitlab_component.GitLabArgs(
                exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
                protect=protect, replicas=2, storage="80Gi", aws=s["aws"], data_stores=s["data_stores"],
            ),
        )

    return run(build)


def harbor_plan(eks: bool, protect: bool) -> list[dict[str, Any]]:
    def build() -> None:
        s = _shared("harbor", eks)
        harbor_component.Harbor(
            "control-plane-harbor",
            s["cluster"],
            harbor_component.HarborArgs(
                exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
                protect=protect, replicas=2, storage="200Gi", aws=s["aws"], data_stores=s["data_stores"],
            ),
        )

    return run(build)


# What the test programs declare beside the component, in namespaces of their own.
STAND_INS = ("cert-manager-stand-in", "control-plane-cnpg-system", "control-plane-cnpg", "data-stores-webhook-only")
VARIANTS = {"plain": (False, False), "eks": (True, True)}  # (eks, protect): a kind-like dev, an EKS prod
BUILDERS = {"gitlab": gitlab_plan, "harbor": harbor_plan}


@functools.lru_cache(maxsize=None)
def cached_plan(service: str, variant: str) -> tuple[bool, list[dict[str, Any]]]:
    eks, protect = VARIANTS[variant]
    return eks, BUILDERS[service](eks, protect)


@pytest.fixture(params=sorted(VARIANTS))
def gitlab(request: pytest.FixtureRequest) -> tuple[bool, list[dict[str, Any]]]:
    return cached_plan("gitlab", request.param)


@pytest.fixture(params=sorted(VARIANTS))
def harbor(request: pytest.FixtureRequest) -> tuple[bool, list[dict[str, Any]]]:
    return cached_plan("harbor", request.param)


@pytest.fixture(params=[(s, v) for s in sorted(BUILDERS) for v in sorted(VARIANTS)], ids=lambda p: f"{p[0]}-{p[1]}")
def either(request: pytest.FixtureRequest) -> tuple[str, bool, list[dict[str, Any]]]:
    """Each component on each kind of cluster: (service, eks, records)."""
    service, variant = request.param
    return (service, *cached_plan(service, variant))


# --- plan helpers ---------------------------------------------------------------------------


def one(records: list[dict[str, Any]], typ: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in records if r["type"] == typ and (name is None or r["name"] == name)]
    assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r['name'] for r in found]}"
    return found[0]


def all_of(records: list[dict[str, Any]], typ: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == typ]


def k8s_object(records: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in records if r["type"].startswith("kubernetes:") and r["inputs"].get("kind") == kind
             and r["inputs"]["metadata"].get("name") == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def values_of(records: list[dict[str, Any]], release: str) -> dict[str, Any]:
    return one(records, "kubernetes:helm.sh/v3:Release", f"control-plane-{release}")["inputs"]["values"]


def is_read(record: dict[str, Any]) -> bool:
    return set(record["inputs"]) == {"id"}


def string_data(record: dict[str, Any]) -> dict[str, str]:
    """A Secret's stringData as the program built it (the plan redacts it whole)."""
    assert is_redacted(record["inputs"]["stringData"]) and "stringData" in record["secretPaths"]
    return record["raw"]["stringData"]


def generated_by(records: list[dict[str, Any]], value: str) -> dict[str, Any]:
    """The random/tls resource whose mock result is `value` (mock results derive from type and name)."""
    from platformctl.mocks import _digest

    for record in records:
        if record["type"].startswith(("random:", "tls:")) and value.endswith(_digest(record["type"], record["name"], length=24)):
            return record
    raise AssertionError(f"{value!r} is not a generated value")


def dig(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, node)]


# --- rules both components follow ---------------------------------------------------------------


INSECURE_KEY = re.compile(r"insecure|skip.?(tls.?)?verify|verify.?ssl", re.IGNORECASE)
INSECURE_TEXT = re.compile(r"--insecure|insecure-skip-tls-verify|insecureSkipVerify|tls_skip_verify", re.IGNORECASE)


def test_nothing_skips_tls_verification(either: Any) -> None:
    service, _, records = either
    for record in records:
        for path, value in leaves(record["inputs"]):
            if INSECURE_KEY.search(path.rsplit(".", 1)[-1]):
                # pulumiverse-harbor defaults `insecure` to true: it must be present and false
                # (provider inputs reach the engine as JSON strings).
                assert value in (False, "false"), f"{record['name']}: {path} = {value!r}"
            assert not (isinstance(value, str) and INSECURE_TEXT.search(value)), f"{record['name']}: {path}"
    if service == "harbor":
        assert one(records, "pulumi:providers:harbor")["inputs"]["insecure"] == "false"
        assert one(records, "harbor:index/configAuth:ConfigAuth")["inputs"]["oidcVerifyCert"] is True


def test_generated_credentials_only_appear_redacted(either: Any) -> None:
    service, _, records = either
    text = json.dumps([{k: v for k, v in r.items() if k != "raw"} for r in records])
    # Mock random/tls results, the OIDC client secret and the token read back all carry SECRET_MARK.
    assert SECRET_MARK not in text
    assert all_of(records, "random:index/randomPassword:RandomPassword")
    secrets = [r for r in all_of(records, "kubernetes:core/v1:Secret") if not is_read(r)]
    generated = [v for r in secrets if "stringData" in r["raw"] for v in string_data(r).values() if SECRET_MARK in v]
    assert len(generated) >= (2 if service == "gitlab" else 9)


def test_namespaced_objects_wait_for_their_namespace(either: Any) -> None:
    service, _, records = either
    ns = one(records, "kubernetes:core/v1:Namespace", f"control-plane-{service}")
    objects = [r for r in records if r["type"].startswith("kubernetes:") and r["type"] != "kubernetes:core/v1:Namespace"
               and r["name"] not in STAND_INS and not is_read(r)]
    assert len(objects) > 5
    for record in objects:
        if record["inputs"].get("metadata", {}).get("namespace") == INGRESS_NAMESPACE:
            continue  # GitLab's routes, in Traefik's namespace: test_gitlab_is_routed_from_traefiks_namespace
        if record["inputs"].get("metadata", {}).get("namespace") == "cnpg-system":
            continue  # the stand-in operator's egress, to this service's instances among others (tests/test_data_store_egress_attacks.py)
        assert ns["urn"] in record["dependsOn"], record["name"]
        if "metadata" in record["inputs"]:
            assert record["inputs"]["metadata"].get("namespace") == service, record["name"]
        else:
            assert record["inputs"]["namespace"] == service


def test_builtin_objects_are_valid_kubernetes(either: Any) -> None:
    service, _, records = either
    checked = 0
    for record in records:
        if record["type"].startswith("kubernetes:") and "kind" in record["inputs"] and "Release" not in record["type"]:
            if record["inputs"]["kind"] == "IngressRoute":  # Traefik's, against the pinned chart's CRD
                assert crd_errors(record["raw"], traefik_ingress_route_crd()) == [], record["name"]
                continue
            check = custom_resource_errors if is_custom_resource(record["raw"]) else kubernetes_errors
            assert check(record["raw"]) == [], record["name"]
            checked += 1
    assert checked >= 4


def test_release_waits_for_its_secrets_and_cert_manager(either: Any) -> None:
    service, _, records = either
    rel = one(records, "kubernetes:helm.sh/v3:Release", f"control-plane-{service}")
    assert one(records, "kubernetes:core/v1:Namespace", "cert-manager-stand-in")["urn"] in rel["dependsOn"]
    for secret in all_of(records, "kubernetes:core/v1:Secret"):
        if secret["parent"] == rel["parent"]:  # the component's own, not the admin token holder
            assert secret["urn"] in rel["dependsOn"], secret["name"]


def test_stateful_things_are_protected_when_asked(either: Any) -> None:
    service, eks, records = either
    protect = eks  # the eks variant is the protected one
    assert one(records, "kubernetes:helm.sh/v3:Release", f"control-plane-{service}")["options"]["protect"] is protect
    buckets = all_of(records, "aws:s3/bucket:Bucket")
    assert bool(buckets) is eks
    for bucket in buckets:
        assert bucket["options"]["protect"] is True
        assert bucket["inputs"].get("forceDestroy") is False


def test_protect_follows_the_argument() -> None:
    for service in BUILDERS:
        records = BUILDERS[service](True, False)
        assert one(records, "kubernetes:helm.sh/v3:Release", f"control-plane-{service}")["options"]["protect"] is False
        assert all(b["options"]["protect"] is False for b in all_of(records, "aws:s3/bucket:Bucket"))


def test_buckets_are_private_and_encrypted(either: Any) -> None:
    service, eks, records = either
    if not eks:
        assert not [r for r in records if r["type"].startswith("aws:")]
        return
    for bucket in all_of(records, "aws:s3/bucket:Bucket"):
        name = bucket["name"]
        block = one(records, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)["inputs"]
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        sse = one(records, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name)
        assert sse["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        owner = one(records, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", name)
        assert owner["inputs"]["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        assert len(bucket["inputs"]["bucket"]) <= 63


def _trust_subject(records: list[dict[str, Any]], role_name: str) -> str:
    policy = json.loads(one(records, "aws:iam/role:Role", role_name)["inputs"]["assumeRolePolicy"])
    (statement,) = policy["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = statement["Condition"]["StringEquals"]
    assert conditions["oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud"] == "sts.amazonaws.com"
    return conditions["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"]


# --- GitLab -------------------------------------------------------------------------------------


def test_gitlab_values_exist_upstream(gitlab: Any) -> None:
    values = values_of(gitlab[1], "gitlab")
    assert unknown_value_paths("gitlab", values) == []
    assert schema_errors("gitlab", values) == []


def test_gitlab_is_minimal_behind_the_platform_ingress(gitlab: Any) -> None:
    values = values_of(gitlab[1], "gitlab")
    assert values["installCertmanager"] is False
    assert dig(values, "global.ingress.configureCertmanager") is False  # also skips certmanager-issuer
    assert dig(values, "nginx-ingress.enabled") is False
    assert dig(values, "registry.enabled") is False and dig(values, "global.registry.enabled") is False
    assert dig(values, "prometheus.install") is False
    assert dig(values, "gitlab-runner.install") is False
    # No Ingress of the chart's (nor its self-signed wildcard certificate): the platform routes from Traefik's namespace.
    assert dig(values, "global.ingress.enabled") is False and dig(values, "global.ingress.tls.enabled") is False
    assert dig(values, "global.hosts.gitlab.name") == f"gitlab.{DOMAIN}"
    assert dig(values, "global.hosts.domain") == DOMAIN
    assert dig(values, "gitlab.webservice.minReplicas") == 2
    assert dig(values, "gitlab.gitaly.persistence.size") == "80Gi"


def traefik_route(records: list[dict[str, Any]], name: str, host: str) -> dict[str, Any]:
    """IngressRoute `name` in Traefik's namespace, on `host` with its certificate issued there: path -> backend Service."""
    route = k8s_object(records, "IngressRoute", name)
    spec = route["inputs"]["spec"]
    assert route["inputs"]["metadata"]["namespace"] == INGRESS_NAMESPACE
    certificate = k8s_object(records, "Certificate", spec["tls"]["secretName"])
    assert certificate["inputs"]["metadata"]["namespace"] == INGRESS_NAMESPACE and certificate["urn"] in route["dependsOn"]
    assert certificate["inputs"]["spec"]["dnsNames"] == [host] and certificate["inputs"]["spec"]["issuerRef"]["name"] == "platform-ca"
    paths = {}
    for rule in spec["routes"]:
        found = re.fullmatch(rf"Host\(`{re.escape(host)}`\) && PathPrefix\(`(/[^`]*)`\)", rule["match"])
        assert found and rule["kind"] == "Rule", rule["match"]
        [paths[found.group(1)]] = rule["services"]
        service = k8s_object(records, "Service", paths[found.group(1)]["name"])
        assert service["inputs"]["metadata"]["namespace"] == INGRESS_NAMESPACE and service["urn"] in route["dependsOn"]
        assert service["inputs"]["spec"]["type"] == "ExternalName"
        assert [p["port"] for p in service["inputs"]["spec"]["ports"]] == [paths[found.group(1)]["port"]]
    return paths


def test_gitlab_is_routed_from_traefiks_namespace(gitlab: Any) -> None:
    """`https://gitlab.<domain>/` goes to workhorse through an ExternalName Service beside the route, in Traefik's
    namespace, with the platform certificate issued there: Traefik never watches GitLab's namespace."""
    records = gitlab[1]
    assert traefik_route(records, "gitlab", f"gitlab.{DOMAIN}") == {"/": {"name": "gitlab-webservice-default", "port": 8181}}
    service = k8s_object(records, "Service", "gitlab-webservice-default")
    assert service["inputs"]["spec"]["externalName"] == "gitlab-webservice-default.gitlab.svc.cluster.local"


def test_gitlab_root_password_and_omniauth_come_from_secrets(gitlab: Any) -> None:
    records = gitlab[1]
    values = values_of(records, "gitlab")
    root = dig(values, "global.initialRootPassword")
    (password,) = string_data(k8s_object(records, "Secret", root["secret"])).items()
    assert password[0] == root["key"] and password[1].startswith(SECRET_MARK)  # a RandomPassword result
    omniauth = dig(values, "global.appConfig.omniauth")
    assert omniauth["enabled"] is True and omniauth["allowSingleSignOn"] == ["openid_connect"]
    assert omniauth["blockAutoCreatedUsers"] is False
    (provider,) = omniauth["providers"]
    document = string_data(k8s_object(records, "Secret", provider["secret"]))[provider["key"]]
    options = yaml.safe_load(document)["args"]["client_options"]
    assert options["secret"] == OIDC_SECRET and options["identifier"] == "gitlab"


def test_gitlab_webservice_restarts_when_its_omniauth_secret_changes(gitlab: Any) -> None:
    # GitLab reads OmniAuth providers at start only: a rotated OIDC client secret changes this
    # checksum of the provider document, and with it the webservice pods' template.
    records = gitlab[1]
    release = one(records, "kubernetes:helm.sh/v3:Release", "control-plane-gitlab")
    (provider,) = dig(release["inputs"]["values"], "global.appConfig.omniauth.providers")
    document = string_data(k8s_object(records, "Secret", provider["secret"]))[provider["key"]]
    assert OIDC_SECRET in document
    # A plain hash: one secret inside `values` would make the SDK send all of them as a secret.
    annotations = dig(release["inputs"]["values"], "gitlab.webservice.annotations")
    assert annotations["platform.io/omniauth-checksum"] == hashlib.sha256(document.encode()).hexdigest()
    assert release["secretPaths"] == []


def test_gitlab_trusts_the_platform_ca(gitlab: Any) -> None:
    records = gitlab[1]
    (ca,) = dig(values_of(records, "gitlab"), "global.certificates.customCAs")
    assert string_data(k8s_object(records, "Secret", ca["secret"])) == {"ca.crt": CA_PEM}
    assert ca["keys"] == ["ca.crt"]


def test_omniauth_provider_document() -> None:
    oidc = OidcClient(client_id="gitlab", client_secret=pulumi.Output.from_input("unused"), issuer_url=ISSUER)
    groups = PlatformGroups(cluster_admins=["platform-admins"], system_approvers=[])
    doc = yaml.safe_load(gitlab_component.omniauth_provider_document(oidc, f"gitlab.{DOMAIN}", groups, "s3cret"))
    assert doc["name"] == "openid_connect"
    args = doc["args"]
    assert args["issuer"] == ISSUER and args["discovery"] is True and args["response_type"] == "code"
    assert args["client_options"] == {
        "identifier": "gitlab",
        "secret": "s3cret",
        "redirect_uri": f"https://gitlab.{DOMAIN}/users/auth/openid_connect/callback",
    }
    assert args["gitlab"]["admin_groups"] == ["platform-admins"]
    assert gitlab_component.redirect_uri(f"gitlab.{DOMAIN}") == args["client_options"]["redirect_uri"]


def test_gitlab_objects_go_to_the_object_store_off_eks_never_to_minio(gitlab: Any) -> None:
    """Off EKS: platform:objectStore, a prefix per type under gitlab/, its key a Pulumi secret."""
    eks, records = gitlab
    values = values_of(records, "gitlab")
    app = dig(values, "global.appConfig")
    assert dig(values, "global.minio.enabled") is False and "minio" not in values
    assert app["object_store"]["enabled"] is True
    if eks:
        return
    assert "serviceAccount" not in values["global"]  # no workload identity: the key is in the connection
    assert {k: app[k]["bucket"] for k in ("lfs", "artifacts", "uploads", "packages")} == {
        k: f"platform/gitlab/{k}" for k in ("lfs", "artifacts", "uploads", "packages")}
    connection = app["object_store"]["connection"]
    secret = k8s_object(records, "Secret", connection["secret"])
    assert yaml.safe_load(string_data(secret)[connection["key"]]) == {  # string_data: redacted in the plan
        "provider": "AWS", "region": "us-east-1", "endpoint": "https://minio.example.com", "path_style": True,
        "aws_access_key_id": "platform", "aws_secret_access_key": f"{SECRET_MARK}object-store-key",
    }


def test_gitlab_object_storage_is_s3_with_workload_identity_on_eks(gitlab: Any) -> None:
    eks, records = gitlab
    if not eks:
        return
    values = values_of(records, "gitlab")
    app = dig(values, "global.appConfig")
    connection = app["object_store"]["connection"]
    secret = k8s_object(records, "Secret", connection["secret"])
    assert yaml.safe_load(string_data(secret)[connection["key"]]) == {
        "provider": "AWS", "region": "eu-west-1", "use_iam_profile": True,
    }
    buckets = {r["inputs"]["bucket"] for r in all_of(records, "aws:s3/bucket:Bucket")}
    assert {app[k]["bucket"] for k in ("lfs", "artifacts", "uploads", "packages")} == buckets
    # The role's account for the Rails tiers only (tests/test_aws_attacks.py: no other pod gets it).
    assert values["global"]["serviceAccount"] == {"enabled": False, "create": False}
    for tier in ("webservice", "sidekiq"):
        assert dig(values, f"gitlab.{tier}.serviceAccount") == {"enabled": True, "create": False, "name": "gitlab"}
    sa = k8s_object(records, "ServiceAccount", "gitlab")
    role = one(records, "aws:iam/role:Role", "control-plane-gitlab-object-storage")
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/control-plane-gitlab-object-storage-\w+",
                        sa["inputs"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    assert role["urn"] in sa["dependsOn"]
    assert _trust_subject(records, "control-plane-gitlab-object-storage") == "system:serviceaccount:gitlab:gitlab"
    policy = json.loads(one(records, "aws:iam/rolePolicy:RolePolicy", "control-plane-gitlab-object-storage")["inputs"]["policy"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{b}{suffix}" for b in buckets for suffix in ("", "/*")}


def test_gitlab_provider_uses_the_token_read_after_the_job(gitlab: Any) -> None:
    records = gitlab[1]
    provider = one(records, "pulumi:providers:gitlab")
    assert provider["inputs"]["baseUrl"] == f"https://gitlab.{DOMAIN}/api/v4/"
    assert provider["inputs"]["token"] == REDACTED and "token" in provider["secretPaths"]
    job = one(records, "kubernetes:batch/v1:Job")
    (read,) = [r for r in all_of(records, "kubernetes:core/v1:Secret") if is_read(r)]
    assert read["inputs"]["id"] == "gitlab/gitlab-platform-bot-token"
    assert job["urn"] in read["dependsOn"]
    assert job["urn"] in provider["dependsOn"]
    assert read["urn"] in provider["dependsOn"]  # through the token Output


def test_admin_token_job_waits_for_gitlab_and_its_permissions(gitlab: Any) -> None:
    records = gitlab[1]
    job = one(records, "kubernetes:batch/v1:Job")
    rel = one(records, "kubernetes:helm.sh/v3:Release", "control-plane-gitlab")
    needed = [rel, k8s_object(records, "Secret", "gitlab-platform-bot-token"),
              k8s_object(records, "ConfigMap", "gitlab-platform-bot-script"),
              k8s_object(records, "RoleBinding", "gitlab-platform-bot")]
    for record in needed:
        assert record["urn"] in job["dependsOn"], record["name"]
    cron = one(records, "kubernetes:batch/v1:CronJob")
    assert rel["urn"] in cron["dependsOn"]
    assert job["inputs"]["metadata"]["annotations"] == {"pulumi.com/replaceUnready": "true"}
    # The holder Secret is created empty and then belongs to the Job.
    holder = k8s_object(records, "Secret", "gitlab-platform-bot-token")
    assert "stringData" not in holder["raw"] and "data" not in holder["raw"]
    assert holder["options"]["ignoreChanges"] == ["data", "stringData"]


def test_admin_token_job_is_re_created_each_rotation(gitlab: Any) -> None:
    records = gitlab[1]
    rotation = one(records, "time:index/rotating:Rotating")
    assert rotation["inputs"]["rotationDays"] == gitlab_component.TOKEN_MIN_DAYS_LEFT
    assert gitlab_component.TOKEN_LIFETIME_DAYS == 2 * gitlab_component.TOKEN_MIN_DAYS_LEFT
    job = one(records, "kubernetes:batch/v1:Job")
    env = {e["name"]: e.get("value") for e in job["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The Rotating resource's creation time, in the Job's immutable pod template: a new epoch replaces the Job.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["ROTATION_EPOCH"] or "")
    assert rotation["urn"] in job["dependsOn"]


def test_admin_token_rbac_writes_one_secret_only(gitlab: Any) -> None:
    role = k8s_object(gitlab[1], "Role", "gitlab-platform-bot")["inputs"]
    assert role["rules"] == [
        # Its only write: the one Secret, which exists already (RBAC cannot limit "create" by name).
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["gitlab-platform-bot-token"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["gitlab-toolbox"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    ]
    binding = k8s_object(gitlab[1], "RoleBinding", "gitlab-platform-bot")["inputs"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gitlab-platform-bot", "namespace": "gitlab"}]
    pod = one(gitlab[1], "kubernetes:batch/v1:Job")["inputs"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gitlab-platform-bot"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_admin_token_image_is_pinned_to_the_charts_gitlab() -> None:
    image = gitlab_component.kubectl_image()
    assert "latest" not in image
    major, minor, patch = (int(p) for p in CHARTS["gitlab"].version.split("."))
    assert GITLAB_KUBECTL_TAG == f"v{major + 9}.{minor}.{patch}"  # chart 9.x.y ships GitLab 18.x.y
    assert image.startswith(f"registry.gitlab.com/gitlab-org/build/cng/kubectl:{GITLAB_KUBECTL_TAG}")
    if GITLAB_KUBECTL_DIGEST:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", GITLAB_KUBECTL_DIGEST)
        assert image.endswith("@" + GITLAB_KUBECTL_DIGEST)


# The Job's shell step, run for real with a fake kubectl that plays the API server and GitLab.
FAKE_KUBECTL = r"""#!/bin/sh
# Records its argument list, then answers like kubectl would.
printf '%s\n' "$*" >> "$FAKE_DIR/argv"
case "$*" in
  *" get secret "*) cat "$FAKE_DIR/current" ;;
  *" exec "*) cat > "$FAKE_DIR/stdin"; cat "$FAKE_DIR/rails-output"; exit "$(cat "$FAKE_DIR/rails-exit")" ;;
  *" patch secret "*) cat > "$FAKE_DIR/patch" ;;
  *) echo "unexpected kubectl $*" >&2; exit 9 ;;
esac
"""


def run_ensure_script(tmp_path: Path, current: str, rails_output: str, rails_exit: int = 0) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    scripts = tmp_path / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "ensure_admin_token.rb").write_text(gitlab_component.ensure_token_ruby("platform-bot@example.com"))
    script = gitlab_component.ENSURE_TOKEN_SH.replace("/scripts/", f"{scripts}/")
    (tmp_path / "current").write_text(current)
    (tmp_path / "rails-output").write_text(rails_output)
    (tmp_path / "rails-exit").write_text(str(rails_exit))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path), "NAMESPACE": "gitlab",
           "TOKEN_SECRET": "gitlab-platform-bot-token", "TOOLBOX_DEPLOYMENT": "gitlab-toolbox"}
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)


def test_ensure_script_stores_a_new_token_without_exposing_it(tmp_path: Path) -> None:
    new = "glpat-NEWtoken_0123456789"
    result = run_ensure_script(tmp_path, "glpat-old", f"noise\nNEW_TOKEN={new}\n")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "patch").read_text()) == {"stringData": {"token": new}}
    argv = (tmp_path / "argv").read_text()
    assert new not in argv and "glpat-old" not in argv  # tokens never in an argument list
    assert new not in result.stdout + result.stderr
    stdin = (tmp_path / "stdin").read_text()
    assert stdin.startswith("CURRENT_TOKEN = 'glpat-old'\n")
    assert "exec -i deploy/gitlab-toolbox -c toolbox -- gitlab-rails runner -" in argv
    assert all(line.startswith("--namespace gitlab ") for line in argv.splitlines())


def test_ensure_script_leaves_a_valid_token_alone(tmp_path: Path) -> None:
    result = run_ensure_script(tmp_path, "glpat-current", "")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "patch").exists()


def test_ensure_script_never_feeds_odd_characters_to_ruby(tmp_path: Path) -> None:
    result = run_ensure_script(tmp_path, "x'; system('id') #", "")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "stdin").read_text().startswith("CURRENT_TOKEN = ''\n")


def test_ensure_script_fails_when_gitlab_rails_fails(tmp_path: Path) -> None:
    result = run_ensure_script(tmp_path, "", "", rails_exit=1)
    assert result.returncode != 0
    assert not (tmp_path / "patch").exists()


# A stand-in for the parts of GitLab's Rails models the script touches, to run its logic.
RUBY_FAKE_GITLAB = r"""
require 'date'
require 'securerandom'
class Date; def self.current = Date.new(2026, 1, 10); end
class Token
  attr_accessor :id, :name, :user_id, :expires_at, :revoked, :token
  def initialize(**kw) = kw.each { |k, v| send("#{k}=", v) }
  def active? = !revoked && expires_at > Date.current
  def revoke! = (self.revoked = true)
end
TOKENS = []
class Scope
  def initialize(items) = @items = items
  def where(name: nil) = name.nil? ? self : Scope.new(@items.select { |t| t.name == name })
  def not(id:) = Scope.new(@items.reject { |t| t.id == id })
  def find_each(&block) = @items.each(&block)
end
class BotTokens
  def initialize(user) = @user = user
  def active = Scope.new(TOKENS.select { |t| t.user_id == @user.id && t.active? })
  def create!(attrs)
    t = Token.new(id: TOKENS.size + 1, name: attrs[:name], user_id: @user.id, expires_at: attrs[:expires_at],
                  revoked: false, token: "glpat-new#{TOKENS.size + 1}")
    TOKENS << t
    t
  end
end
class PersonalAccessToken
  def self.find_by_token(value) = TOKENS.find { |t| t.token == value }
  def self.column_names = []
end
class User
  attr_accessor :id, :admin, :state
  def blocked? = state == :blocked
  def activate! = (self.state = :active)
  def admin? = admin
  def update!(admin:) = (self.admin = admin)
  def personal_access_tokens = BotTokens.new(self)
  def self.find_by_username(_) = BOT
end
"""


RUBY_CASES = {
    # name: (setup ruby, CURRENT_TOKEN, expect a new token, expected exit code)
    "first run": ("", "", True, 0),
    "valid token": ("TOKENS << Token.new(id: 1, name: 'platform-bootstrap', user_id: 1, expires_at: Date.current + 20, revoked: false, token: 'glpat-ok')",
                    "glpat-ok", False, 0),
    "near expiry": ("TOKENS << Token.new(id: 1, name: 'platform-bootstrap', user_id: 1, expires_at: Date.current + 10, revoked: false, token: 'glpat-old')",
                    "glpat-old", True, 0),
    "revoked": ("TOKENS << Token.new(id: 1, name: 'platform-bootstrap', user_id: 1, expires_at: Date.current + 20, revoked: true, token: 'glpat-gone')",
                "glpat-gone", True, 0),
    "blocked bot": ("BOT.state = :blocked; BOT.admin = false", "", True, 0),
}


@pytest.mark.parametrize("case", sorted(RUBY_CASES))
def test_ensure_ruby_cases(tmp_path: Path, case: str) -> None:
    if shutil.which("ruby") is None:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("ruby not installed (.ci/install --tests)")
    setup, current, expect_new, code = RUBY_CASES[case]
    program = "\n".join([
        RUBY_FAKE_GITLAB,
        "BOT = User.new.tap { |u| u.id = 1; u.admin = true; u.state = :active }",
        setup,
        "at_exit { $stderr.puts \"STATE #{TOKENS.map { |t| [t.token, t.revoked] }.inspect} #{BOT.admin} #{BOT.state}\" }",
        f"CURRENT_TOKEN = '{current}'",
        gitlab_component.ensure_token_ruby("platform-bot@example.com"),
    ])
    (tmp_path / "script.rb").write_text(program)
    result = subprocess.run(["ruby", str(tmp_path / "script.rb")], capture_output=True, text=True, timeout=30)
    assert result.returncode == code, result.stderr
    new = re.findall(r"^NEW_TOKEN=(\S+)$", result.stdout, re.MULTILINE)
    assert bool(new) is expect_new, result.stdout
    assert result.stdout.strip() == (f"NEW_TOKEN={new[0]}" if new else "")  # nothing else on stdout
    state = result.stderr.rsplit("STATE ", 1)[1]
    assert state.endswith("true active\n")  # the bot is an active admin afterwards
    if new and current:
        assert f'["{current}", true]' in state  # the previous token is revoked


# --- Harbor -------------------------------------------------------------------------------------


def test_harbor_values_exist_upstream(harbor: Any) -> None:
    values = values_of(harbor[1], "harbor")
    assert unknown_value_paths("harbor", values) == []
    assert schema_errors("harbor", values) == []


def test_harbor_exposure_and_scanning(harbor: Any) -> None:
    values = values_of(harbor[1], "harbor")
    assert values["externalURL"] == f"https://harbor.{DOMAIN}"
    # The chart's Ingress names a class no controller has, with no certificate: the platform's route serves Harbor.
    assert dig(values, "expose.type") == "ingress"
    assert dig(values, "expose.ingress") == {"hosts": {"core": f"harbor.{DOMAIN}"}, "className": "unserved"}
    assert dig(values, "expose.tls") == {"enabled": True, "certSource": "none"}
    # The chart's own paths (harbor 1.19.1 templates/ingress/ingress.yaml): the token service and registry v2 are core's.
    records = harbor[1]
    assert traefik_route(records, "harbor", f"harbor.{DOMAIN}") == {
        **{path: {"name": "harbor-core", "port": 80} for path in ("/api/", "/service/", "/v2/", "/c/")},
        "/": {"name": "harbor-portal", "port": 80},
    }
    for name in ("harbor-core", "harbor-portal"):
        assert k8s_object(records, "Service", name)["inputs"]["spec"]["externalName"] == f"{name}.harbor.svc.cluster.local"
    assert dig(values, "trivy.enabled") is True
    assert dig(values, "persistence.enabled") is True


# Chart option -> (secret name option, key option or fixed key, number of characters or None)
HARBOR_SECRET_REFS = {
    "admin password": ("existingSecretAdminPassword", "existingSecretAdminPasswordKey", None),
    "encryption key": ("existingSecretSecretKey", "=secretKey", 16),
    "core secret": ("core.existingSecret", "=secret", 16),
    "xsrf key": ("core.existingXsrfSecret", "core.existingXsrfSecretKey", 32),
    "job service secret": ("jobservice.existingSecret", "jobservice.existingSecretKey", 16),
    "registry http secret": ("registry.existingSecret", "registry.existingSecretKey", 16),
    "registry credentials": ("registry.credentials.existingSecret", "=REGISTRY_PASSWD", None),
}


def test_harbor_takes_every_internal_secret_from_generated_ones(harbor: Any) -> None:
    records = harbor[1]
    values = values_of(records, "harbor")
    for what, (name_path, key_path, length) in HARBOR_SECRET_REFS.items():
        key = key_path[1:] if key_path.startswith("=") else dig(values, key_path)
        value = string_data(k8s_object(records, "Secret", dig(values, name_path)))[key]
        generator = generated_by(records, value)
        assert generator["type"] == "random:index/randomPassword:RandomPassword", what
        if length:
            assert generator["inputs"]["length"] == length, what
        assert generator["inputs"]["special"] is False, what
    credentials = string_data(k8s_object(records, "Secret", dig(values, "registry.credentials.existingSecret")))
    assert set(credentials) == {"REGISTRY_PASSWD", "REGISTRY_HTPASSWD"}
    # htpasswd with the bcrypt hash of the same generated password, for the chart's user name.
    assert credentials["REGISTRY_HTPASSWD"] == f"harbor_registry_user:$2a$10${credentials['REGISTRY_PASSWD']}"
    assert dig(values, "registry.credentials.username") == "harbor_registry_user"
    token = k8s_object(records, "Secret", dig(values, "core.secretName"))
    assert token["inputs"]["type"] == "kubernetes.io/tls"
    cert = string_data(token)
    assert cert["tls.key"].startswith("-----BEGIN PRIVATE KEY-----\n" + SECRET_MARK)
    assert cert["tls.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert one(records, "tls:index/privateKey:PrivateKey")["inputs"]["algorithm"] == "RSA"
    assert one(records, "tls:index/privateKey:PrivateKey")["inputs"]["algorithm"] == "RSA"
    # The database and Redis are outside the chart; their passwords only by Secret reference.
    assert dig(values, "database.type") == "external" and dig(values, "redis.type") == "external"
    database = k8s_object(records, "Secret", dig(values, "database.external.existingSecret"))
    assert generated_by(records, string_data(database)["password"])["inputs"]["length"] == 40
    redis = k8s_object(records, "Secret", dig(values, "redis.external.existingSecret"))
    assert generated_by(records, string_data(redis)["REDIS_PASSWORD"])["inputs"]["length"] == 64
    assert "password" not in dig(values, "database.external") and "password" not in dig(values, "redis.external")
    # Nothing in the values is a secret: they stay reviewable in the plan.
    release = one(records, "kubernetes:helm.sh/v3:Release", "control-plane-harbor")
    assert release["secretPaths"] == []


def test_harbor_trusts_the_platform_ca(harbor: Any) -> None:
    records = harbor[1]
    name = values_of(records, "harbor")["caBundleSecretName"]
    assert string_data(k8s_object(records, "Secret", name)) == {"ca.crt": CA_PEM}


def test_harbor_signs_in_through_openunison(harbor: Any) -> None:
    records = harbor[1]
    auth = one(records, "harbor:index/configAuth:ConfigAuth")
    inputs = auth["inputs"]
    assert inputs["authMode"] == "oidc_auth" and inputs["primaryAuthMode"] is True
    assert inputs["oidcEndpoint"] == ISSUER and inputs["oidcClientId"] == "harbor"
    assert inputs["oidcClientSecret"] == REDACTED and "oidcClientSecret" in auth["secretPaths"]
    assert inputs["oidcScope"] == "openid,email,profile,groups,offline_access"
    assert inputs["oidcGroupsClaim"] == "groups" and inputs["oidcAdminGroup"] == "platform-admins"
    assert inputs["oidcAutoOnboard"] is True and inputs["oidcUserClaim"] == "sub"
    provider = one(records, "pulumi:providers:harbor")
    assert provider["inputs"]["url"] == f"https://harbor.{DOMAIN}"
    assert provider["inputs"]["username"] == "admin" and provider["inputs"]["password"] == REDACTED
    system = one(records, "harbor:index/configSystem:ConfigSystem")
    assert system["inputs"]["projectCreationRestriction"] == "adminonly"
    rel = one(records, "kubernetes:helm.sh/v3:Release", "control-plane-harbor")
    for record in (auth, system, provider):
        assert rel["urn"] in record["dependsOn"], record["name"]
    for record in (auth, system):
        assert record["provider"] == provider["urn"]
    assert harbor_component.redirect_uri(f"harbor.{DOMAIN}") == f"https://harbor.{DOMAIN}/c/oidc/callback"


def test_harbor_storage_is_s3_with_workload_identity_on_eks_only(harbor: Any) -> None:
    eks, records = harbor
    values = values_of(records, "harbor")
    storage = dig(values, "persistence.imageChartStorage")
    assert dig(values, "registry.replicas") == 2  # object storage: every replica serves every image
    assert "persistentVolumeClaim" not in values["persistence"]
    if not eks:
        # The stack's S3-compatible object store, its keys in a Secret the registry reads.
        assert storage["type"] == "s3" and storage["s3"]["regionendpoint"] == OBJECT_STORE.endpoint
        keys = string_data(k8s_object(records, "Secret", storage["s3"]["existingSecret"]))
        assert keys == {"REGISTRY_STORAGE_S3_ACCESSKEY": "platform", "REGISTRY_STORAGE_S3_SECRETKEY": f"{SECRET_MARK}object-store-key"}
        assert "serviceAccountName" not in values["registry"]
        return
    (bucket,) = all_of(records, "aws:s3/bucket:Bucket")
    assert storage["type"] == "s3"
    s3 = storage["s3"]
    assert s3["bucket"] == bucket["inputs"]["bucket"] and s3["region"] == "eu-west-1"
    assert not {"accesskey", "secretkey", "existingSecret"} & set(s3)
    assert dig(values, "registry.replicas") == 2
    account = dig(values, "registry.serviceAccountName")
    sa = k8s_object(records, "ServiceAccount", account)
    assert "eks.amazonaws.com/role-arn" in sa["inputs"]["metadata"]["annotations"]
    assert _trust_subject(records, "control-plane-harbor-registry") == f"system:serviceaccount:harbor:{account}"
