"""Offline structural validation of private keys, and deterministic fake keys for tests.

``validate_private_key`` parses a PEM block with a minimal DER reader (no
third-party dependency): PKCS#1 RSA, SEC1 EC, OpenSSL DSA, PKCS#8, encrypted
PKCS#8, legacy encrypted PEM, OpenSSH and armored PGP. It answers True when the
block is a well-formed key whose internal values agree (e.g. RSA ``n == p*q``),
False when it is truncated or malformed (a doc snippet, a placeholder), and None
when the format is one we cannot judge.

``fake_private_key`` makes keys that pass that check but are obviously fake
(tiny composite RSA factors, random non-curve scalars): use it for fixtures.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from dataclasses import dataclass

# --- a minimal DER reader -------------------------------------------------------------------

_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_NULL = 0x05
_OID = 0x06


class _DerError(ValueError):
    """Malformed DER."""


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    value: bytes


def _read_tlv(data: bytes, pos: int) -> tuple[_Tlv, int]:
    """Read one definite-length TLV at ``pos``; return it and the offset after it."""
    if pos + 2 > len(data):
        raise _DerError("truncated header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("multi-byte tags are not used in keys")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise _DerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise _DerError("truncated value")
    return _Tlv(tag, data[pos:end]), end


def _children(value: bytes) -> list[_Tlv]:
    """All TLVs packed in a constructed value (which must be consumed exactly)."""
    out: list[_Tlv] = []
    pos = 0
    while pos < len(value):
        tlv, pos = _read_tlv(value, pos)
        out.append(tlv)
    return out


def _parse_top(der: bytes) -> list[_Tlv]:
    """The children of the single top-level SEQUENCE that must span all of ``der``."""
    tlv, end = _read_tlv(der, 0)
    if tlv.tag != _SEQUENCE or end != len(der):
        raise _DerError("not one SEQUENCE")
    return _children(tlv.value)


def _int(tlv: _Tlv) -> int:
    if tlv.tag != _INTEGER or not tlv.value:
        raise _DerError("expected INTEGER")
    return int.from_bytes(tlv.value, "big", signed=True)


def _oid(tlv: _Tlv) -> str:
    if tlv.tag != _OID or not tlv.value:
        raise _DerError("expected OID")
    v = tlv.value
    parts = [v[0] // 40, v[0] % 40] if v[0] < 80 else [2, v[0] - 80]
    acc = 0
    for b in v[1:]:
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(str(p) for p in parts)


def _enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _enc_len(len(value)) + value


def _der_int(n: int) -> bytes:
    raw = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return _tlv(_INTEGER, raw)


def _der_oid(oid: str) -> bytes:
    nums = [int(x) for x in oid.split(".")]
    out = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out.extend(reversed(chunk))
    return _tlv(_OID, bytes(out))


def _seq(*items: bytes) -> bytes:
    return _tlv(_SEQUENCE, b"".join(items))


# --- structure checks -----------------------------------------------------------------------

OID_RSA = "1.2.840.113549.1.1.1"
OID_RSA_PSS = "1.2.840.113549.1.1.10"
OID_EC = "1.2.840.10045.2.1"
OID_DSA = "1.2.840.10040.4.1"
OID_X25519 = "1.3.101.110"
OID_X448 = "1.3.101.111"
OID_ED25519 = "1.3.101.112"
OID_ED448 = "1.3.101.113"
OID_P256 = "1.2.840.10045.3.1.7"
OID_PBES2 = "1.2.840.113549.1.5.13"

# curve OID -> private scalar length in bytes
_CURVE_BYTES = {
    OID_P256: 32,
    "1.3.132.0.34": 48,  # P-384
    "1.3.132.0.35": 66,  # P-521
    "1.3.132.0.10": 32,  # secp256k1
}
_RAW_KEY_BYTES = {OID_X25519: 32, OID_ED25519: 32, OID_X448: 56, OID_ED448: 57}


def _check_rsa(items: list[_Tlv]) -> bool:
    """PKCS#1 RSAPrivateKey: the CRT values must agree with n, p, q and d."""
    if len(items) < 9:
        return False
    version, n, e, d, p, q, dp, dq, qinv = (_int(t) for t in items[:9])
    if version not in (0, 1) or min(n, e, d, p, q) <= 1:
        return False
    return bool(n == p * q and dp == d % (p - 1) and dq == d % (q - 1) and (qinv * q) % p == 1 % p)


