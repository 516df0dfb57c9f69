"""Many copies of one mail, written fast: :class:`BatchTemplate`.

A newsletter sends the same message to thousands of recipients; only a few things differ per copy
(To, Date, Message-ID and the recipient's unsubscribe link, in a header and in both bodies). Building
each copy with :func:`~app.mail.message.build_message` and the standard library's generator cost
three times what sending it did (bench/newsletter.py). A template does the shared work once, with
``build_message``'s own rules (the same header objects, folds and encodings), and each copy joins
bytes prepared once with the few lines that hold that recipient's values:

* shared header fields are folded to bytes once (RFC 5322 section 2.2.3, RFC 2047 encoded words);
* per-recipient fields (To, Date, Message-ID, a header holding a marker) are folded per copy by the
  same functions ``build_message`` uses;
* each body is cut into lines; those without a marker are encoded once (7bit or quoted-printable,
  RFC 2045 section 6.7; quoted-printable is line by line, so a line's encoding does not depend on
  its neighbours), the lines with a marker are encoded per copy.

The bytes are those ``build_message`` plus the generator would write for the same values (the tests
compare them byte for byte). A copy the prepared lines cannot express (a value that turns a 7bit
body into quoted-printable or makes a line longer than RFC 5322's 998 characters, a body whose line
ends quoted-printable would treat as a whole) is built by ``build_message`` instead: slower, never wrong.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from app.mail.message import (
    _BOUNDARY,
    POLICY,
    OutgoingMail,
    _address,
    _encoded_recipient,
    _fold_ascii,
    _header,
    _one_line,
    build_message,
    check_mail,
    new_message_id,
    render_bodies,
    valid_address,
)
from app.mail.transport import envelope

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["BatchTemplate", "RawMessage"]

CRLF: Final = "\r\n"
# What email.generator writes as a line end (its NLCRE): any of these becomes CRLF.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
# RFC 5322 section 2.1.1: at most 998 characters on a line, without the CRLF.
_MAX_LINE: Final = 998
_SAMPLE_TO: Final = "recipient@example.org"
_SAMPLE_ID: Final = "<sample@example.org>"


class RawMessage(NamedTuple):
    """A message ready for SMTP: envelope sender, envelope recipients and the DATA bytes."""

    sender: str
    recipients: list[str]
    data: bytes


def _raw_field(name: str, folded: str) -> bytes:
    """A field stored already folded (``set_raw``) as the generator writes it (refold_source "none")."""
    return (name + ": " + CRLF.join(folded.splitlines()) + CRLF).encode("ascii")


def _shared_field(name: str, text: str) -> bytes:
    """What ``build_message``'s ``_set(message, name, text)`` writes: the shared parsed header, folded."""
    return POLICY.fold_binary(name, _header(name, text))


def _own_field(name: str, text: str) -> bytes:
    """What ``_set(message, name, text, per_message=True)`` writes (not cached: the value is one copy's)."""
    folded = _fold_ascii(name, text) if text.isascii() and "=?" not in text else None
    if folded is not None:
        return _raw_field(name, folded)
    return EmailPolicy.fold_binary(POLICY, name, POLICY.header_factory(name, text))


def _to_field(name: str, address: str) -> bytes:
    if name.isascii():
        return _own_field("To", str(_address(name, address)))
    return _raw_field("To", _encoded_recipient(name, address))


