"""The offline plan: clusters of both stacks, determinism, no network, and `platformctl diff`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ENGINE_WARNINGS, NETWORK_ATTEMPTS, refusing
from platformctl.diff import diff_renders, load_render, to_markdown
from platformctl.__main__ import main as platformctl_main
from platformctl.render import FINGERPRINTS, Render, render, write_render

ROOT = Path(__file__).resolve().parent.parent
PLAN_KEYS = {"urn", "type", "name", "custom", "parent", "provider", "cluster", "dependsOn", "options", "inputs", "secretPaths"}


def of_type(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]


def test_plan_shape(plan: dict) -> None:
    assert plan["schema"] == 1 and plan["project"] == "platform-bootstrap"
    assert plan["resources"], "an empty plan"
    for resource in plan["resources"]:
        # A Helm release also carries what its chart renders (with chart sources; tests/test_helm_render.py).
        assert set(resource) - {"rendered"} == PLAN_KEYS, resource["urn"]
        assert "rendered" not in resource or resource["type"] == "kubernetes:helm.sh/v3:Release"
        # `aliases` only where a resource keeps its state under a former name (platformctl/mocks.py `_aliases`).
        assert set(resource["options"]) - {"aliases"} == {
            "protect", "deleteBeforeReplace", "retainOnDelete", "ignoreChanges", "additionalSecretOutputs"
        }
        assert resource["dependsOn"] == sorted(resource["dependsOn"])
    urns = [r["urn"] for r in plan["resources"]]
    assert len(urns) == len(set(urns))
    # Creation order: a resource's parent, provider and dependencies come before it.
    position = {urn: i for i, urn in enumerate(urns)}
    for resource in plan["resources"]:
        for before in [resource["parent"], resource["provider"], *resource["dependsOn"]]:
            if before in position:
                assert position[before] < position[resource["urn"]], (before, resource["urn"])


def test_every_kubernetes_resource_is_bound_to_a_cluster(plan: dict) -> None:
    for resource in plan["resources"]:
        if resource["type"].startswith("kubernetes:"):
            assert resource["cluster"] is not None and resource["provider"], resource["urn"]
        elif not resource["type"].startswith("pulumi:providers:kubernetes"):
            assert resource["cluster"] is None, resource["urn"]


def test_dev_stack_uses_three_kubeconfig_clusters(renders: dict[str, Render]) -> None:
    plan = renders["dev"].plan
    providers = of_type(plan, "pulumi:providers:kubernetes")
    assert sorted(p["cluster"] for p in providers if p["name"].removesuffix("-k8s") in ("control-plane", "dev", "prod")) == [
        "control-plane", "dev", "prod"
    ]
    contexts = {p["name"]: p["inputs"]["context"] for p in providers if "context" in p["inputs"]}
    assert contexts == {"control-plane-k8s": "kind-control-plane", "dev-k8s": "kind-dev", "prod-k8s": "kind-prod"}
    assert not [r for r in plan["resources"] if r["type"].startswith("aws:")]
    assert len(of_type(plan, "platform:cluster:ExistingCluster")) == 3


def test_prod_stack_builds_three_eks_clusters(renders: dict[str, Render]) -> None:
    plan = renders["prod"].plan
    clusters = {r["name"]: r for r in of_type(plan, "aws:eks/cluster:Cluster")}
    assert sorted(clusters) == ["control-plane", "dev", "prod"]
    for name, cluster in clusters.items():
        assert cluster["inputs"]["accessConfig"] == {
            "authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False
        }
        assert cluster["inputs"]["version"] == "1.33"
        assert cluster["options"]["protect"] is True  # platform:protect in prod
        assert len(cluster["inputs"]["vpcConfig"]["subnetIds"]) == 6  # 3 private + 3 public
    assert len(of_type(plan, "aws:ec2/vpc:Vpc")) == 3
    assert len(of_type(plan, "aws:ec2/subnet:Subnet")) == 18
    # One per cluster for workload identity, GitLab's for this repository's pipeline, and Vault's for its reviewed previews.
    assert sorted(p["name"] for p in of_type(plan, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")) == [
        "control-plane-oidc", "dev-oidc", "platform-pipeline-gitlab", "platform-pipeline-vault", "prod-oidc"
    ]
    groups = of_type(plan, "aws:eks/nodeGroup:NodeGroup")
    # A node group per configured group and zone (tests/test_eks_zones.py), its share of the configured sizes.
    zones = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
    configured = [f"control-plane-{g}" for g in ("ci", "ci-release", "deploy", "platform-ci", "system")] + ["dev-general", "prod-general"]
    # And on each workload cluster the group of the tenant with nodes of its own (catalog's dedicatedNodes).
    configured += ["dev-tenant-catalog", "prod-tenant-catalog"]
    assert sorted(g["name"] for g in groups) == sorted(f"{group}-{zone}" for group in configured for zone in zones)
    system = [g["inputs"]["scalingConfig"] for g in groups if g["name"].startswith("control-plane-system-")]
    assert system == [{"desiredSize": 1, "maxSize": 2, "minSize": 1}] * 3  # 3, 6 and 3 over three zones
    # Cluster admins: the configured principal and the pipeline's deploy role; readers: the pipeline's plan role
    # (tests/test_vault_federation.py) and reviewed-preview role (tests/test_reviewed_previews.py), on each cluster.
    access = of_type(plan, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted((a["inputs"]["principalArn"], a["inputs"]["policyArn"].rsplit("/", 1)[1]) for a in access) == sorted(
        [("arn:aws:iam::123456789012:role/platform-admin", "AmazonEKSClusterAdminPolicy"),
         (plan["outputs"]["deployRoleArn"], "AmazonEKSClusterAdminPolicy"),
         (plan["outputs"]["planRoleArn"], "AmazonEKSAdminViewPolicy"),
         (plan["outputs"]["reviewedPreviewRoleArn"], "AmazonEKSAdminViewPolicy")] * 3)
    # Each cluster's Kubernetes provider is bound to that cluster (its kubeconfig is built from it).
    providers = {p["cluster"]: p for p in of_type(plan, "pulumi:providers:kubernetes")}
    assert sorted(providers) == ["control-plane", "dev", "prod"]
    for role, provider in providers.items():
        assert clusters[role]["urn"] in provider["dependsOn"]
        kubeconfig = json.loads(provider["inputs"]["kubeconfig"])
        assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"  # short-lived tokens, nothing stored
        assert "token" not in json.dumps(kubeconfig["users"][0]["user"]).replace("get-token", "")


def test_eks_issuer_output_comes_from_the_cluster(renders: dict[str, Render]) -> None:
    outputs = renders["prod"].plan["outputs"]["clusters"]
    assert outputs["prod"]["oidcIssuerUrl"].startswith("https://oidc.eks.eu-west-1.amazonaws.com/id/")
    assert outputs["prod"]["eks"] is True


def test_render_cli_is_byte_identical_to_another_process_and_prints_where_the_plan_is(
    tmp_path: Path, render_dirs: dict[str, Path], charted: dict[str, Render]
) -> None:
    # The CLI in a process of its own against the session's render in this one: hash seeds
    # and memory addresses differ between them. With the charts (`charted` fails in CI without
    # them), so the rendered objects are compared too. No --stack: the file name says prod, and
    # the default output directory is that stack's.
    proc = subprocess.run(
        [sys.executable, "-m", "platformctl", "render", "--config-file", str(ROOT / "Pulumi.prod.yaml")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300, check=True,
    )
    out = tmp_path / "build" / "render" / "prod"
    files = [sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file()) for d in (render_dirs["prod"], out)]
    assert files[0] == files[1]
    assert {Path("plan.json"), Path("graph.mmd"), Path(FINGERPRINTS)} <= set(files[0])
    assert any(p.parent.name.startswith("helm-") for p in files[0])  # rendered chart objects
    for name in files[0]:
        assert (render_dirs["prod"] / name).read_bytes() == (out / name).read_bytes(), name
    assert f"Plan: {Path('build/render/prod/plan.json')}" in proc.stdout
    assert "By cluster:" in proc.stdout and "By component:" in proc.stdout
    assert "Helm releases: " in proc.stdout  # how many the Helm engine rendered, or which are values-only
    assert json.loads((out / "plan.json").read_text())["stack"] == "prod"
    assert (out / "graph.mmd").read_text().startswith("graph LR")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = platformctl_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_render_never_writes_into_another_stacks_render(
    tmp_path: Path, render_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prod"
    shutil.copytree(render_dirs["prod"], out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = _cli(capsys, "render", "--stack", "dev", "--out", str(out))
    assert code == 2 and f"{out} holds a render of stack 'prod', not 'dev'" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_render_asks_for_the_stack_when_the_file_name_does_not_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stack_file = tmp_path / "staging-copy.yaml"
    shutil.copy(ROOT / "Pulumi.dev.yaml", stack_file)
    code, _, err = _cli(capsys, "render", "--config-file", str(stack_file))
    assert code == 2 and "cannot tell the stack from the file name" in err and "--stack" in err
    assert not (tmp_path / "build").exists()


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text("config:\n  platform:domain: example.com\n  platform:tenants: [a, b\n  platform:protect: true\n")
    code, _, err = _cli(capsys, "render", "--config-file", str(stack_file), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{stack_file}:4:19: not valid YAML" in err, err
    assert "<unicode string>" not in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_diff_across_stacks_says_so_first(render_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "diff", str(render_dirs["dev"]), str(render_dirs["prod"]))
    assert code == 1 and "comparing stack 'dev' with stack 'prod'" in err
    lines = [line for line in out.splitlines() if line]
    assert lines[1] == "> **Different stacks:** base is `dev`, head is `prod`; every resource differs."
    code, out, _ = _cli(capsys, "diff", str(render_dirs["dev"]), str(render_dirs["dev"]))
    assert code == 0 and "Different stacks" not in out


def test_no_network_while_the_program_runs(renders: dict[str, Render]) -> None:
    # The session renders ran with every socket call refused and recorded (conftest).
    assert all(r.plan["resources"] for r in renders.values())
    assert NETWORK_ATTEMPTS == []


def test_the_program_uses_no_deprecated_resource_or_argument(renders: dict[str, Render]) -> None:
    # pulumi-aws logs each use of a deprecated resource or argument (and warns at import about
    # its own deprecated modules, whatever the program uses: pytest.ini filters those).
    assert renders and ENGINE_WARNINGS == []


def test_the_guard_above_would_catch_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", refusing("connect"))
    with pytest.raises(AssertionError, match="network access attempted"), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    assert NETWORK_ATTEMPTS.pop()[0] == "connect" and NETWORK_ATTEMPTS == []


def _render_variant(tmp_path: Path, name: str, edit) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    edit(doc["config"])
    stack_file = tmp_path / f"{name}.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    out = tmp_path / name
    write_render(render(stack_file, "dev"), out)
    return out


def _with_secret_kubeconfig(ciphertext: str):
    def edit(config: dict) -> None:
        kubeconfig = config["platform:clusters"]["dev"]["kubeconfig"]
        del kubeconfig["path"]
        kubeconfig["content"] = {"secure": ciphertext}
    return edit


def test_diff_reports_exactly_the_changed_value(tmp_path: Path, render_dirs: dict[str, Path]) -> None:
    base = render_dirs["dev"]
    head = _render_variant(
        tmp_path, "head", lambda c: c["platform:clusters"]["prod"]["kubeconfig"].update(context="kind-prod-blue")
    )
    result = diff_renders(load_render(base), load_render(head))
    assert not result.added and not result.removed
    assert [(r["name"], paths) for r, paths in result.changed] == [("prod-k8s", ["inputs.context"])]
    markdown = to_markdown(result, load_render(base)[0], load_render(head)[0], "dev")
    assert "prod-k8s" in markdown and "`inputs.context`" in markdown and "1 to change" in markdown
    same = diff_renders(load_render(base), load_render(base))
    assert same.empty


def test_diff_shows_the_values_of_a_changed_annotation_whose_key_has_dots() -> None:
    """Kubernetes keys hold dots (`app.kubernetes.io/name`): the reviewer sees the old and new value."""
    def release(annotations: dict) -> dict:
        deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "app"},
                      "spec": {"template": {"metadata": {"annotations": annotations}, "spec": {"containers": []}}}}
        return {"urn": "urn:release", "type": "kubernetes:helm.sh/v3:Release", "name": "app", "cluster": "dev",
                "inputs": {"chart": "app", "version": "1.0.0", "namespace": "app"}, "rendered": [deployment]}

    (objects,) = diff_renders(({"resources": [release({"platform.io/checksum": "aaa", "app.kubernetes.io/name": "web"})]}, {}),
                              ({"resources": [release({"platform.io/checksum": "bbb"})]}, {})).objects
    assert objects.changed == [("Deployment app/web", [
        ("spec.template.metadata.annotations.app.kubernetes.io/name", "web", None),
        ("spec.template.metadata.annotations.platform.io/checksum", "aaa", "bbb"),
    ])]


def test_diff_reports_a_changed_secret_without_its_value(tmp_path: Path) -> None:
    base = _render_variant(tmp_path, "base", _with_secret_kubeconfig("v1:AAAA"))
    head = _render_variant(tmp_path, "head", _with_secret_kubeconfig("v1:BBBB"))
    plan = load_render(head)[0]
    provider = next(r for r in plan["resources"] if r["name"] == "dev-k8s")
    assert provider["inputs"]["kubeconfig"] == "[secret]" and provider["secretPaths"] == ["kubeconfig"]
    proc = subprocess.run(
        [sys.executable, "-m", "platformctl", "diff", str(base), str(head)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "dev-k8s" in proc.stdout and "`inputs.kubeconfig (secret)`" in proc.stdout
    everything = "".join(p.read_text() for p in head.rglob("*") if p.is_file()) + proc.stdout
    assert "placeholder-for-secure-value" not in everything


def test_diff_exit_codes(tmp_path: Path, render_dirs: dict[str, Path]) -> None:
    base = render_dirs["dev"]
    same = subprocess.run([sys.executable, "-m", "platformctl", "diff", str(base), str(base)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert same.returncode == 0 and "No changes." in same.stdout
    missing = subprocess.run([sys.executable, "-m", "platformctl", "diff", str(base), str(tmp_path / "nope")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "not a render directory" in missing.stderr and "Traceback" not in missing.stderr
