"""Fleet scale: watch on two real Celery workers (Redis broker, PostgreSQL cache) vs local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgscan.workflows.cache import open_cache
from imgscan.workflows.watch import load_watch_config, run_watch
from tests.conftest import require
from tests.infra.fleetdata import push_fleet, watch_config
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import client
from tests.infra.services import (
    Service,
    postgres_available,
    postgres_server,
    redis_available,
    redis_server,
)

pytestmark = [pytest.mark.registry, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis() -> Iterator[Service]:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with redis_server() as svc:
        yield svc


@pytest.fixture(scope="module")
def postgres() -> Iterator[Service]:
    require(postgres_available(), "PostgreSQL (apt-get install postgresql)")
    with postgres_server() as svc:
        yield svc


class Workers:
    """Real ``imgscan worker`` processes; each its own process group."""

    def __init__(
        self,
        broker: str,
        cache: str,
        logdir: Path,
        *,
        claim_ttl: float = 10,
        visibility_timeout: float = 15,
    ) -> None:
        self.broker, self.cache, self.logdir = broker, cache, logdir
        self.claim_ttl, self.visibility_timeout = claim_ttl, visibility_timeout
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imgscan.cli",
                "worker",
                "--broker",
                self.broker,
                "--cache",
                self.cache,
                "--concurrency",
                "1",
                "--hostname",
                f"{name}@test",
                "--claim-ttl",
                str(self.claim_ttl),
                "--visibility-timeout",
                str(self.visibility_timeout),
                "--loglevel",
                "INFO",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        for name, proc in self.procs.items():
            path = self.logdir / f"{name}.log"
            while b"ready." not in path.read_bytes():
                if proc.poll() is not None:
                    raise AssertionError(f"worker {name} died:\n{path.read_text()[-3000:]}")
                if time.monotonic() > end:
                    raise AssertionError(f"worker {name} not ready:\n{path.read_text()[-3000:]}")
                time.sleep(0.2)

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _findings(report_path: str) -> list[str]:
    data = json.loads(Path(report_path).read_text())
    rows = []
    for f in data["findings"]:
        f.pop("suppressed", None)
        f.pop("suppression", None)
        rows.append(json.dumps(f, sort_keys=True))
    return sorted(rows)


def _by_tag(report: object) -> dict[str, list[str]]:
    images = report.images  # type: ignore[attr-defined]
    return {i["tag"]: _findings(i["report"]) for i in images}


def test_celery_matches_local_scans_shared_layers_once_and_survives_a_killed_worker(
    plain_registry: RegistryServer,
    repo_name: str,
    tmp_path: Path,
    redis: Service,
    postgres: Service,
) -> None:
    with client(plain_registry) as c:
        fleet = push_fleet(c, repo_name, 20)

    t0 = time.perf_counter()
    local = run_watch(
        load_watch_config(watch_config(tmp_path / "local", plain_registry.host, repo_name))
    )
    local_wall = time.perf_counter() - t0
    assert local.scanned == 20 and not local.errors

    db = f"{postgres.url}?application_name=fleet-test"
    workers = Workers(redis.url, db, tmp_path)
    try:
        workers.start("w1")
        victim = workers.start("w2")
        workers.wait_ready()
        from imgscan.workflows.fleet import CeleryExecutor, settings_from

        cfg = load_watch_config(
            watch_config(
                tmp_path / "celery",
                plain_registry.host,
                repo_name,
                executor="celery",
                broker=redis.url,
                cache_url=db,
            )
        )
        executor = CeleryExecutor(settings_from(cfg.celery, str(cfg.cache)))

        # Kill w2 with SIGKILL as soon as it has started a layer task.
        killed = {"done": False}

        def killer() -> None:
            end = time.monotonic() + 60
            while time.monotonic() < end and not killed["done"]:
                if "imgscan.scan_layer" in workers.log("w2") and "received" in workers.log("w2"):
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed["done"] = True
                    return
                time.sleep(0.05)

        import threading

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        t0 = time.perf_counter()
        celery = run_watch(cfg, executor=executor)
        celery_wall = time.perf_counter() - t0
        th.join(5)
        assert killed["done"], "the second worker never received a layer task"
        assert victim.poll() is not None
    finally:
        workers.stop()

    print(f"\n20 tags: local {local_wall:.1f}s, celery (2 workers, one killed) {celery_wall:.1f}s")
    assert not celery.errors, celery.errors
    assert celery.scanned == 20
    # Identical findings, tag by tag, byte for byte after sorting.
    assert _by_tag(celery) == _by_tag(local)
    # Each distinct layer was scanned exactly once across the fleet: 2 bases + 20 apps.
    cache = open_cache(db)
    try:
        assert cache.total_scans() == 22  # type: ignore[attr-defined]
    finally:
        cache.close()
    assert set(_by_tag(celery)) == set(fleet.tags)
