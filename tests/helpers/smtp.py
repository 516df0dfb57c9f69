"""A real SMTP server on 127.0.0.1 for tests and benches: aiosmtpd in its own thread.

It runs its own event loop in a thread, so sync tests, async tests and real uvicorn servers
started by a test all reach it alike (it is just a port).

::

    from tests.helpers.smtp import SMTPServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)

    def test_plain(smtp_server: SMTPServer) -> None:          # plain SMTP, no TLS, no AUTH
        settings = smtp_server.settings(settings)             # ROSE_ASH_SMTP_URL (+ CA) pointed at it
        ...
        msg = smtp_server.wait_for(1)[0].message             # EmailMessage parsed with policy.default

    with SMTPServer(tls="starttls", auth=("user", "pass")) as server: ...   # STARTTLS required, AUTH
    with SMTPServer(tls="implicit") as server: ...                          # smtps://, TLS from byte 1

Constructor: ``SMTPServer(tls="none"|"starttls"|"implicit", auth=None|(user, password), port=0)``.
``tls="starttls"`` offers STARTTLS (RFC 3207) with a self-signed certificate for 127.0.0.1 and
localhost (generated once per process with ``cryptography``; its PEM path is ``server.ca_file``, what
``ROSE_ASH_SMTP_CA_FILE`` takes); with ``auth`` it refuses AUTH before STARTTLS. ``auth`` offers
AUTH PLAIN and LOGIN (RFC 4954) and accepts only that user and password (535 otherwise);
without ``auth`` no AUTH is offered.

Attributes and methods:

* ``url``: ``smtp://[user:pass@]127.0.0.1:PORT`` or ``smtps://...`` (user and password URL-encoded).
* ``settings(base)``: ``base`` (a Settings) with ``smtp_url`` and ``smtp_ca_file`` set to this server;
  ``env()``: the same as ``ROSE_ASH_*`` variables for a server process a test starts.
* ``received``: list of :class:`Received` (``mail_from``, ``rcpt_tos``, ``data`` raw bytes as
  received, ``message`` parsed with ``email.parser.BytesParser(policy=email.policy.default)``,
  ``authenticated`` login or None, ``tls`` bool, ``connection``: 1, 2... per SMTP session that
  reached RCPT TO, so a test sees that many mails shared one connection). Appended in arrival
  order; ``clear()`` empties it.
* ``wait_for(n, timeout=30)`` (sync) / ``await wait_for_async(n, timeout=30)``: block until at least
  ``n`` messages arrived, return ``received``; AssertionError on timeout.
* Failures (checked at RCPT TO, so the client sees them as the recipient's answer):
  ``fail(code, count=None, text=None)`` answers ``code`` (e.g. 421, 451, 550) to the next ``count``
  messages, or to every message until ``recover()`` when ``count`` is None. 421 also closes the
  connection, as RFC 5321 section 3.8 says. ``reject(address, code=550)`` fails one recipient for
  good. ``failures_answered`` counts the failing answers given.
* ``stop()`` / ``start()``: take the server down and bring it back on the same port (SMTP down in
  the middle of a campaign); ``running`` tells which. ``close()`` (or leaving ``with``) stops it.

The ``smtp_server`` fixture yields a plain running server; ``smtp_server_factory(**kwargs)``
makes more (all stopped at teardown). A test module gets them by importing
``smtp_server_fixture`` / ``smtp_server_factory_fixture`` (their functions; the fixtures' names
are ``smtp_server`` and ``smtp_server_factory``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SMTPServer", "self_signed_cert", "smtp_server_factory_fixture", "smtp_server_fixture"]

HOST = "127.0.0.1"
# "AUTH without TLS" is what the plain+auth server is for; the other is aiosmtpd talking to itself.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
TLSMode = Literal["none", "starttls", "implicit"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated: str | None = None
    tls: bool = False
    # Which SMTP session (connection) carried it: 1, 2, ... in the order sessions reached RCPT TO.
    connection: int = 0
    message: EmailMessage = field(init=False)

    def __post_init__(self) -> None:
        parsed = BytesParser(policy=default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        self.message = parsed


@cache
def self_signed_cert() -> tuple[Path, Path]:
    """(certificate PEM, key PEM) for 127.0.0.1 and localhost, made once per process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rose-ash test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="rose-ash-smtp-"))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _server_context() -> ssl.SSLContext:
    cert, key = self_signed_cert()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        self.server._connection_number(session)
        answer = self.server._failure_for(address)
        if answer is not None:
            if answer.startswith("421"):
                # RFC 5321 section 3.8: 421 announces that the server closes the channel.
                asyncio.get_running_loop().call_soon(smtp.transport.close)  # type: ignore[union-attr]
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        assert isinstance(content, bytes)
        connection = self.server._connection_number(session)
        self.server._deliver(Received(mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos),
                                      data=content, authenticated=login, connection=connection,
                                      tls=session.ssl is not None or self.server.tls == "implicit"))
        return "250 2.0.0 accepted"


