"""Writable filesystem: world-writable paths, runtime-writable paths, writable PATH dirs."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import (
    MAX_PER_RULE,
    check,
    make_finding,
    summary_finding,
)
from imgscan.model import EntryKind, FileEvent, Finding

_KINDS = frozenset({EntryKind.FILE, EntryKind.HARDLINK, EntryKind.DIR})
# Mounted or replaced by the runtime, or scratch space a --read-only container gets as tmpfs.
RUNTIME_PATHS = ("/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/run", "/var/run")
RUNTIME_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"})
Keep = Callable[[FileEvent], bool]


def _world_writable(ev: FileEvent) -> bool:
    if ev.kind not in _KINDS or not ev.mode & 0o002:
        return False
    return not (ev.kind is EntryKind.DIR and ev.mode & 0o1000)


def world_only(ev: FileEvent) -> tuple[str, ...]:
    """Reasons left to ``fs-world-writable``: "other" when that check reports the path."""
    return ("other",) if _world_writable(ev) else ()


def _kind_word(ev: FileEvent) -> str:
    return "directory" if ev.kind is EntryKind.DIR else "file"


def _collapse(paths: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Keep the top-most of the flagged paths; count the flagged paths below each."""
    flagged = set(paths)
    tops: list[str] = []
    below: dict[str, int] = {}
    for p in sorted(paths):
        parent = p.rsplit("/", 1)[0]
        top = None
        while parent:
            if parent in flagged:
                top = parent
            parent = parent.rsplit("/", 1)[0]
        if top is None:
            tops.append(p)
        else:
            below[top] = below.get(top, 0) + 1
    return tops, below


class _Attributor:
    """Finds the layer that made a path the way it is, indexing only the paths asked for."""

    def __init__(self, ctx: ImageContext, steps: Sequence[facts.Step], paths: set[str]) -> None:
        self.ctx = ctx
        self.steps = steps
        self.vs = facts.versions(ctx.events, paths)

    def __call__(self, ev: FileEvent, keep: Keep) -> tuple[int, str]:
        first = facts.introduced_in(self.ctx, self.vs.get(ev.path, [ev]), ev, keep)
        step = facts.step_of_layer(self.steps, first.layer)
        how = f"layer {first.layer}"
        if step is not None and step.created_by:
            how += f" ({step.created_by.strip()[:120]})"
        return first.layer, how