def _check_ec(items: list[_Tlv]) -> bool:
    """SEC1 ECPrivateKey: version 1, a scalar of the curve's size, optional params/public key."""
    if len(items) < 2 or _int(items[0]) != 1 or items[1].tag != _OCTET_STRING:
        return False
    scalar = items[1].value
    if not 16 <= len(scalar) <= 66 or not any(scalar):
        return False
    for extra in items[2:]:
        if extra.tag == 0xA0:  # [0] ECParameters
            inner = _children(extra.value)
            if inner and inner[0].tag == _OID:
                want = _CURVE_BYTES.get(_oid(inner[0]))
                if want is not None and len(scalar) != want:
                    return False
        elif extra.tag == 0xA1:  # [1] publicKey BIT STRING
            inner = _children(extra.value)
            if not inner or inner[0].tag != _BIT_STRING:
                return False
        else:
            return False
    return True


def _check_dsa(items: list[_Tlv]) -> bool:
    """OpenSSL DSAPrivateKey: (0, p, q, g, y, x) with y == g^x mod p."""
    if len(items) != 6:
        return False
    version, p, q, g, y, x = (_int(t) for t in items)
    if version != 0 or min(p, q, g, y, x) <= 1 or x >= q:
        return False
    return pow(g, x, p) == y


def _check_pkcs8(items: list[_Tlv]) -> bool:
    """PKCS#8 PrivateKeyInfo: version, AlgorithmIdentifier, the inner key as OCTET STRING."""
    if len(items) < 3 or _int(items[0]) not in (0, 1):
        return False
    alg, key = items[1], items[2]
    if alg.tag != _SEQUENCE or key.tag != _OCTET_STRING:
        return False
    alg_items = _children(alg.value)
    if not alg_items:
        return False
    oid = _oid(alg_items[0])
    if oid in (OID_RSA, OID_RSA_PSS):
        return _check_rsa(_parse_top(key.value))
    if oid == OID_EC:
        inner = _parse_top(key.value)
        if len(alg_items) > 1 and alg_items[1].tag == _OID:
            want = _CURVE_BYTES.get(_oid(alg_items[1]))
            if want is not None and len(inner) > 1 and len(inner[1].value) != want:
                return False
        return _check_ec(inner)
    if oid == OID_DSA:
        tlv, end = _read_tlv(key.value, 0)
        return end == len(key.value) and _int(tlv) > 1
    if oid in _RAW_KEY_BYTES:
        tlv, end = _read_tlv(key.value, 0)
        return (
            end == len(key.value)
            and tlv.tag == _OCTET_STRING
            and len(tlv.value) == _RAW_KEY_BYTES[oid]
        )
    return len(key.value) > 0  # an algorithm we do not know, in a well-formed envelope


def _check_encrypted_pkcs8(items: list[_Tlv]) -> bool:
    """EncryptedPrivateKeyInfo: AlgorithmIdentifier and a non-empty ciphertext."""
    if len(items) != 2 or items[0].tag != _SEQUENCE or items[1].tag != _OCTET_STRING:
        return False
    alg = _children(items[0].value)
    return bool(alg) and bool(_oid(alg[0])) and len(items[1].value) >= 8


# --- OpenSSH --------------------------------------------------------------------------------

_OPENSSH_MAGIC = b"openssh-key-v1\x00"


class _SshReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise _DerError("truncated uint32")
        v = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        self.pos += 4
        return v

    def string(self) -> bytes:
        n = self.u32()
        if self.pos + n > len(self.data):
            raise _DerError("truncated string")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v


