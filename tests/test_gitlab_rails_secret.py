"""GitLab's rails secret: generated (or imported) by the program, so the Pulumi state backs it up.

The component under the mock engine (tests/test_gitlab_harbor.py's programs), the stack plans with
the real GitLab chart rendered (what the chart's pods mount, what its shared-secrets Job still
does), and the config path for an existing GitLab's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import gitlab as gitlab_component
from components.gitlab_rails_secret import HEX_KEYS, KEY_LISTS, KEYS, SALT, SECRET_NAME, SIGNING_KEY, ExistingKeys
from platformctl.mocks import SECRET_MARK
from platformctl.render import read_stack_file
from stacks.config import load_platform_config
from tests.test_config import DEV, PROD, _problems, _write
from tests.test_gitlab_harbor import _shared, all_of, cached_plan, generated_by, k8s_object, one, run, string_data, values_of

RANDOM_BYTES = "random:index/randomBytes:RandomBytes"


def load(path: Path, stack: str):
    raw, secret_keys = read_stack_file(path)
    return load_platform_config(raw, stack=stack, source=str(path), secret_keys=secret_keys)


def rails_document(records: list[dict[str, Any]]) -> dict[str, Any]:
    secret = k8s_object(records, "Secret", SECRET_NAME)
    return yaml.safe_load(string_data(secret)["secrets.yml"])  # string_data: redacted whole in the plan


@pytest.mark.parametrize("variant", ["plain", "eks"])
def test_every_key_the_charts_job_would_make_is_generated_once_and_kept(variant: str) -> None:
    eks, records = cached_plan("gitlab", variant)
    keys = rails_document(records)["production"]
    assert set(keys) == set(KEYS)
    for key in HEX_KEYS:  # SecureRandom.hex(64): 64 random bytes
        generator = generated_by(records, keys[key])
        assert generator["type"] == RANDOM_BYTES and generator["inputs"]["length"] == 64
    signing = one(records, "tls:index/privateKey:PrivateKey", f"control-plane-gitlab-rails-secret-{SIGNING_KEY}")
    assert signing["inputs"] == {"algorithm": "RSA", "rsaBits": 2048}
    assert SECRET_MARK in keys[SIGNING_KEY]
    for key in (*KEY_LISTS, SALT):  # Rails' defaults: 32 alphanumerics; the keys as one-item lists
        value = keys[key][0] if key in KEY_LISTS else keys[key]
        generator = generated_by(records, value)
        assert generator["inputs"]["length"] == 32 and generator["inputs"]["special"] is False
    # Never replaced by the program, protected in prod (the eks variant is the protected one).
    generators = [r for r in records if r["name"].startswith("control-plane-gitlab-rails-secret-")]
    assert len(generators) == len(KEYS)  # one generator per key
    secret = k8s_object(records, "Secret", SECRET_NAME)
    for record in (*generators, secret):
        assert record["options"]["protect"] is eks, record["name"]
        assert "keepers" not in record["inputs"] and not record["options"].get("replaceOnChanges"), record["name"]


@pytest.mark.parametrize("variant", ["plain", "eks"])
def test_the_chart_reads_the_programs_secret_and_waits_for_it(variant: str) -> None:
    _, records = cached_plan("gitlab", variant)
    values = values_of(records, "gitlab")
    assert values["global"]["railsSecrets"] == {"secret": SECRET_NAME}
    assert values["shared-secrets"] == {"env": ""}  # the Job leaves the rails secret alone
    release = one(records, "kubernetes:helm.sh/v3:Release", "control-plane-gitlab")
    assert k8s_object(records, "Secret", SECRET_NAME)["urn"] in release["dependsOn"]


def test_existing_keys_are_used_as_they_are_and_nothing_is_generated() -> None:
    existing = {k: pulumi.Output.secret([f"{SECRET_MARK}old-{k}"] if k in KEY_LISTS else f"{SECRET_MARK}old-{k}") for k in KEYS}

    def build() -> None:
        s = _shared("gitlab", False)
        gitlab_component.GitLab("control-plane-gitlab", s["cluster"], gitlab_component.GitLabArgs(
            exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
            protect=True, data_stores=s["data_stores"], rails_secret=existing,
        ))

    records = run(build)
    keys = rails_document(records)["production"]
    assert keys == {k: [f"{SECRET_MARK}old-{k}"] if k in KEY_LISTS else f"{SECRET_MARK}old-{k}" for k in KEYS}
    assert list(keys) == list(KEYS)  # the chart Job's order
    assert not all_of(records, RANDOM_BYTES)
    assert not [r for r in records if r["name"].startswith("control-plane-gitlab-rails-secret-")]


# --- the stack plans, with the real chart -------------------------------------------------------


def rendered(plan: dict, release: str) -> list[dict[str, Any]]:
    [found] = [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["cluster"] == "control-plane"
               and r["inputs"]["name"] == release]
    return found["rendered"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_real_chart_mounts_the_programs_secret_and_its_job_no_longer_makes_one(charted: dict, stack: str) -> None:
    objects = rendered(charted[stack].plan, "gitlab")
    [script] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gitlab-shared-secrets"]
    generate = script["data"]["generate-secrets"]
    assert "\nenv=\n" in generate  # `if [ -n "$env" ]` skips the rails secret block
    assert "rails_secret=" in generate  # the block is still there, guarded: the chart's own logic decides
    rails_pods = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and any(
        (p.get("secret") or {}).get("name") == SECRET_NAME
        for v in o["spec"]["template"]["spec"].get("volumes", []) for p in (v.get("projected") or {}).get("sources", []))}
    assert {"gitlab-webservice-default", "gitlab-sidekiq-all-in-1-v2", "gitlab-toolbox"} <= rails_pods


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_rails_secret_is_in_the_inventory_for_good(charted: dict, stack: str) -> None:
    plan = charted[stack].plan
    [entry] = [c for c in plan["outputs"]["credentials"] if c["what"].startswith("GitLab rails secret")]
    assert entry["lifetimeSeconds"] is None and entry["category"] == "bootstrap"
    assert entry["rotation"].startswith("never automatically") and "db_key_base" in entry["rotation"]
    assert len(entry["resources"]) == len(KEYS) + 1
    [secret] = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Secret" and r["name"] == "gitlab-rails-secret"]
    assert secret["inputs"]["stringData"] == {"secrets.yml": "[secret]"} and secret["options"]["protect"] is (stack == "prod")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_existing_rails_secret_is_never_overwritten_silently(renders: dict, stack: str) -> None:
    """A stack whose GitLab made its own secret must import it (README): creating `gitlab-rails-secret`
    over it fails, since no Kubernetes provider upserts existing objects (pulumi-kubernetes >= 4.29)."""
    providers = [r for r in renders[stack].plan["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    assert providers
    for provider in providers:
        assert provider["inputs"].get("upsertExistingObjects") in (None, False, "false"), provider["name"]


# --- the config path of an existing GitLab's keys ------------------------------------------------

EXISTING = {
    "secretKeyBase": {"secure": "v1:a"}, "otpKeyBase": {"secure": "v1:b"}, "dbKeyBase": {"secure": "v1:c"},
    "encryptedSettingsKeyBase": {"secure": "v1:d"}, "openidConnectSigningKey": {"secure": "v1:e"},
    "activeRecordEncryptionPrimaryKey": [{"secure": "v1:f"}], "activeRecordEncryptionDeterministicKey": [{"secure": "v1:g"}],
    "activeRecordEncryptionKeyDerivationSalt": {"secure": "v1:h"},
}


def with_existing(keys: dict[str, Any]):
    def mutate(doc: dict) -> None:
        doc["config"]["platform:services"].setdefault("gitlab", {})["railsSecret"] = keys
    return mutate


def test_an_existing_gitlabs_keys_are_taken_from_config_as_secrets(tmp_path: Path) -> None:
    config = load(_write(tmp_path, PROD, with_existing(EXISTING)), "prod")
    existing = config.services.settings("gitlab").options["rails_secret"]
    assert existing.db_key_base.get_secret_value().startswith("placeholder-for-secure-value")
    assert len(existing.active_record_encryption_primary_key) == 1


def test_existing_keys_lose_the_newline_a_pipe_leaves() -> None:
    keys = {alias: ["k\n"] if name in KEY_LISTS else f"{name}\n" for name, alias in
            ((n, f.alias) for n, f in ExistingKeys.model_fields.items())}
    existing = ExistingKeys.model_validate(keys)
    assert existing.db_key_base.get_secret_value() == "db_key_base"
    assert existing.active_record_encryption_primary_key[0].get_secret_value() == "k"


@pytest.mark.parametrize(("keys", "key", "words"), [
    ({**EXISTING, "dbKeyBase": "plain"}, "platform:services.gitlab.railsSecret.dbKeyBase", "plain text"),
    ({k: v for k, v in EXISTING.items() if k != "dbKeyBase"}, "platform:services.gitlab.railsSecret.dbKeyBase", "required"),
    ({**EXISTING, "activeRecordEncryptionPrimaryKey": []}, "platform:services.gitlab.railsSecret.activeRecordEncryptionPrimaryKey", "at least 1"),
    ({**EXISTING, "db_key_base": {"secure": "v1:x"}}, "platform:services.gitlab.railsSecret.db_key_base", "unknown key"),
])
def test_incomplete_or_plain_keys_are_refused_naming_the_key(tmp_path: Path, keys: dict, key: str, words: str) -> None:
    lines = _problems(_write(tmp_path, DEV, with_existing(keys)), "dev")
    assert any(f": {key}:" in line and words in line for line in lines), lines


def test_the_document_round_trips_real_keys_as_the_charts_job_lays_them_out() -> None:
    """A real RSA key and hex keys through secrets_document: YAML gives back the same values, the PEM loads."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from components.gitlab_rails_secret import secrets_document

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
    keys = {k: "0123456789abcdef" * 8 for k in HEX_KEYS} | {SIGNING_KEY: pem, SALT: "a" * 32}
    keys |= {k: ["b" * 32] for k in KEY_LISTS}
    parsed = yaml.safe_load(secrets_document(keys))
    assert list(parsed) == ["production"] and parsed["production"] == keys
    assert serialization.load_pem_private_key(parsed["production"][SIGNING_KEY].encode(), None).key_size == 2048


