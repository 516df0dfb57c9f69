"""Sending built messages: one SMTP connection reused for many sends, or .eml files.

``open_transport(settings)`` gives a :class:`MailTransport` for the configured ROSE_ASH_SMTP_URL:

* ``smtp://host[:587]``: plain SMTP upgraded with STARTTLS (RFC 3207) when the server offers it.
  With a user and password STARTTLS is required (the password never crosses in clear), except to a
  loopback host, where a local relay or test server may have no TLS at all.
* ``smtps://host[:465]``: TLS from the first byte (implicit TLS, RFC 8314 section 3.3).
* unset: each message becomes a file under DATA_DIR/mail/ (the admin page lists them).

User and password are URL-encoded in the URL (``smtps://me%40example.org:p%3Ass@host``) and sent
with AUTH (RFC 4954). Errors come out as :class:`MailPermanentError` (a 5xx reply: retrying
cannot help) or :class:`MailTemporaryError` (a 4xx reply, refused connection, timeout, TLS
trouble: try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import io
import ipaddress
import os
import secrets
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = [
    "FileTransport",
    "MailPermanentError",
    "MailTemporaryError",
    "MailTransport",
    "SMTPTransport",
    "mail_dir",
    "open_transport",
]

SMTP_TIMEOUT: Final = 60.0


class MailPermanentError(Exception):
    """The server refused the message for good (a 5xx reply, RFC 5321 section 4.2.1)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code} {text}")


class MailTemporaryError(Exception):
    """Not sent now, may be later: a 4xx reply (``code``), or no usable connection (``code`` 0)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code} {text}" if code else text)


class MailTransport(Protocol):
    """Where built messages go; one instance sends many (a newsletter batch) over one connection."""

    async def send(self, message: EmailMessage) -> None: ...

    async def send_raw(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Send a message already written out (``data``, CRLF line ends, no Bcc field)."""
        ...

    @property
    def description(self) -> str: ...


def mail_dir(settings: Settings) -> Path:
    return settings.data_dir / "mail"


class FileTransport:
    """Writes each message to DATA_DIR/mail/<UTC time>-<random>.eml, atomically (temporary file,
    then rename), readable by the owner only: the mails hold password-reset links."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def description(self) -> str:
        return f"files in {self.directory}"

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self.write, message)

    async def send_raw(self, sender: str, recipients: list[str], data: bytes) -> None:
        await asyncio.to_thread(self.write, data)

    def write(self, message: EmailMessage | bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Sortable by name: newest last in a listing, newest first reversed.
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}.eml"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(message if isinstance(message, bytes) else message.as_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One client TLS context per CA file, shared by every connection: loading the system's CA
    certificates took ~70 ms, paid by each newsletter batch (bench/newsletter_campaign.py)."""
    return ssl.create_default_context(cafile=ca_file)


class SMTPTransport:
    """One SMTP session, opened at the first send and reopened if the server drops it."""

    def __init__(self, settings: Settings) -> None:
        parts = urlsplit(settings.smtp_url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or ""
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        self.tls_context = _tls_context(settings.smtp_ca_file or None)
        # None: STARTTLS when offered; True: required (a password never crosses in clear off this machine).
        self.start_tls: bool | None = None
        if not self.implicit_tls and self.username is not None and not _is_loopback(self.host):
            self.start_tls = True
        self._smtp: aiosmtplib.SMTP | None = None

    @property
    def description(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.implicit_tls, start_tls=self.start_tls,
            tls_context=self.tls_context, timeout=SMTP_TIMEOUT,
        )
        try:
            await smtp.connect()
            if self.username is not None:
                await smtp.login(self.username, self.password or "")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                smtp.close()
            if isinstance(exc, Exception):
                raise _classify(exc) from exc
            raise
        return smtp

    async def send(self, message: EmailMessage) -> None:
        await self.send_raw(*envelope(message))

    async def send_raw(self, sender: str, recipients: list[str], data: bytes) -> None:
        for attempt in (1, 2):
            if self._smtp is None or not self._smtp.is_connected:
                self._smtp = await self._connect()
            try:
                await self._smtp.sendmail(sender, recipients, data)
                return
            except aiosmtplib.SMTPServerDisconnected as exc:
                # A connection the server closed while idle between two sends: reconnect once.
                self._drop()
                if attempt == 2:
                    raise MailTemporaryError(0, f"the SMTP server closed the connection: {exc}") from exc
            except Exception as exc:
                error = _classify(exc)
                if error.code == 421 or not self._smtp.is_connected:
                    self._drop()  # 421: the server is closing the channel (RFC 5321 section 3.8)
                raise error from exc

    def _drop(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(Exception):
                self._smtp.close()
        self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            with contextlib.suppress(Exception):
                await self._smtp.quit()
        self._drop()


def envelope(message: EmailMessage) -> tuple[str, list[str], bytes]:
    """Envelope sender, recipients (To, Cc, Bcc) and the bytes to send (Bcc removed): written once
    with the message's policy (app.mail.message.POLICY), which aiosmtplib's ``send_message`` would
    replace with its own and write again."""
    sender_header = message["Sender"] or message["From"]
    senders = getattr(sender_header, "addresses", ())
    if not senders:
        raise MailPermanentError(0, "the message has no From address")
    recipients = [a.addr_spec for field in ("To", "Cc", "Bcc") for header in message.get_all(field, [])
                  for a in getattr(header, "addresses", ())]
    if not recipients:
        raise MailPermanentError(0, "the message has no recipient")
    if "Bcc" in message:
        message = copy.copy(message)
        del message["Bcc"]
    with io.BytesIO() as out:
        BytesGenerator(out, policy=message.policy).flatten(message)
        return senders[0].addr_spec, recipients, out.getvalue()


def _classify(exc: Exception) -> MailPermanentError | MailTemporaryError:
    """The reply code decides (RFC 5321 section 4.2.1): 5yz permanent, anything else temporary."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    code = getattr(exc, "code", 0)
    text = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= code <= 599:
        return MailPermanentError(code, text)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return MailTemporaryError(code if 400 <= code <= 499 else 0, text)
    return MailTemporaryError(0, f"{type(exc).__name__}: {text}")


@contextlib.asynccontextmanager
async def open_transport(settings: Settings) -> AsyncIterator[MailTransport]:
    """The configured transport, closed (SMTP ``QUIT``) on leaving the block."""
    if not settings.smtp_url:
        yield FileTransport(mail_dir(settings))
        return
    transport = SMTPTransport(settings)
    try:
        yield transport
    finally:
        await transport.close()
