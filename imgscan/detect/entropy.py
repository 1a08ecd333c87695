"""High-entropy strings and secret-keyword assignments, using detect-secrets as a library.

detect-secrets' CLI scans every line with every plugin and is far too slow for
images. Here one regex pass over the (lower-cased) bytes selects candidate
lines: assignments to secret-sounding names, and quoted/assigned runs of
base64 or hex characters. Only those lines reach the detect-secrets plugins
(``Base64HighEntropyString``, ``HexHighEntropyString``, ``KeywordDetector``),
called through their pure ``analyze_string`` / ``calculate_shannon_entropy``
methods. Their ``analyze_line`` is not used because it consults the global
settings singleton (``detect_secrets.settings.get_settings``); nothing here
reads or writes detect-secrets settings, so calls never leak state.

Hashes (checksum files, RECORD, md5sums, lockfile integrity), UUIDs, SRI
strings, git SHAs, base64 image data and minified code are filtered out by
file type, line length and context words.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_potential_uuid,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
)
from detect_secrets.plugins.keyword import (
    CONFIG_DENYLIST_REGEX_TO_GROUP,
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.util.filetype import FileType, determine_file_type

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.strings import is_binary
from imgscan.model import Severity


@dataclass(frozen=True, slots=True)
class EntropyOptions:
    """Thresholds of the entropy and keyword detector."""

    base64_limit: float = 4.5  # detect-secrets' default Shannon entropy limits
    hex_limit: float = 3.0
    min_base64_len: int = 20
    min_hex_len: int = 32
    min_bare_len: int = 32  # a base64 string with no secret word nearby must be this long
    min_keyword_value_len: int = 6
    max_line_len: int = 1000  # longer lines are minified code or data, not assignments
    bare_base64: bool = True  # report high-entropy strings without a secret word (low severity)


# Files whose long random-looking strings are hashes by construction.
_SKIP_BASENAMES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "composer.lock",
        "Gemfile.lock",
        "Pipfile.lock",
        "poetry.lock",
        "Cargo.lock",
        "go.sum",
        "packages.lock.json",
        "Podfile.lock",
        "Package.resolved",
        "Brewfile.lock.json",
        "Cartfile.resolved",
        "mix.lock",
        "pdm.lock",
        "uv.lock",
        "bun.lock",
        "flake.lock",
        "RECORD",
        "md5sums",
        "MD5SUMS",
        "SHA1SUMS",
        "SHA256SUMS",
        "SHA512SUMS",
        "CHECKSUMS",
        "known_hosts",
        "authorized_keys",
        "ld.so.cache",
        "installed",
        "status",
        "integrity",
        "requirements.txt",
        "constraints.txt",
    }
)
_SKIP_SUFFIXES = (
    ".md5sums",
    ".sha1",
    ".sha256",
    ".sha512",
    ".md5",
    ".sum",
    ".lock",
    ".map",
    ".min.js",
    ".min.css",
    ".svg",
    ".pub",
    ".crt",
    ".cer",
    ".asc",
    ".sig",
    ".list",
    ".hash",
    ".sums",
    ".po",
    ".mo",
    ".ttf",
    ".woff",
    ".woff2",
    ".ipynb",
)
_CONFIG_EXTS = frozenset(
    {
        ".env",
        ".cnf",
        ".conf",
        ".cfg",
        ".cf",
        ".ini",
        ".properties",
        ".toml",
        ".yaml",
        ".yml",
        ".sh",
        ".bash",
        ".zsh",
        ".envrc",
        ".service",
        ".json",
    }
)

# Candidate lines are found with fast C-level scans of the lower-cased bytes: ``bytes.find``
# for a few secret-word roots (then a regex anchored right after the root checks for an
# assignment), and one regex for quoted/assigned runs of base64/hex characters.
_ROOTS = (
    b"pass",
    b"pwd",
    b"secret",
    b"token",
    b"key",
    b"credential",
    b"contrase",
    b"bearer",
    b"basic",
)
_ASSIGN_AFTER_RE = re.compile(rb"[a-z0-9_.\-]{0,30}[\"'\]]{0,2}\s{0,4}(?::=|=>|[=:(]|!=)")
_HEADER_AFTER_RE = re.compile(rb"\s{1,4}[a-z0-9+/_\-]{20,}")
_RUN_RE = re.compile(rb"[\"'=:>]\s{0,4}[a-z0-9+/_\-.]{20,}")
_DIGIT_RE = re.compile(rb"[0-9]")
_KEYWORD_CONTEXT_RE = re.compile(
    r"(?:pass(?:wd|word|phrase)|[_.\-]pass\b|\bpass\s*=|pwd|secret|token|api_?key|apikey|auth"
    r"|access_?key"
    r"|priv(?:ate)?_?key|client_?key|credential|contrase|bearer|[_.\-]key\b|\bkey\s*[:=])"
)  # matched against lower-cased text
# Words that say a long string is a hash, an id or encoded data, not a secret.
_NOT_SECRET_CONTEXT_RE = re.compile(
    r"(?:sha-?(?:1|224|256|384|512)|md5|hash|digest|checksum|integrity|fingerprint|commit"
    r"|revision|\brev\b|etag|nonce|uuid|guid|\bid\b|_id\b|data:[a-z]+/[a-z0-9.+-]+;base64"
    r"|signature|\bsri\b|sourcemappingurl|public_?key|pubkey|certificate|\bcert\b"
    r"|next[_-]?(?:page[_-]?)?token|page[_-]?token|continuation[_-]?token|pagination[_-]?token"
    r"|starting[_-]?token|sync[_-]?token|\bmarker\b|cursor|-id\b)"
)  # matched against lower-cased text
# camelCase keys naming an id, ARN or name: "JobId", "DbClusterResourceId", "RoleArn"
_CAMEL_ID_RE = re.compile(r"[a-z](?:Id|ID|Ids|Arn|ARN|Name|Identifier|Sha|SHA|Hash|Digest)\b")
_QUOTED_TOKEN_RE = re.compile(r"([\"'`])([A-Za-z0-9+/=_\-][A-Za-z0-9+/=_\-.]{19,})\1")
_ASSIGNED_TOKEN_RE = re.compile(
    r"(?:[:=]|=>)\s*([A-Za-z0-9+/=_\-][A-Za-z0-9+/=_\-.]{19,})(?=\s*(?:$|[,;#)\]}]))"
)
_XML_TOKEN_RE = re.compile(r">\s*([A-Za-z0-9+/=_\-][A-Za-z0-9+/=_\-.]{19,})\s*</")
# A short vendor prefix in front of a hex secret: dop_v1_<hex>, shpat_<hex>
_PREFIXED_HEX_RE = re.compile(r"[A-Za-z]{2,12}[_\-.](?:v\d+[_\-.])?([0-9a-f]{32,})")
_AUTH_HEADER_TOKEN_RE = re.compile(r"\b(?:bearer|basic|token)\s+([A-Za-z0-9+/=_\-.~]{20,})", re.I)
# Base64 of well-known binary formats (PNG, JPEG, GIF, PDF, gzip, zip, XML, SVG, fonts...).
_ENCODED_DATA_PREFIXES = (
    "iVBORw0KG",
    "/9j/",
    "R0lGOD",
    "JVBERi0",
    "H4sI",
    "UEsDB",
    "PD94bWw",
    "PHN2Zy",
    "Qk0",
    "AAABAA",
    "d09GR",
    "d09GMg",
    "T2dnUw",
    "UklGR",
    "AAAAIGZ0eXA",
    "AAAAHGZ0eXA",
    "SUQz",
    # DER public keys (SubjectPublicKeyInfo: EC P-256/P-384/P-521, RSA, Ed25519, X25519)
    "MFkwEwYHKoZIzj0CAQ",
    "MHYwEAYHKoZIzj0CAQ",
    "MIGbMBAGByqGSM49AgE",
    "MIIBIjANBgkqhkiG9w0BAQEFAAOC",
    "MIICIjANBgkqhkiG9w0BAQEFAAOC",
    "MIIBojANBgkqhkiG9w0BAQEF",
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GN",
    "MCowBQYDK2VwAyEA",
    "MCowBQYDK2VuAyEA",
    "MEMwBQYDK2VxAzoA",
    # Itanium C++ mangled symbols
    "_ZN",
    "_ZT",
    "_ZS",
)
_MANGLED_RE = re.compile(r"^_(?:Z[NTSL]|D\d|R[A-Z])")  # C++ (Itanium), D and Rust v0 symbols
_CERT_MARKER = "AwIBAgI"  # X.509 "version [0] INTEGER 2" near the start of a base64 certificate


def _decodes_to_placeholder(token: str) -> bool:
    """Whether a base64 token decodes to readable text that is a placeholder (user:password)."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=False)
    except (binascii.Error, ValueError):
        return False
    if not raw or any(b < 0x20 or b > 0x7E for b in raw):
        return False
    text = raw.decode("ascii")
    if text.count(" ") >= 2:
        return True  # base64 of prose (documentation examples)
    return is_placeholder(text) or looks_like_identifier(text.replace(":", "_"))


