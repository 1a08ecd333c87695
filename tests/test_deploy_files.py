"""Deployment examples and workflow docs stay true to the CLI they describe.

Every YAML file parses; every ``imgscan`` command in the manifests, compose file, CI
examples and docs uses a subcommand and flags that ``imgscan <cmd> --help`` lists (the
structured ones are parsed by click itself, with the environment the container gets);
the example watch configs load; the Kubernetes objects reference Secrets, ConfigMaps and
PVCs that exist; and the git pre-push hook really blocks a push of a failing image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # via detect-secrets, a core dependency
from click.testing import CliRunner

from imgscan.cli import main
from imgscan.workflows.fleet import settings_from
from imgscan.workflows.watch import load_watch_config
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
EXAMPLES = ROOT / "examples"
DOCS = [ROOT / "docs" / "workflows.md", ROOT / "docs" / "scaling.md"]
HOOK = ROOT / "scripts" / "pre-push"
INDEXES = [DEPLOY / "README.md", EXAMPLES / "README.md"]
YAML_FILES = sorted(
    [
        *DEPLOY.rglob("*.yaml"),
        *DEPLOY.rglob("*.yml"),
        *EXAMPLES.rglob("*.yml"),
        *EXAMPLES.rglob("*.yaml"),
    ]
)
SHELL_EXAMPLES = sorted((EXAMPLES / "ci").glob("*.sh"))
WATCH_EXAMPLES = [DEPLOY / "watch.example.toml", DEPLOY / "watch.celery.example.toml"]
IMGSCAN_ENV = (
    "IMGSCAN_BROKER_URL",
    "IMGSCAN_RESULT_BACKEND",
    "IMGSCAN_CACHE_URL",
    "IMGSCAN_CACHE",
    "IMGSCAN_REGISTRY_USERNAME",
    "IMGSCAN_REGISTRY_PASSWORD",
    "DOCKER_HOST",
)


# ---------------------------------------------------------------- helpers


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _help_flags(command: str) -> set[str]:
    """Option names listed by ``imgscan <command> --help``."""
    res = CliRunner().invoke(main, [command, "--help"])
    assert res.exit_code == 0, res.output
    options = res.output.split("Options:", 1)[1]
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", options))


_SEPARATORS = re.compile(r"\s(?:\|\|?|&&|;|2>&1|#)(?=\s|$)|\s(?:>>?|<)|\)\s*$")
_INVOCATION = re.compile(r"(?:^|[\s\"'(;|&`])imgscan(:[\w.-]+)?\s+([a-z][a-z-]*)(?![\w:-])(.*)$")


def _shell_lines(text: str) -> Iterator[str]:
    """Logical lines of shell-ish text, with backslash continuations joined."""
    buf = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield buf + line
        buf = ""
    if buf:
        yield buf


def invocations(text: str) -> list[list[str]]:
    """``[subcommand, args...]`` of every ``imgscan <subcommand>`` in shell-ish ``text``."""
    commands = set(main.commands)
    found = []
    for line in _shell_lines(text):
        for m in _INVOCATION.finditer(line):
            tagged, sub, rest = m.group(1), m.group(2), m.group(3)
            before = line[: m.start() + 1].split()
            if before and re.fullmatch(r"-[A-Za-z]|--(?:namespace|tag|name)", before[-1]):
                continue  # "kubectl -n imgscan create ...": a flag's value, not a command
            if tagged and sub not in commands:
                continue  # "docker build -t imgscan:0.1.0 ...": an image name, not a command
            cut = _SEPARATORS.search(rest)
            rest = rest[: cut.start()] if cut else rest
            try:
                args = shlex.split(rest)
            except ValueError:
                args = rest.split()
            found.append([sub, *args])
    return found


def _check_flags(argv: list[str], where: str) -> None:
    commands = set(main.commands)
    sub = argv[0]
    assert sub in commands, f"{where}: `imgscan {sub}` is not a command ({sorted(commands)})"
    known = _help_flags(sub)
    for tok in argv[1:]:
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", tok):
            flag = tok.split("=", 1)[0]
            assert flag in known, f"{where}: `imgscan {sub}` has no option {flag}"


def _parse_with_click(
    argv: list[str], env: Mapping[str, str], where: str, monkeypatch: pytest.MonkeyPatch
) -> click.Context:
    """Let click parse ``imgscan argv...`` (types, choices, required options) without running."""
    assert argv[0] == "imgscan", f"{where}: command must start with imgscan: {argv}"
    _check_flags(argv[1:], where)
    with monkeypatch.context() as mp:
        for name in IMGSCAN_ENV:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        cmd = main.commands[argv[1]]
        try:
            return cmd.make_context(argv[1], list(argv[2:]))
        except click.ClickException as exc:
            pytest.fail(f"{where}: imgscan {' '.join(argv[1:])}: {exc.format_message()}")


def _docs_code_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block in a markdown file."""
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.M | re.S)


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def _pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = doc["kind"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def _env_names(container: Mapping[str, Any]) -> dict[str, str]:
    """The env var names a container gets, with placeholder values."""
    return {
        e["name"]: e.get("value") or f"placeholder-{e['name'].lower()}"
        for e in container.get("env", [])
    }


# ---------------------------------------------------------------- every file parses


def test_the_deployment_files_exist() -> None:
    expected = [
        K8S / "watch-cronjob.yaml",
        K8S / "workers-deployment.yaml",
        K8S / "redis.yaml",
        K8S / "watch-cronjob-celery.yaml",
        DEPLOY / "docker-compose.yml",
        *WATCH_EXAMPLES,
        HOOK,
        ROOT / "Dockerfile",
        ROOT / ".dockerignore",
        *DOCS,
        EXAMPLES / "github-actions" / "image-gate.yml",
    ]
    missing = [_rel(p) for p in expected if not p.is_file()]
    assert not missing


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{_rel(path)} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)
    assert "\t" not in path.read_text()


