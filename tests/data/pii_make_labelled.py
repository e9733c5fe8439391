"""Writes ``pii_labelled.jsonl``: a labelled set of secrets and personal data, and hard negatives.

Each line is ``{"id", "context", "text", "spans": [{"kind", "text"}]}``. Positives (texts
with spans) and hard negatives (texts with none) come from realistic templates per context:
config files, shell history, logs, JSON, YAML, code, prose. Values (keys, passwords, hosts,
people) are drawn from a seeded generator, so the file is the same on every run::

    python tests/data/pii_make_labelled.py            # rewrites tests/data/pii_labelled.jsonl
    python tests/data/pii_make_labelled.py --check    # exits 1 if the committed file differs

Public IP addresses are checked with :mod:`ipaddress` (``is_global``), not with the detector.
The secrets are random and belong to nobody.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import random
import string
import sys
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "pii_labelled.jsonl"
SEED = 20261130
#: Texts made per context.
PER_CONTEXT = 14

KEY, PASSWORD, EMAIL, IP, PHONE = "KEY", "PASSWORD", "EMAIL", "IP_ADDRESS", "PHONE"
Row = tuple[str, list[tuple[str, str]]]

FIRST = ["jane", "omar", "li", "priya", "marco", "sofia", "kwame", "yuki", "anna", "diego", "fatima", "lars", "chen", "noor"]
LAST = ["roe", "haddad", "wei", "nair", "rossi", "garcia", "mensah", "tanaka", "novak", "silva", "khan", "berg", "zhou", "ali"]
DOMAINS = [
    "acme.io", "fastmail.fm", "datalab.ac.uk", "corp-mail.de", "uni-heidelberg.de", "nagoya-dev.jp", "kitware.com",
    "proton.me", "gmail.com", "outlook.fr", "mail.ru", "startup.ai", "cs.stanford.edu", "hospital.org.br",
]  # fmt: skip
HOSTS = ["db.acme.io", "pg-prod.internal.kitware.com", "cache.startup.ai", "mq.corp-mail.de", "mongo0.datalab.ac.uk"]
WORDS = ["Summer", "dragon", "Blue", "falcon", "Maple", "orbit", "Quartz", "tiger", "Nimbus", "copper", "Raven", "delta"]
SYMBOLS = "!%*+-.?^_~"


class Gen:
    """Seeded value generators."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def pick(self, items: list[str] | tuple[str, ...]) -> str:
        return self.r.choice(items)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def alnum(self, n: int) -> str:
        while True:
            value = self.chars(string.ascii_letters + string.digits, n)
            if any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value):
                return value

    def hex(self, n: int) -> str:
        return self.chars("0123456789abcdef", n)

    def b64(self, n: int) -> str:
        while True:
            value = self.chars(string.ascii_letters + string.digits + "+/", n)
            if any(c.isdigit() for c in value) and value[0] not in "+/" and value[-1] not in "+/":
                return value

    def password(self, *, url_safe: bool = False) -> str:
        """A realistic password: a word with digits and a symbol, or a random string."""
        style = self.r.randrange(3)
        symbols = "!*-._~" if url_safe else SYMBOLS
        if style == 0:
            word = self.pick(WORDS)
            return f"{word}{self.r.randrange(10, 9999)}{self.pick(symbols)}"
        if style == 1:
            word = self.pick(WORDS).replace("o", "0").replace("e", "3").replace("a", "4")
            return f"{self.pick(symbols)}{word}{self.r.randrange(1, 99)}"
        return self.alnum(self.r.randrange(10, 20))

    def user(self) -> str:
        return self.pick(["admin", "app", "deploy", "root", "svc_etl", "postgres", "grafana", self.pick(FIRST)])

    def email(self) -> str:
        first, last = self.pick(FIRST), self.pick(LAST)
        local = self.pick([f"{first}.{last}", f"{first}{last[0]}", f"{first[0]}{last}", f"{first}+ci", f"{last}{self.r.randrange(70, 99)}"])
        return f"{local}@{self.pick(DOMAINS)}"

    def person(self) -> str:
        return f"{self.pick(FIRST).title()} {self.pick(LAST).title()}"

    def ipv4(self) -> str:
        while True:
            value = ".".join(str(self.r.randrange(1, 255)) for _ in range(4))
            address = ipaddress.ip_address(value)
            if address.is_global and not address.is_multicast and max(map(int, value.split("."))) > 9:
                return value

    def ipv6(self) -> str:
        prefix = self.pick(["2a03:2880", "2600:1f18", "2a00:1450", "2606:4700", "2001:67c", "2a01:4f8", "2404:6800"])
        groups = [format(self.r.randrange(1, 0xFFFF), "x") for _ in range(self.r.choice((2, 3, 6)))]
        value = f"{prefix}:{':'.join(groups)}" if len(groups) == 6 else f"{prefix}:{':'.join(groups)}::{self.r.randrange(1, 99)}"
        if not ipaddress.ip_address(value).is_global:
            raise ValueError(value)
        return value

    def phone(self) -> str:
        area, exchange, line = self.r.randrange(201, 989), self.r.randrange(201, 999), self.r.randrange(0, 9999)
        if exchange == 555:
            exchange = 556
        style = self.r.randrange(6)
        if style == 0:
            return f"+1 ({area}) {exchange}-{line:04d}"
        if style == 1:
            return f"+1-{area}-{exchange}-{line:04d}"
        if style == 2:
            return f"({area}) {exchange}-{line:04d}"
        if style == 3:
            return f"+44 {self.r.randrange(20, 29)} {self.r.randrange(3000, 8999)} {line:04d}"
        if style == 4:
            return f"+49 {self.r.randrange(30, 89)} {self.r.randrange(100000, 9999999)}"
        return f"+33 {self.r.randrange(1, 9)} {self.r.randrange(10, 99)} {self.r.randrange(10, 99)} {self.r.randrange(10, 99)} {self.r.randrange(10, 99)}"

    def aws_id(self) -> str:
        return self.pick(["AKIA", "ASIA"]) + self.chars(string.ascii_uppercase + "234567", 16)

    def aws_secret(self) -> str:
        return self.b64(40)


