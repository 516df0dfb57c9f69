"""Building mails: :class:`OutgoingMail` (what a domain wants sent) to a standard-library
``EmailMessage`` (what goes on the wire), with the checks that keep user data out of the headers.

Header fields follow RFC 5322; non-ASCII display names and subjects are encoded words (RFC 2047)
written by ``email.policy.SMTP``. A value that would end a header line (CR or LF) is refused with
``ValueError`` before anything is built, so no input can add a header of its own.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import jinja2
import msgspec

from app.templating import TEMPLATES_DIR

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = [
    "MAIL_TEMPLATES",
    "TAG_HEADER",
    "OutgoingMail",
    "build_message",
    "check_mail",
    "mail_environment",
    "message_id_left",
    "new_message_id",
    "render_bodies",
    "valid_address",
]

MAIL_TEMPLATES: Final = TEMPLATES_DIR / "mail"
# Which kind of mail this is ("transactional", "newsletter", "test"): the admin page shows it for
# .eml files, where no mail log row stands beside the message.
TAG_HEADER: Final = "X-Rose-Ash-Tag"

# Headers build_message writes itself: an extra header may not replace or double them.
_OWN_HEADERS: Final = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition", "return-path", "received",
    TAG_HEADER.lower(),
})
# RFC 5322 section 3.6.8: a field name is printable US-ASCII except the colon.
_FIELD_NAME: Final = re.compile(r"[!-9;-~]{1,76}")
# RFC 5322 section 3.2.3 dot-atom for the local part (no quoted strings: nobody types them into a form).
_LOCAL: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 1035 section 2.3.1 labels (letters, digits, hyphens; not at either end), after IDNA encoding.
_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TEMPLATE_NAME: Final = re.compile(r"[a-z0-9_][a-z0-9_-]*(/[a-z0-9_][a-z0-9_-]*)*")


class OutgoingMail(msgspec.Struct, frozen=True, kw_only=True):
    """One mail to one recipient, as a domain describes it (also the ``mail.send`` job payload).

    ``template`` "account/verify" renders templates/mail/account/verify.txt and, when it exists,
    verify.html, with ``context`` (JSON-able: it is stored in the job). ``headers`` are extra header
    fields (List-Unsubscribe...); ``from_name`` replaces the display name of ROSE_ASH_MAIL_FROM;
    ``tag`` says what kind of mail it is (shown to admins).
    """

    to: str
    to_name: str = ""
    subject: str
    template: str
    context: dict[str, Any] = {}
    headers: dict[str, str] = {}
    from_name: str | None = None
    reply_to: str | None = None
    tag: str = "transactional"


def valid_address(value: str) -> str | None:
    """The address in canonical form (trimmed, domain lower-cased and IDNA-encoded), or None.

    Accepts what RFC 5321/5322 allow and people type: a dot-atom local part of at most 64
    characters (RFC 5321 section 4.5.3.1.1), a domain of at least two LDH labels, 254 characters
    in all. Display names, comments, quoted local parts and address literals are refused, as is
    anything with whitespace or control characters.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or len(local) > 64:
        return None
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower() if domain else ""
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    address = f"{local}@{ascii_domain}"
    return address if len(address) <= 254 else None


def _one_line(what: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{what} must be one line: a line break there would start a new header")
    return value


def check_mail(mail: OutgoingMail) -> None:
    """Refuse what cannot become a safe message, before anything is queued (``ValueError``)."""
    if valid_address(mail.to) is None:
        raise ValueError(f"not a mail address: {mail.to!r}")
    if mail.reply_to is not None and valid_address(mail.reply_to) is None:
        raise ValueError(f"reply_to is not a mail address: {mail.reply_to!r}")
    _one_line("to_name", mail.to_name)
    _one_line("subject", mail.subject)
    if not mail.subject.strip():
        raise ValueError("a mail needs a subject")
    if mail.from_name is not None:
        _one_line("from_name", mail.from_name)
    _one_line("tag", mail.tag)
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"not a header field name: {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name!r} is written by build_message, not by the caller")
        _one_line(f"header {name}", value)
    if not _TEMPLATE_NAME.fullmatch(mail.template) or not (MAIL_TEMPLATES / f"{mail.template}.txt").is_file():
        raise ValueError(f"no mail template templates/mail/{mail.template}.txt")
    try:
        msgspec.json.encode(mail.context)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"the context of a mail must be JSON-able: {exc}") from exc


