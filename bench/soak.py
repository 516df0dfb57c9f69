"""Soak: the embedded default under saturation for N minutes (issue 13 item 6). A script, not in CI.

Serves the real app as ``make run`` does (``rose-ash run -W N`` on SQLite in a fresh DATA_DIR, the
in-process job worker on) and drives it with ``--connections`` concurrent clients, each looping
over a weighted mix of what a co-op's site sees:

- public pages (home, blog index, forge index, a profile, a repository page);
- sign-ins (the login form, then its POST with the CSRF cookie, on a new client each time);
- compose (a signed-in member posts a public note through ``/social/compose``);
- inbox POSTs: ``Create(Note)`` activities signed (draft-cavage) by a known peer, to ``/inbox``;
- git clones of a small repository over smart HTTP (at most one at a time: a clone is heavy).

It reports requests per second, p50/p99 latency, the 5xx count (goal 0), each server process's
RSS at the start and end (goal: flat, at most 300 MB), and jobs lost (goal 0): inbox POSTs that
were accepted (202) but whose activity was never applied once the queue drained, and jobs left
``running`` or ``dead``.

    .venv/bin/python bench/soak.py [--minutes 10] [--connections 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from federation.activitypub.signatures import sign_cavage  # noqa: E402
from tests.helpers.server import ROSE_ASH, free_port  # noqa: E402

PEER = "https://peer.example/users/pat"
PEER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
PASSWORD = "correct horse battery staple"
MEMBER = "soak"
# Weighted mix of one client's next action.
MIX = {"page": 60, "signin": 8, "compose": 10, "inbox": 17, "clone": 5}
COUNTER = itertools.count()  # unique note and activity ids across the warm-up and the run
PAGES = ["/", "/blog/", "/forge/", f"/@{MEMBER}", f"/forge/{MEMBER}/site"]


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    inbox_accepted: list[str] = field(default_factory=list)
    clones: int = 0
    clone_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, started: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        self.by_kind[kind] += 1
        if status >= 400:
            self.refused[f"{kind} {status}"] += 1


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_pids(main: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(main)], capture_output=True, text=True, check=False)
    workers = [int(line.split()[0]) for line in out.stdout.splitlines() if "multiprocessing.spawn" in line]
    return [main, *sorted(workers)]


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([ROSE_ASH, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=300).stdout


async def seed(data_dir: Path) -> None:
    """A known peer actor (so inbox POSTs verify without fetching) and a small repository."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import make_engine
    from domains.account.services import AccountService
    from federation.activitypub.models import Actor
    from forge.config import ForgeConfig
    from forge.services import RepoService
    from forge.storage import RepoStore

    pem = PEER_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'rose-ash.sqlite3'}")
    store = RepoStore(data_dir / "repos", ForgeConfig(state_dir=data_dir / "forge"))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
            session.add(Actor(uri=PEER, local=False, type="Person", username="pat", domain="peer.example",
                              inbox=f"{PEER}/inbox", shared_inbox="https://peer.example/inbox",
                              followers_url=f"{PEER}/followers", key_id=f"{PEER}#main-key", public_key_pem=pem,
                              fetched_at=datetime.now(UTC)))
            owner = await AccountService(session).by_username(MEMBER)
            assert owner is not None
            repo = await RepoService(session, store).create(owner, "site")
            await asyncio.to_thread(populate, data_dir / "seed-work", store.locate(repo.id))
            await RepoService(session, store).sync_refs(repo.id, emit=False)
    finally:
        await engine.dispose()