def cycle(g: Gen, templates: list[Callable[[Gen], Row]], n: int = PER_CONTEXT) -> list[Row]:
    """Makes ``n`` rows, going round the templates with fresh values."""
    return [templates[i % len(templates)](g) for i in range(n)]


def one(kind: str, template: str, **values: Callable[[Gen], str]) -> Callable[[Gen], Row]:
    """A template whose ``{v}`` is the labelled value; other fields are filled unlabelled."""

    def make(g: Gen) -> Row:
        filled = {name: fill(g) for name, fill in values.items()}
        return template.format(**filled), [(kind, filled["v"])]

    return make


def plain(template: str, **values: Callable[[Gen], str]) -> Callable[[Gen], Row]:
    """A template with no labelled span (a hard negative)."""

    def make(g: Gen) -> Row:
        if not values:
            return template, []  # taken literally: braces stay
        return template.format(**{name: fill(g) for name, fill in values.items()}), []

    return make


# ---------------------------------------------------------------------------------- positives
def aws_key_id(g: Gen) -> list[Row]:
    v = Gen.aws_id
    return cycle(g, [
        one(KEY, "[default]\naws_access_key_id = {v}\nregion = eu-west-1\n", v=v),
        one(KEY, "export AWS_ACCESS_KEY_ID={v}\n", v=v),
        one(KEY, 's3 = boto3.client("s3", aws_access_key_id="{v}")\n', v=v),
        one(KEY, '{{"AccessKey": {{"UserName": "ci", "AccessKeyId": "{v}", "Status": "Active"}}}}\n', v=v),
        one(KEY, "# TODO rotate: the old key {v} still works on staging\n", v=v),
        one(KEY, "AWS_ACCESS_KEY_ID: {v}\nAWS_DEFAULT_REGION: us-east-2\n", v=v),
        one(KEY, "| ci-bot | {v} | active | 2024-01-03 |\n", v=v),
    ])  # fmt: skip


def credentials_file(g: Gen) -> Row:
    """An ~/.aws/credentials profile: the key id and the secret are both labelled."""
    key_id, secret = g.aws_id(), g.aws_secret()
    text = f"[{g.pick(['default', 'prod', 'ci'])}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    return text, [(KEY, key_id), (KEY, secret)]


def aws_secret(g: Gen) -> list[Row]:
    v = Gen.aws_secret
    return cycle(g, [
        credentials_file,
        one(KEY, "aws_secret_access_key={v}\n", v=v),
        one(KEY, "export AWS_SECRET_ACCESS_KEY={v}\n", v=v),
        one(KEY, "env:\n  AWS_SECRET_ACCESS_KEY: {v}\n", v=v),
        one(KEY, "{{aws_secret_access_key: {v}, region: us-west-2}}\n", v=v),
        one(KEY, "I set aws_secret_access_key to {v} and it still fails with SignatureDoesNotMatch\n", v=v),
        one(KEY, '{{"Credentials": {{"SecretAccessKey": "{v}", "Expiration": "2024-05-01T10:00:00Z"}}}}\n', v=v),
        one(KEY, "$ aws configure set aws_secret_access_key {v}\n", v=v),
        one(KEY, 'AWS_SECRET_KEY = "{v}"\n', v=v),
        one(KEY, "secret access key: {v}\n", v=v),
    ], n=20)  # fmt: skip


def tokens(g: Gen) -> list[Row]:
    gh = lambda g: "ghp_" + g.alnum(36)  # noqa: E731
    return cycle(g, [
        one(KEY, "GITHUB_TOKEN={v}\n", v=gh),
        one(KEY, "git clone https://{v}@github.com/acme/private-repo.git\n", v=gh),
        one(KEY, 'gh = Github("{v}")\n', v=lambda g: "gho_" + g.alnum(36)),
        one(KEY, "token: {v}\n", v=lambda g: "github_pat_" + g.alnum(22) + "_" + g.alnum(59)),
        one(KEY, "GITLAB_TOKEN: {v}\n", v=lambda g: "glpat-" + g.alnum(20)),
        one(KEY, "curl -H 'PRIVATE-TOKEN: {v}' https://gitlab.com/api/v4/projects\n", v=lambda g: "glpat-" + g.alnum(20)),
    ], n=12)  # fmt: skip


