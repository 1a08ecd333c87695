"""Secrets in the image config: ``Env``, ``Labels`` and every history ``created_by``.

Anyone who can pull an image can read its config, so a token passed as a build
ARG (``RUN |1 NPM_TOKEN=... /bin/sh -c ...``), baked into ``ENV``, or sent in a
curl header during the build is leaked even if no layer holds it. The analyzer
runs the given content detectors over each value and adds its own heuristics
for env names, build-arg prefixes, auth headers, password flags and URLs with
credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from imgscan.detect.base import ContentDetector, FileContext, Hit, ImageContext
from imgscan.detect.credfiles import env_value_is_secret
from imgscan.detect.entropy import is_placeholder
from imgscan.findings.fingerprint import fingerprint, redact, secret_digest
from imgscan.model import Category, Finding, Severity

_ARG_PREFIX_RE = re.compile(r"^(?:RUN\s+)?\|(\d+)\s+")  # classic and BuildKit forms
# one NAME=value word of a "|N" build-arg prefix (values quoted the way the builder quotes)
_ARG_WORD_RE = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]{0,255})=(\"(?:[^\"\\]|\\.){0,4096}\"|'[^']{0,4096}'|\S{0,4096})"
)
_AUTH_HEADER_RE = re.compile(
    r"(?:Authorization|Proxy-Authorization)\s*:\s*(?:Bearer|Token|Basic)\s+([^\s\"']{8,})"
    r"|(?:X-[A-Za-z-]{0,40}(?:Token|Key|Secret|Auth)[A-Za-z-]{0,40}|PRIVATE-TOKEN|JOB-TOKEN)\s*:\s*"
    r"([^\s\"']{8,})",
    re.IGNORECASE,
)
_PASSWORD_FLAG_RE = re.compile(
    r"(?:^|\s)(?:--(?:password|passwd|pass|token|secret|api-key|apikey|auth-token|access-token"
    r"|client-secret)|-p)(?:=|\s+)(\"[^\"]+\"|'[^']+'|[^\s;&|]+)",
    re.IGNORECASE,
)
_CURL_USER_RE = re.compile(r"(?:^|\s)(?:-u|--user)(?:=|\s+)[\"']?([^\s:\"']+):([^\s\"'@]+)")
_URL_CRED_RE = re.compile(
    r"\b[a-z][a-z0-9+.\-]{0,30}://([^:/@\s\"']{1,256}):([^@\s\"'/]{1,512})@", re.IGNORECASE
)
_ENV_ASSIGN_RE = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&|]+)")
_DOCKER_LOGIN_RE = re.compile(r"\blogin\b")

_TITLES = {
    "config-env-secret": ("Secret in image environment", Severity.HIGH),
    "config-label-secret": ("Secret in image label", Severity.HIGH),
    "config-build-arg-secret": ("Build argument secret leaked in history", Severity.HIGH),
    "config-auth-header": ("Authorization header in build history", Severity.HIGH),
    "config-password-flag": ("Password passed on a build command line", Severity.HIGH),
    "config-url-credentials": ("Credentials in a URL in the image config", Severity.HIGH),
}


def history_layers(config: Mapping[str, Any], n_layers: int) -> list[int | None]:
    """For each history entry, the layer it made (None for empty_layer or unmatched entries).

    Mirrors ``imgscan.sources.common.history_for_layers``: a one-to-one match when
    the counts agree, otherwise aligned from the newest entry.
    """
    hist = config.get("history")
    if not isinstance(hist, list):
        return []
    out: list[int | None] = [None] * len(hist)
    non_empty = [
        i for i, h in enumerate(hist) if isinstance(h, Mapping) and not h.get("empty_layer")
    ]
    if len(non_empty) == n_layers:
        for layer, i in enumerate(non_empty):
            out[i] = layer
        return out
    for k in range(1, min(n_layers, len(non_empty)) + 1):
        out[non_empty[-k]] = n_layers - k
    return out


def _is_arg(text: str, pos: int) -> bool:
    """Whether the assignment at ``pos`` belongs to an ARG instruction or a ``|N`` arg prefix."""
    head = text[:pos]
    return bool(re.search(r"(?:^|\s)ARG\s", head) or _ARG_PREFIX_RE.match(text))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


class ConfigSecretsAnalyzer:
    """Finds secrets in the config's Env, Labels and history (an ``ImageAnalyzer``)."""

    name = "config-secrets"

    def __init__(self, detectors: Sequence[ContentDetector] = (), show_secrets: bool = False):
        self.detectors = list(detectors)
        self.show_secrets = show_secrets

    def analyze(self, ctx: ImageContext) -> Iterable[Finding]:
        """Yield one finding per secret per config location."""
        config = ctx.image.config or {}
        inner = config.get("config")
        if not isinstance(inner, Mapping):
            inner = config.get("container_config")
        if isinstance(inner, Mapping):
            env = inner.get("Env")
            if isinstance(env, list):
                for item in env:
                    if isinstance(item, str):
                        yield from self._scan_value("config.Env", item, None, env_entry=True)
            labels = inner.get("Labels")
            if isinstance(labels, Mapping):
                for key, value in labels.items():
                    if isinstance(value, str):
                        yield from self._scan_value(
                            "config.Labels", f"{key}={value}", None, label=True
                        )
        hist = config.get("history")
        if isinstance(hist, list):
            layers = history_layers(config, len(ctx.image.layers))
            for i, entry in enumerate(hist):
                if not isinstance(entry, Mapping):
                    continue
                created_by = entry.get("created_by")
                if isinstance(created_by, str) and created_by:
                    layer = layers[i] if i < len(layers) else None
                    yield from self._scan_value(f"history[{i}].created_by", created_by, layer)

    # -- per value ----------------------------------------------------------------------------

    def _scan_value(
        self,
        location: str,
        text: str,
        layer: int | None,
        *,
        env_entry: bool = False,
        label: bool = False,
    ) -> Iterator[Finding]:
        seen: set[str] = set()
        for rule, secret, message, severity in self._heuristics(text, env_entry, label):
            if secret in seen:
                continue
            seen.add(secret)
            yield self._finding(location, layer, rule, _TITLES[rule][0], severity, secret, message)
        data = text.encode("utf-8", "surrogateescape")
        fctx = FileContext(path=location, layer=layer if layer is not None else -1, size=len(data))
        for det in self.detectors:
            for hit in det.scan(fctx, data):
                if hit.secret in seen:
                    continue
                seen.add(hit.secret)
                yield self._from_hit(location, layer, hit)

    def _heuristics(
        self, text: str, env_entry: bool, label: bool
    ) -> Iterator[tuple[str, str, str, Severity]]:
        if env_entry or label:
            name, sep, value = text.partition("=")
            if sep and env_value_is_secret(name, value):
                rule = "config-env-secret" if env_entry else "config-label-secret"
                url = _URL_CRED_RE.search(value)
                yield rule, url.group(2) if url else value, f"{name} holds a secret", Severity.HIGH
            for m in _URL_CRED_RE.finditer(value if sep else text):
                if not is_placeholder(m.group(2)):
                    yield (
                        "config-url-credentials",
                        m.group(2),
                        f"URL with password for {m.group(1)}",
                        Severity.HIGH,
                    )
            return
        yield from self._history_heuristics(text)

    def _history_heuristics(self, text: str) -> Iterator[tuple[str, str, str, Severity]]:
        # Build args: "|2 NPM_TOKEN=abc VERSION=1 /bin/sh -c ..."
        m = _ARG_PREFIX_RE.match(text)
        if m:
            pos = m.end()
            for _ in range(min(int(m.group(1)), 256)):
                wm = _ARG_WORD_RE.match(text, pos)
                if wm is None:
                    break
                pos = wm.end()
                name, value = wm.group(1), _unquote(wm.group(2))
                if env_value_is_secret(name, value):
                    yield (
                        "config-build-arg-secret",
                        value,
                        f"build argument {name} is recorded in the image history",
                        Severity.HIGH,
                    )
        # ENV/ARG instructions recorded as "#(nop) ENV NAME=value" and plain assignments.
        for am in _ENV_ASSIGN_RE.finditer(text):
            name, value = am.group(1), _unquote(am.group(2))
            if env_value_is_secret(name, value):
                yield (
                    "config-build-arg-secret"
                    if _is_arg(text, am.start(1))
                    else "config-env-secret",
                    value,
                    f"{name} is set in the build history",
                    Severity.HIGH,
                )
        for hm in _AUTH_HEADER_RE.finditer(text):
            value = hm.group(1) or hm.group(2)
            if not is_placeholder(value):
                yield (
                    "config-auth-header",
                    value,
                    "HTTP auth header sent during the build",
                    Severity.HIGH,
                )
        for pm in _PASSWORD_FLAG_RE.finditer(text):
            value = _unquote(pm.group(1))
            flag = pm.group(0).strip()
            if flag.startswith("-p") and not _DOCKER_LOGIN_RE.search(text):
                continue  # "-p" means a password only for "... login -p"
            if len(value) >= 6 and not is_placeholder(value) and not value.startswith("-"):
                yield (
                    "config-password-flag",
                    value,
                    "password/token passed as a flag",
                    Severity.HIGH,
                )
        for cm in _CURL_USER_RE.finditer(text):
            if not is_placeholder(cm.group(2)):
                yield (
                    "config-password-flag",
                    cm.group(2),
                    f"curl credentials for {cm.group(1)}",
                    Severity.HIGH,
                )
        for um in _URL_CRED_RE.finditer(text):
            if not is_placeholder(um.group(2)):
                yield (
                    "config-url-credentials",
                    um.group(2),
                    f"URL with password for {um.group(1)}",
                    Severity.HIGH,
                )

    # -- findings -----------------------------------------------------------------------------

    def _finding(
        self,
        location: str,
        layer: int | None,
        rule: str,
        title: str,
        severity: Severity,
        secret: str,
        message: str,
        validated: bool | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Finding:
        digest = secret_digest(secret)
        return Finding(
            category=Category.SECRET,
            rule=rule,
            title=title,
            severity=severity,
            message=message,
            fingerprint=fingerprint(rule, location, digest),
            layer=layer,
            location=location,
            redacted=redact(secret),
            secret_sha256=digest,
            validated=validated,
            secret=secret if self.show_secrets else None,
            extra=dict(extra or {}),
        )

    def _from_hit(self, location: str, layer: int | None, hit: Hit) -> Finding:
        return self._finding(
            location,
            layer,
            hit.rule,
            hit.title,
            hit.severity,
            hit.secret,
            hit.message or hit.title,
            hit.validated,
            hit.extra,
        )
