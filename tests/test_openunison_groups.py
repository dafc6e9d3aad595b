"""Tenants' role groups in OpenUnison's tokens (components/openunison.py, local groups).

The plan: the login portal's standard JIT is replaced by ours (the chart's steps, checked
against a copy of the upstream template, plus one task), OpenUnison may read the local-groups
ConfigMaps, and each tenant declares exactly its configured members per role. The task's
JavaScript runs under node against fakes of OpenUnison's Java objects.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.openunison import (
    JIT_WORKFLOW,
    LOCAL_GROUPS_LABEL,
    OPENUNISON_SERVICE_ACCOUNT,
    local_groups_script,
)
from components.tenancy import ROLES
from platformctl.render import enclosing, read_stack_file
from stacks.config import PlatformConfig, load_platform_config

ROOT = Path(__file__).resolve().parent.parent
STANDARD_TASKS = ROOT / "tests" / "fixtures" / "openunison" / "jitdb-standard-tasks.yaml"


def _objects(plan: dict, kind: str) -> list[dict]:
    return [r for r in plan["resources"] if r["custom"] and r["inputs"].get("kind") == kind]


def _release(plan: dict, chart: str) -> dict:
    [found] = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == chart]
    return found


def test_our_jit_replaces_the_portals_with_the_same_steps_plus_local_groups(plan: dict) -> None:
    assert _release(plan, "orchestra-login-portal")["inputs"]["values"]["openunison"]["use_standard_jit_workflow"] is False
    [workflow] = [w for w in _objects(plan, "Workflow") if w["inputs"]["metadata"]["name"] == JIT_WORKFLOW]
    assert workflow["cluster"] == "control-plane" and workflow["inputs"]["metadata"]["namespace"] == "openunison"
    tasks = yaml.safe_load(workflow["inputs"]["spec"]["tasks"])
    local = tasks.pop(1)  # right after the upstream groups become the user's groups
    assert local["className"] == "com.tremolosecurity.provisioning.customTasks.JavaScriptTask"
    identity = stack_config(plan).identity
    assert local["params"]["javaScript"] == local_groups_script([*identity.cluster_admins, *identity.system_approvers])
    assert tasks == yaml.safe_load(STANDARD_TASKS.read_text())
    # After the portal, which removes its own `jitdb` when it stops declaring it.
    assert _release(plan, "orchestra-login-portal")["urn"] in workflow["dependsOn"]


def test_openunison_may_read_configmaps_in_its_namespace_only(plan: dict) -> None:
    [role] = [r for r in _objects(plan, "Role") if r["inputs"]["metadata"]["name"] == "platform-local-groups"]
    assert role["inputs"]["metadata"]["namespace"] == "openunison"
    assert role["inputs"]["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    [binding] = [r for r in _objects(plan, "RoleBinding") if r["inputs"]["metadata"]["name"] == "platform-local-groups"]
    assert binding["inputs"]["subjects"] == [{"kind": "ServiceAccount", "name": OPENUNISON_SERVICE_ACCOUNT, "namespace": "openunison"}]
    assert binding["inputs"]["roleRef"]["kind"] == "Role"


def stack_config(plan: dict) -> PlatformConfig:
    """The validated stack config `plan` was rendered from."""
    stack = "dev" if "dev" in plan["outputs"]["issuerUrl"] else "prod"
    raw, secrets = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    return load_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml", secret_keys=secrets)


def test_each_tenant_declares_exactly_its_members_per_role(plan: dict) -> None:
    config = stack_config(plan)
    owner = enclosing(plan, "platform:tenant:Tenant")
    maps = {m["inputs"]["metadata"]["name"]: m for m in _objects(plan, "ConfigMap")
            if (m["inputs"]["metadata"].get("labels") or {}).get(LOCAL_GROUPS_LABEL) == "true"}
    assert sorted(maps) == sorted(f"local-groups-{t.name}" for t in config.tenants)
    portal = _release(plan, "orchestra-login-portal")
    for tenant in config.tenants:
        found = maps[f"local-groups-{tenant.name}"]
        assert found["cluster"] == "control-plane" and found["inputs"]["metadata"]["namespace"] == "openunison"
        assert owner[found["urn"]] == tenant.name and portal["urn"] in found["dependsOn"]
        # Every role's group is there (an empty one is still reserved), with its members only.
        expected = {f"{tenant.name}-{role}": "\n".join(sorted(getattr(tenant, role))) for role in ROLES}
        assert found["inputs"]["data"] == expected


NODE_HARNESS = """
const world = JSON.parse(process.argv[2]);
function JavaList(items) { this.items = items.slice(); }
JavaList.prototype.size = function () { return this.items.length; };
JavaList.prototype.get = function (i) { return this.items[i]; };
JavaList.prototype.clear = function () { this.items = []; };
JavaList.prototype.add = function (x) { this.items.push(x); };
JavaList.prototype.contains = function (x) { return this.items.indexOf(x) >= 0; };
const closed = {http: false, bcm: false};
let asked = null;
const provider = {
  createClient: () => ({getHttp: () => ({close: () => { closed.http = true; }}), getBcm: () => ({close: () => { closed.bcm = true; }})}),
  getAuthToken: () => "sa-token",
  callWS: (token, con, uri) => {
    if (world.fail) { throw "connection refused"; }
    // OpenUnison's User objects (world.users, by name), as the API server answers: the object or a 404 Status.
    const users = "/apis/openunison.tremolo.io/v1/namespaces/openunison/users/";
    if (uri.startsWith(users)) { return JSON.stringify((world.users || {})[uri.slice(users.length)] || {kind: "Status", code: 404}); }
    asked = uri;
    return JSON.stringify(world.answer);
  },
};
const types = {"com.tremolosecurity.server.GlobalEntries": {getGlobalEntries: () => ({getConfigManager: () => ({
  getProvisioningEngine: () => ({getTarget: (name) => (name === "k8s" ? {getProvider: () => provider} : null)})})})}};
