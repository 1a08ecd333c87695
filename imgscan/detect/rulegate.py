"""A hyperscan gate over the rules' regexes: which rules can match anywhere in a chunk.

Each rule's Python regex is translated into a hyperscan pattern that matches a superset of
it in any context: lookarounds, anchors and word boundaries are dropped (an assertion only
ever removes matches), back-references become a copy of their group, lazy and atomic forms
become plain ones, and every character class is spelt out as explicit bytes with Python's
own ASCII semantics for bytes patterns (``\\s``, ``\\w``, ``\\d``, IGNORECASE). Compiled with
``HS_FLAG_PREFILTER`` the database never misses a match of the translated pattern, so when
it reports nothing for a rule, that rule's regex cannot match in any window of the chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import platform
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sre_p: Any = importlib.import_module("re._parser")
sre_c: Any = importlib.import_module("re._constants")

CACHE_FORMAT = "rulegate-1"
REPEAT_CAP = 64
GATE_MODES = ("single", "ends")
CACHE_FILES = 8  # cached databases kept per cache directory (one per rule set and mode)
MAX_ENDS = 1 << 16  # "ends" mode: past this many match ends in a chunk, gate nothing
_SPACE = frozenset(b" \t\n\r\f\v")
_DIGIT = frozenset(range(0x30, 0x3A))
_WORD = frozenset(b"_") | _DIGIT | frozenset(range(0x41, 0x5B)) | frozenset(range(0x61, 0x7B))
_ALL = frozenset(range(256))
_CATEGORIES: dict[Any, frozenset[int]] = {
    sre_c.CATEGORY_DIGIT: _DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: _ALL - _DIGIT,
    sre_c.CATEGORY_SPACE: _SPACE,
    sre_c.CATEGORY_NOT_SPACE: _ALL - _SPACE,
    sre_c.CATEGORY_WORD: _WORD,
    sre_c.CATEGORY_NOT_WORD: _ALL - _WORD,
}
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT)


class Unsupported(Exception):
    """A regex construct the gate cannot translate; the rule stays ungated."""


def _fold(chars: frozenset[int]) -> frozenset[int]:
    """Add the other ASCII case of every letter (Python's IGNORECASE on bytes)."""
    extra = {c ^ 0x20 for c in chars if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A}
    return chars | extra


def _class_set(items: Any, caseless: bool) -> frozenset[int]:
    """The bytes a parsed ``[...]`` (or ``\\d``-style) item list admits."""
    chars: set[int] = set()
    negate = False
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            chars.add(av)
        elif op is sre_c.RANGE:
            chars.update(range(av[0], av[1] + 1))
        elif op is sre_c.CATEGORY and av in _CATEGORIES:
            chars.update(_CATEGORIES[av])
        else:
            raise Unsupported(f"class item {op}")
    got = frozenset(c for c in chars if c < 256)
    if caseless:
        got = _fold(got)
    return _ALL - got if negate else got


def _emit_set(chars: frozenset[int]) -> str:
    """A hyperscan class for exactly these bytes."""
    if not chars:
        raise Unsupported("empty class")
    if len(chars) == 1:
        return f"\\x{next(iter(chars)):02x}"
    out: list[str] = []
    run: list[int] = []
    for c in sorted(chars):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(_range(run))
        run = [c]
    out.append(_range(run))
    return "[" + "".join(out) + "]"


def _range(run: list[int]) -> str:
    if len(run) == 1:
        return f"\\x{run[0]:02x}"
    return f"\\x{run[0]:02x}-\\x{run[-1]:02x}"


class _Translator:
    def __init__(self, tree: Any, cap: int) -> None:
        self.groups: dict[int, tuple[Any, int]] = {}
        self._collect(tree.data, tree.state.flags)
        self.depth = 0
        self.cap = cap

    def _collect(self, data: Any, flags: int) -> None:
        for op, av in data:
            if op is sre_c.SUBPATTERN:
                gid, add, rem, sub = av
                inner = (flags | add) & ~rem
                if gid is not None:
                    self.groups[gid] = (sub, inner)
                self._collect(sub, inner)
            elif op in _REPEATS:
                self._collect(av[2], flags)
            elif op is sre_c.BRANCH:
                for b in av[1]:
                    self._collect(b, flags)
            elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                self._collect(av[1], flags)
            elif op is sre_c.ATOMIC_GROUP:
                self._collect(av, flags)

    def seq(self, data: Any, flags: int) -> str:
        return "".join(self.node(op, av, flags) for op, av in data)

    def node(self, op: Any, av: Any, flags: int) -> str:
        if flags & sre_c.SRE_FLAG_LOCALE:
            raise Unsupported("(?L): classes and case folding depend on the locale")
        caseless = bool(flags & sre_c.SRE_FLAG_IGNORECASE)
        if op is sre_c.LITERAL:
            return _emit_set(_fold(frozenset([av])) if caseless else frozenset([av]))
        if op is sre_c.NOT_LITERAL:
            one = frozenset([av])
            return _emit_set(_ALL - (_fold(one) if caseless else one))
        if op is sre_c.ANY:
            return _emit_set(_ALL if flags & sre_c.SRE_FLAG_DOTALL else _ALL - {0x0A})
        if op is sre_c.IN:
            return _emit_set(_class_set(av, caseless))
        if op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            return ""  # zero-width: dropping it only adds matches
        if op is sre_c.SUBPATTERN:
            _gid, add, rem, sub = av
            return self._group(self.seq(sub, (flags | add) & ~rem))
        if op is sre_c.ATOMIC_GROUP:
            return self._group(self.seq(av, flags))
        if op is sre_c.BRANCH:
            alts = [self.seq(b, flags) for b in av[1]]
            body = "|".join(a for a in alts if a)
            if not body:
                return ""
            return f"(?:{body})" + ("?" if not all(alts) else "")
        if op in _REPEATS:
            lo, hi, item = av
            body = self.seq(item, flags)
            if not body or hi == 0:
                return ""
            simple = len(item) == 1 and item[0][0] in (
                sre_c.IN,
                sre_c.LITERAL,
                sre_c.NOT_LITERAL,
                sre_c.ANY,
            )
            if hi is not sre_c.MAXREPEAT and hi > 1 and (not simple or hi > self.cap):
                # a long or nested counted repeat costs hyperscan dearly to compile: widen it
                lo, hi = (min(lo, self.cap) if simple else min(lo, 1)), sre_c.MAXREPEAT
            if hi is sre_c.MAXREPEAT:
                bound = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            else:
                bound = f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
            return f"(?:{body}){bound}"
        if op is sre_c.GROUPREF:
            if av not in self.groups or self.depth > 4:
                raise Unsupported("back-reference")
            sub, gflags = self.groups[av]
            self.depth += 1
            try:
                # the reference repeats the group's text, perhaps in another case
                body = self.seq(sub, gflags | (flags & sre_c.SRE_FLAG_IGNORECASE))
            finally:
                self.depth -= 1
            return self._group(body)
        raise Unsupported(f"regex construct {op}")

    @staticmethod
    def _group(body: str) -> str:
        return f"(?:{body})" if body else ""


def gate_pattern(pattern: str, cap: int = REPEAT_CAP) -> str | None:
    """A hyperscan pattern matching a superset of ``pattern`` (as bytes) anywhere, or None."""
    try:
        tree = sre_p.parse(pattern.encode("utf-8"))
        out = _Translator(tree, cap).seq(tree.data, tree.state.flags)
    except (Unsupported, re.error, RecursionError):
        return None
    if not out or re.fullmatch(out.encode(), b"") is not None:
        return None  # matches the empty string: it would gate nothing
    return out


def _translator_digest() -> bytes:
    """A digest of this module's source: a changed translation never reuses an old cache."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).digest()
    except OSError:
        return CACHE_FORMAT.encode()


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/imgscan, else ~/.cache/imgscan."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgscan"


def _prune(directory: Path, keep: Path, limit: int = CACHE_FILES) -> None:
    """Delete all but the ``limit`` newest cached databases (never ``keep``)."""
    try:
        found = sorted(
            ((p.stat().st_mtime, p) for p in directory.glob("rulegate-*.hsdb") if p != keep),
            reverse=True,
        )
        for _mtime, p in found[max(0, limit - 1) :]:
            p.unlink()
    except OSError:
        pass  # another process pruned first, or the directory is read-only: harmless


class RuleGate:
    """One hyperscan database over the translatable regexes of a list of rule patterns.

    ``possible(data)`` marks the rules whose regex may match somewhere in ``data`` ("single"
    mode); ``ends(data)`` lists where such matches may end ("ends" mode). Rules that could not
    be translated or compiled (``ungated``) are always possible.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        mode: str = "single",
        cache_dir: Path | None = None,
        use_cache: bool = True,
    ) -> None:
        import hyperscan

        if mode not in GATE_MODES:
            raise ValueError(f"unknown gate mode {mode!r} (one of {', '.join(GATE_MODES)})")
        self._hs: Any = hyperscan
        self.mode = mode
        self.patterns = tuple(patterns)
        self.size = len(self.patterns)
        self.cache_dir = default_cache_dir() if cache_dir is None else cache_dir
        self.cache_path: Path | None = None
        self.from_cache = False
        started = time.perf_counter()
        self._db, ids = self._load_or_compile(use_cache)
        self.compile_seconds = time.perf_counter() - started
        gated = set(ids)
        self.ungated: tuple[int, ...] = tuple(i for i in range(self.size) if i not in gated)
        self._base = bytearray(self.size)
        for i in self.ungated:
            self._base[i] = 1
        self._local = threading.local()

    # -- building
    def _flags(self) -> int:
        hs = self._hs
        if self.mode == "single":
            return int(hs.HS_FLAG_PREFILTER | hs.HS_FLAG_SINGLEMATCH)
        return int(hs.HS_FLAG_PREFILTER)

    def _compile(self) -> tuple[Any, list[int]]:
        """Compile every translatable pattern at once; on failure, only those that compile."""
        hs = self._hs
        exprs = {i: gate_pattern(p) for i, p in enumerate(self.patterns)}
        ids = [i for i, p in exprs.items() if p is not None]
        if not ids:
            return None, []
        try:
            return self._compile_ids(exprs, ids), ids
        except hs.error:
            pass
        ok = []
        for i in ids:
            try:
                self._compile_ids(exprs, [i])
            except hs.error:
                continue
            ok.append(i)
        if not ok:
            return None, []
        return self._compile_ids(exprs, ok), ok

    def _compile_ids(self, exprs: dict[int, str | None], ids: list[int]) -> Any:
        hs = self._hs
        db = hs.Database(mode=hs.HS_MODE_BLOCK)
        db.compile(
            expressions=[str(exprs[i]).encode("ascii") for i in ids],
            ids=ids,
            elements=len(ids),
            flags=self._flags(),
        )
        return db

    def cache_key(self) -> str:
        """Hash of everything the compiled database depends on."""
        h = hashlib.sha256()
        version = getattr(self._hs, "__version__", "?")
        head = f"{CACHE_FORMAT}\0{REPEAT_CAP}\0{version}\0{platform.machine()}\0{self._flags()}"
        h.update(head.encode() + b"\0" + _translator_digest())
        for p in self.patterns:
            h.update(b"\0" + p.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:40]

    def _load_or_compile(self, use_cache: bool) -> tuple[Any, list[int]]:
        if not self.patterns:
            return None, []
        if use_cache:
            self.cache_path = self.cache_dir / f"rulegate-{self.cache_key()}.hsdb"
            got = self._read_cache(self.cache_path)
            if got is not None:
                self.from_cache = True
                return got
        db, ids = self._compile()
        if self.cache_path is not None and db is not None:
            self._write_cache(self.cache_path, db, ids)
        return db, ids

    def _read_cache(self, path: Path) -> tuple[Any, list[int]] | None:
        """The database and gated ids stored at ``path``; None when absent or unusable."""
        try:
            raw = path.read_bytes()
            head, _, blob = raw.partition(b"\n")
            fmt, digest, id_list = head.decode("ascii").split(" ")
            if fmt != CACHE_FORMAT or hashlib.sha256(blob).hexdigest() != digest:
                return None
            ids = [int(x) for x in id_list.split(",")] if id_list else []
            if ids != sorted(set(ids)) or any(not 0 <= i < self.size for i in ids) or not ids:
                return None
            db = self._hs.loadb(blob, self._hs.HS_MODE_BLOCK)
        except (OSError, ValueError, UnicodeDecodeError, self._hs.error):
            return None
        return db, ids

    def _write_cache(self, path: Path, db: Any, ids: list[int]) -> None:
        """Store the database atomically (temporary file, then rename); errors are ignored."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            blob = bytes(self._hs.dumpb(db))
            head = f"{CACHE_FORMAT} {hashlib.sha256(blob).hexdigest()} {','.join(map(str, ids))}"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(head.encode("ascii") + b"\n" + blob)
            os.replace(tmp, path)
            _prune(path.parent, keep=path)
        except (OSError, self._hs.error):
            with contextlib.suppress(OSError):
                tmp.unlink()

    # -- scanning
    def _scratch(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # one scratch per thread keeps concurrent scans safe
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        return scratch

    def possible(self, data: bytes) -> bytearray:
        """Per rule index, 1 where the rule's regex may match somewhere in ``data``."""
        live = bytearray(self._base)
        if self._db is None or not data:
            return live

        def on_match(idx: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
            live[idx] = 1

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        return live

    def ends(self, data: bytes, limit: int = MAX_ENDS) -> dict[int, list[int]] | None:
        """Gated rule index -> ascending offsets where a match of it may end in ``data``.

        ``None`` (every rule possible everywhere) when there are more than ``limit`` of them.
        """
        out: dict[int, list[int]] = {}
        if self._db is None or not data:
            return out
        count = 0

        def on_match(idx: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            nonlocal count
            got = out.get(idx)
            if got is None:
                out[idx] = [end]
            else:
                got.append(end)
            count += 1
            return count > limit  # True stops the scan: too dense to be worth listing

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        except self._hs.ScanTerminated:
            return None
        for offs in out.values():
            offs.sort()
        return out


__all__ = ["GATE_MODES", "REPEAT_CAP", "RuleGate", "default_cache_dir", "gate_pattern"]
