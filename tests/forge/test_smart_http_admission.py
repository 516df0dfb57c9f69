"""Smart HTTP admission (forge/smart_http.py, both the lean path and the full one), in process on
SQLite and PostgreSQL: a fetch's body is read (with a deadline, and its received bytes capped as
well as its decoded ones) before a concurrency slot is taken; a full slot table or spawn queue
answers 429/503 with Retry-After; an administrator's fetch refused for lack of a slot is audited
once; duplicate Content-Type/Content-Encoding lines go to the full application.

A URL with ``?x=1`` is never the lean path's (it answers only the exact query git sends), so
the same request with and without it compares the two paths' answers.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import AuditEntry
from app.factory import InstalledIdentity
from app.metrics import GIT_FAST_PATH
from domains.account.models import User
from domains.account.services import TokenService
from forge import process
from forge.runtime import ForgeRuntime, runtime_for
from forge.services import RepoService
from forge.smart_http import GitFastPath, install_fast_path

pytestmark = pytest.mark.anyio

UPLOAD = {"Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"}
LS_REFS = b"0014command=ls-refs\n0000"
VARYING = {"date", "x-request-id", "server"}
PATHS = ["", "?x=1"]  # the lean path, the full path


async def lean_app(app: Any, db_session: AsyncSession, name: str, **limits: Any) -> tuple[ForgeRuntime, uuid.UUID]:
    owner = User(username="adm", email="adm@example.org", password_hash="x")
    db_session.add(owner)
    await db_session.flush()
    rt = runtime_for(app.state.settings)
    repo = await RepoService(db_session, rt.store).create(owner, name)
    await db_session.commit()
    if limits:
        rt.config = rt.config.__class__(state_dir=rt.config.state_dir, **limits)
    install_fast_path(app, InstalledIdentity())
    return rt, repo.id


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000", timeout=30)


def whole(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in VARYING)
    return response.status_code, headers, response.content


def lean_count(status: str) -> float:
    return float(GIT_FAST_PATH.labels("git-upload-pack", status)._value.get())


@pytest.mark.parametrize("query", PATHS)
async def test_a_body_still_arriving_holds_no_slot_and_times_out_with_408(
        app: Any, db_session: AsyncSession, query: str) -> None:
    rt, repo_id = await lean_app(app, db_session, "slow", body_timeout=0.2)
    first_piece_sent = asyncio.Event()
    never = asyncio.Event()
    slots_while_sending: list[int] = []

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"0014command=ls"
        first_piece_sent.set()
        await never.wait()  # the rest never comes
        yield b"-refs\n0000"

    async with app.lifespan(), client_for(app) as client:
        task = asyncio.create_task(client.post(f"/forge/adm/slow.git/git-upload-pack{query}",
                                               content=slow_body(), headers=UPLOAD))
        await first_piece_sent.wait()
        slots_while_sending.append(rt.limiter.running)
        buffered_while_sending = rt.bodies.used
        response = await task
        never.set()
    assert slots_while_sending == [0]
    assert buffered_while_sending == len(b"0014command=ls")  # counted against the body budget meanwhile
    assert response.status_code == 408 and response.text == "The request body did not arrive in time.\n"
    assert rt.limiter.running == 0 and repo_id not in rt.limiter.by_repo
    assert rt.bodies.used == 0  # and given back on the timeout


async def test_gzip_that_decodes_to_nothing_is_capped_by_its_received_bytes(app: Any, db_session: AsyncSession) -> None:
    """A gzip header whose file name never ends: zlib consumes it and produces no output, so
    only the received bytes can stop it (before, 26 MB passed a 1 MB cap and ran for ever)."""
    rt, _ = await lean_app(app, db_session, "fname", max_fetch_body_bytes=1000)
    endless_name = bytes([0x1F, 0x8B, 8, 0x08, 0, 0, 0, 0, 0, 0xFF]) + b"A" * 5000
    answers = []
    async with app.lifespan(), client_for(app) as client:
        for query in PATHS:
            answers.append(await client.post(f"/forge/adm/fname.git/git-upload-pack{query}", content=endless_name,
                                             headers={**UPLOAD, "Content-Encoding": "gzip"}))
        # the cap on decoded bytes still holds for a body that is small on the wire
        bomb = await client.post("/forge/adm/fname.git/git-upload-pack", content=gzip.compress(b"0" * 100_000),
                                 headers={**UPLOAD, "Content-Encoding": "gzip"})
    assert answers[0].status_code == 413 and answers[0].text == "Request body exceeds 1000 bytes.\n"
    assert whole(answers[0]) == whole(answers[1])
    assert bomb.status_code == 413
    assert rt.limiter.running == 0
    assert rt.bodies.used == 0


async def test_a_gzip_body_that_inflates_a_hundredfold_is_refused_before_it_fills_the_budget(
        app: Any, db_session: AsyncSession) -> None:
    """Zeros inflate about a thousand-fold: 8 MiB of them fit under the default 10 MiB cap in ~8 KiB
    on the wire, and enough such bodies at once would hold the whole shared body budget."""
    rt, _ = await lean_app(app, db_session, "inflate")
    bomb = gzip.compress(b"0" * (8 << 20))
    async with app.lifespan(), client_for(app) as client:
        answers = [await client.post(f"/forge/adm/inflate.git/git-upload-pack{query}", content=bomb,
                                     headers={**UPLOAD, "Content-Encoding": "gzip"}) for query in PATHS]
        # an ordinary gzipped request still works
        fine = await client.post("/forge/adm/inflate.git/git-upload-pack", content=gzip.compress(LS_REFS),
                                 headers={**UPLOAD, "Content-Encoding": "gzip"})
    assert len(bomb) < 20_000
    for answer in answers:
        assert answer.status_code == 400
        assert answer.text == "The gzip body inflates more than 100-fold; send it uncompressed.\n"
    assert fine.status_code == 200 and fine.content.endswith(b"0000")
    assert rt.limiter.running == 0
    assert rt.bodies.used == 0


async def test_a_full_repository_refuses_a_fetch_after_its_body_like_the_full_path(
        app: Any, db_session: AsyncSession) -> None:
    rt, repo_id = await lean_app(app, db_session, "full")
    held = [rt.limiter.try_acquire(repo_id) for _ in range(rt.config.max_per_repo)]
    before = lean_count("429")
    try:
        async with app.lifespan(), client_for(app) as client:
            answers = [await client.post(f"/forge/adm/full.git/git-upload-pack{query}", content=LS_REFS,
                                         headers=UPLOAD) for query in PATHS]
    finally:
        for slot in held:
            assert slot is not None
            slot.release()
    assert answers[0].status_code == 429 and answers[0].headers["retry-after"] == str(rt.config.retry_after)
    assert whole(answers[0]) == whole(answers[1])
    assert lean_count("429") == before + 1  # the lean path answered it (it had read the body)
    assert rt.limiter.running == 0


async def test_a_full_spawn_queue_answers_503_with_retry_after(app: Any, db_session: AsyncSession,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rt, _ = await lean_app(app, db_session, "queued")
    monkeypatch.setattr(process, "SPAWN_QUEUE_MAX", 0)
    async with app.lifespan(), client_for(app) as client:
        refs = await client.get("/forge/adm/queued.git/info/refs?service=git-upload-pack")
        posts = [await client.post(f"/forge/adm/queued.git/git-upload-pack{query}", content=LS_REFS,
                                   headers=UPLOAD) for query in PATHS]
    for answer in (refs, *posts):
        assert answer.status_code == 503 and answer.headers["retry-after"] == str(rt.config.retry_after)
        assert answer.text == "The server is busy starting git processes; try again shortly.\n"
    assert whole(posts[0]) == whole(posts[1])
    assert rt.limiter.running == 0


async def test_a_git_that_cannot_start_is_a_503_not_a_cut_short_200(app: Any, db_session: AsyncSession,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean path spawns git before its 200 goes out: a spawn that fails (here EAGAIN from the
    kernel) is a whole 503 with Retry-After, and the slot comes back; after it, clones work again."""
    rt, _ = await lean_app(app, db_session, "nofork")
    real_popen = process.subprocess.Popen
    failing = True

    def popen(*args: Any, **kwargs: Any) -> Any:
        if failing:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(process.subprocess, "Popen", popen)
    async with app.lifespan(), client_for(app) as client:
        refs = await client.get("/forge/adm/nofork.git/info/refs?service=git-upload-pack")
        post = await client.post("/forge/adm/nofork.git/git-upload-pack", content=LS_REFS, headers=UPLOAD)
        assert rt.limiter.running == 0
        failing = False
        again = await client.post("/forge/adm/nofork.git/git-upload-pack", content=LS_REFS, headers=UPLOAD)
    for answer in (refs, post):
        assert answer.status_code == 503 and answer.headers["retry-after"] == str(rt.config.retry_after)
        assert answer.text == "The server is busy starting git processes; try again shortly.\n"
    assert again.status_code == 200 and again.content.endswith(b"0000")  # ls-refs ends with a flush
    assert rt.limiter.running == 0