class FilesystemAnalyzer:
    """World-writable paths, paths the runtime user can write, writable PATH directories."""

    name = "hardening-fs"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield filesystem findings, with the layer that made each path writable."""
        ru = facts.runtime_user(ctx)
        world_tops, world_below = _collapse(
            [p for p, ev in ctx.visible.items() if _world_writable(ev)]
        )
        run_tops: list[str] = []
        run_below: dict[str, int] = {}
        volumes = sorted(self._volumes(ctx))
        if ru.uid is not None and not ru.is_root:
            excluded = facts.PathSet((*RUNTIME_PATHS, *volumes))
            run_tops, run_below = _collapse(
                [
                    p
                    for p, ev in ctx.visible.items()
                    if ev.kind in _KINDS
                    and facts.write_reason(ev, ru) not in (None, *world_only(ev))
                    and p not in RUNTIME_FILES
                    and not excluded.covers(p)
                ]
            )
        path_dirs = self._path_dirs(ctx, ru)
        wanted = {
            *world_tops[:MAX_PER_RULE],
            *run_tops[:MAX_PER_RULE],
            *(d for d, _, _ in path_dirs),
        }
        attribute = _Attributor(ctx, facts.history(ctx), wanted)
        yield from self._world(ctx, world_tops, world_below, attribute)
        if run_tops:
            yield from self._runtime(ctx, ru, volumes, run_tops, run_below, attribute)
        yield from self._path_dir_findings(ctx, ru, path_dirs, attribute)

    def _world(
        self, ctx: ImageContext, tops: list[str], below: Mapping[str, int], attribute: _Attributor
    ) -> Iterator[Finding]:
        for p in tops[:MAX_PER_RULE]:
            ev = ctx.visible[p]
            layer, how = attribute(ev, _world_writable)
            more = below.get(p, 0)
            tail = f"; {more} more world-writable entries below it" if more else ""
            yield make_finding(
                "fs-world-writable",
                where=p,
                detail=_kind_word(ev),
                path=p,
                layer=layer,
                message=f"{_kind_word(ev)} {p} has mode {facts.mode_str(ev.mode)} "
                f"(owner {ev.uid}:{ev.gid}): anyone can write it; made world-writable by "
                f"{how}{tail}",
                extra={"mode": facts.mode_str(ev.mode), "below": more},
            )
        if len(tops) > MAX_PER_RULE:
            yield summary_finding(
                "fs-world-writable",
                "world-writable paths",
                tops[MAX_PER_RULE:],
                check("fs-world-writable").severity,
            )

    def _runtime(
        self,
        ctx: ImageContext,
        ru: facts.RuntimeUser,
        volumes: list[str],
        tops: list[str],
        below: Mapping[str, int],
        attribute: _Attributor,
    ) -> Iterator[Finding]:
        def writable(ev: FileEvent) -> bool:
            return ev.kind in _KINDS and facts.write_reason(ev, ru) is not None

        vol_note = f"declared volumes: {', '.join(volumes)}" if volumes else "no VOLUME declared"
        for p in tops[:MAX_PER_RULE]:
            ev = ctx.visible[p]
            reason = facts.write_reason(ev, ru)
            layer, how = attribute(ev, writable)
            more = below.get(p, 0)
            tail = f"; {more} more writable entries below it" if more else ""
            yield make_finding(
                "fs-writable-by-runtime-user",
                where=p,
                detail=f"{ru.spec}:{reason}",
                path=p,
                layer=layer,
                message=f"{_kind_word(ev)} {p} (mode {facts.mode_str(ev.mode)}, owner "
                f"{ev.uid}:{ev.gid}) is writable by the runtime user {ru.spec!r} through its "
                f"{reason} bits; made writable by {how}; it is not under a volume "
                f"({vol_note}){tail}",
                extra={"reason": reason, "below": more, "volumes": volumes},
            )
        if len(tops) > MAX_PER_RULE:
            yield summary_finding(
                "fs-writable-by-runtime-user",
                "paths writable by the runtime user",
                tops[MAX_PER_RULE:],
                check("fs-writable-by-runtime-user").severity,
            )

    def _volumes(self, ctx: ImageContext) -> set[str]:
        vols = facts.container_config(ctx).get("Volumes")
        out: set[str] = set()
        if isinstance(vols, Mapping):
            for v in vols:
                if isinstance(v, str) and v.startswith("/"):
                    out.add(posixpath.normpath(v))
        return out

    def _path_dirs(self, ctx: ImageContext, ru: facts.RuntimeUser) -> list[tuple[str, str, str]]:
        """(resolved dir, PATH entry, reason) for every writable directory on PATH."""
        path_var = facts.env_map(ctx).get("PATH", facts.DEFAULT_PATH)
        seen: set[str] = set()
        out = []
        for d in path_var.split(":"):
            if not d.startswith("/"):
                continue
            real = facts.resolve_symlinks(ctx.visible, posixpath.normpath(d))
            ev = ctx.visible.get(real)
            if real in seen or ev is None or ev.kind is not EntryKind.DIR:
                continue
            seen.add(real)
            reason = None
            if ev.mode & 0o002:
                reason = "other"
            elif not ru.is_root and ru.uid is not None:
                reason = facts.write_reason(ev, ru)
            if reason is not None:
                out.append((real, d, reason))
        return out

    def _path_dir_findings(
        self,
        ctx: ImageContext,
        ru: facts.RuntimeUser,
        dirs: list[tuple[str, str, str]],
        attribute: _Attributor,
    ) -> Iterator[Finding]:
        for real, entry, reason in dirs:
            ev = ctx.visible[real]

            def keep(v: FileEvent, r: str = reason) -> bool:
                return v.kind is EntryKind.DIR and (
                    bool(v.mode & 0o002) if r == "other" else facts.write_reason(v, ru) == r
                )

            layer, how = attribute(ev, keep)
            who = "anyone" if reason == "other" else f"the runtime user {ru.spec!r}"
            alias = f" (PATH entry {entry})" if real != entry else ""
            yield make_finding(
                "fs-writable-path-dir",
                where=real,
                detail=reason,
                path=real,
                layer=layer,
                message=f"PATH directory {real}{alias} (mode {facts.mode_str(ev.mode)}, owner "
                f"{ev.uid}:{ev.gid}) is writable by {who}: a planted binary shadows system "
                f"commands; made writable by {how}",
                extra={"reason": reason},
            )
