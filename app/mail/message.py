"""Building mails: :class:`OutgoingMail` (what a domain wants sent) to a standard-library
``EmailMessage`` (what goes on the wire), with the checks that keep user data out of the headers.

Header fields follow RFC 5322; non-ASCII display names and subjects are encoded words (RFC 2047)
written by ``email.policy.SMTP``. A value that would end a header line (CR or LF) is refused with
``ValueError`` before anything is built, so no input can add a header of its own.
"""

from __future__ import annotations

import binascii
import re
import secrets
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
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
    "POLICY",
    "TAG_HEADER",
    "MailPolicy",
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


class MailPolicy(EmailPolicy):
    """``email.policy.SMTP`` (CRLF line ends, RFC 2047 encoded words) that folds each distinct
    header once per process: a newsletter repeats From, Subject, List-Id and the parts' headers for
    every recipient, and refolding them each time was most of the cost of writing a message out."""

    def fold(self, name: str, value: str) -> str:
        if hasattr(value, "name"):  # a parsed header object, immutable
            return _fold_once(self, name, value)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if hasattr(value, "name"):
            return _fold_binary_once(self, name, value)
        return super().fold_binary(name, value)


@lru_cache(maxsize=2048)
def _fold_once(policy: EmailPolicy, name: str, value: str) -> str:
    return str(EmailPolicy.fold(policy, name, value))


@lru_cache(maxsize=2048)
def _fold_binary_once(policy: EmailPolicy, name: str, value: str) -> bytes:
    return EmailPolicy.fold_binary(policy, name, value)


# refold_source="none": a header stored already folded (:func:`_set`'s ``set_raw``) is written as
# it is. The default ("long") re-folds one with a line over 78 characters, which for a long URL
# (List-Unsubscribe, RFC 2369 section 2 and RFC 8058 section 3.1) means RFC 2047 encoded words
# that no mail client reads as a URL; such lines stay within RFC 5322's 998 (section 2.1.1).
POLICY: Final = MailPolicy(linesep="\r\n", refold_source="none")


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


# Every character that str.splitlines() breaks on (VT, FF, FS, GS, RS, NEL, U+2028, U+2029 as well as
# CR and LF) and the other control characters: the folding code joins splitlines() with CRLF, so any
# of them in a header value would start a new header or the body.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(what: str, value: str) -> str:
    if _CONTROL.search(value) or value.splitlines() not in ([value], []):
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


@lru_cache(maxsize=1024)
def _header(name: str, value: str) -> Any:
    """The parsed header object ``message[name] = value`` would make, shared between messages.

    Header objects are immutable, and the policy stores one it is given as is; a batch repeats
    most of its headers (From, Subject, List-Id, each part's Content-Type) for every recipient,
    and parsing them again each time was most of the cost of building a message.
    """
    return POLICY.header_factory(name, value)


def _set(message: EmailMessage, name: str, value: str | Address, *, per_message: bool = False) -> None:
    """``message[name] = value``, cheaply.

    A header the same in every message of a batch is parsed once (:func:`_header`). One that
    differs per message (``per_message``: To, Message-ID, Date) and is one short line of ASCII is
    already what folding would write (RFC 5322 section 2.2.3), so it is stored as such rather
    than parsed into a tree that folding would walk again; anything else goes through the policy.
    The callers have refused line breaks (:func:`check_mail`).
    """
    text = str(value)  # str(Address) quotes the display name as needed
    folded = _fold_ascii(name, text) if per_message and text.isascii() and "=?" not in text else None
    if folded is not None:
        message.set_raw(name, folded)
    else:
        message[name] = _header(name, text)


def _encoded_recipient(name: str, address: str) -> str:
    """``name <address>`` with a non-ASCII name as RFC 2047 encoded words (section 5 (3): a phrase)
    of at most 75 characters each (section 2), on folded lines of at most 78.

    Written here rather than by the policy: its folder costs more than the rest of a message
    together, and splits a long name so that it reads back with spaces inside (CPython 3.11).
    Adjacent encoded words are one text again when decoded (section 6.2).
    """
    phrase = Header(name, "utf-8", maxlinelen=76, header_name="To").encode(linesep="\n")
    last = phrase.rsplit("\n", 1)[-1]
    return f"{phrase} <{address}>" if len(last) + len(address) + 3 <= 78 else f"{phrase}\n <{address}>"


