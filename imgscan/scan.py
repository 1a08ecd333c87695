"""The pipeline driver: source -> layers -> events + content detectors -> findings.

Each layer is scanned on its own into a ``LayerResult`` (events, findings without
exposure state, captured files). ``assemble`` then applies the overlay across all
layers, runs image-level analyzers, fills in exposure state and attribution,
dedupes and sorts. Layer results are independent of the image they sit in, which
is what lets them be cached by diff_id and scanned in parallel.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from imgscan.errors import LayerError
from imgscan.layers.limits import WalkLimits
from imgscan.model import (
    Category,
    EntryKind,
    FileEvent,
    Finding,
    ImageInfo,
    ScanResult,
    Severity,
    Status,
    Unscanned,
    finding_order,
)
from imgscan.sources.base import Image, LayerBlob, SourceOptions

if TYPE_CHECKING:  # the walker, detectors and sources load when a scan needs them, so that
    # an answer from the verdict cache (and --help) starts without them
    from concurrent.futures import Future

    from imgscan.detect.base import ContentDetector, FileContext, ImageAnalyzer
    from imgscan.detect.engine import ContentScanner, FileScan
    from imgscan.layers.overlay import Overlay

ProgressFn = Callable[[int, int, int], None]  # (layer index, layers total, bytes read in layer)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Everything that shapes a scan, passed explicitly (no globals)."""

    source: SourceOptions = field(default_factory=SourceOptions)
    limits: WalkLimits = field(default_factory=WalkLimits)
    source_kind: str | None = None
    show_secrets: bool = False
    rule_dirs: tuple[str, ...] = ()
    disabled_rules: tuple[str, ...] = ()
    include_package_files: bool = False  # --all: keep package-owned findings at their severity
    secrets: bool = True  # run content/config secret detectors
    hardening: bool = True  # run hardening analyzers
    registry: Mapping[str, Any] = field(default_factory=dict)  # credentials/TLS for registries
    cache_path: str | None = None  # SQLite verdict cache; None disables caching
    jobs: int = 0  # worker processes for layers; 0 = automatic, 1 = in-process


@dataclass(frozen=True, slots=True)
class LayerResult:
    """What one layer holds, independent of the image: cacheable by diff_id."""

    index: int
    events: tuple[FileEvent, ...]
    findings: tuple[Finding, ...]
    unscanned: tuple[Unscanned, ...]
    files: Mapping[str, bytes]
    hashes: Mapping[str, tuple[str, str, str]]  # path -> (md5, sha1, sha256), files with findings
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    compression: str = "none"
    seconds: float = 0.0
    digest: str | None = None  # the stored blob's digest, as computed while walking
    diff_id: str | None = None  # the uncompressed tar's digest, as computed

    def rebind(self, index: int) -> LayerResult:
        """The same result placed at another layer index (for cache reuse)."""
        if index == self.index:
            return self
        return dataclasses.replace(
            self,
            index=index,
            events=tuple(dataclasses.replace(e, layer=index) for e in self.events),
            findings=tuple(dataclasses.replace(f, layer=index) for f in self.findings),
            unscanned=tuple(dataclasses.replace(u, layer=index) for u in self.unscanned),
        )


@dataclass(frozen=True, slots=True)
class Detectors:
    """The detectors of one scan, built once from the options."""

    content: tuple[ContentDetector, ...]
    analyzers: tuple[ImageAnalyzer, ...]
    scanner: ContentScanner
    ruleset_hash: str = ""


