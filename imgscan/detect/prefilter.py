"""Find every occurrence of many lowercase keywords in one pass over a chunk of bytes.

Three interchangeable engines give identical results: ``hyperscan`` (native, literal,
caseless), ``ahocorasick`` (pyahocorasick over the lowercased chunk) and ``python``
(a prefix-factored alternation regex over the lowercased chunk, then a table of the
keywords starting at each hit: slower, but dependency-free).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from imgscan.errors import ConfigError

ENGINES = ("hyperscan", "ahocorasick", "python")


def available_engines() -> tuple[str, ...]:
    """The prefilter engines importable here, fastest first."""
    out = []
    try:
        import hyperscan  # noqa: F401

        out.append("hyperscan")
    except ImportError:
        pass
    try:
        import ahocorasick  # noqa: F401

        out.append("ahocorasick")
    except ImportError:
        pass
    out.append("python")
    return tuple(out)


def _trie_regex(words: Sequence[bytes]) -> bytes:
    """A prefix-factored regex that matches where any word starts (shortest word wins)."""
    trie: dict[int, Any] = {}
    for w in words:
        node = trie
        for b in w:
            node = node.setdefault(b, {})
        node[-1] = {}
    return _node_regex(trie)


def _node_regex(node: dict[int, Any]) -> bytes:
    if -1 in node:
        return b""  # a word ends here: enough to know one starts at this position
    parts = [re.escape(bytes([b])) + _node_regex(child) for b, child in sorted(node.items())]
    return parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"


class Prefilter:
    """A compiled keyword set; ``find`` lists (start offset, keyword index) of every hit."""

    def __init__(self, keywords: Sequence[str], engine: str = "auto") -> None:
        if not keywords:
            raise ConfigError("prefilter needs at least one keyword")
        for kw in keywords:
            if not kw or kw != kw.lower() or not kw.isascii():
                raise ConfigError(f"prefilter keyword {kw!r} must be lowercase ASCII")
        if len(set(keywords)) != len(keywords):
            raise ConfigError("prefilter keywords must be unique")
        self.keywords = tuple(keywords)
        self._kw_bytes = tuple(k.encode("ascii") for k in self.keywords)
        self._lengths = tuple(len(k) for k in self._kw_bytes)
        avail = available_engines()
        if engine == "auto":
            engine = avail[0]
        elif engine not in ENGINES:
            raise ConfigError(f"unknown prefilter engine {engine!r} (one of {', '.join(ENGINES)})")
        elif engine not in avail:
            raise ConfigError(f"prefilter engine {engine!r} is not installed")
        self.engine = engine
        self._local = threading.local()
        self._impl: Any
        if engine == "hyperscan":
            self._impl = self._build_hyperscan()
        elif engine == "ahocorasick":
            self._impl = self._build_ahocorasick()
        else:
            self._impl = self._build_python()

    # -- hyperscan
    def _build_hyperscan(self) -> Any:
        import hyperscan

        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(
            expressions=list(self._kw_bytes),
            ids=list(range(len(self._kw_bytes))),
            elements=len(self._kw_bytes),
            flags=hyperscan.HS_FLAG_CASELESS,
            literal=True,
        )
        return db

    def _find_hyperscan(self, data: bytes) -> list[tuple[int, int]]:
        import hyperscan

        lengths = self._lengths
        out: list[tuple[int, int]] = []
        add = out.append

        def on_match(idx: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            add((end - lengths[idx], idx))

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # one scratch per thread keeps concurrent scans safe
            scratch = self._local.scratch = hyperscan.Scratch(self._impl)
        self._impl.scan(data, match_event_handler=on_match, scratch=scratch)
        out.sort()
        return out

    # -- pyahocorasick
    def _build_ahocorasick(self) -> Any:
        import ahocorasick

        auto = ahocorasick.Automaton()
        for i, kw in enumerate(self.keywords):
            auto.add_word(kw, (i, len(kw)))
        auto.make_automaton()
        return auto

    def _find_ahocorasick(self, data: bytes) -> list[tuple[int, int]]:
        text = data.lower().decode("latin-1")
        out = [(end - n + 1, i) for end, (i, n) in self._impl.iter(text)]
        out.sort()
        return out

    # -- pure Python
    def _build_python(self) -> tuple[re.Pattern[bytes], dict[int, tuple[tuple[bytes, int], ...]]]:
        table: dict[int, list[tuple[bytes, int]]] = {}
        for i, kw in enumerate(self._kw_bytes):
            table.setdefault(kw[0], []).append((kw, i))
        alt = re.compile(_trie_regex(self._kw_bytes))
        return alt, {k: tuple(v) for k, v in table.items()}

    def _find_python(self, data: bytes) -> list[tuple[int, int]]:
        alt, table = self._impl
        low = data.lower()
        out: list[tuple[int, int]] = []
        search = alt.search
        startswith = low.startswith
        m = search(low)
        while m is not None:
            p = m.start()
            for kw, i in table[low[p]]:
                if startswith(kw, p):
                    out.append((p, i))
            m = search(low, p + 1)
        out.sort()
        return out

    def find(self, data: bytes) -> list[tuple[int, int]]:
        """Every (start offset, keyword index) where a keyword occurs, case-insensitively."""
        if not data:
            return []
        if self.engine == "hyperscan":
            return self._find_hyperscan(data)
        if self.engine == "ahocorasick":
            return self._find_ahocorasick(data)
        return self._find_python(data)


__all__ = ["ENGINES", "Prefilter", "available_engines"]
