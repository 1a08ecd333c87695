"""`imgscan scan` against real registries from the command line: auth flags and exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from imgscan.cli import main
from imgscan.detect.keys import fake_private_key
from tests.infra.images import build_image, push_test_image
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import ALICE, client

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("clean_registry_env")]


def _push(server: RegistryServer, repo: str) -> str:
    image = build_image(
        [
            {"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"},
            {"srv/deploy.pem": fake_private_key("ec", 5).encode()},
            {"srv/.wh.deploy.pem": b""},
        ]
    )
    with client(server, ALICE) as c:
        return push_test_image(c, repo, "1.0", image)


def test_scan_with_basic_auth_over_tls(basic_registry: RegistryServer, repo_name: str) -> None:
    digest = _push(basic_registry, repo_name)
    ref = f"{basic_registry.host}/{repo_name}:1.0"
    args = ["scan", ref, "--ca-cert", str(basic_registry.ca_cert), "--format", "json", "-q"]
    res = CliRunner().invoke(
        main, [*args, "--username", ALICE.username, "--password-stdin"], input=ALICE.password + "\n"
    )
    assert res.exit_code == 1, res.output  # the deleted key is critical
    report = json.loads(res.stdout)
    assert report["image"]["digest"] == digest
    (key,) = [f for f in report["findings"] if f["rule"] == "private-key"]
    assert (key["path"], key["layer"], key["status"], key["removed_in_layer"]) == (
        "/srv/deploy.pem",
        1,
        "deleted",
        2,
    )
    assert ALICE.password not in res.output

    res = CliRunner().invoke(
        main, [*args, "--username", ALICE.username, "--password-stdin"], input="wrong-password\n"
    )
    assert res.exit_code == 3
    assert len(res.stderr.strip().splitlines()) == 1 and repo_name in res.stderr

    res = CliRunner().invoke(main, args)  # anonymous: denied
    assert res.exit_code == 3 and len(res.stderr.strip().splitlines()) == 1

    res = CliRunner().invoke(main, ["scan", ref, "--username", "alice"])
    assert res.exit_code == 2  # --username without --password-stdin is a usage error
