"""An attacker's review of credentials and the supply chain: each test is one attempt, made
against what the program really creates (the plans, .ci/promote-image.py, GitLab's rules as
the plan sets them), and must fail for the attacker."""

from __future__ import annotations

import pytest

from components.tenant_supply_chain import APPROVED_PROJECT, BUILDAH_IMAGE, PUBLIC_REGISTRIES
from tests.test_image_promotion import load_script


# --- promotion: an image under another registry's name in `approved` ----------------------------

@pytest.mark.parametrize("host", sorted(PUBLIC_REGISTRIES))
def test_a_promotion_cannot_land_under_another_registrys_name(host: str) -> None:
    """Whoever runs promote-image copies `docker.io/<name>` (Docker Hub names are first come, first
    served) with APPROVED_PREFIX set to another registry's host: the copy, scanned and signed with
    the promotion key, would sit at `approved/<host>/<name>`, where pods and the starter pipeline
    pull that registry's image (buildah from quay.io). A prefix is a name, never a host."""
    script = load_script()
    repository = BUILDAH_IMAGE.split("/", 1)[1].split(":")[0]  # buildah/stable
    with pytest.raises(script.PromotionError, match="APPROVED_PREFIX"):
        script.parse_image(f"docker.io/{repository}:v1.38.1", host)
    assert script.parse_image(f"docker.io/{repository}:v1.38.1", "vcluster").target == f"{APPROVED_PROJECT}/vcluster/{repository}"
