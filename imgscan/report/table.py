"""The human report: findings grouped by exposure, one tabulate table per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TextIO

from imgscan.model import Finding, ScanResult, Severity, Status, finding_order

_SEV_COLOR = {
    Severity.CRITICAL: "1;31",
    Severity.HIGH: "31",
    Severity.MEDIUM: "33",
    Severity.LOW: "36",
    Severity.INFO: "2",
}

# (key, heading) in display order; key None groups findings without an exposure state.
GROUPS: tuple[tuple[Status | None, str], ...] = (
    (Status.PRESENT, "PRESENT in the final filesystem"),
    (Status.DELETED, "DELETED by a later layer, still recoverable from the image"),
    (Status.OVERWRITTEN, "OVERWRITTEN by a later layer, still recoverable from the image"),
    (None, "IMAGE CONFIG, HISTORY AND METADATA"),
)
HEADERS = ("SEVERITY", "RULE", "WHERE", "LAYER", "CREATED BY", "VALUE")
INSTRUCTION_WIDTH = 40
VALUE_WIDTH = 60
MAX_SUPPRESSED_ROWS = 20  # accepted findings are listed in full in JSON and SARIF


sort_key = finding_order  # the reports list findings in the pipeline's own order


def clean(text: str) -> str:
    """Escape control characters so a hostile file name cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shorten(text: str | None, width: int) -> str:
    """Collapse whitespace and cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    t = " ".join(text.split())
    return t if len(t) <= width else t[: width - 1] + "…"


def instruction(created_by: str | None, width: int = INSTRUCTION_WIDTH) -> str:
    """A Dockerfile-like form of a history ``created_by``, shortened to ``width``."""
    if not created_by:
        return ""
    t = " ".join(created_by.split())
    if t.startswith("/bin/sh -c #(nop) "):
        t = t[len("/bin/sh -c #(nop) ") :]
    elif t.startswith("/bin/sh -c "):
        t = "RUN " + t[len("/bin/sh -c ") :]
    elif t.startswith("RUN /bin/sh -c "):
        t = "RUN " + t[len("RUN /bin/sh -c ") :]
    if t.endswith(" # buildkit"):
        t = t[: -len(" # buildkit")]
    return shorten(t, width)


def where(f: Finding) -> str:
    """``path:line`` for files, the config location otherwise."""
    w = f.path or f.location or ""
    if f.path and f.line:
        w += f":{f.line}"
    return w


def layer_label(f: Finding) -> str:
    """``3`` or ``1→4`` (added in layer 1, removed or replaced in layer 4)."""
    if f.layer is None:
        return "-"
    if f.removed_in_layer is not None and f.status in (Status.DELETED, Status.OVERWRITTEN):
        return f"{f.layer}→{f.removed_in_layer}"
    return str(f.layer)


def value(f: Finding, show_secrets: bool) -> str:
    """The secret (only with ``show_secrets``), else its redacted form, else the message."""
    if show_secrets and f.secret is not None:
        lines = f.secret.strip().splitlines() or [""]
        return lines[0] + (f" …(+{len(lines) - 1} lines; see JSON)" if len(lines) > 1 else "")
    if f.redacted:
        return f.redacted
    return shorten(f.message, VALUE_WIDTH)


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color and text else text


def _instruction_of(f: Finding, result: ScanResult) -> str:
    cb = f.created_by
    if cb is None and f.layer is not None and 0 <= f.layer < len(result.image.layers):
        cb = result.image.layers[f.layer].created_by
    return instruction(cb)


def _rows(
    findings: Sequence[Finding], result: ScanResult, show_secrets: bool, color: bool
) -> list[list[str]]:
    return [
        [
            _paint(f.severity.value.upper(), _SEV_COLOR[f.severity], color),
            clean(f.rule),
            clean(where(f)),
            layer_label(f),
            clean(_instruction_of(f, result)),
            clean(value(f, show_secrets)),
        ]
        for f in findings
    ]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(result: ScanResult, suppressions: Mapping[str, str]) -> str:
    """One line: totals by severity and by exposure state, suppressed and unscanned counts."""
    active = [f for f in result.findings if f.fingerprint not in suppressions]
    n_sup = len(result.findings) - len(active)
    parts: list[str] = []
    if active:
        sev = [
            f"{sum(1 for f in active if f.severity is s)} {s.value}"
            for s in reversed(Severity)
            if any(f.severity is s for f in active)
        ]
        states = [
            f"{sum(1 for f in active if f.status is s)} {s.value}"
            for s in Status
            if any(f.status is s for f in active)
        ]
        n_cfg = sum(1 for f in active if f.status is None)
        if n_cfg:
            states.append(f"{n_cfg} config")
        parts.append(f"{_plural(len(active), 'finding')}: {', '.join(sev)}")
        parts.append(", ".join(states))
    else:
        parts.append("No findings")
    parts.append(f"{n_sup} suppressed")
    parts.append(f"{len(result.unscanned)} unscanned")
    return " | ".join(parts)


def write_table(
    result: ScanResult,
    stream: TextIO,
    *,
    show_secrets: bool = False,
    color: bool = False,
    suppressions: Mapping[str, str] | None = None,
) -> None:
    """Write the grouped findings table, suppressed and unscanned items, and a summary."""
    from tabulate import tabulate

    sup = suppressions or {}
    img = result.image
    head = f"Image: {clean(img.reference)}"
    if img.digest:
        head += f"  digest: {img.digest}"
    stream.write(_paint(head, "1", color) + "\n")
    user = img.user if img.user else "(root)"
    meta = f"platform: {img.platform or '-'}  user: {user}  layers: {len(img.layers)}"
    meta = clean(meta)
    stream.write(meta + "\n")
    ordered = sorted(result.findings, key=sort_key)
    active = [f for f in ordered if f.fingerprint not in sup]
    for status, heading in GROUPS:
        group = [f for f in active if f.status is status]
        if not group:
            continue
        stream.write("\n" + _paint(f"{heading} ({len(group)})", "1", color) + "\n")
        stream.write(
            tabulate(
                _rows(group, result, show_secrets, color), headers=HEADERS, disable_numparse=True
            )
        )
        stream.write("\n")
    suppressed = [f for f in ordered if f.fingerprint in sup]
    if suppressed:
        stream.write("\n" + _paint(f"SUPPRESSED ({len(suppressed)})", "1", color) + "\n")
        rows = [
            [
                f.severity.value.upper(),
                clean(f.rule),
                clean(where(f)),
                layer_label(f),
                clean(sup[f.fingerprint]),
            ]
            for f in suppressed[:MAX_SUPPRESSED_ROWS]
        ]
        stream.write(
            tabulate(
                rows,
                headers=("SEVERITY", "RULE", "WHERE", "LAYER", "REASON"),
                disable_numparse=True,
            )
        )
        stream.write("\n")
        if len(suppressed) > MAX_SUPPRESSED_ROWS:
            more = len(suppressed) - MAX_SUPPRESSED_ROWS
            stream.write(f"… and {more} more suppressed (all are listed in --format json)\n")
    if result.unscanned:
        stream.write("\n" + _paint(f"NOT SCANNED ({len(result.unscanned)})", "1", color) + "\n")
        rows = [
            ["-" if u.layer is None else str(u.layer), clean(u.path), clean(u.reason)]
            for u in result.unscanned
        ]
        stream.write(tabulate(rows, headers=("LAYER", "PATH", "REASON"), disable_numparse=True))
        stream.write("\n")
    stream.write("\n" + summary_line(result, sup) + "\n")
