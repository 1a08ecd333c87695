"""Files that are credentials by their kind: cloud/registry/VCS configs, keystores, hashes.

Each parser knows one file format and reports the credential value itself as
the hit's secret (so redaction and fingerprints work) at its byte offset.
Placeholders (``${NPM_TOKEN}``, ``changeme``...) are not reported. Armored PGP
and PEM private key blocks are left to ``imgscan.detect.pem``; binary PGP
secret keyrings, GnuPG private-keys-v1.d files, PKCS#12/PFX and JKS/JCEKS
keystores are recognised here by magic.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.entropy import is_placeholder
from imgscan.model import Severity

_MAX_KEYSTORE = 1024 * 1024  # keystores are small; a bigger blob is reported by digest only


def _basename(path: str) -> str:
    return posixpath.basename(path.rsplit("!", 1)[-1])


def _inner(path: str) -> str:
    return path.rsplit("!", 1)[-1]


class _Emitter:
    """Builds hits for one file: finds the value's offset (after ``start``) and skips fakes."""

    def __init__(self, data: bytes, rule: str, title: str, severity: Severity) -> None:
        self.data = data
        self.rule = rule
        self.title = title
        self.severity = severity
        self.seen: set[str] = set()

    def hit(
        self,
        value: str,
        start: int = 0,
        what: str = "",
        *,
        check: bool = True,
        severity: Severity | None = None,
    ) -> Hit | None:
        """A hit for ``value`` (found at or after ``start``), or None for a repeat/placeholder."""
        v = value.strip()
        if not v or v in self.seen or (check and is_placeholder(v)):
            return None
        self.seen.add(v)
        off = self.data.find(v.encode("utf-8", "surrogateescape"), start)
        if off < 0:  # a JSON string with escapes (a PEM key's "\n")
            off = self.data.find(json.dumps(v)[1:-1].encode("utf-8"), start)
        if off < 0:
            off = max(start, 0)
        return Hit(
            rule=self.rule,
            title=self.title,
            severity=severity or self.severity,
            secret=v,
            offset=off,
            message=f"{self.title}: {what}" if what else self.title,
        )


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    """(offset, decoded line) for each line."""
    pos = 0
    for raw in data.split(b"\n"):
        yield pos, raw.decode("utf-8", "replace").rstrip("\r")
        pos += len(raw) + 1