def slack(g: Gen) -> list[Row]:
    v = lambda g: f"xoxb-{g.r.randrange(10**11, 10**12)}-{g.r.randrange(10**12, 10**13)}-{g.alnum(24)}"  # noqa: E731
    return cycle(g, [
        one(KEY, "SLACK_BOT_TOKEN={v}\n", v=v),
        one(KEY, 'client = WebClient(token="{v}")\n', v=v),
        one(KEY, "slack:\n  token: {v}\n  channel: '#alerts'\n", v=v),
        one(KEY, "webhook posted with {v} at 10:04\n", v=v),
    ], n=10)  # fmt: skip


def stripe(g: Gen) -> list[Row]:
    v = lambda g: g.pick(["sk_live_", "sk_test_", "rk_live_"]) + g.alnum(24)  # noqa: E731
    return cycle(g, [
        one(KEY, 'stripe.api_key = "{v}"\n', v=v),
        one(KEY, "STRIPE_SECRET_KEY={v}\n", v=v),
        one(KEY, "curl https://api.stripe.com/v1/charges -u {v}:\n", v=v),
        one(KEY, "const stripe = require('stripe')('{v}');\n", v=v),
    ], n=10)  # fmt: skip


def hf_openai(g: Gen) -> list[Row]:
    hf = lambda g: "hf_" + g.chars(string.ascii_letters, 34)  # noqa: E731
    return cycle(g, [
        one(KEY, "HF_TOKEN={v}\n", v=hf),
        one(KEY, 'login(token="{v}")\n', v=hf),
        one(KEY, "huggingface-cli login --token {v}\n", v=hf),
        one(KEY, "OPENAI_API_KEY={v}\n", v=lambda g: "sk-proj-" + g.alnum(48)),
        one(KEY, 'client = OpenAI(api_key="{v}")\n', v=lambda g: "sk-" + g.alnum(48)),
        one(KEY, "GOOGLE_MAPS_KEY: {v}\n", v=lambda g: "AIza" + g.chars(string.ascii_letters + string.digits + "_-", 35)),
    ], n=12)  # fmt: skip


def jwt(g: Gen) -> list[Row]:
    def token(g: Gen) -> str:
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        body = json.dumps({"sub": str(g.r.randrange(10**6)), "iat": g.r.randrange(1_600_000_000, 1_800_000_000)}).encode()
        return f"{header}.{base64.urlsafe_b64encode(body).decode().rstrip('=')}.{g.chars(string.ascii_letters + string.digits + '_-', 43)}"

    return cycle(g, [
        one(KEY, "Cookie: session={v}; Path=/\n", v=token),
        one(KEY, 'localStorage.setItem("jwt", "{v}");\n', v=token),
        one(KEY, "decoded = jwt.decode('{v}', verify=False)\n", v=token),
        one(KEY, "id_token={v}&state=af0ifjsldkj\n", v=token),
    ], n=10)  # fmt: skip


def pem(g: Gen) -> list[Row]:
    def block(kind: str) -> Callable[[Gen], str]:
        def make(g: Gen) -> str:
            body = "\n".join(g.b64(64) for _ in range(g.r.randrange(3, 6)))
            return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"

        return make

    return cycle(g, [
        one(KEY, "{v}\n", v=block("RSA ")),
        one(KEY, "key.pem:\n{v}\n", v=block("")),
        one(KEY, 'PRIVATE_KEY = """{v}"""\n', v=block("EC ")),
        one(KEY, "ssh_key: |\n{v}\n", v=block("OPENSSH ")),
    ], n=8)  # fmt: skip


def bearer(g: Gen) -> list[Row]:
    v = lambda g: g.alnum(g.r.randrange(24, 48))  # noqa: E731
    return cycle(g, [
        one(KEY, "Authorization: Bearer {v}\n", v=v),
        one(KEY, "curl -H \"Authorization: Bearer {v}\" https://api.acme.io/v2/jobs\n", v=v),
        one(KEY, 'headers = {{"Authorization": "Bearer {v}"}}\n', v=v),
        one(KEY, "GET /v1/me HTTP/1.1\nHost: api.startup.ai\nauthorization: bearer {v}\n", v=v),
        one(KEY, "Authorization: Token {v}\n", v=lambda g: g.hex(40)),
        one(KEY, "fetch(url, {{ headers: {{ Authorization: 'Bearer {v}' }} }})\n", v=v),
    ], n=14)  # fmt: skip


def basic_auth(g: Gen) -> list[Row]:
    def creds(g: Gen) -> str:
        return base64.b64encode(f"{g.user()}:{g.password()}".encode()).decode()

    return cycle(g, [
        one(PASSWORD, "Authorization: Basic {v}\n", v=creds),
        one(PASSWORD, "curl -H 'Authorization: Basic {v}' https://jenkins.acme.io/api/json\n", v=creds),
        one(PASSWORD, 'req.headers["Authorization"] = "Basic {v}"\n', v=creds),
        one(PASSWORD, "proxy_set_header Authorization \"Basic {v}\";\n", v=creds),
    ], n=12)  # fmt: skip


