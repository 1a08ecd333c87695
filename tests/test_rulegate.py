"""The rule gate: a hyperscan superset of every rule regex; findings identical with it on or off."""

from __future__ import annotations

import base64
import gzip
import os
import random
import re
import string
import sys
import sysconfig
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.base import FileContext, Hit
from imgscan.detect.pattern import LINE_REACH, PatternDetector
from imgscan.detect.prefilter import available_engines
from imgscan.detect.rulegate import (
    CACHE_FILES,
    REPEAT_CAP,
    RuleGate,
    default_cache_dir,
    gate_pattern,
)
from imgscan.detect.rules import Rule, load_rule_file, load_ruleset
from imgscan.errors import ConfigError
from tests.conftest import require
from tests.secret_corpus import decoy_corpus, planted_corpus

RULESET = load_ruleset()
MODES = ("single", "ends")


def _hyperscan() -> None:
    require("hyperscan" in available_engines(), "the hyperscan package is not installed")


@pytest.fixture(scope="module")
def detectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PatternDetector]:
    """The detector with the gate off, and in each gate mode (cache in a temporary dir)."""
    _hyperscan()
    cache = tmp_path_factory.mktemp("gate-cache")
    out = {"off": PatternDetector(RULESET, "hyperscan", gate=False)}
    for mode in MODES:
        out[mode] = PatternDetector(RULESET, "hyperscan", gate_mode=mode, cache_dir=cache)
    return out


# ---------------------------------------------------------------------------- translation


def test_every_builtin_rule_is_gated(detectors: dict[str, PatternDetector]) -> None:
    for mode in MODES:
        gate = detectors[mode].gate
        assert gate is not None and gate.size == len(RULESET.rules)
        assert gate.ungated == (), [RULESET.rules[i].id for i in gate.ungated]


@pytest.mark.parametrize("rule", [pytest.param(r, id=r.id) for r in RULESET.rules])
def test_translation_matches_every_match_of_the_rule(rule: Rule) -> None:
    """Each match of the rule's regex in its examples is matched whole by the translation."""
    gated = gate_pattern(rule.pattern)
    assert gated is not None
    relaxed = re.compile(gated.encode("ascii"))
    texts = [ex.text for ex in rule.examples] + list(rule.counter_examples)
    matched = 0
    for text in texts:
        for m in rule.regex.finditer(text.encode("utf-8", "surrogateescape")):
            assert relaxed.fullmatch(m.group(0)), (rule.id, m.group(0)[:80])
            matched += 1
    assert matched >= len(rule.examples)


CLASSES = [
    r"\s",
    r"\S",
    r"\w",
    r"\W",
    r"\d",
    r"\D",
    r".",
    r"(?s).",
    r"[^\s\"'$-]",
    r"[\x80-\xff]",
    r"[^\d\s]",
    r"[A-Za-z0-9+/=]",
    r"(?i)[a-f0-9]",
    r"(?i)[^a-z]",
    r"(?i)[\W_]",
    r"(?i)k",
    r"(?i)[^k]",
    r"(?i:[^\s@/'\"<>`])",
    r"(?i)(?-i:[A-Z])",
    r"[^\n]",
    r"\x00",
]


@pytest.mark.parametrize("pattern", CLASSES)
def test_character_classes_keep_python_byte_semantics(pattern: str) -> None:
    """Python's bytes semantics of classes, case folding and '.' survive translation exactly."""
    _hyperscan()
    import hyperscan

    gated = gate_pattern(pattern)
    assert gated is not None
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[gated.encode("ascii")], ids=[0], elements=1, flags=0)
    original = re.compile(pattern.encode())
    found: set[int] = set()
    for b in range(256):
        db.scan(bytes([b]), match_event_handler=lambda *a, b=b: found.add(b))
    want = {b for b in range(256) if original.fullmatch(bytes([b]))}
    assert found == want, (pattern, sorted(found ^ want))


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"(?<![a-z])tok_[a-z]{4}(?![a-z])", b"xtok_abcdy"),  # lookarounds dropped
        (r"^key=(?P<s>\d{3})$", b"a key=123 b"),  # anchors dropped
        (r"\btok\b", b"atokb"),
        (r"(?P<q>[\"'])x{2}(?P=q)", b"'xx\""),  # a back-reference becomes its group
        (r"(?i:(?P<q>ab))-(?P=q)", b"AB-ab"),
        (r"a[0-9]{1,500}z", b"a" + b"1" * 900 + b"z"),  # long repeats are widened
        (r"(?:ab{1,3}){2,4}c", b"abbbbbbabc"),  # nested counted repeats are widened
        (r"x(?>ab|a)bc", b"xabc"),  # atomic groups and possessive repeats are plain
        (r"y[a-c]++c", b"yabcc"),
    ],
)
def test_translation_only_widens(pattern: str, text: bytes) -> None:
    """Dropped assertions and widened repeats match more, never less."""
    gated = gate_pattern(pattern)
    assert gated is not None
    assert re.search(gated.encode(), text) is not None


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?P<q>\")?abc(?(q)\")",  # conditional group: not translatable
        r"(?P<s>a{0,5})",  # matches the empty string: it would gate nothing
        r"(?=abc)",
        r"[^\x00-\xff]",
        r"(?L)key\w{4}",  # locale-dependent classes
        r"key(?L:\w{4})",
    ],
)
def test_untranslatable_patterns_stay_ungated(pattern: str) -> None:
    assert gate_pattern(pattern) is None


