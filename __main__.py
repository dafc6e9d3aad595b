"""platform-bootstrap: load the stack config, declare the platform, export its outputs."""

import pulumi

from stacks.config import ConfigError
from stacks.platform import build_platform
from stacks.runtime import config_from_runtime

try:
    config = config_from_runtime()
except ConfigError as err:
    # RunError prints the message without a traceback; nothing has been registered yet.
    raise pulumi.RunError(f"invalid stack configuration:\n{err}") from None

for key, value in build_platform(config).items():
    pulumi.export(key, value)
