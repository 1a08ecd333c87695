"""The detector seam: content detectors see bytes of one file, analyzers see the whole image."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from imgscan.model import Category, FileEvent, Finding, ImageInfo, LayerInfo, PathState, Severity


@dataclass(frozen=True, slots=True)
class Hit:
    """A raw match inside detection. ``secret`` never leaves detection unredacted.

    ``offset`` is the byte offset of the secret in the ``data`` passed to ``scan``;
    the engine turns it into a 1-based line number. Set ``line`` only when the
    detector knows better (or ``None`` with ``no_line=True`` for whole-file hits).
    """

    rule: str
    title: str
    severity: Severity
    secret: str
    offset: int
    category: Category = Category.SECRET
    message: str = ""
    validated: bool | None = None
    no_line: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class FileContext:
    """Which file the bytes come from. ``path`` is ``/outer.zip!inner/path`` inside archives."""

    path: str
    layer: int
    size: int
    mode: int = 0o644
    depth: int = 0  # archive nesting depth, 0 for a file of the layer itself


class ContentDetector(Protocol):
    """Finds secrets in the bytes of one file (whole, or one chunk of a large file)."""

    name: str

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """Yield every hit in ``data``; offsets are relative to ``data``."""
        ...


@dataclass(frozen=True, slots=True)
class ImageContext:
    """What an image-level analyzer may look at once every layer has been walked.

    ``visible`` is the final filesystem (path -> the event that put it there),
    ``events`` every entry of every layer in order, ``files`` the content of the
    small files the walker captured (see ``imgscan.layers.capture``), keyed by
    (layer, path), and ``state(path, layer)`` the exposure state of a version.
    """

    image: ImageInfo
    visible: Mapping[str, FileEvent]
    events: tuple[FileEvent, ...]
    files: Mapping[tuple[int, str], bytes]
    states: Mapping[tuple[str, int], PathState]
    reference: str = ""

    def layer(self, index: int) -> LayerInfo | None:
        """The layer with this index, if any."""
        layers = self.image.layers
        return layers[index] if 0 <= index < len(layers) else None

    def final_content(self, path: str) -> bytes | None:
        """Content of ``path`` as visible in the final filesystem, if it was captured."""
        ev = self.visible.get(path)
        if ev is None:
            return None
        return self.files.get((ev.layer, path))


class ImageAnalyzer(Protocol):
    """Checks the image as a whole (config, final filesystem, history)."""

    name: str

    def analyze(self, ctx: ImageContext) -> Iterable[Finding]:
        """Yield findings; layer/status are filled in by the driver where a path is set."""
        ...
