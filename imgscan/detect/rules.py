"""Secret rules as data: load, validate and test the TOML rule files of ``signatures/``."""

from __future__ import annotations

import importlib
import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any

from imgscan.detect.rulefiles import rule_sources, sources_digest
from imgscan.detect.validators import VALIDATORS
from imgscan.errors import RuleError
from imgscan.model import Severity

# Applied to every rule unless it says ``default_filters = false``: values that are
# documentation, templates or placeholders rather than secrets (matched case-insensitively).
DEFAULT_STOPWORDS: tuple[str, ...] = (
    "example",
    "xxxx",
    "changeme",
    "change_me",
    "change-me",
    "dummy",
    "placeholder",
    "redacted",
    "your_",
    "your-",
    "yourtoken",
    "yourpassword",
    "yourkey",
    "insert_",
    "insert-",
    "replace_me",
    "replaceme",
    "notreal",
    "not_real",
    "not-a-real",
    "fake_",
    "fake-",
    "sample",
    "${",
    "{{",
    "<your",
    "<insert",
    "<token",
    "<password",
    "<secret",
    "<api",
    "*****",
    "•••",
)
DEFAULT_ALLOW: tuple[str, ...] = (
    r"^\$[A-Za-z_][A-Za-z0-9_]*$",  # $VAR
    r"^\$\(.*\)$",  # $(command)
    r"^%[A-Za-z_][A-Za-z0-9_]*%$",  # %VAR%
    r"^%\([A-Za-z_][A-Za-z0-9_]*\)s$",  # %(name)s
    r"^<[^<>]*>$",  # <token>
    r"^\{[A-Za-z_][A-Za-z0-9_.]*\}$",  # {name}
    r"^(.)\1+$",  # aaaaaaaa, 00000000
    r"(?i)abcdefghij|0123456789|1234567890|qwertyuiop",  # keyboard and alphabet runs
)

# The stdlib regex parser (private, but stable across 3.11-3.13) drives the backtracking lint.
sre_p: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

_SEVERITIES = {s.value: s for s in Severity}
_KEYS = {
    "id",
    "title",
    "description",
    "severity",
    "regex",
    "keywords",
    "entropy",
    "paths",
    "exclude_paths",
    "allow",
    "allow_match",
    "stopwords",
    "validator",
    "require_valid",
    "default_filters",
    "window",
    "fallback",
    "examples",
    "counter_examples",
    "remediation",
}
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_WINDOW = 16384


