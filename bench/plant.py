"""Planted fake secrets and decoys for the benchmark image, with their ground truth.

Every value is generated from a seeded RNG: obviously fake (``fake``/``bench`` markers in the
surrounding names, reserved example domains), but format-valid so that real scanners fire on
them (GitHub checksums hold, JWTs decode, private keys parse). Nothing here is a real credential.

`plant(seed)` returns a `Plan`: the planted layers (files, whiteouts, opaque dirs), the extra
image-config items (Env, history lines with an ARG leak) and the ground truth, one `Truth` per
planted secret or decoy. The ground-truth lines are computed from the bytes actually written.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import marshal
import random
import string
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib.util import MAGIC_NUMBER

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
UPPER32 = string.ascii_uppercase + "234567"
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"

PRESENT, DELETED, OVERWRITTEN = "present", "deleted", "overwritten"


@dataclass(frozen=True)
class Entry:
    """One entry of a planted layer: a file, a whiteout of a path, or an opaque directory."""

    path: str  # absolute path inside the image
    kind: str = "file"  # file | whiteout | opaque
    data: bytes = b""
    mode: int = 0o644


@dataclass(frozen=True)
class Truth:
    """One planted secret (or decoy) and where it is."""

    id: str
    kind: str  # what it is (aws-access-key-pair, github-pat, ...)
    family: str  # rule family (aws, github, slack, private-key, generic-password, ...)
    path: str  # path in the image; archive members as outer!inner; <config> for config
    layer: int | None  # layer index that wrote it (None for config items)
    line: int | None  # 1-based line of the value in the file (None when binary / config)
    line_end: int | None  # last line of a multi-line value (PEM)
    state: str  # present | deleted | overwritten
    location: str  # file | archive-member | pyc | env | history
    values: tuple[str, ...]  # accepted reported values (first = the secret proper)
    decoy: bool = False
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The ground-truth record as written next to the image."""
        return {
            "id": self.id,
            "kind": self.kind,
            "family": self.family,
            "path": self.path,
            "layer": self.layer,
            "line": self.line,
            "line_end": self.line_end,
            "state": self.state,
            "location": self.location,
            "decoy": self.decoy,
            "note": self.note,
            "values": list(self.values),
            "sha256": [hashlib.sha256(v.encode()).hexdigest() for v in self.values],
            "sha1": [hashlib.sha1(v.encode()).hexdigest() for v in self.values],
        }


@dataclass
class PlantLayer:
    """A planted layer: its Dockerfile-ish instruction and its entries."""

    created_by: str
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Plan:
    """Everything plant() produces."""

    layers: list[PlantLayer]
    env: list[str]
    history_before: list[str]  # empty-layer history lines placed before the planted layers
    truth: list[Truth]


# --------------------------------------------------------------------------- generators


class Gen:
    """Seeded generators of format-valid fake secrets."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def s(self, alphabet: str, n: int) -> str:
        """n random characters of alphabet."""
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def aws_pair(self) -> tuple[str, str]:
        """An AWS access key id and secret access key."""
        return "AKIA" + self.s(UPPER32, 16), self.s(B64, 40)

    def aws_session_token(self) -> str:
        """An AWS STS session token lookalike."""
        return "FwoGZXIvYXdzE" + self.s(B64, 300)

    def ghp(self, prefix: str = "ghp_") -> str:
        """A classic GitHub token whose CRC32 checksum holds."""
        body = self.s(ALNUM, 30)
        crc = zlib.crc32(body.encode()) & 0xFFFFFFFF
        enc = ""
        while crc:
            crc, rem = divmod(crc, 62)
            enc = B62[rem] + enc
        return prefix + body + enc.rjust(6, "0")

    def github_pat(self) -> str:
        """A fine-grained GitHub PAT."""
        return "github_pat_11" + self.s(UPPER32, 20) + "_" + self.s(ALNUM, 59)

    def slack_bot(self) -> str:
        """A Slack bot token."""
        return f"xoxb-{self.s(string.digits, 12)}-{self.s(string.digits, 13)}-{self.s(ALNUM, 24)}"

    def slack_webhook(self) -> str:
        """A Slack incoming webhook URL."""
        return (
            "https://hooks.slack.com/services/T"
            + self.s(string.ascii_uppercase + string.digits, 8)
            + "/B"
            + self.s(string.ascii_uppercase + string.digits, 10)
            + "/"
            + self.s(ALNUM, 24)
        )

    def jwt(self, claims: dict[str, object]) -> str:
        """An HS256 JWT that decodes and verifies with a random key."""

        def b64u(b: bytes) -> str:
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        body = b64u(json.dumps(claims, separators=(",", ":")).encode())
        key = self.s(ALNUM, 32).encode()
        sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64u(sig)}"

    def _prime(self, bits: int) -> int:
        while True:
            n = self.r.getrandbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
            if all(n % p for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)) and _is_prime(
                n, self.r
            ):
                return n

    def rsa_key(self, bits: int = 2048) -> object:
        """A real (parseable) RSA private key from seeded primes, as a cryptography key."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        e = 65537
        while True:
            p, q = self._prime(bits // 2), self._prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % e:
                break
        d = pow(e, -1, phi)
        pub = rsa.RSAPublicNumbers(e, p * q)
        priv = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q), pub)
        return priv.private_key()


