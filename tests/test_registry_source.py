"""The registry source against real docker-registry processes (plain, basic+TLS, token).

Images are built by hand (tests/infra/images.py) and pushed with imgscan's own
push code; faults are injected by a loopback proxy in front of the real registry.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgscan.errors import AuthError, ConfigError, LayerError, SourceError
from imgscan.sources.auth import Credentials
from imgscan.sources.base import SourceOptions
from imgscan.sources.registry import (
    RegistrySource,
    RetryPolicy,
    list_tags,
    parse_challenge,
    resolve_digest,
)
from tests.infra.faultproxy import FaultProxy
from tests.infra.images import (
    TestImage,
    build_image,
    push_index,
    push_test_image,
    random_bytes,
    read_files,
)
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import ALICE, BOB, FAST_RETRY, client

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("clean_registry_env")]

SMALL = [{"etc/app.conf": b"name = demo\n"}, {"srv/data.txt": b"hello from layer 1\n"}]


def source(
    server: RegistryServer | FaultProxy,
    ref: str,
    creds: Credentials | None = None,
    *,
    platform: str = "linux/amd64",
    ca_cert: str | None = None,
    retry: RetryPolicy = FAST_RETRY,
) -> RegistrySource:
    insecure = True
    if isinstance(server, RegistryServer):
        insecure = server.insecure
        if ca_cert is None and server.ca_cert is not None:
            ca_cert = str(server.ca_cert)
    return RegistrySource(
        f"{server.host}/{ref}",
        SourceOptions(platform=platform),
        creds,
        insecure=insecure,
        ca_cert=ca_cert,
        retry=retry,
    )


def pushed(
    server: RegistryServer, repo: str, tag: str, image: TestImage, creds: Credentials | None = None
) -> str:
    with client(server, creds) as c:
        return push_test_image(c, repo, tag, image)


@pytest.fixture
def proxy(plain_registry: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(plain_registry.url) as p:
        yield p


# -- plain registry --------------------------------------------------------------------------


def test_anonymous_pull_by_tag_and_digest(plain_registry: RegistryServer, repo_name: str) -> None:
    image = build_image(SMALL, user="app")
    digest = pushed(plain_registry, repo_name, "v1", image)
    assert digest == image.digest
    for ref in (f"{repo_name}:v1", f"{repo_name}@{digest}", f"{repo_name}:v1@{digest}"):
        with source(plain_registry, ref).open() as img:
            assert img.info.digest == digest
            assert (
                img.info.config_digest
                == "sha256:" + __import__("hashlib").sha256(image.config).hexdigest()
            )
            assert img.info.source_kind == "registry"
            assert img.info.reference == f"{plain_registry.host}/{ref}"
            assert img.info.platform == "linux/amd64"
            assert img.info.user == "app"
            assert [layer.diff_id for layer in img.info.layers] == list(image.diff_ids)
            assert [b.digest for b in img.blobs] == list(image.layer_digests)
            assert [layer.created_by for layer in img.info.layers] == [
                "/bin/sh -c #(nop) layer 0",
                "/bin/sh -c #(nop) layer 1",
            ]
            assert read_files(img) == {
                "/etc/app.conf": b"name = demo\n",
                "/srv/data.txt": b"hello from layer 1\n",
            }


def test_missing_tag_repository_and_digest(plain_registry: RegistryServer, repo_name: str) -> None:
    pushed(plain_registry, repo_name, "v1", build_image(SMALL))
    with pytest.raises(SourceError) as exc, source(plain_registry, f"{repo_name}:nope").open():
        pass
    assert str(exc.value) == (
        f"{plain_registry.host}/{repo_name}:nope: manifest not found (no such tag or digest)"
    )
    with (
        pytest.raises(SourceError, match="team/never-pushed") as exc2,
        source(plain_registry, "team/never-pushed:v1").open(),
    ):
        pass
    assert "not found" in str(exc2.value)
    missing = "sha256:" + "0" * 64
    with (
        pytest.raises(SourceError, match="manifest not found"),
        source(plain_registry, f"{repo_name}@{missing}").open(),
    ):
        pass


def test_bad_reference_is_a_usage_error(plain_registry: RegistryServer) -> None:
    with pytest.raises(ConfigError, match="lowercase"), source(plain_registry, "Team/App").open():
        pass


def test_index_selects_the_platform(plain_registry: RegistryServer, repo_name: str) -> None:
    amd = build_image([{"arch.txt": b"amd64\n"}], arch="amd64")
    arm = build_image([{"arch.txt": b"arm64\n"}], arch="arm64", variant="v8")
    with client(plain_registry) as c:
        index_digest = push_index(
            c, repo_name, "multi", [("linux/amd64", amd), ("linux/arm64/v8", arm)]
        )
    with source(plain_registry, f"{repo_name}:multi", platform="linux/arm64").open() as img:
        assert img.info.digest == arm.digest
        assert img.info.platform == "linux/arm64/v8"
        assert read_files(img) == {"/arch.txt": b"arm64\n"}
    with source(plain_registry, f"{repo_name}:multi").open() as img:
        assert img.info.digest == amd.digest
        assert read_files(img) == {"/arch.txt": b"amd64\n"}
    with (
        pytest.raises(SourceError) as exc,
        source(plain_registry, f"{repo_name}:multi", platform="linux/s390x").open(),
    ):
        pass
    assert "no manifest for platform linux/s390x" in str(exc.value)
    assert "linux/amd64, linux/arm64/v8" in str(exc.value)
    ref = f"{plain_registry.host}/{repo_name}:multi"
    assert resolve_digest(ref, insecure=True) == index_digest


def test_list_tags_follows_pagination(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    image = build_image(SMALL)
    tags = [f"v{i}" for i in range(7)]
    for tag in tags:
        pushed(plain_registry, repo_name, tag, image)
    assert sorted(list_tags(f"{plain_registry.host}/{repo_name}", insecure=True)) == tags
    proxy.paginate_tags = 2
    assert list_tags(f"{proxy.host}/{repo_name}", insecure=True) == tags
    pages = [p for m, p, _h in proxy.seen if "/tags/list" in p]
    assert len(pages) == 4  # 2 + 2 + 2 + 1 tags
    assert pages[1].endswith("?n=2&last=v1")
    proxy.seen.clear()
    assert list_tags(f"{proxy.host}/{repo_name}", insecure=True, page_size=3) == tags
    assert next(p for m, p, _h in proxy.seen if "/tags/list" in p).endswith("?n=3")
    with pytest.raises(SourceError, match="team/nothing-here: repository not found"):
        list_tags(f"{plain_registry.host}/team/nothing-here", insecure=True)


def test_resolve_digest_sees_a_moved_tag(plain_registry: RegistryServer, repo_name: str) -> None:
    first, second = build_image(SMALL), build_image([{"new.txt": b"v2\n"}])
    ref = f"{plain_registry.host}/{repo_name}:prod"
    pushed(plain_registry, repo_name, "prod", first)
    assert resolve_digest(ref, insecure=True) == first.digest
    pushed(plain_registry, repo_name, "prod", second)
    assert resolve_digest(ref, insecure=True) == second.digest


# -- faults injected by a proxy in front of the plain registry -------------------------------


def test_blob_cut_mid_stream_resumes_with_range(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    big = random_bytes(3 * 1024 * 1024, seed=7)
    image = build_image([{"big.bin": big}, {"small.txt": b"after\n"}])
    pushed(plain_registry, repo_name, "v1", image)
    layer = image.layer_digests[0]
    proxy.cut_after[f"/blobs/{layer}"] = 1_000_000
    with source(proxy, f"{repo_name}:v1").open() as img:
        files = read_files(img)
    assert files["/big.bin"] == big
    ranges = [h.get("Range") for m, p, h in proxy.seen if m == "GET" and layer in p]
    assert ranges == [None, "bytes=1000000-"]


def test_resume_works_when_the_server_ignores_range(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    big = random_bytes(2 * 1024 * 1024, seed=8)
    image = build_image([{"big.bin": big}])
    pushed(plain_registry, repo_name, "v1", image)
    proxy.ignore_range = True
    proxy.cut_after[f"/blobs/{image.layer_digests[0]}"] = 700_000
    with source(proxy, f"{repo_name}:v1").open() as img:
        assert read_files(img)["/big.bin"] == big


def test_blob_that_keeps_breaking_gives_up(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    image = build_image([{"big.bin": random_bytes(1024 * 1024, seed=9)}])
    pushed(plain_registry, repo_name, "v1", image)
    layer = image.layer_digests[0]
    proxy.cut_every[f"/blobs/{layer}"] = 100_000
    with source(proxy, f"{repo_name}:v1").open() as img, pytest.raises(LayerError) as exc:
        read_files(img)
    message = str(exc.value)
    assert message.startswith(f"layer 0 ({layer[:19]})")
    assert "did not recover after 3 resumptions" in message
    gets = [p for m, p, _h in proxy.seen if m == "GET" and layer in p]
    assert len(gets) == 1 + FAST_RETRY.resumes


def test_corrupt_layer_is_a_digest_error_naming_the_layer(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    image = build_image([{"a.txt": b"a\n"}, {"b.bin": random_bytes(200_000, seed=3)}])
    pushed(plain_registry, repo_name, "v1", image)
    bad = image.layer_digests[1]
    proxy.corrupt.add(f"/blobs/{bad}")
    with source(proxy, f"{repo_name}:v1").open() as img, pytest.raises(LayerError) as exc:
        read_files(img)
    message = str(exc.value)
    assert message.startswith(f"layer 1 ({bad[:19]})")
    assert "mismatch" in message or "corrupt" in message


def test_corrupt_config_and_manifest_are_refused(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    image = build_image(SMALL)
    pushed(plain_registry, repo_name, "v1", image)
    cfg = "sha256:" + __import__("hashlib").sha256(image.config).hexdigest()
    proxy.corrupt.add(f"/blobs/{cfg}")
    with (
        pytest.raises(SourceError, match="config digest mismatch"),
        source(proxy, f"{repo_name}:v1").open(),
    ):
        pass
    proxy.corrupt.clear()
    proxy.corrupt.add("/manifests/")
    with (
        pytest.raises(SourceError, match="manifest digest mismatch"),
        source(proxy, f"{repo_name}@{image.digest}").open(),
    ):
        pass
    with (
        pytest.raises(SourceError, match="content hashes to"),
        source(proxy, f"{repo_name}:v1").open(),
    ):
        pass


def test_retries_on_503_then_succeeds(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    pushed(plain_registry, repo_name, "v1", build_image(SMALL))
    proxy.fail_status["/manifests/v1"] = [503, 429]
    with source(proxy, f"{repo_name}:v1").open() as img:
        assert read_files(img)["/srv/data.txt"] == b"hello from layer 1\n"
    manifest_gets = [p for m, p, _h in proxy.seen if m == "GET" and "/manifests/v1" in p]
    assert len(manifest_gets) == 3


def test_broken_manifest_and_config_bodies_are_fetched_again(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    image = build_image(SMALL)
    pushed(plain_registry, repo_name, "v1", image)
    cfg = "sha256:" + __import__("hashlib").sha256(image.config).hexdigest()
    proxy.cut_after["/manifests/v1"] = 40
    proxy.cut_after[f"/blobs/{cfg}"] = 10
    with source(proxy, f"{repo_name}:v1").open() as img:
        assert img.info.digest == image.digest
    gets = [p for m, p, _h in proxy.seen if m == "GET"]
    assert len([p for p in gets if "/manifests/v1" in p]) == 2
    assert len([p for p in gets if cfg in p]) == 2


def test_persistent_5xx_is_a_clear_error(
    plain_registry: RegistryServer, proxy: FaultProxy, repo_name: str
) -> None:
    pushed(plain_registry, repo_name, "v1", build_image(SMALL))
    proxy.fail_status["/manifests/v1"] = [502] * 10
    with pytest.raises(SourceError) as exc, source(proxy, f"{repo_name}:v1").open():
        pass
    assert str(exc.value) == (f"{proxy.host}/{repo_name}:v1: manifest request failed with HTTP 502")
    assert len([p for m, p, _h in proxy.seen if "/manifests/v1" in p]) == FAST_RETRY.attempts


def test_unreachable_registry(repo_name: str) -> None:
    from tests.infra.registry import free_port

    src = RegistrySource(f"127.0.0.1:{free_port()}/{repo_name}:v1", insecure=True, retry=FAST_RETRY)
    with pytest.raises(SourceError, match="cannot reach the registry after 4 tries"), src.open():
        pass


def test_redirect_to_blob_storage_drops_authorization(
    plain_registry: RegistryServer, repo_name: str
) -> None:
    image = build_image(SMALL)
    pushed(plain_registry, repo_name, "v1", image)
    creds = Credentials("proxyuser", "proxy-test-password-fake")
    # "storage" is another host name for the same registry: localhost vs 127.0.0.1.
    with (
        FaultProxy(plain_registry.url, host="localhost") as storage,
        FaultProxy(plain_registry.url) as front,
    ):
        front.require_basic = (creds.username, creds.password)
        front.redirect_blobs_to = f"http://localhost:{storage.port}"
        with source(front, f"{repo_name}:v1", creds).open() as img:
            assert read_files(img)["/etc/app.conf"] == b"name = demo\n"
        storage_gets = [h for m, p, h in storage.seen if m == "GET" and "/blobs/" in p]
        assert len(storage_gets) == 3  # config + two layers
        assert all("Authorization" not in h for h in storage_gets)
        front_blob_gets = [h for m, p, h in front.seen if m == "GET" and "/blobs/" in p]
        assert front_blob_gets and all(
            h.get("Authorization", "").startswith("Basic ") for h in front_blob_gets
        )


# -- basic auth over TLS -----------------------------------------------------------------------


def test_basic_auth_tls_pull(basic_registry: RegistryServer, repo_name: str) -> None:
    image = build_image(SMALL)
    pushed(basic_registry, repo_name, "v1", image, ALICE)
    with source(basic_registry, f"{repo_name}:v1", ALICE).open() as img:
        assert img.info.digest == image.digest
        assert read_files(img)["/etc/app.conf"] == b"name = demo\n"


def test_basic_auth_anonymous_is_denied(basic_registry: RegistryServer, repo_name: str) -> None:
    pushed(basic_registry, repo_name, "v1", build_image(SMALL), ALICE)
    with pytest.raises(AuthError) as exc, source(basic_registry, f"{repo_name}:v1").open():
        pass
    assert str(exc.value).startswith(
        f"{basic_registry.host}/{repo_name}: authentication required (anonymous access denied"
    )


def test_basic_auth_wrong_password(basic_registry: RegistryServer, repo_name: str) -> None:
    wrong = Credentials(ALICE.username, "wrong-password-fake", "test")
    with pytest.raises(AuthError) as exc, source(basic_registry, f"{repo_name}:v1", wrong).open():
        pass
    message = str(exc.value)
    assert message.startswith(
        f"{basic_registry.host}/{repo_name}: registry rejected the "
        "credentials for user 'alice' (test)"
    )
    assert "wrong-password-fake" not in message


def test_tls_without_the_ca_is_refused(
    basic_registry: RegistryServer, repo_name: str, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    with (
        pytest.raises(SourceError, match=r"TLS verification failed.*--ca-cert"),
        source(basic_registry, f"{repo_name}:v1", ALICE, ca_cert=str(other_ca)).open(),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="no such file"),
        source(basic_registry, f"{repo_name}:v1", ALICE, ca_cert=str(tmp_path / "nope")).open(),
    ):
        pass


def test_insecure_uses_unverified_tls_when_the_registry_speaks_it(
    basic_registry: RegistryServer, repo_name: str
) -> None:
    pushed(basic_registry, repo_name, "v1", build_image(SMALL), ALICE)
    src = RegistrySource(
        f"{basic_registry.host}/{repo_name}:v1", creds=ALICE, insecure=True, retry=FAST_RETRY
    )
    with src.open() as img:
        assert read_files(img)["/etc/app.conf"] == b"name = demo\n"


def test_credentials_from_docker_config_helper(
    basic_registry: RegistryServer,
    repo_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed(basic_registry, repo_name, "v1", build_image(SMALL), ALICE)
    bindir, cfgdir = tmp_path / "bin", tmp_path / "docker"
    bindir.mkdir()
    cfgdir.mkdir()
    helper = bindir / "docker-credential-test"
    helper.write_text(
        "#!/bin/sh\nread -r server\n"
        f'[ "$server" = "{basic_registry.host}" ] || '
        '{ echo "credentials not found in native keychain"; exit 1; }\n'
        f'printf \'{{"ServerURL":"%s","Username":"{ALICE.username}",'
        f'"Secret":"{ALICE.password}"}}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    (cfgdir / "config.json").write_text(json.dumps({"credsStore": "test"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfgdir))
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    with source(basic_registry, f"{repo_name}:v1").open() as img:  # creds=None: looked up
        assert read_files(img)["/srv/data.txt"] == b"hello from layer 1\n"
    # The same through a plain auths entry, and through the environment variables.
    token = base64.b64encode(f"{ALICE.username}:{ALICE.password}".encode()).decode()
    (cfgdir / "config.json").write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": token}}})
    )
    with source(basic_registry, f"{repo_name}:v1").open() as img:
        assert len(img.blobs) == 2
    (cfgdir / "config.json").write_text("{}")
    monkeypatch.setenv("IMGSCAN_REGISTRY_USERNAME", ALICE.username)
    monkeypatch.setenv("IMGSCAN_REGISTRY_PASSWORD", ALICE.password)
    with source(basic_registry, f"{repo_name}:v1").open() as img:
        assert len(img.blobs) == 2


# -- bearer tokens -----------------------------------------------------------------------------


def test_token_auth_pull_caches_tokens(token_registry: RegistryServer, repo_name: str) -> None:
    image = build_image([{"a.txt": b"a\n"}, {"b.txt": b"b\n"}, {"c.txt": b"c\n"}])
    pushed(token_registry, repo_name, "v1", image, ALICE)
    ts = token_registry.token_server
    assert ts is not None
    before = len(ts.requests)
    with source(token_registry, f"{repo_name}:v1", ALICE).open() as img:
        assert read_files(img) == {"/a.txt": b"a\n", "/b.txt": b"b\n", "/c.txt": b"c\n"}
    issued = ts.requests[before:]
    # One token for repository:<repo>:pull, reused for the manifest, config and 3 layers.
    assert issued == [{"user": "alice", "scopes": [f"repository:{repo_name}:pull"], "ok": True}]


def test_token_auth_anonymous_is_denied(token_registry: RegistryServer, repo_name: str) -> None:
    pushed(token_registry, repo_name, "v1", build_image(SMALL), ALICE)
    with pytest.raises(AuthError) as exc, source(token_registry, f"{repo_name}:v1").open():
        pass
    assert str(exc.value).startswith(
        f"{token_registry.host}/{repo_name}: authentication required (anonymous access denied"
    )


def test_token_auth_wrong_password(token_registry: RegistryServer, repo_name: str) -> None:
    wrong = Credentials(ALICE.username, "not-the-password-fake", "test")
    with pytest.raises(AuthError) as exc, source(token_registry, f"{repo_name}:v1", wrong).open():
        pass
    assert str(exc.value) == (
        f"{token_registry.host}: token server rejected the credentials for user 'alice' (test)"
    )


def test_token_scoped_to_another_repo(token_registry: RegistryServer, repo_name: str) -> None:
    pushed(token_registry, repo_name, "v1", build_image(SMALL), ALICE)
    with pytest.raises(AuthError) as exc, source(token_registry, f"{repo_name}:v1", BOB).open():
        pass
    message = str(exc.value)
    assert message.startswith(
        f"{token_registry.host}/{repo_name}: user 'bob' is not allowed "
        "to pull this repository (token lacks pull access)"
    )
    assert BOB.password not in message


def test_parse_challenge() -> None:
    ch = parse_challenge(
        'Bearer realm="https://auth.example.com/token",'
        'service="registry.example.com",scope="repository:a/b:pull,push",'
        'error="insufficient_scope"'
    )
    assert ch is not None and ch.scheme == "bearer"
    assert dict(ch.params) == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert (
        basic is not None
        and basic.scheme == "basic"
        and basic.params["realm"] == ("Registry Realm")
    )
    assert parse_challenge(None) is None


# -- end to end through the scan pipeline ------------------------------------------------------


def test_scan_image_from_the_registry_finds_a_generated_key(
    token_registry: RegistryServer, repo_name: str
) -> None:
    import subprocess

    from imgscan.scan import ScanOptions, scan_image

    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    image = build_image([{"root/.ssh/id_rsa": key}, {"etc/motd": b"welcome\n"}])
    pushed(token_registry, repo_name, "v1", image, ALICE)
    opts = ScanOptions(
        source_kind="registry",
        registry={"creds": ALICE, "insecure": True, "retry": FAST_RETRY},
    )
    result = scan_image(f"{token_registry.host}/{repo_name}:v1", opts)
    assert result.image.source_kind == "registry"
    assert result.image.digest == image.digest
    hits = [(f.rule, f.path, f.layer) for f in result.findings if f.path == "/root/.ssh/id_rsa"]
    assert hits and all(layer == 0 for _rule, _path, layer in hits)
    assert not result.unscanned


def test_debug_logs_never_hold_credentials_or_tokens(
    basic_registry: RegistryServer,
    token_registry: RegistryServer,
    repo_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pushed(basic_registry, repo_name, "v1", build_image(SMALL), ALICE)
    pushed(token_registry, repo_name, "v1", build_image(SMALL), ALICE)
    caplog.set_level("DEBUG")
    for server in (basic_registry, token_registry):
        with source(server, f"{repo_name}:v1", ALICE).open() as img:
            read_files(img)
    wrong = Credentials("alice", "wrong-password-must-not-leak", "test")
    with pytest.raises(AuthError), source(token_registry, f"{repo_name}:v1", wrong).open():
        pass
    text = caplog.text
    assert "GET /v2/" in text  # debug logging did happen
    basic = base64.b64encode(f"{ALICE.username}:{ALICE.password}".encode()).decode()
    for secret in (ALICE.password, basic, "wrong-password-must-not-leak", "eyJ"):
        assert secret not in text


@pytest.mark.parametrize(
    ("delta", "fragment"),
    [
        (-1, "registry sent more than the {size} bytes the manifest declares"),
        (5, "blob ends at byte {real} but the manifest declares {size} bytes"),
    ],
)
def test_blob_size_must_match_the_manifest(
    plain_registry: RegistryServer, repo_name: str, delta: int, fragment: str
) -> None:
    from imgscan.sources.common import MT_OCI_MANIFEST
    from imgscan.sources.push import push_manifest

    image = build_image([{"a.txt": b"a" * 1000}])
    pushed(plain_registry, repo_name, "v1", image)
    doc = json.loads(image.manifest)
    real = doc["layers"][0]["size"]
    doc["layers"][0]["size"] = real + delta
    with client(plain_registry) as c:
        push_manifest(c, repo_name, "lying", json.dumps(doc).encode(), MT_OCI_MANIFEST)
    with (
        source(plain_registry, f"{repo_name}:lying").open() as img,
        pytest.raises(LayerError) as exc,
    ):
        read_files(img)
    assert str(exc.value) == f"layer 0 ({image.layer_digests[0][:19]}): " + fragment.format(
        size=real + delta, real=real
    )
