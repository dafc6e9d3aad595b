"""An attacker's pass over the identity hub: OpenUnison's OIDC provider and the clients built on it.

Each test is one attempt by someone with no account, or with an account at the upstream identity
source, against what the plan declares; it must fail for the attacker.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import re2  # Google's RE2: Go's regexp (Traefik's QueryRegexp) has its syntax and semantics

from components.ingress import NAMESPACE as INGRESS_NAMESPACE
from components.openunison import NAMESPACE, OPENUNISON_SERVICE_ACCOUNT, REDIRECT_FILTER, ROUTE, SERVICE, STICKY_SERVICE, unregistered_pattern
from tests.validation import crd_errors
from tests.test_openunison import traefik_ingress_route_crd
from tests.test_openunison_groups import needs_node, run_task
from tests.test_people_attacks import gitlab_account, gitlab_omniauth, jit_script, local_groups

RELEASE = "kubernetes:helm.sh/v3:Release"

# --- the authorize endpoint as an open redirect ----------------------------------------------------

# OpenUnison 1.0.46 (openunison-k8s:1.0.46, the orchestra chart 3.1.40's; TremoloSecurity/OpenUnison tag
# 1.0.46-2026032001), OpenIDConnectIdP.doGet, action "auth": a request without `state`, with a
# `client_id` no Trust has, or with a `redirect_uri` its Trust does not list is answered with a
# redirect to that `redirect_uri`, before any sign-in (RFC 6749 4.1.2.1 forbids it); no setting
# changes it and upstream's newest tag (1.0.50-2026052501) still does it. So the platform's Traefik
# answers any request with a redirect_uri value no client registered itself (components/openunison.py
# REDIRECT_FILTER). These tests route each request through the plan's routers as Traefik v3.6.2 ranks
# them (the highest priority whose rule matches; an Ingress path's priority is its rule's length,
# pkg/muxer/http/mux.go), QueryRegexp matching when any value of the key matches under RE2
# (pkg/muxer/http/matcher.go): they prove the routing and the pattern, not a running Traefik.
PHISHING = "https://login.attacker.example/"
OPENUNISON = {f"{NAMESPACE}/{SERVICE}", f"{NAMESPACE}/{STICKY_SERVICE}"}
FILTERED = "noop@internal"  # Traefik's own service: answers 418, no Location


def routing_path(url: str) -> str:
    """The path Traefik v3.6.2 routes on and forwards: unreserved %-escapes decoded (normalizePath), dot
    segments and repeated slashes removed (sanitizePath: URL.JoinPath), reserved escapes kept
    (withRoutingPath; pkg/server/server_entrypoint_tcp.go, pkg/muxer/http/mux.go)."""
    raw = urlsplit(url).path
    decoded = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m[1], 16)) if re.fullmatch(r"[A-Za-z0-9._~-]", chr(int(m[1], 16))) else m[0].upper(), raw)
    clean = posixpath.normpath(re.sub(r"/+", "/", decoded))
    return clean + "/" if raw.endswith("/") and clean != "/" else clean


def _matches(rule: str, url: str) -> bool:
    """The plan's IngressRoute rules: `&&` of `Host`, `QueryRegexp`, `PathRegexp` and parenthesised `||` of them
    (anything else fails the test)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)

    def term(text: str) -> bool:
        if text.startswith("(") and text.endswith(")"):
            return any(term(t) for t in text[1:-1].split(" || "))
        name, args = text[:text.index("(")], re.findall(r"`([^`]*)`", text)
        if name == "Host":
            return args == [parts.hostname]
        if name == "QueryRegexp":
            key, pattern = args
            return any(re2.search(pattern, value) for value in query.get(key, []))
        if name == "PathRegexp":
            return bool(re2.search(args[0], routing_path(url)))
        if name == "PathPrefix":  # character-wise (pkg/muxer/http/matcher.go pathPrefix)
            return routing_path(url).startswith(args[0])
        raise AssertionError(f"a matcher this model does not know: {text[:80]}")

    return all(term(t) for t in rule.split(" && "))


def route(plan: dict, url: str) -> str:
    """Where Traefik sends `url`: the backend of the highest-priority router of the plan that matches it (a Service
    of Traefik's namespace as `<namespace>/<name>` of the Service its ExternalName names, `resolved`)."""
    return resolved(plan, router(plan, url)[0])


def external_names(plan: dict[str, Any]) -> dict[str, str]:
    """The ExternalName Services in Traefik's namespace (the routes' backends there): name -> the name they point at."""
    return {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"]["externalName"] for r in plan["resources"]
            if r["type"] == "kubernetes:core/v1:Service" and (r["inputs"].get("spec") or {}).get("type") == "ExternalName"
            and r["inputs"]["metadata"]["namespace"] == INGRESS_NAMESPACE}


