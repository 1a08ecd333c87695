"""A registry repository with ~20 tags sharing base layers, for the watch and fleet tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgscan.detect.keys import fake_private_key
from imgscan.sources.registry import RegistryClient
from tests.infra.images import TestImage, build_image, push_test_image, random_bytes

PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:10001:10001::/home/app:/sbin/nologin\n"


def base_layers() -> list[dict[str, bytes]]:
    """Two base layers every tag shares (a 'distro' and a 'runtime')."""
    return [
        {
            "etc/passwd": PASSWD,
            "usr/lib/libbase.so": random_bytes(600_000, 1),
            "etc/os-release": b'ID=testos\nVERSION_ID="1"\n',
        },
        {
            "usr/lib/runtime/core.py": b"print('runtime')\n" * 2000,
            "usr/lib/runtime/blob.bin": random_bytes(300_000, 2),
        },
    ]


def app_image(n: int, *, leak: bool) -> TestImage:
    """Tag ``n``'s image: the shared bases plus one app layer, some with a planted key."""
    app: dict[str, bytes] = {
        f"app/version-{n}.txt": f"build {n}\n".encode(),
        "app/main.py": f"print('app {n}')\n".encode(),
    }
    if leak:
        app["app/deploy_key.pem"] = fake_private_key("rsa", 100 + n).encode()
    return build_image([*base_layers(), app], user="10001")


@dataclass(frozen=True)
class Fleet:
    """What was pushed."""

    repo: str
    tags: dict[str, str]  # tag -> manifest digest
    leaky: frozenset[str]


def push_fleet(client: RegistryClient, repo: str, count: int = 20) -> Fleet:
    """Push ``count`` tags v1.0..v1.N (every 4th leaks a key) and two tags that do not match."""
    tags: dict[str, str] = {}
    leaky = set()
    for n in range(count):
        tag = f"v1.{n}"
        leak = n % 4 == 0
        if leak:
            leaky.add(tag)
        tags[tag] = push_test_image(client, repo, tag, app_image(n, leak=leak))
    for extra in ("dev-1", "latest-build"):
        push_test_image(client, repo, extra, app_image(900, leak=False))
    return Fleet(repo, tags, frozenset(leaky))


def move_tag(client: RegistryClient, repo: str, tag: str, n: int) -> str:
    """Point ``tag`` at a new image (a new app layer on the same bases)."""
    return push_test_image(client, repo, tag, app_image(n, leak=True))


def watch_config(
    tmp: Path,
    host: str,
    repo: str,
    *,
    executor: str = "local",
    broker: str = "",
    cache_url: str = "",
    deadline: int = 240,
) -> Path:
    """Write ``tmp/watch.toml`` watching the ``v*`` tags of ``host/repo`` (plain HTTP)."""
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [
        'state = "state.db"',
        'cache = "cache.db"',
        'output_dir = "reports"',
        f'executor = "{executor}"',
        "[policy]",
        'fail_on = "high"',
    ]
    if executor == "celery":
        lines += [
            "[celery]",
            f'broker = "{broker}"',
            f'cache = "{cache_url}"',
            f"deadline = {deadline}",
        ]
    lines += [
        "[[target]]",
        f'registry = "{host}"',
        f'repository = "{repo}"',
        'tags = ["v*"]',
        "insecure = true",
    ]
    path = tmp / "watch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
