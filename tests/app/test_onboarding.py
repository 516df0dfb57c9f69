"""Onboarding (issue 14 item 9): the three next steps after sign-up, and empty states that link
to the action that fills them, each link answering 200 for the member who sees it.

The rule (templates/account/_onboarding.html): the dashboard shows the three steps while the
member's profile has no bio; once it has one the list gives way to a one-line "Next:" of the
same shortcuts, and the home page's ``me.welcome`` hole stops pointing at the steps.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

HREF = re.compile(r'href="([^"#]*)(?:#[^"]*)?"')


def _section(html: str, pattern: str) -> str:
    found = re.search(pattern, html, re.DOTALL)
    assert found is not None, pattern
    return found.group(0)


async def _all_answer_200(client: Any, hrefs: list[str]) -> None:
    assert hrefs
    for href in hrefs:
        response = await client.get(href, follow_redirects=True)
        assert response.status_code == 200, (href, response.status_code)


async def test_three_next_steps_after_sign_up_then_gone_once_done(client: Any) -> None:
    response = await signup(client, "newbie")
    assert response.status_code == 303 and response.headers["location"] == "/account"
    dashboard = (await client.get("/account")).text
    steps = _section(dashboard, r'<section class="panel onboarding".*?</section>')
    assert "Three next steps" in steps and steps.count("<li>") == 3
    hrefs = HREF.findall(steps)
    assert hrefs[:2] == ["/account/settings/profile", "/social/local"]
    assert "/blog/" in hrefs and "/social/" in hrefs  # read the blog; a member who isn't an author writes a note
    await _all_answer_200(client, hrefs)
    welcome = (await client.get("/f/me/welcome")).text
    assert 'href="/account">three next steps</a>' in welcome

    saved = await post_form(client, "/account/settings/profile", {"display_name": "New Bie", "bio": "Hello!"},
                            page="/account/settings/profile")
    assert saved.status_code == 303
    after = (await client.get("/account")).text
    assert "Three next steps" not in after and 'class="panel onboarding"' not in after
    shortcuts = _section(after, r'<p class="onboarding-done.*?</p>')
    await _all_answer_200(client, HREF.findall(shortcuts))
    assert "three next steps" not in (await client.get("/f/me/welcome")).text


async def test_an_author_is_offered_the_editor(client: Any, db_session: Any) -> None:
    from domains.account.models import User
    from domains.account.services import AccountService

    await signup(client, "writer")
    user = (await db_session.execute(select(User).where(User.username == "writer"))).scalar_one()
    await AccountService(db_session).set_author(user, True)
    await db_session.commit()
    steps = _section((await client.get("/account")).text, r'<section class="panel onboarding".*?</section>')
    assert 'href="/blog/admin/new"' in steps
    await _all_answer_200(client, ["/blog/admin/new"])


async def test_empty_states_link_to_what_fills_them(client: Any, db_session: Any) -> None:
    from domains.account.models import User
    from domains.account.services import AccountService

    anonymous_index = (await client.get("/blog/")).text
    empty = _section(anonymous_index, r'<div class="empty-state.*?</div>')
    assert 'href="/blog/admin/new"' in empty

    await signup(client, "quill")
    user = (await db_session.execute(select(User).where(User.username == "quill"))).scalar_one()
    await AccountService(db_session).set_author(user, True)
    await db_session.commit()
    await _all_answer_200(client, HREF.findall(empty))

    author_page = (await client.get("/blog/author/quill")).text
    author_empty = _section(author_page, r'<div class="empty-state.*?</div>')
    assert HREF.findall(author_empty) == ["/@quill", "/blog/"]
    await _all_answer_200(client, HREF.findall(author_empty))

    forge = (await client.get("/forge/")).text
    assert '<a href="/forge/new">Create the first one</a>' in forge
    await _all_answer_200(client, ["/forge/new"])

    tokens = (await client.get("/account/settings/tokens")).text
    assert 'href="#f-name">Create your first token</a>' in tokens and 'id="f-name"' in tokens

    following = _section((await client.get("/social/following")).text, r'<ul class="follow-list">.*?</ul>')
    followers = _section((await client.get("/social/followers")).text, r'<ul class="follow-list">.*?</ul>')
    assert 'href="/social/local"' in following and 'href="/@quill"' in followers
    await _all_answer_200(client, ["/social/local", "/@quill"])