def populate(work: Path, bare: Path) -> None:
    """40 commits of 40 small files pushed into the repository's bare directory."""
    git = ["git", "-c", "user.name=Soak", "-c", "user.email=soak@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for i in range(40):
        (work / f"file{i}.txt").write_text(f"line {i}\n" * 200)
        subprocess.run([*git, "-C", str(work), "add", "."], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", f"commit {i}"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "main"], check=True)


def signed_create(base: str, n: int) -> tuple[bytes, dict[str, str], str]:
    note = {"id": f"{PEER}/notes/soak-{n}", "type": "Note", "attributedTo": PEER, "to": [PUBLIC],
            "content": f"<p>soak note {n}</p>", "published": "2026-01-01T00:00:00Z"}
    activity_id = f"{PEER}/notes/soak-{n}/activity"
    create = {"@context": "https://www.w3.org/ns/activitystreams", "id": activity_id, "type": "Create",
              "actor": PEER, "object": note, "to": [PUBLIC]}
    request = httpx.Request("POST", f"{base}/inbox", content=json.dumps(create).encode(),
                            headers={"Content-Type": "application/activity+json"})
    sign_cavage(request, f"{PEER}#main-key", PEER_KEY)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
    return request.content, headers, activity_id


async def sign_in(base: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False)
    await client.get("/account/login")
    response = await client.post("/account/login", data={"login": MEMBER, "password": PASSWORD, "next": "/"},
                                 headers={"X-CSRFToken": client.cookies.get("csrftoken") or ""})
    if response.status_code != 303:
        await client.aclose()
        raise RuntimeError(f"sign-in answered {response.status_code}")
    return client


async def drive(base: str, clone_url: str, seconds: float, connections: int, results: Results,
                tmp: Path) -> None:
    deadline = time.monotonic() + seconds
    counter = COUNTER
    clone_lock = asyncio.Lock()
    member = await sign_in(base)
    kinds, weights = zip(*MIX.items(), strict=True)

    async def one(client: httpx.AsyncClient) -> None:
        kind = random.choices(kinds, weights)[0]
        started = time.perf_counter()
        try:
            if kind == "page":
                status = (await client.get(random.choice(PAGES))).status_code
            elif kind == "signin":
                fresh = await sign_in(base)
                await fresh.aclose()
                status = 303
            elif kind == "compose":
                status = (await member.post("/social/compose", data={
                    "content": f"soak {next(counter)}", "visibility": "public", "next": "/social/"},
                    headers={"X-CSRFToken": member.cookies.get("csrftoken") or ""})).status_code
            elif kind == "inbox":
                body, headers, activity_id = signed_create(base, next(counter))
                status = (await client.post("/inbox", content=body, headers=headers)).status_code
                if status == 202:
                    results.inbox_accepted.append(activity_id)
            else:
                if clone_lock.locked():
                    return
                async with clone_lock:
                    target = tmp / f"clone-{next(counter)}"
                    proc = await asyncio.create_subprocess_exec(
                        "git", "clone", "-q", "--bare", clone_url, str(target),
                        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                    _, err = await proc.communicate()
                    await asyncio.to_thread(shutil.rmtree, target, True)
                    results.clones += 1
                    if proc.returncode != 0:
                        results.clone_failures += 1
                        results.errors[err.decode(errors="replace").strip()[-200:]] += 1
                    status = 200 if proc.returncode == 0 else 0
        except (httpx.HTTPError, RuntimeError) as exc:
            results.errors[f"{kind}: {type(exc).__name__}: {exc}"[:200]] += 1
            status = 0
        results.record(kind, started, status)

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False) as client:
            while time.monotonic() < deadline:
                await one(client)

    try:
        await asyncio.gather(*(loop() for _ in range(connections)))
    finally:
        await member.aclose()


async def jobs_report(data_dir: Path, accepted: list[str], wait: float) -> dict[str, object]:
    """Wait for the queue to drain, then count what was lost."""
    from sqlalchemy import func, select

    from app.db import make_engine
    from app.jobs.models import DEAD, DONE, QUEUED, RUNNING, Job
    from federation.activitypub.models import Activity

    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'rose-ash.sqlite3'}")
    try:
        deadline = time.monotonic() + wait
        while True:
            async with engine.connect() as conn:
                states = dict((await conn.execute(select(Job.state, func.count()).where(
                    Job.repeat_seconds.is_(None)).group_by(Job.state))).tuples().all())
            pending = states.get(QUEUED, 0) + states.get(RUNNING, 0)
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        async with engine.connect() as conn:
            applied = set((await conn.scalars(select(Activity.ap_id).where(
                Activity.direction == "in", Activity.state == "processed"))).all())
            running = await conn.scalar(select(func.count()).select_from(Job).where(Job.state == RUNNING))
            dead = (await conn.execute(select(Job.kind, func.count()).where(Job.state == DEAD)
                                       .group_by(Job.kind))).tuples().all()
        return {"jobs_by_state": states, "inbox_accepted": len(accepted),
                "inbox_applied": len(applied & set(accepted)),
                "inbox_lost": len(set(accepted) - applied), "running_left": running, "dead": dict(dead),
                "done": states.get(DONE, 0)}
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 4),
                        help="web workers, as make run picks them (one per core, at most 4)")
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rose-ash-soak-"))
    data_dir = tmp / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROSE_ASH_", "PROMETHEUS_"))}
    env.update({"ROSE_ASH_DATA_DIR": str(data_dir), "ROSE_ASH_BASE_URL": base, "ROSE_ASH_WORKER_IN_PROCESS": "true",
                "ROSE_ASH_AUTH_RATE_LIMIT": "1000000", "ROSE_ASH_FEDERATION_INBOX_RATE_LIMIT": "1000000",
                "ROSE_ASH_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    cli(env, "database", "upgrade", "--no-prompt")
    cli(env, "users", "create", "--username", MEMBER, "--email", "soak@example.org", "--password", PASSWORD)
    asyncio.run(seed(data_dir))
    log = (tmp / "server.log").open("ab")
    server = subprocess.Popen([ROSE_ASH, "run", "-W", str(args.workers), "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200 and \
                        len(server_pids(server.pid)) == (args.workers + 1 if args.workers > 1 else 1):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.5)
        clone_url = f"{base}/forge/{MEMBER}/site.git"
        warm = Results()
        asyncio.run(drive(base, clone_url, args.warmup, args.connections, warm, tmp))
        pids = server_pids(server.pid)
        rss_start = {pid: rss_mb(pid) for pid in pids}
        results = Results()
        started = time.perf_counter()
        asyncio.run(drive(base, clone_url, args.minutes * 60, args.connections, results, tmp))
        elapsed = time.perf_counter() - started
        rss_end = {pid: rss_mb(pid) for pid in server_pids(server.pid)}
        jobs = asyncio.run(jobs_report(data_dir, warm.inbox_accepted + results.inbox_accepted, wait=120))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    lat = sorted(results.latencies)
    total = len(lat)
    report = {
        "minutes": args.minutes, "web_workers": args.workers, "connections": args.connections,
        "requests": total, "req_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "p99_ms": round(lat[int(total * 0.99) - 1] * 1000, 1) if lat else None,
        "by_kind": dict(results.by_kind), "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "5xx": sum(v for k, v in results.statuses.items() if 500 <= k < 600),
        "refused": dict(results.refused), "client_errors": dict(results.errors.most_common(5)),
        "clones": results.clones, "clone_failures": results.clone_failures,
        "rss_mb_start": {str(p): round(v, 1) for p, v in rss_start.items()},
        "rss_mb_end": {str(p): round(v, 1) for p, v in rss_end.items()},
        "jobs": jobs, "server_exit": server.returncode, "log": str(tmp / "server.log"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