def resolved(plan: dict, service: str) -> str:
    """`<namespace>/<name>` of the in-cluster Service that `service`, an IngressRoute's in Traefik's namespace, names
    (`<name>.<namespace>.svc.cluster.local`); `service` itself if it is no ExternalName Service there."""
    target = external_names(plan).get(service)
    if target is None:
        return service
    name, namespace, *_ = target.split(".")
    return f"{namespace}/{name}"


MIDDLEWARES = "traefik.ingress.kubernetes.io/router.middlewares"


def router(plan: dict, url: str) -> tuple[str, list[str]]:
    """The highest-priority router of the plan that matches `url` (its Ingresses, those its charts
    render, its IngressRoutes): its backend and its middlewares, in order."""
    parts, at = urlsplit(url), routing_path(url)
    found: list[tuple[int, str, list[str]]] = []
    ingresses = [r["inputs"] for r in plan["resources"] if r["type"] == "kubernetes:networking.k8s.io/v1:Ingress"] + [
        {**o, "metadata": {"namespace": r["inputs"].get("namespace"), **o["metadata"]}}
        for r in plan["resources"] if r["type"] == RELEASE for o in r.get("rendered") or [] if o["kind"] == "Ingress"]
    for inputs in ingresses:
        middlewares = [m for m in (inputs["metadata"].get("annotations") or {}).get(MIDDLEWARES, "").split(",") if m]
        for rule in inputs["spec"].get("rules", []):
            for path in rule["http"]["paths"] if rule.get("host") == parts.hostname else []:
                prefix = path["path"].rstrip("/")
                if at == path["path"] or (path["pathType"] == "Prefix" and at.startswith(prefix + "/")):
                    text = f"Host(`{rule['host']}`) && PathPrefix(`{path['path']}`)"  # Traefik's rule for it
                    backend = f"{inputs['metadata']['namespace']}/{path['backend']['service']['name']}"
                    found.append((len(text), backend, middlewares))
    for resource in plan["resources"]:
        inputs = resource["inputs"]
        if inputs.get("kind") == "IngressRoute":
            for r in inputs["spec"]["routes"]:
                if _matches(r["match"], url):
                    middlewares = [f"{m.get('namespace', inputs['metadata']['namespace'])}-{m['name']}@kubernetescrd" for m in r.get("middlewares", [])]
                    found.append((r.get("priority") or len(r["match"]), ",".join(s["name"] for s in r["services"]), middlewares))
    assert found, url
    priority, backend, middlewares = max(found)
    return backend, middlewares


def portal_objects(plan: dict) -> list[dict]:
    """The login portal chart's objects as the real Helm engine rendered them."""
    [portal] = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"]["chart"] == "orchestra-login-portal"]
    return portal["rendered"]


def registered_uris(plan: dict) -> set[str]:
    """Every redirect URI a client registered: our Trusts' and those of every trust the login portal's
    identity providers declare (k8sIdp's public kubernetes client, k8s-login-cli's cli-local for
    `kubectl oulogin`)."""
    uris = {uri for r in plan["resources"] if r["inputs"].get("kind") == "Trust" for uri in r["inputs"]["spec"]["redirectURI"]}
    [orchestra] = [r for r in plan["resources"] if r["type"] == RELEASE and r["inputs"]["chart"] == "orchestra"]
    k8s_url = orchestra["inputs"]["values"]["network"]["k8s_url"]
    trusts = [t for o in portal_objects(plan) if o["kind"] == "Application" for u in o["spec"]["urls"] for t in (u.get("idp") or {}).get("trusts", [])]
    assert {t["params"]["clientID"] for t in trusts} >= {"kubernetes", "cli-local"}
    declared = [t["params"]["redirectURI"] for t in trusts]
    return uris | {uri.replace("#[K8S_URL]", k8s_url) for value in declared for uri in ([value] if isinstance(value, str) else value)}


def authorize(plan: dict, **query: str | list[str]) -> str:
    return f"{plan['outputs']['issuerUrl']}/auth?{urlencode({'response_type': 'code', 'scope': 'openid', **query}, doseq=True)}"