async def test_an_admin_fetch_refused_for_lack_of_a_slot_is_audited_once(app: Any, db_session: AsyncSession) -> None:
    owner = User(username="auditowner", email="ao@example.org", password_hash="x")
    admin = User(username="auditadmin", email="aa@example.org", password_hash="x", is_admin=True)
    db_session.add_all([owner, admin])
    await db_session.flush()
    rt = runtime_for(app.state.settings)
    repo = await RepoService(db_session, rt.store).create(owner, "secret", private=True)
    _, secret = await TokenService(db_session).issue(admin, "t", ["repo:read"])
    await db_session.commit()
    install_fast_path(app, InstalledIdentity())
    url = "/forge/auditowner/secret.git/info/refs?service=git-upload-pack"
    auth = {"Authorization": f"token {secret}"}

    async def audit_rows() -> int:
        return int((await db_session.execute(select(func.count()).select_from(AuditEntry))).scalar_one())

    async with app.lifespan(), client_for(app) as client:
        held = [rt.limiter.try_acquire(repo.id) for _ in range(rt.limiter.per_repo)]
        try:
            busy = await client.get(url, headers=auth)
        finally:
            for slot in held:
                assert slot is not None
                slot.release()
        after_busy = await audit_rows()
        ok = await client.get(url, headers=auth)  # and a served one, once too
    assert busy.status_code == 429 and after_busy == 1
    assert ok.status_code == 200 and await audit_rows() == 2
    assert rt.limiter.running == 0


