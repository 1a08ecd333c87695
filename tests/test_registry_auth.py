"""Credential lookup: explicit, environment, docker config auths, credential helpers.

The credential helper is a real executable (a shell script) on PATH speaking the
docker-credential-helpers protocol; no mocks.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from imgscan.errors import AuthError, ConfigError
from imgscan.sources.auth import (
    ENV_PASSWORD,
    ENV_USERNAME,
    Credentials,
    docker_config_path,
    explicit_credentials,
    resolve_credentials,
    run_credential_helper,
)

FAKE_PW = "fake-password-for-tests"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ.get('PATH', '')}",
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "HOME": str(tmp_path),
    }
    env.update(extra)
    (tmp_path / "docker").mkdir(exist_ok=True)
    (tmp_path / "bin").mkdir(exist_ok=True)
    return env


def _write_config(env: dict[str, str], doc: object) -> None:
    Path(env["DOCKER_CONFIG"], "config.json").write_text(json.dumps(doc))


def _helper(tmp_path: Path, name: str, script: str) -> Path:
    """Install ``docker-credential-<name>`` (a shell script) into tmp_path/bin."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# A helper that knows one server and logs which servers it was asked about.
_KNOWN_HELPER = """
[ "$1" = get ] || exit 2
read -r server
echo "$server" >> "$(dirname "$0")/asked.log"
if [ "$server" = "registry.example.com:5000" ]; then
  printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret-fake"}' "$server"
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
"""


def test_explicit_credentials_win(tmp_path: Path) -> None:
    env = _env(tmp_path, **{ENV_USERNAME: "env-user", ENV_PASSWORD: FAKE_PW})
    creds = resolve_credentials("r.example.com", username="cli", password="pw", env=env)
    assert creds == Credentials("cli", "pw", "command line")


def test_explicit_credentials_from_the_command_line() -> None:
    assert explicit_credentials(None, None) is None
    assert explicit_credentials("u", "pw\n") == Credentials("u", "pw", "command line")
    with pytest.raises(ConfigError, match="empty password"):
        explicit_credentials("u", "\n")
    with pytest.raises(ConfigError, match="given together"):
        explicit_credentials(None, "pw")


def test_environment_variables(tmp_path: Path) -> None:
    env = _env(tmp_path, **{ENV_USERNAME: "env-user", ENV_PASSWORD: FAKE_PW})
    creds = resolve_credentials("r.example.com", env=env)
    assert creds is not None
    assert (creds.username, creds.password, creds.source) == ("env-user", FAKE_PW, "environment")


def test_half_given_credentials_are_usage_errors(tmp_path: Path) -> None:
    env = _env(tmp_path, **{ENV_USERNAME: "env-user"})
    with pytest.raises(ConfigError, match=ENV_PASSWORD):
        resolve_credentials("r.example.com", env=env)
    with pytest.raises(ConfigError, match="--password-stdin"):
        resolve_credentials("r.example.com", username="u", env=_env(tmp_path))


def test_no_config_means_anonymous(tmp_path: Path) -> None:
    assert resolve_credentials("r.example.com", env=_env(tmp_path)) is None


def test_docker_config_path_honours_docker_config(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/x"}) == Path("/x/config.json")
    assert docker_config_path({"HOME": "/home/u"}) == Path("/home/u/.docker/config.json")


def test_auths_entry_base64(tmp_path: Path) -> None:
    env = _env(tmp_path)
    token = base64.b64encode(f"bob:{FAKE_PW}".encode()).decode()
    _write_config(env, {"auths": {"https://r.example.com": {"auth": token}}})
    creds = resolve_credentials("r.example.com", env=env)
    assert creds is not None and (creds.username, creds.password) == ("bob", FAKE_PW)


def test_docker_hub_uses_the_v1_key(tmp_path: Path) -> None:
    env = _env(tmp_path)
    token = base64.b64encode(f"hubuser:{FAKE_PW}".encode()).decode()
    _write_config(env, {"auths": {"https://index.docker.io/v1/": {"auth": token}}})
    for host in ("docker.io", "registry-1.docker.io"):
        creds = resolve_credentials(host, env=env)
        assert creds is not None and creds.username == "hubuser"
    assert resolve_credentials("ghcr.io", env=env) is None


def test_malformed_config_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path)
    Path(env["DOCKER_CONFIG"], "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="malformed docker config JSON"):
        resolve_credentials("r.example.com", env=env)
    _write_config(env, {"auths": {"r.example.com": {"auth": "!!!"}}})
    with pytest.raises(ConfigError, match="not valid base64"):
        resolve_credentials("r.example.com", env=env)


def test_creds_store_helper(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _helper(tmp_path, "test", _KNOWN_HELPER)
    _write_config(env, {"credsStore": "test", "auths": {"registry.example.com:5000": {}}})
    creds = resolve_credentials("registry.example.com:5000", env=env)
    assert creds is not None
    assert (creds.username, creds.password) == ("helper-user", "helper-secret-fake")
    assert creds.source == "credential helper test"
    # Unknown server: the helper says "not found" and we fall back to anonymous.
    assert resolve_credentials("other.example.com", env=env) is None
    asked = (tmp_path / "bin" / "asked.log").read_text().split()
    assert asked[0] == "registry.example.com:5000"
    assert "other.example.com" in asked


def test_cred_helpers_take_precedence_over_auths(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _helper(tmp_path, "test", _KNOWN_HELPER)
    token = base64.b64encode(b"auths-user:x").decode()
    _write_config(
        env,
        {
            "credHelpers": {"registry.example.com:5000": "test"},
            "auths": {"registry.example.com:5000": {"auth": token}},
        },
    )
    creds = resolve_credentials("registry.example.com:5000", env=env)
    assert creds is not None and creds.username == "helper-user"


def test_missing_helper_binary(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _write_config(env, {"credsStore": "nonexistent"})
    with pytest.raises(AuthError, match=r"docker-credential-nonexistent .* not on PATH"):
        resolve_credentials("r.example.com", env=env)


def test_failing_helper_message_is_one_line_without_secret(tmp_path: Path) -> None:
    _helper(tmp_path, "broken", 'echo "keychain locked"; echo "second line"; exit 3\n')
    with pytest.raises(AuthError) as exc:
        run_credential_helper("broken", "r.example.com", _env(tmp_path))
    assert str(exc.value) == (
        "credential helper docker-credential-broken failed for r.example.com: keychain locked"
    )


def test_helper_with_garbage_output(tmp_path: Path) -> None:
    _helper(tmp_path, "garbage", 'echo "not json"\n')
    with pytest.raises(AuthError, match="malformed JSON"):
        run_credential_helper("garbage", "r.example.com", _env(tmp_path))


def test_invalid_helper_name_in_config(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _write_config(env, {"credsStore": "../../bin/sh"})
    with pytest.raises(ConfigError, match="invalid credential helper name"):
        resolve_credentials("r.example.com", env=env)


def test_repr_never_shows_the_password() -> None:
    creds = Credentials("u", FAKE_PW, "test")
    assert FAKE_PW not in repr(creds)
    assert FAKE_PW not in str(creds)
    assert "<redacted>" in repr(creds)
