"""Fleet scale: the watch workload spread over Celery workers with a shared verdict cache.

Work is split by layer blob. For every image, a chord runs one ``scan_layer``
task per layer (each streams its blob from the registry and stores the result
in the shared cache keyed by diff_id + ruleset hash + imgscan version) and then
one ``assemble_image`` task that rebuilds exposure state and findings from the
cached layer results. A layer shared by many images is scanned once: the first
task to *claim* its key scans it, the others wait for the complete entry.

Fault handling: tasks are acknowledged late and rejected when their worker dies,
so a killed worker's task is delivered again; a cache entry is written in one
transaction and only complete entries are read; a claim expires, so a dead
claimant does not block the layer forever; the scheduler waits with a deadline
and reports the images it could not finish. A token bucket in Redis, shared by
every worker, keeps blob downloads under each registry's rate limit.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from imgscan.config import check_keys
from imgscan.errors import ConfigError, ImgscanError, SourceError
from imgscan.model import ScanResult

LAYER_TASK = "imgscan.scan_layer"
IMAGE_TASK = "imgscan.assemble_image"


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """Broker, result backend, shared cache and fault-handling knobs."""

    broker: str
    backend: str
    cache: str
    claim_ttl: float = 900.0  # seconds before another worker may take over a layer
    visibility_timeout: float = 3600.0  # redelivery of unacknowledged tasks (Redis)
    rate_per_second: float = 20.0  # blob downloads per registry across the fleet
    deadline: float = 3600.0  # the scheduler gives up waiting after this many seconds
    queue: str = "imgscan"
    extra: Mapping[str, Any] = field(default_factory=dict)


def settings_from(cfg: Mapping[str, Any], cache: str) -> FleetSettings:
    """Settings from the watch config's ``[celery]`` table, with env var fallbacks."""
    allowed = {
        "broker",
        "backend",
        "cache",
        "claim_ttl",
        "visibility_timeout",
        "rate_per_second",
        "deadline",
        "queue",
    }
    check_keys(cfg, allowed, "[celery]")
    broker = cfg.get("broker") or os.environ.get("IMGSCAN_BROKER_URL")
    backend = cfg.get("backend") or os.environ.get("IMGSCAN_RESULT_BACKEND") or broker
    if not broker:
        raise ConfigError(
            "celery executor needs a broker URL ([celery] broker or $IMGSCAN_BROKER_URL)"
        )
    try:
        return FleetSettings(
            broker=str(broker),
            backend=str(backend),
            cache=str(cfg.get("cache") or os.environ.get("IMGSCAN_CACHE_URL") or cache),
            claim_ttl=float(cfg.get("claim_ttl", 900)),
            visibility_timeout=float(cfg.get("visibility_timeout", 3600)),
            rate_per_second=float(cfg.get("rate_per_second", 20)),
            deadline=float(cfg.get("deadline", 3600)),
            queue=str(cfg.get("queue", "imgscan")),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[celery]: bad value ({exc})") from None


class RateLimiter:
    """A token bucket per registry host, shared by all workers through Redis."""

    def __init__(self, url: str, rate: float) -> None:
        import redis

        self.rate = max(rate, 0.001)
        self.r = redis.Redis.from_url(url)
        self._script = self.r.register_script(
            """
            local key, rate, burst, now = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                tonumber(ARGV[3])
            local b = redis.call('HMGET', key, 'tokens', 'ts')
            local tokens = tonumber(b[1]) or burst
            local ts = tonumber(b[2]) or now
            tokens = math.min(burst, tokens + (now - ts) * rate)
            local wait = 0
            if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
            redis.call('HSET', key, 'tokens', tokens, 'ts', now)
            redis.call('EXPIRE', key, 3600)
            return tostring(wait)
            """
        )

    def acquire(self, host: str) -> float:
        """Take one token for ``host``, sleeping as long as the bucket says; returns the wait."""
        waited = 0.0
        for _ in range(1000):
            wait = float(
                self._script(
                    keys=[f"imgscan:rate:{host}"],
                    args=[self.rate, max(1.0, self.rate), time.time()],
                )
            )
            if wait <= 0:
                return waited
            time.sleep(min(wait, 5.0))
            waited += wait
        return waited


def _detectors_and_options(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    from imgscan.scan import ScanOptions, build_detectors
    from imgscan.sources.base import SourceOptions

    opts = ScanOptions(source=SourceOptions(platform=spec.get("platform", "linux/amd64")))
    return build_detectors(opts), opts


def _registry_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    creds = None
    user_env, pw_env = spec.get("username_env"), spec.get("password_env")
    if user_env or pw_env:
        from imgscan.sources.auth import Credentials

        user, pw = os.environ.get(user_env or "", ""), os.environ.get(pw_env or "", "")
        if not user or not pw:
            raise SourceError(f"worker has no credentials in ${user_env} / ${pw_env}")
        creds = Credentials(username=user, password=pw)
    return {"creds": creds, "insecure": bool(spec.get("insecure")), "ca_cert": spec.get("ca_cert")}


def make_app(settings: FleetSettings) -> Any:
    """A Celery app with imgscan's two tasks registered (no import-time state)."""
    from celery import Celery

    app = Celery("imgscan", broker=settings.broker, backend=settings.backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    resources: dict[str, Any] = {}

    def cache() -> Any:
        from imgscan.workflows.cache import open_cache

        if "cache" not in resources:
            resources["cache"] = open_cache(settings.cache)
        return resources["cache"]

    def limiter() -> RateLimiter:
        if "limiter" not in resources:
            resources["limiter"] = RateLimiter(settings.broker, settings.rate_per_second)
        return cast(RateLimiter, resources["limiter"])

    def detectors(spec: Mapping[str, Any]) -> tuple[Any, Any]:
        if "detectors" not in resources:
            resources["detectors"] = _detectors_and_options(spec)
        return cast(tuple[Any, Any], resources["detectors"])

    @app.task(name=LAYER_TASK, bind=True, max_retries=None, acks_late=True)  # type: ignore[untyped-decorator]
    def scan_layer_task(self: Any, spec: dict[str, Any]) -> dict[str, Any]:
        """Scan one layer blob into the shared cache (once across the fleet)."""
        from imgscan.scan import scan_layer
        from imgscan.sources.base import LayerBlob
        from imgscan.sources.reference import parse_reference
        from imgscan.sources.registry import client_for

        c = cache()
        key = spec["key"]
        if c.has(key):
            return {"key": key, "scanned": False}
        owner = f"{socket.gethostname()}:{os.getpid()}:{self.request.id}"
        if not c.claim(key, owner, settings.claim_ttl):
            # Someone else is scanning it: come back when it is (probably) done.
            raise self.retry(countdown=1.0)
        try:
            if c.has(key):  # finished between our check and our claim
                return {"key": key, "scanned": False}
            ref = parse_reference(spec["repo_ref"], default_tag=None)
            limiter().acquire(ref.registry)
            det, opts = detectors(spec)
            kw = _registry_kwargs(spec)
            with client_for(ref, **kw) as client:
                blob = LayerBlob(
                    index=0,
                    digest=spec["digest"],
                    diff_id=spec.get("diff_id"),
                    size=spec.get("size"),
                    media_type=spec.get("media_type"),
                    open=lambda: client.open_blob(
                        ref.repository,
                        spec["digest"],
                        spec.get("size"),
                        f"layer {spec['digest'][:19]}",
                    ),
                )
                result = scan_layer(blob, det, opts.limits)
            c.put(key, spec.get("diff_id") or spec["digest"], result)
            return {"key": key, "scanned": True, "seconds": result.seconds}
        finally:
            c.release(key, owner)

    @app.task(name=IMAGE_TASK, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
    def assemble_image_task(
        self: Any, layer_outcomes: list[dict[str, Any]], spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Build an image's findings from its cached layer results."""
        from imgscan.scan import assemble
        from imgscan.sources.base import SourceOptions
        from imgscan.sources.registry import RegistrySource
        from imgscan.workflows.cache import encode_scan_result

        c = cache()
        det, _opts = detectors(spec)
        src = RegistrySource(
            spec["ref"],
            SourceOptions(platform=spec.get("platform", "linux/amd64")),
            **_registry_kwargs(spec),
        )
        with src.open() as image:
            info = image.info
        results = []
        for i, key in enumerate(spec["keys"]):
            lr = c.get(key, i)
            if lr is None:
                raise SourceError(f"{spec['ref']}: layer {i} result missing from the cache")
            results.append(lr)
        scanned = sum(1 for o in layer_outcomes if o.get("scanned"))
        res = assemble(info, results, det, reference=spec["ref"])
        stats = {
            **res.stats,
            "layers_scanned": scanned,
            "cache_hits": len(results) - scanned,
            "cache_misses": scanned,
        }
        import dataclasses

        return encode_scan_result(dataclasses.replace(res, stats=stats))

    app.imgscan_tasks = (scan_layer_task, assemble_image_task)
    return app


def run_worker(
    settings: FleetSettings,
    *,
    concurrency: int = 1,
    hostname: str | None = None,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker in this process (``imgscan worker``)."""
    app = make_app(settings)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        "-Q",
        settings.queue,
        "--without-gossip",
        "--without-mingle",
        "-n",
        hostname or f"imgscan-{uuid.uuid4().hex[:8]}@%h",
    ]
    app.worker_main(argv)


class CeleryExecutor:
    """Fan the watch's images out to Celery workers, one chord per image."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self.app = make_app(settings)

    def _image_spec(
        self, item: Any, cfg: Any, ruleset_hash: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from imgscan.scan import ScanOptions, options_tag
        from imgscan.sources.base import SourceOptions
        from imgscan.sources.registry import RegistrySource
        from imgscan.workflows.cache import cache_key
        from imgscan.workflows.watch import registry_kwargs

        t = item.target
        platform = t.platform or cfg.platform
        src = RegistrySource(item.ref, SourceOptions(platform=platform), **registry_kwargs(t))
        with src.open() as image:
            blobs = image.blobs
        tag = options_tag(ScanOptions())
        common = {
            "repo_ref": t.repo_ref,
            "insecure": t.insecure,
            "ca_cert": t.ca_cert,
            "username_env": t.username_env,
            "password_env": t.password_env,
            "platform": platform,
        }
        layers = []
        keys = []
        for b in blobs:
            layer_id = b.diff_id or b.digest or ""
            key = cache_key(layer_id, ruleset_hash, tag)
            keys.append(key)
            layers.append(
                {
                    **common,
                    "key": key,
                    "digest": b.digest,
                    "diff_id": b.diff_id,
                    "size": b.size,
                    "media_type": b.media_type,
                }
            )
        return layers, {**common, "ref": item.ref, "keys": keys}

    def scan_many(self, items: Sequence[Any], cfg: Any) -> dict[str, ScanResult | ImgscanError]:
        """Submit every image, wait (up to the deadline), collect results or errors."""
        from celery import chord

        from imgscan.workflows.cache import decode_scan_result

        ruleset_hash = _ruleset_hash()
        out: dict[str, ScanResult | ImgscanError] = {}
        pending: dict[str, Any] = {}
        for item in items:
            try:
                layers, spec = self._image_spec(item, cfg, ruleset_hash)
            except ImgscanError as exc:
                out[item.ref] = exc
                continue
            header = [self.app.signature(LAYER_TASK, args=(ls,)) for ls in layers]
            body = self.app.signature(IMAGE_TASK, args=(spec,))
            pending[item.ref] = chord(header)(body)
        deadline = time.monotonic() + self.settings.deadline
        while pending and time.monotonic() < deadline:
            # One backend read per pending image per round: slow the rounds down as the
            # number of images grows so the scheduler never floods the result backend.
            interval = min(5.0, max(0.2, len(pending) / 500))
            for ref, res in list(pending.items()):
                if not res.ready():
                    continue
                del pending[ref]
                try:
                    out[ref] = decode_scan_result(res.get(timeout=10, propagate=True))
                except ImgscanError as exc:
                    out[ref] = exc
                except Exception as exc:
                    out[ref] = SourceError(f"{ref}: worker failed: {type(exc).__name__}: {exc}")
            time.sleep(interval)
        for ref in pending:
            out[ref] = SourceError(f"{ref}: not finished within {self.settings.deadline:.0f}s")
        return out


def _ruleset_hash() -> str:
    from imgscan.detect.rulefiles import ruleset_digest

    return ruleset_digest()
