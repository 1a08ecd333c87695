"""Time imgscan as of several commits on the same image, alternating them, in one run.

    python bench/steps.py [--image bench/.work/image-x1.tar.gz] [--repeat 3] REV [REV ...]
    python bench/steps.py --rescan [--image REF --extra=--insecure] REV [REV ...]

Each revision is checked out once into a git worktree under ``bench/.work/steps/`` and run
from there (``python -m imgscan.cli scan IMAGE --format json``), so the figures of every
optimisation step come from the same machine state. Prints wall, CPU and peak memory
(medians; peak over the runs) with ratios against the first revision, and checks that
every revision reports the same findings.

``--rescan`` times the verdict-cache rescan instead: each revision first scans the image
once into a cache of its own (untimed), then every timed run scans it again with that
cache, from a scratch working directory. ``--image`` may then be a registry reference
(``--extra=--insecure`` for a plain-HTTP test registry).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import build_image  # noqa: E402
from run import measure  # noqa: E402

REPO = BENCH.parent


def worktree(rev: str) -> tuple[str, Path]:
    """A detached worktree of ``rev`` (created once), and the full commit id."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = build_image.work_dir() / "steps" / sha[:12]
    if not (path / "imgscan").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--force", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    return sha, path


def findings_of(report: Path) -> list[Any]:
    """The findings of a JSON report, without timings."""
    return list(json.loads(report.read_text())["findings"])


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revs", nargs="+", help="git revisions, the baseline first")
    ap.add_argument("--image", default=str(build_image.work_dir() / "image-x1.tar.gz"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--rescan", action="store_true", help="time cached rescans")
    ap.add_argument("--extra", action="append", default=[], help="one more scan argument")
    a = ap.parse_args(argv)
    if Path(a.image).exists():
        a.image = str(Path(a.image).resolve())
    trees = [worktree(r) for r in a.revs]
    out = build_image.work_dir() / "steps" / "out"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Any]] = {sha: [] for sha, _ in trees}
    reports: dict[str, Path] = {}
    scratch = out / "cwd"
    scratch.mkdir(exist_ok=True)

    def command(sha: str, path: Path, report: Path) -> tuple[list[str], dict[str, str], Path]:
        env = dict(os.environ, PYTHONPATH=str(path))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once
        cmd = [sys.executable, "-m", "imgscan.cli", "scan", a.image, "--format", "json"]
        cmd += [*a.extra, "-o", str(report), "-q"]
        if not a.rescan:
            return cmd, env, path
        return [*cmd, "--cache", str(out / f"{sha[:12]}.cache")], env, scratch

    if a.rescan:  # fill each revision's cache (its cache format and keys are its own)
        for sha, path in trees:
            (out / f"{sha[:12]}.cache").unlink(missing_ok=True)
            cmd, env, cwd = command(sha, path, out / f"{sha[:12]}-prime.json")
            subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
    for rnd in range(a.repeat):
        order = trees if rnd % 2 == 0 else trees[::-1]
        for sha, path in order:
            report = out / f"{sha[:12]}-r{rnd}.json"
            cmd, env, cwd = command(sha, path, report)
            r = measure(
                cmd,
                stdout=report.with_suffix(".out"),
                stderr=report.with_suffix(".err"),
                timeout=a.timeout,
                env=env,
                cwd=cwd,
            )
            if r.rc not in (0, 1) or not report.exists():
                err = report.with_suffix(".err").read_text()[-300:]
                print(f"{sha[:12]}: failed (rc {r.rc}): {err}", file=sys.stderr)
                return 3
            runs[sha].append(r)
            reports[sha] = report
            print(f"[steps] round {rnd + 1}: {sha[:12]} {r.wall:.3f} s", file=sys.stderr)
    base = findings_of(reports[trees[0][0]])
    rows = [
        f"Image `{Path(a.image).name}`{', cached rescans' if a.rescan else ''}, "
        f"{a.repeat} alternating rounds, medians "
        "(peak memory: the highest of the rounds).",
        "",
        "| commit | subject | wall s | CPU s | peak MB (proc RSS / tree PSS) | wall × first "
        "| same findings |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    first_wall = statistics.median(r.wall for r in runs[trees[0][0]])
    for (sha, _), rev in zip(trees, a.revs, strict=True):
        subject = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%s", sha],
            capture_output=True,
            text=True,
        ).stdout.strip()
        wall = statistics.median(r.wall for r in runs[sha])
        cpu = statistics.median(r.cpu for r in runs[sha])
        rss = max(r.maxrss_mb for r in runs[sha])
        pss = max(r.tree_pss_mb for r in runs[sha])
        same = findings_of(reports[sha]) == base
        rows.append(
            f"| `{sha[:9]}` ({rev}) | {subject[:70]} | {wall:.3f} | {cpu:.3f} "
            f"| {rss:.0f} / {pss:.0f} | {wall / first_wall:.2f} | {'yes' if same else 'NO'} |"
        )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
