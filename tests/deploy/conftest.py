"""The kustomize overlays rendered once per test session (kubectl kustomize, no cluster)."""

from __future__ import annotations

import pytest

from tools import k8s_check
from tools.k8s_check import K8sObject


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[K8sObject]]:
    """Overlay name → its rendered objects. Tests that change them work on deep copies."""
    return {overlay: k8s_check.render(overlay) for overlay in k8s_check.OVERLAYS}
