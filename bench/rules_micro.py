"""Micro-benchmark of PatternDetector.scan: the rule gate on and off, same corpus, same run.

    python bench/rules_micro.py [--limit-mb N] [--repeat N] [--profile MODE] [--baseline FILE]

Reads every regular file under bench/.work/rootfs and bench/.work/app-*/ (<= 8 MB; a .gz
is also scanned decompressed, as the scanner's expander would) into memory, then times
``PatternDetector.scan`` over all of it with the gate off, in "single" mode (one flag per
rule per chunk) and in "ends" mode (windows kept only near the end offsets hyperscan
reports), checks that the three produce identical hit lists, and prints CPU seconds and the
gate's compile time, cold and from the cache file. ``--baseline FILE`` also times the
PatternDetector of another pattern.py (e.g. ``git show HEAD~1:imgscan/detect/pattern.py``).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imgscan.detect.base import FileContext  # noqa: E402
from imgscan.detect.pattern import PatternDetector  # noqa: E402
from imgscan.detect.rules import load_ruleset  # noqa: E402

MAX_FILE = 8 << 20


def corpus(work: Path, limit: int) -> list[tuple[str, bytes]]:
    """(path, bytes) of the bench trees' regular files, read once."""
    roots = [work / "rootfs", *sorted(p for p in work.glob("app-*") if p.is_dir())]
    out: list[tuple[str, bytes]] = []
    total = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.is_symlink() or not p.is_file() or p.stat().st_size > MAX_FILE:
                    continue
                try:
                    data = p.read_bytes()
                except OSError:
                    continue
                rel = "/" + str(p.relative_to(root))
                out.append((rel, data))
                total += len(data)
                if name.endswith(".gz"):
                    try:
                        inner = gzip.decompress(data)
                    except (OSError, EOFError, zlib.error):
                        inner = b""
                    if inner and len(inner) <= MAX_FILE:
                        out.append((rel + "!" + name[:-3], inner))
                        total += len(inner)
                if total >= limit:
                    return out
    return out


def run(det: PatternDetector, files: list[tuple[str, bytes]]) -> tuple[float, list[tuple]]:
    """CPU seconds of one pass, and every hit as (file, rule, offset, secret, validated)."""
    hits: list[tuple] = []
    started = time.process_time()
    for path, data in files:
        for h in det.scan(FileContext(path, 0, len(data)), data):
            hits.append((path, h.rule, h.offset, h.secret, h.validated))
    return time.process_time() - started, hits


def main() -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    ap.add_argument("--limit-mb", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", choices=["off", "single", "ends"], default=None)
    ap.add_argument("--baseline", type=Path, default=None, help="another pattern.py to time")
    args = ap.parse_args()

    t0 = time.perf_counter()
    files = corpus(args.work, args.limit_mb << 20)
    size = sum(len(d) for _, d in files)
    print(
        f"corpus: {len(files)} files, {size / 1e6:.1f} MB, read in {time.perf_counter() - t0:.1f}s"
    )
    ruleset = load_ruleset()

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        t = time.perf_counter()
        single = PatternDetector(ruleset, gate_mode="single", cache_dir=cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        again = PatternDetector(ruleset, gate_mode="single", cache_dir=cache)
        warm = time.perf_counter() - t
        assert single.gate is not None and again.gate is not None
        assert again.gate.from_cache, "the second build did not load the cache file"
        ends = PatternDetector(ruleset, gate_mode="ends", cache_dir=cache)
    off = PatternDetector(ruleset, gate=False)
    t = time.perf_counter()
    PatternDetector(ruleset, gate=False)
    plain = time.perf_counter() - t
    gate = single.gate
    print(
        f"gate: {gate.size - len(gate.ungated)}/{gate.size} rules gated, "
        f"ungated: {[ruleset.rules[i].id for i in gate.ungated]}"
    )
    print(
        f"detector build: no gate {plain:.3f}s, gate cold {cold:.3f}s "
        f"(hyperscan compile {gate.compile_seconds:.3f}s), gate from cache {warm:.3f}s "
        f"(load {again.gate.compile_seconds:.3f}s)"
    )
    dets: dict[str, Any] = {"off": off, "single": single, "ends": ends}
    if args.baseline is not None:
        spec = importlib.util.spec_from_file_location("baseline_pattern", args.baseline)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dets = {"baseline": module.PatternDetector(ruleset), **dets}
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run(dets[args.profile], files)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0

    best: dict[str, float] = {}
    results: dict[str, list[tuple]] = {}
    for _ in range(args.repeat):
        for name, det in dets.items():
            secs, hits = run(det, files)
            best[name] = min(best.get(name, secs), secs)
            results[name] = hits
    first = next(iter(results.values()))
    same = all(hits == first for hits in results.values())
    print(f"hits: {len(first)} (identical in all {len(results)} modes: {same})")
    ref = next(iter(dets))
    for name in dets:
        rate = size / 1e6 / best[name]
        print(
            f"  {name:8s} {best[name]:7.2f} CPU s  {rate:6.1f} MB/s  "
            f"x{best[ref] / best[name]:.2f} vs {ref}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
