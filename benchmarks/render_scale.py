"""How the offline render scales with the number of tenants, in CPU time.

Renders synthetic dev stacks (Pulumi.dev.yaml with `platform:tenants` replaced by
`team0001...`, each with its own owner, developer and ops user). Each size runs in a fresh
worker process, so that peak RSS (ru_maxrss) belongs to that size only; the worker imports
the program first (reported apart), renders, writes the files, and then measures the *mock
floor* in the same process: the same mock engine (RecordingMonitor over PlatformMocks,
through `run_under_mocks` like the render) registering as many plain ConfigMaps with a
provider and no program logic. All times are CPU seconds of the worker
(time.process_time): the machine is shared, so wall time says more about the neighbours
than about the render. Per size it prints registrations, ms CPU per registration for the
render and for the floor, the floor ratio (render CPU / floor CPU for the same number of
registrations), peak RSS after the render and after writing its files, and the worker's
whole CPU (getrusage of the child). "replay x" is render CPU / the CPU of replaying the render's
own plan through the same engine with no program (each registration's type, name, parent,
provider, dependsOn and inputs as plain values, through the SDK's untyped classes): what the
program's way of declaring (typed classes, Outputs, secrets) costs over what it declares.
"+charts s": CPU of the Helm engine rendering every release on top, as `platformctl render`
does when chart sources are fetched ("no charts" without them), with an empty release cache
so that every release is rendered; it runs in child processes (platformctl.helm_render), whose
CPU is included and whose largest peak RSS is "helm MiB" (not part of the worker's RSS).

It also prints the fresh-stack critical path (longest chain of the plan's dependency graph,
dependsOn + parent + provider edges, weighted by the typical creation times in CREATION_SECONDS),
the Helm releases whose chain includes another service's release, and checks that adding one
tenant to the stack changes nothing but that tenant's resources (`platformctl.diff`).
Finally it checks the targets: at 100 tenants a floor ratio <= 1.3 and <= 2 ms CPU per
registration; at 1,000 tenants a peak RSS <= 1 GiB.

    venv/bin/python benchmarks/render_scale.py                # 10, 100, 1000 tenants
    venv/bin/python benchmarks/render_scale.py --sizes 10,100 # quick
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
import pulumi_kubernetes as k8s  # noqa: E402
import yaml  # noqa: E402

from platformctl.diff import diff_renders  # noqa: E402
from platformctl.helm_render import CACHE_ENV, RELEASE_TYPE, render_plan_releases  # noqa: E402
from platformctl.render import Render, enclosing, read_stack_file, render, run_under_mocks, write_render  # noqa: E402
from stacks.config import load_platform_config  # noqa: E402
from stacks.platform import kubernetes_versions  # noqa: E402

# Typical creation time in seconds of one resource on a fresh stack, by kind: what a real
# `pulumi up` waits for (EKS control plane ~10 min, node group ~5 min, a Helm release until
# its pods are ready, GitLab's chart much longer); objects the API server stores at once ~2 s.
CREATION_SECONDS = {
    "eks-cluster": 600.0,
    "eks-node-group": 300.0,
    "helm-release": 120.0,
    "helm-release-gitlab": 600.0,
    "custom-resource": 5.0,  # a CRD instance: admission webhooks, controllers' first reconcile
    "kubernetes-object": 2.0,
    "cloud-resource": 10.0,  # AWS, Vault, GitLab and Harbor API objects, dynamic providers
    "generated": 0.0,  # random, tls, time: computed locally
    "logical": 0.0,  # components, providers, the stack
}
# API groups built into Kubernetes: objects of any other group are custom resources.
BUILTIN_GROUPS = {
    "core", "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "certificates.k8s.io", "discovery.k8s.io", "node.k8s.io", "apiregistration.k8s.io",
}


def creation_kind(r: dict[str, Any]) -> str:
    type_ = r["type"]
    if not r["custom"] or type_.startswith("pulumi:"):
        return "logical"
    if type_ == "aws:eks/cluster:Cluster":
        return "eks-cluster"
    if type_ == "aws:eks/nodeGroup:NodeGroup":
        return "eks-node-group"
    if type_.startswith("kubernetes:helm.sh/"):
        return "helm-release-gitlab" if r["inputs"].get("chart") == "gitlab" else "helm-release"
    if type_.startswith("kubernetes:"):
        group = type_.split(":")[1].rsplit("/", 1)[0]
        return "kubernetes-object" if group in BUILTIN_GROUPS else "custom-resource"
    if type_.split(":")[0] in ("random", "tls", "time"):
        return "generated"
    return "cloud-resource"


def edges(r: dict[str, Any], known: dict[str, Any]) -> list[str]:
    return [u for u in {r["parent"], r["provider"], *r["dependsOn"]} if u and u in known]


def critical_path(plan: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """Longest weighted chain; plan order is a topological order (creation_order)."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for r in plan["resources"]:
        deps = edges(r, by_urn)
        first = max(deps, key=lambda u: (finish[u], u), default=None)
        finish[r["urn"]] = CREATION_SECONDS[creation_kind(r)] + (finish[first] if first else 0.0)
        before[r["urn"]] = first
    end = max(finish, key=lambda u: (finish[u], u))
    chain: list[dict[str, Any]] = []
    current: str | None = end
    while current:
        chain.append(by_urn[current])
        current = before[current]
    chain.reverse()
    # Only members that take time: components and providers are bookkeeping.
    members = [
        {"name": r["name"], "type": r["type"], "seconds": CREATION_SECONDS[creation_kind(r)],
         "finishes": finish[r["urn"]]}
        for r in chain if CREATION_SECONDS[creation_kind(r)] > 0
    ]
    return finish[end], members