def _is_prime(n: int, r: random.Random, rounds: int = 24) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(r.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def pem(key: object, fmt: str) -> str:
    """Serialise a cryptography RSA key as PKCS#1, PKCS#8 or OpenSSH PEM text."""
    from cryptography.hazmat.primitives import serialization as ser

    formats = {
        "pkcs1": ser.PrivateFormat.TraditionalOpenSSL,
        "pkcs8": ser.PrivateFormat.PKCS8,
        "openssh": ser.PrivateFormat.OpenSSH,
    }
    data: bytes = key.private_bytes(  # type: ignore[attr-defined]
        ser.Encoding.PEM, formats[fmt], ser.NoEncryption()
    )
    if fmt == "openssh":
        data = _fixed_checkint(data)
    return data.decode()


def _fixed_checkint(pem_bytes: bytes) -> bytes:
    """Replace the random check integers of an openssh-key-v1 blob by a constant (determinism)."""
    lines = pem_bytes.decode().strip().splitlines()
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    at = len(b"openssh-key-v1\0")
    for _ in range(3):  # ciphername, kdfname, kdfoptions
        at += 4 + int.from_bytes(blob[at : at + 4], "big")
    at += 4  # number of keys
    at += 4 + int.from_bytes(blob[at : at + 4], "big")  # public key
    at += 4  # length of the private section
    blob[at : at + 8] = b"\x5e\xed\x13\x37" * 2
    body = base64.b64encode(bytes(blob)).decode()
    wrapped = [body[i : i + 70] for i in range(0, len(body), 70)]
    return ("\n".join([lines[0], *wrapped, lines[-1]]) + "\n").encode()


def ssh_public(key: object, comment: str) -> str:
    """The OpenSSH public key line of a key (a decoy: public keys are not secrets)."""
    from cryptography.hazmat.primitives import serialization as ser

    pub = key.public_key().public_bytes(  # type: ignore[attr-defined]
        ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH
    )
    return str(pub.decode()) + " " + comment


def certificate(key: object) -> str:
    """A deterministic self-signed certificate for key (a decoy)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example.test")])
    when = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1000)
        .not_valid_before(when)
        .not_valid_after(when + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --------------------------------------------------------------------------- the planter


class _Planter:
    def __init__(self, seed: int, base: int) -> None:
        self.g = Gen(seed)
        self._base = base
        self.truth: list[Truth] = []
        self.layers: list[PlantLayer] = []

    def layer(self, created_by: str) -> PlantLayer:
        pl = PlantLayer(created_by)
        self.layers.append(pl)
        return pl

    @property
    def base(self) -> int:
        """Index of the first planted layer in the image."""
        return self._base

    def file(
        self,
        pl: PlantLayer,
        path: str,
        text: str,
        secrets: list[tuple[str, str, str, tuple[str, ...]]],
        *,
        state: str = PRESENT,
        decoy: bool = False,
        mode: int = 0o644,
        note: str = "",
    ) -> None:
        """Write a text file; secrets = [(kind, family, anchor value, accepted values)]."""
        data = text.encode()
        pl.entries.append(Entry(path, data=data, mode=mode))
        layer = self._base + self.layers.index(pl)
        for kind, family, anchor, values in secrets:
            self._record(
                kind, family, path, layer, data, anchor, values, state, "file", decoy, note
            )

    def _record(
        self,
        kind: str,
        family: str,
        path: str,
        layer: int | None,
        data: bytes | None,
        anchor: str,
        values: tuple[str, ...],
        state: str,
        location: str,
        decoy: bool,
        note: str,
    ) -> None:
        line = line_end = None
        if data is not None:
            at = data.find(anchor.encode())
            if at < 0:
                raise AssertionError(f"planted value for {kind} not found in {path}")
            line = data.count(b"\n", 0, at) + 1
            line_end = line + anchor.count("\n")
        n = 1 + sum(1 for t in self.truth if t.decoy == decoy)
        self.truth.append(
            Truth(
                id=f"d{n:02d}" if decoy else f"s{n:02d}",
                kind=kind,
                family=family,
                path=path,
                layer=layer,
                line=line,
                line_end=line_end,
                state=state,
                location=location,
                values=values or (anchor,),
                decoy=decoy,
                note=note,
            )
        )

    def member(
        self,
        kind: str,
        family: str,
        outer: str,
        inner: str,
        layer: int,
        inner_text: bytes,
        anchor: str,
        values: tuple[str, ...],
        state: str = PRESENT,
    ) -> None:
        self._record(
            kind,
            family,
            f"{outer}!{inner}",
            layer,
            inner_text,
            anchor,
            values,
            state,
            "archive-member",
            False,
            "",
        )

    def mark(self, path: str, state: str, note: str) -> None:
        """Change the state of all truth records at path (after a later whiteout/overwrite)."""
        for i, t in enumerate(self.truth):
            inside = t.path.startswith((path + "!", path + "/"))
            if (t.path == path or inside) and t.state == PRESENT:
                self.truth[i] = Truth(**{**t.__dict__, "state": state, "note": note})


def S(kind: str, family: str, value: str, *also: str) -> tuple[str, str, str, tuple[str, ...]]:
    """A secret spec: kind, rule family, the value as written, other accepted values."""
    return (kind, family, value, (value, *also))


def plant(seed: int = 1337, first_layer: int = 2) -> Plan:
    """Generate the planted layers, config extras and ground truth (deterministic per seed)."""
    p = _Planter(seed, first_layer)
    g = p.g

    # ---------------------------------------------------------------- layer A: app + config
    a = p.layer("COPY . /app # buildkit")
    aws1, aws2, aws3, aws4, aws5 = (g.aws_pair() for _ in range(5))
    stripe1 = "sk_live_" + g.s(ALNUM, 24)
    django_key = g.s(string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)", 50)
    pg_pw = g.s(ALNUM, 20)
    pg_url = f"postgresql://app_rw:{pg_pw}@db.internal.example:5432/orders"
    p.file(
        a,
        "/app/config/settings.py",
        f'''"""Django settings for the orders service (bench fixture, fake values)."""
import os

DEBUG = False
ALLOWED_HOSTS = ["orders.example.com"]
SECRET_KEY = "{django_key}"

DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql"}}}}
DATABASE_URL = "{pg_url}"

AWS_ACCESS_KEY_ID = "{aws1[0]}"
AWS_SECRET_ACCESS_KEY = "{aws1[1]}"
AWS_STORAGE_BUCKET_NAME = "orders-media-bench"

STRIPE_SECRET_KEY = "{stripe1}"
TIME_ZONE = "UTC"
''',
        [
            S("django-secret-key", "generic-assignment", django_key),
            S("postgres-url", "db-url", pg_url, pg_pw),
            S("aws-access-key-pair", "aws", aws1[1], aws1[0]),
            S("stripe-secret-key", "stripe", stripe1),
        ],
    )
    openai = "sk-proj-" + g.s(URLSAFE, 74) + "T3BlbkFJ" + g.s(URLSAFE, 74)
    anthropic = "sk-ant-api03-" + g.s(URLSAFE, 93) + "AA"
    xoxb = g.slack_bot()
    sendgrid = "SG." + g.s(URLSAFE, 22) + "." + g.s(URLSAFE, 43)
    redis_pw = g.s(ALNUM, 24)
    redis_url = f"redis://:{redis_pw}@cache.internal.example:6379/0"
    mongo_pw = g.s(ALNUM, 18)
    mongo_url = f"mongodb+srv://orders:{mongo_pw}@cluster0.bench.mongodb.net/orders"
    p.file(
        a,
        "/app/.env",
        f"""# runtime configuration
APP_ENV=production
OPENAI_API_KEY={openai}
ANTHROPIC_API_KEY={anthropic}
SLACK_BOT_TOKEN={xoxb}
SENDGRID_API_KEY={sendgrid}
REDIS_URL={redis_url}
MONGO_URL={mongo_url}
LOG_LEVEL=info
""",
        [
            S("openai-api-key", "openai", openai),
            S("anthropic-api-key", "anthropic", anthropic),
            S("slack-bot-token", "slack", xoxb),
            S("sendgrid-api-key", "sendgrid", sendgrid),
            S("redis-url", "db-url", redis_url, redis_pw),
            S("mongodb-srv-url", "db-url", mongo_url, mongo_pw),
        ],
    )
    sts = g.aws_session_token()
    p.file(
        a,
        "/root/.aws/credentials",
        f"""[default]
aws_access_key_id = {aws2[0]}
aws_secret_access_key = {aws2[1]}

[ci-assume]
aws_access_key_id = ASIA{g.s(UPPER32, 16)}
aws_secret_access_key = {aws5[1]}
aws_session_token = {sts}
""",
        [
            S("aws-access-key-pair", "aws", aws2[1], aws2[0]),
            S("aws-session-credentials", "aws", aws5[1], sts),
        ],
        mode=0o600,
    )
    npm = "npm_" + g.s(ALNUM, 36)
    p.file(
        a,
        "/root/.npmrc",
        f"registry=https://npm.registry.example/\n//npm.registry.example/:_authToken={npm}\n",
        [S("npm-token", "npm", npm)],
        mode=0o600,
    )
    pypi = "pypi-AgEIcHlwaS5vcmc" + g.s(URLSAFE, 120)
    p.file(
        a,
        "/root/.pypirc",
        f"""[distutils]
index-servers = pypi

[pypi]
username = __token__
password = {pypi}
""",
        [S("pypi-token", "pypi", pypi)],
        mode=0o600,
    )
    ghp_cred = g.ghp()
    p.file(
        a,
        "/root/.git-credentials",
        f"https://deploy-bot:{ghp_cred}@github.com\n",
        [S("github-classic-pat", "github", ghp_cred)],
        mode=0o600,
    )
    kube_key = g.rsa_key()
    kube_key_pem = pem(kube_key, "pkcs1")
    kube_key_b64 = base64.b64encode(kube_key_pem.encode()).decode()
    k8s_token = g.jwt(
        {
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "ci",
            "kubernetes.io/serviceaccount/service-account.name": "deployer",
            "sub": "system:serviceaccount:ci:deployer",
        }
    )
    p.file(
        a,
        "/root/.kube/config",
        f"""apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://k8s.bench.example:6443
  name: bench
contexts:
- context: {{cluster: bench, user: deployer}}
  name: bench
current-context: bench
users:
- name: deployer
  user:
    token: {k8s_token}
- name: admin
  user:
    client-key-data: {kube_key_b64}
""",
        [
            S("kubeconfig-token", "kubernetes", k8s_token),
            S("kubeconfig-client-key", "private-key", kube_key_b64, kube_key_pem),
        ],
        mode=0o600,
    )
    dh_pw = "dckr_pat_" + g.s(URLSAFE, 27)
    dh_auth = base64.b64encode(f"benchbot:{dh_pw}".encode()).decode()
    p.file(
        a,
        "/root/.docker/config.json",
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": dh_auth}}}, indent=2) + "\n",
        [S("docker-config-auth", "docker", dh_auth, dh_pw)],
        mode=0o600,
    )
    ssh_key = g.rsa_key()
    ssh_pem = pem(ssh_key, "openssh")
    p.file(
        a,
        "/root/.ssh/id_rsa",
        ssh_pem,
        [S("openssh-private-key", "private-key", ssh_pem.strip())],
        mode=0o600,
    )
    p.file(
        a,
        "/root/.ssh/id_rsa.pub",
        ssh_public(ssh_key, "deploy@bench") + "\n",
        [S("ssh-public-key", "decoy", ssh_public(ssh_key, "deploy@bench"))],
        decoy=True,
        note="public key",
    )
    tls_key = g.rsa_key()
    tls_pem = pem(tls_key, "pkcs8")
    p.file(
        a, "/app/keys/server.key", tls_pem, [S("pkcs8-private-key", "private-key", tls_pem.strip())]
    )
    cert = certificate(tls_key)
    p.file(
        a,
        "/app/keys/server.crt",
        cert,
        [S("certificate", "decoy", cert.strip())],
        decoy=True,
        note="certificate",
    )
    legacy_key = g.rsa_key()
    legacy_pem = pem(legacy_key, "pkcs1")
    p.file(
        a,
        "/etc/ssl/private/legacy.pem",
        legacy_pem,
        [S("rsa-private-key", "private-key", legacy_pem.strip())],
        mode=0o600,
    )
    gcp_key = g.rsa_key()
    gcp_pem = pem(gcp_key, "pkcs8")
    gcp_kid = g.s(HEX, 40)
    gcp_json = json.dumps(
        {
            "type": "service_account",
            "project_id": "bench-orders-prod",
            "private_key_id": gcp_kid,
            "private_key": gcp_pem,
            "client_email": "orders@bench-orders-prod.iam.gserviceaccount.com",
            "client_id": g.s(string.digits, 21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        },
        indent=2,
    )
    p.file(
        a,
        "/app/credentials/gcp-sa.json",
        gcp_json + "\n",
        [
            S(
                "gcp-service-account",
                "gcp",
                json.dumps(gcp_pem)[1:-1].strip("\\n"),
                gcp_pem.strip(),
                gcp_kid,
                gcp_json,
            )
        ],
    )
    slack_hook = g.slack_webhook()
    discord_hook = f"https://discord.com/api/webhooks/{g.s(string.digits, 18)}/{g.s(URLSAFE, 68)}"
    p.file(
        a,
        "/app/src/notify.py",
        f'''import json
import urllib.request

SLACK_WEBHOOK = "{slack_hook}"
DISCORD_WEBHOOK = "{discord_hook}"


def notify(text: str) -> None:
    for url in (SLACK_WEBHOOK, DISCORD_WEBHOOK):
        req = urllib.request.Request(url, data=json.dumps({{"text": text}}).encode())
        urllib.request.urlopen(req, timeout=5)
''',
        [
            S("slack-webhook", "slack", slack_hook),
            S("discord-webhook", "discord", discord_hook),
        ],
    )
    pat = g.github_pat()
    p.file(
        a,
        "/app/src/jobs/github_sync.py",
        f'''from github import Github

# TODO move to vault
GH = Github("{pat}")


def sync() -> None:
    for repo in GH.get_user().get_repos():
        print(repo.full_name)
''',
        [S("github-fine-grained-pat", "github", pat)],
    )
    mysql_pw = g.s(ALNUM, 16)
    mysql_url = f"mysql://reporting:{mysql_pw}@mysql.internal.example:3306/reports"
    twilio_sid = "AC" + g.s(HEX, 32)
    twilio_key = "SK" + g.s(HEX, 32)
    mailgun = "key-" + g.s(HEX, 32)
    yaml_pw = g.s(ALNUM + "!#%", 22)
    p.file(
        a,
        "/app/config/app.yaml",
        f"""service:
  name: orders
  port: 8080
database:
  host: db.internal.example
  user: orders
  password: "{yaml_pw}"
reporting:
  url: {mysql_url}
twilio:
  account_sid: {twilio_sid}
  api_key: {twilio_key}
mailgun:
  api_key: {mailgun}
""",
        [
            S("yaml-password", "generic-password", yaml_pw),
            S("mysql-url", "db-url", mysql_url, mysql_pw),
            S("twilio-api-key", "twilio", twilio_key),
            S("mailgun-api-key", "mailgun", mailgun),
        ],
    )
    props_pw = g.s(ALNUM, 18)
    amqp_pw = g.s(ALNUM, 20)
    amqp_url = f"amqp://orders:{amqp_pw}@rabbitmq.internal.example:5672/prod"
    p.file(
        a,
        "/app/config/application.properties",
        f"""spring.application.name=orders
spring.datasource.url=jdbc:postgresql://db.internal.example:5432/orders
spring.datasource.username=orders
spring.datasource.password={props_pw}
spring.rabbitmq.addresses={amqp_url}
server.port=8080
""",
        [
            S("properties-password", "generic-password", props_pw),
            S("amqp-url", "db-url", amqp_url, amqp_pw),
        ],
    )
    azure_key = g.s(B64, 86) + "=="
    azure_cs = (
        "DefaultEndpointsProtocol=https;AccountName=benchorders;"
        f"AccountKey={azure_key};EndpointSuffix=core.windows.net"
    )
    p.file(
        a,
        "/app/config/web.xml",
        f"""<?xml version="1.0" encoding="UTF-8"?>
<web-app>
  <context-param>
    <param-name>storageConnection</param-name>
    <param-value>{azure_cs}</param-value>
  </context-param>
</web-app>
""",
        [S("azure-storage-connection-string", "azure", azure_key, azure_cs)],
    )
    jwt1 = g.jwt({"sub": "svc-orders", "role": "admin", "iat": 1735689600})
    hf = "hf_" + g.s(string.ascii_letters, 34)
    glpat = "glpat-" + g.s(URLSAFE, 20)
    p.file(
        a,
        "/app/config/tokens.json",
        json.dumps(
            {"internal_api_jwt": jwt1, "huggingface_token": hf, "gitlab_token": glpat}, indent=2
        )
        + "\n",
        [
            S("jwt", "jwt", jwt1),
            S("huggingface-token", "huggingface", hf),
            S("gitlab-pat", "gitlab", glpat),
        ],
    )
    do_tok = "dop_v1_" + g.s(HEX, 64)
    vault = "hvs." + g.s(URLSAFE, 90)
    artifactory = "AKCp" + g.s(ALNUM, 69)
    p.file(
        a,
        "/app/scripts/deploy.sh",
        f"""#!/bin/sh
set -eu
export DIGITALOCEAN_TOKEN={do_tok}
export VAULT_TOKEN={vault}
curl -fsS -H "X-JFrog-Art-Api: {artifactory}" https://artifacts.bench.example/api/repo
doctl kubernetes cluster kubeconfig save bench
""",
        [
            S("digitalocean-token", "digitalocean", do_tok),
            S("vault-token", "vault", vault),
            S("artifactory-api-key", "artifactory", artifactory),
        ],
        mode=0o755,
    )
    tfc = g.s(ALNUM, 14) + ".atlasv1." + g.s(ALNUM, 67)
    p.file(
        a,
        "/root/.terraformrc",
        f'credentials "app.terraform.io" {{\n  token = "{tfc}"\n}}\n',
        [S("terraform-cloud-token", "terraform", tfc)],
    )
    p.file(
        a,
        "/app/terraform/terraform.tfstate",
        json.dumps(
            {
                "version": 4,
                "resources": [
                    {
                        "type": "aws_iam_access_key",
                        "name": "ci",
                        "instances": [
                            {"attributes": {"id": aws3[0], "secret": aws3[1], "user": "ci"}}
                        ],
                    }
                ],
            },
            indent=2,
        )
        + "\n",
        [S("aws-access-key-pair", "aws", aws3[1], aws3[0])],
    )
    heroku = f"{g.s(HEX, 8)}-{g.s(HEX, 4)}-4{g.s(HEX, 3)}-a{g.s(HEX, 3)}-{g.s(HEX, 12)}"
    netrc_pw = g.s(ALNUM, 24)
    p.file(
        a,
        "/home/app/.netrc",
        f"machine api.heroku.com\n  login ops@bench.example\n  password {heroku}\n"
        f"machine ftp.bench.example login mirror password {netrc_pw}\n",
        [
            S("heroku-api-key", "heroku", heroku),
            S("netrc-password", "generic-password", netrc_pw),
        ],
        mode=0o600,
    )
    pgpass_pw = g.s(ALNUM, 20)
    p.file(
        a,
        "/home/app/.pgpass",
        f"db.internal.example:5432:orders:orders_admin:{pgpass_pw}\n",
        [S("pgpass-password", "generic-password", pgpass_pw)],
        mode=0o600,
    )
    # a dump in a directory that a later layer hides with an opaque whiteout
    dump_pw = g.s(ALNUM, 20)
    dump_url = f"postgres://backup:{dump_pw}@db-replica.internal.example/orders"
    p.file(
        a,
        "/app/tmp/restore.sh",
        f"#!/bin/sh\npg_restore --dbname='{dump_url}' /app/tmp/orders.dump\n",
        [S("postgres-url", "db-url", dump_url, dump_pw)],
        mode=0o755,
    )
    # archives: a zip and a tar.gz with secrets inside
    zip_text = (
        f"AWS_ACCESS_KEY_ID={aws4[0]}\nAWS_SECRET_ACCESS_KEY={aws4[1]}\nDD_API_KEY={g.s(HEX, 32)}\n"
    ).encode()
    dd_key = zip_text.decode().split("DD_API_KEY=")[1].strip()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zi = zipfile.ZipInfo("backup/README.txt", date_time=(2025, 1, 1, 0, 0, 0))
        zf.writestr(zi, "Config backup of the orders service.\n")
        zi = zipfile.ZipInfo("backup/prod.env", date_time=(2025, 1, 1, 0, 0, 0))
        zf.writestr(zi, zip_text, zipfile.ZIP_DEFLATED)
    a.entries.append(Entry("/app/bundle/config-backup.zip", data=zbuf.getvalue()))
    la = p.base
    p.member(
        "aws-access-key-pair",
        "aws",
        "/app/bundle/config-backup.zip",
        "backup/prod.env",
        la,
        zip_text,
        aws4[1],
        (aws4[1], aws4[0]),
    )
    p.member(
        "datadog-api-key",
        "datadog",
        "/app/bundle/config-backup.zip",
        "backup/prod.env",
        la,
        zip_text,
        dd_key,
        (dd_key,),
    )
    rk = "rk_live_" + g.s(ALNUM, 24)
    shopify = "shpat_" + g.s(HEX, 32)
    tar_text = f"stripe:\n  restricted_key: {rk}\nshopify:\n  admin_token: {shopify}\n".encode()
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("release/secrets.yaml")
        ti.size, ti.mtime, ti.mode = len(tar_text), 1735689600, 0o600
        tf.addfile(ti, io.BytesIO(tar_text))
    # gzip with a fixed header mtime ("w:gz" stamps the current time): same bytes every build
    tgz = gzip.compress(tbuf.getvalue(), mtime=0)
    a.entries.append(Entry("/app/bundle/release.tar.gz", data=tgz))
    p.member(
        "stripe-restricted-key",
        "stripe",
        "/app/bundle/release.tar.gz",
        "release/secrets.yaml",
        la,
        tar_text,
        rk,
        (rk,),
    )
    p.member(
        "shopify-access-token",
        "shopify",
        "/app/bundle/release.tar.gz",
        "release/secrets.yaml",
        la,
        tar_text,
        shopify,
        (shopify,),
    )
    # a compiled module whose source is not shipped
    gapi = "AIza" + g.s(URLSAFE, 35)
    src = f'API_KEY = "{gapi}"\n\ndef client():\n    return {{"key": API_KEY}}\n'
    code = compile(src, "vendor_client.py", "exec")
    pyc = MAGIC_NUMBER + b"\x00\x00\x00\x00" + (1735689600).to_bytes(4, "little")
    pyc += len(src).to_bytes(4, "little") + marshal.dumps(code)
    pyc_path = "/app/lib/__pycache__/vendor_client.cpython-311.pyc"
    a.entries.append(Entry(pyc_path, data=pyc))
    p._record(
        "gcp-api-key",
        "gcp",
        pyc_path,
        la,
        None,
        gapi,
        (gapi,),
        PRESENT,
        "pyc",
        False,
        "string constant in a compiled module, source not shipped",
    )
    # a secret appended to a package-owned file (modified dpkg conffile)
    gh_profile = g.ghp()
    profile = (
        "# /etc/profile: system-wide .profile file for the Bourne shell (sh(1))\n"
        'if [ "$(id -u)" -eq 0 ]; then\n'
        '  PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
        "else\n"
        '  PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"\n'
        "fi\nexport PATH\n"
        f"export GITHUB_TOKEN={gh_profile}\n"
    )
    p.file(
        a,
        "/etc/profile",
        profile,
        [S("github-classic-pat", "github", gh_profile)],
        note="package-owned file modified",
    )

    # ---------------------------------------------------------------- decoys (layer A)
    p.file(
        a,
        "/app/docs/aws-setup.md",
        """# AWS setup

Configure the CLI with your own keys; the values below are the AWS documentation examples:

```
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
```

A JWT looks like `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpva\
G4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`.
""",
        [
            S(
                "aws-docs-example",
                "decoy",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            S(
                "jwt-io-example",
                "decoy",
                "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpv"
                "aG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            ),
        ],
        decoy=True,
    )
    p.file(
        a,
        "/app/config/settings.example.py",
        """# Copy to settings.py and fill in.
STRIPE_SECRET_KEY = "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"
GITHUB_TOKEN = "<your-github-token>"
DB_PASSWORD = "changeme"
OPENAI_API_KEY = "${OPENAI_API_KEY}"
SLACK_BOT_TOKEN = "xoxb-your-token-here"
""",
        [
            S("placeholder-stripe", "decoy", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"),
            S("placeholder-angle", "decoy", "<your-github-token>"),
            S("placeholder-changeme", "decoy", "changeme"),
            S("placeholder-envref", "decoy", "${OPENAI_API_KEY}"),
            S("placeholder-slack", "decoy", "xoxb-your-token-here"),
        ],
        decoy=True,
    )
    p.file(
        a,
        "/app/docker-compose.yml",
        """services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
  app:
    environment:
      DATABASE_URL: postgres://user:password@localhost:5432/app
      API_TOKEN: dummy
""",
        [
            S("placeholder-envref", "decoy", "${DB_PASSWORD}"),
            S("placeholder-url", "decoy", "postgres://user:password@localhost:5432/app"),
            S("placeholder-dummy", "decoy", "dummy"),
        ],
        decoy=True,
    )
    integ = [
        "sha512-" + base64.b64encode(g.r.randbytes(64)).decode(),
        "sha512-" + base64.b64encode(g.r.randbytes(64)).decode(),
    ]
    lock = {
        "name": "orders-web",
        "lockfileVersion": 3,
        "packages": {
            "node_modules/left-pad": {
                "version": "1.3.0",
                "resolved": "https://npm.registry.example/left-pad/-/left-pad-1.3.0.tgz",
                "integrity": integ[0],
            },
            "node_modules/is-odd": {
                "version": "3.0.1",
                "resolved": "https://npm.registry.example/is-odd/-/is-odd-3.0.1.tgz",
                "integrity": integ[1],
            },
        },
    }
    p.file(
        a,
        "/app/web/package-lock.json",
        json.dumps(lock, indent=2) + "\n",
        [S("lockfile-integrity", "decoy", v) for v in integ],
        decoy=True,
    )
    sha_a, sha_b, git_sha = g.s(HEX, 64), g.s(HEX, 64), g.s(HEX, 40)
    uuids = [
        f"{g.s(HEX, 8)}-{g.s(HEX, 4)}-4{g.s(HEX, 3)}-8{g.s(HEX, 3)}-{g.s(HEX, 12)}"
        for _ in range(2)
    ]
    p.file(
        a,
        "/app/RELEASE",
        f"""commit: {git_sha}
artifact_sha256: {sha_a}
sbom_sha256: {sha_b}
build_id: {uuids[0]}
tenant_id: {uuids[1]}
""",
        [
            S("git-sha", "decoy", git_sha),
            S("sha256-hash", "decoy", sha_a),
            S("sha256-hash", "decoy", sha_b),
            S("uuid", "decoy", uuids[0]),
            S("uuid", "decoy", uuids[1]),
        ],
        decoy=True,
    )
    img = base64.b64encode(b"\x89PNG\r\n\x1a\n" + g.r.randbytes(300)).decode()
    p.file(
        a,
        "/app/web/static/logo.html",
        f'<img alt="logo" src="data:image/png;base64,{img}">\n',
        [S("data-uri-image", "decoy", img)],
        decoy=True,
    )
    p.file(
        a,
        "/app/tests/test_settings.py",
        """API_KEY = "EXAMPLEKEYEXAMPLEKEYEXAMPLE"
PASSWORD = "xxxxxxxxxxxxxxxx"
TOKEN = "test-token-placeholder"
""",
        [
            S("placeholder-example", "decoy", "EXAMPLEKEYEXAMPLEKEYEXAMPLE"),
            S("placeholder-x", "decoy", "xxxxxxxxxxxxxxxx"),
            S("placeholder-test", "decoy", "test-token-placeholder"),
        ],
        decoy=True,
    )

    # ---------------------------------------------------------------- layer B: cleanup + rotation
    b = p.layer(
        "RUN rm -rf /etc/ssl/private/legacy.pem /root/.git-credentials /root/.pypirc "
        "/app/scripts/deploy.sh /app/tmp/* && ./rotate-keys.sh # buildkit"
    )
    for path in (
        "/etc/ssl/private/legacy.pem",
        "/root/.git-credentials",
        "/root/.pypirc",
        "/app/scripts/deploy.sh",
    ):
        b.entries.append(Entry(path, kind="whiteout"))
        p.mark(path, DELETED, "removed by a whiteout in a later layer")
    b.entries.append(Entry("/app/tmp", kind="opaque"))
    p.mark("/app/tmp", DELETED, "hidden by an opaque whiteout in a later layer")
    p.mark("/app/config/settings.py", OVERWRITTEN, "replaced in a later layer (key rotated)")
    p.mark("/app/config/tokens.json", OVERWRITTEN, "replaced in a later layer")
    p.mark("/app/bundle/config-backup.zip", DELETED, "removed by a whiteout in a later layer")
    b.entries.append(Entry("/app/bundle/config-backup.zip", kind="whiteout"))
    aws_new = g.aws_pair()
    stripe_new = "sk_live_" + g.s(ALNUM, 24)
    p.file(
        b,
        "/app/config/settings.py",
        f'''"""Django settings for the orders service (bench fixture, fake values)."""
import os

DEBUG = False
ALLOWED_HOSTS = ["orders.example.com"]
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]

DATABASE_URL = os.environ["DATABASE_URL"]

AWS_ACCESS_KEY_ID = "{aws_new[0]}"
AWS_SECRET_ACCESS_KEY = "{aws_new[1]}"
AWS_STORAGE_BUCKET_NAME = "orders-media-bench"

STRIPE_SECRET_KEY = "{stripe_new}"
TIME_ZONE = "UTC"
''',
        [
            S("aws-access-key-pair", "aws", aws_new[1], aws_new[0]),
            S("stripe-secret-key", "stripe", stripe_new),
        ],
        note="rotated replacement",
    )
    jwt2 = g.jwt({"sub": "svc-orders", "role": "reader", "iat": 1738368000})
    p.file(
        b,
        "/app/config/tokens.json",
        json.dumps({"internal_api_jwt": jwt2}, indent=2) + "\n",
        [S("jwt", "jwt", jwt2)],
    )

    # ---------------------------------------------------------------- layer C: late additions
    c = p.layer("COPY sentry.ini newrelic.ini /app/config/ # buildkit")
    sentry = (
        f"https://{g.s(HEX, 32)}@o{g.s(string.digits, 6)}.ingest.sentry.io/{g.s(string.digits, 7)}"
    )
    p.file(
        c,
        "/app/config/sentry.ini",
        f"[sentry]\ndsn = {sentry}\nenvironment = production\n",
        [S("sentry-dsn", "sentry", sentry)],
    )
    linear = "lin_api_" + g.s(ALNUM, 40)
    postman = f"PMAK-{g.s(HEX, 24)}-{g.s(HEX, 34)}"
    telegram = f"{g.s(string.digits, 10)}:AA{g.s(URLSAFE, 33)}"
    p.file(
        c,
        "/app/config/integrations.toml",
        f"""[linear]
api_key = "{linear}"

[postman]
api_key = "{postman}"

[telegram]
bot_token = "{telegram}"
""",
        [
            S("linear-api-key", "linear", linear),
            S("postman-api-key", "postman", postman),
            S("telegram-bot-token", "telegram", telegram),
        ],
    )

    # ---------------------------------------------------------------- image config
    newrelic = "NRAK-" + g.s(UPPER32, 27)
    env = [f"NEW_RELIC_API_KEY={newrelic}"]
    p._record(
        "newrelic-api-key",
        "newrelic",
        "<config>",
        None,
        None,
        newrelic,
        (newrelic,),
        PRESENT,
        "env",
        False,
        "image config Env",
    )
    arg_tok = g.ghp()
    bearer = g.ghp("gho_")
    hist = [
        "ARG GH_DEPLOY_TOKEN",
        f"RUN |1 GH_DEPLOY_TOKEN={arg_tok} /bin/sh -c git clone "
        "https://x-access-token:$GH_DEPLOY_TOKEN@github.com/bench/orders /src # buildkit",
        f'RUN /bin/sh -c curl -fsSL -H "Authorization: Bearer {bearer}" '
        "https://api.github.com/repos/bench/orders/tarball -o /tmp/src.tgz # buildkit",
    ]
    p._record(
        "github-classic-pat",
        "github",
        "<config>",
        None,
        None,
        arg_tok,
        (arg_tok,),
        PRESENT,
        "history",
        False,
        "ARG value leaked into RUN history",
    )
    p._record(
        "github-oauth-token",
        "github",
        "<config>",
        None,
        None,
        bearer,
        (bearer,),
        PRESENT,
        "history",
        False,
        "bearer token in a curl header in history",
    )
    return Plan(layers=p.layers, env=env, history_before=hist, truth=p.truth)


if __name__ == "__main__":
    plan = plant()
    secrets = [t for t in plan.truth if not t.decoy]
    print(f"{len(secrets)} secrets, {len(plan.truth) - len(secrets)} decoys")
    for t in plan.truth:
        print(f"{t.id} {t.kind:30} {t.state:11} L{t.layer} {t.path}:{t.line}")
