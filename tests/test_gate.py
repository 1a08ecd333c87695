"""The gate: exit 0 when nothing is at or above the policy, 1 when something is."""

from __future__ import annotations

import dataclasses

import pytest
from report_samples import sample_image, sample_result

from imgscan.errors import ConfigError
from imgscan.gate import (
    ALL_CATEGORIES,
    ALL_STATES,
    EXIT_OK,
    EXIT_POLICY,
    Policy,
    evaluate,
    parse_categories,
    parse_severity,
    parse_states,
)
from imgscan.model import Category, Finding, ScanResult, Severity, Status

C, H, M, L, INFO = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)
P, D, OW = Status.PRESENT, Status.DELETED, Status.OVERWRITTEN
SECRET, CONFIG, FILE = Category.SECRET, Category.CONFIG, Category.FILE


def one(severity: Severity, status: Status | None, category: Category = SECRET) -> ScanResult:
    f = Finding(
        category=category,
        rule="r",
        title="t",
        severity=severity,
        message="m",
        fingerprint="0123456789abcdef0123456789abcdef",
        layer=None if status is None else 1,
        path=None if status is None else "/x",
        status=status,
        location="config.Env" if status is None else None,
    )
    return ScanResult(image=sample_image(), findings=(f,), unscanned=())


def policy(fail_on: str = "high", states: str = "all", cats: str = "all") -> Policy:
    return Policy(parse_severity(fail_on), parse_states(states), parse_categories(cats))


# (finding severity, finding state, category, fail_on, fail_on_state, categories, exit code)
MATRIX = [
    # severity threshold, default states and categories
    (C, P, SECRET, "high", "all", "all", EXIT_POLICY),
    (H, P, SECRET, "high", "all", "all", EXIT_POLICY),
    (M, P, SECRET, "high", "all", "all", EXIT_OK),
    (L, P, SECRET, "high", "all", "all", EXIT_OK),
    (INFO, P, SECRET, "high", "all", "all", EXIT_OK),
    (M, P, SECRET, "medium", "all", "all", EXIT_POLICY),
    (L, P, SECRET, "medium", "all", "all", EXIT_OK),
    (INFO, P, SECRET, "info", "all", "all", EXIT_POLICY),
    (H, P, SECRET, "critical", "all", "all", EXIT_OK),
    (C, P, SECRET, "critical", "all", "all", EXIT_POLICY),
    # a deleted or overwritten secret is still in the image: it fails by default
    (H, D, SECRET, "high", "all", "all", EXIT_POLICY),
    (H, OW, SECRET, "high", "all", "all", EXIT_POLICY),
    (H, D, SECRET, "high", "present", "all", EXIT_OK),
    (H, OW, SECRET, "high", "present,deleted", "all", EXIT_OK),
    (H, D, SECRET, "high", "present,deleted", "all", EXIT_POLICY),
    (H, P, SECRET, "high", "deleted,overwritten", "all", EXIT_OK),
    # config findings (no state) always count, whatever the states
    (H, None, CONFIG, "high", "present", "all", EXIT_POLICY),
    (H, None, CONFIG, "high", "deleted", "all", EXIT_POLICY),
    (M, None, CONFIG, "high", "present", "all", EXIT_OK),
    # categories
    (C, P, SECRET, "high", "all", "config,file", EXIT_OK),
    (C, P, FILE, "high", "all", "file", EXIT_POLICY),
    (C, None, CONFIG, "high", "all", "secret", EXIT_OK),
    (C, None, CONFIG, "high", "all", "secret,config", EXIT_POLICY),
]


@pytest.mark.parametrize(("sev", "state", "cat", "fail_on", "states", "cats", "code"), MATRIX)
def test_exit_code_matrix(
    sev: Severity,
    state: Status | None,
    cat: Category,
    fail_on: str,
    states: str,
    cats: str,
    code: int,
) -> None:
    r = one(sev, state, cat)
    out = evaluate(r, policy(fail_on, states, cats))
    assert out.exit_code == code
    assert out.passed is (code == EXIT_OK)
    assert list(out.failing) == ([] if code == EXIT_OK else list(r.findings))
    assert out.reasons[0].startswith("policy failed" if code else "policy passed")


@pytest.mark.parametrize(("sev", "state", "cat", "fail_on", "states", "cats", "code"), MATRIX)
def test_suppressed_findings_never_fail(
    sev: Severity,
    state: Status | None,
    cat: Category,
    fail_on: str,
    states: str,
    cats: str,
    code: int,
) -> None:
    r = one(sev, state, cat)
    out = evaluate(r, policy(fail_on, states, cats), {r.findings[0].fingerprint: "accepted"})
    assert out.exit_code == EXIT_OK
    assert out.suppressed == 1
    assert out.failing == ()


def test_defaults_are_high_all_states_all_categories() -> None:
    p = Policy()
    assert (p.fail_on, p.fail_on_state, p.categories) == (H, ALL_STATES, ALL_CATEGORIES)


def test_empty_result_passes() -> None:
    out = evaluate(ScanResult(image=sample_image(), findings=(), unscanned=()), Policy())
    assert (out.exit_code, out.failing, out.suppressed) == (EXIT_OK, (), 0)


def test_sample_image_fails_with_only_the_findings_above_policy() -> None:
    r = sample_result()
    out = evaluate(r, Policy())
    expected = [f for f in r.findings if f.severity.rank >= H.rank]
    assert out.exit_code == EXIT_POLICY
    assert list(out.failing) == expected
    n_crit = sum(1 for f in expected if f.severity is C)
    assert out.reasons[0].startswith(
        f"policy failed: {len(expected)} finding(s) ({n_crit} critical"
    )
    assert any("could not be scanned" in line for line in out.reasons)
    # Suppressing every failing finding turns the gate green and counts them.
    sup = {f.fingerprint: "accepted" for f in expected}
    ok = evaluate(r, Policy(), sup)
    assert ok.exit_code == EXIT_OK and ok.suppressed == len(expected)
    assert f"{len(expected)} finding(s) suppressed" in ok.reasons[1]


def test_suppression_is_by_fingerprint_not_rule_or_path() -> None:
    r = one(C, P)
    other = dataclasses.replace(r.findings[0], fingerprint="f" * 32)
    both = dataclasses.replace(r, findings=(r.findings[0], other))
    out = evaluate(both, Policy(), {r.findings[0].fingerprint: "ok"})
    assert out.failing == (other,)


@pytest.mark.parametrize(
    ("func", "value", "message"),
    [
        (parse_severity, "severe", "unknown severity 'severe'"),
        (parse_severity, 3, "expected one of"),
        (parse_states, "present,gone", "unknown state 'gone'"),
        (parse_states, " , ", "empty list"),
        (parse_categories, "secret,vuln", "unknown category 'vuln'"),
    ],
)
def test_bad_policy_values_are_usage_errors(func: object, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        func(value, "--opt")  # type: ignore[operator]
    assert str(info.value).startswith("--opt: ")
    assert info.value.exit_code == 2


def test_parsers_accept_lists_case_and_all() -> None:
    assert parse_severity(" HIGH ") is H
    assert parse_states(["Present", "deleted"]) == {P, D}
    assert parse_states("all") == ALL_STATES
    assert parse_categories("secret, config") == {SECRET, CONFIG}
