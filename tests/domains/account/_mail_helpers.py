"""What the account mail tests share: run the job worker until the queue is empty, then read the
mails the real SMTP server on loopback received and the links in them."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.jobs import JobContext, Worker
from tests.helpers.smtp import SMTPServer

LINK = re.compile(r"https?://[^\s<>\"]+")


async def run_jobs(engine: AsyncEngine, settings: Any) -> int:
    """Run every due job (and the jobs those enqueue) to the end, as the worker would."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    worker = Worker(maker, context=JobContext(sessionmaker=maker, settings=settings))
    runs = 0
    while (n := await worker.run_once()) > 0:
        runs += n
    return runs


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and the HTML part of a received mail."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None, message
    return str(text.get_content()), str(html.get_content())


def link_path(message: EmailMessage, prefix: str) -> str:
    """The path of the one link starting with ``prefix`` in the text part (the HTML part has the same)."""
    text, html = parts(message)
    found = {urlsplit(u).path for u in LINK.findall(text) if urlsplit(u).path.startswith(prefix)}
    assert len(found) == 1, (prefix, text)
    path = found.pop()
    assert path in html, "the HTML part links to the same place"
    return path


def to_address(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)



class Inbox:
    """The messages the real SMTP server (tests/helpers/smtp.py, aiosmtpd on loopback) received,
    parsed back with ``email.parser``."""

    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.server.received]

    def clear(self) -> None:
        self.server.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if to_address(m) == address]
