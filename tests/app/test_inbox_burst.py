"""A burst of signed inbox deliveries while two job workers run them and members post forms:
every activity applied, no job left behind, no 500 (the issue's SQLite lock-up, reproduced in
process; PostgreSQL too)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import DONE, Job, JobContext, worker_in_background
from app.safe_http import SafeClient
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.models import Activity, Actor, APObject
from federation.activitypub.signatures import sign_cavage

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AS2 = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
PEER = "https://remote.example/users/bob"
PEER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def peer(db_session: AsyncSession, app: Any) -> None:
    pem = PEER_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    db_session.add(Actor(uri=PEER, local=False, type="Person", username="bob", domain="remote.example",
                         inbox=f"{PEER}/inbox", shared_inbox="https://remote.example/inbox",
                         followers_url=f"{PEER}/followers", key_id=f"{PEER}#main-key", public_key_pem=pem,
                         fetched_at=datetime.now(UTC)))
    await db_session.commit()


def signed_create(n: int) -> tuple[bytes, dict[str, str]]:
    note = {"id": f"{PEER}/notes/{n}", "type": "Note", "attributedTo": PEER, "to": [PUBLIC],
            "content": f"<p>reply {n}</p>", "published": "2026-01-01T00:00:00Z"}
    create = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{PEER}/notes/{n}/activity",
              "type": "Create", "actor": PEER, "object": note, "to": [PUBLIC]}
    request = httpx.Request("POST", f"{BASE}/inbox", content=json.dumps(create).encode(),
                            headers={"Content-Type": AS2})
    sign_cavage(request, f"{PEER}#main-key", PEER_KEY)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
    return request.content, headers


@asynccontextmanager
async def same_loop_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app served on the test's own event loop, through a truly asynchronous transport.

    Litestar's AsyncTestClient runs the app on a portal thread's loop and *blocks* the caller's
    loop for each request (its async transport calls the synchronous one). With the job workers
    on the test's loop, a worker holding a SQLite write transaction could then not run to its
    COMMIT while the request it blocked waited for that very lock: the burst hung until the busy
    timeout. Here app, workers and web writes share one loop and nothing blocks it."""
    async with app.lifespan(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield http


async def test_inbox_bursts_with_web_writes_lose_nothing(
    app: Any, peer: None, db_session: AsyncSession, settings: Any
) -> None:
    maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
    nobody = SafeClient(allow_private=True, transport=httpx.MockTransport(lambda _request: httpx.Response(202)))
    context = JobContext(sessionmaker=maker, settings=settings, services={"federation_client": nobody})
    statuses: list[int] = []
    signups: list[str] = []
    sent = 0
    async with same_loop_client(app) as client, \
            worker_in_background(maker, context, concurrency=4, poll_interval=0.05, worker_id="one"), \
            worker_in_background(maker, context, concurrency=4, poll_interval=0.05, worker_id="two"):

        async def deliver(n: int) -> None:
            body, headers = signed_create(n)
            statuses.append((await client.post("/inbox", content=body, headers=headers)).status_code)

        async def member(name: str) -> None:
            # What the sign-up form does, through the service (a web write beside the burst).
            async with maker() as session, session.begin():
                await AccountService(session).signup(SignupInput(username=name, email=f"{name}@example.org",
                                                                 password="correct horse battery staple"))
            signups.append(name)

        for burst in (8, 64):
            async with anyio.create_task_group() as tg:
                for n in range(sent, sent + burst):
                    tg.start_soon(deliver, n)
                for n in range(4):  # web writes at the same time
                    tg.start_soon(member, f"member{burst}x{n}")
            sent += burst

            with anyio.fail_after(180):
                while True:
                    async with maker() as session:
                        left = await session.scalar(select(func.count()).select_from(Job).where(
                            Job.kind == "ap.inbox", Job.state != DONE))
                    if left == 0:
                        break
                    await anyio.sleep(0.05)

    assert statuses == [202] * sent
    assert len(signups) == 8
    async with maker() as session:
        activities = (await session.scalars(select(Activity.state).where(Activity.direction == "in"))).all()
        notes = await session.scalar(select(func.count()).select_from(APObject))
        members = await session.scalar(select(func.count()).select_from(User))
        inbox_jobs = (await session.execute(select(Job.state, Job.attempts).where(Job.kind == "ap.inbox"))).all()
    assert activities == ["processed"] * sent and notes == sent and members == 8
    assert len(inbox_jobs) == sent and {(j.state, j.attempts) for j in inbox_jobs} == {(DONE, 1)}
