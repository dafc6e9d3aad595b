"""CrossGuard adapters: each rule of `checks.py` as a pulumi-policy `ResourceValidationPolicy`.

The adapters only translate `ResourceValidationArgs` into the checks' plain arguments:
`args.resource_type`, `args.props` (values unknown during preview become `checks.UNKNOWN`
instead of aborting the policy), `args.opts` (protect, ignore_changes, delete_before_replace,
additional_secret_outputs) and `args.get_config()` (this policy's pack config).

Secrets at preview. CrossGuard's Python SDK hands `validate` every secret input already
decrypted and unmarked: `Analyze` deserializes the properties with `proxy_secrets=False`
(pulumi_policy 1.21.0, policy.py), and the SDK offers no way to ask whether a value was secret
(pulumi/pulumi-policy#241, #163). So `no-plain-secrets` cannot tell a generated password from a
literal here and reports itself not applicable; the same check runs on the offline plan, where
every secret is redacted to "[secret]" (tests/test_policy_pack.py). The other rules see more at
preview than offline: e.g. the config of an ArgoCD cluster Secret is readable here, redacted there.

`PolicyPack(...)` is built only in `__main__.py`: constructing it starts a gRPC server and blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policy.inventory import check_credentials
from policy.pack.checks import CHECKS, UNKNOWN, Check

PACK_NAME = "platform-bootstrap"

SECRETS_NOT_VISIBLE = (
    "CrossGuard (Python) passes secret inputs decrypted and unmarked (pulumi/pulumi-policy#241), so a secret "
    "cannot be told from a plain value at preview; this rule runs on the offline plan instead (platformctl render, "
    "tests/test_policy_pack.py)"
)


def plain(value: Any) -> Any:
    """`value` (CrossGuard's unknown-checking proxies) as plain dicts and lists, unknowns as UNKNOWN."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:  # iterating keys never touches the values
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def resource_options(opts: PolicyResourceOptions) -> dict[str, Any]:
    """CrossGuard's resource options under the plan's option names (retainOnDelete is not passed to policies)."""
    return {
        "protect": bool(opts.protect),
        "deleteBeforeReplace": bool(opts.delete_before_replace),
        "ignoreChanges": sorted(opts.ignore_changes),
        "additionalSecretOutputs": sorted(opts.additional_secret_outputs),
    }


def adapt(check: Check) -> ResourceValidation:
    """A CrossGuard `validate` callback running `check` and reporting each of its messages."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        props = plain(args.props)
        for message in check(args.resource_type, props, resource_options(args.opts), dict(args.get_config())):
            report_violation(message, None)

    return validate


def _secrets_not_visible(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    args.not_applicable(SECRETS_NOT_VISIBLE)


PROTECT_SCHEMA = PolicyConfigSchema(
    properties={
        "protect": {
            "type": "boolean",
            "description": "The stack's platform:protect (true in prod): stateful resources must then be protected.",
        }
    }
)


def _policy(name: str, check: Check, description: str) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=_secrets_not_visible if name == "no-plain-secrets" else adapt(check),
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PROTECT_SCHEMA if name == "stateful-resources-protected" else None,
    )


STACK_TYPE = "pulumi:pulumi:Stack"
INVENTORY_NOT_VISIBLE = "the stack's `credentials` output is not visible to this preview's policies"


def plan_of(args: StackValidationArgs) -> dict[str, Any]:
    """The parts of an offline plan (platformctl render) that `check_credentials` reads, from a preview."""
    stacks = [r for r in args.resources if r.resource_type == STACK_TYPE]
    outputs = plain(stacks[0].props) if stacks else {}
    resources = [
        {"type": r.resource_type, "name": r.name, "inputs": plain(r.props)} for r in args.resources if r.resource_type != STACK_TYPE
    ]
    return {"outputs": outputs, "resources": resources}


def validate_credential_inventory(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """The credential inventory's rules (policy/inventory.py) on the previewed stack, as on the offline plan."""
    plan = plan_of(args)
    if not isinstance(plan["outputs"].get("credentials"), list):
        args.not_applicable(INVENTORY_NOT_VISIBLE)
    for message in check_credentials(plan):
        report_violation(message, None)


CREDENTIAL_INVENTORY = StackValidationPolicy(
    name="credential-inventory",
    description="Every credential-bearing resource is in the credential inventory, and no credential between "
    "systems lives without expiry or past 90 days (policy/inventory.py).",
    validate=validate_credential_inventory,
    enforcement_level=EnforcementLevel.MANDATORY,
)
POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    *(_policy(name, check, text) for name, (check, text) in CHECKS.items()),
    CREDENTIAL_INVENTORY,
]
BY_NAME: dict[str, ResourceValidationPolicy | StackValidationPolicy] = {policy.name: policy for policy in POLICIES}