def build_detectors(options: ScanOptions) -> Detectors:
    """Instantiate the content detectors and image analyzers the options ask for."""
    from imgscan.detect.engine import ContentScanner, EngineOptions, OutsideVendorTrees

    content: list[ContentDetector] = []
    analyzers: list[ImageAnalyzer] = []
    ruleset_hash = ""
    if options.secrets:
        from imgscan.detect.pattern import PatternDetector
        from imgscan.detect.rules import load_ruleset

        ruleset = load_ruleset(
            tuple(Path(d) for d in options.rule_dirs), disabled=options.disabled_rules
        )
        ruleset_hash = ruleset.hash
        from imgscan.detect.config_secrets import ConfigSecretsAnalyzer
        from imgscan.detect.credfiles import CredentialFileDetector
        from imgscan.detect.entropy import EntropyDetector
        from imgscan.detect.strings import BinaryStringsDetector

        text: list[ContentDetector] = [PatternDetector(ruleset), EntropyDetector()]
        costly: list[ContentDetector] = [text[1], BinaryStringsDetector(text)]
        if not options.include_package_files:
            costly = [OutsideVendorTrees(d) for d in costly]
        content.extend([text[0], costly[0], CredentialFileDetector(), costly[1]])
        analyzers.append(ConfigSecretsAnalyzer(text, options.show_secrets))
    if options.hardening:
        from imgscan.detect.hardening import default_analyzers

        analyzers.extend(default_analyzers())
    engine_opts = EngineOptions(
        chunk_size=options.limits.chunk_size,
        overlap=options.limits.overlap,
        max_file_bytes=options.limits.max_file_bytes,
        show_secrets=options.show_secrets,
    )
    from imgscan.detect.nested import ArchiveFilter, NestedExpander

    scanner = ContentScanner(
        content, engine_opts, expander=NestedExpander(), wants_archive=ArchiveFilter()
    )
    return Detectors(tuple(content), tuple(analyzers), scanner, ruleset_hash)


def scan_layer(
    blob: LayerBlob,
    detectors: Detectors | None,
    limits: WalkLimits,
    progress: ProgressFn | None = None,
    total_layers: int = 0,
    *,
    pool: DetectionPool | None = None,
) -> LayerResult:
    """Walk one layer blob once: record every entry, scan regular files, capture small ones."""
    from imgscan.detect.base import FileContext
    from imgscan.layers import capture
    from imgscan.layers.compression import LayerLimitExceeded
    from imgscan.layers.walker import LayerWalker

    t0 = time.perf_counter()
    walker = LayerWalker(blob, limits)
    events: list[FileEvent] = []
    findings: list[Finding] = []
    unscanned: list[Unscanned] = []
    files: dict[str, bytes] = {}
    hashes: dict[str, tuple[str, str, str]] = {}
    captured_total = 0
    seen_bytes = 0
    current = "/"
    entries = iter(walker)
    try:
        for entry in entries:
            ev = entry.event
            current = ev.path
            events.append(ev)
            if ev.kind is not EntryKind.FILE or entry.reader is None:
                continue
            seen_bytes += ev.size
            if progress is not None:
                progress(blob.index, total_layers, seen_bytes)
            want_capture = capture.wants(ev.path, ev.size)
            if detectors is None or not detectors.content:
                if want_capture:
                    data = entry.reader.read(ev.size)
                    if captured_total + len(data) <= capture.MAX_CAPTURE_TOTAL:
                        files[ev.path] = data
                        captured_total += len(data)
                continue
            ctx = FileContext(path=ev.path, layer=blob.index, size=ev.size, mode=ev.mode)
            if pool is not None and ev.size <= limits.chunk_size:
                data = entry.reader.read(ev.size)
                if want_capture and captured_total + len(data) <= capture.MAX_CAPTURE_TOTAL:
                    files[ev.path] = data
                    captured_total += len(data)
                pool.submit(ctx, data)
                continue
            if want_capture:
                data = entry.reader.read(ev.size)
                if captured_total + len(data) <= capture.MAX_CAPTURE_TOTAL:
                    files[ev.path] = data
                    captured_total += len(data)
                else:
                    unscanned.append(
                        Unscanned(
                            blob.index, ev.path, "capture budget exhausted; not kept for analyzers"
                        )
                    )
                res = detectors.scanner.scan_reader(ctx, io.BytesIO(data), len(data))
            else:
                res = detectors.scanner.scan_reader(ctx, entry.reader, ev.size)
            findings.extend(res.findings)
            unscanned.extend(res.unscanned)
            if res.findings and res.digests:
                hashes[ev.path] = res.digests
    except LayerLimitExceeded:
        walker.record_limit(current)
        close = getattr(entries, "close", None)
        if close is not None:
            close()
    if pool is not None:
        for path, res in pool.drain():
            findings.extend(res.findings)
            unscanned.extend(res.unscanned)
            if res.findings and res.digests:
                hashes[path] = res.digests
    unscanned.extend(walker.stats.unscanned)
    return LayerResult(
        index=blob.index,
        events=tuple(events),
        findings=tuple(findings),
        unscanned=tuple(unscanned),
        files=files,
        hashes=hashes,
        compressed_bytes=walker.stats.compressed_bytes,
        uncompressed_bytes=walker.stats.uncompressed_bytes,
        compression=walker.stats.compression,
        seconds=time.perf_counter() - t0,
        digest=walker.stats.digest,
        diff_id=walker.stats.diff_id,
    )