def test_repeat_cap_is_a_bound_not_a_rewrite_of_short_repeats() -> None:
    short = gate_pattern(r"a[0-9]{3,8}")
    assert short is not None and "{3,8}" in short
    wide = gate_pattern(rf"a[0-9]{{3,{REPEAT_CAP + 1}}}")
    assert wide is not None and "{3,}" in wide


# ---------------------------------------------------------------------------- identical hits


def _path_for(rule: Rule) -> str:
    if not rule.paths:
        return "/app/file.txt"
    g = rule.paths[0].replace("*", "x")
    return g if g.startswith("/") else f"/app/{g}"


def _example_files() -> Iterator[tuple[str, bytes]]:
    texts: list[str] = []
    for rule in RULESET.rules:
        path = _path_for(rule)
        for ex in rule.examples:
            texts.append(ex.text)
            yield path, ex.text.encode("utf-8", "surrogateescape")
        for text in rule.counter_examples:
            texts.append(text)
            yield path, text.encode("utf-8", "surrogateescape")
    blob = "\n".join(texts).encode("utf-8", "surrogateescape")
    yield "/app/.env", blob
    yield "/app/all.txt", blob
    for f in planted_corpus() + decoy_corpus():
        yield f.path, f.data


def _real_files(limit: int) -> Iterator[tuple[str, bytes]]:
    """Real text from this machine: copyright files, Python sources, man pages, changelogs."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    groups = [
        sorted(Path("/usr/share/doc").glob("*/copyright")),
        sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts),
        sorted(Path("/usr/share/man").glob("man[158]/*.gz")),
        sorted(Path("/usr/share/doc").glob("*/changelog*.gz")),
    ]
    for paths in groups:
        total = 0
        for p in paths:
            try:
                data = p.read_bytes()
                if p.suffix == ".gz":
                    data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                continue
            if len(data) > 8 << 20:
                continue
            yield str(p), data
            total += len(data)
            if total > limit:
                break


def _noise_files(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """Seeded noise: keywords, example fragments and token-like runs, with window-edge cases."""
    rng = random.Random(seed)
    keywords = sorted({kw for r in RULESET.rules for kw in r.keywords})
    examples = [ex.text for r in RULESET.rules for ex in r.examples]
    alphabet = string.ascii_letters + string.digits + "+/=_-.:\"' \t"
    seps = ["=", ": ", '="', "='", " ", "\n", ":", "://", "@", "\t", '"', "\r\n"]

    def token() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(4, 90)))

    def piece() -> str:
        roll = rng.random()
        if roll < 0.35:
            kw = rng.choice(keywords)
            return kw.upper() if rng.random() < 0.3 else kw
        if roll < 0.55:
            ex = rng.choice(examples)
            if rng.random() < 0.5:  # a cut example: half a match, a match without its tail
                a = rng.randint(0, len(ex))
                b = rng.randint(a, len(ex))
                return ex[a:b]
            return ex
        if roll < 0.7:
            return base64.b64encode(rng.randbytes(rng.randint(6, 80))).decode()
        if roll < 0.8:
            return rng.randbytes(rng.randint(4, 16)).hex()
        return token()

    for i in range(count):
        parts: list[str] = []
        size = rng.randint(200, 40_000)
        length = 0
        while length < size:
            if rng.random() < 0.05:
                # an example near the LINE_REACH clip of a long line: the window cuts through it
                pad = "".join(rng.choice(string.ascii_lowercase) for _ in range(LINE_REACH))
                kw = rng.choice(keywords)
                ex = rng.choice(examples)
                cut = rng.randint(LINE_REACH - 80, LINE_REACH + 80)
                s = pad[: rng.randint(0, 60)] + kw + pad[: max(0, cut - len(kw))] + ex + pad
            else:
                s = piece() + rng.choice(seps)
            parts.append(s)
            length += len(s)
        data = "".join(parts).encode("utf-8", "surrogateescape")
        if i % 7 == 0:  # binary garbage around text
            data = rng.randbytes(rng.randint(0, 3000)) + data + rng.randbytes(rng.randint(0, 3000))
        path = rng.choice(["/app/.env", "/etc/app/config.yml", "/src/main.py", "/x/noise.txt"])
        yield f"{path}.{i}", data


def _hits(det: PatternDetector, path: str, data: bytes) -> list[Hit]:
    return list(det.scan(FileContext(path, 0, len(data)), data))


def _assert_identical(
    detectors: dict[str, PatternDetector], files: Iterator[tuple[str, bytes]]
) -> tuple[int, int, int]:
    """Hits are equal, in order, with the gate off and on; (files, hits, files gated away)."""
    gate = detectors["single"].gate
    assert gate is not None
    n_files = n_hits = skipped = 0
    for path, data in files:
        want = _hits(detectors["off"], path, data)
        for mode in MODES:
            got = _hits(detectors[mode], path, data)
            assert got == want, (mode, path, [h.rule for h in got], [h.rule for h in want])
        n_files += 1
        n_hits += len(want)
        skipped += gate.possible(data).find(1) < 0
    return n_files, n_hits, skipped


def test_identical_hits_on_rule_examples_and_corpora(
    detectors: dict[str, PatternDetector],
) -> None:
    files, hits, _ = _assert_identical(detectors, _example_files())
    assert files > 2 * len(RULESET.rules)
    assert hits > len(RULESET.rules)


@pytest.mark.slow
def test_identical_hits_on_real_text_files(detectors: dict[str, PatternDetector]) -> None:
    files = list(_real_files(12 << 20))
    size = sum(len(d) for _, d in files)
    require(size > 4 << 20, "fewer than 4 MB of real text files (docs, stdlib, man pages)")
    n, hits, skipped = _assert_identical(detectors, iter(files))
    assert n == len(files)
    assert skipped > n // 2, "the gate should rule out every regex for most real files"
    assert hits >= 0


def test_identical_hits_on_generated_noise(detectors: dict[str, PatternDetector]) -> None:
    n, hits, _ = _assert_identical(detectors, _noise_files(seed=7, count=120))
    assert n == 120 and hits > 50


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(sorted({kw for r in RULESET.rules for kw in r.keywords})),
            st.sampled_from([ex.text for r in RULESET.rules for ex in r.examples]),
            st.text(alphabet=string.printable, max_size=60),
            st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        ),
        max_size=30,
    )
)
def test_identical_hits_property(detectors: dict[str, PatternDetector], parts: list[str]) -> None:
    data = "".join(parts).encode("utf-8", "surrogateescape")
    want = _hits(detectors["off"], "/app/.env", data)
    for mode in MODES:
        assert _hits(detectors[mode], "/app/.env", data) == want


def test_rules_that_cannot_be_gated_still_run(tmp_path: Path) -> None:
    """A rule with a construct the gate lacks is counted as ungated and keeps finding."""
    _hyperscan()
    (tmp_path / "r.toml").write_text(
        """