def api_key(g: Gen) -> list[Row]:
    v = lambda g: g.pick([g.hex(32), g.alnum(32), g.alnum(24)])  # noqa: E731
    return cycle(g, [
        one(KEY, "api_key: {v}\n", v=v),
        one(KEY, "  apiKey: {v}\n", v=v),
        one(KEY, "SENDGRID_API_KEY={v}\n", v=v),
        one(KEY, "[mailgun]\napi_key = {v}\n", v=v),
        one(KEY, 'API_KEY = "{v}"\n', v=v),
        one(KEY, '{{"api_key": "{v}", "endpoint": "https://api.acme.io"}}\n', v=v),
        one(KEY, "https://api.openweathermap.org/data/2.5/weather?q=Oslo&appid=x&api_key={v}\n", v=v),
        one(KEY, "client_secret: {v}\n", v=v),
        one(KEY, "DJANGO_SECRET_KEY={v}\n", v=lambda g: g.alnum(50)),
        one(KEY, "export NPM_TOKEN={v}\n", v=lambda g: "npm_" + g.alnum(36)),
    ], n=20)  # fmt: skip


def url_password(g: Gen) -> list[Row]:
    pw = lambda g: g.password(url_safe=True)  # noqa: E731
    return cycle(g, [
        one(PASSWORD, "DATABASE_URL=postgres://{u}:{v}@{h}:5432/app\n", v=pw, u=Gen.user, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, "redis_url: redis://default:{v}@{h}:6379/0\n", v=pw, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, 'BROKER = "amqp://{u}:{v}@{h}//"\n', v=pw, u=Gen.user, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, "mongodb+srv://{u}:{v}@cluster0.ab12c.mongodb.net/test\n", v=pw, u=Gen.user),
        one(PASSWORD, "pip install --index-url https://{u}:{v}@pypi.acme.io/simple pkg\n", v=pw, u=Gen.user),
        one(PASSWORD, "engine = create_engine('mysql+pymysql://{u}:{v}@{h}/shop')\n", v=pw, u=Gen.user, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, "ftp://{u}:{v}@files.acme.io/upload/\n", v=pw, u=Gen.user),
    ])  # fmt: skip


def env_password(g: Gen) -> list[Row]:
    pw = Gen.password
    return cycle(g, [
        one(PASSWORD, "DB_PASSWORD={v}\n", v=pw),
        one(PASSWORD, "export MYSQL_PASSWORD={v}\n", v=pw),
        one(PASSWORD, "environment:\n  - POSTGRES_PASSWORD={v}\n  - POSTGRES_USER=app\n", v=pw),
        one(PASSWORD, "docker run -d -e MYSQL_ROOT_PASSWORD={v} -p 3306:3306 mysql:8\n", v=pw),
        one(PASSWORD, "REDIS_PASSWORD={v} # prod\n", v=pw),
        one(PASSWORD, "SMTP_PASS={v}\nSMTP_HOST=smtp.acme.io\n", v=pw),
        one(PASSWORD, "set DB_PASSWORD={v}\n", v=pw),
        one(PASSWORD, "mysqldump --user=backup --password={v} shop > shop.sql\n", v=pw),
    ], n=16)  # fmt: skip


def yaml_password(g: Gen) -> list[Row]:
    pw = Gen.password
    return cycle(g, [
        one(PASSWORD, "database:\n  user: app\n  password: {v}\n", v=pw),
        one(PASSWORD, "  db_password: {v}\n", v=pw),
        one(PASSWORD, "[client]\nuser = root\npassword = {v}\n", v=pw),
        one(PASSWORD, "[pypi]\nusername = __token__\npassword = {v}\n", v=pw),
        one(PASSWORD, "smtp:\n  host: smtp.acme.io\n  pass: {v}\n", v=pw),
        one(PASSWORD, "spring.datasource.password={v}\n", v=pw),
        one(PASSWORD, "Password: {v}\n", v=pw),
        one(PASSWORD, "    admin_password: '{v}'\n", v=pw),
    ], n=16)  # fmt: skip


def code_password(g: Gen) -> list[Row]:
    pw = Gen.password
    return cycle(g, [
        one(PASSWORD, 'conn = psycopg2.connect(host="db", user="app", password="{v}")\n', v=pw),
        one(PASSWORD, '{{"username": "admin", "password": "{v}"}}\n', v=pw),
        one(PASSWORD, "String password = \"{v}\";\n", v=pw),
        one(PASSWORD, "$db_pass = '{v}';\n", v=pw),
        one(PASSWORD, "if pwd == '{v}':\n    grant()\n", v=pw),
        one(PASSWORD, "self.client.login(username='jane', password='{v}')\n", v=pw),
        one(PASSWORD, "config.set('auth', 'password', '{v}')\n", v=pw),
    ])  # fmt: skip