@dataclass(frozen=True, slots=True)
class Example:
    """A text the rule must find, with the secret it must extract (and its validity)."""

    text: str
    secret: str
    validated: bool | None = None
    has_validated: bool = False


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One accepted match of a rule inside a text: byte span of the secret and its value."""

    secret: str
    start: int
    end: int
    validated: bool | None


@dataclass(frozen=True, slots=True)
class Rule:
    """One secret rule, compiled and validated."""

    id: str
    title: str
    severity: Severity
    pattern: str
    regex: re.Pattern[bytes]
    keywords: tuple[str, ...]
    source: str
    group: int | str = 1
    entropy: float | None = None
    paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()
    allow: tuple[re.Pattern[str], ...] = ()
    allow_match: tuple[re.Pattern[str], ...] = ()
    stopwords: tuple[str, ...] = ()
    validator: str | None = None
    require_valid: bool = False
    window: int = 0  # 0: the keyword's line (bounded); N: N bytes either side, across lines
    fallback: bool = False  # reported only where no specific rule found an overlapping secret
    description: str = ""
    remediation: str = ""
    examples: tuple[Example, ...] = ()
    counter_examples: tuple[str, ...] = ()

    def applies_to(self, path: str) -> bool:
        """Whether the rule's ``paths``/``exclude_paths`` globs admit this file path."""
        inner = path.rsplit("!", 1)[-1]
        if self.paths and not any(_glob(g, inner) for g in self.paths):
            return False
        return not any(_glob(g, inner) for g in self.exclude_paths)

    def check(self, m: re.Match[bytes]) -> RuleMatch | None:
        """Apply the rule's filters to one regex match; ``None`` when it is dropped."""
        start, end = m.span(self.group)
        if start < 0 or end <= start:
            return None
        secret = m.string[start:end].decode("utf-8", "surrogateescape")
        low = secret.lower()
        for word in self.stopwords:
            if word in low:
                return None
        for pat in self.allow:
            if pat.search(secret):
                return None
        if self.allow_match:
            whole = m.group(0).decode("utf-8", "surrogateescape")
            for pat in self.allow_match:
                if pat.search(whole):
                    return None
        if self.entropy is not None and shannon_entropy(secret) < self.entropy:
            return None
        validated: bool | None = None
        if self.validator is not None:
            validated = VALIDATORS[self.validator](secret)
            if validated is False and self.require_valid:
                return None
        return RuleMatch(secret, start, end, validated)

    def find(self, data: bytes, pos: int = 0, endpos: int | None = None) -> Iterator[RuleMatch]:
        """Every accepted match of the rule in ``data[pos:endpos]`` (no keyword prefilter)."""
        end = len(data) if endpos is None else endpos
        for m in self.regex.finditer(data, pos, end):
            hit = self.check(m)
            if hit is not None:
                yield hit


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one scan, in load order, with a content hash for cache keys."""

    rules: tuple[Rule, ...]
    hash: str
    by_id: Mapping[str, Rule] = field(default_factory=dict, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """The outcome of one example or counter-example of one rule."""

    file: str
    rule: str
    kind: str  # "example" | "counter_example"
    text: str
    ok: bool
    message: str = ""


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum((c / n) * math.log2(c / n) for c in Counter(text).values())


def _glob(pattern: str, path: str) -> bool:
    if "/" in pattern:
        return fnmatchcase(path, pattern) or fnmatchcase(path, "*/" + pattern.lstrip("/"))
    return fnmatchcase(path.rsplit("/", 1)[-1], pattern)


# ---------------------------------------------------------------------------- regex lint


def _unbounded_ok(item: Any) -> bool:
    """An unbounded repeat is allowed only over one whitespace character class."""
    if len(item) != 1:
        return False
    op, av = item[0]
    if op is sre_c.LITERAL:
        return chr(av) in " \t"
    if op is sre_c.IN:
        for sub_op, sub_av in av:
            if sub_op is sre_c.CATEGORY and sub_av is sre_c.CATEGORY_SPACE:
                continue
            if sub_op is sre_c.LITERAL and chr(sub_av) in " \t\r\n":
                continue
            return False
        return True
    return False


def _lint(tree: Any) -> str | None:
    """Find a catastrophic-backtracking risk: unbounded or nested unbounded repeats."""
    for op, av in tree:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            _lo, hi, item = av
            unbounded = hi is sre_c.MAXREPEAT
            if (unbounded or hi > 1) and _has_repeat(item, unbounded_only=True):
                return "nested unbounded quantifiers"
            if unbounded and not _unbounded_ok(item):
                return "unbounded repeat (use {m,n}, or * / + over whitespace only)"
            problem = _lint(item)
        elif op is sre_c.SUBPATTERN:
            problem = _lint(av[-1])
        elif op is sre_c.BRANCH:
            problem = next((p for p in map(_lint, av[1]) if p), None)
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            problem = _lint(av[1])
        elif op is sre_c.ATOMIC_GROUP:
            problem = _lint(av)
        else:
            problem = None
        if problem:
            return problem
    return None


def _has_repeat(tree: Any, unbounded_only: bool) -> bool:
    for op, av in tree:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            if av[1] is sre_c.MAXREPEAT or not unbounded_only:
                return True
            if _has_repeat(av[2], unbounded_only):
                return True
        elif op is sre_c.SUBPATTERN:
            if _has_repeat(av[-1], unbounded_only):
                return True
        elif op is sre_c.BRANCH:
            if any(_has_repeat(b, unbounded_only) for b in av[1]):
                return True
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT) and _has_repeat(av[1], unbounded_only):
            return True
    return False


def lint_regex(pattern: str) -> str | None:
    """Why ``pattern`` risks catastrophic backtracking, or ``None`` when it is safe."""
    try:
        tree = sre_p.parse(pattern)
    except re.error as exc:
        return f"bad regex: {exc}"
    return _lint(tree.data)


# ---------------------------------------------------------------------------- loading


def _str_list(value: Any, what: str, err: Callable[[str], RuleError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(f"{what} must be a list of strings")
    return tuple(value)


def _compile_str(
    patterns: Sequence[str], what: str, err: Callable[[str], RuleError]
) -> tuple[re.Pattern[str], ...]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise err(f"{what} {p!r} does not compile: {exc}") from None
    return tuple(out)


def _parse_examples(value: Any, err: Callable[[str], RuleError]) -> tuple[Example, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise err("examples must be a list")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(Example(item, item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            secret = item.get("secret", item["text"])
            if not isinstance(secret, str):
                raise err("example secret must be a string")
            extra = set(item) - {"text", "secret", "validated"}
            if extra:
                raise err(f"unknown example keys {sorted(extra)}")
            val = item.get("validated")
            if val is not None and not isinstance(val, bool):
                raise err("example 'validated' must be a boolean")
            out.append(Example(item["text"], secret, val, "validated" in item))
        else:
            raise err("each example is a string or a table with 'text' (and 'secret')")
    return tuple(out)


def _build_rule(raw: Any, source: str, lint: bool = True) -> Rule:
    rid = raw.get("id") if isinstance(raw, dict) else None
    label = rid if isinstance(rid, str) else "?"

    def err(msg: str) -> RuleError:
        return RuleError(f"{source}: rule {label}: {msg}")

    if not isinstance(raw, dict):
        raise err("each [[rule]] must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise err(f"unknown keys {sorted(unknown)}")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise err("id must be lowercase words joined by '-'")
    title = raw.get("title")
    if not isinstance(title, str) or not title:
        raise err("title is required")
    sev = raw.get("severity")
    if sev not in _SEVERITIES:
        raise err(f"severity must be one of {', '.join(_SEVERITIES)}, not {sev!r}")
    pattern = raw.get("regex")
    if not isinstance(pattern, str) or not pattern:
        raise err("regex is required")
    problem = lint_regex(pattern) if lint else None
    if problem:
        raise err(f"regex: {problem}")
    try:
        regex = re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise err(f"regex does not compile: {exc}") from None
    group: int | str
    if "secret" in regex.groupindex:
        group = "secret"
    elif regex.groups >= 1:
        group = 1
    else:
        raise err("regex needs a capture group for the secret (named 'secret' or group 1)")
    keywords = _str_list(raw.get("keywords"), "keywords", err)
    if not keywords:
        raise err("keywords are required (lowercase literals for the prefilter)")
    for kw in keywords:
        if len(kw) < 3 or kw != kw.lower() or not kw.isascii() or not kw.isprintable():
            raise err(f"keyword {kw!r} must be lowercase printable ASCII, 3+ characters")
    entropy = raw.get("entropy")
    if entropy is not None and (not isinstance(entropy, int | float) or not 0 <= entropy <= 8):
        raise err("entropy must be a number of bits per character (0-8)")
    validator = raw.get("validator")
    if validator is not None and validator not in VALIDATORS:
        raise err(f"unknown validator {validator!r} (known: {', '.join(sorted(VALIDATORS))})")
    window = raw.get("window", 0)
    if not isinstance(window, int) or not 0 <= window <= MAX_WINDOW:
        raise err(f"window must be an integer of bytes, 0-{MAX_WINDOW}")
    flags = {
        k: raw.get(k, d)
        for k, d in (("default_filters", True), ("fallback", False), ("require_valid", False))
    }
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise err(f"{key} must be a boolean")
    default_filters = flags["default_filters"]
    stopwords = tuple(w.lower() for w in _str_list(raw.get("stopwords"), "stopwords", err))
    allow_src = _str_list(raw.get("allow"), "allow", err)
    if default_filters:
        stopwords = DEFAULT_STOPWORDS + stopwords
        allow_src = DEFAULT_ALLOW + allow_src
    counters = _str_list(raw.get("counter_examples"), "counter_examples", err)
    rule = Rule(
        id=rid,
        title=title,
        severity=_SEVERITIES[sev],
        pattern=pattern,
        regex=regex,
        keywords=keywords,
        source=source,
        group=group,
        entropy=float(entropy) if entropy is not None else None,
        paths=_str_list(raw.get("paths"), "paths", err),
        exclude_paths=_str_list(raw.get("exclude_paths"), "exclude_paths", err),
        allow=_compile_str(allow_src, "allow", err),
        allow_match=_compile_str(
            _str_list(raw.get("allow_match"), "allow_match", err), "allow_match", err
        ),
        stopwords=stopwords,
        validator=validator,
        require_valid=flags["require_valid"],
        window=window,
        fallback=flags["fallback"],
        description=str(raw.get("description", "")),
        remediation=str(raw.get("remediation", "")),
        examples=_parse_examples(raw.get("examples"), err),
        counter_examples=counters,
    )
    if not rule.examples:
        raise err("at least one example is required")
    for ex in rule.examples:
        for m in rule.regex.finditer(ex.text.encode("utf-8", "surrogateescape")):
            whole = m.group(0).decode("utf-8", "surrogateescape").lower()
            if not any(kw in whole for kw in keywords):
                raise err(
                    f"a match of the regex in example {ex.text[:40]!r} contains none of the "
                    "keywords (the prefilter would miss it)"
                )
    return rule


def _parse_file(text: str, source: str, lint: bool = True) -> list[Rule]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{source}: not valid TOML: {exc}") from None
    rules_raw = doc.get("rule", [])
    extra = set(doc) - {"rule"}
    if extra:
        raise RuleError(f"{source}: unknown top-level keys {sorted(extra)}")
    if not isinstance(rules_raw, list):
        raise RuleError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    return [_build_rule(raw, source, lint) for raw in rules_raw]


def load_rule_file(path: Path) -> list[Rule]:
    """Parse and validate one rule file."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read rule file: {exc}") from None
    return _parse_file(text, str(path))


