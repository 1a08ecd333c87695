"""Feed file content to content detectors in bounded chunks and turn hits into findings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from imgscan.detect.base import ContentDetector, FileContext, Hit
from imgscan.findings.fingerprint import fingerprint, redact, secret_digest
from imgscan.model import Finding, Unscanned

# An expander turns an archive/compressed file into nested items: (ctx, bytes) or Unscanned.
Expander = Callable[[FileContext, bytes], Iterator["tuple[FileContext, bytes] | Unscanned"]]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How content is read and scanned."""

    chunk_size: int = 8 * 1024 * 1024
    overlap: int = 64 * 1024
    max_file_bytes: int = 4 * 1024**3
    max_nested_outer: int = 64 * 1024 * 1024  # archives larger than this are not expanded
    show_secrets: bool = False


@dataclass(slots=True)
class FileScan:
    """What scanning one file produced."""

    findings: list[Finding] = field(default_factory=list)
    unscanned: list[Unscanned] = field(default_factory=list)
    digests: tuple[str, str, str] | None = None  # (md5, sha1, sha256) hex, when findings
    head: bytes = b""


def file_digests(data: bytes) -> tuple[str, str, str]:
    """(md5, sha1, sha256) of a file: what dpkg, apk and pip record for package files."""
    return (
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


def finding_from_hit(hit: Hit, ctx: FileContext, line: int | None, show: bool) -> Finding:
    """Build a Finding from a raw hit: redacted value, digest and fingerprint."""
    digest = secret_digest(hit.secret)
    return Finding(
        category=hit.category,
        rule=hit.rule,
        title=hit.title,
        severity=hit.severity,
        message=hit.message or hit.title,
        fingerprint=fingerprint(hit.rule, ctx.path, digest),
        layer=ctx.layer,
        path=ctx.path,
        line=line,
        redacted=redact(hit.secret),
        secret_sha256=digest,
        validated=hit.validated,
        secret=hit.secret if show else None,
        extra=dict(hit.extra),
    )


def _is_binary(head: bytes) -> bool:
    try:
        from imgscan.detect.strings import is_binary
    except ImportError:
        return b"\0" in head[:8192]
    return bool(is_binary(head))


class ContentScanner:
    """Runs every content detector over a file, chunk by chunk, with an overlap."""

    def __init__(
        self,
        detectors: Sequence[ContentDetector],
        options: EngineOptions | None = None,
        expander: Expander | None = None,
        wants_archive: Callable[[FileContext, bytes], bool] | None = None,
    ) -> None:
        self.detectors = list(detectors)
        self.options = options or EngineOptions()
        self.expander = expander
        self.wants_archive = wants_archive

    def _run(self, ctx: FileContext, data: bytes, binary: bool) -> Iterable[Hit]:
        for det in self.detectors:
            if binary and getattr(det, "text_only", False):
                continue
            yield from det.scan(ctx, data)

    def scan_bytes(self, ctx: FileContext, data: bytes, out: FileScan) -> None:
        """Scan a whole file held in memory (and its nested content)."""
        binary = _is_binary(data[:8192])
        seen: set[tuple[str, int]] = set()
        for hit in self._run(ctx, data, binary):
            if (hit.rule, hit.offset) in seen:
                continue
            seen.add((hit.rule, hit.offset))
            line = None if (binary or hit.no_line) else data.count(b"\n", 0, hit.offset) + 1
            out.findings.append(finding_from_hit(hit, ctx, line, self.options.show_secrets))
        self._expand(ctx, data, out)

    def _expand(self, ctx: FileContext, data: bytes, out: FileScan) -> None:
        if self.expander is None or self.wants_archive is None:
            return
        if not self.wants_archive(ctx, data[:512]):
            return
        for item in self.expander(ctx, data):
            if isinstance(item, Unscanned):
                out.unscanned.append(item)
            else:
                child_ctx, child = item
                self.scan_bytes(child_ctx, child, out)

    def scan_reader(self, ctx: FileContext, reader: BinaryIO, size: int) -> FileScan:
        """Scan a file from a stream; large files go chunk by chunk in bounded memory."""
        opts = self.options
        out = FileScan()
        if size <= opts.chunk_size:
            data = reader.read(size)
            out.head = data[:512]
            self.scan_bytes(ctx, data, out)
            if out.findings:
                out.digests = file_digests(data)
            return out
        self._scan_chunks(ctx, reader, size, out)
        return out

    def _scan_chunks(self, ctx: FileContext, reader: BinaryIO, size: int, out: FileScan) -> None:
        opts = self.options
        md5 = hashlib.md5(usedforsecurity=False)
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha = hashlib.sha256()
        pos = 0  # absolute offset of the start of `buf`
        lines_before = 0  # newlines before `pos`
        tail = b""
        seen: set[tuple[str, int]] = set()
        binary: bool | None = None
        limit = min(size, opts.max_file_bytes)
        read_total = 0
        archive_buf: bytearray | None = None
        while read_total < limit:
            chunk = reader.read(min(opts.chunk_size, limit - read_total))
            if not chunk:
                break
            if read_total == 0:
                out.head = chunk[:512]
                binary = _is_binary(chunk[:8192])
                if (
                    self.expander is not None
                    and self.wants_archive is not None
                    and size <= opts.max_nested_outer
                    and self.wants_archive(ctx, chunk[:512])
                ):
                    archive_buf = bytearray()
            read_total += len(chunk)
            md5.update(chunk)
            sha1.update(chunk)
            sha.update(chunk)
            if archive_buf is not None:
                archive_buf += chunk
            buf = tail + chunk
            for hit in self._run(ctx, buf, bool(binary)):
                absolute = pos + hit.offset
                if (hit.rule, absolute) in seen:
                    continue
                seen.add((hit.rule, absolute))
                line = None
                if not binary and not hit.no_line:
                    line = lines_before + buf.count(b"\n", 0, hit.offset) + 1
                out.findings.append(finding_from_hit(hit, ctx, line, opts.show_secrets))
            keep = min(opts.overlap, len(buf))
            new_tail = buf[len(buf) - keep :] if keep else b""
            lines_before += buf.count(b"\n", 0, len(buf) - keep)
            pos += len(buf) - keep
            tail = new_tail
        if size > opts.max_file_bytes:
            out.unscanned.append(
                Unscanned(
                    ctx.layer,
                    ctx.path,
                    f"file is {size} bytes; only the first "
                    f"{opts.max_file_bytes} bytes were scanned",
                )
            )
        if archive_buf is not None:
            self._expand(ctx, bytes(archive_buf), out)
        out.digests = (md5.hexdigest(), sha1.hexdigest(), sha.hexdigest())


def describe(detectors: Sequence[Any]) -> list[str]:
    """Names of the detectors, for the report's stats."""
    return [str(getattr(d, "name", type(d).__name__)) for d in detectors]


VENDOR_PREFIXES = (
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/usr/share/",
    "/usr/include/",
    "/usr/bin/",
    "/usr/sbin/",
    "/lib/",
    "/lib64/",
    "/bin/",
    "/sbin/",
    "/var/lib/dpkg/",
    "/var/lib/apt/",
    "/var/cache/",
    "/usr/local/lib/",
    "/opt/conda/pkgs/",
)
VENDOR_PARTS = (
    "/site-packages/",
    "/dist-packages/",
    "/node_modules/",
    "/vendor/bundle/",
    "/.cargo/registry/",
    "/go/pkg/mod/",
)


def is_vendor_path(path: str) -> bool:
    """Whether a path lies in a tree that package managers own (distro, pip, npm, ...)."""
    outer = path.split("!", 1)[0]
    return outer.startswith(VENDOR_PREFIXES) or any(p in outer for p in VENDOR_PARTS)


class OutsideVendorTrees:
    """Runs a detector only on files outside package-manager trees.

    The entropy/keyword plugins and the strings-of-binaries pass are the slowest and
    noisiest detectors, and vendor trees are most of an image's bytes. There the rule
    engine (which also reads binaries raw) and the credential-file parsers still run;
    ``--all`` runs everything everywhere.
    """

    def __init__(self, inner: ContentDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.text_only = bool(getattr(inner, "text_only", False))

    def scan(self, ctx: FileContext, data: bytes) -> Iterable[Hit]:
        """The inner detector's hits, unless ``ctx.path`` is in a vendor tree."""
        if is_vendor_path(ctx.path):
            return ()
        return self.inner.scan(ctx, data)
