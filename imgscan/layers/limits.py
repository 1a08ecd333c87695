"""The bounds of a layer walk, in a module of their own: importing them costs nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """Bounds that keep a hostile layer from eating time, memory or disk."""

    max_layer_bytes: int = 64 * 1024**3  # uncompressed bytes per layer (bomb cap)
    max_file_bytes: int = 4 * 1024**3  # content scanned per file; beyond is reported
    chunk_size: int = 8 * 1024 * 1024
    overlap: int = 64 * 1024


__all__ = ["WalkLimits"]
