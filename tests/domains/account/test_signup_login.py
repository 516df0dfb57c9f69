"""Sign-up, sign-in, sign-out and the bad-input paths, over HTTP, on every configured database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.settings import Settings
from domains.account.models import User
from tests.conftest import on_store
from tests.helpers.web import csrf_token, login, post_form, signup

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings, store_kind: str) -> Settings:
    """Memory or Redis stores by the database leg (tests/conftest.py ``store_kind``)."""
    return on_store(settings, store_kind)


async def count_users(db_session) -> int:  # type: ignore[no-untyped-def]
    return int((await db_session.execute(select(func.count()).select_from(User))).scalar_one())


async def test_signup_signs_in_and_shows_dashboard(client, db_session) -> None:  # type: ignore[no-untyped-def]
    response = await signup(client, "alice")
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    dashboard = await client.get("/account")
    assert dashboard.status_code == 200
    assert "Hello, alice" in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store, private"
    assert await count_users(db_session) == 1
    row = (await db_session.execute(select(User.password_hash))).scalar_one()
    assert row.startswith("$argon2id$")


async def test_signout_then_signin_again(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    out = await post_form(client, "/account/logout", {}, page="/account")
    assert out.status_code == 303
    assert (await client.get("/account")).status_code == 303  # redirected to sign-in
    bad = await login(client, "bob", "not the password at all")
    assert bad.status_code == 401
    assert "don&#39;t match an account" in bad.text or "don't match an account" in bad.text
    good = await login(client, "bob")
    assert good.status_code == 303
    assert (await client.get("/account")).status_code == 200


async def test_signin_by_email_and_next_redirect(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "carol")
    await post_form(client, "/account/logout", {}, page="/account")
    response = await post_form(client, "/account/login", {
        "login": "CAROL@example.org", "password": "correct horse battery staple", "next": "/account/settings/tokens"})
    assert response.headers["location"] == "/account/settings/tokens"


async def test_open_redirect_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "dave")
    await post_form(client, "/account/logout", {}, page="/account")
    response = await post_form(client, "/account/login", {
        "login": "dave", "password": "correct horse battery staple", "next": "//evil.example/"})
    assert response.headers["location"] == "/account"


async def test_a_login_with_a_nul_is_a_400(client) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL refuses NUL in text: the account lookup answered 500 for a name or email holding one.
    # Now the kernel's form decoder refuses it before the handler (app/forms.py), with a reason.
    await signup(client, "erin")
    await post_form(client, "/account/logout", {}, page="/account")
    password = "correct horse battery staple"
    for name in ("er\x00in", "erin\x00@example.org"):
        refused = await post_form(client, "/account/login", {"login": name, "password": password})
        assert refused.status_code == 400 and "NUL" in refused.text, (name, refused.status_code)
        assert "rose_ash_session" not in refused.headers.get("set-cookie", "")


async def test_a_form_that_is_not_utf8_is_a_400(client, db_session) -> None:  # type: ignore[no-untyped-def]
    # Litestar's multipart parser raised UnicodeDecodeError (a 500), even before the CSRF check.
    body = (b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\n\xff\xfe\r\n'
            b'--x\r\nContent-Disposition: form-data; name="password"\r\n\r\nx\r\n--x--\r\n')
    for path in ("/account/signup", "/account/login"):
        answer = await client.post(path, content=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert answer.status_code == 400 and "not valid UTF-8" in answer.text, (path, answer.status_code)
        assert "rose_ash_session" not in answer.headers.get("set-cookie", "")
    assert await count_users(db_session) == 0


async def test_session_id_changes_on_signin(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "erin")
    first = client.cookies.get("rose_ash_session")
    await post_form(client, "/account/logout", {}, page="/account")
    await login(client, "erin")
    assert client.cookies.get("rose_ash_session") not in (None, first)


@pytest.mark.parametrize(
    ("username", "email", "password", "status", "field", "message"),
    [
        ("account", "x@example.org", "correct horse battery", 422, "username", "reserved"),
        ("forge", "x@example.org", "correct horse battery", 422, "username", "reserved"),
        ("Bad Name!", "x@example.org", "correct horse battery", 422, "username", "lowercase"),
        ("frank", "not-an-email", "correct horse battery", 422, "email", "look like an email"),
        ("frank", "frank@example.org", "short", 422, "password", "at least 10"),
        ("frank", "frank@example.org", "password123", 422, "password", "too easy"),
    ],
)
async def test_signup_bad_input_writes_nothing(client, db_session, username, email, password, status, field,
                                               message) -> None:  # type: ignore[no-untyped-def]
    response = await signup(client, username, email, password)
    assert response.status_code == status
    assert message in response.text
    assert f'id="e-{field}"' in response.text
    assert await count_users(db_session) == 0
    # What the person typed is kept, except the password.
    assert password not in response.text or len(password) < 6


async def test_taken_username_and_email_conflict(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "grace")
    await post_form(client, "/account/logout", {}, page="/account")
    again = await signup(client, "grace", "other@example.org")
    assert again.status_code == 409
    assert "That username is taken" in again.text
    # A taken address is said plainly, and its owner is told (tests/domains/account/test_address_in_use.py).
    same_email = await signup(client, "heidi", "GRACE@example.org")
    assert same_email.status_code == 409 and "An account already uses this address" in same_email.text
    assert await count_users(db_session) == 1


async def test_form_without_csrf_token_is_forbidden(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await client.get("/account/signup")
    response = await client.post("/account/signup", data={
        "username": "ivan", "email": "ivan@example.org", "password": "correct horse battery"})
    assert response.status_code == 403
    assert "Reload the page" in response.text
    assert await count_users(db_session) == 0


async def test_csrf_token_from_another_session_is_refused(client, db_session, app) -> None:  # type: ignore[no-untyped-def]
    token = await csrf_token(client, "/account/signup")
    client.cookies.clear()
    response = await client.post("/account/signup", data={
        "username": "judy", "email": "judy@example.org", "password": "correct horse battery", "_csrf_token": token})
    assert response.status_code == 403
    assert await count_users(db_session) == 0


async def test_password_change_ends_other_sessions(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "karl")
    first_session = client.cookies.get("rose_ash_session")
    # A second session of the same member (as from another browser).
    client.cookies.clear()
    await login(client, "karl")
    second_session = client.cookies.get("rose_ash_session")
    assert first_session != second_session

    def use_session(session_id: str) -> None:
        client.cookies.clear()
        client.cookies.set("rose_ash_session", session_id)

    use_session(first_session)
    wrong = await post_form(client, "/account/settings/password", {
        "current_password": "nope nope nope", "new_password": "a whole new secret phrase",
        "confirm_password": "a whole new secret phrase"}, page="/account/settings/password")
    assert wrong.status_code == 422
    assert "isn&#39;t your current password" in wrong.text or "isn't your current password" in wrong.text
    mismatch = await post_form(client, "/account/settings/password", {
        "current_password": "correct horse battery staple", "new_password": "a whole new secret phrase",
        "confirm_password": "something else entirely"}, page="/account/settings/password")
    assert mismatch.status_code == 422
    ok = await post_form(client, "/account/settings/password", {
        "current_password": "correct horse battery staple", "new_password": "a whole new secret phrase",
        "confirm_password": "a whole new secret phrase"}, page="/account/settings/password")
    assert ok.status_code == 303
    use_session(ok.cookies["rose_ash_session"])  # the changing session continues, with a new id
    assert (await client.get("/account")).status_code == 200
    use_session(second_session)
    assert (await client.get("/account")).status_code == 303  # the other session has ended
    assert (await login(client, "karl")).status_code == 401
    assert (await login(client, "karl", "a whole new secret phrase")).status_code == 303


async def test_profile_update_and_public_profile(client) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "liam")
    saved = await post_form(client, "/account/settings/profile", {
        "display_name": "Liam <b>O</b>", "bio": "<script>alert(1)</script> hello"}, page="/account/settings/profile")
    assert saved.status_code == 303
    page = await client.get("/@liam")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "Liam &lt;b&gt;O&lt;/b&gt;" in page.text
    too_long = await post_form(client, "/account/settings/profile", {
        "display_name": "x" * 101, "bio": ""}, page="/account/settings/profile")
    assert too_long.status_code == 422


async def test_unknown_profile_and_url_are_404(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/@nobody")).status_code == 404
    page = await client.get("/no/such/page")
    assert page.status_code == 404
    assert "couldn" in page.text and "<html" in page.text
    problem = await client.get("/no/such/page", headers={"accept": "application/json"})
    assert problem.status_code == 404
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 404
    partial = await client.get("/no/such/page", headers={"hx-request": "true"})
    assert partial.status_code == 404
    assert "<html" not in partial.text and "404" in partial.text


async def test_private_pages_redirect_anonymous_to_signin(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/account/settings/tokens")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/login?next=/account/settings/tokens"
    htmx = await client.get("/account/settings/tokens", headers={"hx-request": "true"})
    assert htmx.status_code == 401


async def test_signin_is_rate_limited(settings, engine) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from app import create_app

    limited = create_app(settings.__class__(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                                             "auth_rate_limit": 3}))
    async with AsyncTestClient(app=limited, base_url="http://127.0.0.1:8000") as c:
        c.follow_redirects = False
        statuses = [(await login(c, "nobody", "wrong password here")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_healthz_and_static_headers(client) -> None:  # type: ignore[no-untyped-def]
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok"}
    css = await client.get("/static/css/site.css")
    assert css.status_code == 200
    assert "max-age=31536000" in css.headers["cache-control"]
    assert "immutable" in css.headers["cache-control"]
    htmx = await client.get("/static/vendor/htmx-2.0.11/htmx.min.js")
    assert htmx.status_code == 200


async def test_public_home_sets_no_session_cookie(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/")
    assert response.status_code == 200
    assert "rose_ash_session" not in response.headers.get("set-cookie", "")
    assert 'hx-get="/f/me/account-menu"' in response.text
    assert '<a class="button button-quiet account-unknown" href="/account">Account</a>' in response.text


async def test_stale_session_of_a_suspended_member_is_dropped_not_a_500(client, db_session) -> None:  # type: ignore[no-untyped-def]
    """A suspended member's old cookie is no session; the sign-in page still answers (it used to 500)."""
    from sqlalchemy import update

    await signup(client, "alice")
    assert (await client.get("/account")).status_code == 200
    await db_session.execute(update(User).where(User.username == "alice").values(is_active=False))
    await db_session.commit()
    failed = await client.post("/account/login", data={"login": "alice", "password": "wrong"},
                               headers={"X-CSRFToken": client.cookies.get("csrftoken")})
    assert failed.status_code == 401
    assert "rose_ash_session=null" in failed.headers.get("set-cookie", "")
    assert (await client.get("/account")).status_code == 303
