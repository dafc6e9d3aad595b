"""platform-bootstrap: load the stack config, declare the platform, export its outputs."""

from pathlib import Path

import pulumi

from stacks.config import ConfigError
from stacks.platform import build_platform, local_charts
from stacks.runtime import config_from_runtime

try:
    config = config_from_runtime()
    charts_dir = local_charts(config, Path(__file__).resolve().parent)
except ConfigError as err:
    # RunError prints the message without a traceback; nothing has been registered yet.
    raise pulumi.RunError(f"invalid stack configuration:\n{err}") from None

for key, value in build_platform(config, charts_dir).items():
    pulumi.export(key, value)
