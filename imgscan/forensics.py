"""``imgscan layers``: the layer-by-layer forensic view of an image (no content detectors)."""

from __future__ import annotations

from dataclasses import dataclass

from imgscan.model import EntryKind, FileEvent, ImageInfo, Status, Unscanned
from imgscan.scan import ProgressFn, ScanOptions, scan_layer


@dataclass(frozen=True, slots=True)
class LayerSummary:
    """One row of ``imgscan layers``."""

    index: int
    digest: str | None
    diff_id: str | None
    size: int | None
    uncompressed: int
    added: int
    modified: int
    deleted: int
    hidden_bytes: int
    created_by: str | None
    compression: str


@dataclass(frozen=True, slots=True)
class Forensics:
    """The layer-by-layer forensic view of an image."""

    image: ImageInfo
    layers: tuple[LayerSummary, ...]
    entries: tuple[tuple[FileEvent, Status | None, int | None], ...]
    unscanned: tuple[Unscanned, ...]


def layer_forensics(
    reference: str, options: ScanOptions | None = None, progress: ProgressFn | None = None
) -> Forensics:
    """Walk every layer (no content detectors) and describe what each one did."""
    from imgscan.layers.overlay import build_overlay
    from imgscan.sources.resolve import resolve

    opts = options or ScanOptions()
    source = resolve(reference, opts.source, opts.source_kind, opts.registry or None)
    with source.open() as image:
        n = len(image.blobs)
        results = [scan_layer(b, None, opts.limits, progress, n) for b in image.blobs]
    info = image.info
    events = [e for lr in results for e in lr.events]
    overlay = build_overlay(events)
    hidden = overlay.hidden_bytes()
    rows = []
    for lr in results:
        li = info.layers[lr.index]
        ch = overlay.changes.get(lr.index)
        rows.append(
            LayerSummary(
                index=lr.index,
                digest=li.digest,
                diff_id=li.diff_id,
                size=li.size,
                uncompressed=lr.uncompressed_bytes,
                added=ch.added if ch else 0,
                modified=ch.modified if ch else 0,
                deleted=ch.deleted if ch else 0,
                hidden_bytes=hidden.get(lr.index, 0),
                created_by=li.created_by,
                compression=lr.compression,
            )
        )
    entries: list[tuple[FileEvent, Status | None, int | None]] = []
    for e in events:
        if e.kind in (EntryKind.WHITEOUT, EntryKind.OPAQUE):
            entries.append((e, None, None))
            continue
        st = overlay.state(e.path, e.layer)
        entries.append((e, st.status if st else None, st.changed_in_layer if st else None))
    unscanned = tuple(u for lr in results for u in lr.unscanned)
    return Forensics(info, tuple(rows), tuple(entries), unscanned)


__all__ = ["Forensics", "LayerSummary", "layer_forensics"]