_SSH_KEY_FIELDS = {  # private-section fields after the key type (not counting the comment)
    b"ssh-ed25519": 2,
    b"ssh-rsa": 6,
    b"ssh-dss": 5,
    b"ecdsa-sha2-nistp256": 3,
    b"ecdsa-sha2-nistp384": 3,
    b"ecdsa-sha2-nistp521": 3,
}


def _check_openssh(blob: bytes) -> bool:
    if not blob.startswith(_OPENSSH_MAGIC):
        return False
    r = _SshReader(blob[len(_OPENSSH_MAGIC) :])
    cipher, kdf, _kdfopts = r.string(), r.string(), r.string()
    nkeys = r.u32()
    if not 1 <= nkeys <= 64:
        return False
    pubs = [r.string() for _ in range(nkeys)]
    private = r.string()
    if r.pos != len(r.data):
        return False
    if cipher != b"none":
        return kdf != b"none" and len(private) > 0 and len(private) % 8 == 0
    p = _SshReader(private)
    if p.u32() != p.u32():
        return False  # check-ints differ: corrupt (or wrongly decrypted)
    for pub in pubs:
        pub_type = _SshReader(pub).string()
        key_type = p.string()
        if key_type != pub_type:
            return False
        fields = _SSH_KEY_FIELDS.get(key_type)
        if fields is None:
            return True  # a key type we do not know; the envelope is sound
        values = [p.string() for _ in range(fields)]
        if key_type == b"ssh-ed25519" and (
            len(values[0]) != 32 or len(values[1]) != 64 or values[1][32:] != values[0]
        ):
            return False
        if key_type == b"ssh-rsa":
            n, e, d, iqmp, pp, qq = (int.from_bytes(v, "big") for v in values)
            if n != pp * qq or min(e, d, iqmp) <= 0 or (iqmp * qq) % pp != 1 % pp:
                return False
        p.string()  # comment
    padding = p.data[p.pos :]
    return padding == bytes(range(1, len(padding) + 1)) and len(padding) < 16


# --- PGP ------------------------------------------------------------------------------------


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _check_pgp(body_lines: list[str]) -> bool:
    # Armor: optional "Key: value" headers, a blank line, base64, then "=XXXX" checksum.
    lines = [ln.strip() for ln in body_lines]
    while lines and not lines[0]:
        lines.pop(0)
    if any(":" in ln for ln in lines):
        while lines and lines[0]:
            lines.pop(0)
    lines = [ln for ln in lines if ln]
    checksum = None
    if lines and lines[-1].startswith("=") and len(lines[-1]) == 5:
        checksum = lines.pop()[1:]
    data = base64.b64decode("".join(lines), validate=True)
    if not data:
        return False
    if checksum is not None:
        want = int.from_bytes(base64.b64decode(checksum), "big")
        if _crc24(data) != want:
            return False
    ptag = data[0]
    if not ptag & 0x80:
        return False
    tag = ptag & 0x3F if ptag & 0x40 else (ptag >> 2) & 0x0F
    return tag in (5, 7)  # secret key / secret subkey packet


# --- PEM ------------------------------------------------------------------------------------

_PEM_BEGIN_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_HEADER_RE = re.compile(r"^[A-Za-z-]+:")


def _split_body(body: str) -> tuple[dict[str, str], str]:
    """Split RFC 1421 headers (``Proc-Type:``, ``DEK-Info:``) from the base64 payload."""
    headers: dict[str, str] = {}
    payload: list[str] = []
    for raw in body.replace("\\n", "\n").splitlines():
        line = raw.strip().strip("\"'")
        if not line:
            continue
        if _HEADER_RE.match(line) and not payload:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        else:
            payload.append(line)
    return headers, "".join(payload)


def _b64(payload: str) -> bytes:
    return base64.b64decode(payload, validate=True)


