"""The audit log (app/audit.py): written in the transaction of the admin action it records, so a
refused action leaves no entry; OAuth client administration of clients others registered is
recorded with the registrant as the subject."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import AuditEntry, record
from domains.account.models import User
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio


async def entries(db_session: AsyncSession) -> list[AuditEntry]:
    await db_session.commit()
    return list((await db_session.execute(select(AuditEntry).order_by(AuditEntry.created_at))).scalars().all())


async def test_an_entry_rolls_back_with_its_action(db_session: AsyncSession) -> None:
    user = User(username="ada", email="ada@example.org", password_hash="!")
    db_session.add(user)
    await db_session.commit()
    await record(db_session, user, "test.rolled-back", "@bob", "x" * 5000)
    await db_session.rollback()
    assert await entries(db_session) == []
    kept = await record(db_session, None, "test.kept", "@bob", "y" * 5000)
    await db_session.commit()
    assert kept.actor_name == "(system)" and kept.actor_id is None and len(kept.detail) == 2000
    assert [e.action for e in await entries(db_session)] == ["test.kept"]


async def test_oauth_client_admin_is_audited(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "registrar")
    registrar = (await db_session.execute(select(User).where(User.username == "registrar"))).scalar_one()
    await db_session.execute(update(User).where(User.id == registrar.id).values(is_admin=True))
    await db_session.commit()
    created = await post_form(client, "/oauth/admin/clients/", {
        "name": "Blog", "redirect_uris": "https://blog.example.test/cb\n", "scopes": ["openid", "profile"],
        "alg": "EdDSA"}, page="/oauth/admin/clients/")
    assert created.status_code == 303
    where = created.headers["location"]
    client.cookies.clear()
    await signup(client, "rooty")
    await db_session.execute(update(User).where(User.username == "rooty").values(is_admin=True))
    await db_session.commit()

    refused = await post_form(client, where, {"name": "", "redirect_uris": "http://evil.example.test/cb",
                                              "scopes": ["openid"]}, page=where)
    assert refused.status_code == 422
    assert await entries(db_session) == []
    edited = await post_form(client, where, {"name": "Blog 2", "redirect_uris": "https://blog.example.test/cb",
                                             "scopes": ["openid"], "alg": "RS256", "disabled": "on"}, page=where)
    assert edited.status_code == 303
    reset = await post_form(client, f"{where}/secret", {}, page=where)
    assert reset.status_code == 303
    logged = await entries(db_session)
    assert [(e.actor_name, e.action, e.subject_id) for e in logged] == [
        ("rooty", "oauth.client.edit", registrar.id), ("rooty", "oauth.client.secret", registrar.id)]
    assert logged[0].target.startswith("OAuth client Blog 2 (") and "disabled" in logged[0].detail
    page = await client.get("/account/admin/audit")
    assert "oauth.client.secret" in page.text and "Blog 2" in page.text
    assert (await db_session.execute(select(func.count()).select_from(AuditEntry))).scalar_one() == 2
