"""Issue 11 item 4, strict API input, on SQLite and PostgreSQL: each malformed request gets 400, 413
or 415 with a message (problem+json on JSON routes, the HTML error page on HTML routes), never a
500, and writes nothing. The regression cases the issue names: invalid UTF-8, deep JSON, a huge
page number, NUL characters (which PostgreSQL refuses in text)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.json_input import MAX_JSON_BYTES, MAX_JSON_DEPTH
from tests.helpers.web import csrf_token, signup

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def token(db_session: AsyncSession) -> str:
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService, TokenService

    user = await AccountService(db_session).signup(SignupInput(
        username="alice", email="alice@example.org", password="correct horse battery staple"))
    _row, value = await TokenService(db_session).issue(user, "t", ["repo:write", "api"])
    await db_session.commit()
    return value


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["detail"]
    return str(body["detail"])


def html_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    return str(response.text)


async def repo_count(db: AsyncSession) -> int:
    from forge.models import ForgeRepo

    await db.rollback()  # see the app's committed writes
    return int((await db.execute(select(func.count()).select_from(ForgeRepo))).scalar_one())


async def user_count(db: AsyncSession) -> int:
    from domains.account.models import User

    await db.rollback()
    return int((await db.execute(select(func.count()).select_from(User))).scalar_one())


async def test_api_writes_accept_only_application_json(client: Any, token: str, db_session: AsyncSession) -> None:
    body = b'{"name": "proj"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "application/jsonx",
                         "multipart/form-data; boundary=x", ""):
        headers = {**auth(token), "content-type": content_type} if content_type else auth(token)
        detail = problem(await client.post("/api/v1/user/repos", content=body, headers=headers), 415)
        assert "application/json" in detail
    # Also where the handler never reads the body (DELETE), and on RFC 7591 registration.
    problem(await client.request("DELETE", "/api/v1/repos/alice/proj", content=b"x",
                                 headers={**auth(token), "content-type": "text/plain"}), 415)
    problem(await client.post("/oauth/register", content=b'{"redirect_uris": ["https://rp.example/cb"]}',
                              headers={"content-type": "text/plain"}), 415)
    assert await repo_count(db_session) == 0
    # A charset parameter is still JSON.
    ok = await client.post("/api/v1/user/repos", content=body,
                           headers={**auth(token), "content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 201, ok.text
    assert await repo_count(db_session) == 1


@pytest.mark.parametrize(("name", "raw", "status", "says"), [
    ("invalid UTF-8", b'{"name": "caf\xe9"}', 400, "UTF-8"),
    ("NUL escape", b'{"name": "proj", "description": "a\\u0000b"}', 400, "NUL"),
    ("NUL in a key", b'{"name": "proj", "x\\u0000": 1}', 400, "NUL"),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000, 400, "deeper"),
    ("deep object", b'{"name": "p", "x": ' + b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 2),
     400, "deeper"),
    ("integer beyond int64", b'{"name": "proj", "n": 99999999999999999999}', 400, "range"),
    ("truncated", b'{"name": "pro', 400, "not valid JSON"),
    ("huge", b'{"name": "proj", "description": "' + b"a" * MAX_JSON_BYTES + b'"}', 413, "larger"),
    ("wrong type", b'{"name": 5}', 400, "Validation failed"),
])
async def test_malformed_json_is_refused_and_writes_nothing(client: Any, token: str, db_session: AsyncSession,
                                                            name: str, raw: bytes, status: int, says: str) -> None:
    detail = problem(await client.post("/api/v1/user/repos", content=raw, headers={**auth(token), **JSON}), status)
    assert says in detail, (name, detail)
    assert await repo_count(db_session) == 0


async def test_nesting_at_the_cap_is_accepted(client: Any, token: str) -> None:
    nested = b'{"a": ' * (MAX_JSON_DEPTH - 2) + b'"]]]{{"' + b"}" * (MAX_JSON_DEPTH - 2)  # brackets in a string
    raw = b'{"name": "proj", "x": ' + nested + b"}"
    response = await client.post("/api/v1/user/repos", content=raw, headers={**auth(token), **JSON})
    assert response.status_code == 201, response.text


async def test_nul_in_an_edit_is_refused_before_the_database(client: Any, token: str) -> None:
    assert (await client.post("/api/v1/user/repos", json={"name": "proj"}, headers=auth(token))).status_code == 201
    problem(await client.patch("/api/v1/repos/alice/proj", json={"description": "a\x00b"}, headers=auth(token)), 400)
    again = await client.get("/api/v1/repos/alice/proj", headers=auth(token))
    assert again.json()["description"] == ""


@pytest.mark.parametrize("query", [
    "page=99999999999999999999", "page=9223372036854775808", "page=0", "limit=-1", "limit=0",
    "page=abc", "limit=1.5",
])
async def test_out_of_range_paging_is_400(client: Any, token: str, query: str) -> None:
    assert (await client.post("/api/v1/user/repos", json={"name": "proj"}, headers=auth(token))).status_code == 201
    for path in ("/api/v1/user/repos", "/api/v1/repos/alice/proj/branches", "/api/v1/repos/alice/proj/tags"):
        detail = problem(await client.get(f"{path}?{query}", headers=auth(token)), 400)
        assert "Validation failed" in detail
    # A limit above the maximum is capped, as Gitea does, not refused.
    assert (await client.get("/api/v1/user/repos?limit=1000", headers=auth(token))).status_code == 200


async def test_huge_page_on_activitypub_collections_is_400(client: Any) -> None:
    await signup(client, "alice")
    for page in ("99999999999999999999", "922337203685477580", "0"):
        response = await client.get(f"/@alice/outbox?page={page}", headers={"accept": "application/activity+json"})
        problem(response, 400)


async def test_nul_in_the_url_is_400(client: Any, token: str) -> None:
    problem(await client.get("/api/v1/repos/alice/p%00", headers=auth(token)), 400)
    problem(await client.get("/api/v1/user/repos?x=%00", headers=auth(token)), 400)
    html_error(await client.get("/forge?q=a%00b"), 400)
    html_error(await client.get("/blog/tag/a%00b"), 400)
    html_error(await client.get("/forge?q=%ff"), 400)  # a query string that is not UTF-8


@pytest.mark.parametrize(("field", "raw"), [
    ("username", b"bob%00"), ("username", b"bob%ff"), ("username", b"bob\xff"), ("email", b"b%00%40example.org"),
])
async def test_html_forms_with_bad_text_get_the_400_page(client: Any, db_session: AsyncSession, field: str,
                                                         raw: bytes) -> None:
    values = {"username": b"bob", "email": b"b%40example.org", "password": b"correct+horse+battery+staple"}
    values[field] = raw
    token = await csrf_token(client, "/account/signup")
    body = b"&".join(k.encode() + b"=" + v for k, v in values.items()) + b"&_csrf_token=" + token.encode()
    page = html_error(await client.post("/account/signup", content=body, headers=FORM), 400)
    assert "NUL" in page or "UTF-8" in page
    assert await user_count(db_session) == 0


async def test_oauth_registration_answers_rfc7591_errors_for_bad_json(client: Any) -> None:
    for raw in (b'{"redirect_uris": ["https://rp.example/cb"], "client_name": "a\\u0000"}',
                b"[" * 10_000 + b"]" * 10_000, b'{"client_name": "\xff"}'):
        response = await client.post("/oauth/register", content=raw, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_client_metadata"
    big = b'{"client_name": "' + b"a" * (MAX_JSON_BYTES + 1) + b'"}'
    problem(await client.post("/oauth/register", content=big, headers=JSON), 413)


def test_blog_import_of_hostile_json_is_a_message_not_a_500() -> None:
    from domains.blog.importer import GhostImportError, decode_export

    for raw, says in ((b"[" * 100_000 + b"]" * 100_000, "deeper"), (b'{"db": "\xff"}', "UTF-8"),
                      (b'{"db": [{"meta": {}, "data": {"posts": [{"title": "a\\u0000"}]}}]}', "NUL"),
                      (b'{"db": [', "not valid JSON")):
        with pytest.raises(GhostImportError, match=says):
            decode_export(raw)


async def test_huge_page_on_html_lists_gets_the_400_page(client: Any) -> None:
    for path in ("/blog/", "/blog/tag/news", "/blog/author/alice"):
        for page in ("99999999999999999999", "0", "-1", "abc"):
            html_error(await client.get(f"{path}?page={page}"), 400)
