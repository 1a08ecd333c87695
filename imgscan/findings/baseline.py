"""Baselines: accepted findings recorded by fingerprint, with a reason and an optional expiry."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imgscan.errors import ConfigError
from imgscan.model import Finding, ScanResult
from imgscan.userfile import read_bounded

BASELINE_VERSION = 1
DEFAULT_REASON = "accepted in baseline"
_FP_RE = re.compile(r"^[0-9a-f]{8,64}$")
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    """One accepted finding: its fingerprint, why it is accepted and until when."""

    fingerprint: str
    reason: str
    expires: dt.date | None = None
    rule: str | None = None
    where: str | None = None  # path or config location, for humans reading the file
    added: dt.date | None = None

    def active(self, today: dt.date) -> bool:
        """True while the entry still suppresses (no expiry, or expiry not yet passed)."""
        return self.expires is None or today <= self.expires


@dataclass(frozen=True, slots=True)
class Baseline:
    """A versioned set of accepted findings keyed by fingerprint."""

    entries: Mapping[str, BaselineEntry] = field(default_factory=dict)
    image: str | None = None
    version: int = BASELINE_VERSION

    def suppressions(self, today: dt.date | None = None) -> dict[str, str]:
        """fingerprint -> reason for every entry that has not expired."""
        day = today or dt.date.today()
        return {fp: e.reason for fp, e in self.entries.items() if e.active(day)}

    def expired(self, today: dt.date | None = None) -> tuple[BaselineEntry, ...]:
        """Entries whose expiry date has passed; they no longer suppress anything."""
        day = today or dt.date.today()
        return tuple(e for e in self.entries.values() if not e.active(day))


def _where(f: Finding) -> str | None:
    return f.path or f.location


def _entry_for(f: Finding, reason: str, expires: dt.date | None, today: dt.date) -> BaselineEntry:
    return BaselineEntry(f.fingerprint, reason, expires, f.rule, _where(f), today)


def _check_reason(reason: str) -> str:
    r = reason.strip()
    if not r:
        raise ConfigError("baseline: --reason must not be empty")
    return r


def create_baseline(
    result: ScanResult,
    *,
    reason: str = DEFAULT_REASON,
    expires: dt.date | None = None,
    today: dt.date | None = None,
) -> Baseline:
    """A baseline that accepts every finding of ``result`` with one reason and expiry."""
    day = today or dt.date.today()
    r = _check_reason(reason)
    entries: dict[str, BaselineEntry] = {}
    for f in result.findings:
        entries.setdefault(f.fingerprint, _entry_for(f, r, expires, day))
    return Baseline(dict(sorted(entries.items())), image=result.image.reference)


def update_baseline(
    baseline: Baseline,
    result: ScanResult,
    *,
    reason: str = DEFAULT_REASON,
    expires: dt.date | None = None,
    today: dt.date | None = None,
    prune: bool = True,
) -> Baseline:
    """Accept every finding of ``result``: active entries keep their reason, new or expired
    ones get ``reason``/``expires``; entries no longer found are dropped unless ``prune`` is off.
    """
    day = today or dt.date.today()
    r = _check_reason(reason)
    entries: dict[str, BaselineEntry] = {} if prune else dict(baseline.entries)
    for f in result.findings:
        if f.fingerprint in entries and entries[f.fingerprint].active(day):
            continue
        old = baseline.entries.get(f.fingerprint)
        if old is not None and old.active(day):
            entries[f.fingerprint] = old
        else:
            entries[f.fingerprint] = _entry_for(f, r, expires, day)
    return Baseline(dict(sorted(entries.items())), image=result.image.reference or baseline.image)


def baseline_to_dict(baseline: Baseline) -> dict[str, Any]:
    """The JSON form of a baseline (stable key order, entries sorted by fingerprint)."""
    entries = []
    for fp in sorted(baseline.entries):
        e = baseline.entries[fp]
        entries.append(
            {
                "fingerprint": e.fingerprint,
                "rule": e.rule,
                "where": e.where,
                "reason": e.reason,
                "expires": e.expires.isoformat() if e.expires else None,
                "added": e.added.isoformat() if e.added else None,
            }
        )
    return {"imgscan_baseline": baseline.version, "image": baseline.image, "entries": entries}


def write_baseline(baseline: Baseline, path: str | os.PathLike[str]) -> None:
    """Write ``baseline`` as JSON to ``path`` (atomically replacing an existing file)."""
    text = json.dumps(baseline_to_dict(baseline), indent=2, ensure_ascii=False) + "\n"
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"baseline {os.fspath(path)}: cannot write ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_date(value: object, what: str) -> dt.date | None:
    """An ISO date (YYYY-MM-DD) or None; anything else is a ConfigError naming ``what``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what}: expected a date YYYY-MM-DD, got {value!r}")


def _opt_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{what}: {key!r} must be a string")
    return v


def baseline_from_dict(data: object, what: str) -> Baseline:
    """Validate and build a Baseline from its JSON form; errors name ``what``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what}: not a baseline (expected a JSON object)")
    version = data.get("imgscan_baseline")
    if version != BASELINE_VERSION:
        raise ConfigError(
            f"{what}: unsupported baseline version {version!r} (expected {BASELINE_VERSION})"
        )
    unknown = set(data) - {"imgscan_baseline", "image", "entries"}
    if unknown:
        raise ConfigError(f"{what}: unknown key {sorted(unknown)[0]!r}")
    raw = data.get("entries")
    if not isinstance(raw, list):
        raise ConfigError(f"{what}: 'entries' must be a list")
    entries: dict[str, BaselineEntry] = {}
    keys = {"fingerprint", "rule", "where", "reason", "expires", "added"}
    for i, item in enumerate(raw):
        w = f"{what}: entries[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{w}: expected an object")
        extra = set(item) - keys
        if extra:
            raise ConfigError(f"{w}: unknown key {sorted(extra)[0]!r}")
        fp = item.get("fingerprint")
        if not isinstance(fp, str) or not _FP_RE.match(fp):
            raise ConfigError(f"{w}: 'fingerprint' must be a lowercase hex string")
        reason = item.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{w}: 'reason' must be a non-empty string")
        if fp in entries:
            raise ConfigError(f"{w}: duplicate fingerprint {fp}")
        entries[fp] = BaselineEntry(
            fingerprint=fp,
            reason=reason.strip(),
            expires=parse_date(item.get("expires"), f"{w}: 'expires'"),
            rule=_opt_str(item, "rule", w),
            where=_opt_str(item, "where", w),
            added=parse_date(item.get("added"), f"{w}: 'added'"),
        )
    image = _opt_str(data, "image", what)
    return Baseline(entries, image=image)


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read and validate a baseline file; any problem is a one-line ConfigError."""
    what = f"baseline {os.fspath(path)}"
    raw = read_bounded(path, _MAX_BYTES, what)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: malformed JSON ({exc})") from None
    return baseline_from_dict(data, what)


def suppressed_fingerprints(
    findings: Iterable[Finding], suppressions: Mapping[str, str]
) -> dict[str, str]:
    """The subset of ``suppressions`` that matches one of ``findings``."""
    present = {f.fingerprint for f in findings}
    return {fp: r for fp, r in suppressions.items() if fp in present}
