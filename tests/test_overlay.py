"""Overlay state: every version ends present, deleted or overwritten, with the layer that did it."""

from __future__ import annotations

import pytest

from imgscan.layers.overlay import build_overlay
from imgscan.model import EntryKind, FileEvent, PathState, Status


def f(layer: int, path: str, size: int = 10) -> FileEvent:
    return FileEvent(layer, path, EntryKind.FILE, mode=0o100644, size=size)


def d(layer: int, path: str) -> FileEvent:
    return FileEvent(layer, path, EntryKind.DIR, mode=0o040755)


def wh(layer: int, path: str) -> FileEvent:
    return FileEvent(layer, path, EntryKind.WHITEOUT)


def opq(layer: int, path: str) -> FileEvent:
    return FileEvent(layer, path, EntryKind.OPAQUE)


def link(layer: int, path: str, target: str) -> FileEvent:
    return FileEvent(layer, path, EntryKind.HARDLINK, mode=0o100644, linkname=target)


def sym(layer: int, path: str, target: str) -> FileEvent:
    return FileEvent(layer, path, EntryKind.SYMLINK, mode=0o120777, linkname=target)


PRESENT = PathState(Status.PRESENT)


def deleted(by: int) -> PathState:
    return PathState(Status.DELETED, by)


def over(by: int) -> PathState:
    return PathState(Status.OVERWRITTEN, by)


CASES = {
    "whiteout deletes a file": (
        [d(0, "/root"), f(1, "/root/key"), wh(2, "/root/key")],
        {("/root/key", 1): deleted(2), ("/root", 0): PRESENT},
    ),
    "overwrite in a later layer": (
        [f(0, "/app/cfg"), f(2, "/app/cfg")],
        {("/app/cfg", 0): over(2), ("/app/cfg", 2): PRESENT},
    ),
    "whiteout of a directory deletes its subtree": (
        [d(0, "/a"), d(0, "/a/b"), f(0, "/a/b/c"), f(1, "/a/x"), wh(2, "/a")],
        {
            ("/a", 0): deleted(2),
            ("/a/b", 0): deleted(2),
            ("/a/b/c", 0): deleted(2),
            ("/a/x", 1): deleted(2),
        },
    ),
    "opaque dir hides lower contents but keeps its own": (
        [d(0, "/etc"), f(0, "/etc/old"), d(1, "/etc"), opq(1, "/etc"), f(1, "/etc/new")],
        {
            ("/etc/old", 0): deleted(1),
            ("/etc/new", 1): PRESENT,
            ("/etc", 1): PRESENT,
            ("/etc", 0): over(1),
        },
    ),
    "opaque marker listed after the new files still keeps them": (
        [f(0, "/etc/old"), f(1, "/etc/new"), opq(1, "/etc")],
        {("/etc/old", 0): deleted(1), ("/etc/new", 1): PRESENT},
    ),
    "dir replaced by a file deletes the dir's contents": (
        [d(0, "/x"), f(0, "/x/secret"), f(1, "/x")],
        {("/x", 0): over(1), ("/x/secret", 0): deleted(1), ("/x", 1): PRESENT},
    ),
    "file replaced by a dir": (
        [f(0, "/y"), d(1, "/y"), f(1, "/y/z")],
        {("/y", 0): over(1), ("/y", 1): PRESENT, ("/y/z", 1): PRESENT},
    ),
    "file replaced by an implicit dir (child written without its parent entry)": (
        [f(0, "/y"), f(1, "/y/z")],
        {("/y", 0): over(1), ("/y/z", 1): PRESENT},
    ),
    "deleted parent removes a child written two layers below": (
        [f(0, "/opt/app/.env"), f(1, "/opt/other"), wh(3, "/opt")],
        {("/opt/app/.env", 0): deleted(3), ("/opt/other", 1): deleted(3)},
    ),
    "re-added after deletion": (
        [f(0, "/k"), wh(1, "/k"), f(2, "/k")],
        {("/k", 0): deleted(1), ("/k", 2): PRESENT},
    ),
    "hardlink to a file of an earlier layer": (
        [f(0, "/bin/a"), link(1, "/bin/b", "/bin/a"), wh(2, "/bin/a")],
        {("/bin/a", 0): deleted(2), ("/bin/b", 1): PRESENT},
    ),
    "symlink replaced by a file": (
        [sym(0, "/lib", "usr/lib"), f(1, "/lib")],
        {("/lib", 0): over(1), ("/lib", 1): PRESENT},
    ),
    "whiteout of a path written in the same layer does not remove it": (
        [f(0, "/w"), f(1, "/w"), wh(1, "/w")],
        {("/w", 0): over(1), ("/w", 1): PRESENT},
    ),
    "whiteout of something never written is harmless": (
        [f(0, "/a"), wh(1, "/nope")],
        {("/a", 0): PRESENT},
    ),
    "duplicate entry within one layer: last wins": (
        [f(0, "/dup", 5), f(0, "/dup", 7)],
        {("/dup", 0): PRESENT},
    ),
}


@pytest.mark.parametrize("events,expected", CASES.values(), ids=list(CASES))
def test_overlay_states(
    events: list[FileEvent], expected: dict[tuple[str, int], PathState]
) -> None:
    ov = build_overlay(events)
    for (path, layer), want in expected.items():
        assert ov.state(path, layer) == want, (path, layer)


def test_final_view_and_hidden_bytes() -> None:
    ov = build_overlay(
        [
            d(0, "/app"),
            f(0, "/app/a", 100),
            f(0, "/app/b", 50),
            f(1, "/app/a", 7),
            wh(2, "/app/b"),
        ]
    )
    final = ov.final()
    assert set(final) == {"/app", "/app/a"}
    assert final["/app/a"].layer == 1
    assert ov.hidden_bytes() == {0: 150}
    assert ov.changes[2].deleted == 1
    assert ov.changes[1].modified == 1


def test_every_written_version_has_a_state() -> None:
    events = [d(0, "/a"), f(0, "/a/1"), f(1, "/a/2"), wh(2, "/a"), f(3, "/a"), opq(3, "/b")]
    ov = build_overlay(events)
    states = ov.states()
    for e in events:
        if e.kind not in (EntryKind.WHITEOUT, EntryKind.OPAQUE):
            assert (e.path, e.layer) in states


def test_deleted_file_still_reachable_through_a_hardlink() -> None:
    ov = build_overlay([f(0, "/bin/a"), link(1, "/bin/b", "/bin/a"), wh(2, "/bin/a")])
    assert ov.state("/bin/a", 0) == deleted(2)
    assert ov.still_linked("/bin/a", 0) == "/bin/b"
    ov = build_overlay(
        [f(0, "/bin/a"), link(1, "/bin/b", "/bin/a"), wh(2, "/bin/a"), wh(2, "/bin/b")]
    )
    assert ov.still_linked("/bin/a", 0) is None
