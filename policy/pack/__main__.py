"""The policy pack's entry point: `pulumi preview --policy-pack policy/pack`.

The CLI runs this directory as a script (runpy), so the repository root is not on sys.path;
it is put there so the pack imports its modules the same way the tests do. Only this file
builds PolicyPack: constructing it starts the analyzer's gRPC server and never returns.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack.crossguard import PACK_NAME, POLICIES  # noqa: E402

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
