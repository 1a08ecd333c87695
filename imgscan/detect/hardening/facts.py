"""Facts the hardening checks share: history, base layers, accounts, runtime user, ownership.

Base layers (what "shipped by the base image" means) are decided from the
history only, in this order:

1. A parent image normally ends with its ``CMD``/``ENTRYPOINT``. When such an
   instruction is followed by further layers, every layer before the *last* one
   of them belongs to the base (``python:3.12`` on ``debian``: all of it).
2. Otherwise the leading layers that are rootfs imports are the base: ``ADD``/
   ``COPY`` of a ``file:...`` or tarball into ``/``, or layers whose history is not
   a Dockerfile instruction (empty, bazel, apko, squashed images).
3. An image with no usable history at all: only the first layer is the base (the
   conservative choice: later layers count as the image's own).

Everything after the base is "the image's own layers".
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgscan.detect.base import ImageContext
from imgscan.model import EntryKind, FileEvent, Status

KEYWORDS = frozenset(
    {
        "RUN",
        "COPY",
        "ADD",
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "ARG",
        "USER",
        "WORKDIR",
        "EXPOSE",
        "VOLUME",
        "LABEL",
        "HEALTHCHECK",
        "SHELL",
        "STOPSIGNAL",
        "ONBUILD",
        "MAINTAINER",
    }
)
_SHELL_RE = re.compile(r"^(?:\|\d+ .*?)?/bin/(?:ba)?sh -c (?P<rest>.*)$", re.S)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTENT_KINDS = frozenset({EntryKind.FILE, EntryKind.HARDLINK})


# -- config -------------------------------------------------------------------------------------
def container_config(ctx: ImageContext) -> Mapping[str, Any]:
    """The ``config`` object of the image config (User, Env, Cmd, ...), possibly empty."""
    c = ctx.image.config.get("config") if isinstance(ctx.image.config, Mapping) else None
    return c if isinstance(c, Mapping) else {}


def env_map(ctx: ImageContext) -> dict[str, str]:
    """``config.Env`` as a dict."""
    out: dict[str, str] = {}
    env = container_config(ctx).get("Env")
    if isinstance(env, list):
        for item in env:
            if isinstance(item, str) and "=" in item:
                k, v = item.split("=", 1)
                out[k] = v
    return out


def argv_of(value: object) -> list[str]:
    """An Entrypoint/Cmd value (list or string) as a list of strings."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, str) and value:
        return ["/bin/sh", "-c", value]
    return []


def split_shell(text: str) -> list[str]:
    """Words of a shell command line (best effort, never raises)."""
    try:
        return shlex.split(text, comments=False)
    except ValueError:
        return text.split()


# -- history ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Step:
    """One history entry with the layer it made (None for empty-layer entries)."""

    index: int
    created_by: str
    empty: bool
    layer: int | None
    keyword: str | None
    args: str

    @property
    def location(self) -> str:
        """Where this step lives in the config."""
        return f"history[{self.index}].created_by"


def parse_instruction(created_by: str) -> tuple[str | None, str]:
    """``(KEYWORD, arguments)`` of a history ``created_by`` (classic, BuildKit, buildah)."""
    s = created_by.strip()
    if s.endswith("# buildkit"):
        s = s[: -len("# buildkit")].rstrip()
    m = _SHELL_RE.match(s)
    if m:
        rest = m.group("rest").strip()
        if rest.startswith("#(nop)"):
            rest = rest[len("#(nop)") :].strip()
            kw, _, args = rest.partition(" ")
            if kw.upper() in KEYWORDS:
                return kw.upper(), args.strip()
            return None, rest
        return "RUN", rest
    kw, _, args = s.partition(" ")
    if kw in KEYWORDS:
        return kw, args.strip()
    return None, s