class SMTPServer:
    """See the module docstring."""

    def __init__(self, tls: TLSMode = "none", auth: tuple[str, str] | None = None, port: int = 0) -> None:
        self.tls = tls
        self.auth = auth
        self.port = port or _free_port()
        self.received: list[Received] = []
        self.failures_answered = 0
        self._lock = threading.Condition()
        self._fail_code: int | None = None
        self._fail_text = ""
        self._fail_left: int | None = None
        self._rejected: dict[str, int] = {}
        self._connections = 0
        self._controller: Controller | None = None

    # Configuration ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        userinfo = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@" if self.auth else ""
        return f"{scheme}://{userinfo}{HOST}:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self_signed_cert()[0])

    def env(self) -> dict[str, str]:
        """The environment variables that point a real server process (uvicorn, ``rose-ash worker``) here."""
        env = {"ROSE_ASH_SMTP_URL": self.url}
        if self.tls != "none":
            env["ROSE_ASH_SMTP_CA_FILE"] = self.ca_file
        return env

    def settings(self, base: Any) -> Any:
        """``base`` (app.settings.Settings) sending to this server."""
        return msgspec.structs.replace(base, smtp_url=self.url,
                                       smtp_ca_file=self.ca_file if self.tls != "none" else "")

    # Running ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SMTPServer:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {"hostname": HOST, "port": self.port, "server_hostname": "smtp.test"}
        if self.tls == "implicit":
            kwargs["ssl_context"] = _server_context()
        if self.tls == "starttls":
            kwargs["tls_context"] = _server_context()
            kwargs["require_starttls"] = self.auth is not None
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd only counts STARTTLS as TLS; an implicit-TLS session is encrypted from the start.
            kwargs["auth_require_tls"] = self.tls == "starttls"
            kwargs["auth_required"] = True
        controller = Controller(_Handler(self), **kwargs)
        for _ in range(50):  # the port of a server just stopped may linger a moment
            try:
                controller.start()
                break
            except (OSError, RuntimeError):
                time.sleep(0.1)
        else:
            controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    close = stop

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Failures -----------------------------------------------------------------------------------

    def fail(self, code: int, count: int | None = None, text: str | None = None) -> None:
        with self._lock:
            self._fail_code, self._fail_left = code, count
            self._fail_text = text or {421: "4.3.2 Service shutting down", 451: "4.3.0 Try again later",
                                       550: "5.1.1 Mailbox unavailable"}.get(code, "Failure for the test")

    def recover(self) -> None:
        with self._lock:
            self._fail_code = self._fail_left = None

    def reject(self, address: str, code: int = 550) -> None:
        with self._lock:
            self._rejected[address.lower()] = code

    def _failure_for(self, address: str) -> str | None:
        with self._lock:
            if (code := self._rejected.get(address.lower())) is not None:
                self.failures_answered += 1
                return f"{code} 5.1.1 <{address}>: rejected for the test"
            if self._fail_code is None:
                return None
            code = self._fail_code
            if self._fail_left is not None:
                self._fail_left -= 1
                if self._fail_left <= 0:
                    self._fail_code = self._fail_left = None
            self.failures_answered += 1
            return f"{code} {self._fail_text}"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and auth_data.login.decode() == self.auth[0] and auth_data.password.decode() == self.auth[1])
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # Messages -----------------------------------------------------------------------------------

    def _connection_number(self, session: Session) -> int:
        with self._lock:
            number = getattr(session, "_test_connection", None)
            if number is None:
                self._connections += 1
                number = self._connections
                session._test_connection = number  # type: ignore[attr-defined]
            return int(number)

    def _deliver(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)
            self._lock.notify_all()

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} messages, the SMTP server received {len(self.received)}")
                self._lock.wait(left)
            return list(self.received)

    async def wait_for_async(self, count: int, timeout: float = 30.0) -> list[Received]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, the SMTP server received {len(self.received)}")
            await asyncio.sleep(0.01)
        return list(self.received)


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture(name="smtp_server_factory")
def smtp_server_factory_fixture() -> Iterator[Callable[..., SMTPServer]]:
    servers: list[SMTPServer] = []

    def make(**kwargs: Any) -> SMTPServer:
        server = SMTPServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# The names the first version exported (``from tests.helpers.smtp import smtp_server``): the same fixtures.
smtp_server = smtp_server_fixture
smtp_server_factory = smtp_server_factory_fixture
