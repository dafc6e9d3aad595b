"""An attacker's pass over the identity hub: OpenUnison's OIDC provider and the clients built on it.

Each test is one attempt by someone with no account, or with an account at the upstream identity
source, against what the plan declares; it must fail for the attacker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from components.openunison import NAMESPACE, OPENUNISON_SERVICE_ACCOUNT, SERVICE, STICKY_SERVICE
from tests.test_openunison_groups import needs_node, run_task
from tests.test_people_attacks import gitlab_account, gitlab_omniauth, jit_script, local_groups

PHISHING = "https://login.attacker.example/"

# --- the authorize endpoint as an open redirect ----------------------------------------------------

# OpenUnison 1.0.46 (the orchestra chart 3.1.40's image, openunison-k8s:1.0.46; TremoloSecurity/
# OpenUnison tag 1.0.46-2026032001), OpenIDConnectIdP.doGet, action "auth": a request without
# `state`, with a `client_id` no Trust has, or with a `redirect_uri` its Trust does not list is
# answered with a redirect to that `redirect_uri` (`?error=state_missing` / `unauthorized_client`),
# in that order, before any sign-in. RFC 6749 4.1.2.1 forbids redirecting then. No setting changes
# it ((a): verifyRedirect only chooses the last check), and the newest tag, 1.0.50-2026052501, and
# the default branch still do it ((b)). A Traefik route on the query ((c)) cannot be shown sound here,
# at the pinned Traefik v3.6.2: QueryRegexp matches when any value of the key matches
# (pkg/muxer/http/matcher.go, queryRegexp) and OpenUnison reads the first (getParameter), so an
# allow-list is passed by a second, registered redirect_uri; a deny rule would still meet what Go's
# url.ParseQuery drops and the servlet container may read (a pair with a bad %-escape), and the
# action, which OpenUnison matches without regard to case ("AUTH"). (Semicolons are not one: Traefik
# reads and forwards them as '&', pkg/server/server_entrypoint_tcp.go and pkg/proxy/httputil/proxy.go.)
# Nothing here runs Traefik or Undertow to prove a rule closes all of it.
OPEN_REDIRECT = (
    "OpenUnison 1.0.46 (and 1.0.50, upstream's newest) redirects an invalid authorize request to its "
    "redirect_uri (OpenIDConnectIdP.doGet, action auth: missing state, unknown client, unlisted "
    "redirect_uri); no setting or release fixes it, and a Traefik QueryRegexp filter is bypassed by a "
    "repeated redirect_uri (Traefik matches any value, OpenUnison reads the first)"
)


def authorize_backends(plan: dict, url: str) -> list[str]:
    """The Services the plan's Ingresses send `url` to (longest matching path per rule, as the Ingress API says)."""
    parts = urlsplit(url)
    found = []
    for resource in plan["resources"]:
        if resource["type"] != "kubernetes:networking.k8s.io/v1:Ingress":
            continue
        ingress = resource["inputs"]
        for rule in ingress["spec"].get("rules", []):
            if rule.get("host") != parts.hostname:
                continue
            matching = [p for p in rule["http"]["paths"] if _path_matches(p, parts.path)]
            if matching:
                best = max(matching, key=lambda p: len(p["path"]))
                found.append(f"{ingress['metadata']['namespace']}/{best['backend']['service']['name']}")
    return found


def _path_matches(path: dict[str, Any], request_path: str) -> bool:
    if path["pathType"] == "Exact":
        return request_path == path["path"]
    prefix = path["path"].rstrip("/")
    return request_path == prefix or request_path.startswith(prefix + "/") or not prefix


def authorize_requests(plan: dict) -> dict[str, str]:
    """The requests OpenUnison answers with a redirect to the attacker's page: one per check it fails."""
    authorize = plan["outputs"]["issuerUrl"] + "/auth"
    base = {"response_type": "code", "scope": "openid", "redirect_uri": PHISHING}
    return {
        "unknown client": f"{authorize}?{urlencode({**base, 'client_id': 'no-such-client', 'state': 's'})}",
        "known client, unlisted redirect_uri": f"{authorize}?{urlencode({**base, 'client_id': 'gitlab', 'state': 's'})}",
        "no state": f"{authorize}?{urlencode({**base, 'client_id': 'gitlab'})}",
    }


OPENUNISON = {f"{NAMESPACE}/{SERVICE}", f"{NAMESPACE}/{STICKY_SERVICE}"}


def test_a_valid_authorize_request_reaches_openunison(plan: dict) -> None:
    """What the attempts below change is the client, the redirect_uri or the state: with the plan's
    own, the request reaches OpenUnison (so their routing check can see it)."""
    trusts = {r["inputs"]["spec"]["clientId"]: r["inputs"]["spec"] for r in plan["resources"] if r["inputs"].get("kind") == "Trust"}
    assert "gitlab" in trusts and "no-such-client" not in trusts
    [registered] = trusts["gitlab"]["redirectURI"]
    query = {"response_type": "code", "scope": "openid", "client_id": "gitlab", "redirect_uri": registered, "state": "s"}
    [backend] = authorize_backends(plan, f"{plan['outputs']['issuerUrl']}/auth?{urlencode(query)}")
    assert backend in OPENUNISON