def test_every_registered_redirect_reaches_openunison(charted: dict) -> None:
    for plan in (render.plan for render in charted.values()):
        uris = registered_uris(plan)
        assert len(uris) >= 8  # four confidential clients, Vault's CLI, kubernetes' three, cli-local's
        for uri in uris:
            assert route(plan, authorize(plan, client_id="gitlab", redirect_uri=uri, state="s")) in OPENUNISON, uri
        # kubectl oulogin (TremoloSecurity/kubectl-login, outokens): cli-local's authorize request, as it sends it.
        oulogin = re.sub(r"/k8sIdp$", "/k8s-login-cli", plan["outputs"]["issuerUrl"]) + "/auth?" + urlencode({
            "response_type": "code", "client_id": "cli-local", "redirect_uri": "http://127.0.0.1:8400/redirect",
            "scope": "openid profile email", "state": "s", "code_challenge": "c", "code_challenge_method": "S256"})
        assert route(plan, oulogin) in OPENUNISON
        assert route(plan, f"{plan['outputs']['issuerUrl']}/.well-known/openid-configuration") in OPENUNISON


ATTEMPTS = {
    "unknown client": {"client_id": "no-such-client", "redirect_uri": PHISHING, "state": "s"},
    "known client, unlisted redirect_uri": {"client_id": "gitlab", "redirect_uri": PHISHING, "state": "s"},
    "no state": {"client_id": "gitlab", "redirect_uri": PHISHING},
    # Traefik matches a key by any of its values, OpenUnison reads the first.
    "a registered redirect_uri after the attacker's": {"client_id": "gitlab", "state": "s", "redirect_uri": [PHISHING, "@gitlab"]},
    "a registered one with more after it": {"client_id": "gitlab", "state": "s", "redirect_uri": "@gitlab.attacker.example"},
    # OpenUnison takes the first parameter whose raw name matches without regard to case.
    "the parameter in capitals, before a registered one": {"client_id": "gitlab", "state": "s", "REDIRECT_URI": PHISHING, "redirect_uri": "@gitlab"},
    "the parameter in mixed case": {"client_id": "gitlab", "state": "s", "Redirect_Uri": PHISHING},
}


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_an_authorize_request_that_openunison_would_redirect_anywhere_never_reaches_it(charted: dict, attempt: str) -> None:
    for plan in (render.plan for render in charted.values()):
        [gitlab] = [r["inputs"]["spec"]["redirectURI"][0] for r in plan["resources"]
                    if r["inputs"].get("kind") == "Trust" and r["inputs"]["spec"]["clientId"] == "gitlab"]
        query = {key: ([v.replace("@gitlab", gitlab) for v in value] if isinstance(value, list) else value.replace("@gitlab", gitlab))
                 for key, value in ATTEMPTS[attempt].items()}
        assert route(plan, authorize(plan, **query)) == FILTERED


def filter_routes(plan: dict) -> list[str]:
    [routes] = [r["inputs"]["spec"]["routes"] for r in plan["resources"]
                if r["inputs"].get("kind") == "IngressRoute" and r["inputs"]["metadata"]["name"] == REDIRECT_FILTER]
    return [r["match"] for r in routes]


def test_the_filter_names_every_other_spelling_of_the_parameter(charted: dict) -> None:
    for plan in (render.plan for render in charted.values()):
        [_, spellings, _] = filter_routes(plan)
        names = re.findall(r"QueryRegexp\(`([^`]*)`, `\^`\)", spellings)
        assert len(names) == len(set(names)) == 2 ** sum(c.isalpha() for c in "redirect_uri") - 1  # each letter in either case, but as sent
        assert {n.lower() for n in names} == {"redirect_uri"} and "redirect_uri" not in names


def test_the_filter_pattern_refuses_every_value_but_the_registered_ones(charted: dict) -> None:
    for plan in (render.plan for render in charted.values()):
        [values, _, _] = filter_routes(plan)
        [pattern] = [re.findall(r"`([^`]*)`", term)[1] for term in values.split(" && ") if term.startswith("QueryRegexp")]
        uris = registered_uris(plan)
        for uri in uris:
            assert not re2.search(pattern, uri), uri
            for other in {uri + "x", uri + "/", uri[:-1], uri.upper(), uri + "\n", " " + uri, uri.replace(".", "x", 1)} - uris:
                assert re2.search(pattern, other), other
        assert all(re2.search(pattern, v) for v in ("", PHISHING, "http://localhost:8001", "https://localhost:8000"))


@pytest.mark.parametrize("values", [["a.b", "a-b]", "x\\y^", "[(*)]"], ["only"], ["", "ab", "abc"]])
def test_the_pattern_is_the_complement_of_its_values(values: list[str]) -> None:
    """unregistered_pattern on characters RE2 treats specially, in and out of brackets, checked by RE2 itself."""
    pattern = unregistered_pattern(values)
    alphabet = sorted({c for v in values for c in v} | {"z", "\n"})
    candidates = {""} | {a + b + c for a in alphabet for b in ["", *alphabet] for c in ["", *alphabet]} | set(values)
    candidates |= {v[:i] + c + v[i + 1:] for v in values for i in range(len(v) + 1) for c in alphabet} | {v + c for v in values for c in alphabet}
    for candidate in candidates:
        assert bool(re2.search(pattern, candidate)) == (candidate not in values), (values, candidate)


