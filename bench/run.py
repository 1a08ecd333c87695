"""Run imgscan and rival scanners on the benchmark image; compare speed, memory and recall.

    python bench/run.py [--repeat 3] [--size-factor 1] [--ds-timeout 240] [--tmpdir DIR]
                        [--tools imgscan,kingfisher,kingfisher-tmpfs,gitleaks,detect-secrets]
                        [--cache-rescan] [--scaling]

Each round runs every tool once, in an order rotated per round (so no tool always runs on a
warm or cold page cache). Per run: wall time, CPU (user+sys of the process and its reaped
children, from os.wait4), peak RSS of the largest process (ru_maxrss) and of the whole process
tree (sampled from /proc every 20 ms), and MB/s (uncompressed image bytes / wall). Findings are
matched against the ground truth of bench/build_image.py (see bench/README.md, "Matching").
Writes bench/results/latest.json and bench/results/latest.md and prints the table.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
ALL_TOOLS = ("imgscan", "kingfisher", "kingfisher-tmpfs", "gitleaks", "detect-secrets")
SHM = Path("/dev/shm")
WARM_RUNS = 5  # cached rescans per case; the median is reported
COLD_RUNS = 3  # cold scans (each with an empty cache) that the rescans are measured against
WATCH_TAGS = 20


def log(msg: str) -> None:
    """Progress to stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measurement


@dataclass
class Run:
    """One measured process run."""

    wall: float = 0.0
    cpu: float = 0.0
    maxrss_mb: float = 0.0
    tree_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0  # proportional: pages shared by forked workers counted once
    rc: int | None = None
    timed_out: bool = False
    error: str = ""


def _pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _tree_rss_kb(root: int) -> tuple[int, int]:
    """Sums of VmRSS and of PSS over root and all its descendants (best effort, /proc).

    RSS counts a page shared by a parent and its forked workers once per process;
    PSS splits it between them, so the PSS sum is the memory the tree really holds.
    """
    rss, pss, stack, seen = 0, 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
            with contextlib.suppress(OSError, ValueError):
                pss += _pss_kb(pid)
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return rss, pss