@pytest.mark.parametrize("path", WATCH_EXAMPLES, ids=_rel)
def test_example_watch_configs_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_watch_config(path)
    assert cfg.targets and all(t.registry and t.repository for t in cfg.targets)
    if cfg.executor == "celery":
        monkeypatch.setenv("IMGSCAN_BROKER_URL", "redis://redis:6379/0")
        monkeypatch.setenv("IMGSCAN_CACHE_URL", "postgresql://imgscan@postgres/imgscan")
        settings = settings_from(cfg.celery, str(cfg.cache))  # rejects unknown [celery] keys
        assert settings.cache.startswith("postgresql://")
        assert settings.deadline > 3600


def test_watch_example_tag_patterns_do_what_the_comments_say() -> None:
    local = load_watch_config(DEPLOY / "watch.example.toml")
    api, worker, lab = local.targets
    assert api.matches("v1.2.3") and api.matches("prod-eu") and not api.matches("latest")
    assert worker.matches("v10.2.0") and not worker.matches("v10.2") and not worker.matches("x")
    assert lab.insecure and lab.platform == "linux/arm64"


# ---------------------------------------------------------------- Kubernetes


def test_kubernetes_objects_are_well_formed_and_references_resolve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = _k8s_docs()
    secrets: dict[str, set[str]] = {}
    configmaps: dict[str, dict[str, str]] = {}
    pvcs: set[str] = set()
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), _rel(path)
        assert doc.get("metadata", {}).get("name"), _rel(path)
        if doc["kind"] == "Secret":
            secrets[doc["metadata"]["name"]] = set(doc.get("stringData") or doc.get("data") or {})
        elif doc["kind"] == "ConfigMap":
            configmaps[doc["metadata"]["name"]] = doc["data"]
        elif doc["kind"] == "PersistentVolumeClaim":
            pvcs.add(doc["metadata"]["name"])
    pods = [(path, doc, spec) for path, doc in docs if (spec := _pod_spec(doc)) is not None]
    assert {d["kind"] for _p, d, _s in pods} >= {"CronJob", "Deployment"}
    for path, doc, spec in pods:
        where = f"{_rel(path)}: {doc['kind']}/{doc['metadata']['name']}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, where
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in pvcs, where
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, where
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{where}: no Secret {ref['name']}"
                    assert ref["key"] in secrets[ref["name"]], f"{where}: no key {ref['key']}"
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{where}: mount of unknown volume {m['name']}"
            assert c.get("resources", {}).get("requests"), f"{where}: no resource requests"
            assert c.get("resources", {}).get("limits", {}).get("memory"), where


