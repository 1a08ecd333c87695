"""Turn what the user typed into a Source, in a fixed, documented order.

1. ``docker://NAME`` -> the local engine; ``oci:PATH`` / ``docker-archive:PATH`` -> that path.
2. An existing path (file or directory) -> docker-archive or OCI layout.
3. A name the local engine has -> the engine.
4. Anything else that parses as a reference -> the registry.
``kind`` (``--source archive|oci|engine|registry``) forces one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from imgscan.errors import ConfigError, SourceError
from imgscan.sources.base import Image, Source, SourceOptions

KINDS = ("archive", "oci", "engine", "registry")


@dataclass(frozen=True, slots=True)
class PathSource:
    """A docker-archive or OCI layout on disk."""

    path: str
    options: SourceOptions
    reference: str | None = None

    def open(self) -> AbstractContextManager[Image]:
        """Open the archive or layout."""
        from imgscan.sources.archive import open_path

        return open_path(self.path, self.options, self.reference)


@dataclass(frozen=True, slots=True)
class _Deferred:
    """A source whose module is imported only when used (engine/registry)."""

    kind: str
    ref: str
    options: SourceOptions
    extra: Any = None

    @contextlib.contextmanager
    def _open(self) -> Iterator[Image]:
        src = _make(self.kind, self.ref, self.options, self.extra)
        with src.open() as image:
            yield image

    def open(self) -> AbstractContextManager[Image]:
        """Open the engine or registry image."""
        return self._open()


def _make(kind: str, ref: str, options: SourceOptions, extra: Any) -> Source:
    if kind == "engine":
        try:
            from imgscan.sources.engine import EngineSource
        except ImportError as exc:  # pragma: no cover
            raise SourceError(f"engine source unavailable: {exc}") from None
        return EngineSource(ref, options)
    if kind == "registry":
        try:
            from imgscan.sources import registry
        except ImportError as exc:  # pragma: no cover
            raise SourceError(f"registry source unavailable: {exc}") from None
        kwargs = dict(extra or {})
        return registry.RegistrySource(ref, options, **kwargs)
    raise ConfigError(f"unknown source kind {kind!r}")


def _engine_has(ref: str, options: SourceOptions) -> bool:
    try:
        from imgscan.sources.engine import engine_has_image
    except ImportError:
        return False
    try:
        return bool(engine_has_image(ref, options))
    except Exception:
        return False


def resolve(
    reference: str, options: SourceOptions, kind: str | None = None, registry_kwargs: Any = None
) -> Source:
    """Pick the source for ``reference`` (see the module docstring for the order)."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--source must be one of {', '.join(KINDS)}")
    ref = reference
    for prefix, forced in (
        ("docker://", "engine"),
        ("docker-daemon:", "engine"),
        ("oci:", "oci"),
        ("docker-archive:", "archive"),
        ("registry://", "registry"),
    ):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            kind = kind or forced
            break
    if kind in ("archive", "oci"):
        if not os.path.exists(ref):
            raise SourceError(f"{ref}: no such file or directory")
        return PathSource(ref, options)
    if kind in ("engine", "registry"):
        return _Deferred(kind, ref, options, registry_kwargs)
    if os.path.exists(ref):
        return PathSource(ref, options)
    if _engine_has(ref, options):
        return _Deferred("engine", ref, options)
    if _looks_like_path(ref):
        raise SourceError(f"{ref}: no such file or directory")
    return _Deferred("registry", ref, options, registry_kwargs)


def _looks_like_path(ref: str) -> bool:
    """A typo'd file name should say "no such file", not try a registry."""
    return ref.startswith(("/", "./", "../", "~")) or ref.endswith(
        (".tar", ".tar.gz", ".tgz", ".tar.zst", ".oci", ".json")
    )