def test_the_filter_is_a_valid_traefik_route_on_the_portal_certificate(charted: dict) -> None:
    crd = traefik_ingress_route_crd()
    for plan in (render.plan for render in charted.values()):
        routes = {r["inputs"]["metadata"]["name"]: r for r in plan["resources"] if r["inputs"].get("kind") == "IngressRoute"}
        portal, found = routes[ROUTE], routes[REDIRECT_FILTER]
        assert crd_errors(found["inputs"], crd) == []
        assert found["inputs"]["metadata"]["namespace"] == portal["inputs"]["metadata"]["namespace"] == INGRESS_NAMESPACE
        assert found["inputs"]["spec"]["tls"] == portal["inputs"]["spec"]["tls"]
        assert [r["services"] for r in found["inputs"]["spec"]["routes"]] == [[{"kind": "TraefikService", "name": FILTERED}]] * 3
        traefik = [r["urn"] for r in plan["resources"] if r["type"] == RELEASE and r["inputs"]["chart"] == "traefik" and r["cluster"] == found["cluster"]]
        assert set(traefik) & set(found["dependsOn"])  # its CRD first


# --- OpenUnison's other redirects to a request's parameter -------------------------------------------

# OpenUnison 1.0.46 serves /auth/forms/ with no authentication or authorization (NextEmbSys, state
# Auth: "processesing the authentications, skip auth and az processing"), to any visitor (an open
# session gets the anonymous AuthController, SessionManagerImpl.createOpenSession). Its login-splash.jsp
# writes the `redirto` parameter unescaped into `window.location.href = "<redirto>?finishsso=true"`: a
# link to it on the portal's host sends the browser anywhere, and a `"` in it runs the attacker's script
# on the sign-in origin (upstream took the parameter out in 1.0.50, commit 4f2bbb59, issue #1077).
# Two more sinks, not shown reachable: clearLogin.jsp answers `sendRedirect(request.getParameter("target"))`
# but first reads a holder a request to /auth/forms/ does not have; SAML2Auth.doPost (/auth/saml2, the
# chart's `saml2` mechanism) redirects a signed-in session to `RelayState` (query or form body) before
# reading any SAML message, behind AuthMgrSys's check of the chain's step. No flow of the platform's uses
# any of them (no SAML upstream; SplashPageAuth unconfigured), so the filter answers every path to them.
ELSEWHERE = f"{PHISHING}x"
SCRIPT = '";location=atob(`aHR0cHM6Ly9ldmls`)//'  # closes the page's string: the attacker's script on the sign-in origin
PAGE_ATTEMPTS = {
    "login-splash's redirto": ("/auth/forms/login-splash.jsp", {"redirto": ELSEWHERE}),
    "login-splash's redirto, a script": ("/auth/forms/login-splash.jsp", {"redirto": SCRIPT}),
    "login-splash, a path parameter": ("/auth/forms/login-splash.jsp;jsessionid=1", {"redirto": ELSEWHERE}),
    # Undertow drops each segment's ;parameters from the path it maps (HttpRequestParser.handlePathParameters).
    "login-splash, parameters on a directory": ("/auth;a=1/forms;b/login-splash.jsp", {"redirto": ELSEWHERE}),
    "login-splash, a segment of parameters": ("/;a/auth/;b/forms/;c/login-splash.jsp", {"redirto": ELSEWHERE}),
    "SAML2Auth, parameters on a directory": ("/auth;a/saml2", {"RelayState": ELSEWHERE}),
    "login-splash, dot segments and slashes": ("/auth//forms/./x/../login-splash.jsp", {"redirto": ELSEWHERE}),
    "login-splash, escaped letters": ("/auth/forms/login%2Dsplash%2Ejsp", {"redirto": ELSEWHERE}),
    "login-splash, another case": ("/Auth/Forms/Login-Splash.JSP", {"redirto": ELSEWHERE}),
    "clearLogin's target": ("/auth/forms/clearLogin.jsp", {"target": ELSEWHERE}),
    "SAML2Auth's RelayState": ("/auth/saml2", {"RelayState": ELSEWHERE}),
    "SAML2Auth, a form post (RelayState in the body)": ("/auth/saml2", {}),
    "SAML2Auth, another case": ("/AUTH/SAML2/", {}),
}