def validate_private_key(pem_text: str) -> bool | None:
    """Whether a PEM private key block is a well-formed key (None: format not checkable)."""
    text = pem_text.replace("\\n", "\n")
    m = _PEM_BEGIN_RE.search(text)
    if m is None:
        return False
    label = m.group(1)
    end = text.find(f"-----END {label}-----", m.end())
    if end < 0:
        return False  # a header without its footer: truncated
    body = text[m.end() : end]
    try:
        if label == "PGP PRIVATE KEY BLOCK":
            return _check_pgp(body.splitlines())
        headers, payload = _split_body(body)
        blob = _b64(payload)
        if not blob:
            return False
        if label == "OPENSSH PRIVATE KEY":
            return _check_openssh(blob)
        if "ENCRYPTED" in headers.get("Proc-Type", ""):
            dek = headers.get("DEK-Info", "")
            cipher, _, iv = dek.partition(",")
            return bool(cipher) and len(iv) in (16, 32) and len(blob) % 8 == 0
        items = _parse_top(blob)
        if label == "RSA PRIVATE KEY":
            return _check_rsa(items)
        if label == "EC PRIVATE KEY":
            return _check_ec(items)
        if label == "DSA PRIVATE KEY":
            return _check_dsa(items)
        if label in ("PRIVATE KEY", "ANY PRIVATE KEY"):
            return _check_pkcs8(items)
        if label == "ENCRYPTED PRIVATE KEY":
            return _check_encrypted_pkcs8(items)
        return None
    except (_DerError, binascii.Error, ValueError, IndexError):
        return False


# --- fakes ----------------------------------------------------------------------------------

FAKE_KINDS = (
    "rsa",
    "ec",
    "dsa",
    "pkcs8",
    "pkcs8-ec",
    "pkcs8-ed25519",
    "encrypted-pkcs8",
    "rsa-encrypted",
    "openssh",
    "openssh-rsa",
    "pgp",
)


def _pem(label: str, der: bytes, headers: str = "") -> str:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n{headers}" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _odd(rng: random.Random, bits: int) -> int:
    return rng.getrandbits(bits) | (1 << (bits - 1)) | 1


def _fake_rsa_numbers(rng: random.Random) -> tuple[int, ...]:
    """Consistent RSA-shaped numbers from composite (hence useless) 256-bit 'factors'."""
    e = 65537
    while True:
        p, q = _odd(rng, 256) * 3, _odd(rng, 256) * 5  # odd multiples of 3 / 5: never prime
        if p == q:
            continue
        lam = (p - 1) * (q - 1)
        try:
            d = pow(e, -1, lam)
            qinv = pow(q, -1, p)
        except ValueError:
            continue
        return p * q, e, d, p, q, d % (p - 1), d % (q - 1), qinv


def _fake_rsa_der(rng: random.Random) -> bytes:
    n, e, d, p, q, dp, dq, qinv = _fake_rsa_numbers(rng)
    return _seq(*(_der_int(v) for v in (0, n, e, d, p, q, dp, dq, qinv)))


def _fake_ec_der(rng: random.Random, with_params: bool = True) -> bytes:
    scalar = bytes(rng.getrandbits(8) for _ in range(32))
    parts = [_der_int(1), _tlv(_OCTET_STRING, scalar)]
    if with_params:
        parts.append(_tlv(0xA0, _der_oid(OID_P256)))
    return _seq(*parts)


