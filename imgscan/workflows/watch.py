"""Scheduled scans of production tags: list tags, resolve digests, scan only what changed.

State lives in SQLite (``state`` in the config): the digest each tag pointed at on
the last run and the findings of every scanned digest. Layer results go to the
per-layer verdict cache, so base layers shared by many tags are scanned once.
Each run writes a JSON + SARIF report per newly scanned image and a summary of
new and resolved findings and of tags that moved.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sqlite3
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imgscan import __version__
from imgscan.config import check_keys
from imgscan.errors import ConfigError, ImgscanError
from imgscan.gate import Policy, evaluate, parse_categories, parse_severity, parse_states
from imgscan.model import ScanResult

EXIT_OK, EXIT_POLICY, EXIT_SCAN = 0, 1, 3

_TOP_KEYS = {"state", "cache", "output_dir", "policy", "target", "platform", "executor", "celery"}
_TARGET_KEYS = {
    "registry",
    "repository",
    "tags",
    "tag_regex",
    "insecure",
    "ca_cert",
    "username_env",
    "password_env",
    "platform",
}
_POLICY_KEYS = {"fail_on", "fail_on_state", "categories"}


@dataclass(frozen=True, slots=True)
class Target:
    """One repository to watch and which of its tags matter."""

    registry: str
    repository: str
    tags: tuple[str, ...] = ("*",)
    tag_regex: str | None = None
    insecure: bool = False
    ca_cert: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    platform: str | None = None

    @property
    def repo_ref(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    def matches(self, tag: str) -> bool:
        """Whether ``tag`` is one of the watched tags."""
        if self.tag_regex is not None and re.fullmatch(self.tag_regex, tag):
            return True
        return any(fnmatch.fnmatchcase(tag, g) for g in self.tags) if self.tags else False


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """A parsed watch.toml."""

    targets: tuple[Target, ...]
    state: Path
    cache: Path
    output_dir: Path
    policy: Policy = field(default_factory=Policy)
    platform: str = "linux/amd64"
    executor: str = "local"
    celery: Mapping[str, Any] = field(default_factory=dict)


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{what}: expected a non-empty string")
    return v


def load_watch_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read and validate a watch.toml; relative paths are relative to the file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such watch config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from None
    check_keys(data, _TOP_KEYS, str(p))
    base = p.parent
    targets = []
    raw_targets = data.get("target")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{p}: at least one [[target]] is required")
    for i, t in enumerate(raw_targets):
        what = f"{p}: target[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{what}: must be a table")
        check_keys(t, _TARGET_KEYS, what)
        tags = t.get("tags", ["*"] if "tag_regex" not in t else [])
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise ConfigError(f"{what}: tags must be a list of globs")
        regex = t.get("tag_regex")
        if regex is not None:
            try:
                re.compile(_str(regex, f"{what}.tag_regex"))
            except re.error as exc:
                raise ConfigError(f"{what}.tag_regex: {exc}") from None
        ca = t.get("ca_cert")
        targets.append(
            Target(
                registry=_str(t.get("registry"), f"{what}.registry"),
                repository=_str(t.get("repository"), f"{what}.repository"),
                tags=tuple(tags),
                tag_regex=regex,
                insecure=bool(t.get("insecure", False)),
                ca_cert=str(base / ca) if isinstance(ca, str) else None,
                username_env=t.get("username_env"),
                password_env=t.get("password_env"),
                platform=t.get("platform"),
            )
        )
    pol = data.get("policy", {})
    if not isinstance(pol, dict):
        raise ConfigError(f"{p}: [policy] must be a table")
    check_keys(pol, _POLICY_KEYS, f"{p}: policy")
    policy = Policy(
        fail_on=parse_severity(pol.get("fail_on", "high"), "policy.fail_on"),
        fail_on_state=parse_states(
            pol.get("fail_on_state", "present,deleted,overwritten"), "policy.fail_on_state"
        ),
        categories=parse_categories(
            pol.get("categories", "secret,config,file"), "policy.categories"
        ),
    )
    state = base / str(data.get("state", "imgscan-watch.db"))
    executor = data.get("executor", "local")
    if executor not in ("local", "celery"):
        raise ConfigError(f"{p}: executor must be local or celery")
    celery = data.get("celery", {})
    if not isinstance(celery, dict):
        raise ConfigError(f"{p}: [celery] must be a table")
    return WatchConfig(
        targets=tuple(targets),
        state=state,
        cache=base / str(data.get("cache", str(state.with_suffix("")) + "-cache.db")),
        output_dir=base / str(data.get("output_dir", "imgscan-reports")),
        policy=policy,
        platform=str(data.get("platform", "linux/amd64")),
        executor=executor,
        celery=celery,
    )


class WatchState:
    """SQLite state: tag -> digest history and the findings of each scanned digest."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
            INSERT OR IGNORE INTO meta VALUES ('schema', '1');
            CREATE TABLE IF NOT EXISTS tags (
                repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
                seen REAL NOT NULL, PRIMARY KEY (repo, tag));
            CREATE TABLE IF NOT EXISTS images (
                repo TEXT NOT NULL, digest TEXT NOT NULL, engine TEXT NOT NULL,
                scanned REAL NOT NULL, findings TEXT NOT NULL, exit_code INTEGER NOT NULL,
                report TEXT, PRIMARY KEY (repo, digest, engine));
            CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, finished REAL,
                summary TEXT);
            """
        )

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest ``tag`` pointed at on the last run."""
        row = self.db.execute(
            "SELECT digest FROM tags WHERE repo=? AND tag=?", (repo, tag)
        ).fetchone()
        return row[0] if row else None

    def set_tag(self, repo: str, tag: str, digest: str) -> None:
        """Record where ``tag`` points now."""
        self.db.execute(
            "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)", (repo, tag, digest, time.time())
        )

    def image(self, repo: str, digest: str, engine: str) -> dict[str, Any] | None:
        """The stored verdict for an image digest under this ruleset/version."""
        row = self.db.execute(
            "SELECT findings, exit_code, report FROM images WHERE repo=? AND digest=? AND engine=?",
            (repo, digest, engine),
        ).fetchone()
        if row is None:
            return None
        return {"findings": json.loads(row[0]), "exit_code": row[1], "report": row[2]}

    def put_image(
        self,
        repo: str,
        digest: str,
        engine: str,
        findings: list[dict[str, Any]],
        exit_code: int,
        report: str,
    ) -> None:
        """Store an image's findings (fingerprint, rule, severity, path, status)."""
        self.db.execute(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
            (repo, digest, engine, time.time(), json.dumps(findings), exit_code, report),
        )

    def record_run(self, started: float, summary: Mapping[str, Any]) -> None:
        """Append this run's summary."""
        self.db.execute(
            "INSERT INTO runs (started, finished, summary) VALUES (?, ?, ?)",
            (started, time.time(), json.dumps(summary)),
        )

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def _creds(t: Target) -> Any:
    if not t.username_env and not t.password_env:
        return None
    from imgscan.sources.auth import Credentials

    user = os.environ.get(t.username_env or "", "")
    pw = os.environ.get(t.password_env or "", "")
    if not user or not pw:
        raise ConfigError(
            f"{t.repo_ref}: credentials expected in ${t.username_env} / ${t.password_env}"
        )
    return Credentials(username=user, password=pw)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120]


