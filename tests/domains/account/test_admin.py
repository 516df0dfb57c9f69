"""Member administration: only admins; roles change; suspension signs a member out everywhere."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from domains.account.models import User
from tests.helpers.web import login, post_form, signup

pytestmark = pytest.mark.anyio


async def make_admin(db_session, username: str) -> None:  # type: ignore[no-untyped-def]
    await db_session.execute(update(User).where(User.username == username).values(is_admin=True))
    await db_session.commit()


async def user_id(db_session, username: str):  # type: ignore[no-untyped-def]
    return (await db_session.execute(select(User.id).where(User.username == username))).scalar_one()


async def test_members_page_is_for_admins_only(client, db_session) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/account/admin/users")).status_code == 303  # anonymous: to sign-in
    await signup(client, "mallory")
    assert (await client.get("/account/admin/users")).status_code == 403
    target = await user_id(db_session, "mallory")
    forged = await post_form(client, f"/account/admin/users/{target}/roles", {"is_admin": "on", "is_active": "on"},
                             page="/account")
    assert forged.status_code == 403
    await db_session.commit()
    assert (await db_session.execute(select(User.is_admin).where(User.id == target))).scalar_one() is False


async def test_admin_grants_roles_and_suspends(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    client.cookies.clear()
    await signup(client, "ada")
    await make_admin(db_session, "ada")
    page = await client.get("/account/admin/users?q=bo")
    assert page.status_code == 200 and "@bob" in page.text and "@ada" not in page.text
    bob = await user_id(db_session, "bob")
    granted = await post_form(client, f"/account/admin/users/{bob}/roles", {"is_admin": "on", "is_active": "on"},
                              page="/account/admin/users")
    assert granted.status_code == 303
    db_session.expire_all()
    assert (await db_session.execute(select(User.is_admin).where(User.id == bob))).scalar_one() is True
    suspended = await post_form(client, f"/account/admin/users/{bob}/roles", {}, page="/account/admin/users")
    assert suspended.status_code == 303
    client.cookies.clear()
    assert (await login(client, "bob")).status_code == 401


async def test_admin_cannot_lock_themself_out(client, db_session) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "ada")
    await make_admin(db_session, "ada")
    me = await user_id(db_session, "ada")
    response = await post_form(client, f"/account/admin/users/{me}/roles", {"is_active": "on"},
                               page="/account/admin/users")
    assert response.status_code == 303
    page = await client.get("/account/admin/users")
    assert "own administrator role" in page.text
    db_session.expire_all()
    assert (await db_session.execute(select(User.is_admin).where(User.id == me))).scalar_one() is True
    unknown = await post_form(client, "/account/admin/users/00000000-0000-7000-8000-000000000000/roles", {},
                              page="/account/admin/users")
    assert unknown.status_code == 404


async def test_role_changes_are_in_the_audit_log_newest_first(client, db_session) -> None:  # type: ignore[no-untyped-def]
    from app.audit import AuditEntry, record

    assert (await client.get("/account/admin/audit")).status_code == 303  # anonymous: to sign-in
    await signup(client, "bob")
    assert (await client.get("/account/admin/audit")).status_code == 403
    client.cookies.clear()
    await signup(client, "ada")
    await make_admin(db_session, "ada")
    # The dashboard leads to the admin home, whose sidebar leads to the audit log.
    assert 'href="/admin"' in (await client.get("/account")).text
    assert 'href="/account/admin/audit"' in (await client.get("/admin")).text
    bob = await user_id(db_session, "bob")
    granted = await post_form(client, f"/account/admin/users/{bob}/roles",
                              {"is_editor": "on", "is_active": "on"}, page="/account/admin/users")
    assert granted.status_code == 303
    await db_session.commit()
    assert (await db_session.execute(select(User.is_editor).where(User.id == bob))).scalar_one() is True
    entry = (await db_session.execute(select(AuditEntry))).scalar_one()
    assert (entry.actor_name, entry.action, entry.target, entry.subject_id) == ("ada", "account.roles", "@bob", bob)
    assert entry.detail == "member → editor"
    # Saving without a change writes nothing; a refused change (self-demotion) neither.
    await post_form(client, f"/account/admin/users/{bob}/roles", {"is_editor": "on", "is_active": "on"},
                    page="/account/admin/users")
    ada = await user_id(db_session, "ada")
    await post_form(client, f"/account/admin/users/{ada}/roles", {"is_active": "on"}, page="/account/admin/users")
    await db_session.commit()
    assert (await db_session.execute(select(func.count()).select_from(AuditEntry))).scalar_one() == 1

    page = await client.get("/account/admin/audit")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store, private"
    assert "account.roles" in page.text and "@bob" in page.text and "member → editor" in page.text

    admin = (await db_session.execute(select(User).where(User.id == ada))).scalar_one()
    for n in range(60):
        await record(db_session, admin, "test.action", f"item {n:02d}")
    await db_session.commit()
    first = (await client.get("/account/admin/audit")).text
    assert first.index("item 59") < first.index("item 58") and "item 09" not in first
    assert 'href="/account/admin/audit?page=2"' in first
    second = await client.get("/account/admin/audit?page=2")
    assert "item 09" in second.text and "member → editor" in second.text and "item 59" not in second.text
    assert (await client.get("/account/admin/audit?page=3")).status_code == 404
    for bad in ("0", "-1", "x", "99999999999999999999"):
        assert (await client.get(f"/account/admin/audit?page={bad}")).status_code == 400, bad
