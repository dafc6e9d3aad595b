"""An end to every OpenUnison sign-in: sessions older than SESSION_MAX_SECONDS are deleted.

OpenUnison keeps each OIDC session (its refresh token) as an `OidcSession` object in its
namespace (the portal's `K8sSessionStore`) and reads it at every refresh. A refresh copies the
claims of the sign-in, groups included, into the new tokens and pushes the session's expiry one
inactivity timeout further (OpenIDConnectIdP.refreshToken): nothing re-reads a person's groups,
or whether the person still exists upstream, while a client keeps refreshing. So a CronJob
deletes every session signed in longer ago than SESSION_MAX_SECONDS; the next refresh fails and
the person signs in again, through the JIT, with the groups they hold then.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.inventory import HOUR
from components.versions import SESSION_REAPER_IMAGE
from policy.labels import managed_by

SESSION_MAX_SECONDS = 10 * HOUR  # a working day: the longest a sign-in's groups hold
REAP_EVERY_MINUTES = 15  # a session ends at most this long after its SESSION_MAX_SECONDS
SCHEDULE = f"*/{REAP_EVERY_MINUTES} * * * *"
REAPER = "oidc-session-reaper"
SESSIONS = ("openunison.tremolo.io", "v2", "oidc-sessions")  # the operator's CRD (v2 is served and stored)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Standard library only. Arguments: API server URL, token file, CA file, namespace, max age (s).
SCRIPT = """\
import datetime, json, ssl, sys, urllib.error, urllib.parse, urllib.request

api, token_file, ca_file, namespace, max_age = sys.argv[1:]
group, version, plural = "%s", "%s", "%s"
collection = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
context = ssl.create_default_context(cafile=ca_file)
headers = {"Authorization": "Bearer " + open(token_file).read().strip()}
oldest = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=int(max_age))


def call(method, path):
    request = urllib.request.Request(api + path, method=method, headers=headers)
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        return json.load(answer)


expired, token = [], ""
while True:  # every page first, then the deletions
    page = call("GET", collection + "?limit=500&continue=" + urllib.parse.quote(token))
    for item in page["items"]:
        created = item["metadata"]["creationTimestamp"].replace("Z", "+00:00")
        if datetime.datetime.fromisoformat(created) < oldest:
            expired.append(item["metadata"]["name"])
    token = page["metadata"].get("continue") or ""
    if not token:
        break
for name in expired:
    try:
        call("DELETE", collection + "/" + name)
    except urllib.error.HTTPError as error:
        if error.code != 404:  # OpenUnison ended it meanwhile
            raise
print(f"ended {len(expired)} sessions signed in before {oldest.isoformat()}")
""" % SESSIONS


@dataclass(frozen=True)
class SessionLifetimeArgs:
    namespace: k8s.core.v1.Namespace  # OpenUnison's, where its sessions live
    crds: pulumi.Resource  # the operator release, which installs the OidcSession CRD


class SessionLifetime(pulumi.ComponentResource):
    """The reaper's service account, its right to list and delete sessions, and its CronJob."""

    def __init__(self, name: str, cluster: ClusterHandle, args: SessionLifetimeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:oidc_sessions:SessionLifetime", name, None, opts)
        namespace = args.namespace.metadata.name
        meta = k8s.meta.v1.ObjectMetaArgs(name=REAPER, namespace=namespace, labels=managed_by())
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[args.namespace])
        account = k8s.core.v1.ServiceAccount(f"{name}-account", metadata=meta, opts=in_ns)
        group, _, plural = SESSIONS
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata=meta,
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[group], resources=[plural], verbs=["list", "delete"])],
            opts=in_ns,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-binding", metadata=meta,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=REAPER),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=REAPER, namespace=namespace)],
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[role])),
        )
        k8s.batch.v1.CronJob(
            f"{name}-cron-job", metadata=meta,
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=SCHEDULE,
                concurrency_policy="Forbid",
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=2,
                    active_deadline_seconds=600,
                    template=k8s.core.v1.PodTemplateSpecArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app.kubernetes.io/name": REAPER}),
                        spec=_pod(namespace),
                    ),
                )),
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[account, binding, args.crds])),
        )
        self.register_outputs({"maxSeconds": SESSION_MAX_SECONDS, "schedule": SCHEDULE})


def command(api: str, token_file: str, ca_file: str, namespace: pulumi.Input[str]) -> list[pulumi.Input[str]]:
    """The reaper's command line: the script and its arguments."""
    return ["python3", "-c", SCRIPT, api, token_file, ca_file, namespace, str(SESSION_MAX_SECONDS)]


def _pod(namespace: pulumi.Input[str]) -> k8s.core.v1.PodSpecArgs:
    return k8s.core.v1.PodSpecArgs(
        service_account_name=REAPER,
        restart_policy="Never",
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True, run_as_user=65534, run_as_group=65534,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[k8s.core.v1.ContainerArgs(
            name="reaper",
            image=SESSION_REAPER_IMAGE.ref,
            command=command("https://kubernetes.default.svc", f"{SERVICE_ACCOUNT_DIR}/token", f"{SERVICE_ACCOUNT_DIR}/ca.crt", namespace),
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False, read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "32Mi"}, limits={"memory": "64Mi"}),
        )],
    )
