"""Vault trusts short-lived identities: each cluster's service accounts, and GitLab CI jobs.

No reviewer token and no other long-lived credential is stored anywhere:

* EKS clusters: a JWT auth mount `jwt-<cluster>` verifies service-account tokens offline
  against the cluster's OIDC discovery document (`oidc_discovery_url` = its issuer, public
  and signed by public roots). Roles bind audience `vault` (what External Secrets requests by
  default) and the exact `sub` claims `system:serviceaccount:<namespace>:<name>`.
* Other clusters: a Kubernetes auth mount `kubernetes-<cluster>` with no `token_reviewer_jwt`
  and `disable_local_ca_jwt`, so Vault calls the cluster's TokenReview API with the client's
  own token: checked live (a deleted pod or service account is refused), nothing stored.
  The client's token is therefore its own reviewer: it must carry the API server's audience
  (External Secrets' `auth.kubernetes.serviceAccountRef` without `audiences` does), so roles
  set no `audience`; and each bound service account needs `create` on `tokenreviews`. It
  gets exactly that, from one ClusterRoleBinding per account to `platform-vault-tokenreview`:
  the built-in `system:auth-delegator` would add SubjectAccessReviews, which would let a
  tenant's account ask what everybody else may do. (The group-based alternative, binding
  `system:serviceaccounts:<namespace>`, would grant every account of the namespace: not used.)
* GitLab CI: a JWT auth mount `jwt-gitlab` trusting `https://gitlab.<domain>` (discovery
  verified with the platform CA bundle when there is one). Roles bind the Vault URL as
  audience, exact `project_path` claims, protected refs only (`ref_protected`), push, web or
  scheduled pipelines only (`pipeline_source`, or fewer where a role says), and, if given, the
  exact branches (`ref`).

Tokens live at most an hour for workloads and five minutes for CI jobs (an hour for the
platform's deploy job); every role and mount is registered in the credential inventory
(components/inventory.py).
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from components.cluster import ClusterHandle
from components.inventory import Credential, CredentialInventory, vault_token
from policy.labels import managed_by

GITLAB_PATH = "jwt-gitlab"
WORKLOAD_AUDIENCE = "vault"  # External Secrets' default TokenRequest audience for Vault JWT auth
WORKLOAD_TOKEN_TTL = 900
WORKLOAD_TOKEN_MAX_TTL = 3600  # one hour at most
CI_TOKEN_TTL = 300  # a job logs in, reads, and is done
CI_MAX_TOKEN_TTL = 3600  # the mount's ceiling: the deploy job's `pulumi up` (DEPLOY_ROLE)
DAY_SECONDS = 86400  # an identity-token key's rotation, and how long its last public key still verifies
DEPLOY_ROLE = "platform-deploy"  # the platform pipeline's Pulumi jobs on main: the program's own Vault access
# Pipelines a CI role accepts: a push (branch or tag), "Run pipeline" or a schedule (which runs
# as its owner, who must be allowed on the protected ref); never a merge request's. Tenants' `app`
# projects take no pipeline variables (components/tenant_gitlab.py PIPELINE_VARIABLES_ROLE), so their
# "Run pipeline" and schedules run the protected ref's committed file as a push does (a release re-run, a rebuild).
CI_PIPELINE_SOURCES = ("push", "web", "schedule")
# A merge request's pipeline runs its branch's code, so a role takes it only in protected environments, where a
# maintainer who read the change starts the job (`environment_protected`), never on `ref_protected`: GitLab marks a
# merge-request pipeline protected when its source and target branches are, whoever wrote the change.
REVIEWED_PIPELINE_SOURCES = ("merge_request_event",)
# platform-admin logins take only the pipelines the platform runs: the merged code's push pipelines
# (plans, deploys, the manual prod job), never "Run pipeline", whose runner sets variables of their
# own; and, at a role of their own, the schedule (its owner's variables) of rebuild-dev, in a stack that
# platform:pipeline.rebuildSchedule says is rebuilt (dev), never in prod. The drift checks' schedules only
# preview: their role reads (platform-reader).
DEPLOY_PIPELINE_SOURCES = ("push",)
SCHEDULED_DEPLOY_ROLE = "platform-deploy-scheduled"
DRIFT_ROLE = "platform-drift"
# Merge requests' previews, once a maintainer plays them (.gitlab-ci.yml `.preview`): what a refresh reads, as the
# drift checks, and on EKS the identity token the reviewed-preview AWS role trusts (AWS cannot test the environment).
PREVIEW_ROLE = "platform-preview"
TOKEN_REVIEW_ROLE = "platform-vault-tokenreview"
# Copied from a CI job's ID token into its Vault token's metadata, so the audit log names the job.
CI_CLAIM_MAPPINGS = {claim: claim for claim in ("project_path", "ref", "pipeline_id", "job_id", "user_login")}

_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS label: never a dot
_ACCOUNT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain
_PROJECT_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$")
_REF = re.compile(r"^[^\s*,]+$")


def root_only(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """For what platform-admin, the pipeline's token, may change but not delete (components/vault.py ADMIN_POLICY:
    auth methods, the audit device, that policy): a delete (a destroy, a removed mount) leaves it in Vault and
    drops it from the state instead of failing, and root (break-glass) removes it if it must go."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True))