def _ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _ssh_mpint(n: int) -> bytes:
    return _ssh_string(n.to_bytes((n.bit_length() + 8) // 8, "big"))


def _fake_openssh(rng: random.Random, kind: str) -> bytes:
    check = rng.getrandbits(32).to_bytes(4, "big")
    comment = b"fake-key@imgscan.invalid"
    if kind == "openssh":
        pub = bytes(rng.getrandbits(8) for _ in range(32))
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        pub_blob = _ssh_string(b"ssh-ed25519") + _ssh_string(pub)
        priv = _ssh_string(b"ssh-ed25519") + _ssh_string(pub) + _ssh_string(seed + pub)
    else:
        n, e, d, p, q, _dp, _dq, qinv = _fake_rsa_numbers(rng)
        pub_blob = _ssh_string(b"ssh-rsa") + _ssh_mpint(e) + _ssh_mpint(n)
        priv = _ssh_string(b"ssh-rsa") + b"".join(_ssh_mpint(v) for v in (n, e, d, qinv, p, q))
    section = check + check + priv + _ssh_string(comment)
    pad = (8 - len(section) % 8) % 8
    section += bytes(range(1, pad + 1))
    return (
        _OPENSSH_MAGIC
        + _ssh_string(b"none")
        + _ssh_string(b"none")
        + _ssh_string(b"")
        + (1).to_bytes(4, "big")
        + _ssh_string(pub_blob)
        + _ssh_string(section)
    )


def _fake_pgp(rng: random.Random) -> str:
    # A v4 secret-key packet (new format, tag 5): RSA, unprotected, random MPIs.
    body = bytearray([4]) + rng.getrandbits(32).to_bytes(4, "big") + bytes([1])
    for bits in (512, 17, 512, 256, 256, 256):
        body += bits.to_bytes(2, "big") + (rng.getrandbits(bits) | (1 << (bits - 1))).to_bytes(
            (bits + 7) // 8, "big"
        )
    packet = bytes([0xC5, 0xFF]) + len(body).to_bytes(4, "big") + bytes(body)
    b64 = base64.b64encode(packet).decode("ascii")
    crc = base64.b64encode(_crc24(packet).to_bytes(3, "big")).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: FAKE key made by imgscan tests\n\n"
        + "\n".join(lines)
        + f"\n={crc}\n-----END PGP PRIVATE KEY BLOCK-----\n"
    )


def fake_private_key(kind: str, seed: int) -> str:
    """A deterministic, parseable but useless private key of ``kind`` (see FAKE_KINDS)."""
    rng = random.Random(f"imgscan-fake-key:{kind}:{seed}")
    if kind == "rsa":
        return _pem("RSA PRIVATE KEY", _fake_rsa_der(rng))
    if kind == "ec":
        return _pem("EC PRIVATE KEY", _fake_ec_der(rng))
    if kind == "dsa":
        p = _odd(rng, 512)
        q = _odd(rng, 160)
        g = rng.randrange(2, p - 1)
        x = rng.randrange(2, q - 1)
        der = _seq(*(_der_int(v) for v in (0, p, q, g, pow(g, x, p), x)))
        return _pem("DSA PRIVATE KEY", der)
    if kind == "pkcs8":
        alg = _seq(_der_oid(OID_RSA), _tlv(_NULL, b""))
        return _pem("PRIVATE KEY", _seq(_der_int(0), alg, _tlv(_OCTET_STRING, _fake_rsa_der(rng))))
    if kind == "pkcs8-ec":
        alg = _seq(_der_oid(OID_EC), _der_oid(OID_P256))
        inner = _fake_ec_der(rng, with_params=False)
        return _pem("PRIVATE KEY", _seq(_der_int(0), alg, _tlv(_OCTET_STRING, inner)))
    if kind == "pkcs8-ed25519":
        raw = _tlv(_OCTET_STRING, bytes(rng.getrandbits(8) for _ in range(32)))
        alg = _seq(_der_oid(OID_ED25519))
        return _pem("PRIVATE KEY", _seq(_der_int(0), alg, _tlv(_OCTET_STRING, raw)))
    if kind == "encrypted-pkcs8":
        alg = _seq(_der_oid(OID_PBES2), _seq())
        ct = bytes(rng.getrandbits(8) for _ in range(320))
        return _pem("ENCRYPTED PRIVATE KEY", _seq(alg, _tlv(_OCTET_STRING, ct)))
    if kind == "rsa-encrypted":
        iv = "".join(rng.choice("0123456789ABCDEF") for _ in range(32))
        ct = bytes(rng.getrandbits(8) for _ in range(608))
        headers = f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,{iv}\n\n"
        return _pem("RSA PRIVATE KEY", ct, headers)
    if kind in ("openssh", "openssh-rsa"):
        blob = _fake_openssh(rng, kind)
        b64 = base64.b64encode(blob).decode("ascii")
        lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
        return (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            + "\n".join(lines)
            + "\n-----END OPENSSH PRIVATE KEY-----\n"
        )
    if kind == "pgp":
        return _fake_pgp(rng)
    raise ValueError(f"unknown fake key kind {kind!r}; expected one of {', '.join(FAKE_KINDS)}")
