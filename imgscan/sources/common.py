"""Manifest, index and config parsing shared by every source."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from imgscan.errors import SourceError
from imgscan.model import ImageInfo, LayerInfo

DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({MT_OCI_INDEX, MT_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MT_OCI_MANIFEST, MT_DOCKER_MANIFEST})

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def is_compressed_archive(path: str) -> bool:
    """True for a regular file that starts with gzip or zstd magic bytes."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return False
    return magic.startswith(GZIP_MAGIC) or magic.startswith(ZSTD_MAGIC)


def check_digest(digest: object, what: str) -> str:
    """Return ``digest`` if it is a well-formed sha256/sha512 digest, else raise SourceError."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise SourceError(f"{what}: malformed digest {str(digest)[:80]!r}")
    return digest


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON bytes, turning any failure into a one-line SourceError."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{what}: malformed JSON ({exc})") from None


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse JSON bytes that must hold an object."""
    obj = load_json(data, what)
    if not isinstance(obj, dict):
        raise SourceError(f"{what}: expected a JSON object")
    return obj


def platform_of(desc: Mapping[str, Any]) -> str | None:
    """``os/arch[/variant]`` of an index descriptor, or None when it has no platform."""
    p = desc.get("platform")
    if not isinstance(p, Mapping):
        return None
    os_, arch = p.get("os"), p.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    variant = p.get("variant")
    return f"{os_}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")


def _platform_matches(want: str, have: str) -> bool:
    w = want.split("/")
    h = have.split("/")
    if w[:2] != h[:2]:
        return False
    if len(w) > 2:
        return len(h) > 2 and w[2] == h[2]
    return True


def select_manifest(index: Mapping[str, Any], platform: str, what: str) -> Mapping[str, Any]:
    """Pick the manifest descriptor for ``platform`` from an index / manifest list.

    Attestation manifests (``unknown/unknown``) are skipped. With a single
    platform-less manifest, that one is chosen. When nothing fits, the error lists
    the platforms on offer.
    """
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise SourceError(f"{what}: index lists no manifests")
    descs = [m for m in manifests if isinstance(m, Mapping)]
    candidates: list[tuple[str | None, Mapping[str, Any]]] = []
    offered: list[str] = []
    for d in descs:
        plat = platform_of(d)
        annotations = d.get("annotations") or {}
        if (
            isinstance(annotations, Mapping)
            and annotations.get("vnd.docker.reference.type") == "attestation-manifest"
        ):
            continue
        if plat is None or plat == "unknown/unknown":
            if plat is None:
                candidates.append((None, d))
            continue
        offered.append(plat)
        if _platform_matches(platform, plat):
            candidates.append((plat, d))
    with_plat = [d for p, d in candidates if p is not None]
    if with_plat:
        return with_plat[0]
    if not offered and len(candidates) >= 1:
        return candidates[0][1]
    choices = ", ".join(sorted(set(offered))) or "none"
    raise SourceError(f"{what}: no manifest for platform {platform}; available: {choices}")


def manifest_layers(manifest: Mapping[str, Any], what: str) -> list[Mapping[str, Any]]:
    """The layer descriptors of an image manifest, validated."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise SourceError(f"{what}: manifest has no layers list")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            raise SourceError(f"{what}: layer {i} is not an object")
        check_digest(layer.get("digest"), f"{what}: layer {i}")
        out.append(layer)
    return out


def manifest_config(manifest: Mapping[str, Any], what: str) -> str:
    """The config digest of an image manifest, validated."""
    cfg = manifest.get("config")
    if not isinstance(cfg, Mapping):
        raise SourceError(f"{what}: manifest has no config descriptor")
    return check_digest(cfg.get("digest"), f"{what}: config")


def diff_ids(config: Mapping[str, Any]) -> list[str]:
    """``rootfs.diff_ids`` from an image config (may be empty for odd images)."""
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, Mapping):
        return []
    ids = rootfs.get("diff_ids")
    if not isinstance(ids, list):
        return []
    return [check_digest(d, "config rootfs.diff_ids") for d in ids]


def history_for_layers(config: Mapping[str, Any], n_layers: int) -> list[Mapping[str, Any] | None]:
    """Map history entries to layers, skipping ``empty_layer`` entries.

    When the history has fewer non-empty entries than layers (squashed or odd
    images), the remaining layers get None rather than a wrong instruction.
    """
    hist = config.get("history")
    out: list[Mapping[str, Any] | None] = [None] * n_layers
    if not isinstance(hist, list):
        return out
    non_empty = [h for h in hist if isinstance(h, Mapping) and not h.get("empty_layer")]
    if len(non_empty) == n_layers:
        return list(non_empty)
    # Mismatch: align from the top (the newest entries describe the newest layers).
    for i in range(1, min(n_layers, len(non_empty)) + 1):
        out[n_layers - i] = non_empty[len(non_empty) - i]
    return out


def config_user(config: Mapping[str, Any]) -> str | None:
    """The configured runtime ``User``, or None when unset."""
    c = config.get("config")
    if isinstance(c, Mapping):
        u = c.get("User")
        if isinstance(u, str) and u:
            return u
    return None


def config_platform(config: Mapping[str, Any]) -> str | None:
    """``os/arch[/variant]`` from an image config."""
    os_, arch = config.get("os"), config.get("architecture")
    if isinstance(os_, str) and isinstance(arch, str):
        v = config.get("variant")
        return f"{os_}/{arch}" + (f"/{v}" if isinstance(v, str) and v else "")
    return None


def build_image_info(
    *,
    reference: str,
    manifest_digest: str | None,
    config_digest: str | None,
    config: Mapping[str, Any],
    layer_digests: Sequence[str | None],
    layer_sizes: Sequence[int | None],
    media_types: Sequence[str | None],
    source_kind: str,
) -> ImageInfo:
    """Assemble ImageInfo: layers with their diff_ids and the history that made them."""
    n = len(layer_digests)
    ids = diff_ids(config)
    if ids and len(ids) != n:
        raise SourceError(
            f"{reference}: manifest lists {n} layers but config has {len(ids)} diff_ids"
        )
    hist = history_for_layers(config, n)
    layers = []
    for i in range(n):
        h = hist[i]
        created_by = h.get("created_by") if h else None
        created = h.get("created") if h else None
        layers.append(
            LayerInfo(
                index=i,
                digest=layer_digests[i],
                diff_id=ids[i] if ids else None,
                size=layer_sizes[i],
                media_type=media_types[i],
                created_by=created_by if isinstance(created_by, str) else None,
                created=created if isinstance(created, str) else None,
            )
        )
    return ImageInfo(
        reference=reference,
        digest=manifest_digest,
        config_digest=config_digest,
        platform=config_platform(config),
        user=config_user(config),
        layers=tuple(layers),
        config=config,
        source_kind=source_kind,
    )
