"""Privilege: setuid/setgid binaries (own layers vs base), file capabilities, sudo."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import capped, make_finding
from imgscan.model import FileEvent, Finding, Severity

CAP_NAMES = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
SUDO_BINARIES = ("/usr/bin/sudo", "/bin/sudo", "/usr/sbin/sudo", "/usr/bin/doas", "/bin/doas")


def decode_capabilities(raw: bytes) -> tuple[list[str], bool]:
    """(permitted capability names, effective flag) of a ``security.capability`` value."""
    if len(raw) < 12:
        return [], False
    magic = struct.unpack_from("<I", raw, 0)[0]
    words = 1 if magic & 0xFF000000 == 0x01000000 else 2
    permitted = 0
    for i in range(words):
        off = 4 + 8 * i
        if off + 4 <= len(raw):
            permitted |= struct.unpack_from("<I", raw, off)[0] << (32 * i)
    names = [
        f"cap_{CAP_NAMES[b]}" if b < len(CAP_NAMES) else f"cap_{b}"
        for b in range(64)
        if permitted >> b & 1
    ]
    return names, bool(magic & 0x1)


def _bits(mode: int) -> str:
    parts = [w for w, bit in (("setuid", 0o4000), ("setgid", 0o2000)) if mode & bit]
    return "+".join(parts)


class PrivilegeAnalyzer:
    """setuid/setgid binaries, file capabilities, sudo and NOPASSWD rules."""

    name = "hardening-privilege"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield privilege findings; own-layer setuid separately from the base's."""
        steps = facts.history(ctx)
        base = facts.base_layer_count(ctx, steps)
        wanted = {
            p
            for p, ev in ctx.visible.items()
            if ev.kind in facts.CONTENT_KINDS
            and (ev.mode & 0o6000 or (ev.xattrs and "security.capability" in ev.xattrs))
        }
        wanted.update(SUDO_BINARIES)
        vs = facts.versions(ctx.events, wanted)
        owners = facts.package_owners(ctx)
        yield from self._setuid(ctx, vs, steps, base, owners)
        yield from self._caps(ctx, vs, steps, base)
        yield from self._sudo(ctx, vs, owners)

    def _how(self, steps: Sequence[facts.Step], layer: int) -> str:
        step = facts.step_of_layer(steps, layer)
        text = f"layer {layer}"
        if step is not None and step.created_by:
            text += f" ({step.created_by.strip()[:120]})"
        return text

    def _setuid(
        self,
        ctx: ImageContext,
        vs: Mapping[str, list[FileEvent]],
        steps: Sequence[facts.Step],
        base: int,
        owners: Mapping[str, str],
    ) -> Iterator[Finding]:
        added: list[Finding] = []
        shipped: list[Finding] = []
        for path in sorted(p for p in vs if p in ctx.visible):
            ev = ctx.visible[path]
            if ev.kind not in facts.CONTENT_KINDS or not ev.mode & 0o6000:
                continue
            bits = ev.mode & 0o6000
            history_vs = vs.get(path, [ev])

            def same(v: FileEvent, bits: int = bits, uid: int = ev.uid) -> bool:
                return v.mode & 0o6000 == bits and v.uid == uid

            first = facts.introduced_in(ctx, history_vs, ev, same)
            pkg = facts.owner_of(owners, path)
            pkg_note = f"; package {pkg}" if pkg else ""
            what = (
                f"{path} is {_bits(ev.mode)} (mode {facts.mode_str(ev.mode)}, owner uid {ev.uid})"
            )
            extra = {
                "mode": facts.mode_str(ev.mode),
                "uid": ev.uid,
                "package": pkg,
                "base_layers": base,
            }
            if first.layer < base:
                shipped.append(
                    make_finding(
                        "setuid-base",
                        where=path,
                        detail=_bits(ev.mode),
                        path=path,
                        layer=first.layer,
                        message=f"{what}, shipped by base "
                        f"{self._how(steps, first.layer)}{pkg_note}",
                        extra=extra,
                    )
                )
                continue
            prev = facts.previous_version(ctx, history_vs, first)
            if prev is None:
                change = f"added by {self._how(steps, first.layer)}"
            else:
                change = (
                    f"changed by {self._how(steps, first.layer)} from mode "
                    f"{facts.mode_str(prev.mode)} owner uid {prev.uid}"
                )
            sev = Severity.HIGH if ev.mode & 0o4000 and ev.uid == 0 else Severity.MEDIUM
            added.append(
                make_finding(
                    "setuid-added",
                    where=path,
                    detail=_bits(ev.mode),
                    path=path,
                    layer=first.layer,
                    severity=sev,
                    message=f"{what}, {change}{pkg_note}",
                    extra=extra,
                )
            )
        yield from capped(added, "setuid-added", "setuid/setgid files added by the image")
        yield from capped(shipped, "setuid-base", "setuid/setgid files from the base image")

    def _caps(
        self,
        ctx: ImageContext,
        vs: Mapping[str, list[FileEvent]],
        steps: Sequence[facts.Step],
        base: int,
    ) -> Iterator[Finding]:
        out = []
        for path in sorted(p for p in vs if p in ctx.visible):
            ev = ctx.visible[path]
            raw = ev.xattrs.get("security.capability") if ev.xattrs else None
            if ev.kind not in facts.CONTENT_KINDS or not raw:
                continue

            def same(v: FileEvent, raw: bytes = raw) -> bool:
                return bool(v.xattrs) and v.xattrs.get("security.capability") == raw

            first = facts.introduced_in(ctx, vs.get(path, [ev]), ev, same)
            names, effective = decode_capabilities(raw)
            in_base = first.layer < base
            caps = ",".join(names) or "none"
            out.append(
                make_finding(
                    "file-capability",
                    where=path,
                    detail=caps,
                    path=path,
                    layer=first.layer,
                    severity=Severity.LOW if in_base else None,
                    message=f"{path} carries file capabilities {caps}"
                    f"{'+ep' if effective else '+p'} set by "
                    f"{'base ' if in_base else ''}{self._how(steps, first.layer)}",
                    extra={"capabilities": names, "effective": effective, "base": in_base},
                )
            )
        yield from capped(out, "file-capability", "files with capabilities")

    def _sudo(
        self, ctx: ImageContext, vs: Mapping[str, list[FileEvent]], owners: Mapping[str, str]
    ) -> Iterator[Finding]:
        binary = next(
            (
                p
                for p in SUDO_BINARIES
                if p in ctx.visible and ctx.visible[p].kind in facts.CONTENT_KINDS
            ),
            None,
        )
        if binary is None:
            return
        ev = ctx.visible[binary]
        pkg = facts.owner_of(owners, binary)
        first = facts.introduced_in(ctx, vs.get(binary, [ev]), ev, lambda v: True)
        yield make_finding(
            "sudo-installed",
            where=binary,
            detail="installed",
            path=binary,
            layer=first.layer,
            message=f"{binary} is installed (mode {facts.mode_str(ev.mode)})"
            + (f" by package {pkg}" if pkg else ""),
            extra={"package": pkg},
        )
        sudoers = [
            "/etc/sudoers",
            *sorted(p for p in ctx.visible if p.startswith("/etc/sudoers.d/")),
        ]
        for path in sudoers:
            data = ctx.final_content(path)
            if data is None:
                continue
            rules = [
                line.strip()
                for line in data.decode("utf-8", "replace").splitlines()
                if "NOPASSWD" in line and not line.lstrip().startswith("#")
            ]
            if not rules:
                continue
            yield make_finding(
                "sudo-nopasswd",
                where=path,
                detail="\n".join(rules),
                path=path,
                layer=ctx.visible[path].layer,
                message=f"{path} grants passwordless sudo: {'; '.join(r[:80] for r in rules[:3])}",
                extra={"rules": rules[:10]},
            )