@dataclass(frozen=True)
class StackEnvironments:
    """The GitLab environments of one stack's jobs in the platform pipeline, made from the stack's name, whatever it is:
    .gitlab-ci.yml runs each job that reaches a stack's Vault in an environment named after that stack (`--stack <stack>`),
    and a new stack's jobs are dev's with its name (README, Adding a stack). Each stack has a Vault of its own and a job
    picks its ID token's audience (`VAULT_ADDR`) itself, so each Vault's CI roles bind its own stack's environments alone:
    no dev job logs in to prod's Vault, and no stack's Vault is left without roles for its jobs."""

    stack: str

    @property
    def deploy(self) -> str:
        """deploy-<stack>, and the rebuild schedule's job of a rebuilt stack (rebuild-dev)."""
        return self.stack

    @property
    def plan(self) -> str:
        """Main's plan-<stack> and the drift-<stack> schedules: protected, maintainers only, no approvals. Not the
        merge requests' preview/<stack>, so that one can require a deployment approval of each (README)."""
        return f"plan/{self.stack}"

    @property
    def preview(self) -> str:
        """Merge requests' preview-<stack> alone: protected, maintainers only, one approval (README)."""
        return f"preview/{self.stack}"

    @property
    def promote(self) -> str:
        """promote-image-<stack> and the promote-trivy-db-<stack> schedule: protected, its promoters only."""
        return f"promote/{self.stack}"


def mount_path(cluster: ClusterHandle) -> str:
    return f"jwt-{cluster.name}" if cluster.is_eks else f"kubernetes-{cluster.name}"


def service_account_subjects(namespaces: Sequence[str], service_accounts: Sequence[str]) -> list[str]:
    """The `sub` claims of the accounts a role binds: every account name in every namespace,
    as Kubernetes auth's bound names x bound namespaces do."""
    return [f"system:serviceaccount:{ns}:{sa}" for ns, sa in itertools.product(namespaces, service_accounts)]


def _checked(what: str, values: Sequence[str] | None, pattern: re.Pattern[str], allowed: str) -> list[str]:
    """A non-empty list of exact values: no `*`, no commas (the provider splits bound claims on them)."""
    if not values:
        raise ValueError(f"{what}: give at least one value; an empty list would bind nothing or everything")
    for value in values:
        if "*" in value or "," in value or not pattern.match(value):
            raise ValueError(f"{what}: {value!r} is not allowed; {allowed}, never '*'")
    return list(values)


@dataclass(frozen=True)
class _Mount:
    path: str
    jwt: bool  # True: JWT auth (EKS); False: Kubernetes auth
    ready: pulumi.Resource  # what a role waits for: the mount, or its configuration


@dataclass(frozen=True)
class IdentityTokens:
    """Identity tokens Vault issues for one role (`VaultFederation.identity_tokens`)."""

    issuer_url: str  # the tokens' `iss`: https://vault.<domain>/v1/identity/oidc
    audience: pulumi.Output[str]  # their `aud`: the role's client id
    policy: str  # the Vault policy that may have one issued


@dataclass(frozen=True)
class VaultFederationArgs:
    provider: vault.Provider  # the platform Vault's provider
    vault_url: str  # https://vault.<domain>: the audience CI jobs ask for
    clusters: dict[str, ClusterHandle]  # control-plane, dev, prod: a mount each
    inventory: CredentialInventory
    gitlab_url: str | None = None  # https://gitlab.<domain>; None: no GitLab, no CI mount
    ca_bundle: pulumi.Input[str] = ""  # what GitLab's certificate chains to; "" means the system roots
    gitlab_ready: Sequence[pulumi.Resource] = ()  # Vault fetches GitLab's discovery document when configured


