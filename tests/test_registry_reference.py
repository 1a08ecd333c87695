"""Image reference parsing and Docker Hub normalisation (no network)."""

from __future__ import annotations

import pytest

from imgscan.errors import ConfigError
from imgscan.sources.reference import Reference, looks_like_reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("library/alpine", "docker.io", "library/alpine", "latest", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/alpine:edge", "docker.io", "library/alpine", "edge", None),
        ("registry-1.docker.io/bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("ghcr.io/org/team/app:v1.2.3", "ghcr.io", "org/team/app", "v1.2.3", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
        ("127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app", "latest", None),
        (f"alpine@{DIGEST}", "docker.io", "library/alpine", None, DIGEST),
        (f"reg.example.com/a/b:1@{DIGEST}", "reg.example.com", "a/b", "1", DIGEST),
        ("docker://quay.io/org/app:1", "quay.io", "org/app", "1", None),
        (
            "my-reg.internal:443/x__y/a.b-c:TAG_1",
            "my-reg.internal:443",
            "x__y/a.b-c",
            "TAG_1",
            None,
        ),
    ],
)
def test_parse_reference(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_docker_hub_api_host_and_display() -> None:
    ref = parse_reference("alpine:3.19")
    assert ref.api_host == "registry-1.docker.io"
    assert ref.name == "docker.io/library/alpine"
    assert str(ref) == "docker.io/library/alpine:3.19"
    assert ref.ref == "3.19"
    pinned = ref.with_digest(DIGEST)
    assert pinned.ref == DIGEST
    assert str(pinned) == f"docker.io/library/alpine:3.19@{DIGEST}"


def test_private_registry_api_host_is_the_registry() -> None:
    ref = parse_reference("127.0.0.1:5000/team/app:1")
    assert ref.api_host == "127.0.0.1:5000"
    assert ref == Reference("127.0.0.1:5000", "team/app", "1", None)


def test_no_default_tag_when_asked() -> None:
    assert parse_reference("ghcr.io/org/app", default_tag=None).tag is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Alpine", "lowercase"),
        ("ghcr.io/Org/app", "lowercase"),
        ("alpine@sha256:1234", "malformed digest"),
        ("alpine:bad tag", "malformed tag"),
        ("alpine:" + "x" * 200, "malformed tag"),
        ("https://ghcr.io/org/app", "no URL scheme"),
        ("ghcr.io//app", "empty repository"),
        ("ghcr.io/org/app/", "empty repository"),
        ("a" * 300, "longer than"),
    ],
)
def test_bad_references_are_one_line_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_reference(text)
    message = str(exc.value)
    assert fragment in message
    assert "\n" not in message
    assert not looks_like_reference(text)