def serialized_releases(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Per Helm release, the other releases it waits for (transitively), with the first hop.

    Whether each wait is a real need (a CRD, a webhook, an issuer, a credential) is for a
    human to judge; the script only lists them.
    """
    by_urn = {r["urn"]: r for r in plan["resources"]}
    upstream: dict[str, set[str]] = {}  # URN -> releases it transitively waits for
    for r in plan["resources"]:
        waits: set[str] = set()
        for dep in edges(r, by_urn):
            waits |= upstream[dep]
            if by_urn[dep]["type"].startswith("kubernetes:helm.sh/"):
                waits.add(dep)
        upstream[r["urn"]] = waits
    report = []
    for r in plan["resources"]:
        if r["type"].startswith("kubernetes:helm.sh/") and upstream[r["urn"]]:
            direct = {d for d in r["dependsOn"] if d in upstream[r["urn"]]}
            report.append({
                "release": r["name"],
                "cluster": r["cluster"],
                "waitsFor": sorted(by_urn[u]["name"] for u in upstream[r["urn"]]),
                "direct": sorted(by_urn[u]["name"] for u in direct),
            })
    return report


def synthetic_tenants(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"team{i:04d}", "owners": [f"owner{i:04d}"], "developers": [f"dev{i:04d}"], "ops": [f"ops{i:04d}"]}
        for i in range(1, count + 1)
    ]


def stack_file(directory: Path, tenants: list[dict[str, Any]]) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["platform:tenants"] = tenants
    path = directory / f"Pulumi.bench-{len(tenants)}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def floor_cpu_seconds(count: int) -> float:
    """The mock engine alone: `count` plain ConfigMaps with a provider, as render runs programs."""

    def program() -> None:
        provider = k8s.Provider("floor-k8s", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        for i in range(count - 1):
            k8s.core.v1.ConfigMap(f"cm-{i}", metadata={"name": f"cm-{i}", "namespace": "default"},
                                  data={"key": "value"}, opts=opts)

    start = time.process_time()
    contextvars.Context().run(run_under_mocks, program, stack="floor")
    return time.process_time() - start


def replay_cpu_seconds(plan: dict[str, Any]) -> float:
    """The plan's registrations again, with no program: plain inputs, untyped classes, same engine."""

    def program() -> None:
        declared: dict[str, pulumi.Resource] = {}
        for r in plan["resources"]:
            if r["type"] == "pulumi:pulumi:Stack":
                continue
            opts = pulumi.ResourceOptions(
                parent=declared.get(r["parent"]), provider=declared.get(r["provider"] or ""),
                depends_on=[declared[d] for d in r["dependsOn"] if d in declared],
                additional_secret_outputs=r["options"]["additionalSecretOutputs"] or None,
            )
            if r["type"].startswith("pulumi:providers:"):
                declared[r["urn"]] = pulumi.ProviderResource(r["type"].split(":")[2], r["name"], dict(r["inputs"]), opts)
            elif r["custom"]:
                declared[r["urn"]] = pulumi.CustomResource(r["type"], r["name"], dict(r["inputs"]), opts)
            else:
                declared[r["urn"]] = pulumi.ComponentResource(r["type"], r["name"], None, opts)

    start = time.process_time()
    contextvars.Context().run(run_under_mocks, program, stack="replay")
    return time.process_time() - start


def as_json(render_result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    # What `platformctl diff` reads back from disk, without writing manifests.
    return json.loads(json.dumps(render_result.plan)), json.loads(json.dumps(render_result.fingerprints))


def tenant_of(plan: dict[str, Any]) -> dict[str, str | None]:
    return enclosing(plan, "platform:tenant:Tenant")


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker(count: int, with_diff: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"tenants": count}
    start = time.process_time()
    import stacks.platform  # noqa: F401  the program's modules, so that the render's CPU is the render's

    result["import_cpu_s"] = time.process_time() - start
    with tempfile.TemporaryDirectory() as tmp:
        tenants = synthetic_tenants(count)
        path = stack_file(Path(tmp), tenants)
        gc.collect()
        start, wall = time.process_time(), time.perf_counter()
        rendered = render(path, "dev")
        result["render_cpu_s"] = time.process_time() - start
        result["render_wall_s"] = time.perf_counter() - wall
        # The Helm engine on top (what `platformctl render` adds): every release from its local chart,
        # with an empty cache (so each is rendered, in child processes: their CPU counts).
        raw, secret_keys = read_stack_file(path)
        config = load_platform_config(raw, stack="dev", source=str(path), secret_keys=secret_keys)
        os.environ[CACHE_ENV] = str(Path(tmp) / "helm-cache")
        start, children = time.process_time(), child_cpu_seconds()
        releases = render_plan_releases(rendered.plan, kubernetes_versions(config))
        charts_cpu = time.process_time() - start + child_cpu_seconds() - children
        result["charts_cpu_s"] = None if releases.missing else charts_cpu
        result["helm_child_rss_mib"] = releases.helm_peak_rss_mib
        rendered = Render(rendered.plan, rendered.fingerprints, releases.missing, releases.manifests)
        result["releases"] = sum(1 for r in rendered.plan["resources"] if r["type"] == RELEASE_TYPE)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        plan = rendered.plan
        result["registrations"] = len(plan["resources"])
        result["resources"] = sum(1 for r in plan["resources"] if r["custom"])
        start = time.process_time()
        write_render(rendered, Path(tmp) / "out")
        result["write_cpu_s"] = time.process_time() - start
        # What `platformctl render` needs in all: plan.json's text and the manifests come on top.
        result["peak_rss_write_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["critical_path_s"], result["critical_path"] = critical_path(plan)
        result["serialized"] = serialized_releases(plan)
        base = as_json(rendered)
        if with_diff:
            del rendered, plan
            newcomer = synthetic_tenants(count + 1)[-1]
            start = time.process_time()
            head = as_json(render(stack_file(Path(tmp), [*tenants, newcomer]), "dev"))
            result["diff_render_cpu_s"] = time.process_time() - start
            diff = diff_renders(base, head)
            owners = tenant_of(head[0])
            users = {u for role in ("owners", "developers", "ops") for u in newcomer[role]}
            foreign = [
                r["name"] for r in diff.added
                if owners[r["urn"]] != newcomer["name"] and not any(u in r["name"] for u in users)
            ]
            result["diff"] = {
                "added": len(diff.added), "removed": len(diff.removed), "changed": len(diff.changed),
                "outputs": diff.outputs[:10], "foreign_added": foreign[:10],
                # Stack outputs may list the newcomer's credentials (the inventory); shown, not failed.
                "ok": bool(diff.added) and not (diff.removed or diff.changed or foreign),
            }
            del head
        else:
            del rendered, plan
    gc.collect()
    result["replay_cpu_s"] = replay_cpu_seconds(base[0])
    del base
    gc.collect()
    result["floor_cpu_s"] = floor_cpu_seconds(result["registrations"])
    return result


def run_size(count: int, with_diff: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(count)]
    if with_diff:
        command.append("--diff")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"size {count} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["worker_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


def ms_per_registration(cpu_s: float, r: dict[str, Any]) -> float:
    return 1000 * cpu_s / r["registrations"]


def print_report(results: list[dict[str, Any]]) -> None:
    print("CPU seconds of the worker process; ms = ms CPU per registration; floor x = render CPU / floor CPU; "
          "replay x = render CPU / replay CPU")
    print(f"{'tenants':>7} {'regs':>7} {'regs/tenant':>11} {'import s':>8} {'render s':>8} {'ms/reg':>6} "
          f"{'floor s':>7} {'floor ms/reg':>12} {'floor x':>7} {'replay x':>8} {'wall s':>7} {'write s':>7} "
          f"{'RSS MiB':>7} {'+write':>6} {'worker s':>8} {'crit path':>9} {'diff +1 (CPU s)':>26} {'releases':>8} {'+charts s':>9} {'helm MiB':>8}")
    for r in results:
        diff = r.get("diff")
        diff_text = "skipped" if diff is None else (
            f"{'ok' if diff['ok'] else 'FAIL'} +{diff['added']} -{diff['removed']} ~{diff['changed']}"
            f" ({r['diff_render_cpu_s']:.1f})")
        print(f"{r['tenants']:>7} {r['registrations']:>7} {r['registrations'] / r['tenants']:>11.1f} "
              f"{r['import_cpu_s']:>8.2f} {r['render_cpu_s']:>8.2f} {ms_per_registration(r['render_cpu_s'], r):>6.2f} "
              f"{r['floor_cpu_s']:>7.2f} {ms_per_registration(r['floor_cpu_s'], r):>12.2f} "
              f"{r['render_cpu_s'] / r['floor_cpu_s']:>7.2f} {r['render_cpu_s'] / r['replay_cpu_s']:>8.2f} {r['render_wall_s']:>7.1f} {r['write_cpu_s']:>7.2f} "
              f"{r['peak_rss_mib']:>7.0f} {r['peak_rss_write_mib']:>6.0f} {r['worker_cpu_s']:>8.1f} "
              f"{r['critical_path_s'] / 60:>8.1f}m {diff_text:>26} {r['releases']:>8} "
              f"{'no charts' if r['charts_cpu_s'] is None else format(r['charts_cpu_s'], '.2f'):>9} "
              f"{r['helm_child_rss_mib']:>8.0f}")
    by_size = {r["tenants"]: r for r in results}
    if 100 in by_size and 1000 in by_size:
        print(f"CPU(1000)/CPU(100) = {by_size[1000]['render_cpu_s'] / by_size[100]['render_cpu_s']:.2f} "
              f"for {by_size[1000]['registrations'] / by_size[100]['registrations']:.2f}x the registrations")
    for r in results:
        if r.get("diff") and (r["diff"]["outputs"] or r["diff"]["foreign_added"]):
            print(f"diff +1 at {r['tenants']}: outputs changed {r['diff']['outputs']}, "
                  f"foreign additions {r['diff']['foreign_added']}")
    for line in target_checks(by_size):
        print(line)
    largest = results[-1]
    print(f"\nCritical path at {largest['tenants']} tenants: {largest['critical_path_s']:.0f} s "
          f"({largest['critical_path_s'] / 60:.1f} min); weights: {CREATION_SECONDS}")
    for member in largest["critical_path"]:
        print(f"  {member['finishes']:>6.0f} s  +{member['seconds']:>4.0f}  {member['type']}  {member['name']}")
    print("\nHelm releases waiting for other releases (judge whether each wait is a real need):")
    seen = set()
    for entry in largest["serialized"]:
        # Tenants' vCluster releases repeat one pattern; show each pattern once.
        key = (tuple(entry["waitsFor"]), tuple(entry["direct"]))
        if entry["release"].startswith("team") and key in seen:
            continue
        seen.add(key)
        print(f"  {entry['cluster']}/{entry['release']}: waits for {', '.join(entry['waitsFor'])}"
              f" (directly: {', '.join(entry['direct']) or 'none, through its component or namespace'})")


def target_checks(by_size: dict[int, dict[str, Any]]) -> list[str]:
    """The issue's targets, where this run measured their size."""
    checks = []
    if 100 in by_size:
        r = by_size[100]
        ratio, ms = r["render_cpu_s"] / r["floor_cpu_s"], ms_per_registration(r["render_cpu_s"], r)
        checks.append(f"{'PASS' if ratio <= 1.3 else 'FAIL'} floor ratio at 100 tenants {ratio:.2f} (target <= 1.3)")
        checks.append(f"{'PASS' if ms <= 2 else 'FAIL'} render at 100 tenants {ms:.2f} ms CPU/registration (target <= 2)")
    if 1000 in by_size:
        peak = max(by_size[1000]["peak_rss_mib"], by_size[1000]["peak_rss_write_mib"])
        checks.append(f"{'PASS' if peak <= 1024 else 'FAIL'} peak RSS at 1,000 tenants {peak:.0f} MiB (target <= 1024; "
                      f"the Helm render processes beside it: up to {by_size[1000]['helm_child_rss_mib']:.0f} MiB each)")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="tenant counts, comma-separated")
    parser.add_argument("--diff-max", type=int, default=1000,
                        help="check the add-one-tenant diff up to this size (it costs a second render)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--diff", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.diff)))
        return 0
    results = []
    for size in sorted(int(s) for s in args.sizes.split(",")):
        results.append(run_size(size, size <= args.diff_max))
        print(f"# {size} tenants done: render {results[-1]['render_cpu_s']:.1f} s CPU", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print_report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