class VaultFederation(pulumi.ComponentResource):
    """Auth mounts for every cluster and for GitLab CI; tenants bind roles with `bind_workload` and `bind_ci`."""

    def __init__(self, name: str, args: VaultFederationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:vault_federation:VaultFederation", name, None, opts)
        self.provider = args.provider
        self.ci_audience = args.vault_url
        self._clusters = args.clusters
        self._inventory = args.inventory
        self._reviewers: dict[tuple[str, str, str], k8s.rbac.v1.ClusterRoleBinding] = {}
        self._review_roles: dict[str, k8s.rbac.v1.ClusterRole] = {}
        for key, handle in args.clusters.items():
            if key != handle.name:
                raise ValueError(f"cluster {key!r} is keyed by another name than its handle's ({handle.name!r})")
        self._mounts = {cluster: self._cluster_mount(name, handle) for cluster, handle in args.clusters.items()}
        self._gitlab = self._gitlab_mount(name, args) if args.gitlab_url else None
        self.register_outputs({"mounts": {cluster: m.path for cluster, m in self._mounts.items()}})

    # --- mounts -----------------------------------------------------------------------

    def _cluster_mount(self, name: str, cluster: ClusterHandle) -> _Mount:
        on_vault = pulumi.ResourceOptions(parent=self, provider=self.provider)
        path = mount_path(cluster)
        # A mount's tokens never outlive an hour, whatever a role says.
        if cluster.is_eks:
            assert cluster.oidc_issuer_url is not None, f"EKS cluster {cluster.name} has no OIDC issuer"
            mount = vault.jwt.AuthBackend(
                f"{name}-{path}",
                type="jwt",
                path=path,
                description=f"Service accounts of the {cluster.name} cluster (EKS OIDC issuer)",
                oidc_discovery_url=cluster.oidc_issuer_url,
                bound_issuer=cluster.oidc_issuer_url,
                tune=vault.jwt.AuthBackendTuneArgs(default_lease_ttl="1h", max_lease_ttl="1h", token_type="default-service"),
                opts=root_only(on_vault),
            )
            ready: pulumi.Resource = mount
        else:
            backend = vault.AuthBackend(
                f"{name}-{path}",
                type="kubernetes",
                path=path,
                description=f"Service accounts of the {cluster.name} cluster (TokenReview with the client's token)",
                tune=vault.AuthBackendTuneArgs(default_lease_ttl="1h", max_lease_ttl="1h", token_type="default-service"),
                opts=root_only(on_vault),
            )
            ready = vault.kubernetes.AuthBackendConfig(
                f"{name}-{path}",
                backend=backend.path,
                kubernetes_host=cluster.endpoint,
                kubernetes_ca_cert=cluster.ca_data.apply(lambda data: base64.b64decode(data).decode()),
                # No token_reviewer_jwt, and not Vault's own pod token: the client's token reviews itself.
                disable_local_ca_jwt=True,
                opts=on_vault,
            )
            self._review_roles[cluster.name] = k8s.rbac.v1.ClusterRole(
                f"{cluster.name}-{TOKEN_REVIEW_ROLE}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_REVIEW_ROLE, labels=managed_by()),
                rules=[
                    k8s.rbac.v1.PolicyRuleArgs(
                        api_groups=["authentication.k8s.io"], resources=["tokenreviews"], verbs=["create"]
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider),
            )
        self._inventory.register(
            Credential(
                what=f"service-account tokens of the {cluster.name} cluster, presented to Vault",
                category="federated",
                issuer=f"the {cluster.name} cluster's service-account issuer (TokenRequest)",
                holder="the bound service accounts' clients (External Secrets on dev and prod, Vault's snapshot job on the control plane)",
                scope=(
                    f"log in at auth/{path} to roles bound to the exact account"
                    + ("" if cluster.is_eks else "; Vault presents the same token to the cluster's TokenReview API")
                ),
                lifetime_seconds=3600,
                lifetime="the TokenRequest's expirationSeconds, at most 1 hour (checked); External Secrets asks for 10 minutes",
                rotation="a new TokenRequest for every login",
            )
        )
        return _Mount(path=path, jwt=cluster.is_eks, ready=ready)

    def _gitlab_mount(self, name: str, args: VaultFederationArgs) -> _Mount:
        mount = vault.jwt.AuthBackend(
            f"{name}-{GITLAB_PATH}",
            type="jwt",
            path=GITLAB_PATH,
            description="GitLab CI jobs (id_tokens)",
            oidc_discovery_url=args.gitlab_url,
            oidc_discovery_ca_pem=pulumi.Output.from_input(args.ca_bundle).apply(lambda pem: pem or None),
            bound_issuer=args.gitlab_url,
            # Roles set each token's lifetime; the mount caps them all at the deploy job's hour.
            tune=vault.jwt.AuthBackendTuneArgs(default_lease_ttl="5m", max_lease_ttl="1h", token_type="default-service"),
            opts=root_only(pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=list(args.gitlab_ready))),
        )
        return _Mount(path=GITLAB_PATH, jwt=True, ready=mount)

    # --- what tenants call -------------------------------------------------------------

    def auth_path(self, cluster: str) -> str:
        """The mount a cluster's workloads log in at: `jwt-<cluster>` on EKS, else `kubernetes-<cluster>`."""
        return self._mount(cluster).path

    def bind_workload(
        self,
        resource_name: str,
        cluster: str,
        namespaces: list[str],
        service_accounts: list[str],
        policies: list[str],
        parent: pulumi.Resource,
    ) -> pulumi.CustomResource:
        """A role named `resource_name` on `cluster`'s mount for exactly these accounts.

        Every name in `service_accounts` in every namespace of `namespaces` may log in and get
        `policies` for at most an hour. Raises ValueError on `*`, commas or empty lists.
        """
        mount = self._mount(cluster)
        role_name = _checked("Vault role name", [resource_name], _ROLE_NAME, "letters, digits, '.', '_', '-'")[0]
        namespaces = _checked(f"role {role_name}: namespaces", namespaces, _NAMESPACE, "Kubernetes namespace names")
        accounts = _checked(f"role {role_name}: service accounts", service_accounts, _ACCOUNT, "service-account names")
        policies = _policies(role_name, policies)
        opts = pulumi.ResourceOptions(parent=parent, provider=self.provider, depends_on=[mount.ready])
        role: pulumi.CustomResource
        if mount.jwt:
            role = vault.jwt.AuthBackendRole(
                resource_name,
                backend=mount.path,
                role_name=role_name,
                role_type="jwt",
                bound_audiences=[WORKLOAD_AUDIENCE],
                # Exact subjects; the provider turns the comma-separated list into a list claim.
                bound_claims={"sub": ",".join(service_account_subjects(namespaces, accounts))},
                bound_claims_type="string",
                user_claim="sub",
                token_ttl=WORKLOAD_TOKEN_TTL,
                token_max_ttl=WORKLOAD_TOKEN_MAX_TTL,
                token_policies=policies,
                opts=opts,
            )
        else:
            role = vault.kubernetes.AuthBackendRole(
                resource_name,
                backend=mount.path,
                role_name=role_name,
                bound_service_account_names=accounts,
                bound_service_account_namespaces=namespaces,
                token_ttl=WORKLOAD_TOKEN_TTL,
                token_max_ttl=WORKLOAD_TOKEN_MAX_TTL,
                token_policies=policies,
                opts=opts,
            )
            for namespace, account in itertools.product(namespaces, accounts):
                self._token_reviewer(cluster, namespace, account, parent)
        self._inventory.register(
            vault_token(
                f"Vault tokens of role {role_name} ({cluster})",
                login=f"auth/{mount.path}",
                holder=f"service accounts {', '.join(accounts)} in {', '.join(namespaces)} on {cluster}",
                scope=f"Vault policies {', '.join(policies)}",
                seconds=WORKLOAD_TOKEN_MAX_TTL,
                rotation="log in again with a new service-account token",
                resources=(resource_name,),
            )
        )
        return role

    def bind_ci(
        self,
        resource_name: str,
        project_paths: list[str],
        refs: list[str] | None,
        policies: list[str],
        parent: pulumi.Resource,
        ttl: int = CI_TOKEN_TTL,
        environments: list[str] | None = None,
        pipeline_sources: Sequence[str] = CI_PIPELINE_SOURCES,
        protected_environments: bool = False,
    ) -> pulumi.CustomResource:
        """A role named `resource_name` on `jwt-gitlab` for CI jobs of exactly these projects.

        Only protected refs (GitLab's `ref_protected`: whoever can push a feature branch or an
        unprotected tag gets nothing) of pipelines started by a push or by hand (never a
        merge-request pipeline, which runs the merge request's code). `refs`: the protected
        branch names the job must run on; None: any protected branch or tag. `environments`: the
        jobs' GitLab environments, which set apart two jobs of one branch (the deploy jobs from a
        job anyone may play with variables of their own); None: any job. `pipeline_sources`: some
        of CI_PIPELINE_SOURCES, or REVIEWED_PIPELINE_SOURCES alone: merge-request pipelines of any
        branch, in the protected `environments` only (`environment_protected`; no `refs`).
        `protected_environments`: also on protected refs, only jobs that GitLab runs in `environments`
        as protected environments, started as deployments, so only those environments' deployers run
        them (always so for merge-request pipelines). Tokens last `ttl` seconds (five minutes unless a
        job must outlast that, at most an hour). Raises ValueError on `*`, commas or empty lists, or
        without GitLab.
        """
        if self._gitlab is None:
            raise ValueError(f"role {resource_name}: GitLab is not enabled, so Vault has no CI mount")
        role_name = _checked("Vault role name", [resource_name], _ROLE_NAME, "letters, digits, '.', '_', '-'")[0]
        paths = _checked(f"role {role_name}: project paths", project_paths, _PROJECT_PATH, "GitLab project paths 'group/project'")
        if not 0 < ttl <= CI_MAX_TOKEN_TTL:
            raise ValueError(f"role {role_name}: token lifetime {ttl}s; allowed 1 to {CI_MAX_TOKEN_TTL} seconds")
        guard = _ci_guard(role_name, refs, environments, pipeline_sources, protected_environments)
        reviewed, deployers_only = "ref_protected" not in guard, "environment_protected" in guard
        claims = {"project_path": ",".join(paths), **guard, "pipeline_source": ",".join(pipeline_sources)}
        if refs is not None:
            claims["ref"] = ",".join(_checked(f"role {role_name}: refs", refs, _REF, "branch names"))
            # A tag named like a protected branch must not pass for it.
            claims["ref_type"] = "branch"
        if environments is not None:
            claims["environment"] = ",".join(_checked(f"role {role_name}: environments", environments, _REF, "environment names"))
        policies = _policies(role_name, policies)
        role = vault.jwt.AuthBackendRole(
            resource_name,
            backend=self._gitlab.path,
            role_name=role_name,
            role_type="jwt",
            bound_audiences=[self.ci_audience],
            bound_claims=claims,
            bound_claims_type="string",  # exact values, never globs
            user_claim="sub",
            claim_mappings=CI_CLAIM_MAPPINGS,
            token_ttl=ttl,
            token_max_ttl=ttl,
            token_policies=policies,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider, depends_on=[self._gitlab.ready]),
        )
        self._inventory.register(
            vault_token(
                f"Vault tokens of CI role {role_name}",
                login=f"auth/{GITLAB_PATH}",
                holder=f"CI jobs of {', '.join(pipeline_sources)} pipelines of {', '.join(paths)} on "
                + (f"protected {', '.join(refs)}" if refs else "any branch" if reviewed else "protected branches and tags")
                + (f" in the {'protected ' if deployers_only else ''}environments {', '.join(environments)}" if environments else "")
                + (", once a maintainer starts the job" if reviewed else ", started by their deployers" if deployers_only else ""),
                scope=f"Vault policies {', '.join(policies)}",
                seconds=ttl,
                rotation="each job logs in with its own ID token",
                resources=(resource_name,),
            )
        )
        return role

    # --- helpers ----------------------------------------------------------------------

    def identity_tokens(self, role_name: str, ttl: int, parent: pulumi.Resource) -> IdentityTokens:
        """Vault as an OIDC issuer (its identity tokens) of tokens for `role_name` alone: a key of its own that signs
        for that role's client id only, the tokens living `ttl` seconds, and a policy that may have one issued.

        Why: a cloud's STS can trust this issuer and audience where it cannot test what Vault's login did (the
        merge request's protected environment). The issuer's discovery and keys are public (Vault serves them
        unauthenticated), as STS must fetch them."""
        on_vault = pulumi.ResourceOptions(parent=parent, provider=self.provider)
        issuer_url = f"{self.ci_audience}/v1/identity/oidc"  # Vault's: the `issuer` set below and its API path
        vault.identity.Oidc(f"{role_name}-issuer", issuer=self.ci_audience, opts=on_vault)
        key = vault.identity.OidcKey(f"{role_name}-key", name=role_name, algorithm="RS256", rotation_period=DAY_SECONDS,
                                     verification_ttl=DAY_SECONDS, opts=on_vault)
        role = vault.identity.OidcRole(f"{role_name}-tokens", name=role_name, key=key.name, ttl=ttl, opts=on_vault)
        vault.identity.OidcKeyAllowedClientID(f"{role_name}-key-client", key_name=key.name, allowed_client_id=role.client_id,
                                               opts=on_vault)
        policy = f"{role_name}-token"  # a login role may name it before it exists: Vault reads it at each login
        vault.Policy(policy, name=policy, opts=on_vault,
                     policy=f'path "identity/oidc/token/{role_name}" {{\n  capabilities = ["read"]\n}}\n')
        self._inventory.register(Credential(
            what=f"Vault identity tokens of {role_name}", category="federated", issuer=f"Vault ({issuer_url})",
            holder=f"Vault logins with the policy {policy}", scope="an audience of their own: what trusts it and nothing else",
            lifetime_seconds=ttl, rotation="a new token for each job", resources=(f"{role_name}-tokens",),
        ))
        return IdentityTokens(issuer_url, role.client_id, policy)

    def _mount(self, cluster: str) -> _Mount:
        if cluster not in self._mounts:
            raise ValueError(f"no Vault auth mount for cluster {cluster!r}; clusters: {', '.join(sorted(self._mounts))}")
        return self._mounts[cluster]

    def _token_reviewer(self, cluster: str, namespace: str, account: str, parent: pulumi.Resource) -> None:
        """Let one service account review its own token (once per account, however many roles bind it)."""
        key = (cluster, namespace, account)
        if key in self._reviewers:
            return
        handle = self._clusters[cluster]
        # Namespaces hold no dots and RBAC names allow colons: neither name can belong to two accounts.
        self._reviewers[key] = k8s.rbac.v1.ClusterRoleBinding(
            f"{cluster}-vault-tokenreview-{namespace}.{account}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{TOKEN_REVIEW_ROLE}:{namespace}:{account}", labels=managed_by()),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=TOKEN_REVIEW_ROLE),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=account, namespace=namespace)],
            opts=pulumi.ResourceOptions(parent=parent, provider=handle.provider, depends_on=[self._review_roles[cluster]]),
        )


