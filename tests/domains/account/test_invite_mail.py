"""``rose-ash users invite`` (a "set your password" link for members with none, e.g. Ghost-imported
authors) and ``rose-ash users promote``, run as the real command against the test database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import msgspec
import pytest
from sqlalchemy import select

from app.settings import Settings
from domains.account.models import User
from domains.account.services import AccountService
from tests.domains.account._mail_helpers import Inbox, link_path, parts, run_jobs, to_address
from tests.helpers.server import REPO_ROOT, ROSE_ASH
from tests.helpers.smtp import SMTPServer
from tests.helpers.web import csrf_token, login, signup

pytestmark = pytest.mark.anyio

PASSWORD = "my first real passphrase"


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on loopback (aiosmtpd), plain: no TLS, no AUTH."""
    with SMTPServer() as server:
        yield server


@pytest.fixture
def inbox(smtp: SMTPServer) -> Inbox:
    return Inbox(smtp)


@pytest.fixture
def settings(settings: Settings, smtp: SMTPServer) -> Settings:
    return msgspec.structs.replace(smtp.settings(settings), mail_from="Rose Ash <noreply@coop.test>")


def rose_ash(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, on the test's database (the web app under test sees the same rows)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATABASE_URL": settings.database_url, "ROSE_ASH_DATA_DIR": str(settings.data_dir),
                "ROSE_ASH_SECRET_KEY": settings.secret_key, "ROSE_ASH_BASE_URL": settings.base_url,
                "ROSE_ASH_PASSWORD_HASH_COST": os.environ.get("ROSE_ASH_PASSWORD_HASH_COST", "test")})
    return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


async def test_invite_mails_a_set_your_password_link(client, engine, db_session, settings, inbox,
                                                     ) -> None:  # type: ignore[no-untyped-def]
    author = await AccountService(db_session).create_imported_author(
        username="Hannah Arendt", email="hannah@example.org", display_name="Hannah")
    await db_session.commit()
    assert (await login(client, "hannah@example.org", "anything at all")).status_code == 401  # no password yet

    done = rose_ash(settings, "users", "invite", author.username)
    assert done.returncode == 0, done.stderr
    assert f"queued for {author.username} <hannah@example.org>" in done.stdout
    await run_jobs(engine, settings)
    [mail] = inbox.messages
    assert to_address(mail) == "hannah@example.org" and mail["Subject"] == "Set your password"
    assert mail["To"].addresses[0].display_name == "Hannah"
    text, html = parts(mail)
    assert "7 days" in text and f"@{author.username}" in text and "Set your password" in html
    path = link_path(mail, "/account/password/reset/")

    page = await client.get(path)
    assert page.status_code == 200 and "Set your password" in page.text
    token = await csrf_token(client, path)
    set_ = await client.post(path, data={"password": PASSWORD, "confirm_password": PASSWORD, "_csrf_token": token})
    assert set_.status_code == 303 and set_.headers["location"] == "/account"
    assert (await client.get("/account")).status_code == 200
    client.cookies.clear()
    assert (await login(client, author.username, PASSWORD)).status_code == 303
    assert (await client.get(path)).status_code == 410

    unknown = rose_ash(settings, "users", "invite", "nobody")
    assert unknown.returncode == 1 and "no user called nobody" in unknown.stderr and "Traceback" not in unknown.stderr


async def test_promote_makes_a_signed_up_member_an_administrator(client, db_session,
                                                                 settings) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "ann")

    async def is_admin() -> bool:
        db_session.expire_all()
        return bool((await db_session.execute(select(User.is_admin).where(User.username == "ann"))).scalar_one())

    # The README's path: sign up on the site, then make yourself an administrator.
    again = rose_ash(settings, "users", "create", "--username", "ann", "--email", "ann@example.org",
                     "--password", "a long enough passphrase", "--admin")
    assert again.returncode == 1 and "rose-ash users promote ann" in again.stderr
    assert not await is_admin()
    promoted = rose_ash(settings, "users", "promote", "ann")
    assert promoted.returncode == 0 and "ann is now an administrator" in promoted.stdout, promoted.stderr
    assert await is_admin()
    assert (await client.get("/account/admin/users")).status_code == 200
    assert "already an administrator" in rose_ash(settings, "users", "promote", "ann").stdout
    revoked = rose_ash(settings, "users", "promote", "ann", "--revoke")
    assert revoked.returncode == 0 and "no longer an administrator" in revoked.stdout
    assert not await is_admin()