def measure(
    cmd: list[str],
    *,
    stdout: Path,
    stderr: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Run:
    """Run cmd in its own session; wall, CPU and RSS from wait4 plus a /proc tree sampler."""
    run = Run()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
            )
        except OSError as exc:
            run.error = f"cannot start: {exc}"
            return run
        peak = [0, 0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss, pss = _tree_rss_kb(proc.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deadline = t0 + timeout
        status = rusage = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                run.timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                time.sleep(2)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        run.wall = time.monotonic() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from re-waiting
        run.rc = proc.returncode
        run.cpu = rusage.ru_utime + rusage.ru_stime
        run.maxrss_mb = rusage.ru_maxrss / 1024
        run.tree_rss_mb = peak[0] / 1024
        run.tree_pss_mb = peak[1] / 1024
    return run


# --------------------------------------------------------------------------- extraction


def extract_layers(image: Path, dest: Path) -> dict[str, Any]:
    """Extract each layer of a docker-save archive into dest/L<i>/ (+ dest/config.json)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    t0 = time.monotonic()
    plain = dest.parent / (dest.name + ".tar")
    with open(image, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        with gzip.open(image, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    else:
        plain = image
    files = nbytes = 0
    with tarfile.open(plain, "r:") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        cfg = outer.extractfile(manifest["Config"]).read()  # type: ignore[union-attr]
        # pretty-printed so each Env / history entry is on its own line
        (dest / "config.json").write_text(json.dumps(json.loads(cfg), indent=1) + "\n")
        for i, name in enumerate(manifest["Layers"]):
            root = dest / f"L{i}"
            root.mkdir()
            blob = outer.extractfile(name)
            with tarfile.open(fileobj=blob, mode="r|*") as layer:
                for m in layer:
                    rel = os.path.normpath(m.name.lstrip("/"))
                    if rel.startswith("..") or rel == ".":
                        continue
                    if os.path.basename(rel).startswith(".wh."):
                        continue
                    target = root / rel
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif m.isreg():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        data = layer.extractfile(m)
                        if data is None:
                            continue
                        with open(target, "wb") as out:
                            shutil.copyfileobj(data, out, 1 << 20)
                        files += 1
                        nbytes += m.size
                    # symlinks, hardlinks and devices carry no content of their own: skipped
    if gz:
        plain.unlink()
    return {"seconds": round(time.monotonic() - t0, 2), "files": files, "bytes": nbytes}


# --------------------------------------------------------------------------- findings


@dataclass
class Hit:
    """One finding of one tool, normalised for matching."""

    rule: str
    path: str  # normalised: no leading '/', archive members as outer!inner, '<config>'
    line: int | None
    layer: int | None = None
    value: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    extracted: bool = False  # from a scan of the extracted layers (config.json lines)
    severity: str | None = None  # imgscan only ("info" = demoted, e.g. package-owned file)


def norm_path(p: str | None) -> str:
    """Normalise a reported path for comparison."""
    if not p:
        return "<config>"
    parts = []
    for part in p.replace(" | ", "!").split("!"):
        while part.startswith(("./", "/")):
            part = part[1:] if part.startswith("/") else part[2:]
        parts.append(part)
    return "!".join(parts)


def parse_imgscan(out: Path, _: dict[str, Any]) -> list[Hit]:
    """imgscan --format json."""
    data = json.loads(out.read_text())
    hits = []
    for f in data.get("findings", []):
        if f.get("category", "secret") != "secret":
            continue  # hardening/config checks are not secret findings
        path = f.get("path")
        if f.get("location") and not path:
            path = None
        hits.append(
            Hit(
                rule=str(f.get("rule")),
                path=norm_path(path),
                line=f.get("line"),
                layer=f.get("layer"),
                sha256=f.get("secret_sha256"),
                severity=f.get("severity"),
            )
        )
    return hits


def parse_kingfisher(out: Path, ctx: dict[str, Any]) -> list[Hit]:
    """kingfisher -f json: paths are 'archive | inner | member'."""
    data = json.loads(out.read_text())
    hits = []
    for f in data.get("findings", []):
        fi = f.get("finding", {})
        path = str(fi.get("path", ""))
        path = path.split(" | ", 1)[1] if " | " in path else path
        if ctx["config_digest"] in path:
            path = ""
        snippet = fi.get("snippet")
        hits.append(
            Hit(
                rule=str(f.get("rule", {}).get("id")),
                path=norm_path(path),
                line=fi.get("line"),
                value=snippet,
            )
        )
    return hits


def _split_layer(file: str) -> tuple[str, int | None]:
    m = re.match(r"^(?:\./)?L(\d+)/(.*)$", file)
    if m:
        return m.group(2), int(m.group(1))
    if file.lstrip("./") == "config.json":
        return "", None
    return file, None


def parse_gitleaks(out: Path, ctx: dict[str, Any]) -> list[Hit]:
    """gitleaks -f json, paths relative to the extraction dir."""
    data = json.loads(out.read_text() or "[]")
    hits = []
    for f in data:
        file = str(f.get("File", ""))
        with contextlib.suppress(ValueError):
            file = os.path.relpath(file, ctx["extract_dir"]) if os.path.isabs(file) else file
        path, layer = _split_layer(file)
        hits.append(
            Hit(
                rule=str(f.get("RuleID")),
                path=norm_path(path),
                line=f.get("StartLine"),
                layer=layer,
                value=f.get("Secret") or f.get("Match"),
                extracted=True,
            )
        )
    return hits


def parse_detect_secrets(outs: list[Path], _: dict[str, Any]) -> list[Hit]:
    """detect-secrets scan JSON (one per scanned directory); secrets are sha1-hashed."""
    hits = []
    for out in outs:
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            continue
        for file, items in data.get("results", {}).items():
            path, layer = _split_layer(file)
            for it in items:
                hits.append(
                    Hit(
                        rule=str(it.get("type")),
                        path=norm_path(path),
                        line=it.get("line_number"),
                        layer=layer,
                        sha1=it.get("hashed_secret"),
                        extracted=True,
                    )
                )
    return hits


# --------------------------------------------------------------------------- matching


def _variants(values: list[str]) -> list[str]:
    """A value as written, plus the forms tools report (PEM without newlines, body, unescaped)."""
    out: list[str] = []
    for v in values:
        cands = [v, v.strip(), v.replace("\\n", "\n").strip()]
        if "-----BEGIN" in v:
            w = v.replace("\\n", "\n").strip()
            cands += [w.replace("\n", ""), "".join(x for x in w.splitlines() if "-----" not in x)]
        with contextlib.suppress(ValueError):
            dec = base64.b64decode(v, validate=True).decode()
            if "-----BEGIN" in dec:
                cands.append(dec.strip())
        for c in cands:
            if c and c not in out:
                out.append(c)
    return out


@dataclass
class TruthItem:
    """A ground-truth record prepared for matching."""

    rec: dict[str, Any]
    path: str
    variants: list[str]
    sha256: set[str] = field(default_factory=set)
    sha1: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, rec: dict[str, Any]) -> TruthItem:
        """Prepare one record."""
        vs = _variants(rec["values"])
        return cls(
            rec=rec,
            path=norm_path(None if rec["path"] == "<config>" else rec["path"]),
            variants=vs,
            sha256={hashlib.sha256(v.encode()).hexdigest() for v in vs},
            sha1={hashlib.sha1(v.encode()).hexdigest() for v in vs},
        )

    def matches(self, h: Hit) -> bool:
        """Does hit report this planted value? (see README: Matching)."""
        if h.sha256 and h.sha256 in self.sha256:
            return True
        if h.sha1 and h.sha1 in self.sha1:
            return True
        outer = self.path.split("!")[0]
        same_path = h.path == self.path
        if same_path and h.layer is not None and self.rec["layer"] is not None:
            same_path = h.layer == self.rec["layer"]
        if h.value:
            fv = h.value.replace("\\n", "\n").strip()
            for v in self.variants:
                if len(v) < 12 and not (same_path or h.path == outer):
                    continue
                if fv == v or v in fv or (len(fv) >= 16 and fv in v):
                    return True
        if same_path:
            line, first, last = h.line, self.rec["line"], self.rec["line_end"]
            if h.extracted and self.rec.get("extract_line"):
                first = last = self.rec["extract_line"]
            if first is None:  # binary (.pyc): the file holds one secret; config: no lines
                return bool(self.rec["location"] == "pyc")
            if line is not None:
                lo = first - 1 if self.rec["kind"].startswith("aws-") else first
                return bool(lo <= line <= last)
        return False


def score(hits: list[Hit], truth: dict[str, Any]) -> dict[str, Any]:
    """Recall per state, decoy false positives and unmatched findings of one tool."""
    secrets = [TruthItem.of(r) for r in truth["secrets"]]
    decoys = [TruthItem.of(r) for r in truth["decoys"]]
    secret_paths = {t.path.split("!")[0] for t in secrets}
    decoy_paths = {t.path.split("!")[0] for t in decoys} - secret_paths
    found: set[str] = set()
    decoy_hit: set[str] = set()
    planted_fp: list[str] = []
    extra: list[str] = []
    vendor = vendor_info = 0
    vendor_rules: dict[str, int] = {}
    for h in hits:
        ok = [t.rec["id"] for t in secrets if t.matches(h)]
        if ok:
            found.update(ok)
            continue
        bad = [t.rec["id"] for t in decoys if t.matches(h)]
        if bad:
            decoy_hit.update(bad)
        elif h.path.split("!")[0] in decoy_paths:
            planted_fp.append(f"{h.path}:{h.line} {h.rule}")
        elif h.path.split("!")[0] in secret_paths or h.path == "<config>":
            extra.append(f"{h.path}:{h.line} {h.rule}")
        elif h.severity == "info":
            vendor_info += 1
        else:
            vendor += 1
            vendor_rules[h.rule] = vendor_rules.get(h.rule, 0) + 1

    def recall(pred: Any) -> str:
        sel = [t.rec["id"] for t in secrets if pred(t.rec)]
        return f"{sum(1 for i in sel if i in found)}/{len(sel)}"

    return {
        "findings": len(hits),
        "recall": round(len(found) / len(secrets), 3),
        "found": f"{len(found)}/{len(secrets)}",
        "present": recall(lambda r: r["state"] == "present"),
        "deleted": recall(lambda r: r["state"] == "deleted"),
        "overwritten": recall(lambda r: r["state"] == "overwritten"),
        "archive": recall(lambda r: r["location"] == "archive-member"),
        "pyc": recall(lambda r: r["location"] == "pyc"),
        "config": recall(lambda r: r["location"] in ("env", "history")),
        "decoy_fp": len(decoy_hit),
        "decoys_hit": sorted(decoy_hit),
        "planted_fp": len(planted_fp),
        "planted_fp_list": planted_fp[:40],
        "extra_in_secret_files": len(extra),
        "extra_list": extra[:40],
        "vendor_findings": vendor,
        "vendor_findings_info": vendor_info,
        "vendor_rules": dict(sorted(vendor_rules.items(), key=lambda kv: -kv[1])[:15]),
        "found_ids": sorted(found),
    }


# --------------------------------------------------------------------------- tools


def _help(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout + p.stderr


def _source_stamp() -> str:
    """A digest of what a pip install of the repo depends on: metadata, code and rules."""
    h = hashlib.sha256()
    files = [REPO / "pyproject.toml", *sorted((REPO / "imgscan").rglob("*.py"))]
    files += sorted((REPO / "signatures").glob("*.toml"))
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def installed_venv() -> Path:
    """The python of a venv with imgscan pip-installed (not editable), as a user has it.

    Built once into bench/.work/venv with the ``fast`` extra; imgscan itself is
    reinstalled (without its dependencies) whenever its source changes. This keeps
    what is not imgscan's out of its figures: a dev checkout's editable-install finder
    and whatever .pth files the machine's own site-packages run on every start.
    """
    venv = build_image.work_dir() / "venv"
    py = venv / "bin" / "python"
    stamp = venv / "imgscan.stamp"
    want = _source_stamp()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not py.exists():
        log("bench venv: creating, installing imgscan[fast] and its dependencies ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"{REPO}[fast]"], env=env, check=True
        )
    else:
        log("bench venv: reinstalling imgscan from the changed source ...")
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(REPO)],
            env=env,
            check=True,
        )
    stamp.write_text(want)
    return py


class Bench:
    """State of one benchmark session."""

    def __init__(self, args: argparse.Namespace, meta: dict[str, Any]) -> None:
        self.args = args
        self.meta = meta
        self.image = Path(meta["image"])
        self.truth = json.loads(Path(meta["truth"]).read_text())
        self.tmp = Path(args.tmpdir)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.out = build_image.work_dir() / "out"
        self.out.mkdir(exist_ok=True)
        self.extract_dir = self.tmp / f"extract-x{meta['size_factor']}"
        self.env = dict(os.environ, TMPDIR=str(self.tmp))
        # As installed by pip: with the bytecode compiled (pip does it at install time), not
        # recompiled from source on every start, which PYTHONDONTWRITEBYTECODE would force.
        self.imgscan_env = dict(self.env)
        self.imgscan_env.pop("PYTHONDONTWRITEBYTECODE", None)
        if args.imgscan_from == "venv":  # the console script pip wrote, as a user runs it
            self.imgscan = [str(installed_venv().parent / "imgscan")]
        else:
            self.imgscan = [sys.executable, "-m", "imgscan.cli"]
            self.imgscan_env["PYTHONPATH"] = str(REPO)
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", str(REPO / "imgscan")],
                env=self.imgscan_env,
                stdout=subprocess.DEVNULL,
                check=False,
            )
        with tarfile.open(self.image, "r:*") as tf:
            m = json.load(tf.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        self.ctx = {
            "config_digest": m["Config"].rsplit("/", 1)[-1],
            "extract_dir": str(self.extract_dir),
        }
        self.extraction: dict[str, Any] | None = None
        # imgscan runs in a working directory of its own, as in a user's CI job: not in
        # this repository, whose pyproject.toml it would read for a [tool.imgscan] table.
        self.cwd = self.tmp / "cwd"
        self.cwd.mkdir(exist_ok=True)

    def imgscan_cmd(self, out: Path, extra: list[str] | None = None) -> list[str]:
        """The imgscan command line (JSON to a file)."""
        return [
            *self.imgscan,
            "scan",
            str(self.image),
            "--format",
            "json",
            "-o",
            str(out),
            "-q",
            *(extra or []),
        ]

    def run_tool(self, tool: str, rnd: int) -> tuple[Run, list[Path], str]:
        """Run one tool once; returns the measurement, its output files and a status."""
        o = self.out / f"{tool}-x{self.meta['size_factor']}-r{rnd}"
        err = o.with_suffix(".err")
        t = self.args.timeout
        if tool == "imgscan":
            out = o.with_suffix(".json")
            out.unlink(missing_ok=True)
            r = measure(
                self.imgscan_cmd(out),
                stdout=o.with_suffix(".stdout"),
                stderr=err,
                timeout=t,
                env=self.imgscan_env,
                cwd=self.cwd,
            )
            return r, [out], self._status(r, out, ok_rc=(0, 1), err=err)
        if tool in ("kingfisher", "kingfisher-tmpfs"):
            env = self.env
            if tool == "kingfisher-tmpfs":
                if not SHM.is_dir():
                    return Run(error="no /dev/shm"), [], "skipped: no /dev/shm"
                kf_tmp = SHM / "imgscan-bench-kf"
                kf_tmp.mkdir(exist_ok=True)
                env = dict(self.env, TMPDIR=str(kf_tmp))
            out = o.with_suffix(".json")
            out.unlink(missing_ok=True)
            cmd = [
                "kingfisher",
                "scan",
                "docker",
                "--archive",
                str(self.image),
                "-n",
                "--no-update-check",
                "-f",
                "json",
                "-o",
                str(out),
            ]
            r = measure(cmd, stdout=o.with_suffix(".stdout"), stderr=err, timeout=t, env=env)
            return r, [out], self._status(r, out, ok_rc=(0, 200, 205), err=err)
        self.ensure_extracted()
        if tool == "gitleaks":
            out = o.with_suffix(".json")
            out.unlink(missing_ok=True)
            cmd = [
                "gitleaks",
                "dir",
                str(self.extract_dir),
                "-f",
                "json",
                "-r",
                str(out),
                "--no-banner",
                "--exit-code",
                "0",
                "--max-archive-depth",
                "2",
            ]
            r = measure(cmd, stdout=o.with_suffix(".stdout"), stderr=err, timeout=t, env=self.env)
            return r, [out], self._status(r, out, ok_rc=(0,), err=err)
        if tool == "detect-secrets":
            return self._run_detect_secrets(o)
        raise SystemExit(f"unknown tool {tool}")

    def _status(self, r: Run, out: Path, ok_rc: tuple[int, ...], err: Path | None = None) -> str:
        why = ""
        if err is not None:
            with contextlib.suppress(OSError):
                tail = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
                why = f": {tail[-1].strip()[:160]}" if tail else ""
        if r.error:
            return f"error: {r.error}"
        if r.timed_out:
            return f"timeout after {self.args.timeout:.0f}s"
        if r.rc not in ok_rc:
            return f"failed (exit {r.rc}){why}"
        try:
            json.loads(out.read_text() or "[]")
        except (OSError, ValueError):
            return f"failed (no JSON report){why}"
        return "ok"

    def _run_detect_secrets(self, o: Path) -> tuple[Run, list[Path], str]:
        """detect-secrets per extracted directory, smallest first, within --ds-timeout overall."""

        def size(p: Path) -> int:
            if p.is_file():
                return p.stat().st_size
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

        dirs = [p for p in self.extract_dir.iterdir() if p.is_dir()]
        items = [self.extract_dir / "config.json", *sorted(dirs, key=size)]
        sizes = {p: size(p) for p in items}
        total = Run()
        outs: list[Path] = []
        deadline = time.monotonic() + self.args.ds_timeout
        done_bytes, done_items = 0, 0
        for p in items:
            left = deadline - time.monotonic()
            if left <= 1:
                total.timed_out = True
                break
            out = o.parent / f"{o.name}-{p.name}.json"
            r = measure(
                ["detect-secrets", "scan", "--all-files", p.name],
                stdout=out,
                stderr=o.with_suffix(".err"),
                timeout=left,
                env=self.env,
                cwd=self.extract_dir,
            )
            total.wall += r.wall
            total.cpu += r.cpu
            total.maxrss_mb = max(total.maxrss_mb, r.maxrss_mb)
            total.tree_rss_mb = max(total.tree_rss_mb, r.tree_rss_mb)
            total.tree_pss_mb = max(total.tree_pss_mb, r.tree_pss_mb)
            if r.timed_out:
                total.timed_out = True
                break
            if r.rc != 0:
                return total, outs, f"failed (exit {r.rc} on {p.name})"
            outs.append(out)
            done_bytes += sizes[p]
            done_items += 1
        if total.timed_out:
            frac = done_bytes / max(1, sum(sizes.values()))
            status = (
                f"partial (timeout after {self.args.ds_timeout:.0f}s): {done_items}/"
                f"{len(items)} dirs, {frac:.0%} of bytes"
            )
        else:
            status = "ok"
        return total, outs, status

    def ensure_extracted(self) -> None:
        """Extract the layers once for the directory scanners (timed separately)."""
        if self.extraction is None:
            log(f"extracting layers into {self.extract_dir} ...")
            self.extraction = extract_layers(self.image, self.extract_dir)
            log(f"extracted in {self.extraction['seconds']} s")
            lines = (self.extract_dir / "config.json").read_text().splitlines()
            for rec in self.truth["secrets"] + self.truth["decoys"]:
                if rec["path"] == "<config>":
                    at = [i for i, ln in enumerate(lines, 1) if rec["values"][0] in ln]
                    rec["extract_line"] = at[0] if at else None

    def parse(self, tool: str, outs: list[Path]) -> list[Hit]:
        """Normalised findings of one tool run."""
        if tool == "imgscan":
            return parse_imgscan(outs[0], self.ctx)
        if tool.startswith("kingfisher"):
            return parse_kingfisher(outs[0], self.ctx)
        if tool == "gitleaks":
            return parse_gitleaks(outs[0], self.ctx)
        return parse_detect_secrets(outs, self.ctx)

    def cache_rescan(self) -> dict[str, Any]:
        """Cold scan with an empty verdict cache, then a rescan; their wall-time ratio."""
        h = _help([*self.imgscan, "scan", "--help"], self.imgscan_env)
        flag = "--cache-dir" if "--cache-dir" in h else "--cache" if "--cache " in h else None
        if flag is None:
            return {"status": "not available (imgscan scan has no --cache-dir / --cache)"}
        cache = self.tmp / ("verdict-cache" if flag == "--cache-dir" else "verdict-cache.sqlite")
        _remove(cache)
        res: dict[str, Any] = {"flag": flag, "warm_runs": WARM_RUNS}
        # "layers": the same layers packed another way (each blob gzipped, outer tar plain):
        # a new image to the cache whose layers (by diff_id) are all known, as when a
        # registry tag is rebuilt with only its config changed. On local disk each layer is
        # then inflated and hashed to check it is the layer its diff_id claims.
        # "layers_copy": that archive again under another name: a new image whose blobs
        # the cache knows by digest (hashed, not inflated); what is left is the assembly.
        lg = build_image.build(1, "layers-gzip", build_image.DEFAULT_PACKAGES, 1337, False)
        copy = self.tmp / "layers-gzip-copy.tar"
        shutil.copyfile(lg["image"], copy)
        for phase in ("cold", "warm", "layers", "layers_copy"):
            out = self.out / f"imgscan-cache-{phase}.json"
            cmd = self.imgscan_cmd(out, [flag, str(cache)])
            if phase == "layers":
                cmd[cmd.index(str(self.image))] = str(lg["image"])
            elif phase == "layers_copy":
                cmd[cmd.index(str(self.image))] = str(copy)
            runs = {"cold": COLD_RUNS, "warm": WARM_RUNS}.get(phase, 1)
            empty = functools.partial(_remove, cache) if phase == "cold" else None
            res[phase] = self._timed_median(cmd, out, runs, before=empty)
        copy.unlink(missing_ok=True)
        if res["cold"]["status"] == res["warm"]["status"] == "ok" and res["cold"]["wall"]:
            res["ratio"] = round(res["warm"]["wall"] / res["cold"]["wall"], 3)
            for phase in ("layers", "layers_copy"):
                if res[phase]["status"] == "ok":
                    res[f"{phase}_ratio"] = round(res[phase]["wall"] / res["cold"]["wall"], 3)
            res["status"] = "ok"
        else:
            res["status"] = "failed"
        with contextlib.suppress(OSError):
            _remove(cache)
        res["registry"] = self.registry_rescan(flag)
        return res

    def _timed_median(
        self, cmd: list[str], out: Path, runs: int, before: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """``runs`` measured runs (``before`` each); the median one's figures, with every
        run's wall time."""
        got = []
        for _ in range(runs):
            if before is not None:
                before()
            got.append(self._timed_imgscan(cmd, out))
        if runs == 1:
            return got[0]
        ok = sorted((g for g in got if g["status"] == "ok"), key=lambda g: g["wall"])
        pick = dict(ok[len(ok) // 2]) if len(ok) == runs else dict(got[-1])
        pick["walls"] = [g["wall"] for g in got]
        return pick

    def _timed_imgscan(self, cmd: list[str], out: Path) -> dict[str, Any]:
        """One measured imgscan run writing ``out``: wall, CPU, status and recall."""
        r = measure(
            cmd,
            stdout=out.with_suffix(".stdout"),
            stderr=out.with_suffix(".err"),
            timeout=self.args.timeout,
            env=self.imgscan_env,
            cwd=self.cwd,
        )
        st = self._status(r, out, ok_rc=(0, 1), err=out.with_suffix(".err"))
        res: dict[str, Any] = {"wall": round(r.wall, 3), "cpu": round(r.cpu, 3), "status": st}
        if st == "ok":
            hits = parse_imgscan(out, self.ctx)
            res["findings"] = len(hits)
            res["recall"] = score(hits, self.truth)["recall"]
        return res

    def registry_rescan(self, flag: str) -> dict[str, Any]:
        """The watch workflow's case: the image in a registry (a real docker-registry on
        127.0.0.1), scanned cold with an empty cache, then again: only the manifest and
        config are fetched, and the verdict cache answers for everything else."""
        sys.path.insert(0, str(REPO))
        try:
            from imgscan.sources.archive import open_path
            from imgscan.sources.base import SourceOptions
            from imgscan.sources.push import push_image
            from tests.infra.registry import RegistryServer, registry_available
        except ImportError as exc:
            return {"status": f"not available ({exc})"}
        if registry_available():
            return {"status": f"not available ({registry_available()})"}
        lg = build_image.build(1, "layers-gzip", build_image.DEFAULT_PACKAGES, 1337, False)
        cache = self.tmp / "verdict-cache-registry.sqlite"
        _remove(cache)
        res: dict[str, Any] = {}
        with RegistryServer(mode="plain") as reg:
            ref = f"{reg.host}/bench/app:x1"
            with open_path(lg["image"], SourceOptions()) as image:
                push_image(image, ref, insecure=True, config_bytes=image.config_bytes)
            for phase in ("cold", "warm"):
                out = self.out / f"imgscan-registry-{phase}.json"
                cmd = self.imgscan_cmd(out, [flag, str(cache), "--insecure"])
                cmd[cmd.index(str(self.image))] = ref
                runs = WARM_RUNS if phase == "warm" else COLD_RUNS
                empty = functools.partial(_remove, cache) if phase == "cold" else None
                res[phase] = self._timed_median(cmd, out, runs, before=empty)
            res["watch"] = self._watch_rescan(reg.host, lg["image"], open_path, push_image)
        _remove(cache)
        if res["cold"]["status"] == res["warm"]["status"] == "ok" and res["cold"]["wall"]:
            res["ratio"] = round(res["warm"]["wall"] / res["cold"]["wall"], 3)
            res["status"] = "ok"
        else:
            res["status"] = "failed"
        return res

    def _watch_rescan(
        self, host: str, image_path: str, open_path: Any, push: Any
    ) -> dict[str, Any]:
        """Workflow 3: ``imgscan watch`` over WATCH_TAGS tags of the image in the registry,
        first with empty state, then again with nothing new (median of 3)."""
        from imgscan.sources.base import SourceOptions

        tags = [f"prod-{i:02d}" for i in range(WATCH_TAGS)]
        with open_path(image_path, SourceOptions()) as image:
            for t in tags:  # the blobs are there already: each tag is one manifest PUT
                push(image, f"{host}/bench/app:{t}", insecure=True, config_bytes=image.config_bytes)
        wdir = self.tmp / "watch"
        shutil.rmtree(wdir, ignore_errors=True)
        wdir.mkdir(parents=True)
        conf = wdir / "watch.toml"
        conf.write_text(
            'state = "state.db"\ncache = "cache.db"\noutput_dir = "reports"\n'
            '[policy]\nfail_on = "critical"\n'
            f'[[target]]\nregistry = "{host}"\nrepository = "bench/app"\n'
            'tags = ["prod-*"]\ninsecure = true\n'
        )
        cmd = [*self.imgscan, "watch", "--config", str(conf), "-q"]
        res: dict[str, Any] = {"tags": len(tags)}
        for phase, runs in (("cold", 1), ("warm", 3)):
            walls: list[float] = []
            for i in range(runs):
                r = measure(
                    cmd,
                    stdout=wdir / f"{phase}{i}.out",
                    stderr=wdir / f"{phase}{i}.err",
                    timeout=self.args.timeout,
                    env=self.imgscan_env,
                    cwd=wdir,
                )
                if r.rc not in (0, 1):
                    err = (wdir / f"{phase}{i}.err").read_text(errors="replace").strip()
                    return {"status": f"watch failed (rc {r.rc}): {err[-200:]}"}
                walls.append(round(r.wall, 3))
            res[phase] = {"wall": med(walls), "walls": walls}
        res["summary"] = (wdir / "warm0.out").read_text(errors="replace").strip().splitlines()[:2]
        res["per_tag_warm"] = round(res["warm"]["wall"] / len(tags), 4)
        res["status"] = "ok"
        shutil.rmtree(wdir, ignore_errors=True)
        return res


def _remove(path: Path) -> None:
    """Delete a verdict cache (a file or a directory) if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- reporting


def _report_files(path: Path) -> int | None:
    """The number of files an imgscan JSON report says the image holds."""
    try:
        return int(json.loads(path.read_text())["stats"]["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def med(xs: list[float]) -> float:
    """Median (0 for none)."""
    return float(statistics.median(xs)) if xs else 0.0


def render_md(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    m = res["image"]
    lines = [
        f"# imgscan benchmark ({res['date']})",
        "",
        f"Image `{Path(m['image']).name}`: {m['uncompressed_bytes'] / 1e6:.0f} MB uncompressed "
        f"({m['image_bytes'] / 1e6:.0f} MB gzip), {m['layers']} layers, {m['secrets']} planted "
        f"secrets, {m['decoys']} decoys; rootfs: {m['rootfs_origin']}; image build "
        f"{m['build_seconds']} s. Host: {res['host']['cpus']} CPUs, TMPDIR={res['tmpdir']}. "
        f"Median of {res['repeat']} round(s); ratios vs kingfisher (TMPDIR as above) and "
        "kingfisher-tmpfs (TMPDIR=/dev/shm). imgscan ran "
        + (
            "pip-installed in a venv (bench/.work/venv)."
            if res.get("imgscan_from") == "venv"
            else "from the source tree (PYTHONPATH)."
        ),
        "",
        "| tool | status | wall s | CPU s | peak MB (proc RSS / tree RSS / tree PSS) | MB/s "
        "| wall × kf "
        "| wall × kf-tmpfs | CPU × kf | recall | present | deleted | overwritten | archive | pyc "
        "| config | decoy FP | planted-file FP | vendor findings |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|---:|---:|---:|",
    ]
    for name, t in res["tools"].items():
        s = t.get("score") or {}
        wall = f"{t['wall']:.2f}" if t.get("wall") is not None else "-"
        if t.get("extract_seconds"):
            wall += f" (+{t['extract_seconds']:.1f} extract)"
        lines.append(
            "| {n} | {st} | {w} | {c} | {r} | {mbs} | {rw} | {rt} | {rc} | {rec} | {pr} | {de} "
            "| {ov} | {ar} | {py} | {cf} | {df} | {pf} | {vf} |".format(
                n=name,
                st=t["status"],
                w=wall,
                c=f"{t['cpu']:.2f}" if t.get("cpu") is not None else "-",
                r=(
                    f"{t['maxrss_mb']:.0f} / {t['tree_rss_mb']:.0f} / {t.get('tree_pss_mb', 0):.0f}"
                    if t.get("maxrss_mb")
                    else "-"
                ),
                mbs=f"{t['mb_s']:.1f}" if t.get("mb_s") else "-",
                rw=f"{t['wall_vs_kf']:.2f}" if t.get("wall_vs_kf") else "-",
                rt=f"{t['wall_vs_kf_tmpfs']:.2f}" if t.get("wall_vs_kf_tmpfs") else "-",
                rc=f"{t['cpu_vs_kf']:.2f}" if t.get("cpu_vs_kf") else "-",
                rec=f"{s['recall']:.0%} ({s['found']})" if s else "-",
                pr=s.get("present", "-"),
                de=s.get("deleted", "-"),
                ov=s.get("overwritten", "-"),
                ar=s.get("archive", "-"),
                py=s.get("pyc", "-"),
                cf=s.get("config", "-"),
                df=s.get("decoy_fp", "-"),
                pf=s.get("planted_fp", "-"),
                vf=s.get("vendor_findings", "-"),
            )
        )
    cr = res.get("cache_rescan")
    if cr:
        lines += ["", f"Verdict-cache rescan: {json.dumps(cr)}"]
    for key in ("scaling", "scaling_app"):
        if res.get(key):
            lines += ["", f"Scaling (imgscan): {json.dumps(res[key])}"]
    # per-secret matrix
    names = [n for n, t in res["tools"].items() if t.get("score")]
    lines += [
        "",
        "## Planted secrets found per tool",
        "",
        "| id | kind | state | where | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for rec in res["truth_secrets"]:
        marks = ["✔" if rec["id"] in res["tools"][n]["score"]["found_ids"] else "·" for n in names]
        lines.append(
            f"| {rec['id']} | {rec['kind']} | {rec['state']} | `{rec['path']}` | "
            + " | ".join(marks)
            + " |"
        )
    return "\n".join(lines) + "\n"


def readme_table(res: dict[str, Any]) -> str:
    """The short results table for bench/README.md (between the results markers)."""
    m = res["image"]
    rows = [
        f"{res['date']}, `--repeat {res['repeat']}`, {m['uncompressed_bytes'] / 1e6:.0f} MB image "
        f"({m['image_bytes'] / 1e6:.0f} MB gzip), TMPDIR={res['tmpdir']} (kingfisher-tmpfs: "
        "/dev/shm), medians:",
        "",
        "| tool | wall s | CPU s | peak MB (proc RSS / tree RSS / tree PSS) | MB/s "
        "| wall × kf (disk / tmpfs) "
        "| recall | deleted | overwritten | archive / pyc / config | decoy FP | vendor findings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in res["tools"].items():
        s = t.get("score")
        if not s or t.get("wall") is None:
            rows.append(f"| {name} | {t['status']} |" + " - |" * 10)
            continue
        wall = f"{t['wall']:.2f}"
        if t.get("extract_seconds"):
            wall += f" (+{t['extract_seconds']:.1f} extract)"
        ratio = " / ".join(
            f"{t[k]:.2f}" if t.get(k) else "-" for k in ("wall_vs_kf", "wall_vs_kf_tmpfs")
        )
        rows.append(
            f"| {name} | {wall} | {t['cpu']:.2f} | {t['maxrss_mb']:.0f} / {t['tree_rss_mb']:.0f} "
            f"/ {t.get('tree_pss_mb', 0):.0f} "
            f"| {t['mb_s']:.1f} | {ratio} | {s['recall']:.0%} ({s['found']}) | {s['deleted']} "
            f"| {s['overwritten']} | {s['archive']} / {s['pyc']} / {s['config']} "
            f"| {s['decoy_fp']}/{len(res['truth_decoys'])} | {s['vendor_findings']} |"
        )
    cr = res.get("cache_rescan")
    if cr:
        rows += ["", f"- verdict-cache rescan: {cr.get('status')}"]
        if cr.get("ratio") is not None:
            rows[-1] += (
                f", cold {cr['cold']['wall']:.2f} s, same archive again {cr['warm']['wall']:.3f} s "
                f"(median of {cr.get('warm_runs', 1)}), ratio {cr['ratio']} (target ≤ 0.05); "
                f"same layers gzip'd in a new archive (each layer inflated and checked): "
                f"{cr['layers']['wall']:.2f} s, ratio {cr.get('layers_ratio')}; that archive "
                f"copied (blobs known by digest): {cr['layers_copy']['wall']:.2f} s, ratio "
                f"{cr.get('layers_copy_ratio')}"
            )
        rr = cr.get("registry") or {}
        if rr.get("ratio") is not None:
            rows += [
                "- registry rescan (docker-registry on 127.0.0.1): "
                f"cold {rr['cold']['wall']:.2f} s, warm {rr['warm']['wall']:.3f} s, "
                f"ratio {rr['ratio']} (target ≤ 0.05)"
            ]
            wr = rr.get("watch") or {}
            if wr.get("status") == "ok":
                rows[-1] += (
                    f"; `imgscan watch` over {wr['tags']} tags: "
                    f"first run {wr['cold']['wall']:.2f} s, "
                    f"nothing new {wr['warm']['wall']:.2f} s "
                    f"({wr['per_tag_warm'] * 1000:.0f} ms a tag)"
                )
            elif wr:
                rows[-1] += f"; watch: {wr.get('status')}"
        elif rr:
            rows += [f"- registry rescan: {rr.get('status')}"]
    for sc in (res.get("scaling"), res.get("scaling_app")):
        if not sc:
            continue
        rows += [
            f"- scaling ({sc.get('scale', 'app')} 10x image, "
            f"{sc['x10_bytes'] / 1e6:.0f} MB, byte ratio {sc['byte_ratio']}, file ratio "
            f"{sc.get('file_ratio')}): {sc['x10_status']}, {sc['x10_wall']} s, time ratio "
            f"{sc['time_ratio']} (target ≤ 11), peak memory: largest process "
            f"{sc.get('x10_maxrss_mb', '-')} MB RSS, tree {sc['x10_tree_rss_mb']} MB RSS / "
            f"{sc.get('x10_tree_pss_mb', '-')} MB PSS (target ≤ 300)"
        ]
    return "\n".join(rows) + "\n"


def update_readme(res: dict[str, Any]) -> None:
    """Replace the results section of bench/README.md by this run's table."""
    path = BENCH / "README.md"
    text = path.read_text()
    start, end = "<!-- results:start -->\n", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        path.write_text(head + start + readme_table(res) + end + rest.split(end, 1)[1])


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--tools", default=",".join(ALL_TOOLS))
    ap.add_argument("--size-factor", type=int, default=1)
    ap.add_argument("--layout", choices=("gzip", "layers-gzip"), default="gzip")
    ap.add_argument("--timeout", type=float, default=300, help="per tool run, seconds")
    ap.add_argument("--ds-timeout", type=float, default=240, help="detect-secrets, seconds")
    ap.add_argument(
        "--ds-repeat",
        type=int,
        default=1,
        help="rounds in which detect-secrets runs (it is ~50x slower)",
    )
    ap.add_argument(
        "--tmpdir",
        default=str(Path(tempfile.gettempdir()) / "imgscan-bench"),
        help="TMPDIR for every tool (kingfisher-tmpfs: /dev/shm) and the extraction dir",
    )
    ap.add_argument("--cache-rescan", action="store_true", help="imgscan verdict-cache rescan")
    ap.add_argument(
        "--scaling", action="store_true", help="also time imgscan on the --size-factor 10 image"
    )
    ap.add_argument(
        "--imgscan-from",
        choices=("venv", "source"),
        default="venv",
        help="run imgscan pip-installed in bench/.work/venv (default) or from this source tree",
    )
    ap.add_argument("--keep-extract", action="store_true")
    ap.add_argument("--update-readme", action="store_true", help="write the table into README")
    a = ap.parse_args()
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    for t in tools:
        if t not in ALL_TOOLS:
            ap.error(f"unknown tool {t!r} (choose from {', '.join(ALL_TOOLS)})")

    meta = build_image.build(a.size_factor, a.layout, build_image.DEFAULT_PACKAGES, 1337, False)
    b = Bench(a, meta)
    runs: dict[str, list[Run]] = {t: [] for t in tools}
    statuses: dict[str, list[str]] = {t: [] for t in tools}
    scores: dict[str, dict[str, Any]] = {}
    for rnd in range(a.repeat):
        order = tools[rnd % len(tools) :] + tools[: rnd % len(tools)]
        for tool in order:
            if tool == "detect-secrets" and rnd >= a.ds_repeat:
                continue
            log(f"round {rnd + 1}/{a.repeat}: {tool} ...")
            r, outs, st = b.run_tool(tool, rnd)
            runs[tool].append(r)
            statuses[tool].append(st)
            log(f"  {tool}: {st}, wall {r.wall:.2f}s cpu {r.cpu:.2f}s rss {r.maxrss_mb:.0f}MB")
            usable = st == "ok" or st.startswith("partial")
            if tool not in scores and usable:
                try:
                    scores[tool] = score(b.parse(tool, outs), b.truth)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    statuses[tool][-1] = f"unparseable output: {exc}"
    mb = meta["uncompressed_bytes"] / 1e6
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": {"cpus": os.cpu_count()},
        "tmpdir": str(b.tmp),
        "imgscan_from": a.imgscan_from,
        "repeat": a.repeat,
        "image": meta,
        "extraction": b.extraction,
        "tools": {},
        "truth_decoys": [r["id"] for r in b.truth["decoys"]],
        "truth_secrets": [
            {k: r[k] for k in ("id", "kind", "state", "path")} for r in b.truth["secrets"]
        ],
    }
    for tool in tools:
        good = [
            r
            for r, s in zip(runs[tool], statuses[tool], strict=True)
            if s == "ok" or s.startswith("partial")
        ]
        entry: dict[str, Any] = {
            "status": statuses[tool][-1] if statuses[tool] else "not run",
            "runs": [asdict(r) for r in runs[tool]],
        }
        if good:
            entry.update(
                wall=med([r.wall for r in good]),
                cpu=med([r.cpu for r in good]),
                maxrss_mb=max(r.maxrss_mb for r in good),
                tree_rss_mb=max(r.tree_rss_mb for r in good),
                tree_pss_mb=max(r.tree_pss_mb for r in good),
                mb_s=mb / med([r.wall for r in good]) if med([r.wall for r in good]) else None,
            )
            if tool in ("gitleaks", "detect-secrets") and b.extraction:
                entry["extract_seconds"] = b.extraction["seconds"]
        entry["score"] = scores.get(tool)
        res["tools"][tool] = entry
    kf = res["tools"].get("kingfisher", {})
    kft = res["tools"].get("kingfisher-tmpfs", {})
    for t in res["tools"].values():
        if kf.get("wall") and t.get("wall"):
            t["wall_vs_kf"] = t["wall"] / kf["wall"]
            t["cpu_vs_kf"] = t["cpu"] / kf["cpu"] if kf.get("cpu") else None
        if kft.get("wall") and t.get("wall"):
            t["wall_vs_kf_tmpfs"] = t["wall"] / kft["wall"]
    if a.cache_rescan:
        log("verdict-cache rescan ...")
        res["cache_rescan"] = b.cache_rescan()
    if a.scaling:
        one = res["tools"].get("imgscan", {})
        one_files = _report_files(b.out / "imgscan-x1-r0.json")
        for scale in ("uniform", "app"):
            log(f"scaling: building/timing the x10 image ({scale}) ...")
            m10 = build_image.build(
                10, a.layout, build_image.DEFAULT_PACKAGES, 1337, False, scale=scale
            )
            a10 = argparse.Namespace(**{**vars(a), "size_factor": 10})
            b10 = Bench(a10, m10)
            r10, outs10, st10 = b10.run_tool("imgscan", 0)
            files10 = _report_files(outs10[0]) if outs10 else None
            res["scaling" if scale == "uniform" else "scaling_app"] = {
                "scale": scale,
                "x10_status": st10,
                "x10_wall": round(r10.wall, 2),
                "x10_tree_rss_mb": round(r10.tree_rss_mb),
                "x10_tree_pss_mb": round(r10.tree_pss_mb),
                "x10_maxrss_mb": round(r10.maxrss_mb),
                "x10_bytes": m10["uncompressed_bytes"],
                "byte_ratio": round(m10["uncompressed_bytes"] / meta["uncompressed_bytes"], 2),
                "file_ratio": round(files10 / one_files, 2) if files10 and one_files else None,
                "time_ratio": round(r10.wall / one["wall"], 2) if one.get("wall") else None,
            }
    if b.extraction and not a.keep_extract:
        shutil.rmtree(b.extract_dir, ignore_errors=True)
    for d in (SHM / "imgscan-bench-kf", b.tmp):  # our scratch dirs, if left empty
        with contextlib.suppress(OSError):
            d.rmdir()
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "latest.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=str) + "\n")
    tmp.rename(RESULTS / "latest.json")
    md = render_md(res)
    (RESULTS / "latest.md").write_text(md)
    if a.update_readme:
        update_readme(res)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
