"""Every character str.splitlines() breaks on is refused in a mail header value (the security
review's finding: VT, FF, FS, GS, RS, NEL, U+2028 and U+2029 became real header lines), and a member's
display name, which reaches the "To" header, cannot hold them either."""

from __future__ import annotations

from typing import Any

import pytest

from app.mail import OutgoingMail
from app.mail.message import check_mail
from tests.helpers.web import post_form, signup

BREAKS = ["\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\x07"]


@pytest.mark.parametrize("char", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_line_breaks_of_every_kind_are_refused_in_names_and_subjects(char: str) -> None:
    name = OutgoingMail(to="eve@example.org", to_name=f"Eve{char}Reply-To: phish@evil.example",
                        subject="Hello", template="test")
    with pytest.raises(ValueError, match="one line"):
        check_mail(name)
    subject = OutgoingMail(to="eve@example.org", subject=f"Hi{char}Bcc: x@evil.example", template="test")
    with pytest.raises(ValueError, match="one line"):
        check_mail(subject)


def test_ordinary_names_pass() -> None:
    check_mail(OutgoingMail(to="eve@example.org", to_name="Ève O'Brien-Ñúñez (co-op)", subject="Tea — 5 pm",
                            template="test"))


@pytest.mark.anyio
async def test_a_display_name_with_a_line_break_is_refused(client: Any, db_session: Any) -> None:
    refused = await post_form(client, "/account/signup", {
        "username": "eve", "email": "eve@example.org", "password": "correct horse battery staple",
        "display_name": "Eve\x0bReply-To: phish@evil.example"}, page="/account/signup")
    assert refused.status_code == 422 and "no line breaks or control characters" in refused.text
    assert (await signup(client, "eve")).status_code == 303
    changed = await post_form(client, "/account/settings/profile", {"display_name": "Eve\u2028Bcc: x@evil.example",
                                                          "bio": ""}, page="/account/settings/profile")
    assert changed.status_code == 422 and "no line breaks or control characters" in changed.text