# --- the README's import commands, run against stand-ins for kubectl, yq and pulumi ----------------

STANDINS = {
    "kubectl": '#!/bin/sh\ncase "$*" in *jsonpath*) base64 -w0 "$SECRETS_YML" ;; esac\n',
    # `yq -r '.production.<key>[0]' file`, the one form the commands use.
    "yq": '#!/usr/bin/env python3\nimport re, sys, yaml\nnode = yaml.safe_load(open(sys.argv[3]))\n'
          'for name, index in re.findall(r"\\.(\\w+)(?:\\[(\\d+)\\])?", sys.argv[2]):\n'
          '    node = node[name] if index == "" else node[name][int(index)]\nprint(node)\n',
    # `pulumi config set --secret --path <key>` with the value on stdin: one JSON line each.
    "pulumi": '#!/usr/bin/env python3\nimport json, os, sys\nif sys.argv[1:3] == ["config", "set"]:\n'
              '    open(os.environ["SET_LOG"], "a").write(json.dumps([sys.argv, sys.stdin.read()]) + "\\n")\n',
}


def test_the_readmes_import_commands_set_every_key_as_a_secret(tmp_path: Path) -> None:
    import json
    import subprocess

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("kubectl -n gitlab get secret gitlab-rails-secret -o jsonpath")
    script = readme[start:readme.index("```", start)]
    pem = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
    old = {k: ["k-" + k] if k in KEY_LISTS else (pem if k == SIGNING_KEY else "v-" + k) for k in KEYS}
    (tmp_path / "old.yml").write_text(yaml.safe_dump({"production": old}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STANDINS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SECRETS_YML": str(tmp_path / "old.yml"), "SET_LOG": str(tmp_path / "set.log")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp_path / "set.log").read_text().splitlines()]
    assert all(argv[3:6] == ["--secret", "--path", argv[5]] for argv, _ in calls)  # every key with --secret
    prefix = "platform:services.gitlab.railsSecret."
    keys = {argv[5].removeprefix(prefix): value.rstrip("\n") for argv, value in calls}
    fields = {f.alias: name for name, f in ExistingKeys.model_fields.items()}
    expected = {f"{alias}[0]" if fields[alias] in KEY_LISTS else alias: old[fields[alias]] for alias in fields}
    assert keys == {k: v[0] if isinstance(v, list) else v for k, v in expected.items()}
    assert not (tmp_path / "secrets.yml").exists()  # shredded
