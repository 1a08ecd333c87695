"""Push an image to a registry over the distribution API (no engine needed).

Blobs the repository already has are skipped (``HEAD``); a blob can be mounted
from another repository of the same registry; small blobs with a known digest go
up in one ``PUT`` (monolithic), everything else in ``PATCH`` chunks of bounded
size, so a layer is never held in memory whole. The manifest goes last.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from imgscan.errors import SourceError
from imgscan.sources.auth import Credentials
from imgscan.sources.base import Image
from imgscan.sources.common import MT_DOCKER_MANIFEST, MT_OCI_MANIFEST, check_digest
from imgscan.sources.http import Response
from imgscan.sources.reference import parse_reference
from imgscan.sources.registry import RegistryClient, RetryPolicy, client_for

MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_CHUNK = 8 * 1024 * 1024
MONOLITHIC_MAX = 32 * 1024 * 1024  # in-memory blobs up to this size go up in one PUT
_LAYER_TYPES = {
    "gzip": MT_OCI_LAYER + "+gzip",
    "zstd": MT_OCI_LAYER + "+zstd",
    "none": MT_OCI_LAYER,
}
_DOCKER_TO_OCI = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MT_OCI_LAYER + "+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": MT_OCI_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": MT_OCI_LAYER + "+zstd",
}


def _fail(client: RegistryClient, repo: str, what: str, resp: Response) -> SourceError:
    detail = ""
    try:
        body = resp.body(64 * 1024)
        if len(body) < 64 * 1024:
            detail = body.decode("utf-8", "replace").strip().splitlines()[0][:200]
    except (OSError, ValueError, IndexError):
        detail = ""
    return SourceError(
        f"{client.host}/{repo}: {what} failed with HTTP {resp.status_code}"
        + (f" ({detail})" if detail else "")
    )


def _location(client: RegistryClient, repo: str, resp: Response, base: str) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise SourceError(f"{client.host}/{repo}: upload answer lacks a Location header")
    url = urljoin(base, loc)
    if urlsplit(url).scheme not in ("http", "https"):
        raise SourceError(f"{client.host}/{repo}: upload Location is not an HTTP URL")
    return url


def _with_query(url: str, **params: str) -> str:
    sep = "&" if urlsplit(url).query else "?"
    return url + sep + urlencode(params, safe=":/")


def _chunks(data: bytes | BinaryIO, size: int) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        mv = memoryview(data)
        for i in range(0, len(mv), size):
            yield bytes(mv[i : i + size])
        return
    while True:
        chunk = data.read(size)
        if not chunk:
            return
        yield chunk


def push_blob(
    client: RegistryClient,
    repo: str,
    data: bytes | BinaryIO,
    digest: str | None = None,
    *,
    chunk_size: int | None = None,
    mount_from: str | None = None,
) -> tuple[str, int]:
    """Upload one blob unless ``repo`` has it already; return (digest, size).

    ``data`` is bytes or a readable stream; with a stream (or an unknown digest)
    the upload is chunked and the digest computed on the way.
    """
    actions = "pull,push"
    if digest is not None:
        check_digest(digest, f"{client.host}/{repo}: blob")
        have = client.blob_exists(repo, digest, actions)
        if have is not None:
            return digest, have
    start_url = f"{client.base}/v2/{repo}/blobs/uploads/"
    extra: tuple[str, ...] = ()
    if mount_from and digest is not None:
        start_url = _with_query(start_url, mount=digest, **{"from": mount_from})
        extra = (f"repository:{mount_from}:pull",)
    resp = client.request(
        "POST",
        start_url,
        repo=repo,
        actions=actions,
        headers={"Content-Length": "0"},
        data=b"",
        extra_scopes=extra,
    )
    resp.close()
    if resp.status_code == 201 and digest is not None:
        return digest, client.blob_exists(repo, digest, actions) or 0
    if resp.status_code != 202:
        raise _fail(client, repo, "starting a blob upload", resp)
    url = _location(client, repo, resp, start_url)
    if (
        isinstance(data, (bytes, bytearray, memoryview))
        and digest is not None
        and chunk_size is None
        and len(data) <= MONOLITHIC_MAX
    ):
        body = bytes(data)
        put = client.request(
            "PUT",
            _with_query(url, digest=digest),
            repo=repo,
            actions=actions,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
            data=body,
        )
        put.close()
        if put.status_code != 201:
            raise _fail(client, repo, f"uploading blob {digest[:19]}", put)
        return digest, len(body)
    algo = (digest or "sha256:").split(":", 1)[0]
    hasher = hashlib.new(algo)
    offset = 0
    for chunk in _chunks(data, chunk_size or DEFAULT_CHUNK):
        hasher.update(chunk)
        patch = client.request(
            "PATCH",
            url,
            repo=repo,
            actions=actions,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(chunk)),
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
            data=chunk,
        )
        patch.close()
        if patch.status_code != 202:
            raise _fail(client, repo, f"uploading a chunk at byte {offset}", patch)
        url = _location(client, repo, patch, url)
        offset += len(chunk)
    computed = f"{algo}:{hasher.hexdigest()}"
    if digest is not None and computed != digest:
        raise SourceError(
            f"{client.host}/{repo}: blob content hashes to {computed}, expected {digest}"
        )
    put = client.request(
        "PUT",
        _with_query(url, digest=computed),
        repo=repo,
        actions=actions,
        headers={"Content-Length": "0"},
        data=b"",
    )
    put.close()
    if put.status_code != 201:
        raise _fail(client, repo, f"finishing blob {computed[:19]}", put)
    return computed, offset


def push_manifest(client: RegistryClient, repo: str, ref: str, data: bytes, media_type: str) -> str:
    """PUT a manifest (or index) under a tag or digest; return its digest."""
    resp = client.request(
        "PUT",
        f"/v2/{repo}/manifests/{ref}",
        repo=repo,
        actions="pull,push",
        headers={"Content-Type": media_type, "Content-Length": str(len(data))},
        data=data,
    )
    resp.close()
    if resp.status_code != 201:
        raise _fail(client, repo, f"pushing manifest {ref}", resp)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    said = resp.headers.get("Docker-Content-Digest")
    if said and said != digest:
        raise SourceError(
            f"{client.host}/{repo}: registry stored manifest as {said}, expected {digest}"
        )
    return digest


def _layer_media_type(blob_media: str | None, head: bytes) -> str:
    if blob_media:
        return _DOCKER_TO_OCI.get(blob_media, blob_media)
    if head.startswith(b"\x1f\x8b"):
        return _LAYER_TYPES["gzip"]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _LAYER_TYPES["zstd"]
    return _LAYER_TYPES["none"]


def canonical_config(config: Mapping[str, Any]) -> bytes:
    """Serialise an image config for upload (key order kept, compact separators)."""
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()


def push_image(
    image: Image,
    dest: str,
    *,
    creds: Credentials | None = None,
    insecure: bool = False,
    ca_cert: str | None = None,
    config_bytes: bytes | None = None,
    chunk_size: int | None = None,
    mount_from: str | None = None,
    retry: RetryPolicy | None = None,
    lookup_credentials: bool = True,
) -> str:
    """Push ``image`` (layers, config, OCI manifest) to ``dest``; return the manifest digest.

    ``config_bytes`` is the original config document when the caller has it (keeps
    the config digest); otherwise ``image.info.config`` is serialised anew.
    ``mount_from`` names a repository on the same registry to mount layers from.
    """
    ref = parse_reference(dest)
    repo = ref.repository
    cfg = config_bytes if config_bytes is not None else canonical_config(image.info.config)
    with client_for(
        ref,
        creds=creds,
        insecure=insecure,
        ca_cert=ca_cert,
        retry=retry,
        lookup_credentials=lookup_credentials,
    ) as client:
        layers = []
        for blob in image.blobs:
            if blob.digest is not None and blob.media_type:
                size = client.blob_exists(repo, blob.digest, "pull,push")
                if size is not None:  # already there: no need to read the layer at all
                    layers.append(
                        {
                            "mediaType": _layer_media_type(blob.media_type, b""),
                            "digest": blob.digest,
                            "size": size,
                        }
                    )
                    continue
            with blob.open() as raw:
                stream: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw, 1 << 20)
                head = bytes(stream.peek(8)[:8])
                digest, size = push_blob(
                    client,
                    repo,
                    stream,
                    blob.digest,
                    chunk_size=chunk_size,
                    mount_from=mount_from,
                )
            layers.append(
                {
                    "mediaType": _layer_media_type(blob.media_type, head),
                    "digest": digest,
                    "size": size,
                }
            )
        cfg_digest, cfg_size = push_blob(
            client, repo, cfg, "sha256:" + hashlib.sha256(cfg).hexdigest()
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": layers,
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        tag = ref.tag or ("sha256:" + hashlib.sha256(body).hexdigest())
        return push_manifest(client, repo, tag, body, MT_OCI_MANIFEST)


__all__ = [
    "MT_DOCKER_CONFIG",
    "MT_DOCKER_MANIFEST",
    "MT_OCI_CONFIG",
    "MT_OCI_LAYER",
    "push_blob",
    "push_image",
    "push_manifest",
]
