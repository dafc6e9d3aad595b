"""Every pinned version of the platform, in one place.

Nothing here resolves at run time: no chart index look-ups, no "latest". Bump a pin in a
merge request and the preview shows exactly what moves.
"""

from __future__ import annotations

# EKS managed add-ons, by Kubernetes minor version. Refresh with
# `aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>`.
EKS_ADDONS: dict[str, dict[str, str]] = {
    "1.33": {
        "vpc-cni": "v1.19.5-eksbuild.1",
        "coredns": "v1.12.1-eksbuild.2",
        "kube-proxy": "v1.33.0-eksbuild.2",
        "eks-pod-identity-agent": "v1.3.7-eksbuild.2",
        "aws-ebs-csi-driver": "v1.44.0-eksbuild.1",
    },
}
