"""An attacker's review of GitLab's instance settings as the program declares them: the plan's
`gitlab.ApplicationSettings` (held by every `pulumi up`, so a change in the admin area is reverted),
the chart's `appConfig` and the pulumi-gitlab resources, against the defaults of the pinned GitLab
(18.9: gitlab-org/gitlab app/models/application_setting_implementation.rb `defaults`, and
config/initializers/1_settings.rb for the `Settings.gitlab[...]` they read). Each test is one attempt by
someone who reaches GitLab's ingress, signs in while in no tenant, is another tenant's developer or
holds one token; each asserts what stops it and that the platform's own flows keep their way in.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from components.gitlab import OIDC_PROVIDER
from components.oidc_sessions import SESSION_MAX_SECONDS
from platformctl.render import Render, render_plan
from tests.test_config import DEV, _write
from tests.test_delivery_attacks import DNS, IMDS, TRAEFIK, Network, Pod, _subnet_address

SETTINGS = "gitlab:index/applicationSettings:ApplicationSettings"


def of_type(plan: dict, kind: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in plan["resources"] if r["type"] == kind]


def settings(plan: dict) -> dict[str, Any]:
    """The one ApplicationSettings resource's inputs."""
    [found] = of_type(plan, SETTINGS)
    return found


def app_config(plan: dict) -> dict[str, Any]:
    [release] = [r for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab"]
    return release["values"]["global"]["appConfig"]


def test_sign_up_stays_off_after_the_first_installation(plan: dict) -> None:
    """Anyone who reaches GitLab's ingress registers at /users/sign_up, with a password and no IdP.
    The chart's `initialDefaults.signupEnabled` only writes gitlab.yml, which GitLab reads when it
    creates its settings row (`signup_enabled: Settings.gitlab['signup_enabled']`, true unless set):
    after the first installation one click in the admin area opens sign-up for good."""
    assert app_config(plan)["initialDefaults"] == {"signupEnabled": False}
    assert settings(plan)["signupEnabled"] is False


def test_no_password_opens_an_account_beside_openunison(plan: dict) -> None:
    """bob, while still employed, gave his GitLab account a password (its profile's password page,
    which lets an account whose password GitLab made up set one, or "Forgot your password?"): once the
    IdP drops him, the password still opens his GitLab account on the web form (`?auto_sign_in=false`
    shows it past autoSignInWithProvider) and for git over HTTPS, past OpenUnison and its MFA; and the
    form answers anyone guessing root's. Or he never signs out: his "Remember me" session lives on and
    makes him a fresh personal access token whenever the last one nears its end. Defaults:
    `password_authentication_enabled_for_web` is `Settings.gitlab['signin_enabled']` (true), `_for_git`
    true. Both off; git still takes job, deploy and personal access tokens
    (Gitlab::Auth.find_for_git_client checks them before any password)."""
    found = settings(plan)
    assert found["passwordAuthenticationEnabledForWeb"] is False
    assert found["passwordAuthenticationEnabledForGit"] is False
    omniauth = app_config(plan)["omniauth"]  # the way in that stays: OpenUnison
    assert omniauth["enabled"] and omniauth["autoSignInWithProvider"] == OIDC_PROVIDER
    assert omniauth["allowSingleSignOn"] == [OIDC_PROVIDER]
    # Nor does a session outlive the sign-in: it ends with OpenUnison's (default: 10080 minutes of
    # inactivity, `Settings.gitlab['session_expire_delay']`, or never with "Remember me", default on).
    assert found["rememberMeEnabled"] is False and found["sessionExpireFromInit"] is True
    assert found["sessionExpireDelay"] * 60 == SESSION_MAX_SECONDS
    # The program's admin token needs no password: its Job runs gitlab-rails in the toolbox.
    [script] = [c["data"]["ensure-admin-token.sh"] for c in of_type(plan, "kubernetes:core/v1:ConfigMap")
                if c["metadata"]["name"] == "gitlab-platform-bot-script"]
    assert "gitlab-rails runner" in script


def test_a_leaked_registration_token_registers_no_runner(plan: dict) -> None:
    """A former owner of tenant payments kept the group's runner registration token (CI/CD settings; it
    lives until someone resets it) and registers a runner with the protected tag and `--access-level
    ref_protected`: it takes payments' release jobs, their job tokens and Vault ID tokens. Default
    `allow_runner_registration_token: true`. Off: the program registers every runner through the
    runner-creation API (UserRunner), and the chart's Secret carries no registration token. New access
    tokens must expire (`require_personal_access_token_expiry`, on by default since GitLab 17.3: held).
    A feed token, which never expires and travels in a calendar or RSS URL someone pasted into a ticket,
    reads the issue and merge request feeds of its owner's projects (`disable_feed_token` default false): off."""
    found = settings(plan)
    assert found["allowRunnerRegistrationToken"] is False
    assert found["requirePersonalAccessTokenExpiry"] is True
    assert found["disableFeedToken"] is True
    runners = of_type(plan, "gitlab:index/userRunner:UserRunner")
    assert {r["runnerType"] for r in runners} == {"group_type", "project_type"}
    charts = [r["values"] for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab-runner"]
    assert len(charts) == len(runners)
    assert all("runnerRegistrationToken" not in v and v["runners"]["secret"] == "gitlab-runner-token" for v in charts)


def test_no_account_registers_an_oauth_application(plan: dict) -> None:
    """mallory, in no tenant, registers an OAuth application under her profile ("Platform dashboard",
    scope `api`, her redirect URI) and sends a payments owner its authorize link, on the platform's own
    GitLab host. The owner, signed in through SSO, sees GitLab's real consent page and authorizes: mallory
    holds an `api` token as the owner (merges, release tags) and a refresh token that renews it long after
    every session and sign-in has ended. Default `user_oauth_applications: true` (the column's default):
    off, so only an administrator registers applications; the platform's sign-ins go through OpenUnison,
    not GitLab's OAuth, and the program declares no GitLab application."""
    assert settings(plan)["userOauthApplications"] is False
    assert not of_type(plan, "gitlab:index/application:Application")


def test_an_account_in_no_tenant_owns_no_project(plan: dict) -> None:
    """mallory, in no tenant, signs in through OpenUnison, and GitLab creates her account
    (allowSingleSignOn, blockAutoCreatedUsers false). With a personal project (`default_projects_limit`
    100000 in 1_settings.rb) she would be its owner: webhooks, integrations and push mirrors from
    GitLab's network position, imports, a fork of anything she can read. New accounts get no personal
    projects, and accounts whose highest role is Guest or none (hers, made before) create none; the
    tenants' members, declared by the program, have pulumi-gitlab's `projects_limit` 0."""
    assert app_config(plan)["omniauth"]["blockAutoCreatedUsers"] is False  # accounts for anyone the IdP knows
    found = settings(plan)
    assert found["defaultProjectsLimit"] == 0
    assert found["allowProjectCreationForGuestAndBelow"] is False
    assert found["canCreateGroup"] is False
    users = of_type(plan, "gitlab:index/user:User")
    assert users and all(u.get("projectsLimit", 0) == 0 for u in users)
    # A project outside the tenants' groups (a fork into a namespace of her own) would find no runner:
    # there are no instance runners, and the project runners are locked to the platform's projects.
    runners = of_type(plan, "gitlab:index/userRunner:UserRunner")
    assert runners and all(r["runnerType"] in ("group_type", "project_type") and r["locked"] for r in runners)


def test_another_tenants_people_read_no_internal_project(plan: dict) -> None:
    """An owner of payments sets `payments/app` or a snippet to `internal`, which GitLab shows to every
    signed-in account: billing's developers and accounts in no tenant read and clone it. Default
    restricted levels: none (`Settings.gitlab['restricted_visibility_levels']`, []). Only an
    administrator may choose `internal` or `public`; the program's groups and projects are private."""
    assert sorted(settings(plan)["restrictedVisibilityLevels"]) == ["internal", "public"]
    declared = of_type(plan, "gitlab:index/group:Group") + of_type(plan, "gitlab:index/project:Project")
    assert declared and {r["visibilityLevel"] for r in declared} == {"private"}


def metallb_pools(plan: dict) -> list[str]:
    return [a for r in plan["resources"] if r["type"].endswith(":IPAddressPool") for a in r["inputs"]["spec"]["addresses"]]


def test_a_webhook_reaches_no_platform_address_but_argocds(plan: dict) -> None:
    """A tenant's owner (Maintainer of its projects) adds a project hook or integration to
    http://vault.vault.svc:8200, a cluster's API server, http://169.254.169.254/ (the node's IAM role)
    or harbor-core.harbor.svc, sent from sidekiq (whose network the egress policies below hold as well). GitLab's URL
    blocker refuses local and link-local addresses unless `allow_local_requests_from_web_hooks_and_services`
    (default false; held), and for system hooks unless `allow_local_requests_from_system_hooks` (default
    true: off), with DNS rebinding protection (held); mirrors, which a Maintainer points anywhere, are
    for administrators, and so is a direct-transfer import from another GitLab's URL (default off; held). The one exception is by name and port: ArgoCD's webhook host, which on dev is
    on MetalLB's private pool, where GitLab would refuse the program's own hooks ("Requests to the
    local network are not allowed")."""
    found = settings(plan)
    assert found["allowLocalRequestsFromWebHooksAndServices"] is False
    assert found["allowLocalRequestsFromSystemHooks"] is False
    assert found["dnsRebindingProtectionEnabled"] is True
    assert found["mirrorAvailable"] is False and found["bulkImportEnabled"] is False
    hooks = [urlsplit(h["url"]) for h in of_type(plan, "gitlab:index/projectHook:ProjectHook")]
    assert hooks and {h.scheme for h in hooks} == {"https"}
    assert found["outboundLocalRequestsWhitelists"] == sorted({f"{h.hostname}:{h.port or 443}" for h in hooks})
    assert found["outboundLocalRequestsWhitelists"] == [f"argocd.{plan_domain(plan)}:443"]
    if plan["stack"] == "dev":  # why the exception: the ingress's address is a private one
        pools = metallb_pools(plan)
        assert pools and all(ipaddress.ip_address(p.split("-")[0].split("/")[0]).is_private for p in pools)


def plan_domain(plan: dict) -> str:
    """The stack's platform:domain, as GitLab's host names it."""
    [release] = [r for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab"]
    return release["values"]["global"]["hosts"]["domain"]


def test_a_weak_ssh_key_opens_no_repository(plan: dict) -> None:
    """A tenant owner still uploads the 1024-bit RSA (or DSA) key of an old laptop: whoever factors it
    (or recovers a DSA key from one reused signature nonce) pushes and merges as the owner over SSH.
    GitLab's default key restrictions are 0, any size (`default_min_key_size`, outside FIPS mode).
    DSA is refused and RSA needs 2048 bits; every key the program itself registers or serves (ArgoCD's
    deploy keys, gitlab-shell's host keys) is ed25519 or ECDSA P-256, which the restrictions leave alone."""
    found = settings(plan)
    assert found["dsaKeyRestriction"] == -1 and found["rsaKeyRestriction"] == 2048
    assert "ecdsaKeyRestriction" not in found and "ed25519KeyRestriction" not in found
    ssh = [r for r in plan["resources"] if r["type"] == "tls:index/privateKey:PrivateKey"
           and (r["name"].endswith("-deploy-key") or r["name"].startswith("gitlab-ssh-host-keys-"))]
    assert {r["name"].rpartition("-")[2] for r in ssh} >= {"key", "ed25519", "ecdsa"}  # deploy keys and both host keys
    assert {(r["inputs"]["algorithm"], r["inputs"].get("ecdsaCurve")) for r in ssh} == {("ED25519", None), ("ECDSA", "P256")}


# --- what GitLab's pods reach on the network ---------------------------------------------------------
#
# GitLab's own checks (the settings above) stand between a tenant and the control plane's network only
# as long as GitLab has no bug: a webhook or integration URL, a project import, an SSRF in Rails,
# Sidekiq, Gitaly or gitlab-shell, or a shell in any of their pods is one step from whatever the pod's
# network reaches. The network answers instead, as Kubernetes' NetworkPolicy semantics do
# (tests/test_delivery_attacks.py `Network`), on the real Helm render of the pinned chart.

STORES = ("gitlab/Cluster/gitlab-postgres", "gitlab/StatefulSet/gitlab-redis")  # data_stores' pods, not GitLab's
RAILS = ("webservice", "sidekiq", "toolbox")  # the tiers that call out: S3, OpenUnison, webhooks, backups


def gitlab_pods(network: Network) -> list[Pod]:
    """Every pod of the gitlab namespace but its data stores': the chart's workloads, jobs and cron jobs,
    and the program's (the admin token's)."""
    return [p for p in network.pods if p.namespace == "gitlab" and p.what not in STORES]


def tier(pod: Pod) -> str:
    return pod.labels.get("app") or pod.labels.get("app.kubernetes.io/name", "")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_gitlab_pod_is_held_by_an_egress_policy(charted: dict[str, Render], stack: str) -> None:
    """A pod no egress policy selects may connect anywhere its node can: every workload the pinned
    chart renders (the real Helm engine) and every job the program runs in the namespace is held."""
    network = Network(charted[stack].plan, "control-plane")
    pods = gitlab_pods(network)
    assert {tier(p) for p in pods} >= {"webservice", "sidekiq", "gitaly", "gitlab-shell", "gitlab-exporter",
                                        "toolbox", "migrations", "gitlab", "gitlab-platform-bot"}
    unheld = [p.what for p in pods if not network.selecting(p, "Egress")]
    assert not unheld, f"no egress policy holds {unheld}"


def _outside_the_namespace(network: Network, pod: Pod) -> list[tuple[str, int]]:
    return [(what, port) for what, port in network.reachable(pod) if not what.startswith("gitlab/")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_gitlab_pod_reaches_no_platform_service_but_dns_and_the_ingress_controller(charted: dict[str, Render], stack: str) -> None:
    """From a GitLab pod, the attacker reaches for the control plane's other services directly: Vault's
    listeners, Harbor's core, registry and database, ArgoCD's repo-server and Redis, OpenUnison,
    Gatekeeper's and cert-manager's webhooks, the runners' managers. Every GitLab pod reaches the cluster
    DNS; the Rails tiers also the ingress controller's HTTPS (OpenUnison's and ArgoCD's public names); none
    reaches another namespace's pod. On EKS pods have VPC addresses, so the rule to RDS and ElastiCache
    (the VPC's private subnets on 5432 and 6379) would also admit a pod listening there: ArgoCD's
    redis-ha, whose own ingress policies admit ArgoCD's pods only (tests/test_lateral_attacks.py)."""
    network = Network(charted[stack].plan, "control-plane")
    dns = [(DNS, 53), (DNS, 53)]
    problems = []
    for pod in gitlab_pods(network):
        expected = sorted(dns + ([(TRAEFIK, 8443)] if tier(pod) in RAILS else []))
        if (reached := _outside_the_namespace(network, pod)) != expected:
            problems.append(f"{pod.what} reaches {sorted(set(reached) - set(expected))[:8]}, misses {sorted(set(expected) - set(reached))}")
    assert not problems, "\n".join(problems)


def _pod(network: Network, prefix: str) -> Pod:
    [found] = [p for p in network.pods if p.what.startswith(prefix)]
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gitlab_still_reaches_its_own_pods_and_stores(charted: dict[str, Render], stack: str) -> None:
    """What the tiers need of each other (the chart's rendered configuration): Rails, migrations and the
    exporter reach Gitaly (8075) and their PostgreSQL and Redis (in the namespace off EKS: CloudNativePG
    and Valkey; on EKS RDS and ElastiCache in the control plane's private subnets), and Gitaly and
    gitlab-shell reach the internal API (`gitlab_url` http://gitlab-webservice-default.gitlab.svc:8181/ in
    their ConfigMaps)."""
    plan = charted[stack].plan
    network = Network(plan, "control-plane")
    webservice, gitaly = _pod(network, "gitlab/Deployment/gitlab-webservice"), _pod(network, "gitlab/StatefulSet/gitlab-gitaly")
    for caller in ("gitlab/StatefulSet/gitlab-gitaly", "gitlab/Deployment/gitlab-gitlab-shell"):
        assert network.reaches(_pod(network, caller), webservice, 8181), caller
    for client in ("gitlab/Deployment/gitlab-webservice", "gitlab/Deployment/gitlab-sidekiq", "gitlab/Deployment/gitlab-toolbox",
                   "gitlab/Job/gitlab-migrations", "gitlab/Deployment/gitlab-gitlab-exporter", "gitlab/CronJob/gitlab-toolbox-backup"):
        pod = _pod(network, client)
        assert network.reaches(pod, gitaly, 8075), client
        if stack == "dev":
            assert network.reaches(pod, network.pod(STORES[0]), 5432) and network.reaches(pod, network.pod(STORES[1]), 6379), client
        else:
            database = _subnet_address(plan, "control-plane-private-eu-west-1b", 77)
            assert network.reaches(pod, database, 5432) and network.reaches(pod, database, 6379), client


INTERNET = ipaddress.ip_address("203.0.113.7")  # S3, STS, a tenant's webhook receiver, OpenUnison's NLB if public


def _refused(plan: dict[str, Any], stack: str) -> dict[str, tuple[Any, int]]:
    """Addresses outside the cluster no GitLab pod may reach."""
    refused = {
        "the node's instance metadata": (IMDS, 80),
        "the instance metadata over IPv6": (ipaddress.ip_address("fd00:ec2::254"), 80),
        "an internet host over SSH (a mirror, a remote)": (INTERNET, 22),
        "an internet database": (INTERNET, 5432),
    }
    if stack == "dev":  # kind: the nodes and API servers on the docker network
        refused |= {"a node's kubelet": (ipaddress.ip_address("172.18.0.3"), 10250),
                    "the control plane's API server": (ipaddress.ip_address("172.18.0.2"), 6443),
                    "a workload cluster's API server": (ipaddress.ip_address("172.18.0.4"), 6443),
                    "MetalLB's pool on another port": (ipaddress.ip_address("172.18.255.200"), 8200)}
    else:
        node = _subnet_address(plan, "control-plane-private-eu-west-1a")
        refused |= {"a node's kubelet": (node, 10250), "Vault's port in the VPC": (node, 8200),
                    **{f"{w}'s API endpoint": (_subnet_address(plan, f"{w}-private-eu-west-1a"), 443) for w in ("dev", "prod")}}
    return refused


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_gitlab_pod_reaches_the_metadata_service_the_api_servers_or_the_nodes(charted: dict[str, Render], stack: str) -> None:
    """The node's IAM role at 169.254.169.254 (and fd00:ec2::254), a kubelet, the clusters' API servers,
    the internet on a port that is not HTTPS: none, from any GitLab pod. Only the jobs that must talk to
    the control plane's API server (the chart's shared-secrets Job, the admin token's Job and CronJob)
    reach it, on its port; where the stack names it by a host name (dev's kind clusters), its address is
    not known at preview, so they reach any address on that port, the workload clusters' API servers too."""
    plan = charted[stack].plan
    network = Network(plan, "control-plane")
    refused = _refused(plan, stack)
    theirs = {"the control plane's API server", *(["a workload cluster's API server"] if stack == "dev" else [])}
    problems = [f"{pod.what} reaches {what}" for pod in gitlab_pods(network) for what, (address, port) in refused.items()
                if network.reaches(pod, address, port) and not (what in theirs and tier(pod) in API_CALLERS)]
    assert not problems, "\n".join(problems)


API_CALLERS = ("gitlab", "gitlab-platform-bot")  # the chart's shared-secrets (and upgrade-check) Job; the admin token's


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_the_rails_tiers_reach_the_internet_and_only_on_https(charted: dict[str, Render], stack: str) -> None:
    """Objects in S3 (on EKS with the pod's web identity: S3's and STS's public endpoints) or the stack's
    object store, the backups' target, tenants' webhooks: the Rails tiers, on 443. Gitaly, gitlab-shell,
    the exporter and the migrations reach no address outside the cluster but their stores; the jobs
    that call the API server reach it and nothing else."""
    plan = charted[stack].plan
    network = Network(plan, "control-plane")
    problems = []
    for pod in gitlab_pods(network):
        reaches = network.reaches(pod, INTERNET, 443)
        if reaches != (tier(pod) in RAILS):
            problems.append(f"{pod.what} {'reaches' if reaches else 'misses'} the internet on 443")
    assert not problems, "\n".join(problems)
    api = (ipaddress.ip_address("172.18.0.2"), 6443) if stack == "dev" else (_subnet_address(plan, "control-plane-private-eu-west-1a"), 443)
    for caller in ("gitlab/Job/gitlab-shared-secrets", "gitlab/Job/gitlab-admin-token-ensure", "gitlab/CronJob/gitlab-platform-bot-probe"):
        assert network.reaches(_pod(network, caller), *api), caller


def test_an_object_store_on_a_private_network_is_reached_on_its_port_alone(tmp_path: Path, renders: dict[str, Render]) -> None:
    """A kubeconfig stack's MinIO on kind's docker network, on its own port: platform:objectStore's `networks`
    admits that network for the Rails tiers on the endpoint's port (and HTTPS), not the API servers or kubelets
    beside it; without it, only public addresses. The backups target's `networks` is admitted the same way."""
    def mutate(doc: dict[str, Any]) -> None:
        doc["config"]["platform:objectStore"]["endpoint"] = "https://minio.kind.internal:9000"
        doc["config"]["platform:objectStore"]["networks"] = ["172.18.0.0/16"]
        doc["config"]["platform:backups"]["target"].update(endpoint="https://10.30.0.7:9443", networks=["10.30.0.0/24"])

    network = Network(render_plan(_write(tmp_path, DEV, mutate), "dev"), "control-plane")
    sidekiq = Pod("gitlab/sidekiq", "gitlab", {"release": "gitlab", "app": "sidekiq"}, ())
    gitaly = Pod("gitlab/gitaly", "gitlab", {"release": "gitlab", "app": "gitaly"}, ())
    minio = ipaddress.ip_address("172.18.0.9")
    assert network.reaches(sidekiq, minio, 9000) and network.reaches(sidekiq, INTERNET, 9000)
    assert not any(network.reaches(sidekiq, minio, port) for port in (6443, 10250, 22))
    assert not network.reaches(gitaly, minio, 9000)
    backups = ipaddress.ip_address("10.30.0.7")
    assert network.reaches(sidekiq, backups, 9443) and not network.reaches(sidekiq, backups, 22)
    assert not network.reaches(sidekiq, ipaddress.ip_address("10.31.0.7"), 9443)
    plain = Network(renders["dev"].plan, "control-plane")  # the stack file as it is: the session's render
    assert not plain.reaches(sidekiq, minio, 443) and plain.reaches(sidekiq, INTERNET, 443)
