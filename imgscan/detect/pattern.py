"""The pattern detector: keyword prefilter over the chunk, then rule regexes near each hit."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.prefilter import Prefilter
from imgscan.detect.rules import Rule, RuleMatch, RuleSet
from imgscan.errors import ConfigError

# A keyword hit is searched within its own line, clipped to this many bytes either side.
LINE_REACH = 1024
_DENSE_HITS = 256
_NEWLINE = re.compile(b"\n")


def _line_window(data: bytes, start: int, end: int, newlines: list[int] | None) -> tuple[int, int]:
    """The line around data[start:end], clipped to LINE_REACH bytes either side."""
    floor = max(0, start - LINE_REACH)
    ceil = min(len(data), end + LINE_REACH)
    if newlines is None:
        lo = data.rfind(b"\n", floor, start) + 1 or floor
        hi = data.find(b"\n", end, ceil)
        return lo, ceil if hi < 0 else hi
    i = bisect_left(newlines, start)
    lo = newlines[i - 1] + 1 if i else 0
    j = bisect_left(newlines, end)
    hi = newlines[j] if j < len(newlines) else len(data)
    return max(lo, floor), min(hi, ceil)


class PatternDetector:
    """Runs a RuleSet's regexes only around the places where their keywords occur."""

    name = "pattern"

    def __init__(self, ruleset: RuleSet, engine: str = "auto") -> None:
        if not ruleset.rules:
            raise ConfigError("the pattern detector needs at least one rule")
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

    def candidates(self, ctx: FileContext, data: bytes) -> dict[int, list[tuple[int, int]]]:
        """Rule index -> merged (start, end) windows of ``data`` where that rule may match."""
        hits = self.prefilter.find(data)
        windows: dict[int, list[tuple[int, int]]] = {}
        if not hits:
            return windows
        n = len(data)
        newlines: list[int] | None = None
        if len(hits) > _DENSE_HITS:  # many hits: index the newlines once instead of searching
            newlines = [m.start() for m in _NEWLINE.finditer(data)]
        allowed: dict[int, bool] = {}
        rules = self.rules
        last_end = [-1] * len(self._kwlen)
        for start, ki in hits:
            if start < last_end[ki]:
                continue  # a periodic run ("aaaa...") repeating the same keyword
            end = last_end[ki] = start + self._kwlen[ki]
            line: tuple[int, int] | None = None
            for ri in self._owners[ki]:
                ok = allowed.get(ri)
                if ok is None:
                    ok = allowed[ri] = not self._has_paths[ri] or rules[ri].applies_to(ctx.path)
                if not ok:
                    continue
                reach = rules[ri].window
                if reach:
                    win = (max(0, start - reach), min(n, end + reach))
                else:
                    if line is None:
                        line = _line_window(data, start, end, newlines)
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
