"""The standard-library HTTP transport: keep-alive, raw bodies, TLS, proxies (real tinyproxy).

Edge cases (a dropped keep-alive connection, chunked and truncated bodies, a
server that never answers) use ``http.server`` in a thread; TLS uses the real
docker-registry in basic mode; proxies use a real tinyproxy process.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from imgscan.cli import main
from imgscan.errors import ConfigError, SourceError
from imgscan.sources.base import SourceOptions
from imgscan.sources.http import (
    ProxyError,
    Session,
    TLSError,
    TransportError,
    proxy_for,
    with_params,
)
from imgscan.sources.registry import RegistrySource, list_tags
from tests.conftest import require
from tests.infra.images import build_image, push_test_image, random_bytes, read_files
from tests.infra.registry import RegistryServer
from tests.infra.registry_fixtures import ALICE, FAST_RETRY, client
from tests.infra.tinyproxy import TinyProxy, tinyproxy_available

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARS = [
    f"{name}_proxy" if lower else f"{name.upper()}_PROXY"
    for name in ("http", "https", "all", "no")
    for lower in (True, False)
]
PROXY_USER, PROXY_PASSWORD = "proxyuser", "proxy-test-password-not-secret"


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the proxy variables they want; none leak in from the developer's shell."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


# -- a small local server for edge cases ----------------------------------------------------


class _Server:
    """ThreadingHTTPServer on 127.0.0.1 whose handler is a function of (handler, path)."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, str], None]) -> None:
        self.connections: list[int] = []  # client ports, one per accepted connection
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections.append(self.client_address[1])

            def do_GET(self) -> None:
                owner.paths.append(self.path)
                handle(self, self.path)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A handler that outlives its test (a client that timed out, a dropped
                # connection) must not print into a later test's captured stderr.
                owner.errors.append(str(sys.exc_info()[1]))

        self.errors: list[str] = []
        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send(h: BaseHTTPRequestHandler, body: bytes, **headers: str) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    """A local server running the handler given by ``@pytest.mark.parametrize(indirect)``."""
    srv = _Server(request.param)
    yield srv
    srv.stop()


def _plain(h: BaseHTTPRequestHandler, path: str) -> None:
    _send(h, f"hello {path}".encode())


def _drop_after_each(h: BaseHTTPRequestHandler, path: str) -> None:
    """Answer with keep-alive semantics, then close the connection anyway (idle timeout)."""
    _send(h, b"ok")
    h.close_connection = True


_seen_on_conn: dict[int, int] = {}


def _vanish_on_second(h: BaseHTTPRequestHandler, path: str) -> None:
    """The second request on a connection gets no answer at all: the connection just closes."""
    port = h.client_address[1]
    _seen_on_conn[port] = _seen_on_conn.get(port, 0) + 1
    if _seen_on_conn[port] > 1:
        h.close_connection = True
        return
    _send(h, b"first")


def _chunked(h: BaseHTTPRequestHandler, path: str) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for piece in (b"alpha-", b"beta-", b"gamma" * 1000):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
    h.wfile.write(b"0\r\n\r\n")


GZ_BODY = gzip.compress(b"not to be decoded " * 100, mtime=0)


def _gzip(h: BaseHTTPRequestHandler, path: str) -> None:
    _send(h, GZ_BODY, Content_Encoding="gzip", Content_Type="application/octet-stream")


def _truncated(h: BaseHTTPRequestHandler, path: str) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(b"x" * 400)
    h.wfile.flush()
    h.close_connection = True


def _big_or_small(h: BaseHTTPRequestHandler, path: str) -> None:
    _send(h, random_bytes(8 * 1024 * 1024, 7) if path == "/big" else b"small")


def _silent(h: BaseHTTPRequestHandler, path: str) -> None:
    time.sleep(2)
    _send(h, b"too late")


@pytest.mark.parametrize("server", [_plain], indirect=True)
def test_keep_alive_reuses_one_connection(server: _Server) -> None:
    with Session("imgscan-test") as s:
        bodies = [s.request("GET", f"{server.url}/{i}").content for i in range(3)]
        streamed = s.request("GET", f"{server.url}/s", stream=True)
        assert streamed.read(3) == b"hel" and streamed.read() == b"lo /s"
        again = s.request("GET", f"{server.url}/after")
    assert bodies == [b"hello /0", b"hello /1", b"hello /2"]
    assert again.content == b"hello /after"
    assert len(server.connections) == 1
    assert s.stats == {"connections": 1, "reused": 4}


@pytest.mark.parametrize("server", [_drop_after_each], indirect=True)
def test_a_dropped_idle_connection_is_not_reused(server: _Server) -> None:
    with Session("imgscan-test") as s:
        for _ in range(3):
            assert s.request("GET", f"{server.url}/x").content == b"ok"
            time.sleep(0.05)  # let the server's close arrive
    assert len(server.connections) == 3  # each request on a fresh connection, none failed


@pytest.mark.parametrize("server", [_vanish_on_second], indirect=True)
def test_a_reused_connection_that_fails_is_retried_once_fresh(server: _Server) -> None:
    _seen_on_conn.clear()
    with Session("imgscan-test") as s:
        assert s.request("GET", f"{server.url}/1").content == b"first"
        # The server drops the kept-alive connection only when the next request arrives.
        assert s.request("GET", f"{server.url}/2").content == b"first"
    assert len(server.connections) == 2
    assert server.paths == ["/1", "/2", "/2"]


@pytest.mark.parametrize("server", [_chunked], indirect=True)
def test_chunked_bodies_are_read_and_the_connection_kept(server: _Server) -> None:
    with Session("imgscan-test") as s:
        r = s.request("GET", f"{server.url}/c", stream=True)
        assert r.headers.get("transfer-encoding") == "chunked"
        assert b"".join(r.iter_content(1000)) == b"alpha-beta-" + b"gamma" * 1000
        assert s.request("GET", f"{server.url}/d").content.startswith(b"alpha-beta-gamma")
    assert len(server.connections) == 1


@pytest.mark.parametrize("server", [_gzip], indirect=True)
def test_bodies_are_raw_bytes_never_decoded(server: _Server) -> None:
    with Session("imgscan-test") as s:
        r = s.request("GET", f"{server.url}/blob", stream=True)
        assert r.headers.get("CONTENT-ENCODING") == "gzip"  # case-insensitive
        assert r.read() == GZ_BODY


@pytest.mark.parametrize("server", [_truncated], indirect=True)
def test_a_truncated_body_is_an_error_not_a_short_read(server: _Server) -> None:
    with Session("imgscan-test") as s:
        r = s.request("GET", f"{server.url}/t", stream=True)
        with pytest.raises(TransportError, match="IncompleteRead"):
            while r.read(100):
                pass


@pytest.mark.parametrize("server", [_big_or_small], indirect=True)
def test_closing_an_unfinished_body_drops_the_connection_without_draining(
    server: _Server,
) -> None:
    with Session("imgscan-test") as s:
        r = s.request("GET", f"{server.url}/big", stream=True)
        assert len(r.read(1000)) == 1000
        started = time.monotonic()
        r.close()
        assert time.monotonic() - started < 0.5
        assert r.finished and r.read(10) == b""
        assert s.request("GET", f"{server.url}/small").content == b"small"
    assert len(server.connections) == 2  # the half-read connection was not reused


@pytest.mark.parametrize("server", [_silent], indirect=True)
def test_a_server_that_never_answers_times_out(server: _Server) -> None:
    with Session("imgscan-test") as s:
        started = time.monotonic()
        with pytest.raises(TransportError, match="Read timed out"):
            s.request("GET", f"{server.url}/slow", timeout=0.3)
        assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_a_transport_error() -> None:
    from tests.infra.registry import free_port

    with Session("imgscan-test") as s, pytest.raises(TransportError, match=r"\[Errno 111\]"):
        s.request("GET", f"http://127.0.0.1:{free_port()}/v2/", timeout=2)


def test_with_params_appends_to_an_existing_query() -> None:
    scope = [("service", "reg.example"), ("scope", "repository:team/app:pull,push")]
    assert with_params("https://auth.example/token", scope) == (
        "https://auth.example/token?service=reg.example&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
    )
    assert with_params("https://auth.example/t?account=ci&x=1", [("scope", "a b")]) == (
        "https://auth.example/t?account=ci&x=1&scope=a+b"
    )
    assert with_params("https://auth.example", [("a", "1")]) == "https://auth.example/?a=1"
    assert with_params("https://auth.example/t?k=v", []) == "https://auth.example/t?k=v"


def test_importing_the_registry_source_loads_neither_requests_nor_urllib3() -> None:
    code = (
        "import sys, imgscan.sources.registry, imgscan.sources.push; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3')))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


# -- TLS against the real registry ----------------------------------------------------------


def test_an_empty_system_store_falls_back_to_certifi() -> None:
    pytest.importorskip("certifi")
    code = (
        "import ssl; from imgscan.sources.http import _tls_context; "
        "print(ssl.create_default_context().cert_store_stats()['x509_ca'], "
        "_tls_context(True, {}).cert_store_stats()['x509_ca'] > 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SSL_CERT_FILE": "/nonexistent/ca.pem"}
    env["SSL_CERT_DIR"] = "/nonexistent/certs"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "True"], out.stdout


@pytest.mark.registry
def test_a_ca_bundle_named_the_way_requests_read_it_is_honoured(
    basic_registry: RegistryServer, tmp_path: Path
) -> None:
    url = f"{basic_registry.url}/v2/"
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        with Session("imgscan-test", environ={var: str(basic_registry.ca_cert)}) as s:
            assert s.request("GET", url, timeout=5).status_code == 401
    with Session("imgscan-test", environ={}) as s, pytest.raises(TLSError):
        s.request("GET", url, timeout=5)
    missing = tmp_path / "nope.pem"
    with (
        Session("imgscan-test", environ={"REQUESTS_CA_BUNDLE": str(missing)}) as s,
        pytest.raises(ConfigError, match=r"REQUESTS_CA_BUNDLE=.*not a usable CA bundle"),
    ):
        s.request("GET", url, timeout=5)


@pytest.mark.registry
def test_tls_verifies_against_the_system_store_a_ca_file_or_not_at_all(
    basic_registry: RegistryServer,
) -> None:
    url = f"{basic_registry.url}/v2/"
    with Session("imgscan-test") as s:
        with pytest.raises(TLSError, match="certificate verify failed"):
            s.request("GET", url, timeout=5)
        assert s.request("GET", url, verify=str(basic_registry.ca_cert)).status_code == 401
        assert s.request("GET", url, verify=False).status_code == 401
        # verified and unverified connections are pooled apart, each reused
        assert s.request("GET", url, verify=str(basic_registry.ca_cert)).status_code == 401
        assert s.stats == {"connections": 3, "reused": 1}


@pytest.mark.registry
def test_an_unverified_registry_over_tls_prints_no_warning(
    basic_registry: RegistryServer, repo_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with client(basic_registry, ALICE) as c:
        push_test_image(c, repo_name, "1.0", build_image([{"a.txt": b"a\n"}]))
    src = RegistrySource(
        f"{basic_registry.host}/{repo_name}:1.0", creds=ALICE, insecure=True, retry=FAST_RETRY
    )
    with src.open() as image:
        assert read_files(image) == {"/a.txt": b"a\n"}
    out, err = capfd.readouterr()
    assert "Warning" not in err and "Unverified" not in err and "Warning" not in out


# -- proxies from the environment -----------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "registry.example.com", 443, True),
        ("example.com", "registry.example.com", 443, True),
        (".example.com", "registry.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        ("other.org, registry.example.com:5000", "registry.example.com", 5000, True),
        ("registry.example.com:5000", "registry.example.com", 443, False),
        ("127.0.0.1", "127.0.0.1", 5000, True),
        ("127.0.0.1:5000", "127.0.0.1", 5001, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("::1", "::1", 443, True),
        ("fd00::/8", "fd12::1", 443, True),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("", "registry.example.com", 443, False),
    ],
)
def test_no_proxy_forms(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": no_proxy}
    got = proxy_for("https", host, port, env)
    assert (got is None) is bypassed


def test_proxy_variables_and_their_precedence() -> None:
    env = {"HTTP_PROXY": "http://up:1", "http_proxy": "low:2", "ALL_PROXY": "http://all:3"}
    p = proxy_for("http", "reg", 80, env)
    assert p is not None and (p.host, p.port, p.variable, p.auth) == ("low", 2, "http_proxy", None)
    p = proxy_for("https", "reg", 443, env)  # no HTTPS_PROXY: ALL_PROXY
    assert p is not None and (p.shown, p.variable) == ("all:3", "ALL_PROXY")
    assert proxy_for("https", "reg", 443, {"HTTP_PROXY": "http://up:1"}) is None
    p = proxy_for("https", "reg", 443, {"HTTPS_PROXY": "http://u%40x:p%3Aw@proxy"})
    assert p is not None and p.port == 80 and p.auth == "Basic dUB4OnA6dw=="  # u@x:p:w


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://user:hunter2-not-secret@proxy:3128", ["HTTPS_PROXY=https://***@proxy:3128"]),
        ("socks5h://user:hunter2-not-secret@proxy:1080", ["HTTPS_PROXY=socks5h://***@", "socks"]),
        ("http://", ["HTTPS_PROXY", "not a usable proxy URL"]),
    ],
)
def test_an_unusable_proxy_url_is_a_config_error_naming_the_variable(
    value: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        proxy_for("https", "reg", 443, {"HTTPS_PROXY": value})
    text = str(err.value)
    assert "\n" not in text and "hunter2" not in text
    for w in words:
        assert w in text


@pytest.fixture(scope="module")
def tinyproxy(
    plain_registry: RegistryServer, basic_registry: RegistryServer
) -> Iterator[TinyProxy]:
    """tinyproxy that may CONNECT to both test registries."""
    missing = tinyproxy_available()
    require(missing is None, f"proxy tests need {missing}")
    with TinyProxy(connect_ports=(plain_registry.port, basic_registry.port)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def auth_tinyproxy(
    plain_registry: RegistryServer, basic_registry: RegistryServer
) -> Iterator[TinyProxy]:
    """tinyproxy that demands Basic proxy credentials."""
    missing = tinyproxy_available()
    require(missing is None, f"proxy tests need {missing}")
    with TinyProxy(
        connect_ports=(plain_registry.port, basic_registry.port),
        basic_auth=(PROXY_USER, PROXY_PASSWORD),
    ) as proxy:
        yield proxy


LAYERS = [{"etc/app.conf": b"name = proxied\n"}, {"srv/blob.bin": random_bytes(300_000, 3)}]


def _push(server: RegistryServer, repo: str) -> str:
    with client(server, ALICE) as c:
        return push_test_image(c, repo, "1.0", build_image(LAYERS))


def _source(server: RegistryServer, repo: str) -> RegistrySource:
    return RegistrySource(
        f"{server.host}/{repo}:1.0",
        SourceOptions(),
        ALICE,
        insecure=server.insecure,
        ca_cert=str(server.ca_cert) if server.ca_cert else None,
        retry=FAST_RETRY,
    )


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
def test_pull_from_a_plain_registry_through_the_proxy(
    tinyproxy: TinyProxy,
    plain_registry: RegistryServer,
    repo_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = _push(plain_registry, repo_name)
    tinyproxy.forget()
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url())
    with _source(plain_registry, repo_name).open() as image:
        assert image.info.digest == digest
        files = read_files(image)
    assert files == {
        "/etc/app.conf": b"name = proxied\n",
        "/srv/blob.bin": LAYERS[1]["srv/blob.bin"],
    }
    seen = tinyproxy.seen()
    base = f"http://{plain_registry.host}/v2/{repo_name}"
    assert ("GET", f"{base}/manifests/1.0") in seen
    blobs = [t for m, t in seen if m == "GET" and t.startswith(f"{base}/blobs/")]
    assert len(blobs) == 3  # config and both layers, all through the proxy


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
def test_pull_from_a_tls_registry_through_a_connect_tunnel(
    tinyproxy: TinyProxy,
    basic_registry: RegistryServer,
    repo_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = _push(basic_registry, repo_name)
    tinyproxy.forget()
    monkeypatch.setenv("https_proxy", tinyproxy.url())
    with _source(basic_registry, repo_name).open() as image:
        assert image.info.digest == digest
        assert read_files(image)["/etc/app.conf"] == b"name = proxied\n"
    seen = tinyproxy.seen()
    assert seen and all(s == ("CONNECT", f"{basic_registry.host}") for s in seen)
    # keep-alive inside the tunnel: far fewer tunnels than requests
    assert len(seen) <= 2
    # the registry's Authorization went inside TLS: tinyproxy never saw a plain request
    log = tinyproxy.log_path.read_text()
    assert ALICE.password not in log


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
def test_no_proxy_bypasses_the_proxy(
    tinyproxy: TinyProxy,
    plain_registry: RegistryServer,
    repo_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = _push(plain_registry, repo_name)
    tinyproxy.forget()
    monkeypatch.setenv("ALL_PROXY", tinyproxy.url())
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.0/8")
    with _source(plain_registry, repo_name).open() as image:
        assert image.info.digest == digest
    assert tinyproxy.seen() == []
    monkeypatch.setenv("no_proxy", f"127.0.0.1:{plain_registry.port + 1}")  # other port
    assert list_tags(f"{plain_registry.host}/{repo_name}", creds=ALICE, insecure=True) == ["1.0"]
    assert ("GET", f"http://{plain_registry.host}/v2/{repo_name}/tags/list") in tinyproxy.seen()


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
@pytest.mark.parametrize("which", ["plain", "tls"])
def test_proxy_credentials_right_and_wrong(
    auth_tinyproxy: TinyProxy,
    plain_registry: RegistryServer,
    basic_registry: RegistryServer,
    repo_name: str,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    server = plain_registry if which == "plain" else basic_registry
    var = "HTTP_PROXY" if which == "plain" else "HTTPS_PROXY"
    digest = _push(server, repo_name)
    for url, words in (
        (auth_tinyproxy.url(), "demands proxy credentials (HTTP 407"),
        (auth_tinyproxy.url(PROXY_USER, "wrong-password-not-secret"), "rejected the proxy cred"),
    ):
        monkeypatch.setenv(var, url)
        with pytest.raises(SourceError) as err, _source(server, repo_name).open():
            pass
        text = str(err.value)
        assert "\n" not in text and words in text and "tries" not in text  # not retried
        assert f"proxy 127.0.0.1:{auth_tinyproxy.port} ({var})" in text
        assert "wrong-password" not in text and PROXY_PASSWORD not in text
    monkeypatch.setenv(var, auth_tinyproxy.url(PROXY_USER, PROXY_PASSWORD))
    with _source(server, repo_name).open() as image:
        assert image.info.digest == digest


def test_the_tunnel_request_carries_proxy_credentials_never_the_registry_authorization() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            seen.append((self.command, self.path, dict(self.headers.items())))
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"HTTPS_PROXY": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{httpd.server_port}"}
        with (
            Session("imgscan-test", environ=env) as s,
            pytest.raises(ProxyError, match=r"refused the CONNECT tunnel \(HTTP 502"),
        ):
            s.request(
                "GET", "https://registry.test:5000/v2/", headers={"Authorization": "Bearer t"}
            )
    finally:
        httpd.shutdown()
        httpd.server_close()
    ((method, target, headers),) = seen
    assert (method, target) == ("CONNECT", "registry.test:5000")
    assert "Authorization" not in headers and "Bearer t" not in str(headers)
    assert headers["Proxy-Authorization"].startswith("Basic ")


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
def test_a_dead_proxy_cannot_reach_the_registry(
    plain_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.infra.registry import free_port

    monkeypatch.setenv(
        "HTTP_PROXY", f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"
    )
    with pytest.raises(SourceError) as err, _source(plain_registry, "team/nothing").open():
        pass
    text = str(err.value)
    assert "cannot reach the registry after 4 tries" in text and "via proxy 127.0.0.1:" in text
    assert "HTTP_PROXY" in text and PROXY_PASSWORD not in text and "\n" not in text


@pytest.mark.registry
@pytest.mark.usefixtures("clean_registry_env")
def test_cli_reports_an_unsupported_proxy_in_one_line(
    plain_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:1080")
    res = CliRunner().invoke(main, ["scan", f"{plain_registry.host}/team/x:1", "--insecure"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP_PROXY" in lines[0] and "socks" in lines[0]
    assert PROXY_PASSWORD not in res.output
    assert "Traceback" not in res.output