_LONG_RUN_RE = re.compile(r"[A-Za-z0-9+/_\-]{20,}")


def _blank_random_run(m: re.Match[str]) -> str:
    """Blank out a long run that looks random (mixed case and digits), keep identifiers."""
    s = m.group()
    random_like = (
        any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)
    )
    return " " if random_like or len(s) >= 64 else s


_BARE_TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_\-.]{20,}")
_HEX = frozenset(string.hexdigits)
_WHITESPACE_RE = re.compile(r"\s")
_CODE_VALUE_RE = re.compile(
    r"^(?:none|null|nil|true|false|undefined|\w+\(.*\)?|[\w.]+\[.*\]?|self\.|this\.|os\.|"
    r"process\.env|env\.|settings\.|config\.|%\(|\{\{|\$\(|@|&|\*+$)",
    re.IGNORECASE,
)
# Published example values (RFC 6749 OAuth 2.0 examples) that documentation repeats.
_KNOWN_EXAMPLES = frozenset(
    {
        "2YotnFZFEjr1zCsicMWpAA",
        "tGzv3JOkF0XG5Qx2TlKWIA",
        "SplxlOBeZQQYbYS6WxSbIA",
        "czZCaGRSa3F0MzpnWDFmQmF0M2JW",
        "s6BhdRkqt3",
        "7Fjfp0ZBr1KtDRbnfVdmIw",
        "i1WsRn1uB1",
    }
)
_REGEX_VALUE_RE = re.compile(r"\[[^\]]*\][+*?{]|\\[dswDSWbB.]|\.\*|\(\?[:=!]|[+*]\$$")
_RESOURCE_NAME_RE = re.compile(r"^(?:a?arn:|[a-z]{2}(?:-gov)?-[a-z]+-\d:)")  # ARNs, region ids
_DATE_VALUE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}|$)")
_FILE_EXT_RE = re.compile(
    r"\.(?:html?|js|css|png|jpe?g|gif|svg|json|ya?ml|xml|txt|md|py|rb|go|java)$"
)

