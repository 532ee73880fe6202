"""A fake Microsoft identity platform (Entra ID) for tests: tenant discovery and client credentials.

msal insists on ``https://`` for both the authority and the ``token_endpoint`` it discovers
(shared/reference/calendars.md §2.7), so this endpoint is served over TLS with a throwaway CA
made at test time (:func:`make_test_certificates`); the CA file is what a bridge config names as
``ca_bundle``. What it answers, as msal 1.31+ calls it:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` → ``authorization_endpoint``,
  ``token_endpoint`` and ``issuer`` on this server's own https base; an unknown tenant is 400
  ``invalid_tenant`` (msal raises ValueError at construction, as with the real service);
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
  ``client_secret`` and a ``scope`` of ``https://graph.microsoft.com/.default`` → a bearer
  token with ``expires_in`` (3599 s by default, more than msal's 5-minute margin, so its cache is
  exercised); errors are the AADSTS envelopes with 400/401.

Issued tokens live in a :class:`TokenRegistry` that the Graph emulator consults, so a test can
expire every token mid-run and watch the client fetch a new one. Secrets never appear in the
request log, in ``repr`` or in error texts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_TOKEN_LIFETIME = 3599
STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0


# ----- throwaway TLS material ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA certificate (what clients trust) and a server certificate/key signed by it."""

    ca_certificate: Path
    server_certificate: Path
    server_key: Path


def make_test_certificates(folder: Path, *, host: str = "127.0.0.1") -> TlsFiles:
    """Write a fresh CA and a server certificate for ``host`` (and ``localhost``) to ``folder``.

    Valid from an hour ago for two days: long enough for any test session, useless afterwards.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roombridge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_certificate=folder / "test-ca.pem",
        server_certificate=folder / "server.pem",
        server_key=folder / "server-key.pem",
    )
    files.ca_certificate.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# ----- serving over TLS in a thread ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsAddress:
    """Where a TLS background server listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """``https://host:port`` without a trailing slash."""
        return f"https://{self.host}:{self.port}"


