"""PEM private key blocks (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted PKCS#8, PGP) in any file."""

from __future__ import annotations

import re
from collections.abc import Iterable

from imgscan.detect.base import FileContext, Hit
from imgscan.model import Severity

_BLOCK_RE = re.compile(
    rb"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |ANY |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    rb"(?P<body>[A-Za-z0-9+/=:,\-\s\\n\"']{40,65536}?)"
    rb"-----END \1-----"
)
_MARKER = b"PRIVATE KEY"
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}")

_KIND = {
    b"RSA PRIVATE KEY": "RSA",
    b"EC PRIVATE KEY": "EC",
    b"DSA PRIVATE KEY": "DSA",
    b"OPENSSH PRIVATE KEY": "OpenSSH",
    b"ENCRYPTED PRIVATE KEY": "encrypted PKCS#8",
    b"PRIVATE KEY": "PKCS#8",
    b"ANY PRIVATE KEY": "PKCS#8",
    b"PGP PRIVATE KEY BLOCK": "PGP",
}


def _validate(text: str) -> bool | None:
    try:
        from imgscan.detect import keys
    except ImportError:
        return None
    fn = getattr(keys, "validate_private_key", None)
    if fn is None:
        return None
    result = fn(text)
    return result if isinstance(result, bool) or result is None else None


class PemKeyDetector:
    """Finds complete PEM private key blocks; a bare header without a body is not a key."""

    name = "pem"

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """Yield one hit per private key block in ``data``."""
        if data.find(_MARKER) < 0:
            return
        for m in _BLOCK_RE.finditer(data):
            body = m.group("body")
            if not _B64_RUN.search(body.replace(b"\\n", b"\n")):
                continue  # a header/footer pair around no key material (docs, regexes)
            label = m.group(1)
            kind = _KIND.get(label, "private")
            block = m.group(0).decode("ascii", "replace")
            text = block.replace("\\n", "\n")
            yield Hit(
                rule="private-key",
                title=f"Private key ({kind})",
                severity=Severity.CRITICAL,
                secret=text,
                offset=m.start(),
                message=f"{kind} private key block",
                validated=_validate(text),
                extra={"key_type": kind, "encrypted": b"ENCRYPTED" in block.encode() or
                       b"Proc-Type: 4,ENCRYPTED" in body},
            )