def outer_path(path: str) -> str:
    """For ``/a.zip!inner/x`` the layer path ``/a.zip``."""
    return path.split("!", 1)[0]


_RAISED = {
    Severity.INFO: Severity.LOW,
    Severity.LOW: Severity.MEDIUM,
    Severity.MEDIUM: Severity.HIGH,
    Severity.HIGH: Severity.CRITICAL,
    Severity.CRITICAL: Severity.CRITICAL,
}


def apply_ownership(
    findings: Sequence[Finding],
    layers: Sequence[LayerResult],
    files: Mapping[tuple[int, str], bytes],
    *,
    include_package_files: bool = False,
) -> list[Finding]:
    """Package-owned files: unmodified -> info (unless --all), modified -> one step higher.

    A vendor file the package manager installed byte for byte (dpkg md5sums, apk
    sha1, pip RECORD sha256) is not the image author's secret; the same file
    changed after installation is more suspicious than an ordinary file. Nothing is
    hidden: the finding stays, with a note saying which package and why.
    """
    if not any(f.category is Category.SECRET and f.path for f in findings):
        return list(findings)
    from imgscan.detect.ownership import PackageDB

    wanted: set[str] = set()
    for f in findings:
        if f.category is Category.SECRET and f.path:
            outer = outer_path(f.path)
            source = _pyc_source(outer)
            wanted.update((outer, source) if source else (outer,))
    db = PackageDB.from_files(files, wanted=wanted)
    hashes = {lr.index: lr.hashes for lr in layers}
    out = []
    for f in findings:
        if f.category is not Category.SECRET or f.path is None or f.layer is None:
            out.append(f)
            continue
        outer = outer_path(f.path)
        owner = db.owner_info(outer)
        digests = hashes.get(f.layer, {}).get(outer)
        source = _pyc_source(outer)
        if owner is None and source is not None and db.owner_info(source) is not None:
            # RECORD lists __pycache__ files without a hash: compiled at install time
            # from a package-owned source, so it carries what that source carries.
            src = db.owner_info(source)
            assert src is not None
            note = f"bytecode compiled from {source} of {src.manager} package {src.package}"
            if include_package_files:
                out.append(dataclasses.replace(f, note=note))
            else:
                out.append(
                    dataclasses.replace(
                        f, severity=Severity.INFO, note=f"{note}; {f.severity} with --all"
                    )
                )
            continue
        if owner is None or digests is None:
            out.append(f)
            continue
        md5, sha1, sha256 = digests
        verdict = db.verdict(outer, md5, sha256, sha1)
        if verdict == "unmodified":
            note = (
                f"unmodified file of {owner.manager} package {owner.package} "
                f"({owner.algo} matches); shipped by the vendor, not by this image's author"
            )
            if include_package_files:
                out.append(dataclasses.replace(f, note=note))
            else:
                out.append(
                    dataclasses.replace(
                        f, severity=Severity.INFO, note=f"{note}; {f.severity} with --all"
                    )
                )
        elif verdict == "modified":
            note = (
                f"file of {owner.manager} package {owner.package} changed after "
                f"installation ({owner.algo} differs)"
            )
            out.append(dataclasses.replace(f, severity=_RAISED[f.severity], note=note))
        else:
            out.append(f)
    return out


_PYC_RE = re.compile(r"^(.*)/__pycache__/([^/.]+)\.[a-z]+-\d+(?:\.opt-\d)?\.pyc$")


def _pyc_source(path: str) -> str | None:
    """``/a/__pycache__/m.cpython-311.pyc`` -> ``/a/m.py``."""
    m = _PYC_RE.match(path)
    return f"{m.group(1)}/{m.group(2)}.py" if m else None


