"""The hardening checks as data: stable id, title, default severity, remediation."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imgscan.findings.fingerprint import fingerprint
from imgscan.model import Category, Finding, Severity


@dataclass(frozen=True, slots=True)
class Check:
    """One hardening check; ``severity`` is the default, some checks raise or lower it."""

    id: str
    area: str
    category: Category
    severity: Severity
    title: str
    remediation: str
    severity_note: str = ""


_C, _F = Category.CONFIG, Category.FILE
_I, _L, _M, _H = Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH

CHECKS: tuple[Check, ...] = (
    # -- user ----------------------------------------------------------------------------------
    Check(
        "user-missing",
        "user",
        _C,
        _H,
        "No USER set: the container runs as root",
        "Add `USER <uid>` (a non-root numeric UID such as 10001) after the last step that "
        "needs root.",
    ),
    Check(
        "user-root",
        "user",
        _C,
        _H,
        "USER is root (UID 0)",
        "Switch to a non-root user with `USER <uid>`; grant only the capabilities the process "
        "needs at run time.",
    ),
    Check(
        "user-not-in-passwd",
        "user",
        _C,
        _M,
        "Runtime user does not exist in /etc/passwd",
        "Create the user in the image (`useradd`/`adduser`) or use a numeric `USER uid:gid`.",
    ),
    Check(
        "user-group-missing",
        "user",
        _C,
        _M,
        "Runtime group does not exist in /etc/group",
        "Create the group in the image or use a numeric GID in `USER uid:gid`.",
    ),
    Check(
        "user-login-shell-password",
        "user",
        _F,
        _H,
        "Account with a login shell and a password hash",
        "Lock the account (`passwd -l`, `*` in /etc/shadow) or give it /usr/sbin/nologin; "
        "containers need no passwords.",
    ),
    Check(
        "shadow-empty-password",
        "user",
        _F,
        _H,
        "Account with an empty password",
        "Set the password field to `*` or `!` (locked) in /etc/shadow and /etc/passwd.",
        "critical for UID 0",
    ),
    # -- filesystem ----------------------------------------------------------------------------
    Check(
        "fs-world-writable",
        "filesystem",
        _F,
        _M,
        "World-writable path (file, or directory without the sticky bit)",
        "Remove the world-write bit (`chmod o-w`); give write access to the runtime user "
        "only, on a VOLUME.",
    ),
    Check(
        "fs-writable-by-runtime-user",
        "filesystem",
        _F,
        _M,
        "Path writable by the runtime user outside VOLUMEs and /tmp",
        "Keep the image read-only for the runtime user (files owned by root, mode 755/644) "
        "and declare the paths it must write as VOLUMEs, so it runs with --read-only.",
    ),
    Check(
        "fs-writable-path-dir",
        "filesystem",
        _F,
        _H,
        "Writable directory on PATH",
        "Make PATH directories owned by root and not writable by group/other or the runtime user.",
    ),
    # -- privilege -----------------------------------------------------------------------------
    Check(
        "setuid-added",
        "privilege",
        _F,
        _H,
        "setuid/setgid binary added or changed by the image's own layers",
        "Do not add setuid/setgid binaries; strip the bits (`chmod u-s,g-s`) or drop the "
        "package that ships them.",
        "medium for setgid-only or non-root-owned files",
    ),
    Check(
        "setuid-base",
        "privilege",
        _F,
        _L,
        "setuid/setgid binary shipped by the base image",
        "Strip unneeded setuid/setgid bits in a final step "
        "(`find / -xdev -perm /6000 -type f -exec chmod a-s {} +`) or use a minimal base.",
    ),
    Check(
        "file-capability",
        "privilege",
        _F,
        _M,
        "File with Linux capabilities (security.capability xattr)",
        "Remove the file capability (`setcap -r`) and grant capabilities at run time only if "
        "needed.",
        "low when shipped by the base image",
    ),
    Check(
        "sudo-installed",
        "privilege",
        _F,
        _M,
        "sudo (or doas) is installed",
        "Remove sudo; do privileged work at build time and run as an unprivileged user.",
    ),
    Check(
        "sudo-nopasswd",
        "privilege",
        _F,
        _H,
        "sudoers grants passwordless sudo",
        "Remove the NOPASSWD rule and sudo itself.",
    ),
    # -- processes -----------------------------------------------------------------------------
    Check(
        "process-sshd",
        "process",
        _C,
        _M,
        "Container runs an SSH daemon",
        "Do not run sshd in a container; use `docker exec`/`kubectl exec` for access.",
    ),
    Check(
        "sshd-installed",
        "process",
        _F,
        _L,
        "SSH server installed in the image",
        "Remove the SSH server package (openssh-server, dropbear).",
    ),
    Check(
        "process-supervisor",
        "process",
        _C,
        _L,
        "Container runs a process supervisor (several processes)",
        "Run one process per container; split the services into separate containers.",
    ),
    Check(
        "process-init",
        "process",
        _C,
        _L,
        "Container runs a full init system",
        "Run the application directly (with `tini`/`--init` for signal handling and "
        "reaping) instead of systemd or /sbin/init.",
    ),
    Check(
        "port-22-exposed",
        "process",
        _C,
        _M,
        "Port 22 (SSH) exposed",
        "Remove `EXPOSE 22`; do not ship an SSH service in the image.",
    ),
    Check(
        "healthcheck-missing",
        "health",
        _C,
        _L,
        "No HEALTHCHECK in the image config",
        "Add a `HEALTHCHECK` instruction (or define probes in the orchestrator).",
    ),
    # -- provenance ----------------------------------------------------------------------------
    Check(
        "tag-mutable",
        "provenance",
        _C,
        _M,
        "Image referenced by a mutable tag (latest, stable, ...)",
        "Reference the image by digest (`name@sha256:...`), or at least a versioned tag.",
    ),
    Check(
        "tag-unpinned",
        "provenance",
        _C,
        _L,
        "Image referenced by tag, not by digest",
        "Pin the image by digest (`name:tag@sha256:...`) so the scanned and deployed image "
        "are the same.",
    ),
    Check(
        "label-missing-revision",
        "provenance",
        _C,
        _L,
        "Missing label org.opencontainers.image.revision",
        "Add `LABEL org.opencontainers.image.revision=<vcs commit>` (e.g. from a build arg).",
    ),
    Check(
        "label-missing-source",
        "provenance",
        _C,
        _L,
        "Missing label org.opencontainers.image.source",
        "Add `LABEL org.opencontainers.image.source=<repository URL>`.",
    ),
    Check(
        "label-missing-created",
        "provenance",
        _C,
        _L,
        "Missing label org.opencontainers.image.created",
        "Add `LABEL org.opencontainers.image.created=<RFC 3339 build time>`.",
    ),
    # -- build hygiene -------------------------------------------------------------------------
    Check(
        "cache-apt",
        "hygiene",
        _F,
        _L,
        "apt package lists or archives left in the image",
        "In the same RUN: `apt-get install --no-install-recommends ... && "
        "rm -rf /var/lib/apt/lists/*`, or use a cache mount.",
    ),
    Check(
        "cache-apk",
        "hygiene",
        _F,
        _L,
        "apk cache left in the image",
        "Use `apk add --no-cache`, or a cache mount.",
    ),
    Check(
        "cache-pip",
        "hygiene",
        _F,
        _L,
        "pip cache left in the image",
        "Use `pip install --no-cache-dir` (or `PIP_NO_CACHE_DIR=1`), or a cache mount.",
    ),
    Check(
        "cache-npm",
        "hygiene",
        _F,
        _L,
        "npm cache left in the image",
        "Run `npm ci && npm cache clean --force` in the same RUN, or use a cache mount.",
    ),
    Check(
        "cache-yarn",
        "hygiene",
        _F,
        _L,
        "yarn cache left in the image",
        "Run `yarn install && yarn cache clean` in the same RUN, or use a cache mount.",
    ),
    Check(
        "cache-go",
        "hygiene",
        _F,
        _L,
        "Go build or module cache left in the image",
        "Build in a separate stage (multi-stage build) or use a cache mount.",
    ),
    Check(
        "toolchain-present",
        "hygiene",
        _F,
        _L,
        "Build toolchain in the final image (compilers, make, -dev packages)",
        "Use a multi-stage build: compile in a builder stage, copy only the artefacts.",
    ),
    Check(
        "git-dir",
        "hygiene",
        _F,
        _M,
        ".git directory in the image",
        "Add `.git` to .dockerignore; never COPY the repository metadata.",
    ),
    Check(
        "copy-dotenv",
        "hygiene",
        _F,
        _M,
        ".env file in the image",
        "Add `.env*` to .dockerignore and inject configuration at run time.",
    ),
    Check(
        "copy-node-modules",
        "hygiene",
        _F,
        _L,
        "node_modules copied from the build context",
        "Add `node_modules` to .dockerignore and install dependencies with `npm ci` in the image.",
    ),
    Check(
        "add-remote-url",
        "hygiene",
        _C,
        _M,
        "ADD of a remote URL without a checksum",
        "Download with `ADD --checksum=sha256:...` or `RUN curl ... && sha256sum -c`.",
    ),
    Check(
        "run-consecutive",
        "hygiene",
        _C,
        _I,
        "Consecutive RUN layers",
        "Merge consecutive RUN instructions with `&&` so temporary files do not persist "
        "in intermediate layers.",
    ),
    Check(
        "wasted-bytes",
        "hygiene",
        _C,
        _L,
        "Layer bytes wasted by files later deleted or overwritten",
        "Delete temporary files in the same RUN that creates them; avoid `chown -R`/`chmod -R` "
        "in a later layer (use `COPY --chown`).",
    ),
)

BY_ID: Mapping[str, Check] = {c.id: c for c in CHECKS}


def check(rule: str) -> Check:
    """The check with this id (KeyError for an unknown id: a programming error)."""
    return BY_ID[rule]


def make_finding(
    rule: str,
    *,
    where: str,
    detail: str,
    message: str,
    severity: Severity | None = None,
    layer: int | None = None,
    path: str | None = None,
    location: str | None = None,
    created_by: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Finding:
    """A Finding for check ``rule``; the fingerprint is rule + where + sha256(detail)."""
    c = BY_ID[rule]
    digest = hashlib.sha256(detail.encode("utf-8", "surrogateescape")).hexdigest()
    return Finding(
        category=c.category,
        rule=c.id,
        title=c.title,
        severity=severity or c.severity,
        message=message,
        fingerprint=fingerprint(c.id, where, digest),
        layer=layer,
        path=path,
        location=location,
        created_by=created_by,
        remediation=c.remediation,
        extra=dict(extra or {}),
    )


def markdown_table() -> str:
    """The table of every check for docs/checks.md and the README."""
    rows = [
        "| Id | Area | Category | Severity | Title | Remediation |",
        "|---|---|---|---|---|---|",
    ]
    for c in CHECKS:
        sev = c.severity.value + (f" ({c.severity_note})" if c.severity_note else "")
        cells = (f"`{c.id}`", c.area, c.category.value, sev, c.title, c.remediation)
        rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(rows) + "\n"


MAX_PER_RULE = 50


def capped(
    findings: list[Finding], rule: str, noun: str, limit: int = MAX_PER_RULE
) -> list[Finding]:
    """The first ``limit`` findings, plus one summary finding counting the rest."""
    if len(findings) <= limit:
        return findings
    rest = findings[limit:]
    worst = max((f.severity for f in rest), key=lambda s: s.rank)
    paths = [f.path or f.location or "?" for f in rest]
    return [*findings[:limit], summary_finding(rule, noun, paths, worst)]


def summary_finding(rule: str, noun: str, paths: list[str], severity: Severity) -> Finding:
    """One finding standing for ``paths`` that were not reported one by one."""
    tops: dict[str, int] = {}
    for p in paths:
        top = "/".join(p.split("/")[:3]) or p
        tops[top] = tops.get(top, 0) + 1
    busiest = sorted(tops.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    where = ", ".join(f"{k} ({v})" for k, v in busiest)
    return make_finding(
        rule,
        where="(summary)",
        detail="summary",
        severity=severity,
        location="filesystem",
        message=f"{len(paths)} more {noun} not listed individually; most under {where}",
        extra={"more": len(paths), "sample": paths[:20]},
    )
