"""Project defaults from ``.imgscan.toml`` or ``[tool.imgscan]`` in ``pyproject.toml``.

Layout (the same keys under ``[tool.imgscan]`` in pyproject.toml)::

    baseline = ".imgscan-baseline.json"
    rule_dirs = ["ci/imgscan-rules"]
    disabled_rules = ["generic-high-entropy"]

    [policy]
    fail_on = "high"
    fail_on_state = ["present", "deleted", "overwritten"]
    categories = ["secret", "config", "file"]

    [severity]            # per-rule overrides
    "aws-access-key" = "critical"

    [[allow]]             # path allowlist; a reason is required
    path = "/usr/share/doc/**"
    reason = "upstream docs ship example keys"
    rules = ["generic-api-key"]   # optional: only these rules
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgscan.errors import ConfigError
from imgscan.findings.baseline import Baseline, load_baseline, suppressed_fingerprints
from imgscan.gate import Policy, parse_categories, parse_severity, parse_states
from imgscan.model import Finding, ScanResult, Severity
from imgscan.userfile import read_bounded

CONFIG_NAME = ".imgscan.toml"
PYPROJECT = "pyproject.toml"
_MAX_BYTES = 4 * 1024 * 1024
_RULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


@dataclass(frozen=True, slots=True)
class PathAllow:
    """Findings whose path (or config location) matches ``pattern`` are suppressed."""

    pattern: str
    reason: str
    rules: frozenset[str] | None = None  # None: every rule
    regex: re.Pattern[str] = field(default=re.compile(r"(?!)"), compare=False, repr=False)

    def matches(self, finding: Finding) -> bool:
        """Whether this entry suppresses ``finding``."""
        if self.rules is not None and finding.rule not in self.rules:
            return False
        where = finding.path or finding.location
        return where is not None and self.regex.fullmatch(where) is not None


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a config file can set; the defaults are those of a missing file."""

    source: str | None = None
    policy: Policy = field(default_factory=Policy)
    baseline: str | None = None
    rule_dirs: tuple[str, ...] = ()
    disabled_rules: frozenset[str] = frozenset()
    severity: Mapping[str, Severity] = field(default_factory=dict)
    allow: tuple[PathAllow, ...] = ()

    def with_overrides(
        self,
        *,
        fail_on: str | None = None,
        fail_on_state: str | Iterable[str] | None = None,
        categories: str | Iterable[str] | None = None,
        baseline: str | None = None,
    ) -> Config:
        """This config with command-line values (when given) taking precedence."""
        pol = self.policy
        if fail_on is not None:
            pol = dataclasses.replace(pol, fail_on=parse_severity(fail_on, "--fail-on"))
        if fail_on_state is not None:
            states = parse_states(fail_on_state, "--fail-on-state")
            pol = dataclasses.replace(pol, fail_on_state=states)
        if categories is not None:
            cats = parse_categories(categories, "--category")
            pol = dataclasses.replace(pol, categories=cats)
        return dataclasses.replace(
            self, policy=pol, baseline=baseline if baseline is not None else self.baseline
        )


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``**`` spans directories, ``*`` and ``?`` stay within one.

    A pattern without a leading ``/`` matches at any depth.
    """
    pat = pattern if pattern.startswith("/") else "**/" + pattern
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    regex = "".join(out)
    if not pattern.startswith("/"):
        regex = "/?" + regex
    return re.compile(regex, re.DOTALL)


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{what}: expected a list of non-empty strings")
    return list(value)


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Raise a ConfigError naming the first key of ``table`` that is not ``allowed``."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        choices = ", ".join(sorted(allowed))
        raise ConfigError(f"{what}: unknown key {unknown[0]!r} (allowed: {choices})")


def _table(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: expected a table")
    return value


def _policy(table: Mapping[str, Any], what: str) -> Policy:
    check_keys(table, ("fail_on", "fail_on_state", "categories"), what)
    pol = Policy()
    if "fail_on" in table:
        pol = dataclasses.replace(
            pol, fail_on=parse_severity(table["fail_on"], f"{what}: 'fail_on'")
        )
    if "fail_on_state" in table:
        v = table["fail_on_state"]
        w = f"{what}: 'fail_on_state'"
        states = parse_states(v if isinstance(v, str) else _str_list(v, w), w)
        pol = dataclasses.replace(pol, fail_on_state=states)
    if "categories" in table:
        v = table["categories"]
        w = f"{what}: 'categories'"
        cats = parse_categories(v if isinstance(v, str) else _str_list(v, w), w)
        pol = dataclasses.replace(pol, categories=cats)
    return pol


def _allow(items: object, what: str) -> tuple[PathAllow, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{what}: expected an array of tables ([[allow]])")
    out = []
    for i, item in enumerate(items):
        w = f"{what}[{i}]"
        t = _table(item, w)
        check_keys(t, ("path", "reason", "rules"), w)
        path, reason = t.get("path"), t.get("reason")
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"{w}: 'path' must be a non-empty glob string")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{w}: 'reason' is required (say why the path is allowed)")
        rules = None
        if "rules" in t:
            rules = frozenset(_str_list(t["rules"], f"{w}: 'rules'"))
        out.append(PathAllow(path, reason.strip(), rules, glob_to_regex(path)))
    return tuple(out)


def config_from_mapping(data: Mapping[str, Any], source: str, base_dir: Path) -> Config:
    """Validate a parsed config table; errors name ``source`` and the key."""
    keys = ("policy", "baseline", "rule_dirs", "disabled_rules", "severity", "allow")
    check_keys(data, keys, source)
    cfg = Config(source=source)
    if "policy" in data:
        cfg = dataclasses.replace(
            cfg, policy=_policy(_table(data["policy"], f"{source}: [policy]"), f"{source} [policy]")
        )
    if "baseline" in data:
        b = data["baseline"]
        if not isinstance(b, str) or not b:
            raise ConfigError(f"{source}: 'baseline' must be a file path")
        cfg = dataclasses.replace(cfg, baseline=str(base_dir / b))
    if "rule_dirs" in data:
        dirs = _str_list(data["rule_dirs"], f"{source}: 'rule_dirs'")
        cfg = dataclasses.replace(cfg, rule_dirs=tuple(str(base_dir / d) for d in dirs))
    if "disabled_rules" in data:
        ids = _str_list(data["disabled_rules"], f"{source}: 'disabled_rules'")
        for rid in ids:
            if not _RULE_ID_RE.match(rid):
                raise ConfigError(f"{source}: 'disabled_rules': bad rule id {rid!r}")
        cfg = dataclasses.replace(cfg, disabled_rules=frozenset(ids))
    if "severity" in data:
        table = _table(data["severity"], f"{source}: [severity]")
        sev = {}
        for rid, value in table.items():
            if not _RULE_ID_RE.match(rid):
                raise ConfigError(f"{source}: [severity]: bad rule id {rid!r}")
            sev[rid] = parse_severity(value, f"{source}: [severity] {rid!r}")
        cfg = dataclasses.replace(cfg, severity=sev)
    if "allow" in data:
        cfg = dataclasses.replace(cfg, allow=_allow(data["allow"], f"{source}: [[allow]]"))
    return cfg


def _read_toml(path: Path, raw: bytes | None = None) -> dict[str, Any]:
    """The TOML document at ``path`` (its bytes ``raw``, when already read)."""
    import tomllib  # only when there is a config file to read

    if raw is None:
        raw = read_bounded(path, _MAX_BYTES, str(path))
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def load_config_file(path: str | os.PathLike[str]) -> Config:
    """Load one config file: ``pyproject.toml`` is read from ``[tool.imgscan]``."""
    p = Path(path)
    data = _read_toml(p)
    if p.name == PYPROJECT:
        tool = data.get("tool", {})
        table = tool.get("imgscan", {}) if isinstance(tool, Mapping) else {}
        return config_from_mapping(
            _table(table, f"{p}: [tool.imgscan]"), f"{p} [tool.imgscan]", p.parent
        )
    return config_from_mapping(data, str(p), p.parent)


def find_config(directory: str | os.PathLike[str] = ".") -> Path | None:
    """``.imgscan.toml`` in ``directory``, else its ``pyproject.toml`` if it has [tool.imgscan]."""
    d = Path(directory)
    own = d / CONFIG_NAME
    if own.is_file():
        return own
    py = d / PYPROJECT
    # Any spelling of a [tool.imgscan] table names it; most pyproject files do not.
    if not py.is_file():
        return None
    raw = read_bounded(py, _MAX_BYTES, str(py))
    if b"imgscan" not in raw:  # any spelling of a [tool.imgscan] table names it
        return None
    tool = _read_toml(py, raw).get("tool")
    return py if isinstance(tool, Mapping) and "imgscan" in tool else None


def load_config(
    path: str | os.PathLike[str] | None = None, directory: str | os.PathLike[str] = "."
) -> Config:
    """The config from ``path`` (``--config``), else one found in ``directory``, else defaults."""
    if path is not None:
        return load_config_file(path)
    found = find_config(directory)
    return load_config_file(found) if found is not None else Config()


def apply_config(result: ScanResult, config: Config) -> ScanResult:
    """Drop findings of disabled rules and apply per-rule severity overrides."""
    if not config.disabled_rules and not config.severity:
        return result
    out = []
    for f in result.findings:
        if f.rule in config.disabled_rules:
            continue
        sev = config.severity.get(f.rule)
        out.append(dataclasses.replace(f, severity=sev) if sev and sev != f.severity else f)
    return dataclasses.replace(result, findings=tuple(out))


def allowlist_suppressions(result: ScanResult, config: Config) -> dict[str, str]:
    """fingerprint -> reason for every finding a path allowlist entry matches."""
    out: dict[str, str] = {}
    for f in result.findings:
        for entry in config.allow:
            if entry.matches(f):
                out.setdefault(f.fingerprint, f"allowlist {entry.pattern}: {entry.reason}")
                break
    return out


def load_suppressions(config: Config) -> tuple[Baseline | None, tuple[str, ...]]:
    """Load the config's baseline (if any) before scanning; warnings name expired entries."""
    if config.baseline is None:
        return None, ()
    baseline = load_baseline(config.baseline)
    expired = baseline.expired()
    warnings: tuple[str, ...] = ()
    if expired:
        first = expired[0]
        warnings = (
            f"baseline {config.baseline}: {len(expired)} entr{'y' if len(expired) == 1 else 'ies'}"
            f" expired (e.g. {first.fingerprint} {first.where or ''} expired {first.expires});"
            " they no longer suppress",
        )
    return baseline, warnings


def collect_suppressions(
    result: ScanResult,
    config: Config,
    baseline: Baseline | None = None,
    today: dt.date | None = None,
) -> dict[str, str]:
    """fingerprint -> reason from the baseline's active entries and the path allowlist."""
    out: dict[str, str] = {}
    if baseline is not None:
        out.update(suppressed_fingerprints(result.findings, baseline.suppressions(today)))
    for fp, reason in allowlist_suppressions(result, config).items():
        out.setdefault(fp, reason)
    return out
