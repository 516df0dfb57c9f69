"""Our notes' hashtags are links in the HTML we store, serve and federate (Mastodon's markup, to
the tag's page here), and each Hashtag tag of the AS2 document names that page as its ``href``.
Text already inside a link (a URL's ``#anchor``) gains no second link."""

from __future__ import annotations

from typing import Any

import pytest

from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AS2 = {"Accept": "application/activity+json"}


async def test_a_posted_hashtag_is_a_link_here_and_in_the_document(client: Any) -> None:
    alice = await sign_in(client, "alice")
    posted = await client.post("/api/v1/statuses", headers=bearer(alice), json={
        "status": "Seeds for the #Garden, see https://seeds.example/list#top and #123 and a#b"})
    assert posted.status_code == 200, posted.text
    status = posted.json()
    link = f'<a href="{BASE}/social/tags/garden" class="mention hashtag" rel="tag">#Garden</a>'
    assert link in status["content"]
    assert status["content"].count('class="mention hashtag"') == 1  # #123 and a#b are no tags
    assert "https://seeds.example/list#top</a>" in status["content"]  # the URL's anchor untouched
    assert [t["name"] for t in status["tags"]] == ["garden"]

    document = await client.get(status["uri"], headers=AS2)
    assert document.status_code == 200, document.text
    body = document.json()
    assert link in body["content"]
    assert [t for t in body["tag"] if t["type"] == "Hashtag"] == [
        {"type": "Hashtag", "name": "#Garden", "href": f"{BASE}/social/tags/garden"}]

    # The hub's page shows the stored link as it is, never a link inside a link.
    fetched = await client.get(f"/api/v1/statuses/{status['id']}", headers=bearer(alice))
    assert fetched.json()["content"] == status["content"]


async def test_a_status_without_hashtags_is_unchanged(client: Any) -> None:
    alice = await sign_in(client, "alice")
    posted = await client.post("/api/v1/statuses", headers=bearer(alice), json={"status": "plain & simple"})
    assert posted.status_code == 200, posted.text
    assert posted.json()["content"] == "<p>plain &amp; simple</p>" and posted.json()["tags"] == []
