"""Provenance: how the image was referenced (tag vs digest) and its OCI labels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import make_finding
from imgscan.model import Finding

FLOATING_TAGS = frozenset(
    {
        "latest",
        "stable",
        "prod",
        "production",
        "main",
        "master",
        "edge",
        "current",
        "dev",
        "develop",
        "development",
        "nightly",
        "lts",
        "release",
        "mainline",
        "staging",
        "test",
        "unstable",
        "testing",
        "next",
        "beta",
        "alpha",
        "canary",
        "rolling",
        "head",
        "trunk",
    }
)
REQUIRED_LABELS = (
    ("label-missing-revision", "org.opencontainers.image.revision"),
    ("label-missing-source", "org.opencontainers.image.source"),
    ("label-missing-created", "org.opencontainers.image.created"),
)
_PATH_SOURCES = frozenset({"archive", "oci", "docker-archive", "oci-layout", "oci-archive"})
_NAMED_SOURCES = frozenset({"registry", "engine", "docker-engine"})
_SCHEMES = ("docker://", "docker-daemon:", "registry://")
_PATH_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".oci")
_PATH_SCHEMES = ("oci:", "docker-archive:", "oci-archive:", "file:")


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """``(name, tag, digest)`` of an image reference; tag None when absent (implicit latest)."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        tag = last.rsplit(":", 1)[1]
        name = name[: len(name) - len(tag) - 1]
    return name, tag, digest or None


def is_registry_reference(ctx: ImageContext, ref: str) -> bool:
    """Whether ``ref`` names an image in an engine or registry (not a file on disk)."""
    if not ref or ref.startswith(_PATH_SCHEMES):
        return False
    if ref.startswith(_SCHEMES) or ctx.image.source_kind in _NAMED_SOURCES:
        return True
    if ctx.image.source_kind in _PATH_SOURCES:
        return False
    return not ref.startswith(("/", "./", "../", "~")) and not ref.endswith(_PATH_SUFFIXES)


class ProvenanceAnalyzer:
    """Mutable or unpinned tag references; missing OCI provenance labels."""

    name = "hardening-provenance"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield tag and label findings."""
        yield from self._tag(ctx)
        yield from self._labels(ctx)

    def _tag(self, ctx: ImageContext) -> Iterator[Finding]:
        ref = ctx.reference or ""
        if not is_registry_reference(ctx, ref):
            return
        bare = ref
        for scheme in _SCHEMES:
            if bare.startswith(scheme):
                bare = bare[len(scheme) :]
        name, tag, digest = split_reference(bare)
        if digest:
            return
        if tag is None or tag.lower() in FLOATING_TAGS:
            shown = f"{name} (no tag, so :latest)" if tag is None else f"{name}:{tag}"
            yield make_finding(
                "tag-mutable",
                where="reference",
                detail=f"{name}:{tag or 'latest'}",
                location="reference",
                message=f"the image was referenced as {shown}; that tag moves, so what was "
                "scanned may not be what runs",
                extra={"reference": ref, "tag": tag or "latest"},
            )
            return
        yield make_finding(
            "tag-unpinned",
            where="reference",
            detail=f"{name}:{tag}",
            location="reference",
            message=f"the image was referenced as {name}:{tag} without a digest; a tag can be "
            "re-pushed",
            extra={"reference": ref, "tag": tag},
        )

    def _labels(self, ctx: ImageContext) -> Iterator[Finding]:
        raw = facts.container_config(ctx).get("Labels")
        labels: Mapping[str, object] = raw if isinstance(raw, Mapping) else {}
        for rule, key in REQUIRED_LABELS:
            value = labels.get(key)
            if isinstance(value, str) and value.strip():
                continue
            yield make_finding(
                rule,
                where=f"config.Labels.{key}",
                detail=key,
                location="config.Labels",
                message=f"the image has no {key} label"
                + (" (it is empty)" if isinstance(value, str) else ""),
            )
