"""Benchmark: ActivityPub signature verification and durable fan-out, each beside a baseline.

1. Inbox signature verification: ``verify_request`` (parse, time window, coverage, digest over
   the raw body, key resolution from a warm cache, RSA verify) for draft-cavage and RFC 9421
   POSTs, against a bare ``cryptography`` RSA-PKCS1v15-SHA256 verify of the same signing
   string — verifications per second and the ratio.
2. Fan-out: one post to 1,000 followers spread over 50 shared inboxes of a local sink (one
   uvicorn process answering 202), through the real path — ``Outbox.post_note`` writes the
   activity, 50 delivery rows and one ``ap.fanout`` job to SQLite, and a ``Worker`` runs it:
   it signs and POSTs them through the guarded client (at most 8 at a time per host) and records
   all 50 outcomes in one transaction — against 50 plain signed httpx POSTs of the same body
   (8 at a time) in the same run. Prints both times and the ratio.

    .venv/bin/python bench/federation.py [--seconds 2] [--followers 1000] [--inboxes 50]
                                         [--only verify|fanout] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from federation.activitypub.signatures import (  # noqa: E402
    ResolvedKey,
    SignatureAuth,
    SignedMessage,
    cavage_signing_string,
    parse_cavage,
    sign_cavage,
    sign_rfc9421,
    verify_request,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUB = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KEY_ID = "https://remote.example/users/bob#main-key"
ACTOR = "https://remote.example/users/bob"
BODY = json.dumps({"id": "https://remote.example/activities/1", "type": "Create", "actor": ACTOR,
                   "object": {"id": "https://remote.example/notes/1", "type": "Note", "content": "x" * 600}}).encode()


# --- 1. verification ------------------------------------------------------------------------


async def _resolve(key_id: str, refresh: bool) -> ResolvedKey | None:
    return ResolvedKey(KEY_ID, ACTOR, PUB)


def _message(spec: str) -> SignedMessage:
    req = httpx.Request("POST", "https://local.example/inbox", content=BODY,
                        headers={"Content-Type": "application/activity+json"})
    (sign_cavage if spec == "cavage" else sign_rfc9421)(req, KEY_ID, KEY)
    return SignedMessage.build("POST", str(req.url), list(req.headers.multi_items()), BODY)


async def _rate(fn: Any, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            await fn()
        n += 50
    return n / (time.perf_counter() - start)


async def bench_verify(seconds: float) -> dict[str, float]:
    cav = _message("cavage")
    params = parse_cavage(cav.headers["signature"])
    names = params["headers"].split()
    import base64

    raw_sig = base64.b64decode(params["signature"])
    signing_string = cavage_signing_string(cav, names, params).encode()
    pub = KEY.public_key()

    async def raw() -> None:
        pub.verify(raw_sig, signing_string, padding.PKCS1v15(), hashes.SHA256())

    async def ours_cavage() -> None:
        await verify_request(cav, _resolve)

    rfc = _message("rfc9421")

    async def ours_rfc() -> None:
        await verify_request(rfc, _resolve)

    samples: dict[str, list[float]] = {}
    for _ in range(3):  # interleaved rounds; medians
        for name, fn in (("raw", raw), ("cavage", ours_cavage), ("rfc9421", ours_rfc)):
            samples.setdefault(name, []).append(await _rate(fn, seconds / 3))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- 2. fan-out -----------------------------------------------------------------------------

SINK = textwrap.dedent("""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _throwaway_pg(server_url: str, create: bool, name: str) -> str:
    """CREATE (or DROP) a database next to ``server_url``; returns its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"' if create else
                                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def bench_fanout(followers: int, inboxes: int, runs: int, postgres: str | None = None) -> dict[str, float]:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    import app.models  # noqa: F401
    from app.db import make_engine
    from app.jobs import JobContext, Worker
    from app.safe_http import SafeClient
    from app.settings import Settings
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService
    from federation.activitypub.core import Federation
    from federation.activitypub.models import Actor, Delivery, Follow
    from federation.activitypub.outbox import Outbox

    tmp = Path(tempfile.mkdtemp(prefix="rose-ash-bench-fed-"))
    pg_name = f"rose_ash_bench_{tmp.name.rsplit('-', 1)[-1].lower()}"
    (tmp / "sink.py").write_text(SINK)
    port = _free_port()
    sink = subprocess.Popen(  # noqa: ASYNC220 (set-up, not timed)
        [sys.executable, "-m", "uvicorn", "sink:app", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=tmp)
    sink_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(100):
                try:
                    await probe.post(sink_url + "/inbox/0", content=b"{}")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        database = {"database_url": await _throwaway_pg(postgres, True, pg_name)} if postgres else {}
        settings = Settings.from_env({}, data_dir=tmp / "data", secret_key="bench-secret-key-0123456789abcdef",
                                     federation_allow_private_addresses=True, worker_in_process=False, **database)
        from advanced_alchemy.base import metadata_registry

        engine = make_engine(settings.database_url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata_registry.get(None).create_all)
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session:
            user = await AccountService(session).signup(SignupInput(
                username="alice", email="alice@example.org", password="correct horse battery staple"))
            async with Federation(session, settings) as fed:
                me_uri = (await fed.local_actor_for_user(user)).uri
            for i in range(followers):
                uri = f"{sink_url}/users/f{i}"
                # Remote actors keep their fetched document (a Mastodon one is ~2-3 KB).
                raw = {"@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
                       "id": uri, "type": "Person", "preferredUsername": f"f{i}", "name": f"Follower {i}",
                       "summary": "<p>" + "A member of another server. " * 12 + "</p>",
                       "inbox": f"{uri}/inbox", "outbox": f"{uri}/outbox", "followers": f"{uri}/followers",
                       "following": f"{uri}/following", "endpoints": {"sharedInbox": f"{sink_url}/inbox/{i % inboxes}"},
                       "publicKey": {"id": f"{uri}#main-key", "owner": uri, "publicKeyPem": PUB},
                       "icon": {"type": "Image", "mediaType": "image/png", "url": f"{sink_url}/avatars/{i}.png"}}
                session.add(Actor(uri=uri, local=False, username=f"f{i}", domain=f"127.0.0.1:{port}",
                                  inbox=f"{uri}/inbox", shared_inbox=f"{sink_url}/inbox/{i % inboxes}",
                                  public_key_pem=PUB, raw=raw, fetched_at=datetime.now(UTC)))
                session.add(Follow(follower=uri, followee=me_uri, state="accepted"))
            await session.commit()

        client = SafeClient(allow_private=True)
        ctx = JobContext(sessionmaker=maker, settings=settings, services={"federation_client": client})
        ours: list[float] = []
        plain: list[float] = []
        for run in range(runs):
            start = time.perf_counter()
            async with maker() as session:
                async with Federation(session, settings) as fed:
                    me = await fed.local_actor(me_uri)
                    assert me is not None
                    await Outbox(fed).post_note(me, f"fan-out run {run}")
                await session.commit()
            posted = time.perf_counter()
            await Worker(maker, context=ctx, concurrency=8).run_once()
            ours.append(time.perf_counter() - start)
            print(f"  run {run}: post {1000 * (posted - start):.0f} ms, "
                  f"deliveries {1000 * (time.perf_counter() - posted):.0f} ms", file=sys.stderr)

            sem = asyncio.Semaphore(8)
            async with httpx.AsyncClient() as plain_client:
                async def one(i: int, c: httpx.AsyncClient = plain_client, s: asyncio.Semaphore = sem) -> None:
                    async with s:
                        r = await c.post(f"{sink_url}/inbox/{i}", content=BODY,
                                         headers={"Content-Type": "application/activity+json"},
                                         auth=SignatureAuth(KEY_ID, KEY))
                        assert r.status_code == 202

                start = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(inboxes)))
                plain.append(time.perf_counter() - start)
        async with maker() as session:
            from sqlalchemy import func, select

            delivered = await session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.state == "delivered"))
        await client.aclose()
        await engine.dispose()
        assert delivered == inboxes * runs, f"only {delivered} of {inboxes * runs} deliveries made"
        return {"ours": statistics.median(ours), "plain": statistics.median(plain)}
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        if postgres:
            await _throwaway_pg(postgres, False, pg_name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--inboxes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["verify", "fanout"], help="run one section only")
    parser.add_argument("--postgres", metavar="URL", help="run the fan-out on a throw-away database next to this "
                        "PostgreSQL URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) instead of SQLite")
    args = parser.parse_args()

    if args.only in (None, "verify"):
        rates = await bench_verify(args.seconds)
        print("Inbox signature verification (RSA-2048, 700-byte body), verifications/s, medians:")
        print(f"  raw cryptography verify     {rates['raw']:10.0f}")
        for spec in ("cavage", "rfc9421"):
            print(f"  verify_request {spec:<9}    {rates[spec]:10.0f}   "
                  f"ratio ours/raw = {rates[spec] / rates['raw']:.2f}")
    if args.only == "verify":
        return
    fan = await bench_fanout(args.followers, args.inboxes, args.runs, args.postgres)
    print(f"Fan-out of one post to {args.followers} followers on {args.inboxes} inboxes (median of {args.runs}, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}):")
    print(f"  durable path (post + fan-out job + signed POSTs)   {fan['ours'] * 1000:8.1f} ms")
    print(f"  plain signed httpx POSTs                           {fan['plain'] * 1000:8.1f} ms")
    print(f"  ratio durable/plain = {fan['ours'] / fan['plain']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