def lean_parse(app: Any, headers: list[tuple[bytes, bytes]]) -> object:
    fast = GitFastPath(app, None, None)
    return fast._parse({"type": "http", "method": "POST", "path": "/forge/adm/dup.git/git-upload-pack",
                        "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000"), *headers]})


@pytest.mark.parametrize("name", [b"content-type", b"content-encoding"])
async def test_duplicate_content_headers_go_to_the_full_application(app: Any, name: bytes) -> None:
    ctype = (b"content-type", b"application/x-git-upload-pack-request")
    single = [ctype] if name == b"content-encoding" else []
    assert lean_parse(app, [ctype]) is not None
    assert lean_parse(app, [*single, (name, ctype[1] if name == b"content-type" else b"gzip"),
                            (name, ctype[1] if name == b"content-type" else b"identity")]) is None


async def test_duplicate_content_encoding_gets_the_full_answer(app: Any, db_session: AsyncSession) -> None:
    """Litestar reads the first Content-Encoding; the lean path read the last, so the same
    request got two different answers. Now it falls through and gets Litestar's."""
    await lean_app(app, db_session, "dup")
    headers = [*UPLOAD.items(), ("Content-Encoding", "gzip"), ("Content-Encoding", "identity")]
    before = lean_count("200")
    async with app.lifespan(), client_for(app) as client:
        answers = [await client.post(f"/forge/adm/dup.git/git-upload-pack{query}",
                                     content=gzip.compress(LS_REFS), headers=headers) for query in PATHS]
    assert answers[0].status_code == 200 and answers[0].content.endswith(b"0000")
    assert whole(answers[0]) == whole(answers[1])
    assert lean_count("200") == before