global.Java = {type: (name) => types[name]};
const groups = new JavaList(world.groups);
const user = {
  getGroups: () => groups,
  getAttribs: () => ({get: (n) => (n === "uid" && world.uid !== null ? {getValues: () => ({get: () => world.uid})} : null)}),
};
eval(require("fs").readFileSync(process.argv[3], "utf8"));
let result, error = null;
try { result = doTask(user, {}); } catch (e) { error = String(e); }
process.stdout.write(JSON.stringify({result: result, error: error, groups: groups.items, asked: asked, closed: closed}));
"""

CONFIG_MAPS = {
    "kind": "ConfigMapList",
    "items": [
        {"data": {"payments-owners": "alice", "payments-developers": "bob\ncarol", "payments-ops": ""}},
        {"data": {"catalog-owners": "erin", "catalog-developers": "bob", "catalog-ops": "dave"}},
        {"metadata": {"name": "no-data"}},
    ],
}


def run_task(tmp_path: Path, javascript: str | None = None, **world: object) -> dict:
    """Runs `javascript` (by default the task as the program writes it) on `world`."""
    script = tmp_path / "task.js"
    script.write_text(local_groups_script(["platform-admins"]) if javascript is None else javascript)
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)
    defaults = {"groups": [], "uid": "bob", "answer": CONFIG_MAPS, "fail": False}
    result = subprocess.run(["node", str(harness), json.dumps({**defaults, **world}), str(script)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the task's JavaScript; not installed here")


@needs_node
def test_the_jit_task_adds_the_users_groups_and_only_the_stack_grants_them(tmp_path: Path) -> None:
    # bob is a developer of payments and catalog; upstream claims he owns payments and is in "staff".
    state = run_task(tmp_path, groups=["staff", "payments-owners", "staff"])
    assert state["error"] is None and state["result"] is True
    assert state["groups"] == ["staff", "payments-developers", "catalog-developers"]
    assert state["asked"] == "/api/v1/namespaces/openunison/configmaps?labelSelector=" + LOCAL_GROUPS_LABEL.replace("/", "%2F")
    assert state["closed"] == {"http": True, "bcm": True}


@needs_node
@pytest.mark.parametrize("uid", ["mallory", None, ""])
def test_someone_not_listed_gets_no_local_group_even_if_upstream_says_so(tmp_path: Path, uid: str | None) -> None:
    # An empty group (payments-ops) is reserved too; an empty id matches no member.
    state = run_task(tmp_path, uid=uid, groups=["payments-ops", "catalog-owners", "devs"])
    assert state["error"] is None and state["groups"] == ["devs"]


@needs_node
@pytest.mark.parametrize("world", [{"fail": True}, {"answer": {"kind": "Status", "code": 403}}])
def test_the_login_fails_when_the_local_groups_cannot_be_read(tmp_path: Path, world: dict) -> None:
    state = run_task(tmp_path, groups=["payments-owners"], **world)
    assert state["error"] and state["groups"] == ["payments-owners"]  # untouched: the JIT fails, no token
    assert state["closed"] == {"http": True, "bcm": True} or world.get("fail")
