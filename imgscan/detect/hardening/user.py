"""Who the container runs as, and which accounts could log in."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import make_finding
from imgscan.model import Finding, Severity


def _origin(ctx: ImageContext, path: str, holds: Callable[[bytes], bool]) -> int | None:
    """The oldest layer whose version of ``path`` (in the visible chain) satisfies ``holds``."""
    last = ctx.visible.get(path)
    if last is None:
        return None
    vs = facts.versions(e for e in ctx.events if e.path == path)
    found: int | None = None
    for v in facts.chain(ctx, vs.get(path, [last]), last):
        data = ctx.files.get((v.layer, path))
        if data is None or not holds(data):
            break
        found = v.layer
    return found


class UserAnalyzer:
    """Checks config.User against the final passwd/group and the account database."""

    name = "hardening-user"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield user and account findings."""
        yield from self._runtime_user(ctx)
        yield from self._accounts(ctx)

    def _runtime_user(self, ctx: ImageContext) -> Iterator[Finding]:
        steps = facts.history(ctx)
        user_step = facts.last_step(steps, "USER")
        created_by = user_step.created_by if user_step else None
        ru = facts.runtime_user(ctx)
        if not ru.spec:
            yield make_finding(
                "user-missing",
                where="config.User",
                detail="unset",
                location="config.User",
                message="config.User is not set, so the process runs as root (UID 0) unless "
                "the runtime overrides the user",
            )
            return
        if ru.user in ("root", "0") or ru.uid == 0:
            how = (
                "" if ru.user in ("root", "0") else f" (user {ru.user!r} has UID 0 in /etc/passwd)"
            )
            yield make_finding(
                "user-root",
                where="config.User",
                detail=ru.spec,
                location="config.User",
                created_by=created_by,
                message=f"config.User is {ru.spec!r}{how}: the process runs as root",
            )
        accts = facts.accounts(ctx)
        has_passwd = "/etc/passwd" in ctx.visible
        if not ru.user.isdigit() and ru.uid is None and (accts is not None or not has_passwd):
            where = "/etc/passwd" if has_passwd else "the image (it has no /etc/passwd)"
            yield make_finding(
                "user-not-in-passwd",
                where="config.User",
                detail=ru.user,
                location="config.User",
                created_by=created_by,
                message=f"config.User names user {ru.user!r}, which does not exist in {where}; "
                "the container will fail to start. Use a numeric UID or create the user",
            )
        if ru.group and not ru.group.isdigit() and ru.gid is None:
            has_group = "/etc/group" in ctx.visible
            if facts.groups(ctx) is not None or not has_group:
                yield make_finding(
                    "user-group-missing",
                    where="config.User",
                    detail=ru.group,
                    location="config.User",
                    created_by=created_by,
                    message=f"config.User names group {ru.group!r}, which does not exist in "
                    "/etc/group; the container will fail to start",
                )

    def _accounts(self, ctx: ImageContext) -> Iterator[Finding]:
        accts = facts.accounts(ctx) or []
        shadow_data = ctx.final_content("/etc/shadow")
        shadow = facts.parse_shadow(shadow_data) if shadow_data is not None else {}
        uid_of = {a.name: a.uid for a in accts}
        for a in accts:
            in_shadow = a.name in shadow
            if a.password == "":
                yield self._empty(
                    ctx,
                    "/etc/passwd",
                    a.name,
                    uid_of.get(a.name),
                    "its password field in /etc/passwd is empty",
                )
            elif facts.is_password_hash(a.password) and facts.has_login_shell(a):
                yield self._login(ctx, "/etc/passwd", a)
            if in_shadow and a.password == "x":
                pw = shadow[a.name]
                if pw == "":
                    yield self._empty(
                        ctx,
                        "/etc/shadow",
                        a.name,
                        a.uid,
                        "its password field in /etc/shadow is empty",
                    )
                elif facts.is_password_hash(pw) and facts.has_login_shell(a):
                    yield self._login(ctx, "/etc/shadow", a)
        for name, pw in sorted(shadow.items()):
            if name not in uid_of and pw == "":
                yield self._empty(
                    ctx, "/etc/shadow", name, None, "its password field in /etc/shadow is empty"
                )

    def _empty(self, ctx: ImageContext, path: str, name: str, uid: int | None, why: str) -> Finding:
        def holds(data: bytes) -> bool:
            return any(f[0] == name and len(f) > 1 and f[1] == "" for f in facts.colon_lines(data))

        layer = _origin(ctx, path, holds)
        sev = Severity.CRITICAL if uid == 0 else None
        return make_finding(
            "shadow-empty-password",
            where=f"{path}:{name}",
            detail=name,
            path=path,
            layer=layer if layer is not None else ctx.visible[path].layer,
            severity=sev,
            message=f"account {name!r}{f' (UID {uid})' if uid is not None else ''} has no "
            f"password: {why}, so anyone in the container can become it without one",
            extra={"account": name},
        )

    def _login(self, ctx: ImageContext, path: str, a: facts.Account) -> Finding:
        field = 1

        def holds(data: bytes) -> bool:
            return any(
                f[0] == a.name and len(f) > field and facts.is_password_hash(f[field])
                for f in facts.colon_lines(data)
            )

        layer = _origin(ctx, path, holds)
        return make_finding(
            "user-login-shell-password",
            where=f"{path}:{a.name}",
            detail=a.name,
            path=path,
            layer=layer if layer is not None else ctx.visible[path].layer,
            message=f"account {a.name!r} (UID {a.uid}) has login shell {a.shell} and a "
            f"password hash in {path}; the hash can be cracked offline and the account used "
            "for su/login",
            extra={"account": a.name, "uid": a.uid, "shell": a.shell},
        )
