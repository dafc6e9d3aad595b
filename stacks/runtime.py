"""Reading the stack's configuration from the Pulumi runtime."""

from __future__ import annotations

import pulumi
from pulumi.runtime import config as runtime_config

from stacks.config import PlatformConfig, load_platform_config


def config_from_runtime() -> PlatformConfig:
    """The validated `platform:*` config of the running stack; raises ConfigError.

    `pulumi.Config` cannot list keys, and unknown keys must be errors, so this reads the
    runtime's whole config map (the engine's, or PULUMI_CONFIG when set).
    """
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {key for key in raw if runtime_config.is_config_secret(key)}
    secret_keys |= set(runtime_config.get_config_secret_keys_env())
    stack = pulumi.get_stack()
    return load_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml", secret_keys=secret_keys)
