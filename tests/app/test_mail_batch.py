"""``BatchTemplate``: the copies of a newsletter written from a prepared template are the bytes
``build_message`` writes for the same mail, parse back alike, refuse header injection, and go
through the real SMTP and .eml transports."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.mail import FileTransport, OutgoingMail, build_message, open_transport
from app.mail.batch import BatchTemplate, RawMessage
from app.mail.message import _BOUNDARY
from app.mail.transport import envelope
from app.settings import Settings
from tests.helpers.smtp import SMTPServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)

MARK = "https://unsubscribe.invalid/MARK"
WHEN = datetime(2026, 12, 7, 5, 30, 12, tzinfo=UTC)
MID = "<copy-1@coop.example>"
HEADERS = {"List-Unsubscribe": f"<{MARK}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
           "List-Id": "<news.coop.example>"}
TEXT = f"Spring news\n===========\n\nThe bakery opens a second stall.\n\nUnsubscribe: {MARK}\n"
HTML = f'<h1>Spring news</h1>\n<p>The bakery opens a second stall.</p>\n<a href="{MARK}">Unsubscribe</a>\n'


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data", base_url="https://coop.example",
                             secret_key="test-secret-key-not-for-production-0123456789",
                             mail_from="Rose Ash <news@coop.example>")


def issue(subject: str = "Spring news — café", **changes: Any) -> OutgoingMail:
    fields: dict[str, Any] = {"to": "sample@example.org", "subject": subject, "template": "test",
                              "from_name": "Le Café Coop", "tag": "newsletter", "headers": HEADERS}
    fields.update(changes)
    return msgspec.convert(fields, OutgoingMail)


def built(mail: OutgoingMail, settings: Settings, bodies: tuple[str, str | None], to: str, name: str,
          value: str) -> tuple[str, list[str], bytes]:
    """What build_message and the generator write for one recipient (the slow, reference path)."""
    one = msgspec.structs.replace(mail, to=to, to_name=name,
                                  headers={k: v.replace(MARK, value) for k, v in mail.headers.items()})
    text, html = bodies
    return envelope(build_message(one, settings, message_id=MID, date=WHEN, bodies=(
        text.replace(MARK, value), html.replace(MARK, value) if html is not None else None)))


def same_boundary(data: bytes) -> bytes:
    """``data`` with its multipart boundary named "B": a body holding this process's boundary gets
    a random one (build_message's rule), in either path."""
    found = re.search(rb'boundary="([^"]+)"', data)
    return data.replace(found.group(1), b"B") if found else data


class Counting(BatchTemplate):
    """Counts the copies that had to be built the slow way."""

    slow = 0

    def _built(self, *args: Any) -> RawMessage:
        self.slow += 1
        return super()._built(*args)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


URL = "https://coop.example/newsletters/unsubscribe/AbC-123_x"
NAMES = ["", "Ann", 'Bob "the Builder", Jr.', "Béa Ünicode", "Zoë " * 25 + "Zoë", "a =?utf-8?q?x?= b", "A  B"]
BODIES: list[tuple[str, str | None]] = [
    (TEXT, HTML),  # ASCII: 7bit parts
    (TEXT.replace("bakery", "boulangerie — très"), HTML.replace("bakery", "café")),  # quoted-printable
    ("Long line: " + "word " * 400 + f"\n{MARK}\n", None),  # one part, quoted-printable (over 998)
    ("", ""),
    (f"a\r\nb {MARK} \r\nc", f"x\ry{MARK}"),  # mixed line ends: built the slow way, alike
    (f"trailing  \n{MARK}\t\n.\n", f"\n\n{MARK}"),
]
VALUES = [URL, "ünï-côdé", "x" * 1200, "", f"{_BOUNDARY}"]


@pytest.mark.parametrize("bodies", BODIES, ids=range(len(BODIES)))
def test_every_copy_is_the_bytes_build_message_writes(base: Settings, bodies: tuple[str, str | None]) -> None:
    for subject in ("News", "Nëws: the spring " + "market " * 20):
        mail = issue(subject)
        template = Counting(mail, base, bodies=bodies, markers=(MARK,))
        for name in NAMES:
            for value in VALUES:
                copy = template.render("Member@Example.ORG", name, values={MARK: value}, message_id=MID, date=WHEN)
                expected = built(mail, base, bodies, "Member@example.org", name, value)
                assert copy[:2] == expected[:2]
                assert same_boundary(copy.data) == same_boundary(expected[2]), (name, value)
        copies = len(NAMES) * len(VALUES)
        assert template.slow < copies  # most copies come from the prepared pieces


def test_the_usual_copy_is_written_from_the_prepared_pieces(base: Settings) -> None:
    template = Counting(issue(), base, bodies=(TEXT, HTML), markers=(MARK,))
    for n in range(20):
        template.render(f"reader{n}@example.org", f"Reader Nº {n}", values={MARK: f"{URL}{n}"})
    assert template.slow == 0
    # A value that makes a 7bit line longer than 998 characters: the prepared quoted-printable pieces.
    long = parse(template.render("reader@example.org", values={MARK: "y" * 1000}).data)
    text = long.get_body(("plain",))
    assert template.slow == 0 and text is not None and text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "y" * 1000 in text.get_content()
    # A form feed (a line break to str.splitlines): refused, as it would be in any header (the values
    # reach List-Unsubscribe too).
    with pytest.raises(ValueError, match="one line"):
        template.render("reader@example.org", values={MARK: "a\x0cb"})


def test_a_copy_parses_back_as_build_message_s_does(base: Settings) -> None:
    """email.parser (policy default): the same headers, parts and contents, RFC 8058 headers, a
    non-ASCII display name and subject."""
    mail = issue()
    template = BatchTemplate(mail, base, bodies=(TEXT, HTML), markers=(MARK,))
    copy = template.render("bea@example.org", "Béa Ünicode, \"Jr\"", values={MARK: URL})
    ours = parse(copy.data)
    theirs = parse(built(mail, base, (TEXT, HTML), "bea@example.org", "Béa Ünicode, \"Jr\"", URL)[2])
    assert copy.sender == "news@coop.example" and copy.recipients == ["bea@example.org"]
    assert [k for k, _ in ours.items()] == [k for k, _ in theirs.items()]
    for key, value in theirs.items():
        if key not in ("Date", "Message-ID"):
            assert str(ours[key]) == str(value), key
    assert ours["To"].addresses[0].display_name == 'Béa Ünicode, "Jr"'
    assert ours["To"].addresses[0].addr_spec == "bea@example.org"
    assert str(ours["From"]) == "Le Café Coop <news@coop.example>"
    assert str(ours["Subject"]) == "Spring news — café"
    assert str(ours["List-Unsubscribe"]) == f"<{URL}>"
    assert str(ours["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(ours["List-Id"]) == "<news.coop.example>"
    assert ours["Date"].datetime is not None and ours["Message-ID"].endswith("@coop.example>")
    assert ours.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in ours.iter_parts()] == ["text/plain", "text/html"]
    for kind in ("plain", "html"):
        a, b = ours.get_body((kind,)), theirs.get_body((kind,))
        assert a is not None and b is not None
        assert a.get_content() == b.get_content() and URL in a.get_content() and MARK not in a.get_content()
        assert a["Content-Transfer-Encoding"] == b["Content-Transfer-Encoding"]
    assert all(len(line) <= 78 for line in copy.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))


def test_each_copy_has_its_own_message_id_and_a_current_date(base: Settings) -> None:
    template = BatchTemplate(issue(), base, bodies=(TEXT, HTML), markers=(MARK,))
    before = datetime.now(UTC).replace(microsecond=0)
    one, two = (parse(template.render("r@example.org", values={MARK: URL}).data) for _ in range(2))
    assert one["Message-ID"] != two["Message-ID"]
    assert before <= one["Date"].datetime <= datetime.now(UTC)


def test_header_injection_is_refused_never_a_new_header(base: Settings) -> None:
    template = BatchTemplate(issue(), base, bodies=(TEXT, HTML), markers=(MARK,))
    for name in ("Eve\r\nBcc: victim@example.org", "Eve\nX-Evil: 1", "Eve\rBcc: v@example.org", "Eve\x00"):
        with pytest.raises(ValueError, match="one line"):
            template.render("r@example.org", name, values={MARK: URL})
    with pytest.raises(ValueError, match="one line"):
        template.render("r@example.org", values={MARK: f"{URL}\r\nBcc: victim@example.org"})
    for to in ("r@example.org\r\nBcc: v@example.org", "Eve <r@example.org>", "r@example.org, v@example.org"):
        with pytest.raises(ValueError, match="not a mail address"):
            template.render(to, values={MARK: URL})
    with pytest.raises(ValueError, match="one line"):
        BatchTemplate(issue("Hi\r\nBcc: victim@example.org"), base, bodies=(TEXT, HTML), markers=(MARK,))
    # Header-looking text without a line break stays text inside its own field (RFC 2047 when needed).
    copy = parse(template.render("r@example.org", "Eve: Bcc: v@example.org", values={MARK: URL}).data)
    assert copy["Bcc"] is None and copy["To"].addresses[0].display_name == "Eve: Bcc: v@example.org"
    subject = BatchTemplate(issue("Ünïcode Bcc: v@example.org"), base, bodies=(TEXT, HTML), markers=(MARK,))
    copy = parse(subject.render("r@example.org", values={MARK: URL}).data)
    assert copy["Bcc"] is None and str(copy["Subject"]) == "Ünïcode Bcc: v@example.org"


def test_copies_go_over_one_smtp_connection_and_to_eml_files(base: Settings, tmp_path: Path,
                                                              smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(base)
    template = BatchTemplate(issue(), settings, bodies=(TEXT, HTML), markers=(MARK,))

    async def send() -> None:
        async with open_transport(settings) as transport:
            for n in range(3):
                await transport.send_raw(*template.render(f"r{n}@example.org", f"Réader {n}",
                                                          values={MARK: f"{URL}{n}"}))

    asyncio.run(send())
    received = smtp_server.wait_for(3)
    assert [r.rcpt_tos for r in received] == [["r0@example.org"], ["r1@example.org"], ["r2@example.org"]]
    assert {r.connection for r in received} == {1}
    assert [r.mail_from for r in received] == ["news@coop.example"] * 3
    for n, r in enumerate(received):
        assert str(r.message["To"]) == f"Réader {n} <r{n}@example.org>"
        text = r.message.get_body(("plain",))
        assert text is not None and f"Unsubscribe: {URL}{n}" in text.get_content().splitlines()

    files = FileTransport(tmp_path / "mail")
    copy = template.render("file@example.org", values={MARK: URL})
    asyncio.run(files.send_raw(*copy))
    [written] = (tmp_path / "mail").glob("*.eml")
    assert written.read_bytes() == copy.data and written.stat().st_mode & 0o777 == 0o600
