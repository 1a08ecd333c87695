"""The pattern detector: keyword prefilter over the chunk, then rule regexes near each hit."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from pathlib import Path

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.prefilter import Prefilter
from imgscan.detect.rulegate import GATE_MODES, RuleGate
from imgscan.detect.rules import Rule, RuleMatch, RuleSet
from imgscan.errors import ConfigError

# A keyword hit is searched within its own line, clipped to this many bytes either side.
LINE_REACH = 1024


class PatternDetector:
    """Runs a RuleSet's regexes only around the places where their keywords occur.

    With the hyperscan engine and ``gate`` on, a RuleGate first rules out, per chunk, every
    rule whose regex cannot match anywhere in it ("single" mode), or every window holding no
    possible match end ("ends" mode); findings are the same as with ``gate=False``. The
    gate's compiled database is cached under ``cache_dir`` (default: $XDG_CACHE_HOME/imgscan).
    """

    name = "pattern"

    def __init__(
        self,
        ruleset: RuleSet,
        engine: str = "auto",
        gate: bool = True,
        gate_mode: str = "single",
        cache_dir: Path | None = None,
    ) -> None:
        if not ruleset.rules:
            raise ConfigError("the pattern detector needs at least one rule")
        if gate_mode not in GATE_MODES:
            raise ConfigError(f"unknown gate mode {gate_mode!r} (one of {', '.join(GATE_MODES)})")
        self.ruleset = ruleset
        self.rules: tuple[Rule, ...] = ruleset.rules
        keywords: list[str] = []
        index: dict[str, int] = {}
        owners: list[list[int]] = []
        for ri, rule in enumerate(self.rules):
            for kw in rule.keywords:
                ki = index.get(kw)
                if ki is None:
                    ki = index[kw] = len(keywords)
                    keywords.append(kw)
                    owners.append([])
                if ri not in owners[ki]:
                    owners[ki].append(ri)
        self._owners: tuple[tuple[int, ...], ...] = tuple(tuple(o) for o in owners)
        self._kwlen = tuple(len(k) for k in keywords)
        self.prefilter = Prefilter(keywords, engine)
        self.engine = self.prefilter.engine
        self._has_paths = tuple(bool(r.paths or r.exclude_paths) for r in self.rules)
        # with hyperscan, one pass over the chunk tells which rules can match at all
        self.gate: RuleGate | None = None
        if gate and self.engine == "hyperscan":
            self.gate = RuleGate([r.pattern for r in self.rules], gate_mode, cache_dir)

    def candidates(self, ctx: FileContext, data: bytes) -> dict[int, list[tuple[int, int]]]:
        """Rule index -> merged (start, end) windows of ``data`` where that rule may match."""
        windows: dict[int, list[tuple[int, int]]] = {}
        gate = self.gate
        live: bytearray | None = None
        ends: dict[int, list[int]] | None = None
        if gate is not None and data:
            if gate.mode == "single":
                live = gate.possible(data)
                if live.find(1) < 0:
                    return windows  # no rule's regex can match anywhere in the chunk
            else:
                ends = gate.ends(data)  # None: too many to list, every rule stays possible
                if ends is not None and not ends and not gate.ungated:
                    return windows
        hits = self.prefilter.find(data)
        if not hits:
            return windows
        n = len(data)
        rules = self.rules
        owners = self._owners
        has_paths = self._has_paths
        kwlen = self._kwlen
        if ends is not None:
            live = bytearray(len(rules))
            for ri in ends:
                live[ri] = 1
            for ri in gate.ungated if gate is not None else ():
                live[ri] = 1
        # per keyword, the owning rules that are live here and admit this path (lazily)
        active: dict[int, tuple[tuple[int, int], ...]] = {}
        last_end = [-1] * len(kwlen)
        # the line [line_lo, line_hi) holding the last hit; a keyword never spans lines, so
        # each line is searched for its ends once however many hits it holds
        line_lo = line_hi = -1
        for start, ki in hits:
            own = active.get(ki)
            if own is None:
                own = active[ki] = tuple(
                    (ri, rules[ri].window)
                    for ri in owners[ki]
                    if (live is None or live[ri])
                    and (not has_paths[ri] or rules[ri].applies_to(ctx.path))
                )
            if not own or start < last_end[ki]:
                continue  # no rule to run, or a periodic run ("aaaa...") repeating the keyword
            end = last_end[ki] = start + kwlen[ki]
            line: tuple[int, int] | None = None
            for ri, reach in own:
                if reach:
                    win = (max(0, start - reach), min(n, end + reach))
                else:
                    if line is None:
                        if start < line_lo or end > line_hi:
                            line_lo = data.rfind(b"\n", 0, start) + 1
                            line_hi = data.find(b"\n", end)
                            if line_hi < 0:
                                line_hi = n
                        line = (max(line_lo, start - LINE_REACH), min(line_hi, end + LINE_REACH))
                    win = line
                merged = windows.get(ri)
                if merged is None:
                    windows[ri] = [win]
                else:
                    last_lo, last_hi = merged[-1]
                    if win[0] < last_hi:
                        if win[1] > last_hi:
                            merged[-1] = (last_lo, win[1])
                    else:
                        merged.append(win)
        if ends is not None:
            windows = _near_ends(windows, ends)
        return windows

    def scan(self, ctx: FileContext, data: bytes) -> Iterator[Hit]:
        """Yield one hit per accepted rule match; offsets are those of the secret in ``data``."""
        seen: set[tuple[int, int]] = set()
        fallbacks: list[tuple[Rule, RuleMatch]] = []
        spans: list[tuple[int, int]] = []
        for ri, wins in self.candidates(ctx, data).items():
            rule = self.rules[ri]
            finditer = rule.regex.finditer
            check = rule.check
            for lo, hi in wins:
                for m in finditer(data, lo, hi):
                    found = check(m)
                    if found is None or (ri, found.start) in seen:
                        continue
                    seen.add((ri, found.start))
                    if rule.fallback:
                        fallbacks.append((rule, found))
                    else:
                        spans.append((found.start, found.end))
                        yield _hit(rule, found)
        if not fallbacks:
            return
        spans.sort()
        starts = [s for s, _ in spans]
        reach = _max_prefix(spans)
        kept: list[tuple[int, int]] = []
        for rule, found in fallbacks:
            # a specific rule's secret overlapping this one wins (GITHUB_TOKEN=ghp_... is one
            # finding), and of overlapping fallback matches the first rule's is kept
            i = bisect_left(starts, found.end)
            if i and reach[i - 1] > found.start:
                continue
            if any(s < found.end and found.start < e for s, e in kept):
                continue
            kept.append((found.start, found.end))
            yield _hit(rule, found)


def _near_ends(
    windows: dict[int, list[tuple[int, int]]], ends: dict[int, list[int]]
) -> dict[int, list[tuple[int, int]]]:
    """Keep only the windows (lo, hi] that hold an end offset the gate reported for the rule."""
    out: dict[int, list[tuple[int, int]]] = {}
    for ri, wins in windows.items():
        offs = ends.get(ri)
        if offs is None:
            out[ri] = wins  # an ungated rule: every window stays
            continue
        kept = []
        for lo, hi in wins:
            i = bisect_right(offs, lo)
            if i < len(offs) and offs[i] <= hi:
                kept.append((lo, hi))
        if kept:
            out[ri] = kept
    return out


def _max_prefix(spans: list[tuple[int, int]]) -> list[int]:
    """Running maximum of the span ends, for overlap tests against sorted spans."""
    out: list[int] = []
    best = -1
    for _, end in spans:
        best = max(best, end)
        out.append(best)
    return out


def _hit(rule: Rule, found: RuleMatch) -> Hit:
    return Hit(
        rule=rule.id,
        title=rule.title,
        severity=rule.severity,
        secret=found.secret,
        offset=found.start,
        validated=found.validated,
        extra={"remediation": rule.remediation} if rule.remediation else {},
    )


__all__ = ["LINE_REACH", "PatternDetector"]
