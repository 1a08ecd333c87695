"""Offline validity checks for secrets: checksums and structure, never a network call.

Each validator takes the secret text and returns True (well-formed), False (cannot be a
real secret of this kind) or None (cannot tell offline).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(n: int, width: int = 6) -> str:
    """``n`` in base62 (0-9A-Za-z), left-padded with zeros to ``width``."""
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    return digits.rjust(width, "0")


def crc32_base62_checksum(body: str) -> str:
    """The 6-character base62 CRC32 checksum GitHub and npm append to a token body."""
    return base62(binascii.crc32(body.encode("ascii")))


def github_checksum(secret: str) -> bool | None:
    """GitHub ``gh?_`` and npm ``npm_`` tokens: 30 random base62 + 6-char CRC32 checksum."""
    if secret.startswith("github_pat_"):
        return None  # fine-grained tokens carry no public checksum
    prefix, sep, rest = secret.partition("_")
    if not sep or len(rest) != 36 or not rest.isalnum() or not rest.isascii():
        return None if not sep else False
    if prefix not in {"ghp", "gho", "ghu", "ghs", "ghr", "npm"}:
        return None
    return crc32_base62_checksum(rest[:30]) == rest[30:]


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt(secret: str) -> bool:
    """A JWT/JWS/JWE whose header and payload decode to JSON objects with an ``alg``."""
    parts = secret.strip().split(".")
    if len(parts) not in (3, 5):
        return False
    try:
        header = json.loads(_b64url(parts[0]))
        if not isinstance(header, dict) or "alg" not in header:
            return False
        if len(parts) == 3:
            payload = json.loads(_b64url(parts[1]))
            if not isinstance(payload, dict):
                return False
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return False
    return True


def _b64_text(secret: str) -> str | None:
    try:
        raw = base64.b64decode(secret + "=" * (-len(secret) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if text and text.isprintable() else None


def base64_text(secret: str) -> bool:
    """Base64 that decodes to printable text (an encoded password)."""
    return _b64_text(secret) is not None


def basic_auth(secret: str) -> bool:
    """Base64 of ``user:password`` with a non-empty password (HTTP basic / registry auth)."""
    text = _b64_text(secret)
    return text is not None and ":" in text and bool(text.split(":", 1)[1])


# ---------------------------------------------------------------------------- private keys

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]{0,40})-----(.{0,200000}?)-----END \1-----", re.DOTALL)


def _der_tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    if pos + 2 > len(buf):
        raise ValueError("truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise ValueError("truncated")
    return tag, pos, pos + length


def _der_children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, vs, ve = _der_tlv(buf, pos)
        out.append((tag, vs, ve))
        pos = ve
    if pos != end:
        raise ValueError("trailing bytes")
    return out


def _der_private_key(der: bytes, label: str) -> bool:
    tag, vs, ve = _der_tlv(der, 0)
    if tag != 0x30:
        return False
    kids = _der_children(der, vs, ve)
    tags = [k[0] for k in kids]
    if label == "RSA PRIVATE KEY":
        return len(kids) >= 9 and all(t == 0x02 for t in tags[:9])
    if label == "DSA PRIVATE KEY":
        return len(kids) >= 6 and all(t == 0x02 for t in tags[:6])
    if label == "EC PRIVATE KEY":
        return len(kids) >= 2 and tags[0] == 0x02 and tags[1] == 0x04
    if label == "ENCRYPTED PRIVATE KEY":
        return len(kids) == 2 and tags == [0x30, 0x04]
    # PKCS#8: version, AlgorithmIdentifier, OCTET STRING privateKey, ...
    return len(kids) >= 3 and tags[0] == 0x02 and tags[1] == 0x30 and tags[2] == 0x04


def _ssh_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    n = int.from_bytes(buf[pos : pos + 4], "big")
    if pos + 4 + n > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


def _openssh_private_key(blob: bytes) -> bool:
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        return False
    pos = len(magic)
    cipher, pos = _ssh_string(blob, pos)
    _kdf, pos = _ssh_string(blob, pos)
    _kdf_opts, pos = _ssh_string(blob, pos)
    if pos + 4 > len(blob):
        return False
    count = int.from_bytes(blob[pos : pos + 4], "big")
    pos += 4
    if not 1 <= count <= 16:
        return False
    for _ in range(count):
        _pub, pos = _ssh_string(blob, pos)
    private, pos = _ssh_string(blob, pos)
    if cipher == b"none":
        return len(private) >= 8 and private[0:4] == private[4:8]  # the two check ints
    return len(private) % 8 == 0 and len(private) > 0


def _pgp_secret_key(blob: bytes) -> bool:
    if not blob:
        return False
    first = blob[0]
    if not first & 0x80:
        return False
    tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
    return tag in (5, 7)  # secret key / secret subkey


def private_key(secret: str) -> bool | None:
    """A PEM private key block whose body has the structure its label promises."""
    text = secret.replace("\\n", "\n").replace("\\r", "")
    m = _PEM_RE.search(text)
    if not m:
        return False
    label, body = m.group(1), m.group(2)
    lines = [ln.strip().strip("\"',") for ln in body.strip().splitlines()]
    if any(":" in ln for ln in lines):
        if any(ln.startswith("Proc-Type:") and "ENCRYPTED" in ln for ln in lines):
            return None  # legacy encrypted PEM: the DER is ciphertext
        lines = [ln for ln in lines if ":" not in ln]
    b64 = "".join(ln for ln in lines if ln and not ln.startswith("="))  # PGP checksum line
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if label == "OPENSSH PRIVATE KEY":
            return _openssh_private_key(blob)
        if label == "PGP PRIVATE KEY BLOCK":
            return _pgp_secret_key(blob)
        return _der_private_key(blob, label)
    except ValueError:
        return False


VALIDATORS: Mapping[str, Callable[[str], bool | None]] = {
    "base64": base64_text,
    "basic-auth": basic_auth,
    "github-checksum": github_checksum,
    "npm-checksum": github_checksum,
    "jwt": jwt,
    "private-key": private_key,
}

__all__ = [
    "VALIDATORS",
    "base62",
    "base64_text",
    "basic_auth",
    "crc32_base62_checksum",
    "github_checksum",
    "jwt",
    "private_key",
]
