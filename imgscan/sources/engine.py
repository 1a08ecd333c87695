"""Images in a local Docker engine, exported with the SDK's streaming save.

The engine's export is spooled to a temporary file (the manifest of a
``docker save`` stream may come after the layers, so it cannot be read in one
pass) and handed to the archive reader. The spool is removed when the context
exits, whatever the reason (errors and KeyboardInterrupt included); the image is
never held in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from imgscan.errors import SourceError
from imgscan.sources.base import Image, SourceOptions

SCHEME = "docker://"
DEFAULT_HOST = "unix:///var/run/docker.sock"
_CHUNK = 1 << 20
_MAX_REASON = 200


def strip_scheme(name: str) -> str:
    """``docker://name:tag`` -> ``name:tag``; other names are returned unchanged."""
    return name[len(SCHEME) :] if name.startswith(SCHEME) else name


def engine_host(options: SourceOptions) -> str:
    """The engine address in use: ``--docker-host``, else ``DOCKER_HOST``, else the default."""
    return options.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _reason(exc: BaseException) -> str:
    """A short cause for a connection failure: the innermost OS error when there is one."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                stack.append(nxt)
    return _one_line(str(exc)) or type(exc).__name__


def _api_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return _one_line(explanation if isinstance(explanation, str) and explanation else str(exc))


def connect(options: SourceOptions) -> Any:
    """A ``docker.DockerClient`` for the selected engine, or a one-line SourceError."""
    import docker

    host = engine_host(options)
    try:
        if options.docker_host:
            client = docker.DockerClient(base_url=options.docker_host)
        else:
            client = docker.from_env()  # DOCKER_HOST plus DOCKER_TLS_VERIFY / DOCKER_CERT_PATH
        client.ping()
    except Exception as exc:  # DockerException, and requests errors the SDK lets through
        raise SourceError(f"cannot reach the Docker engine at {host}: {_reason(exc)}") from None
    return client


def _get_image(client: Any, name: str, host: str) -> Any:
    from docker.errors import APIError, DockerException, ImageNotFound

    try:
        return client.images.get(name)
    except ImageNotFound:
        raise SourceError(f"{name}: no such image in the Docker engine at {host}") from None
    except APIError as exc:
        raise SourceError(f"{name}: Docker engine error: {_api_message(exc)}") from None
    except DockerException as exc:
        raise SourceError(f"{name}: Docker engine error: {_reason(exc)}") from None
    except Exception as exc:
        raise SourceError(f"{name}: lost the Docker engine at {host}: {_reason(exc)}") from None


def _save_name(name: str, tags: list[str]) -> str | bool:
    """What to pass as ``named=``: the tag the user gave when the image carries it."""
    for candidate in (name, f"{name}:latest"):
        if candidate in tags:
            return candidate
    return True  # first tag, or the id for an untagged image


def _repo_digest(name: str, attrs: Mapping[str, Any]) -> str | None:
    """The registry manifest digest the engine recorded for this image, if any."""
    digests = [d for d in attrs.get("RepoDigests") or [] if isinstance(d, str) and "@" in d]
    if not digests:
        return None
    repo = name.rsplit("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    for d in digests:
        if d.split("@", 1)[0] == repo:
            return d.split("@", 1)[1]
    return digests[0].split("@", 1)[1] if len(digests) == 1 else None


def _spool(image: Any, name: str, target: Path, host: str) -> None:
    """Stream the engine's export of ``image`` into ``target`` chunk by chunk."""
    from docker.errors import APIError

    try:
        out = open(target, "wb")  # noqa: SIM115 - closed below, errors told apart
    except OSError as exc:
        raise SourceError(
            f"{name}: cannot create the export spool {target}: {exc.strerror}"
        ) from None
    with out:
        try:
            chunks = iter(image.save(chunk_size=_CHUNK, named=_save_name(name, list(image.tags))))
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise SourceError(
                        f"{name}: cannot write the export spool in {target.parent}: "
                        f"{exc.strerror or exc}"
                    ) from None
        except SourceError:
            raise
        except APIError as exc:
            raise SourceError(
                f"{name}: Docker engine error during export: {_api_message(exc)}"
            ) from None
        except Exception as exc:  # DockerException, requests' ChunkedEncodingError, ...
            raise SourceError(
                f"{name}: export from the engine at {host} failed: {_reason(exc)}"
            ) from None


