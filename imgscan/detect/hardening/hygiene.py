"""Build hygiene: caches, toolchains, .git/.env/node_modules, remote ADD, RUN chains, waste."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import capped, make_finding
from imgscan.model import EntryKind, FileEvent, Finding, Status

CACHES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("cache-apt", "apt package lists", re.compile(r"^(/var/lib/apt/lists)/(.+)$")),
    ("cache-apt", "apt package archives", re.compile(r"^(/var/cache/apt)/(.+)$")),
    ("cache-apk", "apk cache", re.compile(r"^(/var/cache/apk|/etc/apk/cache)/(.+)$")),
    ("cache-pip", "pip cache", re.compile(r"^(.*/\.cache/pip)/(.+)$")),
    ("cache-npm", "npm cache", re.compile(r"^(.*/\.npm)/((?:_cacache|_logs|_npx)/.+)$")),
    (
        "cache-yarn",
        "yarn cache",
        re.compile(r"^(.*/\.cache/yarn|/usr/local/share/\.cache/yarn)/(.+)$"),
    ),
    ("cache-go", "Go build cache", re.compile(r"^(.*/\.cache/go-build)/(.+)$")),
    ("cache-go", "Go module cache", re.compile(r"^(.*/go/pkg/mod/cache)/(.+)$")),
)
_CACHE_NOISE = frozenset({"lock", "partial"})
_COMPILER_RE = re.compile(
    r"^(?:[a-z0-9_]+-(?:[a-z0-9_]+-)*linux-(?:gnu|musl)[a-z]*-)?"
    r"(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|make|gmake|cmake|gfortran)(?:-\d+(?:\.\d+)*)?$"
)
_BIN_DIRS = frozenset({"/usr/bin", "/usr/local/bin", "/bin"})
_BIN_PREFIXES = tuple(d + "/" for d in sorted(_BIN_DIRS))
_BUILD_PACKAGES = frozenset(
    {
        "build-essential",
        "build-base",
        "gcc",
        "g++",
        "make",
        "cmake",
        "clang",
        "autoconf",
        "automake",
        "libtool",
    }
)
_DEV_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*-dev(?:el)?$")
_DOTENV_RE = re.compile(r"^\.env(?:\.[^/]+)?$")
_DOTENV_OK = re.compile(r"\.(?:example|sample|template|dist|defaults?|tmpl|schema|ci)$", re.I)
_URL_RE = re.compile(r"(?:^|\s)(?:https?|ftp)://\S+|(?:^|\s)git@\S+")
WASTE_THRESHOLD = 1024 * 1024  # bytes per layer


@dataclass(slots=True)
class _Tally:
    files: int = 0
    size: int = 0
    by_layer: dict[int, int] = field(default_factory=dict)

    def add(self, ev: FileEvent) -> None:
        self.files += 1
        self.size += ev.size
        self.by_layer[ev.layer] = self.by_layer.get(ev.layer, 0) + ev.size

    def main_layer(self) -> int:
        return max(sorted(self.by_layer), key=lambda k: self.by_layer[k])


def _how(steps: Sequence[facts.Step], layer: int) -> str:
    step = facts.step_of_layer(steps, layer)
    if step is not None and step.created_by:
        return f"layer {layer} ({step.created_by.strip()[:120]})"
    return f"layer {layer}"


class HygieneAnalyzer:
    """Leftovers of the build that bloat the image or leak the build context."""

    name = "hardening-hygiene"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield build hygiene findings."""
        steps = facts.history(ctx)
        base = facts.base_layer_count(ctx, steps)
        binaries = sorted(
            p
            for p, ev in ctx.visible.items()
            if p.startswith(_BIN_PREFIXES)
            and p.rsplit("/", 1)[0] in _BIN_DIRS
            and ev.kind in (EntryKind.FILE, EntryKind.HARDLINK, EntryKind.SYMLINK)
            and _COMPILER_RE.match(p.rsplit("/", 1)[1])
        )
        named = {e.path for e in ctx.events if ".git" in e.path or ".env" in e.path}
        git_roots = sorted(p for p in named if p.endswith("/.git") and "/.git/" not in p)
        dotenvs = sorted(
            p for p in named if _DOTENV_RE.match(p.rsplit("/", 1)[1]) and not _DOTENV_OK.search(p)
        )
        vs = facts.versions(ctx.events, {*binaries[:1], *git_roots, *dotenvs})
        dotenvs = [p for p in dotenvs if any(v.kind is EntryKind.FILE for v in vs.get(p, ()))]
        git_roots = [p for p in git_roots if p in vs]
        yield from self._caches(ctx, steps)
        yield from self._toolchain(ctx, vs, binaries, steps, base)
        yield from self._context_leaks(ctx, vs, git_roots, dotenvs, steps)
        yield from self._node_modules(ctx, steps, base)
        yield from self._remote_add(steps)
        yield from self._run_chains(steps, base)
        yield from self._waste(ctx, steps, base)

    # -- caches ---------------------------------------------------------------------------------
    def _caches(self, ctx: ImageContext, steps: Sequence[facts.Step]) -> Iterator[Finding]:
        tallies: dict[tuple[str, str, str], _Tally] = {}
        for path, ev in ctx.visible.items():
            if ev.kind is not EntryKind.FILE or not (
                "cache" in path or "/.npm/" in path or path.startswith("/var/lib/apt/lists/")
            ):
                continue
            for rule, what, rx in CACHES:
                m = rx.match(path)
                if m is None:
                    continue
                rest = m.group(2)
                if posixpath.basename(rest) in _CACHE_NOISE or rest.startswith("partial/"):
                    break
                tallies.setdefault((rule, what, m.group(1)), _Tally()).add(ev)
                break
        for (rule, what, root), t in sorted(tallies.items()):
            if t.size == 0:
                continue  # empty placeholders are not a cache
            layer = t.main_layer()
            if len(t.by_layer) == 1:
                origin = f"written by {_how(steps, layer)}"
            else:
                layers = ", ".join(str(k) for k in sorted(t.by_layer))
                origin = f"written by layers {layers}, most by {_how(steps, layer)}"
            yield make_finding(
                rule,
                where=root,
                detail=what,
                path=root,
                layer=layer,
                message=f"{what}: {facts.human_bytes(t.size)} in {facts.plural(t.files, 'file')} "
                f"under {root}, {origin}",
                extra={
                    "bytes": t.size,
                    "files": t.files,
                    "bytes_by_layer": {str(k): v for k, v in sorted(t.by_layer.items())},
                },
            )

    # -- toolchains -----------------------------------------------------------------------------
    def _toolchain(
        self,
        ctx: ImageContext,
        vs: Mapping[str, list[FileEvent]],
        binaries: list[str],
        steps: Sequence[facts.Step],
        base: int,
    ) -> Iterator[Finding]:
        pkgs = facts.installed_packages(ctx)
        build_pkgs = sorted(
            p
            for p in pkgs
            if p in _BUILD_PACKAGES
            or (p.startswith(("gcc-", "g++-")) and not p.endswith(("-base", "-libs")))
        )
        dev_pkgs = sorted(p for p in pkgs if _DEV_PKG_RE.match(p))
        if not binaries and not build_pkgs and not dev_pkgs:
            return
        if binaries:
            path = binaries[0]
            ev = ctx.visible[path]
            layer = facts.introduced_in(ctx, vs.get(path, [ev]), ev, lambda v: True).layer
        else:
            path = pkgs[(build_pkgs or dev_pkgs)[0]]
            layer = ctx.visible[path].layer
        parts = []
        if binaries:
            names = [posixpath.basename(b) for b in binaries]
            parts.append(f"build tools {', '.join(names[:8])}" + (" ..." if len(names) > 8 else ""))
        if build_pkgs:
            parts.append(f"packages {', '.join(build_pkgs[:8])}")
        if dev_pkgs:
            more = f" (+{len(dev_pkgs) - 8} more)" if len(dev_pkgs) > 8 else ""
            parts.append(f"-dev packages {', '.join(dev_pkgs[:8])}{more}")
        origin = "the base image" if layer < base else _how(steps, layer)
        yield make_finding(
            "toolchain-present",
            where="toolchain",
            detail="present",
            path=path,
            layer=layer,
            message=f"the final image contains {'; '.join(parts)}; first added by {origin}",
            extra={
                "binaries": binaries[:50],
                "packages": build_pkgs[:50],
                "dev_packages": dev_pkgs[:50],
            },
        )

    # -- .git and .env --------------------------------------------------------------------------
    def _context_leaks(
        self,
        ctx: ImageContext,
        vs: Mapping[str, list[FileEvent]],
        git_roots: list[str],
        dotenvs: list[str],
        steps: Sequence[facts.Step],
    ) -> Iterator[Finding]:
        seen: dict[tuple[str, int], list[int]] = {}  # (root, layer or -1 for final) -> [n, bytes]
        for source, key_layer in ((ctx.events, None), (ctx.visible.values(), -1)):
            for e in source:
                cut = e.path.find("/.git/")
                if cut < 0 or e.kind is not EntryKind.FILE:
                    continue
                key = (e.path[: cut + 5], e.layer if key_layer is None else key_layer)
                t = seen.setdefault(key, [0, 0])
                t[0] += 1
                t[1] += e.size
        git_out = [self._leak(ctx, vs, steps, "git-dir", p, seen) for p in git_roots]
        env_out = [self._leak(ctx, vs, steps, "copy-dotenv", p, seen) for p in dotenvs]
        yield from capped(git_out, "git-dir", ".git directories")
        yield from capped(env_out, "copy-dotenv", ".env files")

    def _leak(
        self,
        ctx: ImageContext,
        vs: Mapping[str, list[FileEvent]],
        steps: Sequence[facts.Step],
        rule: str,
        path: str,
        tally: Mapping[tuple[str, int], list[int]],
    ) -> Finding:
        versions = vs[path]
        visible = ctx.visible.get(path)
        if visible is not None:
            ev = facts.introduced_in(ctx, versions, visible, lambda v: True)
            state = "present in the final image"
            n_files, size = tally.get((path, -1), (0, 0))
        else:
            ev = versions[-1]
            st = ctx.states.get((path, ev.layer))
            by = st.changed_in_layer if st is not None else None
            state = (
                "removed later"
                + (f" by layer {by}" if by is not None else "")
                + ", but its content stays in the layer"
            )
            n_files, size = tally.get((path, ev.layer), (0, 0))
        size += ev.size if ev.kind is EntryKind.FILE else 0
        what = ".git directory" if rule == "git-dir" else ".env file"
        content = f" with {facts.plural(n_files, 'file')}" if ev.kind is EntryKind.DIR else ""
        return make_finding(
            rule,
            where=path,
            detail=rule,
            path=path,
            layer=ev.layer,
            message=f"{what} {path}{content} ({facts.human_bytes(size)}) added by "
            f"{_how(steps, ev.layer)}; {state}",
            extra={
                "files": n_files,
                "bytes": size,
                "layers": sorted({v.layer for v in versions}),
            },
        )

    # -- node_modules from the build context ----------------------------------------------------
    def _node_modules(
        self, ctx: ImageContext, steps: Sequence[facts.Step], base: int
    ) -> Iterator[Finding]:
        copy_layers = {
            s.layer: s
            for s in steps
            if s.layer is not None and s.layer >= base and s.keyword in ("COPY", "ADD")
        }
        roots: dict[tuple[str, int], int] = {}
        for ev in ctx.events:
            if ev.layer not in copy_layers or "node_modules" not in ev.path:
                continue
            parts = ev.path.split("/")
            if "node_modules" not in parts:
                continue
            root = "/".join(parts[: parts.index("node_modules") + 1])
            roots[(root, ev.layer)] = roots.get((root, ev.layer), 0) + 1
        out = [
            make_finding(
                "copy-node-modules",
                where=root,
                detail="node_modules",
                path=root,
                layer=layer,
                message=f"{root} ({facts.plural(n, 'entry')}) was copied from the build context by "
                f"{_how(steps, layer)}: host-built modules may not match the image's platform "
                "and can carry local files",
                extra={"entries": n},
            )
            for (root, layer), n in sorted(roots.items())
        ]
        yield from capped(out, "copy-node-modules", "node_modules directories")

    # -- history --------------------------------------------------------------------------------
    def _remote_add(self, steps: Sequence[facts.Step]) -> Iterator[Finding]:
        for s in steps:
            if s.keyword != "ADD" or "--checksum" in s.args:
                continue
            m = _URL_RE.search(s.args)
            if m is None:
                continue
            url = m.group(0).strip()
            yield make_finding(
                "add-remote-url",
                where="history",
                detail=url,
                location=s.location,
                layer=s.layer,
                created_by=s.created_by,
                message=f"ADD downloads {url[:160]} at build time without a checksum; the "
                "content can change or be tampered with between builds",
                extra={"url": url},
            )

    def _run_chains(self, steps: Sequence[facts.Step], base: int) -> Iterator[Finding]:
        layered = sorted(
            (s for s in steps if s.layer is not None and s.layer >= base),
            key=lambda s: s.layer or 0,
        )
        streak: list[facts.Step] = []
        for s in [*layered, None]:
            if (
                s is not None
                and s.keyword == "RUN"
                and (not streak or s.layer == (streak[-1].layer or 0) + 1)
            ):
                streak.append(s)
                continue
            if len(streak) >= 2:
                first, last = streak[0], streak[-1]
                yield make_finding(
                    "run-consecutive",
                    where="history",
                    detail=" && ".join(x.args for x in streak),
                    location=first.location,
                    layer=first.layer,
                    created_by=first.created_by,
                    message=f"layers {first.layer}-{last.layer} come from {len(streak)} "
                    "consecutive RUN instructions",
                    extra={"layers": [x.layer for x in streak]},
                )
            streak = [s] if s is not None and s.keyword == "RUN" else []

    # -- waste ----------------------------------------------------------------------------------
    def _waste(
        self, ctx: ImageContext, steps: Sequence[facts.Step], base: int
    ) -> Iterator[Finding]:
        """Bytes hidden later; waste inside the base image alone is not the image's doing."""
        hidden: dict[tuple[str, int], FileEvent] = {}  # the last entry of a path in a layer wins
        for v in ctx.events:
            if v.kind is not EntryKind.FILE or v.size == 0:
                continue
            st = ctx.states.get((v.path, v.layer))
            if st is not None and st.status is not Status.PRESENT:
                hidden[(v.path, v.layer)] = v
        per_layer: dict[int, list[tuple[FileEvent, Status, int | None]]] = {}
        for (path, layer), v in hidden.items():
            st = ctx.states[(path, layer)]
            by = st.changed_in_layer
            if layer < base and (by is None or by < base):
                continue
            per_layer.setdefault(layer, []).append((v, st.status, by))
        for layer in sorted(per_layer):
            items = per_layer[layer]
            total = sum(v.size for v, _, _ in items)
            if total < WASTE_THRESHOLD:
                continue
            deleted = sum(v.size for v, s, _ in items if s is Status.DELETED)
            overwritten = total - deleted
            top = sorted(items, key=lambda t: (-t[0].size, t[0].path))[:5]
            shown = ", ".join(
                f"{v.path} ({facts.human_bytes(v.size)}, {s.value} by layer {by})"
                for v, s, by in top
            )
            step = facts.step_of_layer(steps, layer)
            yield make_finding(
                "wasted-bytes",
                where="history",
                detail=step.created_by if step and step.created_by else f"layers[{layer}]",
                location=step.location if step else f"layers[{layer}]",
                layer=layer,
                message=f"{_how(steps, layer)} wrote {facts.human_bytes(total)} in "
                f"{facts.plural(len(items), 'file')} that later layers delete "
                f"({facts.human_bytes(deleted)}) or overwrite "
                f"({facts.human_bytes(overwritten)}); largest: {shown}",
                extra={
                    "bytes": total,
                    "deleted_bytes": deleted,
                    "overwritten_bytes": overwritten,
                    "files": len(items),
                },
            )
