# ruff: noqa: E501
"""Generated test corpora for the pattern engine: planted fake secrets and realistic decoys.

Every secret here is generated from a seeded RNG (or is a published documentation value
in the decoys); none is a real credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

A62 = string.ascii_letters + string.digits
B64 = A62 + "+/"
B64U = A62 + "-_"
B32 = string.ascii_uppercase + "234567"
HEX = "0123456789abcdef"
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class Planted:
    """One fake secret planted in a corpus file."""

    kind: str
    value: str


@dataclass(frozen=True)
class CorpusFile:
    """A generated file and the secrets planted in it."""

    path: str
    data: bytes
    planted: tuple[Planted, ...] = ()


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def s(self, chars: str, n: int) -> str:
        while True:
            v = "".join(self.rng.choice(chars) for _ in range(n))
            low = v.lower()
            if any(
                w in low
                for w in ("xxxx", "fake", "sample", "example", "dummy", "test", "secret", "token")
            ):
                continue
            if (
                n >= 8
                and chars in (A62, B64, B64U)
                and not (
                    any(c.isupper() for c in v)
                    and any(c.islower() for c in v)
                    and any(c.isdigit() for c in v)
                )
            ):
                continue
            return v

    def password(self) -> str:
        return self.s(A62, 12) + self.rng.choice("!@%^*-_+.") + self.s(string.digits, 2)

    def url_password(self) -> str:
        return self.s(A62, 12) + self.rng.choice("-_.~!*") + self.s(string.digits, 2)

    def checksummed(self, prefix: str) -> str:
        body = self.s(A62, 30)
        n = binascii.crc32(body.encode())
        digits = ""
        while n:
            n, rem = divmod(n, 62)
            digits = _B62[rem] + digits
        return f"{prefix}_{body}{digits.rjust(6, '0')}"

    def jwt(self) -> str:
        def enc(obj: object) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        sig = base64.urlsafe_b64encode(self.rng.randbytes(32)).decode().rstrip("=")
        payload = {"sub": self.s(A62, 10), "iss": "https://auth.corp.local", "exp": 1999999999}
        return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(payload)}.{sig}"


# kind -> (variable name, value factory, how the value appears: "token" | "url:<scheme>")
def _kinds(g: _Gen) -> list[tuple[str, str, Callable[[], str]]]:
    return [
        ("aws-access-key-id", "AWS_ACCESS_KEY_ID", lambda: "AKIA" + g.s(B32, 16)),
        ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", lambda: g.s(B64, 40)),
        ("github-pat", "GITHUB_TOKEN", lambda: g.checksummed("ghp")),
        ("github-fine-grained", "GH_PAT", lambda: f"github_pat_{g.s(A62, 22)}_{g.s(A62, 59)}"),
        ("gitlab-pat", "GITLAB_TOKEN", lambda: "glpat-" + g.s(A62, 20)),
        (
            "slack-bot",
            "SLACK_BOT_TOKEN",
            lambda: f"xoxb-{g.s(string.digits, 12)}-{g.s(string.digits, 13)}-{g.s(A62, 24)}",
        ),
        (
            "slack-webhook",
            "SLACK_WEBHOOK_URL",
            lambda: (
                f"https://hooks.slack.com/services/T{g.s(B32, 10)}/B{g.s(B32, 10)}/{g.s(A62, 24)}"
            ),
        ),
        ("stripe", "STRIPE_SECRET_KEY", lambda: "sk_live_" + g.s(A62, 32)),
        ("sendgrid", "SENDGRID_API_KEY", lambda: f"SG.{g.s(B64U, 22)}.{g.s(B64U, 43)}"),
        ("openai", "OPENAI_API_KEY", lambda: f"sk-proj-{g.s(B64U, 40)}T3BlbkFJ{g.s(B64U, 40)}"),
        ("anthropic", "ANTHROPIC_API_KEY", lambda: f"sk-ant-api03-{g.s(B64U, 93)}AA"),
        ("huggingface", "HF_TOKEN", lambda: "hf_" + g.s(string.ascii_letters, 34)),
        ("npm", "NPM_TOKEN", lambda: g.checksummed("npm")),
        ("dockerhub", "DOCKERHUB_TOKEN", lambda: "dckr_pat_" + g.s(B64U, 27)),
        ("gcp-api-key", "GOOGLE_API_KEY", lambda: "AIza" + g.s(B64U, 35)),
        ("digitalocean", "DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + g.s(HEX, 64)),
        ("twilio", "TWILIO_AUTH_TOKEN", lambda: g.s(HEX, 32)),
        ("datadog", "DD_API_KEY", lambda: g.s(HEX, 32)),
        ("vault", "VAULT_TOKEN", lambda: "hvs." + g.s(B64U, 91)),
        ("jwt", "ID_TOKEN", g.jwt),
        ("shopify", "SHOPIFY_ACCESS_TOKEN", lambda: "shpat_" + g.s(HEX, 32)),
        ("postman", "POSTMAN_API_KEY", lambda: f"PMAK-{g.s(HEX, 24)}-{g.s(HEX, 34)}"),
        ("generic-password", "DB_PASSWORD", g.password),
        ("generic-api-key", "PAYMENTS_API_KEY", lambda: g.s(A62, 32)),
        ("generic-secret", "SESSION_SECRET", lambda: g.s(B64U, 40)),
        ("postgres-url", "DATABASE_URL", g.url_password),
        ("mysql-url", "MYSQL_URL", g.url_password),
        ("mongodb-url", "MONGO_URI", g.url_password),
        ("redis-url", "REDIS_URL", g.url_password),
        ("amqp-url", "BROKER_URL", g.url_password),
        ("basic-auth-url", "PIP_INDEX_URL", g.url_password),
    ]


_URL = {
    "postgres-url": "postgresql://app:{}@db.internal:5432/app",
    "mysql-url": "mysql://shop:{}@mysql.internal:3306/shop",
    "mongodb-url": "mongodb+srv://svc:{}@cluster0.ab12c.mongodb.net/prod?retryWrites=true",
    "redis-url": "redis://:{}@cache.internal:6379/0",
    "amqp-url": "amqp://worker:{}@mq.internal:5672/jobs",
    "basic-auth-url": "https://build:{}@pypi.corp.local/simple",
}


def _render_value(kind: str, value: str) -> str:
    return _URL[kind].format(value) if kind in _URL else value


_FORMATS: dict[str, tuple[str, Callable[[str, str], str], str, str]] = {
    # name: (path, line renderer(var, value), header, footer)
    "env": (
        "/app/.env",
        lambda k, v: f"{k}={v}",
        "# service settings\nAPP_ENV=production\nLOG_LEVEL=info\n",
        "PORT=8080\n",
    ),
    "yaml": (
        "/app/config/settings.yaml",
        lambda k, v: f"  {k.lower()}: {v}",
        "service:\n  name: billing\n  replicas: 3\n  image: registry.corp.local/billing:1.4.2\n",
        "  timeout: 30s\n",
    ),
    "json": (
        "/app/config/appsettings.json",
        lambda k, v: f'  "{k.lower()}": "{v}",',
        '{\n  "name": "billing",\n  "version": "1.4.2",\n',
        '  "debug": false\n}\n',
    ),
    "ini": (
        "/etc/billing/billing.ini",
        lambda k, v: f"{k.lower()} = {v}",
        "[server]\nhost = 0.0.0.0\nport = 8080\n\n[credentials]\n",
        "\n[logging]\nlevel = info\n",
    ),
    "properties": (
        "/opt/app/application.properties",
        lambda k, v: (
            f"app.{k.lower().replace('_', '.')}={v}"
            if not k.endswith("PASSWORD")
            else f"spring.datasource.{k.lower()}={v}"
        ),
        "server.port=8080\nspring.application.name=billing\n",
        "management.endpoints.web.exposure.include=health\n",
    ),
    "xml": (
        "/opt/app/conf/service.xml",
        lambda k, v: f"    <{_camel(k)}>{v}</{_camel(k)}>",
        '<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\n  <settings>\n',
        "  </settings>\n</configuration>\n",
    ),
    "python": (
        "/app/billing/settings.py",
        lambda k, v: f'{k} = "{v}"',
        'import os\n\nDEBUG = False\nALLOWED_HOSTS = ["billing.corp.local"]\n',
        'TIME_ZONE = "UTC"\n',
    ),
    "js": (
        "/app/src/config.js",
        lambda k, v: f"  {_camel(k)}: '{v}',",
        "'use strict';\n\nmodule.exports = {\n  port: 8080,\n",
        "  retries: 3,\n};\n",
    ),
    "shell": (
        "/usr/local/bin/entrypoint.sh",
        lambda k, v: f'export {k}="{v}"',
        "#!/bin/sh\nset -eu\ncd /app\n",
        'exec "$@"\n',
    ),
    "dockerfile": (
        "/app/Dockerfile",
        lambda k, v: f"ENV {k}={v}",
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\n",
        'CMD ["python", "-m", "billing"]\n',
    ),
}


def _camel(name: str) -> str:
    parts = name.lower().split("_")
    return parts[0] + "".join(p.title() for p in parts[1:])


def planted_corpus(seed: int = 20261129) -> list[CorpusFile]:
    """One realistic file per format, each with every kind of fake secret planted once."""
    g = _Gen(seed)
    kinds = _kinds(g)
    out: list[CorpusFile] = []
    for _fmt, (path, render, header, footer) in _FORMATS.items():
        lines = [header.rstrip("\n")]
        planted: list[Planted] = []
        for kind, var, make in kinds:
            value = make()
            lines.append(render(var, _render_value(kind, value)))
            planted.append(Planted(kind, value))
        lines.append(footer.rstrip("\n"))
        out.append(CorpusFile(path, ("\n".join(lines) + "\n").encode(), tuple(planted)))
    # a key file and a service-account JSON, where keys usually hide
    key_b64 = base64.b64encode(_pkcs8(g)).decode()
    pem = (
        "-----BEGIN PRIVATE KEY-----\n"
        + "\n".join(key_b64[i : i + 64] for i in range(0, len(key_b64), 64))
        + "\n-----END PRIVATE KEY-----"
    )
    out.append(
        CorpusFile("/root/.ssh/deploy_key", (pem + "\n").encode(), (Planted("private-key", pem),))
    )
    sa_key = pem.replace("\n", "\\n") + "\\n"
    sa = json.dumps(
        {
            "type": "service_account",
            "project_id": "billing-prod",
            "private_key_id": g.s(HEX, 40),
            "private_key": pem + "\n",
            "client_email": "ci@billing-prod.iam.gserviceaccount.com",
        },
        indent=2,
    )
    out.append(
        CorpusFile("/app/gcp-sa.json", sa.encode(), (Planted("gcp-service-account", sa_key),))
    )
    # the same kinds of secret in the idioms of other languages and tools
    out.append(_variety(g))
    return out


def _variety(g: _Gen) -> CorpusFile:
    pw, tok = g.password, lambda: g.s(A62, 32)
    items = [
        ("php-define", "define( 'DB_PASSWORD', '{}' );", pw()),
        ("dotnet-appsettings", '<add key="DbPassword" value="{}" />', pw()),
        ("spring-xml", '<property name="hibernate.connection.password" value="{}"/>', pw()),
        ("java-const", 'private static final String API_KEY = "{}";', tok()),
        ("go-struct", 'cfg := Config{{Host: "db", Password: "{}"}}', pw()),
        ("ruby-hash", "config.secret_token = '{}'", tok()),
        ("java-setter", 'dataSource.setPassword("{}");', pw()),
        ("toml", 'api_token = "{}"', tok()),
        ("yaml-single", "  client_secret: '{}'", tok()),
        ("maven-settings", "<password>{}</password>", pw()),
        (
            "pypirc",
            "[pypi]\nusername = __token__\npassword = {}",
            "pypi-AgEIcHlwaS5vcmc" + g.s(B64U, 120),
        ),
        ("docker-run", "docker run -e POSTGRES_PASSWORD={} postgres:16", pw()),
        ("history", "RUN |1 NPM_TOKEN={} /bin/sh -c npm ci", tok()),
        ("dockerfile-space", "ENV ADMIN_PASSWORD {}", pw()),
        ("netrc", "machine git.corp.local login ci password {}", pw()),
        ("helm-set", "helm upgrade app ./chart --set auth.password={}", pw()),
        ("curl-header", 'curl -H "Authorization: Bearer {}" https://api.corp.local', g.s(B64U, 48)),
        ("jdbc", "jdbc:postgresql://db:5432/app?user=app&password={}", g.url_password()),
        ("ado-net", "Server=sql01;Database=erp;User Id=svc;Password={};", pw()),
        ("kv-twilio", "twilio.auth_token = {}", g.s(HEX, 32)),
        (
            "kotlin-val",
            'val slackToken = "{}"',
            f"xoxb-{g.s(string.digits, 12)}-{g.s(string.digits, 13)}-{g.s(A62, 24)}",
        ),
        ("terraform", 'db_password = "{}"', pw()),
        ("python-kwarg", "redis.Redis(host='cache', password='{}')", pw()),
        ("js-object", "const auth = {{ apiKey: '{}' }};", tok()),
    ]
    lines, planted = [], []
    for kind, template, value in items:
        lines.append(template.format(value))
        planted.append(Planted(kind, value))
    return CorpusFile("/srv/app/mixed.conf", ("\n".join(lines) + "\n").encode(), tuple(planted))


def _pkcs8(g: _Gen) -> bytes:
    def der(tag: int, content: bytes) -> bytes:
        n = len(content)
        head = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
        return bytes([tag]) + head + content

    alg = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + der(0x05, b""))
    return der(0x30, der(0x02, b"\x00") + alg + der(0x04, g.rng.randbytes(600)))


DECOYS: dict[str, str] = {
    "/app/package-lock.json": """{
  "name": "web", "lockfileVersion": 3,
  "packages": {
    "node_modules/lodash": {
      "version": "4.17.21",
      "resolved": "https://npm.registry.example/lodash/-/lodash-4.17.21.tgz",
      "integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg=="
    },
    "node_modules/js-tokens": {"version": "4.0.0", "integrity": "sha512-RdJUflcE3cUzKiMqQgsCu06FPu9UdIJO0beYbPhHN4k6apgJtifcoCtT9bcxOpYBtpD2kCM6Sbzg4CausW/PKQ=="}
  }
}
""",
    "/go/src/app/go.sum": "github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n"
    "github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n",
    "/app/Cargo.lock": '[[package]]\nname = "serde"\nversion = "1.0.203"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n'
    'checksum = "7253ab4de971e72fb7be983802300c30b5a7f0c2e56fab8abfc6a214307c0094"\n',
    "/app/requirements.txt": "requests==2.32.3 \\\n    --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6\n",
    "/app/.git/packed-refs": "# pack-refs with: peeled fully-peeled sorted\n"
    "4b825dc642cb6eb9a060e54bf8d69288fbee4904 refs/heads/main\n",
    "/app/docs/aws.md": "Configure the CLI:\n\n    aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
    "    aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "/app/docs/jwt.md": "Example token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
    "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n",
    "/app/.env.example": "DB_PASSWORD=\nAPI_KEY=<your-api-key>\nGITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    "SLACK_BOT_TOKEN=xoxb-your-token\nSECRET_KEY=changeme\nSTRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx\n",
    "/app/config/settings.yaml": 'database:\n  password: ${DB_PASSWORD}\n  user: app\napi:\n  key: "{{ .Values.apiKey }}"\n'
    "  token: null\nauth:\n  password: ~\n  secretName: billing-db-credentials\n"
    "  valueFrom:\n    secretKeyRef:\n      name: db\n      key: password\n",
    "/app/billing/db.py": """import os