@pytest.mark.parametrize("attempt", sorted(PAGE_ATTEMPTS))
def test_a_page_that_redirects_to_a_request_parameter_never_reaches_openunison(charted: dict, attempt: str) -> None:
    for plan in (render.plan for render in charted.values()):
        host = urlsplit(plan["outputs"]["issuerUrl"]).hostname
        path, query = PAGE_ATTEMPTS[attempt]
        assert route(plan, f"https://{host}{path}?{urlencode(query)}") == FILTERED


def portal_paths(plan: dict, host: str) -> set[str]:
    """Every path on the portal's host a flow of the rendered charts sends a browser or client to: each
    application URL, each chained mechanism's URI, each static redirect, each form and service page a
    mechanism names, and the pages kubectl-login's outokens and the logout redirect end on."""
    objects = portal_objects(plan)

    def here(value: str) -> set[str]:
        parts = urlsplit(value.replace("#[OU_HOST]", host))
        return {parts.path} if value.startswith("/") or parts.hostname == host else set()

    mechs = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "AuthenticationMechanism"}
    chained = [m for o in objects if o["kind"] == "AuthenticationChain" for m in o["spec"]["authMechs"]]
    paths = {u["uri"].strip("^$") for o in objects if o["kind"] == "Application" for u in o["spec"]["urls"]}
    paths |= {mechs[m["name"]]["uri"] for m in chained}
    paths |= {p for m in chained for v in (m.get("params") or {}).values() if isinstance(v, str) for p in here(v)}
    paths |= {p for o in objects if o["kind"] == "ResultGroup" for r in o["spec"] if r["resultType"] == "redirect" for p in here(r["value"])}
    return paths | {"/auth/forms/cli-login-finished.jsp", "/auth/forms/logout.jsp", "/auth/forms/chooseLogin.jsp"}


def test_every_path_a_flow_uses_still_reaches_openunison(charted: dict) -> None:
    for plan in (render.plan for render in charted.values()):
        host = urlsplit(plan["outputs"]["issuerUrl"]).hostname
        paths = portal_paths(plan, host)
        assert {"/login/auth", "/auth/oidc", "/auth/forms/defaultFailedLogin.jsp", "/logout", "/cli-login"} <= paths
        for path in paths:
            assert route(plan, f"https://{host}{path}") in OPENUNISON, path


def test_openunison_hears_only_the_portal_host(charted: dict) -> None:
    """OpenUnison builds redirects from the request's Host (ProxyTools.getFqdnUrl, OpenIDConnectIdP.genFinalURL,
    UnisonServletFilter's move to https) and reads no X-Forwarded-Host (only its XForward filter writes one,
    to the portal's pages); Traefik forwards the Host its rule matched. So every route to OpenUnison names
    the portal's host alone, and its Services are reachable only inside the cluster."""
    for plan in (render.plan for render in charted.values()):
        host = urlsplit(plan["outputs"]["issuerUrl"]).hostname
        hosts: list[str | None] = []
        for resource in plan["resources"]:
            inputs = resource["inputs"]
            if resource["type"] == "kubernetes:networking.k8s.io/v1:Ingress":
                backend = (inputs["spec"].get("defaultBackend") or {}).get("service", {}).get("name")
                assert f"{inputs['metadata'].get('namespace')}/{backend}" not in OPENUNISON, resource["urn"]
                hosts += [rule.get("host") for rule in inputs["spec"].get("rules", []) for path in rule["http"]["paths"]
                          if f"{inputs['metadata']['namespace']}/{path['backend']['service']['name']}" in OPENUNISON]
            elif inputs.get("kind") == "IngressRoute":
                for r in inputs["spec"]["routes"]:
                    if {resolved(plan, s["name"]) for s in r["services"]} & OPENUNISON:
                        hosts += re.findall(r"^Host\(`([^`]*)`\) && ", r["match"]) or [None]
        assert hosts == [host]
        services = [(o, r["inputs"]["namespace"]) for r in plan["resources"] if r["type"] == RELEASE
                    for o in r.get("rendered") or [] if o["kind"] == "Service"]
        services += [(r["inputs"], None) for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Service"]
        exposed = [(meta.get("namespace") or namespace, meta["name"], service["spec"].get("type", "ClusterIP"))
                   for service, namespace in services for meta in [service.get("metadata") or {}]
                   if f"{meta.get('namespace') or namespace}/{meta.get('name')}" in OPENUNISON]
        assert exposed and {kind for *_, kind in exposed} == {"ClusterIP"}, exposed


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