def _imgscan_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    for path, doc in _k8s_docs():
        spec = _pod_spec(doc)
        if spec is None:
            continue
        for c in spec["containers"]:
            if "imgscan" in c["image"]:
                yield f"{_rel(path)}: {doc['kind']}/{doc['metadata']['name']}", doc, spec, c


def test_imgscan_pods_run_locked_down_as_the_dockerfile_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+)", dockerfile, flags=re.M).group(1))  # type: ignore[union-attr]
    seen = 0
    for where, _doc, spec, c in _imgscan_containers():
        seen += 1
        pod_sc, sc = spec["securityContext"], c["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == uid, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        volumes = {v["name"]: v for v in spec["volumes"]}
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp must be an emptyDir"
        assert spec.get("automountServiceAccountToken") is False, where
    assert seen == 3


def test_cronjobs_run_one_at_a_time_and_never_retry_a_verdict() -> None:
    cronjobs = [(w, d, s, c) for w, d, s, c in _imgscan_containers() if d["kind"] == "CronJob"]
    assert len(cronjobs) == 2
    for where, doc, spec, c in cronjobs:
        assert doc["spec"]["concurrencyPolicy"] == "Forbid", where
        assert spec["restartPolicy"] == "Never", where
        rules = doc["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
        fail_job = [r for r in rules if r["action"] == "FailJob"]
        assert fail_job and fail_job[0]["onExitCodes"]["containerName"] == c["name"], where
        assert set(fail_job[0]["onExitCodes"]["values"]) == {1, 2}, where  # 3 is retried


def test_container_commands_parse_and_their_configs_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configmaps = {
        d["metadata"]["name"]: d["data"] for _p, d in _k8s_docs() if d["kind"] == "ConfigMap"
    }
    worker_env: set[str] = set()
    celery_cred_env: set[str] = set()
    commands = set()
    for where, doc, spec, c in _imgscan_containers():
        argv = c["command"]
        env = _env_names(c)
        ctx = _parse_with_click(argv, env, where, monkeypatch)
        commands.add(argv[1])
        if argv[1] == "worker":
            worker_env = set(env)
            assert ctx.params["broker"] and ctx.params["cache_url"], where
            assert spec["terminationGracePeriodSeconds"] >= 60, where
            assert not any("://" in a for a in argv), f"{where}: URLs belong in the Secret"
            continue
        assert argv[1] == "watch", where
        # the config the container reads: the ConfigMap mounted where --config points
        config_path = Path(ctx.params["config_path"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(config_path.parent))
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        text = configmaps[volume["configMap"]["name"]][config_path.name]
        local = tmp_path / doc["metadata"]["name"] / config_path.name
        local.parent.mkdir()
        local.write_text(text)
        cfg = load_watch_config(local)
        for t in cfg.targets:
            for name in (t.username_env, t.password_env):
                if name:
                    assert name in env, f"{where}: target {t.repo_ref} needs ${name}"
        assert cfg.state.is_absolute() and str(cfg.state).startswith("/data/"), where
        assert str(cfg.output_dir).startswith("/data/"), where
        data_mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/data"]
        assert data_mounts, f"{where}: state and reports need the PVC on /data"
        executor = ctx.params["executor"] or cfg.executor
        if executor == "celery":
            assert "IMGSCAN_BROKER_URL" in env or "broker" in cfg.celery, where
            with monkeypatch.context() as mp:
                for name, value in env.items():
                    mp.setenv(name, value)
                settings_from(cfg.celery, str(cfg.cache))
            celery_cred_env |= {
                n for t in cfg.targets for n in (t.username_env, t.password_env) if n
            }
        else:
            assert not str(cfg.cache).startswith("/config"), where
    assert commands == {"watch", "worker"}
    # workers pull the blobs themselves: they need the same registry credentials
    assert celery_cred_env and celery_cred_env <= worker_env


# ---------------------------------------------------------------- docker compose


def test_compose_services_parse_and_share_the_worker_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "postgres", "worker", "watch"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["watch"]["restart"] == "no"
    for name in ("worker", "watch"):
        svc = services[name]
        argv = [*svc["entrypoint"], *svc["command"]]
        _parse_with_click(
            argv, dict(svc["environment"]), f"docker-compose.yml: {name}", monkeypatch
        )
        assert (
            svc["build"]["context"] == ".."
            and (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        )
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    mounts = [v.split(":") for v in services["watch"]["volumes"]]
    config = next(src for src, dst, *_ in mounts if dst == "/config/watch.toml")
    cfg = load_watch_config(DEPLOY / config)
    assert cfg.executor == "celery"
    assert any(dst == "/data" for _src, dst, *_ in mounts)
    assert str(cfg.state).startswith("/data/") and str(cfg.output_dir).startswith("/data/")
    env = services["watch"]["environment"]
    needed = {n for t in cfg.targets for n in (t.username_env, t.password_env) if n}
    assert needed <= set(env) and needed <= set(services["worker"]["environment"])
    assert set(compose["volumes"]) >= {"redis-data", "pg-data", "watch-data"}


# ---------------------------------------------------------------- docs and CI examples


def _shell_sources() -> list[tuple[str, str]]:
    """``(where, text)`` of every shell-ish text whose imgscan commands must be real."""
    out = []
    for doc in DOCS:
        for i, (_lang, body) in enumerate(_docs_code_blocks(doc)):
            out.append((f"{_rel(doc)} block {i}", body))
    for path in SHELL_EXAMPLES:
        out.append((_rel(path), path.read_text()))
    crontab = EXAMPLES / "crontab"
    out.append((_rel(crontab), crontab.read_text()))
    workflow = yaml.safe_load((EXAMPLES / "github-actions" / "image-gate.yml").read_text())
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                out.append(
                    (f"image-gate.yml step {step.get('name', step['run'][:20])}", step["run"])
                )
    for path in [*YAML_FILES, *WATCH_EXAMPLES, ROOT / "Dockerfile", *INDEXES, *DOCS]:
        out.append((_rel(path), _comment_commands(path.read_text())))
    return out


def _comment_commands(text: str) -> str:
    """Command examples in comments: indented ``#   cmd`` lines and `backticked` spans."""
    lines = []
    for line in text.splitlines():
        m = re.search(r"#( {2,}\S.*)$", line)
        if m:
            lines.append(m.group(1))
        lines.extend(re.findall(r"`(imgscan [^`]+)`", line))
    return "\n".join(lines)


def test_every_documented_imgscan_command_and_flag_exists() -> None:
    checked: dict[str, int] = {}
    for where, text in _shell_sources():
        for argv in invocations(text):
            _check_flags(argv, where)
            checked[argv[0]] = checked.get(argv[0], 0) + 1
    # the docs cover all three workflows and the fleet
    assert set(checked) >= {"gate", "scan", "layers", "watch", "worker"}, checked
    assert checked["gate"] >= 8


def test_the_invocation_extractor_finds_flags_and_ignores_image_names() -> None:
    text = (
        "docker build -t imgscan:0.1.0 .\nkubectl -n imgscan create job x\n"
        "docker run --rm imgscan:0.1.0 scan /work/app.tar --format json\n"
        "pip install imgscan && imgscan gate docker://a:b --push r/a:1 \\\n"
        "    --fail-on critical <in | tee out  # comment --nope\n"
        "imgscan watch --config w.toml >>log 2>&1\n"
    )
    assert invocations(text) == [
        ["scan", "/work/app.tar", "--format", "json"],
        ["gate", "docker://a:b", "--push", "r/a:1", "--fail-on", "critical"],
        ["watch", "--config", "w.toml"],
    ]
    with pytest.raises(AssertionError, match="no option --bogus"):
        _check_flags(["gate", "x", "--bogus"], "example")


def test_docs_workflow_yaml_is_the_example_file() -> None:
    example = (EXAMPLES / "github-actions" / "image-gate.yml").read_text()
    body = "".join(line for line in example.splitlines(keepends=True) if not line.startswith("#"))
    blocks = [
        b
        for lang, b in _docs_code_blocks(ROOT / "docs" / "workflows.md")
        if lang == "yaml" and b.startswith("name: image-gate")
    ]
    assert blocks == [body]
    workflow = yaml.safe_load(body)
    steps = workflow["jobs"]["build-gate-push"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action"))
    assert "always()" in upload["if"] and upload["with"]["sarif_file"] == "imgscan.sarif"
    assert workflow["permissions"]["security-events"] == "write"


def test_docs_links_point_at_files_that_exist() -> None:
    for doc in [*DOCS, *INDEXES]:
        for target in re.findall(r"\]\((?!https?:|#)([^)#\s]+)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{_rel(doc)}: broken link {target}"


def test_scaling_figures_are_filled_in() -> None:
    """The paper estimate's inputs are measured figures, not placeholders."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    table = text.split("### Figures", 1)[1].split("\n### ", 1)[0]
    assert not re.findall(r"\{\{[A-Z0-9_]+\}\}", text)
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) >= 15  # header + every input and result
    for row in rows[1:]:
        value = row.split("|")[2].strip()
        assert re.search(r"\d", value), row


# ---------------------------------------------------------------- Dockerfile


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_dockerfile_builds_from_files_the_context_keeps() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.M)
    assert re.search(r"^USER 10001:10001$", text, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["imgscan"\]$', text, flags=re.M)
    assert '".[fleet]"' in text and '"imgscan[fleet]"' in text
    labels = set(re.findall(r"org\.opencontainers\.image\.[a-z.]+", text))
    assert {
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    } <= labels
    ignored = _dockerignore_patterns()
    copied = []
    for m in re.finditer(r"^COPY (?!--from)(.+)$", text, flags=re.M):
        *sources, _dest = m.group(1).split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file"
            assert src not in ignored, f"COPY {src}: excluded by .dockerignore"
            copied.append(src)
    # everything pyproject.toml needs to build the wheel is in the context
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {pyproject["project"]["readme"], "pyproject.toml"}
    setuptools = pyproject["tool"]["setuptools"]
    for pkg in setuptools["packages"]:
        top = setuptools.get("package-dir", {}).get(pkg, pkg.replace(".", "/")).split("/")[0]
        needed.add(top)
    assert needed <= set(copied), needed - set(copied)


# ---------------------------------------------------------------- the pre-push hook


def test_pre_push_hook_is_valid_executable_shell() -> None:
    assert HOOK.stat().st_mode & stat.S_IXUSR
    res = subprocess.run(["bash", "-n", str(HOOK)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    for path in SHELL_EXAMPLES:
        res = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{_rel(path)}: {res.stderr}"


def _build(tmp: Path, name: str, entries: list[dict[str, Any]]) -> Path:
    from fixtures.builder import build
    from fixtures.spec import parse_spec

    spec = parse_spec(
        {
            "name": name,
            "tag": f"example.invalid/{name}:1",
            "created": "2024-01-01T00:00:00Z",
            "config": {"User": "10001"},
            "layers": [{"created_by": f"COPY {name} /app", "entries": entries}],
        }
    )
    return build(spec, "docker-legacy", tmp / f"{name}.tar")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("images")
    return {
        "clean": _build(
            tmp,
            "clean",
            [{"path": "app/", "type": "dir"}, {"path": "app/hello.txt", "content": "hello\n"}],
        ),
        # a generated (seeded, fake) private key: the default policy fails on it
        "leaky": _build(
            tmp,
            "leaky",
            [
                {"path": "app/", "type": "dir"},
                {"path": "app/id_rsa", "generate": "pem-rsa", "seed": 7, "mode": "0600"},
            ],
        ),
    }


class GitRepo:
    """A work tree with the hook installed as documented, and a bare remote."""

    def __init__(self, tmp: Path) -> None:
        require(shutil.which("git") is not None, "git (apt-get install git)")
        self.remote = tmp / "remote.git"
        self.work = tmp / "work"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "IMGSCAN"))}
        self.env.update(
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.invalid",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.invalid",
            GIT_CONFIG_NOSYSTEM="1",
            HOME=str(tmp),
            NO_COLOR="1",
        )
        wrapper = tmp / "bin" / "imgscan-from-source"
        wrapper.parent.mkdir()
        wrapper.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m imgscan.cli "$@"\n'
        )
        wrapper.chmod(0o755)
        self.env["IMGSCAN"] = str(wrapper)
        self.git(tmp, "init", "-q", "--bare", str(self.remote))
        self.git(tmp, "init", "-q", "-b", "main", str(self.work))
        (self.work / "scripts").mkdir()
        shutil.copy2(HOOK, self.work / "scripts" / "pre-push")
        # the documented installation line, run from the top of the work tree
        subprocess.run(
            ["ln", "-s", "../../scripts/pre-push", ".git/hooks/pre-push"], cwd=self.work, check=True
        )
        (self.work / "README").write_text("x\n")
        self.git(self.work, "add", "-A")
        self.git(self.work, "commit", "-q", "-m", "init")
        self.git(self.work, "remote", "add", "origin", str(self.remote))

    def git(self, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def push(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.git(self.work, "push", "origin", *args, **env)

    def remote_has(self, ref: str) -> bool:
        return self.git(self.remote, "rev-parse", "--verify", "-q", ref).returncode == 0


def test_pre_push_hook_blocks_a_failing_image_and_lets_a_clean_one_through(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    repo = GitRepo(tmp_path)

    blocked = repo.push("main", IMGSCAN_GATE_IMAGES=f"{images['clean']},{images['leaky']}")
    assert blocked.returncode != 0
    assert "leaky.tar: policy failed (exit 1)" in blocked.stderr
    assert "clean.tar: passed" in blocked.stderr
    assert "push blocked" in blocked.stderr
    assert not repo.remote_has("refs/heads/main")

    ok = repo.push("main", IMGSCAN_GATE_IMAGES=str(images["clean"]))
    assert ok.returncode == 0, ok.stderr
    assert repo.remote_has("refs/heads/main")

    # a .imgscan-gate file, with comments, names the images when the variable is unset
    (repo.work / ".imgscan-gate").write_text(f"# images we ship\n{images['leaky']}  # the app\n")
    repo.git(repo.work, "checkout", "-q", "-b", "feature")
    from_file = repo.push("feature")
    assert from_file.returncode != 0 and "leaky.tar: policy failed" in from_file.stderr
    assert not repo.remote_has("refs/heads/feature")

    # extra gate flags: only critical findings in the present state fail... the key is critical
    still = repo.push("feature", IMGSCAN_GATE_ARGS="--fail-on critical --fail-on-state present")
    assert still.returncode != 0
    # ... and a category the key is not in lets it through
    passed = repo.push("feature", IMGSCAN_GATE_ARGS="--category file")
    assert passed.returncode == 0, passed.stderr
    assert repo.remote_has("refs/heads/feature")

    # deleting a remote branch is not gated (the leaky image is still listed)
    deleted = repo.push(":feature")
    assert deleted.returncode == 0, deleted.stderr
    assert "nothing to gate" in deleted.stderr
    assert not repo.remote_has("refs/heads/feature")


def test_pre_push_hook_blocks_on_scan_and_usage_errors_and_without_imgscan(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    repo = GitRepo(tmp_path)
    missing = tmp_path / "no-such-image.tar"
    scan_error = repo.push("main", IMGSCAN_GATE_IMAGES=str(missing))
    assert scan_error.returncode != 0 and "could not be scanned (exit 3)" in scan_error.stderr
    usage = repo.push(
        "main", IMGSCAN_GATE_IMAGES=str(images["clean"]), IMGSCAN_GATE_ARGS="--fail-on catastrophic"
    )
    assert usage.returncode != 0 and "usage error (exit 2)" in usage.stderr
    absent = repo.push(
        "main", IMGSCAN_GATE_IMAGES=str(images["clean"]), IMGSCAN=str(tmp_path / "not-installed")
    )
    assert absent.returncode != 0 and "not found" in absent.stderr
    assert not repo.remote_has("refs/heads/main")
    # nothing configured: the hook says so and does not block
    unconfigured = repo.push("main")
    assert unconfigured.returncode == 0 and "no images configured" in unconfigured.stderr
    assert repo.remote_has("refs/heads/main")


def test_gate_json_report_matches_what_the_hook_relies_on(
    images: dict[str, Path], tmp_path: Path
) -> None:
    """The CI examples read exit codes 0/1 and a report written even when the gate fails."""
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        main, ["gate", str(images["leaky"]), "--quiet", "--format", "json", "--output", str(out)]
    )
    assert res.exit_code == 1
    report = json.loads(out.read_text())
    assert "/app/id_rsa" in {f["path"] for f in report["findings"]}
    res = CliRunner().invoke(main, ["gate", str(images["clean"]), "--quiet"])
    assert res.exit_code == 0