def _qp(text: str) -> str:
    """``_text_part``'s quoted-printable, with the generator's CRLF line ends."""
    return _LINE_END.sub(CRLF, binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii"))


class _Body:
    """One text part prepared in both encodings ``_text_part`` may choose, as pieces: ``bytes`` the
    same in every copy, ``str`` a line holding a marker, encoded per copy."""

    def __init__(self, body: str, markers: Sequence[str]) -> None:
        self.markers = markers
        lines = body.splitlines()
        # 7bit: "\n".join(body.splitlines()) + "\n", written with CRLF.
        self.ascii = body.isascii()
        # A last line with no line end that a value empties is no line at all to str.splitlines.
        self.open_end = bool(lines) and self._marked(lines[-1]) and body[-1:].splitlines() != [""]
        self.fixed_lines_fit = all(len(line) <= _MAX_LINE for line in lines if not self._marked(line))
        self.seven: list[bytes | str] = []
        run: list[str] = []
        for line in lines if self.ascii else ():
            if self._marked(line):
                if run:
                    self.seven.append((CRLF.join(run) + CRLF).encode("ascii", "surrogateescape"))
                    run = []
                self.seven.append(line)
            else:
                run.append(line)
        if run or (self.ascii and not lines):  # an empty body is one empty line
            self.seven.append((CRLF.join(run) + CRLF).encode("ascii", "surrogateescape"))
        # Quoted-printable, by lines cut after each "\n"; usable only if that encodes as the whole
        # does (b2a_qp picks CRLF or LF output from the body's first line end, for one thing).
        self.qp: list[bytes | str] | None = []
        pieces = body.split("\n")
        chunks = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        fixed = ""
        for chunk in chunks:
            if self._marked(chunk):
                if fixed:
                    self.qp.append(_qp(fixed).encode("ascii"))
                    fixed = ""
                self.qp.append(chunk)
            else:
                fixed += chunk
        if fixed:
            self.qp.append(_qp(fixed).encode("ascii"))
        whole = "".join(p.decode("ascii") if isinstance(p, bytes) else _qp(p) for p in self.qp)
        if whole != _qp(body):
            self.qp = None
        # build_message picks another boundary when a 7bit part contains this process's.
        self.boundary_free = _BOUNDARY not in body

    def _marked(self, line: str) -> bool:
        return any(marker in line for marker in self.markers)

    def _fill(self, line: str, values: Mapping[str, str]) -> str:
        for marker, value in values.items():
            line = line.replace(marker, value)
        return line

    def encode(self, values: Mapping[str, str]) -> tuple[bool, bytes] | None:
        """(is quoted-printable, the encoded body) for these values, or None when only
        ``build_message`` can write it."""
        if self.ascii and self.fixed_lines_fit:
            out: list[bytes] = []
            for piece in self.seven:
                if isinstance(piece, bytes):
                    out.append(piece)
                    continue
                line = self._fill(piece, values)
                if len(line) > _MAX_LINE or not line.isascii():
                    break  # quoted-printable then
                if _BOUNDARY in line or (not line and self.open_end and piece is self.seven[-1]):
                    return None
                out.append((line + CRLF).encode("ascii"))
            else:
                return False, b"".join(out)
        if self.qp is None:
            return None
        return True, b"".join(p if isinstance(p, bytes) else _qp(self._fill(p, values)).encode("ascii")
                              for p in self.qp)


class BatchTemplate:
    """``mail`` prepared for many recipients; :meth:`render` writes one copy.

    ``mail.to`` and ``mail.to_name`` are placeholders (any valid address): each copy has its own.
    ``markers`` are strings in ``mail.headers`` values and in the bodies (rendered from
    ``mail.template`` unless ``bodies`` is given) that :meth:`render` replaces with each copy's
    values; they should be ASCII with no character HTML escaping would change. Raises
    ``ValueError`` for anything ``build_message`` refuses, and the transport's errors for a mail
    with no From address.
    """

    def __init__(self, mail: OutgoingMail, settings: Settings, *, bodies: tuple[str, str | None] | None = None,
                 markers: Sequence[str] = ()) -> None:
        check_mail(mail)
        self.mail = mail
        self.settings = settings
        self.markers = tuple(markers)
        self.bodies = bodies if bodies is not None else render_bodies(mail, settings)
        sample = build_message(mail, settings, bodies=self.bodies, message_id=_SAMPLE_ID)
        self.sender = envelope(sample)[0]
        text, html = self.bodies
        self.text = _Body(text, self.markers)
        self.html = _Body(html, self.markers) if html is not None else None
        # The header fields in build_message's order: bytes, or a name to write per copy.
        head: list[bytes | str] = []
        for name, value in sample.raw_items():
            if name in ("To", "Date", "Message-ID") or (name in mail.headers and self._marked(mail.headers[name])):
                head.append(name)
            elif name in ("Content-Type", "Content-Transfer-Encoding") and html is None:
                break  # a one-part message: the part's fields come last and depend on its encoding
            else:
                head.append(POLICY.fold_binary(name, value))
        self.head = head
        self.part_heads = {
            enc: {subtype: _shared_field("Content-Type", f'text/{subtype}; charset="utf-8"')
                  + _shared_field("Content-Transfer-Encoding", enc) for subtype in ("plain", "html")}
            for enc in ("7bit", "quoted-printable")
        }
        self.multipart = (f"--{_BOUNDARY}{CRLF}".encode("ascii"), f"{CRLF}--{_BOUNDARY}{CRLF}".encode("ascii"),
                          f"{CRLF}--{_BOUNDARY}--{CRLF}".encode("ascii"))
        self._date: tuple[datetime, bytes] | None = None

    def _marked(self, value: str) -> bool:
        return any(marker in value for marker in self.markers)

    def _date_field(self, date: datetime | None) -> bytes:
        when = (date or datetime.now(UTC)).replace(microsecond=0)  # the Date field has whole seconds
        if self._date is None or self._date[0] != when:
            self._date = (when, _own_field("Date", format_datetime(when)))
        return self._date[1]

    def render(self, to: str, to_name: str = "", *, values: Mapping[str, str] | None = None,
               message_id: str | None = None, date: datetime | None = None) -> RawMessage:
        """The copy for ``to`` with ``values`` (marker to value) in place of the markers: the bytes
        ``build_message`` would give the mail with those values. ``ValueError`` as ``build_message``."""
        values = values or {}
        address = valid_address(to)
        if address is None:
            raise ValueError(f"not a mail address: {to!r}")
        _one_line("to_name", to_name)
        for marker, value in values.items():
            _one_line(f"the value for {marker}", value)
            if value.splitlines() not in ([value], []):
                # Another line break str.splitlines knows (form feed, U+2028...): 7bit bodies are
                # cut at those, so only build_message knows where the lines fall.
                return self._built(address, to_name, values, message_id, date)
        text = self.text.encode(values)
        html = self.html.encode(values) if self.html is not None else None
        if text is None or (self.html is not None and html is None) or not self.text.boundary_free or (
                self.html is not None and not self.html.boundary_free):
            return self._built(address, to_name, values, message_id, date)
        out: list[bytes] = []
        for field in self.head:
            if isinstance(field, bytes):
                out.append(field)
            elif field == "To":
                out.append(_to_field(to_name, address))
            elif field == "Date":
                out.append(self._date_field(date))
            elif field == "Message-ID":
                out.append(_own_field("Message-ID", message_id or new_message_id(self.settings)))
            else:
                out.append(_own_field(field, self._fill(self.mail.headers[field], values)))
        text_qp, text_bytes = text
        if html is None:
            out += [self.part_heads["quoted-printable" if text_qp else "7bit"]["plain"], CRLF.encode(), text_bytes]
        else:
            html_qp, html_bytes = html
            first, between, last = self.multipart
            out += [CRLF.encode(), first,
                    self.part_heads["quoted-printable" if text_qp else "7bit"]["plain"], CRLF.encode(), text_bytes,
                    between,
                    self.part_heads["quoted-printable" if html_qp else "7bit"]["html"], CRLF.encode(), html_bytes,
                    last]
        return RawMessage(self.sender, [address], b"".join(out))

    def _fill(self, value: str, values: Mapping[str, str]) -> str:
        for marker, replacement in values.items():
            value = value.replace(marker, replacement)
        return value

    def _built(self, address: str, to_name: str, values: Mapping[str, str], message_id: str | None,
               date: datetime | None) -> RawMessage:
        """The slow way, for a copy the prepared pieces cannot write."""
        mail = msgspec.structs.replace(self.mail, to=address, to_name=to_name,
                                       headers={k: self._fill(v, values) for k, v in self.mail.headers.items()})
        text, html = self.bodies
        bodies = (self._fill(text, values), self._fill(html, values) if html is not None else None)
        sender, recipients, data = envelope(build_message(mail, self.settings, message_id=message_id,
                                                          bodies=bodies, date=date))
        return RawMessage(sender, recipients, data)
