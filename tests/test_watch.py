"""Scheduled scans of production tags against a real docker-registry on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgscan.cli import main
from imgscan.errors import ConfigError
from imgscan.workflows.watch import load_watch_config, run_watch
from tests.infra.fleetdata import move_tag, push_fleet, watch_config
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import client

pytestmark = pytest.mark.registry


def test_watch_scans_base_layers_once_then_nothing_then_the_moved_tag(
    plain_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    with client(plain_registry) as c:
        fleet = push_fleet(c, repo_name, 20)
    cfg = load_watch_config(watch_config(tmp_path, plain_registry.host, repo_name))

    first = run_watch(cfg)
    assert not first.errors
    assert first.scanned == 20 and first.skipped == 0
    # 2 shared base layers once + one app layer per tag; everything else from the cache.
    assert first.layers_scanned == 2 + 20
    assert first.cache_hits == 20 * 3 - 22
    assert first.policy_failed == len(fleet.leaky)  # the planted keys are critical
    assert first.exit_code == 1
    scanned_tags = {i["tag"] for i in first.images}
    assert scanned_tags == set(fleet.tags)  # dev-1 / latest-build do not match "v*"
    for img in first.images:
        report = json.loads(Path(img["report"]).read_text())
        assert report["image"]["digest"] == fleet.tags[img["tag"]]
        keys = [f for f in report["findings"] if f["rule"] == "private-key"]
        assert bool(keys) == (img["tag"] in fleet.leaky)
        assert Path(img["report"]).with_suffix(".sarif").is_file()
    summary = json.loads((cfg.output_dir / "summary.json").read_text())
    assert summary["cache"]["layers_scanned"] == 22

    second = run_watch(cfg)
    assert second.scanned == 0 and second.skipped == 20
    assert second.layers_scanned == 0
    assert not second.moved
    assert second.exit_code == 1  # the leaky images still fail the policy

    with client(plain_registry) as c:
        new_digest = move_tag(c, repo_name, "v1.3", 500)
    third = run_watch(cfg)
    assert third.scanned == 1 and third.skipped == 19
    assert third.layers_scanned == 1  # only the new app layer; bases come from the cache
    assert third.moved == [
        {
            "repository": f"{plain_registry.host}/{repo_name}",
            "tag": "v1.3",
            "from": fleet.tags["v1.3"],
            "to": new_digest,
        }
    ]
    moved = next(i for i in third.images if i["tag"] == "v1.3")
    assert moved["new_findings"]  # the new image leaks a key the old one did not


def test_watch_cli_exit_codes(
    plain_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    with client(plain_registry) as c:
        push_fleet(c, repo_name, 2)
    path = watch_config(tmp_path, plain_registry.host, repo_name)
    res = CliRunner().invoke(main, ["watch", "--config", str(path), "-q"])
    assert res.exit_code == 1, res.output  # v1.0 leaks a key
    assert "policy failed for 1 image(s)" in res.output

    bad = watch_config(tmp_path, plain_registry.host, "team/does-not-exist-anywhere")
    res = CliRunner().invoke(main, ["watch", "--config", str(bad), "-q"])
    assert res.exit_code == 3, res.output


def test_watch_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[[target]]\nregistry = "r"\nrepository = "x"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        load_watch_config(path)
    path.write_text('statee = "x"\n[[target]]\nregistry = "r"\nrepository = "x"\n')
    with pytest.raises(ConfigError, match="statee"):
        load_watch_config(path)
    res = CliRunner().invoke(main, ["watch", "--config", str(path)])
    assert res.exit_code == 2
