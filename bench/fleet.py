"""The 20-tag watch run, local vs Celery (2 workers), on real services started here.

    python bench/fleet.py [--tags 20] [--workers 2]

Starts a docker-registry, Redis and PostgreSQL on 127.0.0.1 (test infrastructure),
pushes N tags that share two base layers, then runs ``watch`` once with the local
executor and once with the Celery executor (fresh state and cache each), and
prints wall times, layers scanned, cache hits, per-layer scan cost and whether the
findings are identical. Figures feed docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgscan.workflows.cache import open_cache  # noqa: E402
from imgscan.workflows.watch import load_watch_config, run_watch  # noqa: E402
from tests.infra.fleetdata import push_fleet, watch_config  # noqa: E402
from tests.infra.registry import RegistryServer  # noqa: E402
from tests.infra.registry_fixtures import client  # noqa: E402
from tests.infra.services import postgres_server, redis_server  # noqa: E402


def _findings(report: object) -> dict[str, list[str]]:
    out = {}
    for img in report.images:  # type: ignore[attr-defined]
        data = json.loads(Path(img["report"]).read_text())
        out[img["tag"]] = sorted(json.dumps(f, sort_keys=True) for f in data["findings"])
    return out


def _med(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="imgscan-fleet-bench-"))
    server = RegistryServer("plain").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with redis_server() as redis, postgres_server() as pg:
            repo = "team/fleet-bench"
            with client(server) as c:
                push_fleet(c, repo, args.tags)
            t0 = time.perf_counter()
            local = run_watch(load_watch_config(watch_config(tmp / "local", server.host, repo)))
            local_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            local2 = run_watch(load_watch_config(watch_config(tmp / "local", server.host, repo)))
            rerun_wall = time.perf_counter() - t0
            for i in range(args.workers):
                log = open(tmp / f"w{i}.log", "wb")  # noqa: SIM115
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "imgscan.cli",
                            "worker",
                            "--broker",
                            redis.url,
                            "--cache",
                            pg.url,
                            "--concurrency",
                            "1",
                            "--hostname",
                            f"w{i}@bench",
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            end = time.monotonic() + 60
            for i in range(args.workers):
                while b"ready." not in (tmp / f"w{i}.log").read_bytes():
                    if time.monotonic() > end:
                        raise SystemExit(f"worker {i} not ready")
                    time.sleep(0.2)
            from imgscan.workflows.fleet import CeleryExecutor, settings_from

            cfg = load_watch_config(
                watch_config(
                    tmp / "celery",
                    server.host,
                    repo,
                    executor="celery",
                    broker=redis.url,
                    cache_url=pg.url,
                    deadline=600,
                )
            )
            executor = CeleryExecutor(settings_from(cfg.celery, str(cfg.cache)))
            prep: list[float] = []
            orig = executor._image_spec

            def timed(*a: object, **kw: object) -> object:
                t = time.perf_counter()
                try:
                    return orig(*a, **kw)  # type: ignore[arg-type]
                finally:
                    prep.append(time.perf_counter() - t)

            executor._image_spec = timed  # type: ignore[method-assign,assignment]
            t0 = time.perf_counter()
            celery = run_watch(cfg, executor=executor)
            celery_wall = time.perf_counter() - t0
            cache = open_cache(pg.url)
            total_scans = cache.total_scans()  # type: ignore[attr-defined]
            cache.close()
            seconds: list[float] = []
            hit_seconds: list[float] = []
            assemble: list[float] = []
            for i in range(args.workers):
                for line in (tmp / f"w{i}.log").read_text(errors="replace").splitlines():
                    if "succeeded in" not in line:
                        continue
                    took = float(line.split("succeeded in ")[1].split("s:")[0])
                    if "imgscan.scan_layer" in line:
                        (seconds if "'scanned': True" in line else hit_seconds).append(took)
                    elif "imgscan.assemble_image" in line:
                        assemble.append(took)
            same = _findings(local) == _findings(celery)
            hits = local.cache_hits
            total = local.cache_hits + local.cache_misses
            print(
                json.dumps(
                    {
                        "tags": args.tags,
                        "local": {
                            "wall_s": round(local_wall, 2),
                            "layers_scanned": local.layers_scanned,
                            "cache_hits": hits,
                            "cache_lookups": total,
                            "hit_rate": round(hits / total, 3) if total else None,
                            "rerun_wall_s": round(rerun_wall, 2),
                            "rerun_layers_scanned": local2.layers_scanned,
                        },
                        "celery": {
                            "workers": args.workers,
                            "wall_s": round(celery_wall, 2),
                            "layers_scanned_total": total_scans,
                            "errors": celery.errors,
                            "layer_task_seconds_median": _med(seconds),
                            "hit_task_seconds_median": _med(hit_seconds),
                            "assemble_seconds_median": _med(assemble),
                            "prepare_submit_seconds_median": _med(prep),
                        },
                        "findings_identical": same,
                    },
                    indent=2,
                )
            )
            return 0 if same and not celery.errors else 1
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
