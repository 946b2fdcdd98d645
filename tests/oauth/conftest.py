"""Fixtures of the OAuth suite: `doable serve` with the built-in authorization server, the Node
programs (the TypeScript SDK's OAuth client, an external OpenID provider) installed by `npm ci`
from the committed lock file, an https host for client metadata documents, and the consent page
answered by a person (an HTTP client posting the form, or Chromium clicking it)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import re
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.shared.auth import AuthorizationCodeResult

from tests.servers import Served, free_port, serve_doable

NODE_DIR = Path(__file__).parent / "node"


# ---- Node programs -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` from tests/oauth/node's lock file, once per lock file (a stamp records which)."""
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    stamp = NODE_DIR / "node_modules" / ".doable-lock-sha256"
    wanted = hashlib.sha256(lock).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True, timeout=600)
        stamp.write_text(wanted)
    return NODE_DIR / "node_modules"


# ---- an https host for client metadata documents -------------------------------------------------


@dataclass
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A certificate for localhost and 127.0.0.1, self-signed: the test's own certificate authority."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass
class DocumentHost:
    """Serves client metadata documents over https at https://localhost:<port>/<name>."""

    base: str
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)

    def publish(self, name: str, document: dict[str, Any]) -> str:
        self.documents[f"/{name}"] = document
        return f"{self.base}/{name}"


@pytest.fixture(scope="session")
def document_host(tls: TlsFiles) -> Iterator[DocumentHost]:
    port = free_port()
    host = DocumentHost(f"https://localhost:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.fetches.append(self.path)
            document = host.documents.get(self.path)
            body = json.dumps(document).encode() if document is not None else b"{}"
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


# ---- Doable with its built-in authorization server -----------------------------------------------


@pytest.fixture(scope="package")
def doable(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Served]:
    """`doable serve` as `make serve` runs it (embedded, no shared secret: the built-in
    authorization server on), trusting the test's certificate authority for metadata documents on
    localhost."""
    with serve_doable(
        tmp_path_factory.mktemp("doable"),
        DOABLE_OAUTH_CLIENT_METADATA_ALLOW_PRIVATE="true",
        DOABLE_AUTH_FAILURES_PER_MINUTE="0",
        SSL_CERT_FILE=str(tls.ca_file),
    ) as served:
        yield served


# ---- the person at the consent page --------------------------------------------------------------


_HIDDEN = re.compile(r"<input type=hidden name=(\w+) value='([^']*)'>")


async def answer_consent(authorization_url: str, *, approve: bool = True) -> AuthorizationCodeResult:
    """What a person's browser does: open the authorization URL, land on the consent page, press
    Approve (or Deny), and follow the answer to the client's redirect URI (not fetched here)."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as http:
        response = await http.get(authorization_url)
        assert response.status_code == 302, response.text
        page = await http.get(response.headers["location"])
        assert page.status_code == 200, page.text
        fields = dict(_HIDDEN.findall(page.text))
        decision = "approve" if approve else "deny"
        answered = await http.post(urlsplit(str(page.url))._replace(query="").geturl(), data={**fields, "decision": decision})
        assert answered.status_code == 303, answered.text
        query = parse_qs(urlsplit(answered.headers["location"]).query)
    if not approve:
        raise PermissionError(query.get("error", ["?"])[0])
    return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0])


@dataclass
class NodeRun:
    """A Node program's lines, read as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def line_starting(self, prefix: str, seconds: float = 60) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"the program ended without {prefix!r}:\n" + "".join(self.lines)[-4000:])
                text = raw.decode()
                self.lines.append(text)
                if text.startswith(prefix):
                    return text[len(prefix) :].strip()


@asynccontextmanager
async def node(script: str, *args: str, node_modules: Path) -> AsyncIterator[NodeRun]:
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / script), *args, cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield NodeRun(process)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