def history(ctx: ImageContext) -> tuple[Step, ...]:
    """The config history with layers attached (same alignment rule as the sources use)."""
    raw = ctx.image.config.get("history") if isinstance(ctx.image.config, Mapping) else None
    if not isinstance(raw, list):
        return ()
    n_layers = len(ctx.image.layers)
    entries = [(i, h) for i, h in enumerate(raw) if isinstance(h, Mapping)]
    non_empty = [i for i, h in entries if not h.get("empty_layer")]
    layer_of: dict[int, int] = {}
    if len(non_empty) == n_layers:
        layer_of = {h: i for i, h in enumerate(non_empty)}
    else:
        for k in range(1, min(n_layers, len(non_empty)) + 1):
            layer_of[non_empty[-k]] = n_layers - k
    steps = []
    classic = False
    for i, h in entries:
        cb = h.get("created_by")
        text = cb if isinstance(cb, str) else ""
        kw, args = parse_instruction(text)
        empty = bool(h.get("empty_layer"))
        if kw is None and classic and not empty and text.strip():
            # The classic builder records an exec-form RUN as the bare argv
            # ("/bin/busybox chmod 777 /app") and marks every other step "#(nop)".
            kw, args = "RUN", text.strip()
        classic = classic or "#(nop)" in text
        steps.append(Step(i, text, empty, layer_of.get(i), kw, args))
    return tuple(steps)


def step_of_layer(steps: Sequence[Step], layer: int) -> Step | None:
    """The history step that made ``layer``."""
    for s in steps:
        if s.layer == layer:
            return s
    return None


def last_step(steps: Sequence[Step], keyword: str) -> Step | None:
    """The last history step with this instruction keyword."""
    for s in reversed(steps):
        if s.keyword == keyword:
            return s
    return None


def _is_rootfs_import(step: Step | None) -> bool:
    if step is None:
        return True
    if step.keyword is None:
        return True  # not a Dockerfile instruction: bazel/apko/imported rootfs
    if step.keyword in ("ADD", "COPY"):
        words = step.args.split()
        return bool(words) and words[-1] == "/"
    return False


def base_layer_count(ctx: ImageContext, steps: Sequence[Step] | None = None) -> int:
    """How many leading layers belong to the base image (see the module docstring)."""
    steps = history(ctx) if steps is None else steps
    n = len(ctx.image.layers)
    last_marker = None
    for pos, s in enumerate(steps):
        if s.keyword in ("CMD", "ENTRYPOINT") and any(
            t.layer is not None for t in steps[pos + 1 :]
        ):
            last_marker = pos
    if last_marker is not None:
        before = [s.layer for s in steps[:last_marker] if s.layer is not None]
        return max(before) + 1 if before else 0
    if n and not any(s.layer is not None for s in steps):
        return 1  # no usable history at all: only the first layer is assumed to be the base
    count = 0
    for i in range(n):
        if not _is_rootfs_import(step_of_layer(steps, i)):
            break
        count += 1
    return count


# -- accounts -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Account:
    """One /etc/passwd line."""

    name: str
    password: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True, slots=True)
class Group:
    """One /etc/group line."""

    name: str
    gid: int
    members: tuple[str, ...]


def colon_lines(data: bytes) -> Iterator[list[str]]:
    """The colon-separated fields of each non-comment line of a passwd-style file."""
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        yield line.split(":")


def parse_passwd(data: bytes) -> list[Account]:
    """Accounts of a passwd file; malformed lines are skipped."""
    out = []
    for f in colon_lines(data):
        if len(f) < 7:
            continue
        try:
            out.append(Account(f[0], f[1], int(f[2]), int(f[3]), f[5], f[6].strip()))
        except ValueError:
            continue
    return out


def parse_group(data: bytes) -> list[Group]:
    """Groups of a group file; malformed lines are skipped."""
    out = []
    for f in colon_lines(data):
        if len(f) < 4:
            continue
        try:
            members = tuple(m.strip() for m in f[3].split(",") if m.strip())
            out.append(Group(f[0], int(f[2]), members))
        except ValueError:
            continue
    return out


def parse_shadow(data: bytes) -> dict[str, str]:
    """name -> password field of a shadow file."""
    return {f[0]: f[1] for f in colon_lines(data) if len(f) >= 2}


NOLOGIN_SHELLS = frozenset(
    {
        "",
        "/bin/false",
        "/usr/bin/false",
        "/sbin/nologin",
        "/usr/sbin/nologin",
        "/bin/sync",
        "/sbin/shutdown",
        "/sbin/halt",
        "/usr/bin/nologin",
        "/bin/nologin",
    }
)


def has_login_shell(acct: Account) -> bool:
    """Whether the account's shell lets someone log in."""
    return acct.shell not in NOLOGIN_SHELLS and not acct.shell.endswith("/nologin")


def is_password_hash(field: str) -> bool:
    """A usable password hash: not empty, not locked (``!``/``*``), not the shadow marker ``x``."""
    return bool(field) and field not in ("x", "*", "!", "!!") and not field.startswith(("!", "*"))


