"""What the container runs: sshd, supervisors, full inits, port 22; and its HEALTHCHECK.

Minimal inits that run exactly one child (tini, dumb-init, catatonit, docker's
``--init``) are good practice and are not reported.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping

from imgscan.detect.base import ImageContext
from imgscan.detect.hardening import facts
from imgscan.detect.hardening.catalog import make_finding
from imgscan.model import Finding

SSHD = frozenset({"sshd", "dropbear"})
SUPERVISORS = frozenset({"supervisord", "s6-svscan", "runsvdir", "circusd", "s6-overlay-suexec"})
INITS = frozenset({"systemd", "init", "upstart", "openrc-init", "runit-init", "runit"})
FULL_INIT_PATHS = frozenset(
    {"/sbin/init", "/usr/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/init"}
)
SSHD_BINARIES = ("/usr/sbin/sshd", "/usr/sbin/dropbear", "/sbin/sshd", "/usr/bin/dropbear")
_SUPERVISOR_CONFS = re.compile(r"^/etc/(supervisor/.*\.conf|supervisord\.conf|supervisord\.d/.*)$")
_SSHD_IN_CONF = re.compile(r"^\s*command\s*=\s*\S*\b(sshd|dropbear)\b", re.M)


_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh"})
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})
_WRAPPERS = frozenset(
    {
        "exec",
        "nohup",
        "sudo",
        "su-exec",
        "gosu",
        "env",
        "tini",
        "dumb-init",
        "catatonit",
        "--",
        "setsid",
        "chpst",
    }
)


def _commands(argv: list[str], depth: int = 0) -> list[str]:
    """The words in command position: argv[0], each command of ``sh -c``, wrapped commands."""
    if not argv or depth > 3:
        return []
    first = argv[0]
    base = posixpath.basename(first)
    if base in _SHELLS and "-c" in argv[1:]:
        i = argv.index("-c", 1)
        return _shell_commands(argv[i + 1]) if i + 1 < len(argv) else []
    if base in _WRAPPERS:
        rest = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
        if base in ("gosu", "su-exec", "chpst") and rest:
            rest = rest[1:]  # the user argument
        return [first, *_commands(rest, depth + 1)]
    if base == "service" and len(argv) > 1 and argv[1] in ("ssh", "sshd"):
        return [first, "sshd"]
    return [first]


def _shell_commands(text: str) -> list[str]:
    words = []
    for w in facts.split_shell(text):
        stripped = w.rstrip(";&")
        if stripped:
            words.append(stripped)
        if stripped != w:
            words.append(";")
    out: list[str] = []
    segment: list[str] = []
    for w in [*words, ";"]:
        if w in _SEPARATORS:
            out.extend(_commands(segment, 1))
            segment = []
        else:
            segment.append(w)
    return out


def _ports(value: object) -> list[str]:
    """ExposedPorts keys (a list is accepted too: some builders write one)."""
    if isinstance(value, Mapping | list):
        return [k for k in value if isinstance(k, str)]
    return []


class ProcessAnalyzer:
    """Entrypoint/Cmd that run several processes or sshd; EXPOSE 22; missing HEALTHCHECK."""

    name = "hardening-process"

    def analyze(self, ctx: ImageContext) -> Iterator[Finding]:
        """Yield process, port and health findings."""
        cfg = facts.container_config(ctx)
        steps = facts.history(ctx)
        ep, cmd = facts.argv_of(cfg.get("Entrypoint")), facts.argv_of(cfg.get("Cmd"))
        argv = ep + cmd
        location = "config.Entrypoint" if ep else "config.Cmd"
        step = facts.last_step(steps, "ENTRYPOINT" if ep else "CMD")
        created_by = step.created_by if step else None
        words = _commands(argv)
        names = [posixpath.basename(w) for w in words]
        shown = " ".join(argv)[:160]
        runs_sshd = any(n in SSHD for n in names)
        sshd_conf = self._sshd_in_supervisor(ctx)
        if runs_sshd or sshd_conf:
            via = (
                f" (started by supervisor config {sshd_conf})"
                if sshd_conf and not runs_sshd
                else ""
            )
            yield make_finding(
                "process-sshd",
                where=location,
                detail="sshd",
                location=location,
                created_by=created_by,
                message=f"the container command runs an SSH daemon{via}: {shown!r}",
            )
        sup = next((n for n in names if n in SUPERVISORS), None)
        if sup is None and "/init" in words:
            sup = "s6-overlay /init"
        if sup:
            yield make_finding(
                "process-supervisor",
                where=location,
                detail=sup,
                location=location,
                created_by=created_by,
                message=f"the container command starts the process supervisor {sup}: {shown!r}",
            )
        init = next((w for w in words if w in FULL_INIT_PATHS and w != "/init"), None) or next(
            (
                posixpath.basename(w)
                for w in words
                if w != "/init" and posixpath.basename(w) in INITS
            ),
            None,
        )
        if init:
            yield make_finding(
                "process-init",
                where=location,
                detail=init,
                location=location,
                created_by=created_by,
                message=f"the container command runs the init system {init}: {shown!r}",
            )
        if not (runs_sshd or sshd_conf):
            binary = next((p for p in SSHD_BINARIES if p in ctx.visible), None)
            if binary is not None:
                yield make_finding(
                    "sshd-installed",
                    where=binary,
                    detail="installed",
                    path=binary,
                    layer=ctx.visible[binary].layer,
                    message=f"{binary} is installed although the command does not run it",
                )
        yield from self._ports(ctx, cfg, steps)
        yield from self._health(cfg, steps)

    def _sshd_in_supervisor(self, ctx: ImageContext) -> str | None:
        for path in sorted(ctx.visible):
            if not _SUPERVISOR_CONFS.match(path):
                continue
            data = ctx.final_content(path)
            if data is not None and _SSHD_IN_CONF.search(data.decode("utf-8", "replace")):
                return path
        return None

    def _ports(
        self, ctx: ImageContext, cfg: Mapping[str, object], steps: tuple[facts.Step, ...]
    ) -> Iterator[Finding]:
        for key in _ports(cfg.get("ExposedPorts")):
            port, _, proto = key.partition("/")
            if port == "22" and proto in ("", "tcp"):
                expose = next(
                    (
                        s
                        for s in reversed(steps)
                        if s.keyword == "EXPOSE" and re.search(r"\b22\b", s.args)
                    ),
                    None,
                )
                yield make_finding(
                    "port-22-exposed",
                    where="config.ExposedPorts",
                    detail=key,
                    location="config.ExposedPorts",
                    created_by=expose.created_by if expose else None,
                    message=f"the image exposes {key} (SSH)",
                )

    def _health(
        self, cfg: Mapping[str, object], steps: tuple[facts.Step, ...]
    ) -> Iterator[Finding]:
        hc = cfg.get("Healthcheck")
        test = hc.get("Test") if isinstance(hc, Mapping) else None
        if isinstance(test, list) and test and test[0] != "NONE":
            return
        disabled = isinstance(test, list) and test[:1] == ["NONE"]
        step = facts.last_step(steps, "HEALTHCHECK")
        yield make_finding(
            "healthcheck-missing",
            where="config.Healthcheck",
            detail="disabled" if disabled else "missing",
            location="config.Healthcheck",
            created_by=step.created_by if disabled and step else None,
            message="the HEALTHCHECK is disabled (HEALTHCHECK NONE)"
            if disabled
            else "the image config has no HEALTHCHECK, so the engine cannot tell a hung "
            "process from a healthy one",
        )
