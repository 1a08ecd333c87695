"""Frozen data shared by every stage of the pipeline."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Severity(enum.StrEnum):
    """How bad a finding is; ordered from least to most severe."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Numeric order: info=0 ... critical=4."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


class Category(enum.StrEnum):
    """What kind of problem a finding is."""

    SECRET = "secret"
    CONFIG = "config"
    FILE = "file"


class Status(enum.StrEnum):
    """Exposure state of a layer entry after the last layer is applied."""

    PRESENT = "present"
    DELETED = "deleted"
    OVERWRITTEN = "overwritten"


class EntryKind(enum.StrEnum):
    """The type of a tar entry in a layer."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    WHITEOUT = "whiteout"
    OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer of an image: where it comes from and which instruction made it."""

    index: int
    digest: str | None  # digest of the blob as stored (compressed), when known
    diff_id: str | None  # sha256 of the uncompressed tar, from config rootfs.diff_ids
    size: int | None  # stored blob size, when known
    media_type: str | None = None
    created_by: str | None = None
    created: str | None = None


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the manifest and config say about the image."""

    reference: str
    digest: str | None  # manifest digest
    config_digest: str | None
    platform: str | None
    user: str | None
    layers: tuple[LayerInfo, ...]
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source_kind: str = "archive"


# One shared empty mapping: most entries have no xattrs, and an image can have
# hundreds of thousands of entries (an empty dict each would cost 64 bytes apiece).
NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One entry of one layer tarball, with whiteouts reported and not applied.

    For WHITEOUT the ``path`` is the path being removed (``/a/.wh.b`` -> ``/a/b``);
    for OPAQUE it is the directory whose lower contents are hidden.
    """

    layer: int
    path: str
    kind: EntryKind
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str | None = None
    xattrs: Mapping[str, bytes] = field(
        default_factory=lambda: NO_XATTRS, compare=False, hash=False
    )


@dataclass(frozen=True, slots=True)
class PathState:
    """Where a path version written by one layer stands after the last layer."""

    status: Status
    changed_in_layer: int | None = None  # layer that removed / replaced it


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem at one location. Raw secrets never appear unless asked for."""

    category: Category
    rule: str
    title: str
    severity: Severity
    message: str
    fingerprint: str
    layer: int | None = None
    layer_digest: str | None = None
    path: str | None = None
    line: int | None = None
    status: Status | None = None
    removed_in_layer: int | None = None
    location: str | None = None
    redacted: str | None = None
    secret_sha256: str | None = None
    created_by: str | None = None
    validated: bool | None = None
    secret: str | None = None  # only filled when the user asked for --show-secrets
    remediation: str | None = None
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Unscanned:
    """A file (or whole layer) that could not be scanned, and why."""

    layer: int | None
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Everything one scan learnt: the image, its findings and what it could not read."""

    image: ImageInfo
    findings: tuple[Finding, ...]
    unscanned: tuple[Unscanned, ...]
    stats: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def finding_order(f: Finding) -> tuple[Any, ...]:
    """Deterministic order: severity (worst first), layer, path, line, rule, location."""
    return (
        -f.severity.rank,
        f.layer if f.layer is not None else -1,
        f.path or "",
        f.line or 0,
        f.rule,
        f.location or "",
        f.fingerprint,
    )
