"""The keyword prefilter: every engine finds exactly the same (offset, keyword) pairs."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscan.detect.prefilter import ENGINES, Prefilter, available_engines
from imgscan.detect.rules import load_ruleset
from imgscan.errors import ConfigError
from tests.conftest import require
from tests.secret_corpus import decoy_corpus, planted_corpus

KEYWORDS = ["sk_live_", "live_", "ghp_", "gh", "token", "oken", "aaa", "-us", "://", "a"]
ENGINE_PARAMS = [pytest.param(e, id=e) for e in ENGINES]


def reference(keywords: list[str], data: bytes) -> list[tuple[int, int]]:
    """Brute force: every start offset of every keyword, case-insensitively."""
    low = data.lower()
    out = []
    for i, kw in enumerate(keywords):
        k = kw.encode()
        p = low.find(k)
        while p >= 0:
            out.append((p, i))
            p = low.find(k, p + 1)
    return sorted(out)


def _engine(engine: str) -> str:
    require(engine in available_engines(), f"prefilter engine {engine} is not installed")
    return engine


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_overlapping_and_caseless_hits(engine: str) -> None:
    pf = Prefilter(KEYWORDS, _engine(engine))
    data = b"X SK_LIVE_abc GHP_Token aaaa en-US https://h\x00\xffAa"
    got = pf.find(data)
    assert got == reference(KEYWORDS, data)
    pairs = {(p, KEYWORDS[i]) for p, i in got}
    assert (2, "sk_live_") in pairs and (5, "live_") in pairs
    assert (14, "ghp_") in pairs and (14, "gh") in pairs
    assert (18, "token") in pairs and (19, "oken") in pairs
    assert (24, "aaa") in pairs and (25, "aaa") in pairs
    assert pf.engine == engine


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_empty_and_missing(engine: str) -> None:
    pf = Prefilter(["secret"], _engine(engine))
    assert pf.find(b"") == []
    assert pf.find(b"nothing to see") == []


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(max_size=20),
            st.sampled_from([k.encode() for k in KEYWORDS]),
            st.sampled_from([k.upper().encode() for k in KEYWORDS]),
        ),
        max_size=30,
    )
)
def test_matches_brute_force(engine: str, pieces: list[bytes]) -> None:
    pf = Prefilter(KEYWORDS, _engine(engine))
    data = b"".join(pieces)
    assert pf.find(data) == reference(KEYWORDS, data)


def _sample_files(limit: int = 4 << 20) -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py")) + sorted(root.glob("email/*.py"))
    out, total = [], 0
    for f in files:
        data = f.read_bytes()
        out.append(data)
        total += len(data)
        if total > limit:
            break
    return out


def test_engines_agree_on_builtin_keywords_over_real_files() -> None:
    keywords = sorted({kw for rule in load_ruleset().rules for kw in rule.keywords})
    engines = [Prefilter(keywords, e) for e in available_engines()]
    assert len(engines) >= 2  # pyahocorasick is a hard dependency, python always exists
    rng = random.Random(7)
    blobs = _sample_files()
    blobs += [f.data for f in planted_corpus() + decoy_corpus()]
    blobs.append(bytes(rng.randrange(256) for _ in range(200_000)))
    hits = 0
    for data in blobs:
        results = [pf.find(data) for pf in engines]
        assert all(r == results[0] for r in results[1:])
        hits += len(results[0])
    assert hits > 100


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="unknown prefilter engine"):
        Prefilter(["abc"], "grep")
    with pytest.raises(ConfigError, match="at least one keyword"):
        Prefilter([], "python")
    with pytest.raises(ConfigError, match="lowercase"):
        Prefilter(["ABC"], "python")
    with pytest.raises(ConfigError, match="unique"):
        Prefilter(["abc", "abc"], "python")
    assert available_engines()[-1] == "python"
