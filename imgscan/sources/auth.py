"""Registry credentials: explicit values, environment, and ``~/.docker/config.json``.

Lookup order for a registry host (first hit wins):

1. values passed in (``--username`` / ``--password-stdin``);
2. ``IMGSCAN_REGISTRY_USERNAME`` / ``IMGSCAN_REGISTRY_PASSWORD``;
3. ``credHelpers[host]`` in the docker config (``docker-credential-<name> get``);
4. ``credsStore`` (same helper protocol);
5. ``auths[host]`` (``auth`` = base64 ``user:password``, or ``username``/``password``).

The docker config is ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.
Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgscan.errors import AuthError, ConfigError

ENV_USERNAME = "IMGSCAN_REGISTRY_USERNAME"
ENV_PASSWORD = "IMGSCAN_REGISTRY_PASSWORD"
HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HELPER_TIMEOUT = 20.0
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and secret for one registry; ``source`` says where they came from."""

    username: str
    password: str = field(repr=False)
    source: str = "explicit"

    def __repr__(self) -> str:
        return (
            f"Credentials(username={self.username!r}, password=<redacted>, source={self.source!r})"
        )


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the docker CLI keeps its config.json."""
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _config_keys(host: str) -> list[str]:
    """Keys a docker config may use for ``host`` (docker login writes several styles)."""
    if host in _HUB_HOSTS:
        return [
            HUB_CONFIG_KEY,
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1",
            "https://registry-1.docker.io",
        ]
    return [
        host,
        f"https://{host}",
        f"http://{host}",
        f"https://{host}/v1/",
        f"https://{host}/v2/",
        f"http://{host}/v1/",
        f"http://{host}/v2/",
    ]


def _load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read docker config ({exc.strerror})") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: docker config larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed docker config JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: docker config must be a JSON object")
    return doc


def _check_helper_name(name: object, path: Path) -> str:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{path}: invalid credential helper name {str(name)[:60]!r}")
    return name


def run_credential_helper(
    helper: str, server: str, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` for ``server``; None when it has nothing."""
    import shutil
    import subprocess

    exe_name = f"docker-credential-{helper}"
    path_env = (os.environ if env is None else env).get("PATH", os.defpath)
    exe = shutil.which(exe_name, path=path_env)
    if exe is None:
        raise AuthError(f"credential helper {exe_name} named in the docker config is not on PATH")
    try:
        proc = subprocess.run(  # fixed argv; the helper is resolved on PATH
            [exe, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
            env=dict(os.environ if env is None else env),
        )
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"credential helper {exe_name} did not answer within {_HELPER_TIMEOUT:.0f}s"
        ) from None
    except OSError as exc:
        raise AuthError(f"credential helper {exe_name} failed to start ({exc.strerror})") from None
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if "credentials not found" in out.lower() or not out:
            return None
        # Only the first line, cut short: helpers print their own errors, never the secret.
        first = out.splitlines()[0][:160] if out else f"exit status {proc.returncode}"
        raise AuthError(f"credential helper {exe_name} failed for {server}: {first}")
    try:
        doc = json.loads(out)
    except ValueError:
        raise AuthError(f"credential helper {exe_name} returned malformed JSON") from None
    if not isinstance(doc, dict):
        raise AuthError(f"credential helper {exe_name} returned malformed JSON")
    user, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        return None
    if user == _IDENTITY_TOKEN_USER:
        raise AuthError(
            f"credential helper {exe_name} holds an identity token for {server}; "
            "imgscan needs a username and password or access token"
        )
    return Credentials(user, secret, source=f"credential helper {helper}")


def _from_auths(auths: Mapping[str, Any], keys: list[str], path: Path) -> Credentials | None:
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
            raise AuthError(
                f"{path}: {key} uses an identity token; imgscan needs a username and "
                "password or access token (--username/--password-stdin)"
            )
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise ConfigError(f"{path}: auths[{key!r}].auth is not valid base64") from None
            user, sep, password = decoded.partition(":")
            if not sep:
                raise ConfigError(f"{path}: auths[{key!r}].auth is not user:password")
            return Credentials(user, password, source=f"{path} auths")
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str) and name:
            return Credentials(name, secret, source=f"{path} auths")
    return None


def explicit_credentials(username: str | None, password: str | None) -> Credentials | None:
    """Credentials from ``--username`` + ``--password-stdin`` (both or neither)."""
    if username is None and password is None:
        return None
    if not username or password is None:
        raise ConfigError("--username and --password-stdin must be given together")
    password = password.rstrip("\r\n")
    if not password:
        raise ConfigError("--password-stdin read an empty password")
    return Credentials(username, password, source="command line")


def resolve_credentials(
    host: str,
    *,
    username: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Credentials | None:
    """Find credentials for registry ``host`` (see the module docstring); None = anonymous."""
    env = os.environ if env is None else env
    explicit = explicit_credentials(username, password)
    if explicit is not None:
        return explicit
    env_user, env_pass = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if env_user or env_pass:
        if not env_user or env_pass is None:
            raise ConfigError(f"{ENV_USERNAME} and {ENV_PASSWORD} must be set together")
        return Credentials(env_user, env_pass, source="environment")
    path = config_path or docker_config_path(env)
    doc = _load_config(path)
    if not doc:
        return None
    keys = _config_keys(host)
    helpers = doc.get("credHelpers")
    if isinstance(helpers, Mapping):
        for key in keys:
            if key in helpers:
                name = _check_helper_name(helpers[key], path)
                return run_credential_helper(name, key, env)
    store = doc.get("credsStore")
    if store:
        name = _check_helper_name(store, path)
        for key in keys[:2]:  # docker login stores the host as typed; Hub uses its v1 URL
            found = run_credential_helper(name, key, env)
            if found is not None:
                return found
    auths = doc.get("auths")
    if isinstance(auths, Mapping):
        return _from_auths(auths, keys, path)
    return None