@dataclass(frozen=True, slots=True)
class RuntimeUser:
    """Who the container process runs as, resolved against the final passwd/group."""

    spec: str
    user: str
    group: str | None
    name: str | None
    uid: int | None
    gid: int | None
    groups: frozenset[int]

    @property
    def is_root(self) -> bool:
        """UID 0 (also when no USER is set)."""
        return self.uid == 0


def accounts(ctx: ImageContext) -> list[Account] | None:
    """The final /etc/passwd, or None when it is absent or was not captured."""
    data = ctx.final_content("/etc/passwd")
    return parse_passwd(data) if data is not None else None


def groups(ctx: ImageContext) -> list[Group] | None:
    """The final /etc/group, or None when it is absent or was not captured."""
    data = ctx.final_content("/etc/group")
    return parse_group(data) if data is not None else None


def runtime_user(ctx: ImageContext) -> RuntimeUser:
    """Resolve ``config.User`` the way runc does (numeric ids need no passwd entry)."""
    raw = container_config(ctx).get("User")
    spec = raw.strip() if isinstance(raw, str) else ""
    user, _, grp = spec.partition(":")
    group = grp if ":" in spec else None
    accts = accounts(ctx) or []
    grps = groups(ctx) or []
    name: str | None = None
    uid: int | None
    gid: int | None = 0
    if not user:
        uid, name = 0, "root"
    elif user.isdigit():
        uid = int(user)
        acct = next((a for a in accts if a.uid == uid), None)
        if acct is not None:
            name, gid = acct.name, acct.gid
    else:
        acct = next((a for a in accts if a.name == user), None)
        uid = acct.uid if acct else None
        gid = acct.gid if acct else None
        name = user
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((g for g in grps if g.name == group), None)
            gid = g.gid if g else None
    extra = {g.gid for g in grps if name is not None and name in g.members}
    all_groups = frozenset(extra | ({gid} if gid is not None else set()))
    return RuntimeUser(spec, user, group, name, uid, gid, all_groups)


def write_reason(ev: FileEvent, user: RuntimeUser) -> str | None:
    """Which permission bits let ``user`` write ``ev`` ("owner", "group", "other"), or None."""
    mode = ev.mode  # POSIX: only the first class that matches (owner, group, other) applies
    if user.uid is not None and ev.uid == user.uid:
        return "owner" if mode & 0o200 else None
    if ev.gid in user.groups:
        return "group" if mode & 0o020 else None
    return "other" if mode & 0o002 else None


# -- versions and attribution --------------------------------------------------------------------
def versions(
    events: Iterable[FileEvent], paths: Container[str] | None = None
) -> dict[str, list[FileEvent]]:
    """path -> the versions written to it, one per layer (the last entry wins), in order.

    With ``paths``, only those paths are indexed (cheap attribution of a few findings).
    """
    out: dict[str, list[FileEvent]] = {}
    for ev in events:
        if ev.kind in (EntryKind.WHITEOUT, EntryKind.OPAQUE):
            continue
        if paths is not None and ev.path not in paths:
            continue
        vs = out.setdefault(ev.path, [])
        if vs and vs[-1].layer == ev.layer:
            vs[-1] = ev
        else:
            vs.append(ev)
    return out


def chain(ctx: ImageContext, vs: Sequence[FileEvent], last: FileEvent) -> list[FileEvent]:
    """The unbroken run of versions ending in ``last``, newest first."""
    out = [last]
    pos = next((i for i, v in enumerate(vs) if v.layer == last.layer), None)
    if pos is None:
        return out
    nxt = last
    for v in reversed(vs[:pos]):
        st = ctx.states.get((v.path, v.layer))
        if st is None or st.status is not Status.OVERWRITTEN or st.changed_in_layer != nxt.layer:
            break
        out.append(v)
        nxt = v
    return out


def introduced_in(
    ctx: ImageContext, vs: Sequence[FileEvent], last: FileEvent, keep: Any
) -> FileEvent:
    """The oldest version in ``last``'s unbroken chain for which ``keep(version)`` still held."""
    first = last
    for v in chain(ctx, vs, last)[1:]:
        if not keep(v):
            break
        first = v
    return first


def previous_version(ctx: ImageContext, vs: Sequence[FileEvent], ev: FileEvent) -> FileEvent | None:
    """The version that ``ev`` replaced (overwrote), if any."""
    c = chain(ctx, vs, ev)
    return c[1] if len(c) > 1 else None