[[rule]]
id = "cond-token"
title = "Conditional token"
severity = "high"
regex = '(?P<q>")?(?P<secret>cnd_[a-z0-9]{12})(?(q)")'
keywords = ["cnd_"]
examples = [{ text = 'k="cnd_a1b2c3d4e5f6"', secret = "cnd_a1b2c3d4e5f6" }]

[[rule]]
id = "plain-token"
title = "Plain token"
severity = "high"
regex = '(?<![a-z])(?P<secret>pln_[a-z0-9]{12})'
keywords = ["pln_"]
examples = ["pln_a1b2c3d4e5f6"]
""",
        "utf-8",
    )
    from imgscan.detect.rules import RuleSet

    rules = tuple(load_rule_file(tmp_path / "r.toml"))
    rs = RuleSet(rules, "0" * 64, {r.id: r for r in rules})
    on = PatternDetector(rs, "hyperscan", cache_dir=tmp_path / "cache")
    off = PatternDetector(rs, "hyperscan", gate=False)
    assert on.gate is not None and on.gate.ungated == (0,)
    data = b'a="cnd_a1b2c3d4e5f6" b=pln_a1b2c3d4e5f6 c=cnd_zzzzzzzzzzzz\n'
    got = _hits(on, "/x", data)
    assert got == _hits(off, "/x", data)
    assert sorted(h.rule for h in got) == ["cond-token", "cond-token", "plain-token"]
    assert on.gate.possible(b"nothing here") == bytearray([1, 0])


# ---------------------------------------------------------------------------- options


def test_no_gate_without_hyperscan_or_when_off() -> None:
    assert PatternDetector(RULESET, "python").gate is None
    assert PatternDetector(RULESET, gate=False).gate is None
    if "ahocorasick" in available_engines():
        assert PatternDetector(RULESET, "ahocorasick").gate is None
    with pytest.raises(ConfigError, match="gate mode"):
        PatternDetector(RULESET, gate_mode="fast")


# ---------------------------------------------------------------------------- cache


PATTERNS = [r.pattern for r in RULESET.rules[:40]]


def test_cache_is_written_once_and_loaded(tmp_path: Path) -> None:
    _hyperscan()
    first = RuleGate(PATTERNS, cache_dir=tmp_path)
    assert not first.from_cache and first.cache_path is not None and first.cache_path.is_file()
    second = RuleGate(PATTERNS, cache_dir=tmp_path)
    assert second.from_cache and second.ungated == first.ungated
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]  # no temporary left
    sample = b"\n".join(ex.text.encode() for r in RULESET.rules[:40] for ex in r.examples)
    assert second.possible(sample) == first.possible(sample)
    assert first.possible(sample).count(1) >= 30


def test_cache_key_depends_on_patterns_and_mode(tmp_path: Path) -> None:
    _hyperscan()
    a = RuleGate(PATTERNS, cache_dir=tmp_path)
    b = RuleGate(PATTERNS[:-1], cache_dir=tmp_path)
    c = RuleGate(PATTERNS, "ends", cache_dir=tmp_path)
    assert len({a.cache_key(), b.cache_key(), c.cache_key()}) == 3
    assert not b.from_cache and not c.from_cache


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_cache_falls_back_to_compiling(tmp_path: Path, damage: str) -> None:
    _hyperscan()
    path = RuleGate(PATTERNS, cache_dir=tmp_path).cache_path
    assert path is not None
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        pos = len(raw) - 100
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :])
    elif damage == "garbage":
        path.write_bytes(os.urandom(5000))
    else:
        path.write_bytes(b"")
    again = RuleGate(PATTERNS, cache_dir=tmp_path)
    assert not again.from_cache
    assert again.possible(b"AKIAQ2LBN7RX5T3WZK4M").count(1) >= 0
    assert RuleGate(PATTERNS, cache_dir=tmp_path).from_cache  # rewritten whole


def test_cache_keeps_only_the_newest_databases(tmp_path: Path) -> None:
    _hyperscan()
    paths = []
    for i in range(CACHE_FILES + 3):
        gate = RuleGate(PATTERNS[i : i + 2], cache_dir=tmp_path)
        assert gate.cache_path is not None
        paths.append(gate.cache_path)
        os.utime(gate.cache_path, (1000 + i, 1000 + i))
    left = sorted(tmp_path.iterdir())
    assert len(left) == CACHE_FILES
    assert paths[-1] in left and paths[0] not in left


def test_unwritable_cache_dir_still_builds(tmp_path: Path) -> None:
    _hyperscan()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    gate = RuleGate(PATTERNS, cache_dir=blocker / "imgscan")
    assert not gate.from_cache and gate.ungated == ()
    assert RuleGate(PATTERNS, use_cache=False).cache_path is None


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "imgscan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "imgscan"


# ---------------------------------------------------------------------------- concurrency


def test_threads_and_forked_children_share_the_gate(
    detectors: dict[str, PatternDetector],
) -> None:
    det = detectors["single"]
    files = list(_noise_files(seed=11, count=12))
    want = [_hits(detectors["off"], p, d) for p, d in files]
    results: list[list[list[Hit]]] = [[], []]

    def work(slot: int) -> None:
        results[slot] = [_hits(det, p, d) for p, d in files]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want, want]
    if sys.platform == "win32" or not hasattr(os, "fork"):
        return
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child scans with the parent's database, as a forked worker does
        ok = [_hits(det, p, d) for p, d in files] == want
        os.write(wr, b"1" if ok else b"0")
        os._exit(0)
    os.close(wr)
    answer = os.read(rd, 1)
    os.close(rd)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_ends_mode_lists_match_ends_and_gives_up_when_dense(
    detectors: dict[str, PatternDetector],
) -> None:
    gate = detectors["ends"].gate
    assert gate is not None
    aws = [r.id for r in RULESET.rules].index("aws-access-key-id")
    ends = gate.ends(b"id AKIAQ2LBN7RX5T3WZK4M\n")
    assert ends is not None and 23 in ends[aws]
    dense = b"token:e.token,secret:s," * 80_000
    assert gate.ends(dense, limit=1000) is None
    assert _hits(detectors["ends"], "/app/x.js", dense) == _hits(
        detectors["off"], "/app/x.js", dense
    )
