"""Pushing with imgscan's own distribution-API client, against real registries."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest

from imgscan.errors import AuthError, SourceError
from imgscan.sources.base import SourceOptions
from imgscan.sources.push import push_blob, push_image
from imgscan.sources.registry import RegistrySource
from tests.infra.faultproxy import FaultProxy
from tests.infra.images import build_image, push_test_image, random_bytes, sha256
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import ALICE, BOB, FAST_RETRY, client

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("clean_registry_env")]


@pytest.fixture
def proxy(plain_registry: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(plain_registry.url) as p:
        yield p


def _uploads(proxy: FaultProxy) -> list[str]:
    return [
        f"{m} {p.split('?')[0].rsplit('/', 1)[-1][:8]}"
        for m, p, _h in proxy.seen
        if m in ("POST", "PATCH", "PUT") and "/blobs/uploads/" in p
    ]


def test_monolithic_then_skip_existing(proxy: FaultProxy, repo_name: str) -> None:
    data = b"monolithic blob\n"
    digest = sha256(data)
    with client_for_proxy(proxy) as c:
        assert push_blob(c, repo_name, data, digest) == (digest, len(data))
        assert [m for m, p, _h in proxy.seen if "/blobs/" in p] == ["HEAD", "POST", "PUT"]
        proxy.seen.clear()
        assert push_blob(c, repo_name, data, digest) == (digest, len(data))
        assert [m for m, p, _h in proxy.seen if "/blobs/" in p] == ["HEAD"]
        assert c.blob_exists(repo_name, digest) == len(data)


def test_chunked_stream_upload_computes_the_digest(proxy: FaultProxy, repo_name: str) -> None:
    data = random_bytes(250_000, seed=11)
    with client_for_proxy(proxy) as c:
        digest, size = push_blob(c, repo_name, io.BytesIO(data), None, chunk_size=100_000)
        assert (digest, size) == (sha256(data), len(data))
        methods = [m for m, p, _h in proxy.seen if "/blobs/uploads/" in p]
        assert methods == ["POST", "PATCH", "PATCH", "PATCH", "PUT"]
        ranges = [h["Content-Range"] for m, p, h in proxy.seen if m == "PATCH"]
        assert ranges == ["0-99999", "100000-199999", "200000-249999"]
        assert c.get_blob_bytes(repo_name, digest, 1 << 20, "blob") == data


def test_stream_with_wrong_digest_is_refused(
    plain_registry: RegistryServer, repo_name: str
) -> None:
    with client(plain_registry) as c, pytest.raises(SourceError, match="hashes to"):
        push_blob(c, repo_name, io.BytesIO(b"actual"), sha256(b"claimed"))


def test_cross_repository_mount(proxy: FaultProxy, repo_name: str) -> None:
    data = random_bytes(10_000, seed=12)
    digest = sha256(data)
    with client_for_proxy(proxy) as c:
        push_blob(c, repo_name, data, digest)
        proxy.seen.clear()
        target = repo_name + "-copy"
        assert push_blob(c, target, data, digest, mount_from=repo_name) == (digest, len(data))
        posts = [p for m, p, _h in proxy.seen if m == "POST"]
        assert len(posts) == 1 and f"mount={digest}" in posts[0]
        assert not [m for m, _p, _h in proxy.seen if m in ("PUT", "PATCH")]
        assert c.blob_exists(target, digest) == len(data)


def test_push_image_copies_between_registries(
    plain_registry: RegistryServer, basic_registry: RegistryServer, repo_name: str
) -> None:
    image = build_image([{"a.txt": b"a\n"}, {"big.bin": random_bytes(300_000, seed=13)}])
    with client(plain_registry) as c:
        push_test_image(c, repo_name, "v1", image)
    src = RegistrySource(
        f"{plain_registry.host}/{repo_name}:v1", SourceOptions(), insecure=True, retry=FAST_RETRY
    )
    dest = f"{basic_registry.host}/{repo_name}:copied"
    ca = str(basic_registry.ca_cert)
    with src.open() as img:
        digest = push_image(
            img, dest, creds=ALICE, ca_cert=ca, chunk_size=64 * 1024, retry=FAST_RETRY
        )
        config_digest = img.info.config_digest
    # Same config bytes and layers, so the copy has the same manifest digest.
    assert digest == image.digest
    with RegistrySource(dest, creds=ALICE, ca_cert=ca, retry=FAST_RETRY).open() as copy:
        assert copy.info.digest == digest
        assert copy.info.config_digest == config_digest
        assert [b.digest for b in copy.blobs] == list(image.layer_digests)
    # A second push uploads nothing: every blob is already there.
    with src.open() as img:
        assert push_image(img, dest, creds=ALICE, ca_cert=ca, retry=FAST_RETRY) == digest


def test_push_denied_without_push_scope(token_registry: RegistryServer, repo_name: str) -> None:
    data = b"x"
    with client(token_registry, BOB) as c, pytest.raises(AuthError) as exc:
        push_blob(c, "other/" + repo_name.split("/", 1)[1], data, sha256(data))
    assert "user 'bob' is not allowed to push to this repository" in str(exc.value)
    with client(token_registry, ALICE) as c:
        assert push_blob(c, repo_name, data, sha256(data)) == (sha256(data), 1)


def test_config_digest_kept_when_config_bytes_given(
    plain_registry: RegistryServer, repo_name: str
) -> None:
    image = build_image([{"x": b"x"}])
    with client(plain_registry) as c:
        push_test_image(c, repo_name, "v1", image)
    src = RegistrySource(f"{plain_registry.host}/{repo_name}:v1", insecure=True, retry=FAST_RETRY)
    pretty = b'{\n  "reformatted": true\n}'
    with src.open() as img:
        dest = f"{plain_registry.host}/{repo_name}:explicit-config"
        push_image(img, dest, insecure=True, config_bytes=pretty, retry=FAST_RETRY)
    with client(plain_registry) as c:
        got = c.get_blob_bytes(
            repo_name, "sha256:" + hashlib.sha256(pretty).hexdigest(), 1024, "config"
        )
        assert got == pretty


def client_for_proxy(proxy: FaultProxy):  # type: ignore[no-untyped-def]
    """A plain-http client talking to the registry through ``proxy``."""
    from imgscan.sources.registry import RegistryClient

    return RegistryClient(proxy.host, insecure=True, retry=FAST_RETRY)