# -- packages -----------------------------------------------------------------------------------
_USR_ALIASES = (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib/", "/lib/"))


def path_aliases(path: str) -> tuple[str, ...]:
    """``path`` and its merged-/usr twin (``/usr/bin/su`` <-> ``/bin/su``)."""
    for usr, root in _USR_ALIASES:
        if path.startswith(usr):
            return (path, root + path[len(usr) :])
        if path.startswith(root):
            return (path, usr + path[len(root) :])
    return (path,)


def package_owners(ctx: ImageContext) -> dict[str, str]:
    """path -> owning package, from visible dpkg ``info/*.list`` files and the apk database."""
    out: dict[str, str] = {}
    for path, ev in ctx.visible.items():
        if path.startswith("/var/lib/dpkg/info/") and path.endswith(".list"):
            data = ctx.files.get((ev.layer, path))
            if data is None:
                continue
            pkg = posixpath.basename(path)[: -len(".list")].split(":", 1)[0]
            for line in data.decode("utf-8", "replace").splitlines():
                if line.startswith("/"):
                    out.setdefault(line.rstrip("/") or "/", pkg)
    apk = ctx.final_content("/lib/apk/db/installed")
    if apk is not None:
        pkg, folder = "", ""
        for line in apk.decode("utf-8", "replace").splitlines():
            if line.startswith("P:"):
                pkg = line[2:]
            elif line.startswith("F:"):
                folder = line[2:]
            elif line.startswith("R:") and pkg:
                out.setdefault("/" + posixpath.join(folder, line[2:]), pkg)
    return out


def owner_of(owners: Mapping[str, str], path: str) -> str | None:
    """The package owning ``path`` (merged-/usr aware)."""
    for p in path_aliases(path):
        if p in owners:
            return owners[p]
    return None


def installed_packages(ctx: ImageContext) -> dict[str, str]:
    """Installed package name -> the database path listing it (dpkg status[.d], apk)."""
    out: dict[str, str] = {}
    sources = [p for p in ctx.visible if p.startswith("/var/lib/dpkg/status.d/")]
    sources.append("/var/lib/dpkg/status")
    for db in sources:
        data = ctx.final_content(db)
        if data is None:
            continue
        for block in data.decode("utf-8", "replace").split("\n\n"):
            name, status = None, "install ok installed"
            for line in block.splitlines():
                if line.startswith("Package:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Status:"):
                    status = line.split(":", 1)[1].strip()
            if name and status.endswith(" installed"):
                out.setdefault(name, db)
    apk = ctx.final_content("/lib/apk/db/installed")
    if apk is not None:
        for line in apk.decode("utf-8", "replace").splitlines():
            if line.startswith("P:"):
                out.setdefault(line[2:].strip(), "/lib/apk/db/installed")
    return out


# -- small helpers ------------------------------------------------------------------------------
def under(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one of them."""
    return PathSet(roots).covers(path)


class PathSet:
    """A set of directories; ``covers(p)`` is true for the directories and everything below."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, roots: Iterable[str]) -> None:
        roots = [r.rstrip("/") or "/" for r in roots]
        self._exact = frozenset(roots)
        self._prefixes = ("/",) if "/" in self._exact else tuple(r + "/" for r in roots)

    def covers(self, path: str) -> bool:
        """Whether ``path`` is one of the roots or below one."""
        return path in self._exact or path.startswith(self._prefixes)


def human_bytes(n: int) -> str:
    """1536 -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def resolve_symlinks(visible: Mapping[str, FileEvent], path: str, depth: int = 0) -> str:
    """Follow symlinks (in the final filesystem) in every component of ``path``."""
    if depth > 16:
        return path
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        nxt = posixpath.join(cur, part)
        ev = visible.get(nxt)
        if ev is not None and ev.kind is EntryKind.SYMLINK and ev.linkname:
            target = ev.linkname
            base = target if target.startswith("/") else posixpath.join(cur, target)
            rest = "/".join(parts[i + 1 :])
            full = posixpath.normpath(posixpath.join(base, rest) if rest else base)
            return resolve_symlinks(visible, full, depth + 1)
        cur = nxt
    return cur


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``; ``entry`` -> ``entries``."""
    if n == 1:
        return f"1 {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def mode_str(mode: int) -> str:
    """Permission bits (incl. setuid/setgid/sticky) as 4 octal digits."""
    return f"{mode & 0o7777:04o}"
