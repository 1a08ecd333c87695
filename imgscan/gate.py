"""The CI gate: decide from a scan result and a policy whether the run passes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from imgscan.errors import ConfigError
from imgscan.model import Category, Finding, ScanResult, Severity, Status

EXIT_OK = 0
EXIT_POLICY = 1
EXIT_USAGE = 2
EXIT_SCAN = 3

# fingerprint -> reason: the findings a baseline or an allowlist accepts.
Suppressions = Mapping[str, str]

ALL_STATES: frozenset[Status] = frozenset(Status)
ALL_CATEGORIES: frozenset[Category] = frozenset(Category)


@dataclass(frozen=True, slots=True)
class Policy:
    """Which findings fail the gate: at or above ``fail_on``, in these states and categories.

    Findings without a status (config-borne) always count, whatever ``fail_on_state`` says.
    """

    fail_on: Severity = Severity.HIGH
    fail_on_state: frozenset[Status] = ALL_STATES
    categories: frozenset[Category] = ALL_CATEGORIES


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """The verdict: exit code, the findings that failed the policy and why."""

    exit_code: int
    failing: tuple[Finding, ...]
    suppressed: int
    reasons: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when the policy is met."""
        return self.exit_code == EXIT_OK


def _choices(value: str | Iterable[str], what: str) -> list[str]:
    if isinstance(value, str):
        items = [v.strip().lower() for v in value.split(",")]
    else:
        items = []
        for v in value:
            if not isinstance(v, str):
                raise ConfigError(f"{what}: expected a string, got {v!r}")
            items.append(v.strip().lower())
    items = [v for v in items if v]
    if not items:
        raise ConfigError(f"{what}: empty list")
    return items


def parse_severity(value: object, what: str = "fail_on") -> Severity:
    """A Severity from its name, or ConfigError naming ``what`` and the choices."""
    if isinstance(value, Severity):
        return value
    names = ", ".join(s.value for s in Severity)
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected one of {names}, got {value!r}")
    try:
        return Severity(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{what}: unknown severity {value!r} (choose from {names})") from None


def parse_states(value: str | Iterable[str], what: str = "fail_on_state") -> frozenset[Status]:
    """A set of exposure states from ``present,deleted`` or a list; ``all`` means every state."""
    out: set[Status] = set()
    names = ", ".join(s.value for s in Status)
    for item in _choices(value, what):
        if item == "all":
            out.update(Status)
            continue
        try:
            out.add(Status(item))
        except ValueError:
            raise ConfigError(
                f"{what}: unknown state {item!r} (choose from {names}, all)"
            ) from None
    return frozenset(out)


def parse_categories(value: str | Iterable[str], what: str = "categories") -> frozenset[Category]:
    """A set of categories from ``secret,config`` or a list; ``all`` means every category."""
    out: set[Category] = set()
    names = ", ".join(c.value for c in Category)
    for item in _choices(value, what):
        if item == "all":
            out.update(Category)
            continue
        try:
            out.add(Category(item))
        except ValueError:
            raise ConfigError(
                f"{what}: unknown category {item!r} (choose from {names}, all)"
            ) from None
    return frozenset(out)


def counts_against(finding: Finding, policy: Policy) -> bool:
    """Whether ``finding`` (ignoring suppressions) is at or above the policy."""
    if finding.category not in policy.categories:
        return False
    if finding.severity.rank < policy.fail_on.rank:
        return False
    return finding.status is None or finding.status in policy.fail_on_state


def evaluate(
    result: ScanResult, policy: Policy, suppressions: Suppressions | None = None
) -> GateOutcome:
    """Apply ``policy`` to ``result``; suppressed findings never fail the gate."""
    sup = suppressions or {}
    failing: list[Finding] = []
    suppressed = 0
    for f in result.findings:
        if f.fingerprint in sup:
            suppressed += 1
            continue
        if counts_against(f, policy):
            failing.append(f)
    states = ",".join(s.value for s in Status if s in policy.fail_on_state) or "none"
    cats = ",".join(c.value for c in Category if c in policy.categories) or "none"
    scope = f"severity >= {policy.fail_on.value}, states {states} (+config), categories {cats}"
    reasons: list[str] = []
    if failing:
        by_sev: dict[Severity, int] = {}
        for f in failing:
            by_sev[f.severity] = by_sev.get(f.severity, 0) + 1
        parts = ", ".join(
            f"{n} {s.value}" for s, n in sorted(by_sev.items(), key=lambda kv: -kv[0].rank)
        )
        reasons.append(f"policy failed: {len(failing)} finding(s) ({parts}) with {scope}")
    else:
        reasons.append(f"policy passed: no finding with {scope}")
    if suppressed:
        reasons.append(f"{suppressed} finding(s) suppressed by baseline or allowlist")
    if result.unscanned:
        reasons.append(f"{len(result.unscanned)} item(s) could not be scanned (see report)")
    code = EXIT_POLICY if failing else EXIT_OK
    return GateOutcome(code, tuple(failing), suppressed, tuple(reasons))