def _ci_guard(role_name: str, refs: list[str] | None, environments: list[str] | None, pipeline_sources: Sequence[str],
              protected_environments: bool) -> dict[str, str]:
    """The claims that say who started a CI role's job (VaultFederation.bind_ci): a protected ref (`ref_protected`), and
    where the environments must be protected ones, or for a merge request's pipeline instead, their deployers."""
    reviewed = tuple(pipeline_sources) == REVIEWED_PIPELINE_SOURCES
    if not reviewed and (not pipeline_sources or not set(pipeline_sources) <= set(CI_PIPELINE_SOURCES)):
        raise ValueError(f"role {role_name}: pipeline sources {list(pipeline_sources)}; allowed some of "
                         f"{', '.join(CI_PIPELINE_SOURCES)}, or {REVIEWED_PIPELINE_SOURCES[0]} alone")
    if reviewed and (environments is None or refs is not None):
        raise ValueError(f"role {role_name}: merge-request pipelines only in protected environments, of any branch "
                         "(give environments, no refs)")
    if protected_environments and environments is None:
        raise ValueError(f"role {role_name}: protected environments, but none named (give environments)")
    guard = {} if reviewed else {"ref_protected": "true"}
    if reviewed or protected_environments:
        # `environment_action` start: GitLab lets only the environment's deployers run such a job (ee ProcessBuildService);
        # its access/verify/prepare actions, which create no deployment, are where GitLab has considered letting Developers run
        # jobs in a protected environment (gitlab-org/gitlab#437142).
        guard |= {"environment_protected": "true", "environment_action": "start"}
    return guard


def _policies(role_name: str, policies: list[str]) -> list[str]:
    names = _checked(f"role {role_name}: policies", policies, re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), "policy names")
    if "root" in names:
        raise ValueError(f"role {role_name}: the root policy is never bound to a login role")
    return names

