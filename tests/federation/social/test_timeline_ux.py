"""The social hub reads like a timeline (issue 14, item 5), through its HTML (no JavaScript):
federated blog Articles as cards, short ``@bob`` mentions that resolve and notify, counts hidden
at zero, Delete behind a confirmation page, replies that name whom they answer, and an empty
timeline that suggests members to follow."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Actor, APObject
from federation.social.schemas import excerpt
from federation.social.services.timelines import SHORT_MENTION
from federation.social.when import relative
from tests.federation.activitypub.test_social_hub import _note_ids, _people, _post
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.anyio

WRITER = "https://blog.example/users/writer"


def _note(html: str, note: str) -> str:
    """The markup of one note on a page."""
    start = html.index(f'id="note-{note}"')
    end = html.find('<article class="note', start)
    return html[start:end if end != -1 else len(html)]


async def test_a_federated_article_is_a_card_not_a_content_warning(client: Any, db_session: AsyncSession) -> None:
    (alice,) = await _people(client, "alice")
    db_session.add(Actor(uri=WRITER, local=False, type="Person", username="writer", domain="blog.example",
                         name="Wendy Writer", inbox=f"{WRITER}/inbox", fetched_at=datetime.now(UTC)))
    body = "<p>" + "Slow gardens grow best. " * 30 + "</p><p>Second paragraph.</p>"
    db_session.add(APObject(ap_id="https://blog.example/posts/1", type="Article", attributed_to=WRITER,
                            name="On slow gardens", summary="", content=body,
                            url="https://blog.example/posts/slow-gardens", visibility="public",
                            published=datetime.now(UTC) - timedelta(minutes=5)))
    await db_session.commit()
    html = (await alice.get("/social/federated")).text
    (note,) = _note_ids(html)
    card = _note(html, note)
    assert 'class="article-card"' in card
    assert re.search(r'<h2 class="article-card-title"><a href="https://blog.example/posts/slow-gardens"'
                     r'[^>]*>On slow gardens</a></h2>', card), card
    excerpt_text = re.search(r'<p class="article-card-excerpt">([^<]*)</p>', card)
    assert excerpt_text and excerpt_text.group(1).startswith("Slow gardens grow best.")
    assert excerpt_text.group(1).endswith("…") and len(excerpt_text.group(1)) <= 281
    assert "Read the article" in card and "blog.example" in card
    assert "<details>" not in card and "<summary>" not in card  # not a content warning
    # The relative time, with the exact one for machines and the title.
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00" title="[^"]+ UTC">5 min</time>', card)


async def test_a_short_mention_resolves_to_the_local_member_and_notifies_them(client: Any) -> None:
    alice, bob, _carol = await _people(client, "alice", "bob", "carol")
    r = await _post(alice, "/social/compose", {"content": "Tea at four, @bob? (not @nobody, nor mail@bob)",
                                               "visibility": "public", "next": "/social/"})
    assert r.status_code == 303
    html = (await alice.get("/social/")).text
    (note,) = _note_ids(html)
    content = _note(html, note)
    assert re.search(r'<a href="[^"]*/@bob"[^>]*class="u-url mention">@bob</a>', content), content
    assert "@nobody" in content and "mail@bob" in content and content.count("u-url mention") == 1
    notices = (await bob.get("/social/notifications")).text
    assert re.search(r'alice</a></strong>\s*mentioned you', notices), notices
    assert "mentioned you" not in (await _carol.get("/social/notifications")).text


def test_short_mentions_are_names_alone() -> None:
    found = [m.group(1) for m in SHORT_MENTION.finditer(
        "@bob, @ada. @bob@elsewhere.org mail@ada https://x.org/@eve @jo.ann! (@dee)")]
    assert found == ["bob", "ada", "jo.ann", "dee"]


async def test_counts_are_hidden_at_zero(client: Any) -> None:
    alice, bob = await _people(client, "alice", "bob")
    await _post(alice, "/social/compose", {"content": "count me", "visibility": "public"})
    html = (await bob.get("/social/local")).text
    (note,) = _note_ids(html)
    actions = _note(html, note)
    assert 'class="count"' not in actions
    assert '<span class="visually-hidden">Like</span>' in actions  # the icon button still has a name
    await _post(bob, f"/social/notes/{note}/like", {"next": "/social/local"})
    actions = _note((await bob.get("/social/local")).text, note)
    assert '<span class="visually-hidden">Liked</span> <span class="count">1</span>' in actions
    assert actions.count('class="count"') == 1  # boosts are still zero


async def test_delete_asks_first_on_its_own_page_without_javascript(client: Any) -> None:
    alice, bob = await _people(client, "alice", "bob")
    await _post(alice, "/social/compose", {"content": "soon gone", "visibility": "public"})
    (note,) = _note_ids((await alice.get("/social/")).text)
    menu = _note((await alice.get("/social/")).text, note)
    # Without JavaScript the menu's Delete GETs the confirmation page; with it, htmx asks and POSTs.
    assert re.search(rf'<form method="get" action="/social/notes/{note}/delete" '
                     rf'hx-post="/social/notes/{note}/delete" hx-confirm="Delete this post?', menu)
    assert f'<form method="post" action="/social/notes/{note}/delete"' not in menu  # no one-click delete

    page = await alice.get(f"/social/notes/{note}/delete", params={"next": "/social/"})
    assert page.status_code == 200 and "Delete this post?" in page.text and "soon gone" in page.text
    assert re.search(rf'<form method="post" action="/social/notes/{note}/delete"', page.text)
    token = CSRF_FIELD.search(page.text)
    assert token, "the confirmation form carries the CSRF token"
    # Someone else's post: the confirmation page doesn't exist for them.
    theirs = await bob.get(f"/social/notes/{note}/delete")
    missing = await bob.get(f"/social/notes/{uuid.uuid4()}/delete")
    assert theirs.status_code == missing.status_code == 404 and theirs.text == missing.text
    # Without the token nothing happens; with it the post is gone.
    assert (await alice.post(f"/social/notes/{note}/delete", data={"next": "/social/"})).status_code == 403
    assert "soon gone" in (await alice.get("/social/")).text
    r = await alice.post(f"/social/notes/{note}/delete", data={"next": "/social/", "_csrf_token": token.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/social/"
    assert "soon gone" not in (await alice.get("/social/")).text


async def test_a_reply_names_whom_it_answers_and_starts_with_the_mention(client: Any) -> None:
    ada, bob = await _people(client, "ada", "bob")
    await _post(ada, "/social/compose", {"content": "question for all", "visibility": "public"})
    (note,) = _note_ids((await bob.get("/social/local")).text)
    page = (await bob.get(f"/social/notes/{note}")).text
    assert "Replying to @ada</p>" in page
    assert re.search(r'<textarea id="f-content"[^>]*>@ada </textarea>', page), page
    own = (await ada.get(f"/social/notes/{note}")).text  # answering oneself: no mention to add
    assert re.search(r'<textarea id="f-content"[^>]*></textarea>', own)


async def test_an_empty_timeline_suggests_members_and_the_lookup(client: Any) -> None:
    alice, bob, carol = await _people(client, "alice", "bob", "carol")
    html = (await carol.get("/social/")).text
    assert "Members to follow" in html and 'href="/social/accounts"' in html
    suggested = re.findall(r'class="suggestion-name" href="/social/accounts/(\w+)@', html)
    assert sorted(suggested) == ["alice", "bob"]  # not carol herself
    token = CSRF_FIELD.search(html)
    assert token
    r = await carol.post("/social/follow", data={"handle": re.search(
        r'name="handle" value="([^"]+/@bob)"', html).group(1), "next": "/social/",  # type: ignore[union-attr]
        "_csrf_token": token.group(1)})
    assert r.status_code == 303
    html = (await carol.get("/social/")).text
    assert re.findall(r'class="suggestion-name" href="/social/accounts/(\w+)@', html) == ["alice"]
    await _post(bob, "/social/compose", {"content": "now there is something", "visibility": "public"})
    html = (await carol.get("/social/")).text
    assert "now there is something" in html and "Members to follow" not in html
    del alice


def test_relative_times_and_excerpts() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert [relative(now - d, now) for d in (timedelta(seconds=3), timedelta(seconds=42), timedelta(minutes=5),
                                             timedelta(hours=3), timedelta(days=6), timedelta(days=30))] \
        == ["now", "42 s", "5 min", "3 h", "6 d", "6 Nov"]
    assert relative(datetime(2025, 1, 2, tzinfo=UTC), now) == "2 Jan 2025"
    assert relative(None, now) == ""
    assert excerpt("A summary.", "<p>body</p>") == "A summary."
    assert excerpt("", "<p>One &amp; two</p><p>three</p>") == "One & two three"
