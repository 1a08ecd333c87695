"""Redaction, secret digests and stable fingerprints."""

from __future__ import annotations

import hashlib
import re


def secret_digest(secret: str) -> str:
    """The sha256 hex digest of a secret's UTF-8 bytes."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


_PEM_HEAD = re.compile(r"-----BEGIN [A-Z0-9 ]{1,40}-----")


def redact(secret: str) -> str:
    """A short form that identifies a secret to its owner without revealing it."""
    s = secret.strip()
    head = _PEM_HEAD.search(s[:200])
    if head is not None:  # only the armour line, whatever the newlines look like
        return f"{head.group(0)}…(redacted)"
    first_line = s.splitlines()[0] if s else ""
    n = len(first_line)
    if n >= 16:
        return f"{first_line[:4]}…{first_line[-4:]}"
    if n >= 8:
        return f"{first_line[:2]}…{first_line[-2:]}"
    return "…" if n else ""


def fingerprint(rule: str, where: str, digest: str) -> str:
    """Stable id of a finding: rule + path (or config location) + secret digest."""
    h = hashlib.sha256()
    for part in (rule, where, digest):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()[:32]