@lru_cache(maxsize=8)
def mail_environment(site_name: str, base_url: str) -> jinja2.Environment:
    """Jinja for mails: the app's templates directory and globals, HTML escaped and text not.

    A name a template uses but the context lacks is an error (StrictUndefined): a mail with an
    empty link is worse than a job that fails loudly in the tests.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(MAIL_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.globals.update({"site_name": site_name, "base_url": base_url})
    return env


def render_bodies(mail: OutgoingMail, settings: Settings) -> tuple[str, str | None]:
    """The text part and, when the template has an .html sibling, the HTML part."""
    env = mail_environment("Rose Ash", settings.base_url)
    context = {"subject": mail.subject, "to": mail.to, "to_name": mail.to_name, **mail.context}
    text = env.get_template(f"{mail.template}.txt").render(context)
    try:
        html_template = env.get_template(f"{mail.template}.html")
    except jinja2.TemplateNotFound:
        return text, None
    return text, html_template.render(context)


def message_id_left() -> str:
    """A unique left part for a Message-ID: the time and 128 random bits."""
    return f"{datetime.now(UTC):%Y%m%d%H%M%S}.{secrets.token_hex(16)}"


def new_message_id(settings: Settings, left: str | None = None) -> str:
    """A ``Message-ID`` (RFC 5322 section 3.6.4) on BASE_URL's host: ``<left@host>``."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    if ":" in host:  # an IPv6 BASE_URL: a dot-atom right part cannot hold it
        host = "localhost"
    return f"<{left or message_id_left()}@{host}>"


def _address(display_name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=display_name, username=local, domain=domain)


def _transfer_encoding(body: str) -> str:
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):  # RFC 5322 section 2.1.1
        return "7bit"
    return "quoted-printable"


def build_message(mail: OutgoingMail, settings: Settings, *, message_id: str | None = None,
                  bodies: tuple[str, str | None] | None = None) -> EmailMessage:
    """The message for ``mail``: text part plus an HTML alternative when the template has one.

    ``message_id`` keeps one id across retries of the same mail. ``bodies`` (text, HTML or None)
    replaces rendering ``mail.template``, for a batch that renders its parts itself (the template
    must still exist). Raises ``ValueError`` for anything :func:`check_mail` refuses.
    """
    check_mail(mail)
    to = valid_address(mail.to)
    assert to is not None  # check_mail refused anything else
    from_display, from_address = parseaddr(settings.mail_from)
    message = EmailMessage(policy=SMTP)
    message["From"] = _address(mail.from_name if mail.from_name is not None else from_display, from_address)
    message["To"] = _address(mail.to_name, to)
    if mail.reply_to is not None:
        message["Reply-To"] = _address("", valid_address(mail.reply_to) or "")
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or new_message_id(settings)
    # RFC 3834 section 5: machines answering a mailbox must not answer this one (no vacation loops).
    message["Auto-Submitted"] = "auto-generated"
    message[TAG_HEADER] = mail.tag
    for name, value in mail.headers.items():
        message[name] = value
    text, html = bodies if bodies is not None else render_bodies(mail, settings)
    # Quoted-printable keeps non-ASCII text legible in any client's "show source" (the default
    # would pick base64 whenever it is shorter); plain ASCII stays 7bit.
    message.set_content(text, charset="utf-8", cte=_transfer_encoding(text))
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte=_transfer_encoding(html))
    return message