def _specificity(rule: str) -> int:
    """Lower is more specific: a named service beats a credential file beats generic rules."""
    if rule.startswith(("entropy-", "keyword-")):
        return 3
    if rule.startswith("generic-"):
        return 2
    if rule.startswith(("credfile-", "config-")):
        return 1
    return 0


def merge_same_secret(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per secret per location: the most specific rule wins.

    The same value on the same line is often matched by a service rule, a
    credential-file rule and the entropy plugin; reporting all three inflates
    counts. Different secrets, or the same secret elsewhere, are never merged.
    """
    best: dict[tuple[Any, ...], Finding] = {}
    rest: list[Finding] = []
    for f in findings:
        if f.category is not Category.SECRET or f.secret_sha256 is None:
            rest.append(f)
            continue
        key = (f.layer, f.path, f.line, f.location, f.secret_sha256)
        cur = best.get(key)
        if cur is None or (_specificity(f.rule), -f.severity.rank, f.rule) < (
            _specificity(cur.rule),
            -cur.severity.rank,
            cur.rule,
        ):
            best[key] = f
    return rest + list(best.values())


def finalize(image: ImageInfo, findings: Iterable[Finding], overlay: Overlay) -> list[Finding]:
    """Fill exposure state and layer attribution, drop exact duplicates, sort stably."""
    out: dict[tuple[Any, ...], Finding] = {}
    for f in findings:
        updates: dict[str, Any] = {}
        if f.layer is not None and 0 <= f.layer < len(image.layers):
            info = image.layers[f.layer]
            if f.layer_digest is None:
                updates["layer_digest"] = info.digest or info.diff_id
            if f.created_by is None:
                updates["created_by"] = info.created_by
        if f.path is not None and f.layer is not None and f.status is None:
            st = overlay.state(outer_path(f.path), f.layer)
            if st is not None:
                updates["status"] = st.status
                if st.status is not Status.PRESENT:
                    link = overlay.still_linked(outer_path(f.path), f.layer)
                    if link is not None:  # the name is gone, the content is not
                        updates["status"] = Status.PRESENT
                        updates["note"] = (
                            f"{st.status} at this path in layer "
                            f"{st.changed_in_layer}, but still visible through "
                            f"the hardlink {link}"
                        )
                    else:
                        updates["removed_in_layer"] = st.changed_in_layer
        g = dataclasses.replace(f, **updates) if updates else f
        key = (g.fingerprint, g.layer, g.path, g.line, g.location, g.rule)
        out.setdefault(key, g)
    return sorted(out.values(), key=finding_order)


def assemble(
    info: ImageInfo,
    layers: Sequence[LayerResult],
    detectors: Detectors,
    *,
    reference: str = "",
    started: float | None = None,
    include_package_files: bool = False,
) -> ScanResult:
    """Combine per-layer results into the image's ScanResult."""
    from imgscan.detect.base import ImageContext
    from imgscan.layers.overlay import build_overlay

    events = [e for lr in layers for e in lr.events]
    overlay = build_overlay(events)
    files = {(lr.index, p): data for lr in layers for p, data in lr.files.items()}
    ctx = ImageContext(
        image=info,
        visible=overlay.final_view(),
        events=tuple(events),
        files=files,
        states=overlay.states_view(),
        reference=reference or info.reference,
    )
    findings: list[Finding] = [f for lr in layers for f in lr.findings]
    unscanned: list[Unscanned] = [u for lr in layers for u in lr.unscanned]
    for analyzer in detectors.analyzers:
        try:
            findings.extend(analyzer.analyze(ctx))
        except Exception as exc:
            unscanned.append(
                Unscanned(
                    None,
                    f"analyzer:{getattr(analyzer, 'name', '?')}",
                    f"analyzer failed: {type(exc).__name__}: {exc}",
                )
            )
    findings = apply_ownership(findings, layers, files, include_package_files=include_package_files)
    final = finalize(info, merge_same_secret(findings), overlay)
    hidden = overlay.hidden_bytes()
    stats = {
        "layers": len(layers),
        "files": sum(1 for e in events if e.kind is EntryKind.FILE),
        "compressed_bytes": sum(lr.compressed_bytes for lr in layers),
        "uncompressed_bytes": sum(lr.uncompressed_bytes for lr in layers),
        "hidden_bytes": sum(hidden.values()),
        "seconds": round(time.perf_counter() - started, 3) if started else None,
        "detectors": [getattr(d, "name", "?") for d in detectors.content],
        "analyzers": [getattr(a, "name", "?") for a in detectors.analyzers],
    }
    unscanned.sort(key=lambda u: (u.layer if u.layer is not None else -1, u.path, u.reason))
    return ScanResult(image=info, findings=tuple(final), unscanned=tuple(unscanned), stats=stats)


def options_tag(options: ScanOptions) -> str:
    """The option values that change a layer's result (part of the cache key)."""
    lim = options.limits
    return json.dumps(
        [
            lim.max_layer_bytes,
            lim.max_file_bytes,
            lim.chunk_size,
            lim.overlap,
            sorted(options.disabled_rules),
            sorted(options.rule_dirs),
            options.secrets,
            # --all runs the costly detectors inside package trees too: other findings
            options.include_package_files,
        ],
        separators=(",", ":"),
    )


_POOL_DETECTORS: dict[str, Detectors] = {}


def _detect_batch(items: list[tuple[FileContext, bytes]]) -> list[FileScan]:
    """In a worker process: run the (fork-inherited) detectors over whole small files."""
    from imgscan.detect.engine import FileScan, file_digests

    det = _POOL_DETECTORS["det"]
    out = []
    for ctx, data in items:
        res = FileScan()
        det.scanner.scan_bytes(ctx, data, res)
        if res.findings:
            res.digests = file_digests(data)
        out.append(res)
    return out


class DetectionPool:
    """Content detection in worker processes while this process walks the layers.

    Small files are batched (a few MB at a time) to the workers; at most a few
    batches are in flight, so memory stays bounded. Large files are streamed in
    this process. The walker and the overlay stay single-pass in the parent.
    """

    BATCH_BYTES = 4 * 1024 * 1024
    BATCH_FILES = 512

    def __init__(self, det: Detectors, jobs: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _POOL_DETECTORS["det"] = det  # inherited by the forked workers, never pickled
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        self.max_inflight = jobs * 3
        self.batch: list[tuple[FileContext, bytes]] = []
        self.batch_bytes = 0
        self.inflight: deque[Future[list[FileScan]]] = deque()
        self.results: list[FileScan] = []
        self.paths: deque[list[str]] = deque()
        self.done_paths: list[str] = []

    def submit(self, ctx: FileContext, data: bytes) -> None:
        """Queue one whole file for detection."""
        self.batch.append((ctx, data))
        self.batch_bytes += len(data)
        if self.batch_bytes >= self.BATCH_BYTES or len(self.batch) >= self.BATCH_FILES:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        self.paths.append([c.path for c, _ in self.batch])
        self.inflight.append(self.pool.submit(_detect_batch, self.batch))
        self.batch = []
        self.batch_bytes = 0
        while len(self.inflight) > self.max_inflight:
            self._collect()

    def _collect(self) -> None:
        fut = self.inflight.popleft()
        paths = self.paths.popleft()
        self.results.extend(fut.result())
        self.done_paths.extend(paths)

    def drain(self) -> list[tuple[str, FileScan]]:
        """Wait for everything queued so far; return (path, result) pairs."""
        self._flush()
        while self.inflight:
            self._collect()
        out = list(zip(self.done_paths, self.results, strict=True))
        self.results, self.done_paths = [], []
        return out

    def close(self) -> None:
        """Stop the workers."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        _POOL_DETECTORS.pop("det", None)


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask and a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def auto_jobs(options: ScanOptions, blobs: Sequence[LayerBlob]) -> int:
    """Worker processes for detection: 1 for small images, else one per usable CPU."""
    if options.jobs:
        return max(1, options.jobs)
    total = sum(b.size or 0 for b in blobs)
    if total < 8 * 1024 * 1024:
        return 1
    return available_cpus()


def rules_fingerprint(options: ScanOptions) -> str:
    """The rule set's digest (as ``load_ruleset`` names it), without compiling anything."""
    from imgscan.detect.rulefiles import ruleset_digest

    return ruleset_digest(tuple(Path(d) for d in options.rule_dirs), options.disabled_rules)


def image_key(identity: str, options: ScanOptions, reference: str) -> str:
    """The whole-image cache key: what the image is, plus everything that shapes its result."""
    import hashlib

    from imgscan import __version__

    doc = [
        identity,
        reference,
        rules_fingerprint(options) if options.secrets else "",
        options_tag(options),
        options.hardening,
        options.source.platform,
        __version__,
    ]
    return "image:" + hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def image_identity(info: ImageInfo) -> str:
    """The config digest and every layer's digests: an opened image's content address."""
    layers = [[li.digest, li.diff_id] for li in info.layers]
    return json.dumps([info.config_digest, info.digest, layers])


def _bytes_changed(path: str, identity: str) -> bool:
    """Whether a local image's bytes changed while it was scanned (one more hash, ~1%).

    A result goes under a local image's key only when they did not.
    """
    from imgscan.contenthash import local_identity

    return local_identity(path) != identity


def _local_layer(
    cache: Any, b: LayerBlob, key: str, det: Detectors, tag: str, limits: WalkLimits
) -> Any | None:
    """A cached layer of a local image, served only after its bytes are checked.

    The claimed diff_id only says whether a lookup is worth it. The blob's stored bytes
    are hashed and looked up among the blob digests that earlier scans checked; bytes
    packed another way (say gzip'd where the cache saw them plain) are inflated and
    hashed, and must give the claimed diff_id. A hit must then agree with every digest
    the image claims for the layer. Anything unusual (a corrupt stream, a bomb, an
    unknown compression) falls through to a scan, which reports it as such.
    """
    from imgscan.layers.walker import check_digests
    from imgscan.workflows.cache import cache_key

    if not cache.has(key):
        return None
    digest, diff_id = _blob_digests(b, limits, inflate=False)
    hit = cache.get_alias(cache_key(digest, det.ruleset_hash, tag), b.index)
    if hit is None:
        digest, diff_id = _blob_digests(b, limits, inflate=True)
        if diff_id is None or diff_id != b.diff_id:
            return None
        hit = cache.get(key, b.index)
        if hit is None or hit.diff_id != diff_id:
            return None
        cache.alias(cache_key(digest, det.ruleset_hash, tag), key)
    check_digests(b, digest, hit.diff_id)
    return dataclasses.replace(hit, digest=digest)


def _blob_digests(b: LayerBlob, limits: WalkLimits, *, inflate: bool) -> tuple[str, str | None]:
    """sha256 of a blob's stored bytes and, with ``inflate``, of its tar (else None).

    The tar's digest is None too when the blob cannot be inflated within the limits.
    """
    from imgscan.layers.compression import (
        HashingReader,
        LayerLimitExceeded,
        gzip_reader,
        sniff,
        stream_errors,
        zstd_reader,
    )
    from imgscan.layers.walker import layer_label

    what = layer_label(b)
    with b.open() as raw:
        stored = HashingReader(raw, what=what)
        buffered = io.BufferedReader(stored, buffer_size=1 << 20)
        comp = sniff(buffered.peek(8)[:8])
        tar: str | None = None
        if inflate and comp in ("gzip", "zstd"):
            reader = gzip_reader if comp == "gzip" else zstd_reader
            plain = HashingReader(reader(buffered), limit=limits.max_layer_bytes, what=what)
            errors: tuple[type[BaseException], ...] = (LayerLimitExceeded, *stream_errors(comp))
            try:
                plain.drain()
                tar = plain.digest()
            except errors:
                tar = None
        while buffered.read(1 << 20):
            pass
        if comp == "none":
            tar = stored.digest()
        return stored.digest(), tar


def _answered(cache: Any, key: str, reference: str, started: float) -> ScanResult | None:
    """The whole image's result from the cache (which is then closed), or None."""
    hit: ScanResult | None = cache.get_image(key)
    if hit is None:
        return None
    cache.close()
    info = dataclasses.replace(hit.image, reference=reference or hit.image.reference)
    stats = {
        **hit.stats,
        "seconds": round(time.perf_counter() - started, 3),
        "layers_scanned": 0,
        "cache_hits": len(info.layers),
        "cache_misses": 0,
        "image_cache_hit": True,
    }
    return dataclasses.replace(hit, image=info, stats=stats)


def _open_verdict_cache(options: ScanOptions) -> Any:
    if not options.cache_path or options.show_secrets:
        return None
    from imgscan.workflows.cache import open_cache

    return open_cache(options.cache_path)


def _relabel(exc: LayerError, blob: LayerBlob) -> LayerError:
    """A candidate layer's error, renamed after the layer it turned out to be."""
    from imgscan.layers.walker import layer_label

    rest = str(exc).split(": ", 1)[-1]
    return LayerError(f"{layer_label(blob)}: {rest}")


def _same(reader: BinaryIO) -> BinaryIO:
    return reader


def _verify_stream(reader: Any, digest: str, what: str) -> None:
    """Read a blob through, checking it against the digest its name promises."""
    import hashlib

    algo, expected = digest.split(":", 1)
    h = hashlib.new(algo)
    while chunk := reader.read(1 << 20):
        h.update(chunk)
    if h.hexdigest() != expected:
        raise LayerError(
            f"{what}: blob digest mismatch (name says {digest}, content is {algo}:{h.hexdigest()})"
        )


def scan_opened(
    image: Image,
    options: ScanOptions,
    progress: ProgressFn | None = None,
    *,
    reference: str = "",
    detectors: Detectors | None = None,
) -> ScanResult:
    """Scan an already opened image, reusing cached image and layer results where possible."""
    started = time.perf_counter()
    cache = _open_verdict_cache(options)
    local = image.local_path
    local_ident: str | None = None  # a local image is named by its bytes, not its claims
    ikeys: list[str] = []
    if cache is not None:
        if local:
            from imgscan.contenthash import local_identity

            local_ident = local_identity(local)
        ident = local_ident or image_identity(image.info)
        ikeys.append(image_key(ident, options, reference))
        hit = _answered(cache, ikeys[0], reference, started)
        if hit is not None:
            return hit
    from imgscan.workflows.cache import cache_key

    det = detectors or build_detectors(options)
    tag = options_tag(options)
    results: dict[int, LayerResult] = {}
    keys: dict[int, tuple[str, str]] = {}
    todo: list[LayerBlob] = []
    for b in image.blobs:
        layer_id = b.diff_id or b.digest
        if cache is not None and layer_id:
            key = cache_key(layer_id, det.ruleset_hash, tag)
            keys[b.index] = (key, layer_id)
            hit = (
                _local_layer(cache, b, key, det, tag, options.limits)
                if local
                else cache.get(key, b.index)
            )
            if hit is not None:
                results[b.index] = hit
                continue
        todo.append(b)
    jobs = auto_jobs(options, todo)
    pool = DetectionPool(det, jobs) if jobs > 1 and det.content else None
    try:
        for b in todo:
            lr = scan_layer(b, det, options.limits, progress, len(image.blobs), pool=pool)
            results[lr.index] = lr
            if cache is not None and lr.index in keys:
                key, layer_id = keys[lr.index]
                cache.put(key, layer_id, lr)
                if lr.digest:  # the walker checked the raw bytes against this digest
                    cache.alias(cache_key(lr.digest, det.ruleset_hash, tag), key)
    finally:
        if pool is not None:
            pool.close()
    ordered = [results[b.index] for b in image.blobs]
    if local and local_ident is not None and _bytes_changed(local, local_ident):
        ikeys.clear()
    return _finish(image, ordered, det, options, cache, ikeys, reference, started, len(todo))


def _finish(
    image: Image,
    ordered: list[LayerResult],
    det: Detectors,
    options: ScanOptions,
    cache: Any,
    ikeys: Sequence[str],
    reference: str,
    started: float,
    scanned: int,
) -> ScanResult:
    """Assemble the image, add the cache figures, store the result under ``ikeys``."""
    result = assemble(
        image.info,
        ordered,
        det,
        reference=reference,
        started=started,
        include_package_files=options.include_package_files,
    )
    extra = {
        "layers_scanned": scanned,
        "cache_hits": cache.hits if cache else 0,
        "cache_misses": cache.misses if cache else 0,
    }
    result = dataclasses.replace(result, stats={**result.stats, **extra})
    if cache is not None:
        for key in ikeys:
            cache.put_image(key, result)
        cache.close()
    return result


def scan_streamed(
    path: str,
    options: ScanOptions,
    progress: ProgressFn | None = None,
    *,
    reference: str = "",
    source_reference: str | None = None,
    detectors: Detectors | None = None,
) -> ScanResult:
    """Scan a gzip/zstd-compressed archive in one pass, with no spool (see sources.stream).

    Every large member is scanned as a candidate layer while it streams by; once the
    manifest (which comes last) is read, the candidates are bound to their layer
    indexes and checked against the manifest's and config's digests. A layer met by
    its blob digest that the cache already knows is only hashed, not scanned.
    """
    started = time.perf_counter()
    cache = _open_verdict_cache(options)
    local_ident = ""
    ikeys: list[str] = []
    if cache is not None:
        from imgscan.contenthash import local_identity

        local_ident = local_identity(path)
        ikeys.append(image_key(local_ident, options, reference))
        hit = _answered(cache, ikeys[0], reference, started)
        if hit is not None:
            return hit
    from imgscan.layers.walker import check_digests, layer_label
    from imgscan.sources.stream import ArchiveStream

    det = detectors or build_detectors(options)
    tag = options_tag(options)
    from imgscan.workflows.cache import cache_key

    stream = ArchiveStream(path, options.source, source_reference)
    size = os.path.getsize(path)
    jobs = options.jobs or (available_cpus() if size >= 8 * 1024 * 1024 else 1)
    pool = DetectionPool(det, jobs) if jobs > 1 and det.content else None
    found: dict[str, LayerResult | LayerError] = {}
    scanned = 0
    try:
        for n, m in enumerate(stream.members()):
            reader: BinaryIO = m.reader
            blob = LayerBlob(
                n, m.digest, None, m.size, None, functools.partial(_same, reader), name=m.name
            )
            if cache is not None and m.digest:
                hit = cache.get_alias(cache_key(m.digest, det.ruleset_hash, tag), n)
                if hit is not None:
                    try:
                        _verify_stream(reader, m.digest, layer_label(blob))
                        found[m.name] = dataclasses.replace(hit, digest=m.digest)
                    except LayerError as exc:
                        found[m.name] = exc
                    continue
            try:
                found[m.name] = scan_layer(blob, det, options.limits, progress, 0, pool=pool)
                scanned += 1
            except LayerError as exc:
                found[m.name] = exc
        image = stream.image()
        ordered: list[LayerResult] = []
        for b in image.blobs:
            got = found.get(stream.member_name(b.name or ""))
            layer_id = b.diff_id or b.digest
            key = cache_key(layer_id, det.ruleset_hash, tag) if layer_id else None
            if got is None:  # a small layer, kept in memory: scanning it checks its digests
                lr = scan_layer(b, det, options.limits, progress, len(image.blobs), pool=pool)
                scanned += 1
            elif isinstance(got, LayerError):
                raise _relabel(got, b)
            else:
                # scanned before its place was known: it must match the manifest and config
                check_digests(b, got.digest, got.diff_id)
                lr = got.rebind(b.index)
            ordered.append(lr)
            if cache is not None and key:
                if not cache.has(key):
                    cache.put(key, layer_id, lr)
                if b.digest:
                    cache.alias(cache_key(b.digest, det.ruleset_hash, tag), key)
    finally:
        if pool is not None:
            pool.close()
    if cache is not None and _bytes_changed(path, local_ident):
        ikeys.clear()
    return _finish(image, ordered, det, options, cache, ikeys, reference, started, scanned)


def scan_image(
    reference: str, options: ScanOptions | None = None, progress: ProgressFn | None = None
) -> ScanResult:
    """Resolve ``reference`` to a source, scan every layer and the config, return the result."""
    from imgscan.sources.common import is_compressed_archive
    from imgscan.sources.resolve import PathSource, resolve

    opts = options or ScanOptions()
    source = resolve(reference, opts.source, opts.source_kind, opts.registry or None)
    if isinstance(source, PathSource) and is_compressed_archive(source.path):
        return scan_streamed(
            source.path, opts, progress, reference=reference, source_reference=source.reference
        )
    with source.open() as image:
        return scan_opened(image, opts, progress, reference=reference)


__all__ = [
    "Category",
    "Detectors",
    "LayerResult",
    "ScanOptions",
    "assemble",
    "build_detectors",
    "scan_image",
    "scan_layer",
    "scan_opened",
]
