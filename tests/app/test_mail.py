"""Outbound mail without a database: building messages, every SMTP transport path against a real
aiosmtpd server on loopback, the .eml fallback, settings and ``rose-ash mail test``."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import compat32, default
from email.utils import parsedate_to_datetime
from pathlib import Path

import msgspec
import pytest

from app.mail import (
    FileTransport,
    MailPermanentError,
    MailTemporaryError,
    OutgoingMail,
    SMTPTransport,
    build_message,
    check_mail,
    mail_dir,
    open_transport,
    valid_address,
)
from app.settings import Settings
from tests.helpers.server import REPO_ROOT, ROSE_ASH
from tests.helpers.smtp import SMTPServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data", base_url="https://coop.example:8443",
                             secret_key="test-secret-key-not-for-production-0123456789")


def mail(**changes: object) -> OutgoingMail:
    fields: dict[str, object] = {
        "to": "Zoe@Example.ORG", "to_name": "Zoë Ünïcode", "subject": "Bienvenue à Rose Ash — ça marche",
        "template": "test", "context": {"transport": "a <test> & more"},
    }
    fields.update(changes)
    return msgspec.convert(fields, OutgoingMail)


def send_all(settings: Settings, *mails: OutgoingMail) -> None:
    async def run() -> None:
        async with open_transport(settings) as transport:
            for m in mails:
                await transport.send(build_message(m, settings))

    asyncio.run(run())


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


# Building -------------------------------------------------------------------------------------


def test_message_has_both_parts_encoded_headers_message_id_and_date(base: Settings) -> None:
    built = build_message(mail(headers={"List-Unsubscribe": "<https://coop.example/u/1>"},
                               reply_to="help@coop.example"), base)
    raw = built.as_bytes()
    assert raw.isascii()  # RFC 2047 words and quoted-printable: 7-bit clean on the wire
    assert b"=?utf-8?" in raw  # the display name and subject are encoded words
    back = parse(raw)
    assert back["Subject"] == "Bienvenue à Rose Ash — ça marche"
    assert back["To"].addresses[0].display_name == "Zoë Ünïcode"
    assert back["To"].addresses[0].addr_spec == "Zoe@example.org"  # domain canonical, local part kept
    assert str(back["From"]) == "Rose Ash <noreply@coop.example>"
    assert str(back["Reply-To"]) == "help@coop.example"
    assert back["List-Unsubscribe"] == "<https://coop.example/u/1>"
    assert back["Auto-Submitted"] == "auto-generated"
    assert back["X-Rose-Ash-Tag"] == "transactional"
    assert back["Message-ID"].startswith("<") and back["Message-ID"].endswith("@coop.example>")
    assert parsedate_to_datetime(back["Date"]).tzinfo is not None
    assert back.get_content_type() == "multipart/alternative"
    text = back.get_body(preferencelist=("plain",))
    html = back.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Hello Zoë Ünïcode," in text.get_content()
    assert "through a <test> & more." in text.get_content()  # text is not HTML-escaped
    assert "through a &lt;test&gt; &amp; more." in html.get_content()  # HTML is
    assert "https://coop.example:8443" in text.get_content()


def test_two_messages_get_two_message_ids_unless_one_is_given(base: Settings) -> None:
    first, second = build_message(mail(), base), build_message(mail(), base)
    assert first["Message-ID"] != second["Message-ID"]
    assert build_message(mail(), base, message_id="<fixed@coop.example>")["Message-ID"] == "<fixed@coop.example>"


def test_text_only_template_makes_a_single_part(base: Settings, tmp_path: Path) -> None:
    built = build_message(mail(), base, bodies=("Just text.\n", None))
    assert built.get_content_type() == "text/plain"
    assert built["Content-Transfer-Encoding"] == "7bit"
    assert parse(built.as_bytes()).get_content() == "Just text.\r\n"  # policy.SMTP: CRLF line ends


@pytest.mark.parametrize("changes", [
    {"to_name": "Eve\r\nBcc: victim@example.org"},
    {"to_name": "Eve\nBcc: victim@example.org"},
    {"subject": "Hi\r\nBcc: victim@example.org"},
    {"subject": "Hi\rX-Evil: 1"},
    {"from_name": "Co-op\nBcc: victim@example.org"},
    {"headers": {"List-Id": "news\r\nBcc: victim@example.org"}},
    {"headers": {"Bad Name": "x"}},
    {"headers": {"X-Evil:": "x"}},
    {"headers": {"From": "boss@example.org"}},
    {"headers": {"bcc": "victim@example.org"}},
    {"to": "victim@example.org\r\nBcc: other@example.org"},
    {"to": "Eve <eve@example.org>"},
    {"to": "eve@example.org, other@example.org"},
    {"reply_to": "x@example.org\nBcc: y@example.org"},
    {"template": "../base"},
    {"template": "no/such"},
    {"context": {"when": object()}},
    {"subject": "   "},
])
def test_header_injection_and_bad_mails_are_refused(base: Settings, changes: dict[str, object]) -> None:
    bad = msgspec.structs.replace(mail(), **changes)
    with pytest.raises(ValueError):
        check_mail(bad)
    with pytest.raises(ValueError):
        build_message(bad, base)


@pytest.mark.parametrize(("given", "expected"), [
    ("bob@example.org", "bob@example.org"),
    ("  Bob.Smith+news@EXAMPLE.org ", "Bob.Smith+news@example.org"),
    ("ana@bücher.example", "ana@xn--bcher-kva.example"),
    ("o'neil@example.co.uk", "o'neil@example.co.uk"),
    ("bob", None), ("bob@", None), ("@example.org", None), ("bob@localhost", None), ("bob@1.2.3.4", None),
    ("bob@@example.org", None), ("bob smith@example.org", None), ("bob.@example.org", None),
    (".bob@example.org", None), ("bob..smith@example.org", None), ("bob@-example.org", None),
    ("bob@example..org", None), ("Bob <bob@example.org>", None), ("bob@example.org\n", "bob@example.org"),
    ("bob@exa\nmple.org", None), ("jö@example.org", None), ("a" * 65 + "@example.org", None),
    ("b@" + "a" * 250 + ".org", None),
])
def test_valid_address(given: str, expected: str | None) -> None:
    assert valid_address(given) == expected


# Transports against a real SMTP server --------------------------------------------------------


def test_plain_smtp_without_auth_or_tls_sends_many_over_one_connection(base: Settings,
                                                                        smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(base)
    assert settings.smtp_url.startswith("smtp://127.0.0.1:")
    send_all(settings, mail(), mail(to="second@example.org"), mail(to="third@example.org"))
    received = smtp_server.wait_for(3)
    assert [r.rcpt_tos for r in received] == [["Zoe@example.org"], ["second@example.org"], ["third@example.org"]]
    assert {r.connection for r in received} == {1}
    assert received[0].mail_from == "noreply@coop.example"
    assert not received[0].tls and received[0].authenticated is None
    back = received[0].message
    assert back["Subject"] == "Bienvenue à Rose Ash — ça marche"
    assert back.get_body(preferencelist=("html",)) is not None


def test_starttls_with_auth(base: Settings) -> None:
    with SMTPServer(tls="starttls", auth=("mailer@coop.example", "p@ss:w/ord with spaces")) as server:
        assert "mailer%40coop.example:p%40ss%3Aw%2Ford%20with%20spaces@" in server.url
        send_all(server.settings(base), mail(), mail(to="b@example.org"))
        received = server.wait_for(2)
    assert all(r.tls for r in received)
    assert {r.authenticated for r in received} == {"mailer@coop.example"}
    assert {r.connection for r in received} == {1}


def test_starttls_is_opportunistic_without_a_password(base: Settings) -> None:
    with SMTPServer(tls="starttls") as server:
        send_all(server.settings(base), mail())
        assert server.wait_for(1)[0].tls


def test_implicit_tls_smtps_with_and_without_auth(base: Settings) -> None:
    with SMTPServer(tls="implicit") as server:
        assert server.url.startswith("smtps://")
        send_all(server.settings(base), mail())
        assert server.wait_for(1)[0].tls
    with SMTPServer(tls="implicit", auth=("u", "secret")) as server:
        send_all(server.settings(base), mail())
        assert server.wait_for(1)[0].authenticated == "u"


def test_an_untrusted_certificate_is_not_accepted(base: Settings) -> None:
    with SMTPServer(tls="implicit") as server:
        settings = msgspec.structs.replace(server.settings(base), smtp_ca_file="")
        with pytest.raises(MailTemporaryError) as caught:
            send_all(settings, mail())
        assert caught.value.code == 0
        assert server.received == []


def test_wrong_password_is_permanent(base: Settings) -> None:
    with SMTPServer(tls="starttls", auth=("u", "right")) as server:
        settings = msgspec.structs.replace(server.settings(base), smtp_url=server.url.replace("u:right", "u:wrong"))
        with pytest.raises(MailPermanentError) as caught:
            send_all(settings, mail())
        assert caught.value.code == 535
        assert server.received == []


def test_answers_are_classified_and_the_connection_survives_them(base: Settings, smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(base)
    outcomes: list[object] = []

    async def run() -> None:
        async with open_transport(settings) as transport:
            for code in (451, 550, 421, None):
                if code is not None:
                    smtp_server.fail(code, count=1)
                try:
                    await transport.send(build_message(mail(), settings))
                    outcomes.append("sent")
                except (MailPermanentError, MailTemporaryError) as exc:
                    outcomes.append((type(exc).__name__, exc.code))

    asyncio.run(run())
    assert outcomes == [("MailTemporaryError", 451), ("MailPermanentError", 550), ("MailTemporaryError", 421), "sent"]
    received = smtp_server.wait_for(1)
    assert len(received) == 1 and smtp_server.failures_answered == 3
    # 421 closes the channel (RFC 5321 section 3.8): the last mail came over a new connection.
    assert received[0].connection == 2


def test_server_down_is_temporary_and_the_same_port_comes_back(base: Settings, smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(base)
    smtp_server.stop()
    with pytest.raises(MailTemporaryError) as caught:
        send_all(settings, mail())
    assert caught.value.code == 0 and "connect" in caught.value.text.lower()
    smtp_server.start()
    send_all(settings, mail())
    assert len(smtp_server.wait_for(1)) == 1


def test_a_connection_dropped_between_sends_is_reopened(base: Settings, smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(base)

    async def run() -> None:
        async with open_transport(settings) as transport:
            await transport.send(build_message(mail(), settings))
            await asyncio.to_thread(smtp_server.stop)
            await asyncio.to_thread(smtp_server.start)
            await transport.send(build_message(mail(to="again@example.org"), settings))

    asyncio.run(run())
    received = smtp_server.wait_for(2)
    assert [r.rcpt_tos for r in received] == [["Zoe@example.org"], ["again@example.org"]]


def test_starttls_is_required_with_a_password_except_on_loopback(base: Settings) -> None:
    remote = SMTPTransport(msgspec.structs.replace(base, smtp_url="smtp://u:p@mail.example"))
    assert remote.start_tls is True and remote.port == 587
    local = SMTPTransport(msgspec.structs.replace(base, smtp_url="smtp://u:p@127.0.0.1:2525"))
    assert local.start_tls is None and local.port == 2525
    anonymous = SMTPTransport(msgspec.structs.replace(base, smtp_url="smtp://mail.example"))
    assert anonymous.start_tls is None
    implicit = SMTPTransport(msgspec.structs.replace(base, smtp_url="smtps://u%40x:p%3A1@mail.example"))
    assert implicit.implicit_tls and implicit.port == 465
    assert (implicit.username, implicit.password) == ("u@x", "p:1")


# The .eml fallback ----------------------------------------------------------------------------


def test_without_smtp_url_each_mail_is_an_eml_file(base: Settings) -> None:
    assert base.smtp_url == ""
    send_all(base, mail(), mail(to="second@example.org"))
    directory = mail_dir(base)
    files = sorted(directory.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary file left behind
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    messages = [parse(f.read_bytes()) for f in files]
    assert [m["To"].addresses[0].addr_spec for m in messages] == ["Zoe@example.org", "second@example.org"]
    assert messages[0]["Subject"] == "Bienvenue à Rose Ash — ça marche"


def test_eml_names_sort_by_time(base: Settings) -> None:
    transport = FileTransport(mail_dir(base))
    paths = [transport.write(build_message(mail(subject=f"n{i}"), base)) for i in range(5)]
    assert sorted(p.name for p in paths) == [p.name for p in paths]


# Settings and the command ---------------------------------------------------------------------


def test_mail_settings(tmp_path: Path) -> None:
    def make(**env: str) -> Settings:
        return Settings.from_env({f"ROSE_ASH_{k}": v for k, v in env.items()}, data_dir=tmp_path, secret_key="k" * 40)

    assert make().mail_from == "Rose Ash <noreply@127.0.0.1>"
    assert make(BASE_URL="https://coop.example").mail_from == "Rose Ash <noreply@coop.example>"
    assert make(MAIL_FROM="news@coop.example").mail_from == "news@coop.example"
    assert make(MAIL_FROM="Coöp News <news@coop.example>").mail_from == "Coöp News <news@coop.example>"
    assert make(MAIL_RATE="120").mail_rate == 120
    secret = tmp_path / "smtp_url"
    secret.write_text("smtps://u:p@mail.example:465\n")
    assert make(SMTP_URL_FILE=str(secret)).smtp_url == "smtps://u:p@mail.example:465"
    for bad in ("http://mail.example", "mail.example", "smtp://", "smtp://mail.example:port"):
        with pytest.raises(ValueError, match="ROSE_ASH_SMTP_URL"):
            make(SMTP_URL=bad)
    for bad in ("not an address", "a@b\nBcc: c@d"):
        with pytest.raises(ValueError, match="ROSE_ASH_MAIL_FROM"):
            make(MAIL_FROM=bad)


def _rose_ash(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(data_dir), "ROSE_ASH_SECRET_KEY": "mail-test-" + "s" * 32, **extra})
    return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_mail_test_command_sends_through_smtp_and_writes_eml_without_it(tmp_path: Path,
                                                                         smtp_server: SMTPServer) -> None:
    done = _rose_ash(tmp_path, "mail", "test", "--to", "ops@example.org", **smtp_server.env())
    assert done.returncode == 0, done.stderr
    assert "sent <" in done.stdout and smtp_server.url.removeprefix("smtp://") in done.stdout
    received = smtp_server.wait_for(1)[0]
    assert received.rcpt_tos == ["ops@example.org"] and received.message["X-Rose-Ash-Tag"] == "test"
    body = received.message.get_body(preferencelist=("plain",))
    assert body is not None and "outbound mail works" in body.get_content()

    done = _rose_ash(tmp_path, "mail", "test", "--to", "ops@example.org")
    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "mail").glob("*.eml"))
    assert len(written) == 1 and str(written[0]) in done.stdout

    smtp_server.fail(550)
    done = _rose_ash(tmp_path, "mail", "test", "--to", "ops@example.org", **smtp_server.env())
    assert done.returncode == 1 and "refused: 550" in done.stderr

    done = _rose_ash(tmp_path, "mail", "test", "--to", "not-an-address")
    assert done.returncode == 1 and "is not a mail address" in done.stderr


def test_names_and_long_headers_survive_the_round_trip(base: Settings) -> None:
    long_url = "<https://coop.example/newsletter/unsubscribe/" + "t" * 90 + ">, <mailto:u@coop.example?subject=x>"
    for name in ('Bob "the Builder", Jr.', "Zoë " * 29 + "Zoë", "Ωμέγα, \"quoted\" <angle>", "plain"):
        built = build_message(mail(to_name=name, headers={"List-Unsubscribe": long_url, "X-Note": "a  b   c"}), base)
        raw = built.as_bytes()
        assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
        back = parse(raw)
        assert back["To"].addresses[0].addr_spec == "Zoe@example.org"
        # RFC 2047 section 6.2: the white space between adjacent encoded words is not text (the
        # legacy decoder follows it; headerregistry's parser keeps the folds' spaces).
        if name.isascii():
            assert back["To"].addresses[0].display_name == name
        else:
            raw_to = message_from_bytes(raw, policy=compat32)["To"]
            assert str(make_header(decode_header(raw_to))) == f"{name} <Zoe@example.org>"
        assert back["List-Unsubscribe"] == long_url
        assert back["X-Note"] == "a  b   c"


def test_a_body_holding_the_boundary_gets_another(base: Settings) -> None:
    from app.mail.message import _BOUNDARY

    built = build_message(mail(), base, bodies=(f"--{_BOUNDARY}\nnot a part\n", "<p>html</p>"))
    assert built.get_boundary() != _BOUNDARY
    back = parse(built.as_bytes())
    assert [p.get_content_type() for p in back.iter_parts()] == ["text/plain", "text/html"]
    text = back.get_body(preferencelist=("plain",))
    assert text is not None and f"--{_BOUNDARY}" in text.get_content()


def test_mail_test_command_over_starttls_with_auth(tmp_path: Path) -> None:
    with SMTPServer(tls="starttls", auth=("ops", "s3cret")) as server:
        done = _rose_ash(tmp_path, "mail", "test", "--to", "ops@example.org", **server.env())
        assert done.returncode == 0, done.stderr
        received = server.wait_for(1)[0]
        assert received.tls and received.authenticated == "ops"


def test_a_long_url_header_is_written_as_plain_text_not_encoded_words(base: Settings) -> None:
    """List-Unsubscribe holds URLs that mail clients find by reading the header as it is (RFC 2369
    section 2, RFC 8058 section 3.1): a line longer than 78 characters must not become RFC 2047
    encoded words, which is what the policy's re-folding of long source lines did."""
    url = "https://coop.example:8443/newsletters/unsubscribe/" + "A" * 90
    mailto = "mailto:noreply@coop.example?subject=unsubscribe%20" + "B" * 70
    mail = OutgoingMail(to="reader@example.org", subject="Issue 1", template="test", context={"transport": "t"},
                        headers={"List-Unsubscribe": f"<{url}>, <{mailto}>",
                                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    raw = build_message(mail, base).as_bytes()
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"List-Unsubscribe:", 1)[1].split(b"\r\nList-", 1)[0]
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert str(parsed["List-Unsubscribe"]) == f"<{url}>, <{mailto}>"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
