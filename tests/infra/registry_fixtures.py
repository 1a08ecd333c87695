"""Pytest fixtures: real docker-registry processes (plain, basic+TLS, token) for the session.

Import them from ``tests/conftest.py``::

    from tests.infra.registry_fixtures import *  # noqa: F403

Each registry is started once per session and stopped at the end; tests use
their own repository names so they do not see each other's images.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from imgscan.sources.auth import Credentials
from imgscan.sources.registry import RegistryClient, RetryPolicy
from tests.infra.registry import RegistryServer, registry_available
from tests.infra.tokenserver import Grant

# Test-only users; the passwords are obviously fake.
ALICE = Credentials("alice", "alice-test-password-not-secret")
BOB = Credentials("bob", "bob-test-password-not-secret")
TEST_USERS = {
    # alice may pull and push team/*; bob may pull other/* only (token mode).
    ALICE.username: Grant(ALICE.password, {"team/*": ("pull", "push")}),
    BOB.username: Grant(BOB.password, {"other/*": ("pull",)}),
}
FAST_RETRY = RetryPolicy(
    attempts=4, base_delay=0.01, max_delay=0.05, max_total=5.0, resumes=3, timeout=20.0
)

_counter = itertools.count()

__all__ = [
    "ALICE",
    "BOB",
    "FAST_RETRY",
    "basic_registry",
    "clean_registry_env",
    "plain_registry",
    "repo_name",
    "token_registry",
]


def _start(mode: str) -> Iterator[RegistryServer]:
    missing = registry_available()
    if missing:
        why = f"registry tests need {missing} (apt-get install docker-registry apache2-utils)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must provide this: {why}")  # a skip in CI would hide a gap
        pytest.skip(why)
    server = RegistryServer(mode, users=TEST_USERS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def plain_registry() -> Iterator[RegistryServer]:
    """docker-registry over plain HTTP without auth."""
    yield from _start("plain")


@pytest.fixture(scope="session")
def basic_registry() -> Iterator[RegistryServer]:
    """docker-registry over TLS (self-signed, ``ca_cert``) with htpasswd basic auth."""
    yield from _start("basic")


@pytest.fixture(scope="session")
def token_registry() -> Iterator[RegistryServer]:
    """docker-registry with bearer tokens from the test token server."""
    yield from _start("token")


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test, under ``team/``."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    return f"team/{base[:60].strip('-')}-{next(_counter)}"


@pytest.fixture(autouse=False)
def clean_registry_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No credentials from the developer's environment or ~/.docker leak into a test."""
    monkeypatch.delenv("IMGSCAN_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("IMGSCAN_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))


def client(server: RegistryServer, creds: Credentials | None = None) -> RegistryClient:
    """A RegistryClient for ``server`` with fast retries."""
    return RegistryClient(
        server.host,
        creds=creds,
        insecure=server.insecure,
        ca_cert=str(server.ca_cert) if server.ca_cert else None,
        retry=FAST_RETRY,
    )