def mysql_p(g: Gen) -> list[Row]:
    pw = lambda g: g.password().replace("!", "").replace("*", "")  # noqa: E731
    return cycle(g, [
        one(PASSWORD, "mysql -u root -p{v} shop\n", v=pw),
        one(PASSWORD, "$ mysql -h {h} -u app -p{v} -e 'show tables'\n", v=pw, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, "mysqldump -uroot -p{v} --all-databases > all.sql\n", v=pw),
        one(PASSWORD, "docker exec -it db mysql -uroot -p{v}\n", v=pw),
        one(PASSWORD, "mysqladmin -u root -p'{v}' status\n", v=pw),
        one(PASSWORD, "mariadb --user=app -p{v} inventory\n", v=pw),
    ], n=12)  # fmt: skip


def curl_u(g: Gen) -> list[Row]:
    pw = lambda g: g.password(url_safe=True)  # noqa: E731
    return cycle(g, [
        one(PASSWORD, "curl -u {u}:{v} https://registry.acme.io/v2/_catalog\n", v=pw, u=Gen.user),
        one(PASSWORD, "curl --user {u}:{v} -X POST https://ci.acme.io/job/build\n", v=pw, u=Gen.user),
        one(PASSWORD, "curl -s -u '{u}:{v}' https://nexus.corp-mail.de/service/rest/v1/status\n", v=pw, u=Gen.user),
        one(PASSWORD, 'curl -u "{u}:{v}" -T backup.tgz https://files.acme.io/upload\n', v=pw, u=Gen.user),
        one(PASSWORD, "wget --user={u} --password={v} https://files.acme.io/dump.sql.gz\n", v=pw, u=Gen.user),
    ], n=12)  # fmt: skip


def pgpassword(g: Gen) -> list[Row]:
    pw = Gen.password
    return cycle(g, [
        one(PASSWORD, "PGPASSWORD={v} psql -h {h} -U app -d shop\n", v=pw, h=lambda g: g.pick(HOSTS)),
        one(PASSWORD, "$ PGPASSWORD={v} pg_dump -U postgres shop > shop.sql\n", v=pw),
        one(PASSWORD, "export PGPASSWORD={v}\n", v=pw),
        one(PASSWORD, "RUN PGPASSWORD={v} psql -U postgres -c 'create database app'\n", v=pw),
        one(PASSWORD, "sshpass -p {v} ssh deploy@build-server\n", v=pw),
        one(PASSWORD, "docker login -u ci -p {v} registry.acme.io\n", v=lambda g: g.alnum(16)),
    ], n=12)  # fmt: skip


def emails(g: Gen) -> list[Row]:
    v = Gen.email
    return cycle(g, [
        one(EMAIL, '__author__ = "{n} <{v}>"\n', v=v, n=Gen.person),
        one(EMAIL, "Signed-off-by: {n} <{v}>\n", v=v, n=Gen.person),
        one(EMAIL, '<a href="mailto:{v}">contact</a>\n', v=v),
        one(EMAIL, "commit 1f3c9e2\nAuthor: {n} <{v}>\nDate:   Mon Mar 4 10:12:01 2024 +0100\n", v=v, n=Gen.person),
        one(EMAIL, '  "author": "{n} <{v}>",\n', v=v, n=Gen.person),
        one(EMAIL, "    author_email='{v}',\n", v=v),
        one(EMAIL, "Questions? Write to {v} or open an issue.\n", v=v),
        one(EMAIL, "# Maintainer: {v}\n", v=v),
        one(EMAIL, "From: {v}\nTo: team@example.com\nSubject: rota\n", v=v),
        one(EMAIL, "ADMIN_EMAIL={v}\n", v=v),
        one(EMAIL, "Copyright (c) 2021 {n} ({v})\n", v=v, n=Gen.person),
        one(EMAIL, '{{"name": "{n}", "email": "{v}", "role": "owner"}}\n', v=v, n=Gen.person),
    ], n=36)  # fmt: skip


def ipv4(g: Gen) -> list[Row]:
    v = Gen.ipv4
    return cycle(g, [
        one(IP, '{v} - - [04/Mar/2024:10:12:01 +0000] "GET /login HTTP/1.1" 200 512\n', v=v),
        one(IP, "ssh -i ~/.ssh/prod.pem ubuntu@{v}\n", v=v),
        one(IP, "server:\n  host: {v}\n  port: 8443\n", v=v),
        one(IP, "Mar  4 10:12:01 web sshd[812]: Failed password for root from {v} port 52113 ssh2\n", v=v),
        one(IP, "ALLOWED_HOSTS = ['{v}', 'localhost']\n", v=v),
        one(IP, "curl http://{v}:8080/health\n", v=v),
        one(IP, "upstream api {{ server {v}:9000; }}\n", v=v),
        one(IP, "The prod box moved to {v} yesterday.\n", v=v),
        one(IP, '{{"client_ip": "{v}", "status": 403}}\n', v=v),
    ], n=30)  # fmt: skip