@pytest.mark.xfail(strict=True, reason=OPEN_REDIRECT)
@pytest.mark.parametrize("attempt", ["unknown client", "known client, unlisted redirect_uri", "no state"])
def test_an_invalid_authorize_request_never_reaches_openunison(plan: dict, attempt: str) -> None:
    url = authorize_requests(plan)[attempt]
    assert not OPENUNISON & set(authorize_backends(plan, url)), url


# --- another spelling of a member's user id --------------------------------------------------------


@needs_node
def test_another_spelling_of_a_members_id_gets_no_token(renders: dict, tmp_path: Path) -> None:
    """mallory's id at the upstream source is a tenant member's id in other case (`ALICE`: a source
    whose user claim is case-sensitive, such as a self-service directory's user name, lets her choose
    it). GitLab finds the account of an OIDC sign-in by its identity without regard to case, so her
    sign-in would open the member's GitLab account, with every repository they own; OpenUnison must
    give her no token. The member keeps theirs."""
    plan = renders["dev"].plan
    [provider] = gitlab_omniauth(plan)["allowSingleSignOn"]
    answer = {"kind": "ConfigMapList", "items": local_groups(plan)}
    members = sorted({m for config_map in answer["items"] for ids in config_map["data"].values() for m in ids.split("\n") if m})
    assert members
    for member in members:
        assert run_task(tmp_path, jit_script(plan), uid=member, groups=[], answer=answer)["error"] is None
        for other in {member.upper(), member.title()} - {member}:
            assert gitlab_account(plan, provider, other, f"mallory@{other}.example") == member  # what GitLab would open
            state = run_task(tmp_path, jit_script(plan), uid=other, groups=[], answer=answer)
            assert state["error"] is not None, (other, state)


def openunison_user(sub: str, name: str) -> dict[str, Any]:
    """The User object OpenUnison's JIT keeps for whoever signed in as `sub` (K8sCrdUserProvider)."""
    return {"apiVersion": "openunison.tremolo.io/v1", "kind": "User", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"sub": sub, "uid": name}}


@needs_node
def test_another_spelling_of_someone_who_signed_in_gets_no_token(charted: dict, tmp_path: Path) -> None:
    """A system approver or cluster admin is in no tenant: GitLab made their account at their first
    sign-in (blockAutoCreatedUsers is false) with the identity of the id they signed in with, and
    OpenUnison keeps a User object for them, named by OpenShiftTarget.sub2uid (ASCII letters lower-cased,
    any character but a-z, '.' and '-' as x-<code>-x). mallory, signing in as another spelling of that id,
    would open the approver's GitLab account and approve what needs a system approver."""
    plan = charted["dev"].plan
    assert gitlab_omniauth(plan)["blockAutoCreatedUsers"] is False
    answer = {"kind": "ConfigMapList", "items": local_groups(plan)}
    approver = "Sam.Approver2"
    assert approver.lower() not in {m.lower() for c in answer["items"] for ids in c["data"].values() for m in ids.split("\n")}
    users = {"sam.approverx-50-x": openunison_user(approver, "sam.approverx-50-x")}
    assert run_task(tmp_path, jit_script(plan), uid=approver, groups=[], answer=answer, users=users)["error"] is None
    for other in ("SAM.APPROVER2", "sam.approver2", "Sam.approver2"):
        state = run_task(tmp_path, jit_script(plan), uid=other, groups=[], answer=answer, users=users)
        assert state["error"] is not None, (other, state)
    # A first sign-in (no User object yet) is let in.
    assert run_task(tmp_path, jit_script(plan), uid="newcomer", groups=[], answer=answer, users=users)["error"] is None
    # The JIT reads User objects as OpenUnison's service account, which the orchestra chart lets do so.
    assert "get" in user_object_verbs(plan) or "*" in user_object_verbs(plan)


def user_object_verbs(plan: dict) -> set[str]:
    """What OpenUnison's service account may do with User objects in its namespace, by the rendered orchestra chart."""
    [orchestra] = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "orchestra"]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in orchestra["rendered"]}
    verbs: set[str] = set()
    for binding in (o for o in objects.values() if o["kind"] == "RoleBinding"):
        if {"kind": "ServiceAccount", "name": OPENUNISON_SERVICE_ACCOUNT, "namespace": NAMESPACE} not in binding.get("subjects", []):
            continue
        role = objects.get((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
        for rule in (role or {}).get("rules", []):
            if "openunison.tremolo.io" in rule.get("apiGroups", []) and "users" in rule.get("resources", []):
                verbs |= set(rule["verbs"])
    return verbs

