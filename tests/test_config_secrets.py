"""Secrets in image config Env, Labels and history created_by lines."""

from __future__ import annotations

import random
import string
from typing import Any

from imgscan.detect.base import ImageContext
from imgscan.detect.config_secrets import ConfigSecretsAnalyzer, history_layers
from imgscan.detect.entropy import EntropyDetector
from imgscan.findings.fingerprint import fingerprint, redact, secret_digest
from imgscan.model import Category, Finding, ImageInfo, LayerInfo

RNG = random.Random(77)


def _tok(n: int) -> str:
    return "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(n))


ENV_TOKEN = "ghp_" + _tok(36)
ENV_PASSWORD = _tok(18)
LABEL_URL_PASS = _tok(14)
ARG_TOKEN = "npm_" + _tok(36)
BEARER = _tok(40)
LOGIN_PASS = _tok(16)
NOP_PASS = _tok(20)
ENTROPY_ONLY = _tok(44)
BUILDKIT_ARG = _tok(24)
ARG_DEFAULT = _tok(22)


def _config() -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin",
                f"GITHUB_TOKEN={ENV_TOKEN}",
                f"DB_PASSWORD={ENV_PASSWORD}",
                "API_KEY=changeme",
                "SECRET_KEY_FILE=/run/secrets/key",
                "LANG=C.UTF-8",
            ],
            "Labels": {
                "org.opencontainers.image.source": f"https://ci:{LABEL_URL_PASS}@git.example.test/x",
                "maintainer": "someone@example.test",
            },
        },
        "history": [
            {"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
            {"created_by": '/bin/sh -c #(nop)  CMD ["bash"]', "empty_layer": True},
            {"created_by": f"|2 NPM_TOKEN={ARG_TOKEN} VERSION=1.2.3 /bin/sh -c npm ci"},
            {
                "created_by": '/bin/sh -c curl -fsSL -H "Authorization: Bearer '
                f'{BEARER}" https://api.example.test/pkg -o /tmp/p'
            },
            {
                "created_by": f"/bin/sh -c #(nop)  ENV ADMIN_PASSWORD={NOP_PASS}",
                "empty_layer": True,
            },
            {"created_by": f"/bin/sh -c docker login -u bot -p {LOGIN_PASS} registry.test"},
            {"created_by": f"/bin/sh -c echo 'x = \"{ENTROPY_ONLY}\" # secret' > /etc/x.conf"},
            {
                "created_by": "/bin/sh -c apt-get install -y --no-install-recommends curl "
                "&& pip install --index-url https://pypi.example/simple x -p 8080"
            },
        ],
    }


def _image(config: dict[str, Any], n_layers: int = 6) -> ImageInfo:
    layers = tuple(LayerInfo(i, f"sha256:{i:064x}", None, 100) for i in range(n_layers))
    return ImageInfo("test:latest", None, None, "linux/amd64", None, layers, config)


def _analyze(config: dict[str, Any], detectors: tuple[Any, ...] = ()) -> list[Finding]:
    ctx = ImageContext(image=_image(config), visible={}, events=(), files={}, states={})
    return list(ConfigSecretsAnalyzer(detectors).analyze(ctx))


def test_history_layer_mapping_skips_empty_layers() -> None:
    assert history_layers(_config(), 6) == [0, None, 1, 2, None, 3, 4, 5]
    # more layers than history entries: aligned from the newest
    assert history_layers(_config(), 8) == [2, None, 3, 4, None, 5, 6, 7]


def test_env_labels_and_history_secrets() -> None:
    findings = _analyze(_config())
    got = {(f.location, f.rule, f.layer, f.redacted) for f in findings}
    assert got == {
        ("config.Env", "config-env-secret", None, redact(ENV_TOKEN)),
        ("config.Env", "config-env-secret", None, redact(ENV_PASSWORD)),
        ("config.Labels", "config-url-credentials", None, redact(LABEL_URL_PASS)),
        ("history[2].created_by", "config-build-arg-secret", 1, redact(ARG_TOKEN)),
        ("history[3].created_by", "config-auth-header", 2, redact(BEARER)),
        ("history[4].created_by", "config-env-secret", None, redact(NOP_PASS)),
        ("history[5].created_by", "config-password-flag", 3, redact(LOGIN_PASS)),
    }
    for f in findings:
        assert f.category is Category.SECRET
        assert f.secret is None
        assert f.path is None
        assert f.fingerprint == fingerprint(f.rule, f.location or "", f.secret_sha256 or "")
    digests = {f.secret_sha256 for f in findings}
    assert secret_digest(ARG_TOKEN) in digests


def test_content_detectors_run_on_config_values() -> None:
    findings = _analyze(_config(), (EntropyDetector(),))
    extra = [f for f in findings if f.location == "history[6].created_by"]
    assert [(f.rule, f.secret_sha256) for f in extra] == [
        ("entropy-base64", secret_digest(ENTROPY_ONLY))
    ]
    assert extra[0].layer == 4
    # the same secret is reported once per location, not once per detector
    env = [f for f in findings if f.location == "config.Env"]
    assert len({f.secret_sha256 for f in env}) == len(env)


def test_show_secrets_fills_the_value() -> None:
    ctx = ImageContext(image=_image(_config()), visible={}, events=(), files={}, states={})
    findings = list(ConfigSecretsAnalyzer((), show_secrets=True).analyze(ctx))
    assert ENV_TOKEN in {f.secret for f in findings}


def test_clean_and_malformed_configs() -> None:
    assert (
        _analyze(
            {
                "config": {"Env": ["PATH=/bin", "HOME=/root"], "Labels": None},
                "history": [{"created_by": "/bin/sh -c #(nop) WORKDIR /app"}],
            }
        )
        == []
    )
    assert _analyze({"config": "garbage", "history": "nope"}) == []
    assert _analyze({}) == []


def test_buildkit_history_forms() -> None:
    config = {
        "config": {"Env": ["PATH=/bin"]},
        "history": [
            {"created_by": f"RUN |1 GH_TOKEN={BUILDKIT_ARG} /bin/sh -c make # buildkit"},
            {"created_by": f"ARG DB_PASSWORD={ARG_DEFAULT}", "empty_layer": True},
            {"created_by": "RUN /bin/sh -c echo $TOKEN > /dev/null # buildkit"},
            {"created_by": "RUN |1 GH_TOKEN=${GH_TOKEN} /bin/sh -c make # buildkit"},
        ],
    }
    found = {(f.location, f.rule, f.layer, f.secret_sha256) for f in _analyze(config)}
    assert found == {
        ("history[0].created_by", "config-build-arg-secret", 3, secret_digest(BUILDKIT_ARG)),
        ("history[1].created_by", "config-build-arg-secret", None, secret_digest(ARG_DEFAULT)),
    }


def test_hostile_config_values_finish_quickly() -> None:
    import time

    for text in (
        '"' + "a\n" * 100_000,
        "a." * 100_000,
        "|3 " + "X-" + "a" * 200_000,
        "http://" + "a:" * 100_000,
    ):
        config = {
            "config": {"Env": [f"TOKEN={text}"], "Labels": {"k": text}},
            "history": [{"created_by": text}, {"created_by": "RUN |2 " + text}],
        }
        start = time.perf_counter()
        _analyze(config, (EntropyDetector(),))
        assert time.perf_counter() - start < 5.0