def ipv6(g: Gen) -> list[Row]:
    v = Gen.ipv6
    return cycle(g, [
        one(IP, "listen [{v}]:443 ssl;\n", v=v),
        one(IP, "AAAA record points at {v}\n", v=v),
        one(IP, "Connection from {v} port 51022\n", v=v),
        one(IP, 'bind_address = "{v}"\n', v=v),
    ], n=12)  # fmt: skip


def phones(g: Gen) -> list[Row]:
    v = Gen.phone
    return cycle(g, [
        one(PHONE, "Tel: {v}\n", v=v),
        one(PHONE, "Call us at {v} (Mon-Fri).\n", v=v),
        one(PHONE, '{{"name": "on-call", "phone": "{v}"}}\n', v=v),
        one(PHONE, "TEL;TYPE=cell:{v}\n", v=v),
        one(PHONE, "# pager: {v}\n", v=v),
        one(PHONE, "Contact: {v}\n", v=v),
    ], n=18)  # fmt: skip


# -------------------------------------------------------------------------------- negatives
def neg_versions(g: Gen) -> list[Row]:
    d = lambda g: str(g.r.randrange(0, 10))  # noqa: E731
    n = lambda g: str(g.r.randrange(10, 60))  # noqa: E731
    return cycle(g, [
        plain("libfoo {a}.{b}.{c}.{d} is out\n", a=d, b=d, c=d, d=d),
        plain("pip install pkg=={a}.{b}.{c}.{d}\n", a=n, b=d, c=n, d=d),
        plain('__version__ = "{a}.{b}.{c}.{d}"\n', a=d, b=d, c=d, d=d),
        plain("Version: {a}.{b}.{c}.{d}\n", a=n, b=n, c=d, d=n),
        plain("release v{a}.{b}.{c}.{d}\n", a=n, b=d, c=n, d=n),
        plain("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{a}.0.0.0 Safari/537.36\n", a=lambda g: str(g.r.randrange(100, 125))),
        plain("OID {a}.3.6.1.4.1.{b}.2\n", a=d, b=n),
        plain("see RFC 3986 section {a}.{b}.{c}.{d}\n", a=d, b=d, c=d, d=d),
        plain('"dependencies": {{"left-pad": ">={a}.{b}.{c}.{d}"}}\n', a=d, b=n, c=d, d=d),
        plain("Windows {a}.0.{b}.{c}\n", a=n, b=lambda g: str(g.r.randrange(10000, 22999)), c=n),
    ], n=24)  # fmt: skip


def neg_hashes(g: Gen) -> list[Row]:
    h40 = lambda g: g.hex(40)  # noqa: E731
    return cycle(g, [
        plain("commit {h}\nMerge: 1a2b3c4 5d6e7f8\n", h=h40),
        plain('{{"sha": "{h}", "url": "https://api.github.com/repos/acme/x/commits/{h}"}}\n', h=h40),
        plain("git checkout {h}\n", h=h40),
        plain("  revision: {h}\n", h=h40),
        plain('sha256 = "{h}"\n', h=lambda g: g.hex(64)),
        plain('checksum = "{h}"\n', h=lambda g: g.hex(64)),
        plain("etag: W/\"{h}\"\n", h=lambda g: g.hex(32)),
        plain('expected = "{h}"  # md5 of the fixture\n', h=lambda g: g.hex(32)),
        plain("docker pull python@sha256:{h}\n", h=lambda g: g.hex(64)),
        plain("secret_sha1 = '{h}'\n", h=h40),
        plain('"node_modules/secret-handshake": {{"version": "1.1.20", "integrity": "sha512-{h}=="}}\n', h=lambda g: g.b64(86)),
        plain("github.com/aws/aws-sdk-go v1.44.{n} h1:{h}=\n", h=lambda g: g.b64(43), n=lambda g: str(g.r.randrange(100, 300))),
    ], n=36)  # fmt: skip


def neg_uuids(g: Gen) -> list[Row]:
    def u(g: Gen) -> str:
        h = g.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    return cycle(g, [
        plain("id: {u}\n", u=u),
        plain('{{"request_id": "{u}", "status": "ok"}}\n', u=u),
        plain("Project(\"{{{u}}}\") = \"App\", \"App.csproj\"\n", u=u),
        plain("client_id: {u}\n", u=u),
        plain("trace {u} took 12 ms\n", u=u),
        plain("key_id = \"{u}\"\n", u=u),
    ], n=18)  # fmt: skip


def neg_emails(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("Use the form `{u}@example.com` when you configure notify_to.\n", u=Gen.user),
        plain("admin@example.org, ops@example.net and root@localhost\n"),
        plain("git remote add origin git@github.com:acme/{r}.git\n", r=lambda g: g.pick(WORDS).lower()),
        plain("<img src=\"logo@2x.png\"> <img src=\"icon@3x.webp\">\n"),
        plain('"lodash": "npm:lodash@4.17.{n}",\n', n=lambda g: str(g.r.randrange(10, 30))),
        plain("npm i @acme/{r}@1.{n}.0\n", r=lambda g: g.pick(WORDS).lower(), n=lambda g: str(g.r.randrange(1, 30))),
        plain("@property\ndef email(self) -> str:\n    return self._email\n"),
        plain("c = a @ b  # matmul; also x@y.T\n"),
        plain("send to noreply@{n}.test or bounce@mail.invalid\n", n=Gen.user),
        plain("mention @{u} in the PR\n", u=Gen.user),
        plain("ssh {u}@build-server\n", u=Gen.user),
        plain("EMAIL_REGEX = r\"[^@]+@[^@]+\\.[^@]+\"\n"),
    ], n=30)  # fmt: skip