@contextlib.contextmanager
def spool_dir(options: SourceOptions) -> Iterator[Path]:
    """A private temporary directory (under ``options.spool_dir``), always removed."""
    import shutil
    import tempfile

    try:
        tmp = tempfile.mkdtemp(prefix="imgscan-engine-", dir=options.spool_dir)
    except OSError as exc:
        where = options.spool_dir or tempfile.gettempdir()
        raise SourceError(f"cannot create a spool directory in {where}: {exc.strerror}") from None
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def open_engine_image(name: str, options: SourceOptions) -> Iterator[Image]:
    """Export ``name`` from the engine to a spool and open it as an Image; the spool is removed."""
    from imgscan.sources.archive import open_path

    ref = strip_scheme(name)
    if not ref:
        raise SourceError(f"{name!r}: empty image name")
    host = engine_host(options)
    client = connect(options)
    try:
        image = _get_image(client, ref, host)
        attrs = image.attrs if isinstance(image.attrs, Mapping) else {}
        with spool_dir(options) as tmp:
            tar = tmp / "image.tar"
            _spool(image, ref, tar, host)
            with open_path(str(tar), options, reference=ref) as opened:
                info = opened.info
                digest = info.digest or _repo_digest(ref, attrs)
                info = dataclasses.replace(info, digest=digest, source_kind="docker-engine")
                yield Image(info=info, blobs=opened.blobs)
    finally:
        client.close()


@dataclasses.dataclass(frozen=True, slots=True)
class EngineSource:
    """An image held by a local Docker engine (``docker://name:tag`` or a bare name)."""

    name: str
    options: SourceOptions

    def open(self) -> contextlib.AbstractContextManager[Image]:
        """Open the image; the export spool is removed when the context exits."""
        return open_engine_image(self.name, self.options)


def engine_has_image(name: str, options: SourceOptions) -> bool:
    """True when the engine is reachable and holds ``name``; never raises."""
    host = engine_host(options)
    if host.startswith("unix://") and not os.path.exists(host[len("unix://") :]):
        return False  # no socket, no engine: spare the docker SDK's import (~0.2 s)
    from docker.errors import ImageNotFound

    try:
        client = connect(options)
    except SourceError:
        return False
    try:
        client.images.get(strip_scheme(name))
        return True
    except ImageNotFound:
        return False
    except Exception:
        return False
    finally:
        client.close()


def _push_error(line: Mapping[str, Any]) -> str | None:
    detail = line.get("errorDetail")
    if isinstance(detail, Mapping) and detail.get("message"):
        return str(detail["message"])
    err = line.get("error")
    return str(err) if err else None


def engine_push(
    name: str,
    dest: str,
    options: SourceOptions,
    progress: Callable[[Mapping[str, Any]], None] | None = None,
) -> str | None:
    """Push ``name`` from the engine to ``dest`` (tagging it first); return the pushed digest.

    Every progress line is passed to ``progress``; any error line raises SourceError.
    """
    from docker.errors import APIError, DockerException
    from docker.utils import parse_repository_tag

    src = strip_scheme(name)
    target = strip_scheme(dest)
    repository, tag = parse_repository_tag(target)
    if not repository or (tag and tag.startswith("sha256:")):
        raise SourceError(f"{dest}: push destination must be repository[:tag], not a digest")
    tag = tag or "latest"
    host = engine_host(options)
    client = connect(options)
    try:
        image = _get_image(client, src, host)
        digest: str | None = None
        try:
            if f"{repository}:{tag}" not in image.tags:
                image.tag(repository, tag)
            for line in client.api.push(repository, tag=tag, stream=True, decode=True):
                if not isinstance(line, Mapping):
                    continue
                if progress is not None:
                    progress(line)
                err = _push_error(line)
                if err:
                    raise SourceError(f"{dest}: push failed: {_one_line(err)}")
                aux = line.get("aux")
                if isinstance(aux, Mapping) and isinstance(aux.get("Digest"), str):
                    digest = aux["Digest"]
        except APIError as exc:
            raise SourceError(f"{dest}: push failed: {_api_message(exc)}") from None
        except DockerException as exc:
            raise SourceError(f"{dest}: push failed: {_reason(exc)}") from None
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"{dest}: push through {host} failed: {_reason(exc)}") from None
        return digest
    finally:
        client.close()


__all__ = [
    "EngineSource",
    "connect",
    "engine_has_image",
    "engine_host",
    "engine_push",
    "open_engine_image",
    "strip_scheme",
]