class TlsServer:
    """A uvicorn server over TLS for one app, in a daemon thread, on a pre-bound socket."""

    def __init__(self, app: ASGIApp, tls: TlsFiles, *, host: str = "127.0.0.1") -> None:
        # TCP proto so asyncio sets TCP_NODELAY (no delayed-ACK stalls between requests).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.address = TlsAddress(bound_host, bound_port)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            ssl_certfile=str(tls.server_certificate),
            ssl_keyfile=str(tls.server_key),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"uvicorn-tls-{bound_port}",
            daemon=True,
        )

    def start(self) -> TlsAddress:
        """Start serving; returns once connections are accepted."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the TLS server on port {self.address.port} did not start")
            time.sleep(0.005)
        return self.address

    def stop(self) -> None:
        """Stop serving (forcing the exit if a request hangs on)."""
        self._server.should_exit = True
        self._thread.join(SHUTDOWN_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(SHUTDOWN_TIMEOUT)
        self._socket.close()


@contextmanager
def serve_tls_in_thread(app: ASGIApp, tls: TlsFiles) -> Iterator[TlsAddress]:
    """Serve ``app`` over TLS on a free loopback port for the ``with`` block."""
    server = TlsServer(app, tls)
    address = server.start()
    try:
        yield address
    finally:
        server.stop()


# ----- tokens --------------------------------------------------------------------------------


@dataclass(slots=True)
class IssuedToken:
    """Who a bearer token was issued to, and until when (monotonic seconds) it is valid."""

    tenant: str
    client_id: str
    expires_at: float


class TokenRegistry:
    """Bearer tokens issued by the identity endpoint; the Graph emulator validates against it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}

    def __repr__(self) -> str:
        return f"TokenRegistry(tokens={len(self._tokens)})"

    def issue(self, tenant: str, client_id: str, lifetime: float) -> str:
        """A new opaque access token valid for ``lifetime`` seconds."""
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = IssuedToken(tenant, client_id, time.monotonic() + lifetime)
        return token

    def holder(self, token: str) -> IssuedToken | None:
        """The holder of a still valid token, else None."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.expires_at <= time.monotonic():
            return None
        return issued

    def expire_all(self) -> None:
        """Make every issued token invalid at once (as if they had all run out)."""
        with self._lock:
            for issued in self._tokens.values():
                issued.expires_at = 0.0


@dataclass(frozen=True, slots=True)
class ClientApp:
    """A registered confidential client (an app registration with a secret)."""

    tenant: str
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IdentityRequest:
    """One request the endpoint answered (paths only: bodies carry secrets)."""

    method: str
    path: str
    status: int
    grant_type: str | None = None


class IdentityEmulator:
    """The fake identity platform: an ASGI app plus the controls tests use."""

    def __init__(
        self, *, tokens: TokenRegistry | None = None, lifetime: int = DEFAULT_TOKEN_LIFETIME
    ) -> None:
        self.tokens = tokens or TokenRegistry()
        self.lifetime = lifetime
        self.requests: list[IdentityRequest] = []
        self._apps: dict[tuple[str, str], ClientApp] = {}
        self._lock = threading.Lock()
        self._base_url = ""
        self._delay = 0.0

    def __repr__(self) -> str:
        return f"IdentityEmulator(apps={len(self._apps)}, requests={len(self.requests)})"

    # ----- controls ----------------------------------------------------------------------

    def register(self, tenant: str, client_id: str, secret: str) -> None:
        """Register a confidential client app in a tenant."""
        with self._lock:
            self._apps[(tenant, client_id)] = ClientApp(tenant, client_id, secret)

    def set_delay(self, seconds: float) -> None:
        """Answer token requests late (a slow identity service)."""
        self._delay = seconds

    def token_requests(self) -> int:
        """How many token requests (any outcome) were made."""
        return sum(1 for r in self.requests if r.grant_type is not None)

    def counts(self) -> Counter[str]:
        """Requests per path."""
        return Counter(r.path for r in self.requests)

    def authority(self, tenant: str) -> str:
        """The ``authority`` URL a client of ``tenant`` configures (needs a served endpoint)."""
        return f"{self._base_url}/{tenant}"

    @contextmanager
    def serve(self, tls: TlsFiles) -> Iterator[TlsAddress]:
        """Serve over TLS for the ``with`` block."""
        with serve_tls_in_thread(self, tls) as address:
            self._base_url = address.base_url
            yield address

    # ----- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request."""
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if not self._base_url:
            self._base_url = f"https://{request.url.netloc}"
        parts = [part for part in request.url.path.split("/") if part]
        grant: str | None = None
        if request.method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            response = self._discovery(parts[0])
        elif request.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
            grant = form.get("grant_type", "")
            if self._delay:
                await asyncio.sleep(self._delay)
            response = self._token(parts[0], form)
        else:
            response = _aad_error(
                404,
                "invalid_request",
                "AADSTS900561: The endpoint only accepts the documented requests.",
                900561,
            )
        with self._lock:
            self.requests.append(
                IdentityRequest(request.method, request.url.path, response.status_code, grant)
            )
        await response(scope, receive, send)

    def _known_tenant(self, tenant: str) -> bool:
        with self._lock:
            return any(known == tenant for known, _client in self._apps)

    def _discovery(self, tenant: str) -> Response:
        if not self._known_tenant(tenant):
            return _aad_error(
                400,
                "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant[:64]}' not found.",
                90002,
            )
        base = f"{self._base_url}/{tenant}"
        return JSONResponse(
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "token"],
                "tenant_region_scope": "EU",
            }
        )

    def _token(self, tenant: str, form: dict[str, str]) -> Response:
        if form.get("grant_type") != "client_credentials":
            return _aad_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
                70003,
            )
        client_id = form.get("client_id", "")
        with self._lock:
            app = self._apps.get((tenant, client_id))
        if app is None:
            return _aad_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id[:64]}' was not found "
                "in the directory.",
                700016,
            )
        supplied = form.get("client_secret", "")
        if not secrets.compare_digest(supplied.encode(), app.secret.encode()):
            return _aad_error(
                401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215
            )
        if set(form.get("scope", "").split()) != {GRAPH_SCOPE}:
            return _aad_error(
                400,
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier.",
                1002012,
            )
        token = self.tokens.issue(tenant, client_id, self.lifetime)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "ext_expires_in": self.lifetime,
                "access_token": token,
            }
        )


def _aad_error(status: int, error: str, description: str, code: int) -> Response:
    """An Entra ID error body."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse(
        {
            "error": error,
            "error_description": f"{description} Trace ID: {secrets.token_hex(8)} "
            f"Timestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
        },
        status_code=status,
    )