def _ini_values(data: bytes, keys: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """(line offset, key, value) for ``key = value`` lines whose key is in ``keys``."""
    wanted = {k.lower() for k in keys}
    for off, line in _lines(data):
        s = line.strip()
        if not s or s[0] in "#;[":
            continue
        k, sep, v = s.partition("=")
        if not sep:
            k, sep, v = s.partition(":")
        if sep and k.strip().lower() in wanted:
            yield off, k.strip(), v.strip().strip("\"'")


# --- parsers (each: data -> hits) -----------------------------------------------------------


def _aws_credentials(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-aws-credentials", "AWS credentials file", Severity.CRITICAL)
    keys = ("aws_secret_access_key", "aws_session_token", "aws_security_token")
    for off, key, value in _ini_values(data, keys):
        h = em.hit(value, off, key)
        if h is not None:
            yield h


def _docker_config(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-docker-config", "Docker registry credentials", Severity.HIGH)
    doc = _json(data)
    if not isinstance(doc, Mapping):
        return
    auths = doc.get("auths", doc)  # legacy ~/.dockercfg has registries at the top level
    if not isinstance(auths, Mapping):
        return
    for registry, entry in auths.items():
        if not isinstance(entry, Mapping):
            continue
        for field in ("auth", "identitytoken", "registrytoken", "password"):
            value = entry.get(field)
            if isinstance(value, str) and value:
                if field == "auth" and not _valid_basic_auth(value):
                    continue
                h = em.hit(value, 0, f"{field} for {registry}")
                if h is not None:
                    yield h


def _valid_basic_auth(value: str) -> bool:
    try:
        _user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep and password) and not is_placeholder(password)


_NPMRC_RE = re.compile(r"(_authToken|_auth|_password|npmAuthToken|npmAuthIdent)\s*[=:]\s*(\S+)")


def _npmrc(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-npmrc", "npm registry token", Severity.HIGH)
    for off, line in _lines(data):
        s = line.strip()
        if s.startswith(("#", ";")):
            continue
        m = _NPMRC_RE.search(s)
        if m:
            h = em.hit(m.group(2).strip("\"'"), off, m.group(1))
            if h is not None:
                yield h


def _pypirc(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-pypirc", "PyPI upload credentials", Severity.HIGH)
    for off, _key, value in _ini_values(data, ("password",)):
        h = em.hit(value, off, "password")
        if h is not None:
            yield h


def _netrc(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-netrc", ".netrc password", Severity.HIGH)
    text = data.decode("utf-8", "replace")
    for m in re.finditer(r"(?:^|\s)(password|passwd|account)\s+(\S+)", text):
        if m.group(1) == "account":
            continue
        off = len(text[: m.start(2)].encode("utf-8"))
        h = em.hit(m.group(2), off, "password")
        if h is not None:
            yield h


_URL_CRED_RE = re.compile(
    r"[a-z][a-z0-9+.\-]{0,30}://([^:/@\s]{1,256}):([^@\s]{1,512})@\S", re.IGNORECASE
)


def _git_credentials(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-git-credentials", "Git credential store", Severity.HIGH)
    for off, line in _lines(data):
        m = _URL_CRED_RE.search(line) if "://" in line else None
        if m:
            h = em.hit(m.group(2), off, f"password for {m.group(1)}")
            if h is not None:
                yield h


_KUBE_RE = re.compile(
    r"^[ \t]*-?[ \t]*(client-key-data|token|password|id-token|refresh-token|client-secret)"
    r"[ \t]*:[ \t]*"
    r"[\"']?([^\"'\s#]+)",
    re.MULTILINE,
)


def _kubeconfig(data: bytes) -> Iterator[Hit]:
    text = data.decode("utf-8", "replace")
    if not re.search(r"^[ \t]*(clusters|users|contexts)[ \t]*:", text, re.MULTILINE):
        return
    em = _Emitter(data, "credfile-kubeconfig", "Kubernetes kubeconfig credentials", Severity.HIGH)
    for m in _KUBE_RE.finditer(text):
        field, value = m.group(1), m.group(2)
        sev = Severity.CRITICAL if field == "client-key-data" else Severity.HIGH
        h = em.hit(value, len(text[: m.start(2)].encode("utf-8")), field, severity=sev)
        if h is not None:
            yield h


def _pgpass(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-pgpass", "PostgreSQL password file", Severity.HIGH)
    for off, line in _lines(data):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line)
        if len(fields) >= 5:
            password = ":".join(fields[4:]).replace("\\:", ":").replace("\\\\", "\\")
            h = em.hit(password, off, f"password of {fields[3]}@{fields[0]}")
            if h is not None:
                yield h


_CRYPT_RE = re.compile(
    r"^(?:\$(?:1|2[abxy]?|5|6|7|y|gy|sha1|md5|apr1|argon2(?:id|i|d))\$\S{8,}"
    r"|\{(?:SHA|SSHA|SHA256|SSHA256|SHA512|SSHA512|MD5|SMD5|CRYPT)\}\S{8,}"
    r"|[./0-9A-Za-z]{13})$"
)


def _htpasswd(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-htpasswd", "htpasswd password hash", Severity.HIGH)
    for off, line in _lines(data):
        user, sep, hashed = line.strip().partition(":")
        if sep and _CRYPT_RE.match(hashed):
            h = em.hit(hashed, off, f"hash for {user}", check=False)
            if h is not None:
                yield h


def _shadow(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-shadow-hash", "Password hash in shadow file", Severity.HIGH)
    for off, line in _lines(data):
        fields = line.split(":")
        if len(fields) < 2:
            continue
        user, hashed = fields[0], fields[1].lstrip("!")
        if not hashed or hashed in ("*", "x") or not _CRYPT_RE.match(hashed):
            continue
        h = em.hit(hashed, off, f"password hash of {user}", check=False)
        if h is not None:
            yield h


_ENV_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(.*)$")
SECRET_NAME_RE = re.compile(
    r"(?:PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_?KEY|APIKEY|ACCESS_?KEY|PRIVATE_?KEY"
    r"|CREDENTIALS?|AUTH|_KEY$|^KEY$|DSN$|DATABASE_URL|_URI$|_URL$|CONNECTION_?STRING|SALT)",
    re.IGNORECASE,
)
_NOT_SECRET_NAME_RE = re.compile(
    r"(?:_(?:FILE|PATH|DIR|NAME|USER|USERNAME|ID|HOST|PORT|LENGTH|TTL|EXPIRY|TIMEOUT|ENABLED"
    r"|TYPE|MODE|ALGORITHM|HEADER|FIELD|URL_PATH|VERSION)$|^PUBLIC_|_PUBLIC_|PUBLISHABLE)",
    re.IGNORECASE,
)


def env_value_is_secret(name: str, value: str) -> bool:
    """Whether ``NAME=value`` (an env var or .env line) looks like a real secret."""
    if not SECRET_NAME_RE.search(name) or _NOT_SECRET_NAME_RE.search(name):
        return False
    v = value.strip().strip("\"'")
    if len(v) < 6 or is_placeholder(v) or v.lower() in ("true", "false", "none", "null"):
        return False
    if v.isdigit() or v.startswith(("/", "./", "~/")):
        return False
    if re.search(r"(?:_URL|_URI|DSN|DATABASE_URL|CONNECTION_?STRING)$", name, re.IGNORECASE):
        m = _URL_CRED_RE.search(v)
        return bool(m and not is_placeholder(m.group(2)))
    return True


def _dotenv(data: bytes) -> Iterator[Hit]:
    em = _Emitter(data, "credfile-dotenv", "Secret in .env file", Severity.HIGH)
    for off, line in _lines(data):
        m = _ENV_LINE_RE.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        name, value = m.group(1), m.group(2).split(" #", 1)[0].strip().strip("\"'")
        if env_value_is_secret(name, value):
            url = _URL_CRED_RE.search(value)
            secret = url.group(2) if url else value
            h = em.hit(secret, off, name, check=False)
            if h is not None:
                yield h


_TF_SECRET_NAME_RE = re.compile(
    r"(?:password|secret|token|private_key|access_key|api_key|credentials|connection_string"
    r"|primary_key|secondary_key|sas|kube_config|client_key|master_auth)",
    re.IGNORECASE,
)


def _tfstate(data: bytes) -> Iterator[Hit]:
    doc = _json(data)
    if not isinstance(doc, Mapping):
        return
    em = _Emitter(data, "credfile-terraform-state", "Secret in Terraform state", Severity.HIGH)
    outputs = doc.get("outputs")
    if isinstance(outputs, Mapping):
        for name, out in outputs.items():
            if (
                isinstance(out, Mapping)
                and out.get("sensitive")
                and isinstance(out.get("value"), str)
            ):
                h = em.hit(out["value"], 0, f"sensitive output {name}")
                if h is not None:
                    yield h
    resources = doc.get("resources")
    if not isinstance(resources, list):
        return
    for res in resources:
        if not isinstance(res, Mapping):
            continue
        rname = f"{res.get('type', '?')}.{res.get('name', '?')}"
        for inst in res.get("instances") or ():
            if not isinstance(inst, Mapping):
                continue
            attrs = inst.get("attributes")
            if not isinstance(attrs, Mapping):
                continue
            sensitive = _sensitive_attribute_names(inst.get("sensitive_attributes"))
            for key, value in _walk(attrs):
                leaf = key.rsplit(".", 1)[-1]
                if not isinstance(value, str) or len(value) < 6:
                    continue
                if leaf in sensitive or _TF_SECRET_NAME_RE.search(leaf):
                    if leaf.endswith(("_arn", "_id", "_name")) or leaf in ("id", "arn"):
                        continue
                    h = em.hit(value, 0, f"{rname}.{key}")
                    if h is not None:
                        yield h


def _sensitive_attribute_names(spec: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(spec, list):
        for path in spec:
            if isinstance(path, list):
                for step in path:
                    if isinstance(step, Mapping) and isinstance(step.get("value"), str):
                        names.add(step["value"])
    return names


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix}[{i}]")
    else:
        yield prefix, node


_GCLOUD_FIELDS = ("private_key", "refresh_token", "client_secret", "access_token", "token")


def _gcloud_json(data: bytes) -> Iterator[Hit]:
    doc = _json(data)
    if not isinstance(doc, Mapping):
        return
    em = _Emitter(data, "credfile-gcloud", "Google Cloud credentials", Severity.CRITICAL)
    for key, value in _walk(doc):
        leaf = key.rsplit(".", 1)[-1]
        if leaf in _GCLOUD_FIELDS and isinstance(value, str):
            h = em.hit(value.strip(), 0, leaf)
            if h is not None:
                yield h


_AZURE_FIELDS = (
    "accessToken",
    "refreshToken",
    "secret",
    "client_secret",
    "clientSecret",
    "password",
    "access_token",
    "refresh_token",
)


def _azure_json(data: bytes) -> Iterator[Hit]:
    doc = _json(data)
    if not isinstance(doc, (Mapping, list)):
        return
    em = _Emitter(data, "credfile-azure", "Azure CLI credentials", Severity.CRITICAL)
    for key, value in _walk(doc):
        leaf = key.rsplit(".", 1)[-1]
        if leaf in _AZURE_FIELDS and isinstance(value, str) and len(value) >= 16:
            h = em.hit(value, 0, leaf)
            if h is not None:
                yield h


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


# --- keystores by magic ---------------------------------------------------------------------

_PKCS7_DATA_OID = bytes.fromhex("06092a864886f70d010701")


def is_pkcs12(data: bytes) -> bool:
    """Whether ``data`` is a DER PKCS#12 (PFX): SEQUENCE { INTEGER 3, SEQUENCE { pkcs7-data ..."""
    if len(data) < 16 or data[0] != 0x30:
        return False
    pos = 1
    first = data[pos]
    pos += 1 + (first & 0x7F if first & 0x80 else 0)
    if data[pos : pos + 3] != b"\x02\x01\x03" or data[pos + 3] != 0x30:
        return False
    inner = pos + 4
    first = data[inner]
    inner += 1 + (first & 0x7F if first & 0x80 else 0)
    return data[inner : inner + len(_PKCS7_DATA_OID)] == _PKCS7_DATA_OID


def _keystore_secret(data: bytes) -> str:
    if len(data) <= _MAX_KEYSTORE:
        return base64.b64encode(data).decode("ascii")
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def jks_private_entries(data: bytes) -> int | None:
    """How many private/secret key entries a JKS/JCEKS keystore holds (None: unparseable).

    A truststore (``cacerts``) holds only trusted certificates (tag 2) and is public.
    """
    pos = 8
    try:
        count = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        private = 0
        for _ in range(min(count, 100_000)):
            tag = int.from_bytes(data[pos : pos + 4], "big")
            alias_len = int.from_bytes(data[pos + 4 : pos + 6], "big")
            pos += 6 + alias_len + 8  # tag, alias (modified UTF-8), timestamp
            if tag in (1, 3):  # PrivateKeyEntry (JKS/JCEKS) or SecretKeyEntry (JCEKS)
                return private + 1
            if tag != 2:
                return None
            type_len = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2 + type_len
            cert_len = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4 + cert_len
            if pos > len(data):
                return None
        return private
    except (IndexError, ValueError):
        return None


def _binary_keystore(data: bytes, path: str) -> Iterator[Hit]:
    kind = None
    if data.startswith((b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")):
        if jks_private_entries(data) == 0:
            return  # a truststore of public certificates
        kind, rule = "Java keystore (JKS/JCEKS) with private keys", "credfile-jks"
    elif is_pkcs12(data):
        kind, rule = "PKCS#12/PFX keystore", "credfile-pkcs12"
    elif _is_pgp_secret_packet(data) and (
        _basename(path) in ("secring.gpg", "secring.skr") or path.endswith((".gpg", ".pgp", ".key"))
    ):
        kind, rule = "PGP secret keyring", "credfile-pgp-secret-key"
    if kind is None:
        return
    yield Hit(
        rule=rule,
        title=kind,
        severity=Severity.HIGH,
        secret=_keystore_secret(data),
        offset=0,
        message=f"{kind} (may hold private keys; protected only by its password)",
        no_line=True,
    )


def _is_pgp_secret_packet(data: bytes) -> bool:
    if not data or not data[0] & 0x80:
        return False
    tag = data[0] & 0x3F if data[0] & 0x40 else (data[0] >> 2) & 0x0F
    return tag == 5


def _gnupg_private_key(data: bytes) -> Iterator[Hit]:
    # GnuPG >= 2.1 private-keys-v1.d/*.key: an S-expression or the "Key:" extended format.
    head = data[:64]
    if head.startswith((b"(21:protected-private-key", b"(11:private-key", b"(15:shadowed-private")):
        protected = head.startswith(b"(21:protected")
    elif b"Key: (" in data[:4096] or head.startswith(b"Created:"):
        protected = b"protected-private-key" in data[:4096]
    else:
        return
    yield Hit(
        rule="credfile-pgp-secret-key",
        title="GnuPG private key",
        severity=Severity.HIGH if protected else Severity.CRITICAL,
        secret=_keystore_secret(data),
        offset=0,
        message="GnuPG private key file" + (" (passphrase-protected)" if protected else ""),
        no_line=True,
    )


# --- dispatch -------------------------------------------------------------------------------

Parser = Callable[[bytes], Iterator[Hit]]

# (glob on the inner path, parser); first match wins.
_BY_PATH: tuple[tuple[str, Parser], ...] = (
    ("*/.aws/credentials", _aws_credentials),
    ("*/.aws/config", _aws_credentials),
    ("*/.docker/config.json", _docker_config),
    ("*/.dockercfg", _docker_config),
    ("*/containers/auth.json", _docker_config),
    ("*/.npmrc", _npmrc),
    ("*/npmrc", _npmrc),
    ("*/.yarnrc.yml", _npmrc),
    ("*/.pypirc", _pypirc),
    ("*/.netrc", _netrc),
    ("*/_netrc", _netrc),
    ("*/.git-credentials", _git_credentials),
    ("*/git/credentials", _git_credentials),
    ("*/.kube/config", _kubeconfig),
    ("*/kubeconfig", _kubeconfig),
    ("*/*.kubeconfig", _kubeconfig),
    ("*/etc/kubernetes/*.conf", _kubeconfig),
    ("*/.pgpass", _pgpass),
    ("*/.htpasswd", _htpasswd),
    ("*/htpasswd", _htpasswd),
    ("*/*.htpasswd", _htpasswd),
    ("*/etc/shadow", _shadow),
    ("*/etc/shadow-", _shadow),
    ("*/etc/gshadow", _shadow),
    ("*.tfstate", _tfstate),
    ("*.tfstate.backup", _tfstate),
    ("*/application_default_credentials.json", _gcloud_json),
    ("*/gcloud/legacy_credentials/*/adc.json", _gcloud_json),
    ("*/.azure/accessTokens.json", _azure_json),
    ("*/.azure/msal_token_cache.json", _azure_json),
    ("*/.azure/service_principal_entries.json", _azure_json),
    ("*/.azure/azureProfile.json", _azure_json),
    ("*/.gnupg/private-keys-v1.d/*.key", _gnupg_private_key),
)
_DOTENV_EXCLUDE = (".example", ".sample", ".template", ".dist", ".tmpl", ".defaults", ".schema")
_SERVICE_ACCOUNT_HINT = b'"type": "service_account"'


# One regex for every path glob (a capturing group per glob) instead of a loop of fnmatch.
_BY_PATH_RE = re.compile("|".join(f"({fnmatch.translate(glob)})" for glob, _ in _BY_PATH))


def parser_for(path: str) -> Parser | None:
    """The credential-file parser for a path, or None when the path is not a known kind."""
    inner = "/" + _inner(path).lstrip("/")
    m = _BY_PATH_RE.match(inner)
    if m is not None and m.lastindex is not None:
        return _BY_PATH[m.lastindex - 1][1]
    base = _basename(path)
    if (base == ".env" or base.startswith(".env.") or base.endswith(".env")) and not base.endswith(
        _DOTENV_EXCLUDE
    ):
        return _dotenv
    return None


class CredentialFileDetector:
    """Finds credentials in files that hold them by their kind (path or magic number)."""

    name = "credfiles"
    text_only = False  # keystores are binary

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """Yield one hit per credential value in ``data`` (interpreted by the file's path)."""
        parser = parser_for(ctx.path)
        if parser is not None:
            yield from parser(data)
            return
        if data[:1] in (b"\xfe", b"\xce", b"\x30") or (data and data[0] & 0x80):
            yield from _binary_keystore(data, ctx.path)
            return
        base = _basename(ctx.path).lower()
        if base.endswith(".json") and _SERVICE_ACCOUNT_HINT in data[:4096].replace(b'":"', b'": "'):
            yield from _gcloud_json(data)
