"""``/account/admin/mail``: the mails written as .eml files (no ROSE_ASH_SMTP_URL) and the mail log.

With no SMTP server configured (``make run``), every mail lands in DATA_DIR/mail/; this is where an
administrator reads them: newest first, then one message with its headers, its text part (escaped)
and its HTML part in a sandboxed frame (no scripts, no same-origin access: a mail's HTML is never
trusted). The mail log below lists the recent transactional sends and their SMTP answers.

Private: mounted for signed-in members and answering 404 to anybody but an administrator, like
the admin home, so the page does not announce itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
from litestar import Controller, Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.mail import TAG_HEADER, MailLog, mail_dir
from app.responses import PRIVATE
from app.settings import Settings

__all__ = ["MailAdminController"]

PER_PAGE: Final = 50
LOG_ROWS: Final = 50
# The names FileTransport writes (app/mail/transport.py); nothing else in the directory is shown,
# and a path parameter that is not one of them never reaches the file system.
EML_NAME: Final = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}\.eml")
MAX_EML_BYTES: Final = 10 << 20


def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Anybody but an administrator: 404 (private looks like absent)."""
    user = connection.scope.get("user")
    if not getattr(user, "is_admin", False):
        raise NotFoundException()


@dataclass(frozen=True)
class MailFile:
    name: str
    subject: str
    to: str
    sender: str
    date: datetime | None
    tag: str


def _eml_names(directory: Path) -> list[str]:
    try:
        names = [p.name for p in directory.iterdir() if EML_NAME.fullmatch(p.name)]
    except FileNotFoundError:
        return []
    return sorted(names, reverse=True)  # the names start with the UTC time: newest first


def _date(message: EmailMessage) -> datetime | None:
    try:
        return parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        return None


def _read(path: Path, headers_only: bool) -> EmailMessage:
    with path.open("rb") as fh:
        parsed = BytesParser(policy=default).parse(fh, headersonly=headers_only)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _summaries(directory: Path, names: Sequence[str]) -> list[MailFile]:
    out = []
    for name in names:
        try:
            message = _read(directory / name, headers_only=True)
        except OSError:  # removed meanwhile
            continue
        out.append(MailFile(name=name, subject=str(message["Subject"] or ""), to=str(message["To"] or ""),
                            sender=str(message["From"] or ""), date=_date(message),
                            tag=str(message[TAG_HEADER] or "")))
    return out


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, broken encoding: show the raw payload
        content = str(part.get_payload())
    return content if isinstance(content, str) else None


class MailAdminController(Controller):
    path = "/account/admin/mail"
    guards = [admins_only]
    cache_control = PRIVATE

    @get("/", name="account:admin-mail")
    async def index(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                    page: Annotated[int, Parameter(ge=1, le=1_000_000)] = 1) -> Template:
        settings: Settings = request.app.state.settings
        directory = mail_dir(settings)
        names = await anyio.to_thread.run_sync(_eml_names, directory)
        pages = max(1, math.ceil(len(names) / PER_PAGE))
        if page > pages:
            raise NotFoundException("No such page.")
        shown = names[(page - 1) * PER_PAGE:page * PER_PAGE]
        files = await anyio.to_thread.run_sync(_summaries, directory, shown)
        log = (await db_session.scalars(select(MailLog).order_by(MailLog.created_at.desc()).limit(LOG_ROWS))).all()
        return Template("account/admin/mail.html", context={
            "files": files, "total": len(names), "page": page, "pages": pages,
            "prev": page - 1 if page > 1 else None, "next": page + 1 if page < pages else None,
            "log": log, "smtp": bool(settings.smtp_url), "directory": str(directory),
        })

    @get("/{name:str}", name="account:admin-mail-message")
    async def message(self, request: Request[Any, Any, Any], name: str) -> Template:
        if not EML_NAME.fullmatch(name):
            raise NotFoundException()
        settings: Settings = request.app.state.settings
        path = mail_dir(settings) / name
        try:
            if path.stat().st_size > MAX_EML_BYTES:
                raise NotFoundException("This mail is too large to show here.")
            message = await anyio.to_thread.run_sync(_read, path, False)
        except FileNotFoundError as exc:
            raise NotFoundException() from exc
        headers = [(key, str(value)) for key, value in message.items()]
        return Template("account/admin/mail_message.html", context={
            "name": name, "headers": headers, "subject": str(message["Subject"] or ""),
            "text": _part(message, "plain"), "html": _part(message, "html"),
        })