def _brief(result: ScanResult) -> list[dict[str, Any]]:
    return [
        {
            "fingerprint": f.fingerprint,
            "rule": f.rule,
            "severity": str(f.severity),
            "path": f.path,
            "location": f.location,
            "layer": f.layer,
            "status": str(f.status) if f.status else None,
        }
        for f in result.findings
    ]


@dataclass
class WatchReport:
    """What one watch run did."""

    images: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    layers_scanned: int = 0
    scanned: int = 0
    skipped: int = 0
    policy_failed: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """3 when a registry or image could not be read, else 1 when a policy failed, else 0."""
        if self.errors:
            return EXIT_SCAN
        return EXIT_POLICY if self.policy_failed else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """Plain data for summary.json."""
        return {
            "imgscan_version": __version__,
            "images": self.images,
            "moved_tags": self.moved,
            "errors": self.errors,
            "cache": {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "layers_scanned": self.layers_scanned,
            },
            "scanned_images": self.scanned,
            "unchanged_images": self.skipped,
            "policy_failed": self.policy_failed,
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One image to scan: a watched tag and the digest it points at now."""

    target: Target
    tag: str
    digest: str

    @property
    def ref(self) -> str:
        """``registry/repo@digest``: what is scanned (a tag could move meanwhile)."""
        return f"{self.target.repo_ref}@{self.digest}"


class Executor(Protocol):
    """Scans many images; one failure is a value in the returned mapping, not an exception."""

    def scan_many(
        self, items: Sequence[WorkItem], cfg: WatchConfig
    ) -> dict[str, ScanResult | ImgscanError]:
        """Results keyed by ``item.ref``."""
        ...


def _engine_tag(ruleset_hash: str) -> str:
    return f"{__version__}:{ruleset_hash}"


def registry_kwargs(target: Target) -> dict[str, Any]:
    """Keyword arguments for the registry source of ``target``."""
    return {"creds": _creds(target), "insecure": target.insecure, "ca_cert": target.ca_cert}


def local_scan(ref: str, target: Target, cfg: WatchConfig) -> ScanResult:
    """Scan one image in this process, with the per-layer verdict cache."""
    from imgscan.scan import ScanOptions, scan_image
    from imgscan.sources.base import SourceOptions

    opts = ScanOptions(
        source=SourceOptions(platform=target.platform or cfg.platform),
        source_kind="registry",
        cache_path=str(cfg.cache),
        registry=registry_kwargs(target),
    )
    return scan_image(ref, opts)


class LocalExecutor:
    """The single-machine path: images one after another, layers shared via the cache."""

    def scan_many(
        self, items: Sequence[WorkItem], cfg: WatchConfig
    ) -> dict[str, ScanResult | ImgscanError]:
        """Scan each item in turn."""
        out: dict[str, ScanResult | ImgscanError] = {}
        for item in items:
            if item.ref in out:
                continue
            try:
                out[item.ref] = local_scan(item.ref, item.target, cfg)
            except ImgscanError as exc:
                out[item.ref] = exc
        return out


def run_watch(
    cfg: WatchConfig,
    *,
    executor: Executor | None = None,
    ruleset_hash: str = "",
    log: Callable[[str], None] | None = None,
) -> WatchReport:
    """One scheduled run over every target; returns what happened (never raises for one image)."""
    from imgscan.report.render import render
    from imgscan.sources import registry

    say = log or (lambda _m: None)
    runner = executor or LocalExecutor()
    started = time.time()
    t0 = time.perf_counter()
    report = WatchReport()
    state = WatchState(cfg.state)
    engine = _engine_tag(ruleset_hash)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        # 1. where does every watched tag point now?
        current: list[WorkItem] = []
        for target in cfg.targets:
            try:
                kw = registry_kwargs(target)
                tags = registry.list_tags(target.repo_ref, **kw)
            except ImgscanError as exc:
                report.errors.append(f"{target.repo_ref}: {exc}")
                continue
            for tag in sorted(t for t in tags if target.matches(t)):
                ref = f"{target.repo_ref}:{tag}"
                try:
                    digest = registry.resolve_digest(ref, **kw)
                except ImgscanError as exc:
                    report.errors.append(f"{ref}: {exc}")
                    continue
                current.append(WorkItem(target, tag, digest))
        # 2. scan the digests we have not seen under this ruleset
        todo = [it for it in current if state.image(it.target.repo_ref, it.digest, engine) is None]
        unique = list({it.ref: it for it in todo}.values())
        say(f"{len(current)} watched tags, {len(unique)} new image digests to scan")
        results = runner.scan_many(unique, cfg) if unique else {}
        # 3. reports, diffs against the previous digest of each tag, state
        for item in current:
            repo, tag, digest = item.target.repo_ref, item.tag, item.digest
            prev = state.tag_digest(repo, tag)
            prev_img = state.image(repo, prev, engine) if prev else None
            if prev is not None and prev != digest:
                report.moved.append({"repository": repo, "tag": tag, "from": prev, "to": digest})
                say(f"tag moved: {repo}:{tag} {prev[:19]} -> {digest[:19]}")
            entry: dict[str, Any] = {"repository": repo, "tag": tag, "digest": digest}
            known = state.image(repo, digest, engine)
            if known is not None and item.ref not in results:
                report.skipped += 1
                entry.update(
                    scanned=False,
                    exit_code=known["exit_code"],
                    report=known["report"],
                    findings=len(known["findings"]),
                    new_findings=[],
                    resolved_findings=[],
                )
                if prev is not None and prev != digest and prev_img is not None:
                    old = {f["fingerprint"] for f in prev_img["findings"]}
                    new = {f["fingerprint"] for f in known["findings"]}
                    entry.update(
                        new_findings=sorted(new - old), resolved_findings=sorted(old - new)
                    )
                if known["exit_code"] == EXIT_POLICY:
                    report.policy_failed += 1
                report.images.append(entry)
                state.set_tag(repo, tag, digest)
                continue
            res = results.get(item.ref)
            if res is None or isinstance(res, ImgscanError):
                report.errors.append(f"{repo}:{tag}: could not finish: {res or 'not scanned'}")
                entry.update(scanned=False, error=str(res or "not scanned"))
                report.images.append(entry)
                continue
            result = res
            first_time = item.ref not in {i.get("_ref") for i in report.images}
            if first_time:
                report.scanned += 1
                report.cache_hits += int(result.stats.get("cache_hits", 0))
                report.cache_misses += int(result.stats.get("cache_misses", 0))
                report.layers_scanned += int(result.stats.get("layers_scanned", 0))
            outcome = evaluate(result, cfg.policy)
            if not outcome.passed:
                report.policy_failed += 1
            base = cfg.output_dir / _safe(repo) / f"{_safe(tag)}-{digest[7:19]}"
            base.parent.mkdir(parents=True, exist_ok=True)
            for fmt in ("json", "sarif"):
                with open(f"{base}.{fmt}", "w", encoding="utf-8") as fh:
                    render(result, fmt, fh)
            brief = _brief(result)
            old = {f["fingerprint"] for f in (prev_img or {}).get("findings", [])}
            new = {f["fingerprint"] for f in brief}
            entry.update(
                scanned=True,
                exit_code=outcome.exit_code,
                report=f"{base}.json",
                findings=len(brief),
                _ref=item.ref,
                new_findings=sorted(new - old) if prev_img is not None else sorted(new),
                resolved_findings=sorted(old - new),
                cache_hits=result.stats.get("cache_hits", 0),
                layers_scanned=result.stats.get("layers_scanned", 0),
            )
            report.images.append(entry)
            state.put_image(repo, digest, engine, brief, outcome.exit_code, f"{base}.json")
            state.set_tag(repo, tag, digest)
            say(
                f"scanned {repo}:{tag} ({digest[:19]}): {len(brief)} findings, "
                f"{result.stats.get('cache_hits', 0)} cached layers"
            )
        for i in report.images:
            i.pop("_ref", None)
        report.seconds = time.perf_counter() - t0
        summary = report.as_dict()
        (cfg.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        state.record_run(started, summary)
    finally:
        state.close()
    return report


def format_summary(report: WatchReport) -> str:
    """A short human summary of a watch run."""
    lines = [
        f"images: {len(report.images)} ({report.scanned} scanned, {report.skipped} unchanged)",
        f"layers scanned: {report.layers_scanned}, verdict cache hits: {report.cache_hits}, "
        f"misses: {report.cache_misses}",
    ]
    new = sum(len(i.get("new_findings", [])) for i in report.images)
    resolved = sum(len(i.get("resolved_findings", [])) for i in report.images)
    lines.append(f"new findings: {new}, resolved findings: {resolved}")
    for m in report.moved:
        lines.append(f"moved tag: {m['repository']}:{m['tag']} {m['from'][:19]} -> {m['to'][:19]}")
    for e in report.errors:
        lines.append(f"error: {e}")
    lines.append(f"policy failed for {report.policy_failed} image(s)")
    return "\n".join(lines)
