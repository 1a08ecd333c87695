"""Image references: ``[host[:port]/]repo[:tag][@digest]`` with Docker Hub normalisation.

Follows the grammar of docker/distribution's ``reference`` package: the first
path component is a registry host only when it contains a ``.`` or a ``:`` or is
``localhost``; otherwise the image lives on Docker Hub, where one-component
names get the ``library/`` prefix (``alpine`` -> ``docker.io/library/alpine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgscan.errors import ConfigError
from imgscan.sources.common import DIGEST_RE

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference; ``registry`` is ``docker.io`` for Docker Hub."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host (and port) to talk the distribution API to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the manifests endpoint for: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (the tag is kept for display)."""
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse ``[host[:port]/]repo[:tag][@digest]``; raise ConfigError naming what is wrong."""
    original = text
    shown = original[:200]
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty image reference")
    text = text.strip()
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in ("docker", "registry"):
            raise ConfigError(
                f"{shown!r}: image references have no URL scheme (write host/repo:tag)"
            )
        text = text.split("://", 1)[1]
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ConfigError(f"{shown!r}: malformed digest {digest[:80]!r}")
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ConfigError(f"{shown!r}: malformed tag {tag[:80]!r}")
    parts = text.split("/")
    registry = DOCKER_HUB
    if len(parts) > 1 and _is_host(parts[0]):
        registry = parts[0]
        parts = parts[1:]
        if not _HOST_RE.match(registry):
            raise ConfigError(f"{shown!r}: malformed registry host {registry[:80]!r}")
        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{shown!r}: empty repository name component")
    for p in parts:
        if not _COMPONENT_RE.match(p):
            hint = " (repository names are lowercase)" if p.lower() != p else ""
            raise ConfigError(f"{shown!r}: invalid repository name component {p[:80]!r}{hint}")
    if registry == DOCKER_HUB and len(parts) == 1:
        parts = ["library", *parts]
    repository = "/".join(parts)
    if len(registry) + 1 + len(repository) > _MAX_NAME:
        raise ConfigError(f"{shown!r}: repository name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def looks_like_reference(text: str) -> bool:
    """Whether ``text`` parses as an image reference (no network involved)."""
    try:
        parse_reference(text)
    except ConfigError:
        return False
    return True