def neg_ips(g: Gen) -> list[Row]:
    o = lambda g: str(g.r.randrange(1, 255))  # noqa: E731
    return cycle(g, [
        plain("host: 192.0.2.{a}\n", a=o),
        plain("curl http://198.51.100.{a}/status\n", a=o),
        plain("203.0.113.{a} - - [04/Mar/2024] \"GET / HTTP/1.1\" 200\n", a=o),
        plain("listen [2001:db8::{a}]:443;\n", a=o),
        plain("DB_HOST=10.{a}.{b}.{c}\n", a=o, b=o, c=o),
        plain("server 192.168.{a}.{b}:8080;\n", a=o, b=o),
        plain("gateway 172.{a}.{b}.1\n", a=lambda g: str(g.r.randrange(16, 32)), b=o),
        plain("bind 127.0.0.1 and 0.0.0.0\n"),
        plain("nameserver 8.8.8.8\nnameserver 1.1.1.1\n"),
        plain("link-local fe80::1ff:fe23:4567:890a%eth0 and 169.254.{a}.{b}\n", a=o, b=o),
        plain("ula fd12:3456:789a:1::{a}\n", a=o),
        plain("MAC 00:1a:2b:3c:4d:{a:0>2}\n", a=lambda g: format(g.r.randrange(256), "x")),
        plain("x = arr[5::-2] + grid[1::3]\n"),
        plain("at 12:34:56.789 the job ended\n"),
        plain("cidr 100.64.{a}.0/10 (carrier-grade NAT)\n", a=o),
    ], n=45)  # fmt: skip


def neg_placeholders(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("password: ${DB_PASSWORD}\n"),
        plain("PASSWORD=changeme\n"),
        plain("password: <password>\n"),
        plain('password = "****"\n'),
        plain("api_key: YOUR_API_KEY\n"),
        plain("aws_secret_access_key = <your-secret-access-key>\n"),
        plain("AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}\n"),
        plain("aws_access_key_id = YOUR_ACCESS_KEY_ID\n"),
        plain("DATABASE_URL=postgres://user:password@localhost:5432/app\n"),
        plain("postgres://${PGUSER}:${PGPASSWORD}@db/app\n"),
        plain("git clone https://user:<token>@github.com/acme/repo.git\n"),
        plain("GITHUB_TOKEN=ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n"),
        plain("HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"),
        plain("STRIPE_KEY=sk_test_xxxxxxxxxxxxxxxxxxxxxxxx\n"),
        plain("DB_PASSWORD=\n"),
        plain("password: \"\"\n"),
        plain("secret_key: '{{ vault_secret_key }}'\n"),
        plain("PASSWORD=%(password)s\n"),
        plain("  password: !vault |\n"),
        plain("POSTGRES_PASSWORD_FILE=/run/secrets/db_password\n"),
    ], n=40)  # fmt: skip


def neg_prose(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("Enter your password to continue.\n"),
        plain("The password must be at least 12 characters long.\n"),
        plain("Forgot your password? Reset it here.\n"),
        plain("Password: must contain a digit and a symbol\n"),
        plain("## Password reset\n\nClick the link we sent you.\n"),
        plain("Never commit an API key or secret token to git.\n"),
        plain("The token expired; request a new one from the admin.\n"),
        plain("Use a password manager and unique passwords.\n"),
        plain("passwords are hashed with argon2id before storage\n"),
        plain("Authorization: see the section on bearer tokens below.\n"),
        plain("This secret handshake protocol is described in the paper.\n"),
        plain("Set AWS_SECRET_ACCESS_KEY in your shell before running the tests.\n"),
    ], n=24)  # fmt: skip


def neg_code(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("password = getpass.getpass()\n"),
        plain("def login(user: str, password: str | None = None) -> bool:\n"),
        plain("    client.connect(host, user=user, password=password)\n"),
        plain("self.password = password\n"),
        plain("if password == confirm_password:\n    save()\n"),
        plain('token = request.headers.get("Authorization")\n'),
        plain('api_key = os.environ["API_KEY"]\n'),
        plain("SECRET_KEY = os.getenv('SECRET_KEY')\n"),
        plain("token: Optional[str] = None\n"),
        plain("password: str\n"),
        plain("password = args.password\n"),
        plain("secret_key = settings.SECRET_KEY\n"),
        plain('headers = {"Authorization": f"Bearer {token}"}\n'),
        plain("auth = (username, password_from_vault(name))\n"),
        plain("PASSWORD_MIN_LENGTH = 12\n"),
        plain("access_token = response.json()['access_token']\n"),
        plain("var password = document.getElementById('password').value;\n"),
        plain("password_hash = bcrypt.hashpw(password, bcrypt.gensalt())\n"),
    ], n=36)  # fmt: skip