# Markers that make any value a placeholder / documentation example.
_PLACEHOLDER_RE = re.compile(
    r"(?:example|changeme|change_me|change-me|placeholder|redacted|your[_\-]?|"
    r"xxxx|\*\*\*|todo|fixme|replace|insert|enter[_\- ]|<|>|\$\{|\{\{|%s|"
    r"notreal|not[_\-]a[_\-]real|\.\.\.|^none$|^null$)",
    re.IGNORECASE,
)
# Words that make a value a placeholder only when little else is left: "dummy-value" and
# "test1234" are placeholders, "fake-yCbtDSEvMs7xfl4YmRPj" (a labelled fixture) is not.
_WEAK_PLACEHOLDER_RE = re.compile(
    r"(?:dummy|sample|default|test|fake|secret|password|passwd|token|mock|foo|bar|baz"
    r"|^abc|123456|qwerty|letmein|admin|hello|world|demo)",
    re.IGNORECASE,
)


def is_placeholder(value: str) -> bool:
    """Whether a secret value is an obvious placeholder, template or documentation example."""
    v = value.strip().strip("\"'`")
    if len(v) < 4 or is_templated_secret(v) or v.startswith("$") or v in _KNOWN_EXAMPLES:
        return True
    if len(set(v)) <= 2:
        return True  # "xxxxxxxx", "********", "00000000"
    if _PLACEHOLDER_RE.search(v):
        return True
    if not _WEAK_PLACEHOLDER_RE.search(v):
        return False
    rest = _WEAK_PLACEHOLDER_RE.sub("", v).strip("-_.:/ ")
    return len(rest) < 12 or _random_score(rest) < 3.3


def _random_score(s: str) -> float:
    """Shannon entropy in bits per character (how random a leftover string looks)."""
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


_SEGMENT_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def looks_like_identifier(s: str) -> bool:
    """Whether a string reads as words (CamelCase, snake_case, kebab-case), not random data."""
    segments = _SEGMENT_RE.findall(s)
    letters = [seg for seg in segments if not seg.isdigit()]
    if not letters or len(segments) - len(letters) > 2:
        return False
    return sum(len(seg) for seg in letters) / len(letters) >= 4.0