def connect():
    password = get_password()
    api_key = os.environ["API_KEY"]
    token = request.headers.get("Authorization")
    secret_key = settings.SECRET_KEY
    if password == "":
        raise ValueError("password: must not be empty")
    return psycopg.connect(password=password, user=os.getenv("DB_USER"))

TOKEN_TYPE = "bearer"
grant_type = "refresh_token"
tokenizer = "bert-base-uncased"
request_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"
digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
""",
    "/app/static/app.min.js": "!function(e){var t={token:e.token,password:n.password,apiKey:e.apiKey};"
    'e.csrfToken=document.querySelector("meta").content;t.secret=r(e)}(window);'
    'var s="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";\n',
    "/app/static/style.css": ".md-button{color:#fff}.md-primary-key-banner{margin:0}\n:lang(en-us) .title{font-size:1.2rem}\n",
    "/etc/ssl/certs/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUWYVb2pK9yJ4oFvCbHq0sQ1dYJ2kwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6b0q3xYj2mM8dD4xgL9iV1m0\n"
    "-----END PUBLIC KEY-----\n",
    "/root/.ssh/authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@build\n",
    "/app/templates/login.html": '<input type="password" name="password" placeholder="Password">\n'
    '<label for="token">API token</label>\n',
    "/app/db/schema.sql": "CREATE TABLE users (id uuid PRIMARY KEY, password_hash VARCHAR(255) NOT NULL, api_token_digest TEXT);\n",
    "/usr/share/doc/app/README": "Run `psql postgresql://user:password@localhost/app` then\n"
    "`curl -u admin:admin http://localhost:8080` and pass --password=<password> to the CLI.\n"
    "Set Authorization: Bearer $TOKEN and the header Basic Authentication.\n",
    "/app/config/application.properties": "spring.datasource.password=${DB_PASSWORD}\nspring.datasource.url=jdbc:postgresql://db/app\n"
    "app.jwt.secret=${JWT_SECRET:}\nserver.ssl.key-store-password=${KEYSTORE_PASSWORD}\n",
    "/app/locales/en.json": '{"password": "Password", "password_hint": "At least 12 characters", "token": "Token",'
    ' "secret": "Secret", "confirm_password": "Confirm password"}\n',
    "/app/test/test_auth.py": 'def test_login(client):\n    assert client.login(password="changeme")\n'
    '    hashed_password = "$2b$12$KIXQJ1u9z8Y0x6eG1Sxg9uQZrZ1Z8v5n4H8nJ6bq3X0d1l6Gm2Kc2"\n',
    "/app/k8s/deployment.yaml": "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db\n        key: password\n"
    "  - name: API_TOKEN_FILE\n    value: /run/secrets/api_token\n",
    "/app/terraform/variables.tf": 'variable "db_password" {\n  type      = string\n  sensitive = true\n}\n'
    'resource "aws_db_instance" "db" {\n  password = var.db_password\n}\n',
    "/app/ansible/group_vars/all.yml": 'db_password: "{{ vault_db_password }}"\napi_token: !vault |\n'
    "  $ANSIBLE_VAULT;1.1;AES256\n  6231336132303837\n",
    "/app/php/config.php": "<?php\n$config['db_password'] = getenv('DB_PASSWORD');\n$config['api_key'] = $_ENV['API_KEY'];\n",
    "/app/Gemfile.lock": "GEM\n  remote: https://rubygems.org/\n  specs:\n    rake (13.2.1)\n\nBUNDLED WITH\n   2.5.11\n",
    "/app/uuid.txt": "1b4e28ba-2fa1-11d2-883f-0016d3cca427\n6fa459ea-ee8a-3ca4-894e-db77e160355e\n",
    "/app/Dockerfile": 'FROM node:20\nARG NPM_TOKEN\nRUN echo "//npm.registry.example/:_authToken=${NPM_TOKEN}" > .npmrc\n'
    "ENV NODE_ENV=production\n",
    "/etc/ssh/sshd_config": "PermitRootLogin no\nPasswordAuthentication no\nPermitEmptyPasswords no\nChallengeResponseAuthentication no\n",
    "/etc/pam.d/common-password": "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\npassword\trequisite\tpam_deny.so\n",
    "/etc/ssl/openssl.cnf": "[ req ]\n# input_password = secret\n# output_password = secret\ndefault_bits = 2048\n",
    "/app/.github/workflows/ci.yml": "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n  NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\nsteps:\n  - uses: actions/checkout@v4\n    with:\n      token: ${{ github.token }}\n",
    "/app/docker-compose.yml": "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-postgres}\n      POSTGRES_USER: app\n",
    "/app/README.md": "npm config set //npm.registry.example/:_authToken=00000000-0000-0000-0000-000000000000\n"
    "Set `API_KEY=your_api_key_here` and `SECRET_KEY=<generate one>` in `.env`.\n",
    "/app/config/secrets.yml": 'production:\n  secret_key_base: <%= ENV["SECRET_KEY_BASE"] %>\n',
    "/app/Jenkinsfile": "environment {\n  GITHUB_TOKEN = credentials('github-token')\n  API_KEY = credentials('api-key')\n}\n",
    "/app/conf/keystore.properties": "keystore.password=changeit\nkey.alias=server\ntruststore.password=${TRUSTSTORE_PASSWORD}\n",
    "/app/web/i18n.js": 'export default {password:"Password",token:"Token",secret:"Secret",apiKey:"API key",newPassword:"New password"};\n',
    "/usr/share/doc/app/api.rst": ":param password: the password to use\n:param token: the API token\n\n.. code:: python\n\n    client = Client(api_key=API_KEY, password=os.environ['PW'])\n",
}


def decoy_corpus() -> list[CorpusFile]:
    """Realistic files that contain no secret at all (documentation values and placeholders)."""
    return [CorpusFile(path, text.encode()) for path, text in DECOYS.items()]