def neg_shell(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("mkdir -p build/{r}\n", r=lambda g: g.pick(WORDS).lower()),
        plain("ssh -p 2222 deploy@build-server\n"),
        plain("mysql -u root -p shop\n"),
        plain("mysql -h db -P 3306 -u app -p\n"),
        plain("mysql -u root -p$MYSQL_ROOT_PASSWORD shop\n"),
        plain("cp -p src/*.py dist/\n"),
        plain("python -m pytest -p no:cacheprovider\n"),
        plain('curl -u "$USER:$TOKEN" https://api.acme.io\n'),
        plain("curl -u ${API_USER}:${API_KEY} https://api.acme.io\n"),
        plain("curl -u username:password https://httpbin.org/basic-auth/user/passwd\n"),
        plain("curl --user admin:<password> https://ci.acme.io\n"),
        plain("curl -u user: https://api.acme.io  # prompts for the password\n"),
        plain("PGPASSWORD=$PGPASS psql -h db -U app\n"),
        plain("docker login -u ci --password-stdin < token.txt\n"),
        plain("tar -cvzf - . | ssh -p 22 host 'cat > a.tgz'\n"),
        plain("export AWS_SECRET_ACCESS_KEY=$(vault read -field=secret aws/creds)\n"),
        plain("sshpass -p \"$SSH_PASS\" ssh deploy@build-server\n"),
        plain("git log -p -- src/\n"),
    ], n=36)  # fmt: skip


def neg_auth(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("Authorization: Bearer <token>\n"),
        plain("Authorization: Bearer ${TOKEN}\n"),
        plain("Authorization: Bearer $ACCESS_TOKEN\n"),
        plain('-H "Authorization: Bearer YOUR_ACCESS_TOKEN"\n'),
        plain("Authorization: Basic dXNlcjpwYXNzd29yZA==\n"),  # user:password
        plain("Authorization: Basic <base64 of user:password>\n"),
        plain("Authorization: Bearer xxxxxxxxxxxxxxxxxxxxxxxx\n"),
        plain("Authorization: Bearer {{token}}\n"),
        plain("WWW-Authenticate: Basic realm=\"staging\"\n"),
        plain("Authorization: Bearer ...\n"),
    ], n=20)  # fmt: skip


def neg_phones(g: Gen) -> list[Row]:
    return cycle(g, [
        plain("released 2024-03-{d:0>2} at 10:12\n", d=lambda g: str(g.r.randrange(1, 29))),
        plain("ISBN 978-0-{a}-{b}-3\n", a=lambda g: str(g.r.randrange(100, 999)), b=lambda g: str(g.r.randrange(10000, 99999))),
        plain("timestamp={t}\n", t=lambda g: str(g.r.randrange(1_600_000_000, 1_800_000_000))),
        plain("Call (415) 555-01{d:0>2} for the demo line.\n", d=lambda g: str(g.r.randrange(0, 100))),
        plain("port 8080, pid 31337, uid 1000\n"),
        plain("order #{a} shipped\n", a=lambda g: str(g.r.randrange(10**6, 10**7))),
        plain("range(0, 1000000, 250)\n"),
        plain("matrix = [[1, 2, 3], [4, 5, 6]]\n"),
        plain("coords 52.5200, 13.4050\n"),
        plain("CVE-2024-{a}\n", a=lambda g: str(g.r.randrange(1000, 40000))),
    ], n=30)  # fmt: skip


POSITIVES = [
    aws_key_id, aws_secret, tokens, slack, stripe, hf_openai, jwt, pem, bearer, basic_auth, api_key,
    url_password, env_password, yaml_password, code_password, mysql_p, curl_u, pgpassword, emails, ipv4, ipv6,
    phones,
]  # fmt: skip
NEGATIVES = [
    neg_versions, neg_hashes, neg_uuids, neg_emails, neg_ips, neg_placeholders, neg_prose, neg_code, neg_shell,
    neg_auth, neg_phones,
]  # fmt: skip


def build() -> list[dict]:
    """Returns the labelled rows, positives then negatives, each context in turn."""
    g = Gen(SEED)
    rows = []
    for context in (*POSITIVES, *NEGATIVES):
        for i, (text, spans) in enumerate(context(g)):
            for _, value in spans:
                if value not in text:
                    raise ValueError(f"{context.__name__}: {value!r} not in {text!r}")
            rows.append(
                {
                    "id": f"{context.__name__}_{i:02d}",
                    "context": context.__name__,
                    "text": text,
                    "spans": [{"kind": kind, "text": value} for kind, value in dict.fromkeys(spans)],
                }
            )
    return rows


def main() -> int:
    """Writes (or checks) the labelled file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args()
    content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in build())
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == content
        print("up to date" if same else f"{OUT} differs from what the script makes")
        return 0 if same else 1
    OUT.write_text(content, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
