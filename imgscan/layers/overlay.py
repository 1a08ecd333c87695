"""Overlay state: apply every layer's events in order and label each written version.

A *version* is one write of one path by one layer. After the last layer each
version is ``present`` (visible in the final filesystem), ``deleted`` (removed by a
whiteout, an opaque directory, or the removal/replacement of a parent directory),
or ``overwritten`` (replaced by a later write of the same path).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from imgscan.model import EntryKind, FileEvent, PathState, Status

_PRESENT = PathState(Status.PRESENT)  # frozen: one shared instance for every present version


@dataclass(slots=True)
class LayerChanges:
    """Per-layer counts for the forensic listing."""

    added: int = 0
    modified: int = 0
    deleted: int = 0
    hidden_bytes: int = 0  # bytes this layer wrote that are invisible in the final filesystem


@dataclass(slots=True)
class _Node:
    event: FileEvent
    implicit: bool = False  # a parent directory that no entry wrote


@dataclass(slots=True)
class Overlay:
    """The union filesystem, built one event at a time, remembering every fate."""

    visible: dict[str, _Node] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)
    fates: dict[tuple[str, int], PathState] = field(default_factory=dict)
    written: dict[tuple[str, int], FileEvent] = field(default_factory=dict)
    changes: dict[int, LayerChanges] = field(default_factory=dict)
    links: dict[tuple[str, int], list[tuple[str, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = FileEvent(layer=-1, path="/", kind=EntryKind.DIR, mode=0o040755)
        self.visible["/"] = _Node(root, implicit=True)

    # -- tree helpers -------------------------------------------------------------------------
    def _link(self, path: str) -> None:
        if path == "/":
            return
        self.children.setdefault(posixpath.dirname(path), set()).add(path)

    def _unlink(self, path: str) -> None:
        kids = self.children.get(posixpath.dirname(path))
        if kids is not None:
            kids.discard(path)

    def _mark(self, node: _Node, status: Status, layer: int) -> None:
        if node.implicit:
            return
        ev = node.event
        self.fates[(ev.path, ev.layer)] = PathState(status, layer)

    def _remove_subtree(
        self, path: str, by_layer: int, status: Status, *, keep_self: bool, lower_only: bool
    ) -> None:
        """Remove ``path``'s descendants (and itself unless keep_self), labelling each."""
        stack = list(self.children.get(path, ()))
        removed: list[str] = []
        while stack:
            p = stack.pop()
            node = self.visible.get(p)
            if node is None:
                continue
            stack.extend(self.children.get(p, ()))
            if lower_only and node.event.layer >= by_layer:
                continue
            self._mark(node, Status.DELETED, by_layer)
            removed.append(p)
        for p in removed:
            self.visible.pop(p, None)
            self._unlink(p)
            if not self.children.get(p):
                self.children.pop(p, None)
        if not keep_self:
            node = self.visible.pop(path, None)
            if node is not None:
                self._mark(node, status, by_layer)
                self._unlink(path)
            if not self.children.get(path):
                self.children.pop(path, None)

    def _ensure_parents(self, path: str, layer: int) -> None:
        missing = []
        parent = posixpath.dirname(path)
        while parent not in self.visible or self.visible[parent].event.kind is not EntryKind.DIR:
            missing.append(parent)
            if parent == "/":
                break
            parent = posixpath.dirname(parent)
        for p in reversed(missing):
            old = self.visible.get(p)
            if old is not None:  # a file or symlink where a directory is now needed
                self._remove_subtree(
                    p, layer, Status.OVERWRITTEN, keep_self=False, lower_only=False
                )
            ev = FileEvent(layer=layer, path=p, kind=EntryKind.DIR, mode=0o040755)
            self.visible[p] = _Node(ev, implicit=True)
            self._link(p)

    # -- applying events ----------------------------------------------------------------------
    def apply(self, ev: FileEvent) -> None:
        """Apply one event of the layer being walked (layers must come in order)."""
        ch = self.changes.setdefault(ev.layer, LayerChanges())
        if ev.kind is EntryKind.WHITEOUT:
            node = self.visible.get(ev.path)
            if node is not None and node.event.layer < ev.layer:
                self._remove_subtree(
                    ev.path, ev.layer, Status.DELETED, keep_self=False, lower_only=False
                )
                ch.deleted += 1
            return
        if ev.kind is EntryKind.OPAQUE:
            if ev.path in self.visible:
                before = len(self.fates)
                self._remove_subtree(
                    ev.path, ev.layer, Status.DELETED, keep_self=True, lower_only=True
                )
                ch.deleted += len(self.fates) - before
            return
        if ev.path == "/":
            return
        self._ensure_parents(ev.path, ev.layer)
        old = self.visible.get(ev.path)
        key = (ev.path, ev.layer)
        if old is not None:
            ch.modified += 1 if old.event.layer < ev.layer or old.implicit else 0
            if old.event.kind is EntryKind.DIR and ev.kind is EntryKind.DIR:
                self._mark(old, Status.OVERWRITTEN, ev.layer)
            elif old.event.kind is EntryKind.DIR:
                self._remove_subtree(
                    ev.path, ev.layer, Status.OVERWRITTEN, keep_self=False, lower_only=False
                )
            else:
                self._mark(old, Status.OVERWRITTEN, ev.layer)
            if old.event.layer == ev.layer and not old.implicit:
                self.fates.pop(key, None)  # a duplicate inside one layer: last one wins
        else:
            ch.added += 1
        if ev.kind is EntryKind.HARDLINK and ev.linkname:
            target = self.visible.get(ev.linkname)
            if target is not None and not target.implicit:
                tkey = (target.event.path, target.event.layer)
                self.links.setdefault(tkey, []).append(key)
        self.visible[ev.path] = _Node(ev)
        self._link(ev.path)
        self.written[key] = ev

    def apply_all(self, events: Iterable[FileEvent]) -> None:
        """Apply events in order."""
        for ev in events:
            self.apply(ev)

    # -- results ------------------------------------------------------------------------------
    def state(self, path: str, layer: int) -> PathState | None:
        """The exposure state of the version of ``path`` written by ``layer``."""
        fate = self.fates.get((path, layer))
        if fate is not None:
            return fate
        node = self.visible.get(path)
        if node is not None and node.event.layer == layer and not node.implicit:
            return _PRESENT
        if (path, layer) in self.written:
            return _PRESENT
        return None

    def still_linked(self, path: str, layer: int) -> str | None:
        """A present hardlink that still shows this version's content, if any."""
        for link_path, link_layer in self.links.get((path, layer), ()):
            st = self.state(link_path, link_layer)
            if st is not None and st.status is Status.PRESENT:
                return link_path
        return None

    def states(self) -> dict[tuple[str, int], PathState]:
        """The state of every version ever written."""
        out: dict[tuple[str, int], PathState] = {}
        for key in self.written:
            st = self.state(*key)
            if st is not None:
                out[key] = st
        return out

    def states_view(self) -> Mapping[tuple[str, int], PathState]:
        """``states()`` as a read-only view computed on access (no copy per version)."""
        return _StatesView(self)

    def final_view(self) -> Mapping[str, FileEvent]:
        """``final()`` as a read-only view over the live tree (no copy per path)."""
        return _FinalView(self)

    def final(self) -> dict[str, FileEvent]:
        """The final filesystem: path -> the event that put it there (implicit dirs omitted)."""
        return {p: n.event for p, n in self.visible.items() if not n.implicit}

    def hidden_bytes(self) -> dict[int, int]:
        """Per layer: bytes of regular files that are deleted or overwritten at the end."""
        out: dict[int, int] = {}
        for (_path, layer), ev in self.written.items():
            if ev.kind is not EntryKind.FILE:
                continue
            st = self.fates.get((ev.path, layer))
            if st is not None:
                out[layer] = out.get(layer, 0) + ev.size
        return out


