"""The source seam: anything that yields image metadata and layer blobs to stream."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from imgscan.model import ImageInfo


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A layer as stored: ``open()`` returns the raw (possibly compressed) byte stream.

    ``digest`` is verified against the raw stream and ``diff_id`` against the
    uncompressed tar, by the walker, when they are known.
    """

    index: int
    digest: str | None
    diff_id: str | None
    size: int | None
    media_type: str | None
    open: Callable[[], BinaryIO]
    name: str | None = None  # its member name inside an archive or layout, when it has one


@dataclass(frozen=True, slots=True)
class Image:
    """An opened image: its metadata and its layers in order (lowest first)."""

    info: ImageInfo
    blobs: tuple[LayerBlob, ...]
    # The config document exactly as stored (keeps the image ID when pushing it on).
    config_bytes: bytes | None = None
    # The archive file or layout directory, for an image read from local disk. There the
    # digests in names and manifests are claims anyone with write access could leave
    # behind while changing the bytes, so the verdict cache keys such an image on a hash
    # of its bytes (registries and engines address content by digest themselves).
    local_path: str | None = None


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Options every source understands."""

    platform: str = "linux/amd64"
    docker_host: str | None = None
    max_metadata_bytes: int = 8 * 1024 * 1024  # manifests, configs, indexes
    spool_dir: str | None = None  # where temporary spools go (always removed)


class Source(Protocol):
    """One way to obtain an image. ``open()`` is a context manager that cleans up."""

    def open(self) -> AbstractContextManager[Image]:
        """Open the image; everything temporary is removed when the context exits."""
        ...