_PART_SPLIT_RE = re.compile(r"[-_]+")


def _is_hyphenated_name(s: str) -> bool:
    """``Infra-ECS-Cluster-x-3fIpdk``: a generated resource name, made mostly of words."""
    parts = [p for p in _PART_SPLIT_RE.split(s) if p]
    if len(parts) < 4:
        return False
    wordy = [p for p in parts if (p.isalpha() and len(p) >= 3) or looks_like_identifier(p)]
    others = [p for p in parts if p not in wordy]
    return len(wordy) * 2 >= len(parts) and all(len(p) <= 12 for p in others)


def _char_classes(s: str) -> int:
    return (
        any(c.islower() for c in s)
        + any(c.isupper() for c in s)
        + any(c.isdigit() for c in s)
        + any(not c.isalnum() for c in s)
    )


def _skip_file(path: str) -> bool:
    base = posixpath.basename(path.rsplit("!", 1)[-1])
    if base in _SKIP_BASENAMES:
        return True
    lower = base.lower()
    return lower.endswith(_SKIP_SUFFIXES)


def _keyword_regexes(path: str) -> dict[re.Pattern[str], int]:
    base = posixpath.basename(path.rsplit("!", 1)[-1]).lower()
    ext = posixpath.splitext(base)[1]
    if base.startswith(".env") or base.endswith(".env") or ext in _CONFIG_EXTS or "." not in base:
        return CONFIG_DENYLIST_REGEX_TO_GROUP
    ftype = determine_file_type(base)
    if ftype == FileType.OTHER:
        return QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
    return REGEX_BY_FILETYPE.get(ftype, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def _candidate_positions(low: bytes) -> list[int]:
    """Offsets in the lower-cased text where a candidate match starts."""
    found: list[int] = []
    for root in _ROOTS:
        n = len(root)
        after = _HEADER_AFTER_RE if root in (b"bearer", b"basic") else _ASSIGN_AFTER_RE
        i = low.find(root)
        while i >= 0:
            # a bare "key" counts only as part of a name: api_key, STRIPE_KEY, apikey, x.key
            named = (
                root != b"key" or low[i - 1 : i] in (b"_", b"-", b".") or (low[i - 3 : i] == b"api")
            )
            if named and (
                after.match(low, i + n) or (root == b"token" and _HEADER_AFTER_RE.match(low, i + n))
            ):
                found.append(i)
            i = low.find(root, i + n)
    for m in _RUN_RE.finditer(low):
        if _DIGIT_RE.search(m.group()):
            found.append(m.start())
    found.sort()
    return found


def _candidate_lines(data: bytes, max_len: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, line) for each distinct line holding a candidate match."""
    last_end = -1
    for pos in _candidate_positions(data.lower()):
        if pos < last_end:
            continue
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        last_end = end
        if end - start > max_len:
            continue
        yield start, data[start:end]


class EntropyDetector:
    """Reports high-entropy base64/hex strings and secret-keyword assignments in text files."""

    name = "entropy"
    text_only = True

    def __init__(self, options: EntropyOptions | None = None) -> None:
        self.options = options or EntropyOptions()
        self._b64 = Base64HighEntropyString(limit=self.options.base64_limit)
        self._hex = HexHighEntropyString(limit=self.options.hex_limit)
        self._keyword = KeywordDetector()

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """Yield entropy/keyword hits in the candidate lines of a text file."""
        if _skip_file(ctx.path) or is_binary(data[:8192]):
            return
        regexes = _keyword_regexes(ctx.path)
        for line_off, raw in _candidate_lines(data, self.options.max_line_len):
            line = raw.decode("utf-8", "replace")
            yield from self._scan_line(line, raw, line_off, regexes)

    def scan_strings(self, ctx: FileContext, text: bytes, neighbours: int = 2) -> Iterator[Hit]:
        """Scan the strings of a compiled file, one per line (e.g. a .pyc's constants).

        Besides the usual candidate lines, a run that is one bare high-entropy token is
        reported when a secret-sounding name sits within ``neighbours`` runs of it (a
        .pyc keeps ``SECRET_KEY`` and its value as separate constants).
        """
        regexes = _keyword_regexes(ctx.path)
        reported: set[str] = set()
        for line_off, raw in _candidate_lines(text, self.options.max_line_len):
            for hit in self._scan_line(raw.decode("utf-8", "replace"), raw, line_off, regexes):
                reported.add(hit.secret)
                yield hit
        runs = text.split(b"\n")
        offsets = []
        pos = 0
        for run in runs:
            offsets.append(pos)
            pos += len(run) + 1
        for i, run in enumerate(runs):
            if not self.options.min_bare_len <= len(run) <= self.options.max_line_len:
                continue
            m = _BARE_TOKEN_RE.search(run.decode("ascii", "replace"))
            if m is None:
                continue
            token = m.group()
            if len(token) < self.options.min_bare_len or token in reported:
                continue
            near = b" ".join(
                r
                for r in runs[max(0, i - neighbours) : i] + runs[i + 1 : i + 1 + neighbours]
                if not r.startswith((b"/", b"<"))  # source paths, <module>: not names
            )
            context = near.decode("ascii", "replace")
            low = context.lower()
            if not _KEYWORD_CONTEXT_RE.search(low):
                continue
            hashy = bool(_NOT_SECRET_CONTEXT_RE.search(low) or _CAMEL_ID_RE.search(context))
            found = self._entropy_hit(token, token, run, offsets[i], True, hashy)
            if found is not None:
                reported.add(token)
                yield found

    def scan_text(self, text: str, path: str = "") -> list[Hit]:
        """Scan one string (e.g. an image config value); offsets are into its UTF-8 bytes."""
        raw = text.encode("utf-8", "surrogateescape")
        out: list[Hit] = []
        for line_off, line in _candidate_lines(raw, self.options.max_line_len):
            out.extend(
                self._scan_line(
                    line.decode("utf-8", "replace"), line, line_off, _keyword_regexes(path)
                )
            )
        return out

    # -- per line -----------------------------------------------------------------------------

    def _scan_line(
        self, line: str, raw: bytes, line_off: int, regexes: dict[re.Pattern[str], int]
    ) -> Iterator[Hit]:
        reported: set[str] = set()
        # Context words count only outside long runs (random data spells words by chance).
        outside = _LONG_RUN_RE.sub(_blank_random_run, line)
        low = outside.lower()
        keyword_ctx = _KEYWORD_CONTEXT_RE.search(low) is not None
        hashy = (
            _NOT_SECRET_CONTEXT_RE.search(low) is not None
            or _CAMEL_ID_RE.search(outside) is not None
        )
        if keyword_ctx and not is_indirect_reference(line):
            for value in self._keyword.analyze_string(line, denylist_regex_to_group=regexes):
                if value.strip().strip("\"'`") in reported:
                    continue
                hit = self._keyword_hit(value, line, raw, line_off, hashy)
                if hit is not None:
                    reported.add(hit.secret)
                    yield hit
        for token in self._tokens(line):
            if token in reported:
                continue
            hit = self._entropy_hit(token, line, raw, line_off, keyword_ctx, hashy)
            if hit is not None:
                reported.add(token)
                yield hit

    def _tokens(self, line: str) -> Iterator[str]:
        seen: set[str] = set()
        for tok in self._b64.analyze_string(line):  # quoted strings in the plugin's charset
            if tok not in seen:
                seen.add(tok)
                yield tok
        for m in _QUOTED_TOKEN_RE.finditer(line):
            if m.group(2) not in seen:
                seen.add(m.group(2))
                yield m.group(2)
        for rx in (_ASSIGNED_TOKEN_RE, _AUTH_HEADER_TOKEN_RE, _XML_TOKEN_RE):
            for m in rx.finditer(line):
                if m.group(1) not in seen:
                    seen.add(m.group(1))
                    yield m.group(1)

    def _offset(self, raw: bytes, line_off: int, value: str) -> int:
        idx = raw.find(value.encode("utf-8", "surrogateescape"))
        return line_off + max(idx, 0)

    def _keyword_hit(
        self, value: str, line: str, raw: bytes, line_off: int, hashy: bool
    ) -> Hit | None:
        v = value.strip().strip("\"'`")
        opts = self.options
        if looks_like_identifier(v) and not any(c.isdigit() for c in v):
            return None  # apiKeySource, not_supported: a name, not a value
        if len(v) >= 12 and _decodes_to_placeholder(v):
            return None  # base64 of "user:password" in documentation
        if (
            len(v) < opts.min_keyword_value_len
            or _WHITESPACE_RE.search(v)
            or is_placeholder(v)
            or _CODE_VALUE_RE.search(v)
            or v.startswith(("/", "./", "~/", "http://", "https://", "file:"))
            or not any(c.isalpha() for c in v)
            or is_potential_uuid(v)
            or _REGEX_VALUE_RE.search(v)
            or _DATE_VALUE_RE.match(v)
            or _RESOURCE_NAME_RE.match(v)
            or v.count(":") >= 3
            or v.endswith(".")
            or ",proto3" in v
            or ",opt," in v
        ):
            return None
        if all(c in _HEX for c in v) and (hashy or len(v) < 32):
            return None  # short hex values are ids/hashes; long ones need a non-hash context
        if hashy and v.startswith(("$2", "$1$", "$5$", "$6$")):
            return None
        entropy = self._b64.calculate_shannon_entropy(v)
        if entropy < 2.0:
            return None
        strong = len(v) >= 10 and entropy >= 3.0 and _char_classes(v) >= 2
        return Hit(
            rule="keyword-secret",
            title="Secret assigned to a secret-sounding name",
            severity=Severity.MEDIUM if strong else Severity.LOW,
            secret=v,
            offset=self._offset(raw, line_off, v),
            message="A value is assigned to a password/secret/key variable",
            extra={"entropy": round(entropy, 2)},
        )

    def _entropy_hit(
        self, token: str, line: str, raw: bytes, line_off: int, keyword_ctx: bool, hashy: bool
    ) -> Hit | None:
        opts = self.options
        tok = token.rstrip("=").strip(".")
        if tok.startswith("eyJ") and tok.count(".") == 2:
            return None  # a JWT: the pattern rules decode and validate those
        if tok.count(".") >= 1 and not keyword_ctx:
            return None  # dotted names (hosts, packages, versions) need a secret word nearby
        if is_potential_uuid(token) or is_sequential_string(token) or is_placeholder(token):
            return None
        idx = line.find(token)
        before = line[max(0, idx - 12) : idx].lower()
        if "base64," in before or re.search(r"sha(?:256|384|512)-$", before):
            return None  # data: URI payload, SRI integrity value
        if _CERT_MARKER in token[:24] or _decodes_to_placeholder(tok):
            return None
        if (
            token.startswith(_ENCODED_DATA_PREFIXES)
            or _MANGLED_RE.match(tok)
            or looks_like_identifier(tok)
            or _is_hyphenated_name(tok)
        ):
            return None  # base64 of an image, font, archive or document
        prefixed = _PREFIXED_HEX_RE.fullmatch(tok)
        if all(c in _HEX for c in tok) or prefixed:
            hex_part = prefixed.group(1) if prefixed else tok
            if len(hex_part) < opts.min_hex_len or not keyword_ctx or hashy:
                return None  # hex with no secret word nearby is a hash or an id
            entropy = self._hex.calculate_shannon_entropy(hex_part)
            if entropy <= opts.hex_limit:
                return None
            return Hit(
                rule="entropy-hex",
                title="High-entropy hex string",
                severity=Severity.MEDIUM,
                secret=token,
                offset=self._offset(raw, line_off, token),
                message="A random-looking hex string is assigned to a secret-sounding name",
                extra={"entropy": round(entropy, 2)},
            )
        if len(tok) < opts.min_base64_len or hashy:
            return None
        mixed_case = any(c.isupper() for c in tok) and any(c.islower() for c in tok)
        if not mixed_case or not (keyword_ctx or any(c.isdigit() for c in tok)):
            return None  # identifiers, words-with-dashes, lower-case slugs
        if (tok.count("/") >= 2 and re.search(r"/[a-z]{3,}/", tok)) or (
            tok.startswith("/") or _FILE_EXT_RE.search(tok)
        ):
            return None  # a path or URL fragment
        entropy = self._b64.calculate_shannon_entropy(tok)
        # Short strings cannot reach the limit (log2(len) caps entropy); scale it.
        limit = min(opts.base64_limit, math.log2(len(tok)) - 0.7)
        if entropy <= limit:
            return None
        if not keyword_ctx:
            if not opts.bare_base64 or len(tok) < opts.min_bare_len:
                return None
            if entropy <= opts.base64_limit:
                return None
        return Hit(
            rule="entropy-base64",
            title="High-entropy base64 string",
            severity=Severity.MEDIUM if keyword_ctx else Severity.LOW,
            secret=token,
            offset=self._offset(raw, line_off, token),
            message="A random-looking base64 string"
            + (" near a secret-sounding name" if keyword_ctx else ""),
            extra={"entropy": round(entropy, 2)},
        )