class _StatesView(Mapping[tuple[str, int], PathState]):
    """Every written version's state, computed on access: an image with hundreds of
    thousands of entries would otherwise hold a second dict of them."""

    __slots__ = ("_ov",)

    def __init__(self, ov: Overlay) -> None:
        self._ov = ov

    def __getitem__(self, key: tuple[str, int]) -> PathState:
        if key not in self._ov.written:
            raise KeyError(key)
        st = self._ov.state(*key)
        if st is None:  # pragma: no cover - every written version has a state
            raise KeyError(key)
        return st

    def __contains__(self, key: object) -> bool:
        return key in self._ov.written

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._ov.written)

    def __len__(self) -> int:
        return len(self._ov.written)


class _FinalView(Mapping[str, FileEvent]):
    """The final filesystem over the live tree, implicit parent directories left out."""

    __slots__ = ("_len", "_ov")

    def __init__(self, ov: Overlay) -> None:
        self._ov = ov
        self._len: int | None = None

    def __getitem__(self, path: str) -> FileEvent:
        node = self._ov.visible[path]
        if node.implicit:
            raise KeyError(path)
        return node.event

    def __contains__(self, path: object) -> bool:
        node = self._ov.visible.get(path) if isinstance(path, str) else None
        return node is not None and not node.implicit

    def __iter__(self) -> Iterator[str]:
        return (p for p, n in self._ov.visible.items() if not n.implicit)

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for n in self._ov.visible.values() if not n.implicit)
        return self._len


def build_overlay(events: Iterable[FileEvent]) -> Overlay:
    """An overlay with ``events`` (all layers, in order) applied."""
    ov = Overlay()
    ov.apply_all(events)
    return ov


def state_map(ov: Overlay) -> Mapping[tuple[str, int], PathState]:
    """Shorthand for ``ov.states()``."""
    return ov.states()