def load_ruleset(
    extra_dirs: Sequence[Path] = (),
    disabled: Collection[str] = (),
    builtin: bool = True,
) -> RuleSet:
    """Load the built-in rules plus any extra rule directories, minus the disabled ids."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    sources = rule_sources(extra_dirs, builtin)
    for source, text, builtin_file in sources:
        # The built-in rules are linted by the test suite (test_builtin_rules_pass_the_lint);
        # at every start that is 70 ms of re-parsing. Rules from --rules are linted here.
        for rule in _parse_file(text, source, lint=not builtin_file):
            if rule.id in seen:
                raise RuleError(f"{source}: rule {rule.id}: duplicate id (also in {seen[rule.id]})")
            seen[rule.id] = source
            rules.append(rule)
    unknown = set(disabled) - set(seen)
    if unknown:
        raise RuleError(f"cannot disable unknown rule ids: {', '.join(sorted(unknown))}")
    kept = tuple(r for r in rules if r.id not in set(disabled))
    digest = sources_digest(sources, disabled)
    return RuleSet(kept, digest, MappingProxyType({r.id: r for r in kept}))


# ---------------------------------------------------------------------------- examples


def check_rule(rule: Rule) -> list[ExampleResult]:
    """Run one rule's examples and counter-examples."""
    out: list[ExampleResult] = []
    for ex in rule.examples:
        found = list(rule.find(ex.text.encode("utf-8", "surrogateescape")))
        secrets = [h.secret for h in found]
        if ex.secret not in secrets:
            msg = f"expected secret {ex.secret!r}, found {secrets!r}"
            out.append(ExampleResult(rule.source, rule.id, "example", ex.text, False, msg))
            continue
        hit = found[secrets.index(ex.secret)]
        if ex.has_validated and hit.validated != ex.validated:
            msg = f"validator said {hit.validated!r}, expected {ex.validated!r}"
            out.append(ExampleResult(rule.source, rule.id, "example", ex.text, False, msg))
            continue
        out.append(ExampleResult(rule.source, rule.id, "example", ex.text, True))
    for text in rule.counter_examples:
        bad = [h.secret for h in rule.find(text.encode("utf-8", "surrogateescape"))]
        ok = not bad
        msg = "" if ok else f"unexpected match {bad!r}"
        out.append(ExampleResult(rule.source, rule.id, "counter_example", text, ok, msg))
    return out


def check_rule_file(path: Path) -> list[ExampleResult]:
    """Validate a rule file and run every example and counter-example in it."""
    results: list[ExampleResult] = []
    for rule in load_rule_file(Path(path)):
        results.extend(check_rule(rule))
    return results


__all__ = [
    "DEFAULT_ALLOW",
    "DEFAULT_STOPWORDS",
    "Example",
    "ExampleResult",
    "Rule",
    "RuleMatch",
    "RuleSet",
    "check_rule",
    "check_rule_file",
    "lint_regex",
    "load_rule_file",
    "load_ruleset",
    "shannon_entropy",
]
