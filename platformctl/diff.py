"""`platformctl diff A B`: what changes between two renders, as Markdown.

Resources are matched by URN. A changed secret shows as its path only: renders hold no
secret values, and the diff reads only their fingerprints. For each Helm release, the objects
its chart renders (plan `rendered`) are matched by kind, namespace and name and listed as
added, removed or changed with each changed field, before and after: what a chart bump or a
values change does to what the cluster receives.
Exit status: 0 equal, 1 different, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.markdown import code, text
from platformctl.render import FINGERPRINTS

# How much of a changed rendered object the Markdown shows: fields per object, characters per value.
SHOWN_FIELDS = 20
SHOWN_VALUE = 80
_COMPARED = ("type", "parent", "provider", "cluster", "dependsOn", "options", "inputs")


@dataclass
class ObjectsDiff:
    """What changes in the objects one Helm release renders."""

    release: dict[str, Any]  # the release's plan resource (head, or base when removed)
    chart: tuple[str, str]  # "chart version" before and after ("" where the release is absent)
    added: list[str] = field(default_factory=list)  # "Kind namespace/name"
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, list[tuple[str, Any, Any]]]] = field(default_factory=list)  # object, (path, before, after)


@dataclass
class PlanDiff:
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    objects: list[ObjectsDiff] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.outputs or self.objects)


def load_render(directory: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    try:
        plan = json.loads((directory / "plan.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{directory}: not a render directory ({err})") from None
    fingerprints_file = directory / FINGERPRINTS
    fingerprints = json.loads(fingerprints_file.read_text()) if fingerprints_file.exists() else {}
    return plan, fingerprints


def changes(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two JSON values differ, down to the leaves: (dotted path, before, after). The values
    travel with the path: Kubernetes keys hold dots (`app.kubernetes.io/name`), so a path cannot be
    parsed back."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            sub = f"{path}.{key}" if path else key
            if key in before and key in after:
                found += changes(before[key], after[key], sub)
            else:
                found.append((sub, before.get(key), after.get(key)))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (b, a) in enumerate(zip(before, after)) for c in changes(b, a, f"{path}[{i}]")]
    return [] if before == after else [(path, before, after)]


def changed_paths(before: Any, after: Any, path: str = "") -> list[str]:
    return [p for p, _, _ in changes(before, after, path)]


def _objects(release: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    objects = {}
    for obj in (release or {}).get("rendered") or []:
        namespace = object_namespace(obj, (release or {})["inputs"].get("namespace", "default"))
        objects[f"{obj.get('kind')} {namespace + '/' if namespace else ''}{(obj.get('metadata') or {}).get('name')}"] = obj
    return objects


def objects_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> ObjectsDiff | None:
    """The rendered-object changes of one release (None when its objects are the same or it has none)."""
    old, new = _objects(before), _objects(after)
    if not (old or new) or old == new:
        return None

    def chart(release: dict[str, Any] | None) -> str:
        return f"{release['inputs'].get('chart')} {release['inputs'].get('version')}" if release else ""

    result = ObjectsDiff(after or before or {}, (chart(before), chart(after)))
    result.added = sorted(k for k in new if k not in old)
    result.removed = sorted(k for k in old if k not in new)
    for key in sorted(k for k in new if k in old and new[k] != old[k]):
        result.changed.append((key, changes(old[key], new[key])))
    return result


def diff_renders(
    base: tuple[dict[str, Any], dict[str, dict[str, str]]], head: tuple[dict[str, Any], dict[str, dict[str, str]]]
) -> PlanDiff:
    (old_plan, old_secrets), (new_plan, new_secrets) = base, head
    old = {r["urn"]: r for r in old_plan["resources"]}
    new = {r["urn"]: r for r in new_plan["resources"]}
    result = PlanDiff(
        added=[new[u] for u in new if u not in old],
        removed=[old[u] for u in old if u not in new],
        outputs=changed_paths(old_plan.get("outputs", {}), new_plan.get("outputs", {})),
    )
    for urn in (u for u in new if u in old):
        paths = [
            p
            for key in _COMPARED
            for p in changed_paths(old[urn].get(key), new[urn].get(key), key)
        ]
        secret_before, secret_after = old_secrets.get(urn, {}), new_secrets.get(urn, {})
        paths += [
            f"inputs.{p} (secret)"
            for p in sorted(set(secret_before) | set(secret_after))
            if secret_before.get(p) != secret_after.get(p) and f"inputs.{p}" not in paths
        ]
        if paths:
            result.changed.append((new[urn], paths))
    for urn in sorted(set(old) | set(new)):
        if (old.get(urn) or new.get(urn) or {}).get("type") == RELEASE_TYPE:
            objects = objects_diff(old.get(urn), new.get(urn))
            if objects is not None:
                result.objects.append(objects)
    return result


def _group_key(resource: dict[str, Any], plan_resources: dict[str, dict[str, Any]]) -> tuple[str, str]:
    component, current = "(top level)", resource
    while current is not None:
        if current["type"].startswith("platform:") and current is not resource:
            component = f"{current['type']} {current['name']}"
            break
        current = plan_resources.get(current["parent"] or "")
    return resource["cluster"] or "(not Kubernetes)", component


def to_markdown(result: PlanDiff, base_plan: dict[str, Any], head_plan: dict[str, Any], title: str) -> str:
    everything = {r["urn"]: r for r in base_plan["resources"]} | {r["urn"]: r for r in head_plan["resources"]}
    lines = [f"### {title}", ""]
    stacks = base_plan.get("stack"), head_plan.get("stack")
    if stacks[0] != stacks[1]:
        # URNs carry the stack name, so every resource shows as removed and added.
        lines += [f"> **Different stacks:** base is {code(str(stacks[0]))}, head is {code(str(stacks[1]))}; every resource differs.", ""]
    lines.append(f"**{len(result.added)} to add, {len(result.changed)} to change, {len(result.removed)} to remove**")
    if result.empty:
        return "\n".join([*lines, "", "No changes."]) + "\n"
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for marker, resources in (("+", result.added), ("-", result.removed)):
        for resource in resources:
            groups[_group_key(resource, everything)].append(f"- `{marker}` {code(resource['type'])} **{text(resource['name'])}**")
    for resource, paths in result.changed:
        shown = ", ".join(code(p) for p in paths[:20]) + (f" and {len(paths) - 20} more" if len(paths) > 20 else "")
        groups[_group_key(resource, everything)].append(f"- `~` {code(resource['type'])} **{text(resource['name'])}**: {shown}")
    cluster = None
    for (group_cluster, component), entries in sorted(groups.items()):
        if group_cluster != cluster:
            cluster = group_cluster
            lines += ["", f"#### Cluster: {text(cluster)}"]
        lines += ["", f"*{text(component)}*", "", *sorted(entries)]
    if result.outputs:
        lines += ["", "#### Stack outputs", "", *(f"- `~` {code(p)}" for p in result.outputs)]
    if result.objects:
        lines += ["", "#### Rendered objects of the Helm releases"]
        for objects in result.objects:
            lines += ["", *_objects_markdown(objects)]
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "(none)"
    return text if len(text) <= SHOWN_VALUE else text[: SHOWN_VALUE - 1] + "…"


def _objects_markdown(objects: ObjectsDiff) -> list[str]:
    release = objects.release
    before, after = objects.chart
    chart = after if before in ("", after) else (before or "(none)") + " → " + (after or "(none)")
    lines = [
        f"*{text(str(release.get('cluster')))}* **{text(release['name'])}** ({text(chart)}): {len(objects.added)} added, "
        f"{len(objects.changed)} changed, {len(objects.removed)} removed",
        "",
    ]
    lines += [f"- `+` {text(key)}" for key in objects.added]
    lines += [f"- `-` {text(key)}" for key in objects.removed]
    for key, fields in objects.changed:
        lines.append(f"- `~` {text(key)}")
        lines += [f"  - {code(path)}: {code(_short(old))} → {code(_short(new))}" for path, old, new in fields[:SHOWN_FIELDS]]
        if len(fields) > SHOWN_FIELDS:
            lines.append(f"  - and {len(fields) - SHOWN_FIELDS} more fields")
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        base, head = load_render(Path(args.base)), load_render(Path(args.head))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = diff_renders(base, head)
    title = args.title or f"Plan diff: {head[0].get('stack', '?')}"
    if base[0].get("stack") != head[0].get("stack"):
        print(f"note: comparing stack '{base[0].get('stack')}' with stack '{head[0].get('stack')}'", file=sys.stderr)
    print(to_markdown(result, base[0], head[0], title), end="")
    return 0 if result.empty else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("diff", help="compare two render directories, print Markdown")
    parser.add_argument("base", help="render directory before the change")
    parser.add_argument("head", help="render directory after the change")
    parser.add_argument("--title", help="heading of the Markdown summary")
    parser.set_defaults(run=run)
