"""Shared test setup: real-service fixtures (registry, dockerd) and the CI rule on skips."""

from __future__ import annotations

import os

import pytest

from tests.infra.dockerd import dockerd  # noqa: F401
from tests.infra.registry_fixtures import *  # noqa: F403

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip locally when a real component is missing; in CI that is a failure, not a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {why}")
    pytest.skip(why)
