"""Reading the stack's configuration from the Pulumi runtime."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
from pulumi.runtime import config as runtime_config

from platformctl.render import BASE_CHECKED, BASE_REF_ENV, RenderError, base_config
from stacks.config import ConfigError, PlatformConfig, load_platform_config


def config_from_runtime() -> PlatformConfig:
    """The validated `platform:*` config of the running stack; raises ConfigError.

    `pulumi.Config` cannot list keys, and unknown keys must be errors, so this reads the
    runtime's whole config map (the engine's, or PULUMI_CONFIG when set).
    """
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {key for key in raw if runtime_config.is_config_secret(key)}
    secret_keys |= set(runtime_config.get_config_secret_keys_env())
    stack = pulumi.get_stack()
    source = f"Pulumi.{stack}.yaml"
    # `pulumi preview`/`up` in CI: $PLATFORM_BASE_REF names the commit the change starts from, whose
    # tenants may leave only with an offboarding entry (`platformctl render` checks this itself).
    ref = os.environ.get(BASE_REF_ENV)
    previous = None
    if ref and not BASE_CHECKED.get():
        try:
            previous = base_config(Path.cwd() / source, ref, required=True)
        except RenderError as err:
            raise ConfigError(source, [str(err)]) from None
    return load_platform_config(raw, stack=stack, source=source, secret_keys=secret_keys, previous=previous)