def _fold_ascii(name: str, text: str) -> str | None:
    """``text`` folded at its spaces into lines of at most 78 characters where its words allow,
    998 at most (RFC 5322 sections 2.1.1 and 2.2.3: a fold is a line break before white space),
    or None for what the policy should fold (runs of spaces, a word longer than that)."""
    words = text.split(" ")
    lines: list[str] = []
    line, room = "", 78 - len(name) - 2
    for word in words:
        if not word:
            return None  # runs of spaces: leave them to the policy
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= room:
            line += " " + word
        else:
            lines.append(line)
            line, room = " " + word, 78
        if len(line) > room and (" " in line.strip() or len(line) > 998 - len(name) - 2):
            return None
    lines.append(line)
    return "\n".join(lines)


def _text_part(body: str, subtype: str) -> EmailMessage:
    """One ``text/<subtype>; charset=utf-8`` part (RFC 2045, RFC 2046 section 4.1).

    7bit when the body is ASCII in lines of at most 998 characters (RFC 5322 section 2.1.1), else
    quoted-printable (RFC 2045 section 6.7), which keeps non-ASCII text legible in any client's
    "show source" where base64 would not. Built directly rather than with ``set_content``, whose
    repeated header re-parsing made building a message cost more than sending it (bench/newsletter.py).
    """
    part = EmailMessage(policy=POLICY)
    _set(part, "Content-Type", f'text/{subtype}; charset="utf-8"')
    lines = body.splitlines()
    if body.isascii() and all(len(line) <= 998 for line in lines):
        _set(part, "Content-Transfer-Encoding", "7bit")
        part.set_payload("\n".join(lines) + "\n")
    else:
        _set(part, "Content-Transfer-Encoding", "quoted-printable")
        # istext: line ends stay line ends; the generator writes them as CRLF (policy.SMTP).
        part.set_payload(binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii"))
    return part


def build_message(mail: OutgoingMail, settings: Settings, *, message_id: str | None = None,
                  bodies: tuple[str, str | None] | None = None, date: datetime | None = None) -> EmailMessage:
    """The message for ``mail``: text part plus an HTML alternative when the template has one.

    ``message_id`` keeps one id across retries of the same mail. ``bodies`` (text, HTML or None)
    replaces rendering ``mail.template``, for a batch that renders its parts itself (the template
    must still exist). ``date`` (default now) is the Date header. Raises ``ValueError`` for anything
    :func:`check_mail` refuses. A batch of many recipients uses :class:`app.mail.batch.BatchTemplate`,
    which writes the same bytes for far less.
    """
    check_mail(mail)
    to = valid_address(mail.to)
    assert to is not None  # check_mail refused anything else
    from_display, from_address = parseaddr(settings.mail_from)
    message = EmailMessage(policy=POLICY)
    _set(message, "From", _address(mail.from_name if mail.from_name is not None else from_display, from_address))
    if mail.to_name.isascii():
        _set(message, "To", _address(mail.to_name, to), per_message=True)
    else:
        message.set_raw("To", _encoded_recipient(mail.to_name, to))
    if mail.reply_to is not None:
        _set(message, "Reply-To", _address("", valid_address(mail.reply_to) or ""))
    _set(message, "Subject", mail.subject)
    _set(message, "Date", format_datetime(date or datetime.now(UTC)), per_message=True)
    _set(message, "Message-ID", message_id or new_message_id(settings), per_message=True)
    # RFC 3834 section 5: machines answering a mailbox must not answer this one (no vacation loops).
    _set(message, "Auto-Submitted", "auto-generated")
    _set(message, TAG_HEADER, mail.tag)
    for name, value in mail.headers.items():
        _set(message, name, value, per_message=True)
    text, html = bodies if bodies is not None else render_bodies(mail, settings)
    _set(message, "MIME-Version", "1.0")
    text_part = _text_part(text, "plain")
    if html is None:
        for name, value in text_part.items():
            message[name] = value
        message.set_payload(text_part.get_payload())
        return message
    # RFC 2046 section 5.1.4: the parts in increasing order of preference, plain text first.
    html_part = _text_part(html, "html")
    _set(message, "Content-Type", f'multipart/alternative; boundary="{_boundary(text_part, html_part)}"')
    message.set_payload([text_part, html_part])
    return message


_BOUNDARY: Final = f"=_{secrets.token_hex(16)}"


def _boundary(*parts: EmailMessage) -> str:
    """This process's random boundary (one parsed Content-Type for every message), unless a part
    contains it (RFC 2046 section 5.1.1): only a 7bit one can, quoted-printable writes "=" as "=3D"."""
    if not any(_BOUNDARY in str(part.get_payload()) for part in parts):
        return _BOUNDARY
    while True:
        fresh = f"=_{secrets.token_hex(16)}"
        if not any(fresh in str(part.get_payload()) for part in parts):
            return fresh
