"""Two app replicas, one site (issue 13 item 4): two ``rose-ash run`` processes on their own ports,
two ``rose-ash worker`` processes, one PostgreSQL, one Redis, one shared DATA_DIR and one Varnish
(deploy/varnish/default.vcl with a round-robin director over both) behave as one site.

"Via A" and "via B" go straight to one replica's port with the site's ``Host`` (as the edge
forwards it), so each step names the process that served it; the edge steps pin a replica with
``X-Rose-Ash-Backend`` (tests/helpers/edge.py). One set of servers serves the whole module."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import IN_CI, PG_URL, REDIS_URL, require_tool
from tests.helpers.edge import varnish_in_front
from tests.helpers.pg import pg_database
from tests.helpers.server import REPO_ROOT, ROSE_ASH, AppServer, free_port

pytestmark = pytest.mark.e2e
T = TypeVar("T")

PASSWORD = "correct horse battery staple"
AUTH_LIMIT = 6  # sign-in POSTs per client address per minute, counted in Redis across replicas
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
JOB_DONE = re.compile(r"job ([0-9a-f-]{36}) \(([^)]+)\) done")


@dataclass
class Site:
    edge: str
    host: str  # the site's Host, as the edge forwards it; both replicas answer only this one
    replicas: list[AppServer]
    workers: list[subprocess.Popen[bytes]]
    worker_logs: list[Path]
    database_url: str
    work: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, replica: int | None = None, *, address: str | None = None) -> httpx.Client:
        """A browser on one replica's port (``None``: through the edge), its own client address
        in ``X-Forwarded-For`` (the replicas trust 127.0.0.1, as they would trust Varnish)."""
        base = self.edge if replica is None else self.replicas[replica].base_url
        headers = {"Host": self.host, "X-Forwarded-For": address or f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
        return httpx.Client(base_url=base, headers=headers, timeout=60)

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ROSE_ASH_"))}
        env.update({"HOME": str(self.work), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                    "GIT_CONFIG_GLOBAL": str(self.work / ".gitconfig"),
                    "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
                    "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"})
        # git talks to one replica's port but names the site (curl sends this Host instead of its own).
        result = subprocess.run(["git", "-c", f"http.extraHeader=Host: {self.host}", *args], cwd=cwd or self.work,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"git {args}:\n{result.stdout}\n{result.stderr}\n" + "\n".join(
            r.log_tail(2000) for r in self.replicas)
        return result

    def repo_url(self, replica: int, path: str) -> str:
        return f"http://ada:{self.tokens['ada']}@127.0.0.1:{self.replicas[replica].port}/forge/ada/{path}"

    def db(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction on the site's database, from this process."""
        from app.db import make_engine

        async def run() -> T:
            engine = make_engine(self.database_url)
            try:
                async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(run())


def csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_tool("varnishd")
    require_tool("git")
    if not (PG_URL and REDIS_URL):
        if IN_CI:
            pytest.fail("the two-replica test needs PostgreSQL and Redis in CI")
        pytest.skip("needs ROSE_ASH_TEST_DATABASE_URL and ROSE_ASH_TEST_REDIS_URL")
    tmp = tmp_path_factory.mktemp("replicas")
    data_dir = tmp / "data"  # the shared volume: git repositories, media
    data_dir.mkdir()
    edge_port = free_port()
    with pg_database("replicas") as database_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        env.update({
            "ROSE_ASH_DATABASE_URL": database_url,
            "ROSE_ASH_REDIS_URL": REDIS_URL,
            "ROSE_ASH_REDIS_NAMESPACE": f"replicas-{uuid.uuid4().hex[:12]}",
            "ROSE_ASH_DATA_DIR": str(data_dir),
            "ROSE_ASH_SECRET_KEY": "two-replicas-one-site-0123456789abcdef",
            "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{edge_port}",
            "ROSE_ASH_WORKER_IN_PROCESS": "false",
            "ROSE_ASH_AUTH_RATE_LIMIT": str(AUTH_LIMIT),
            "ROSE_ASH_EDGE_PURGE_URLS": f"http://127.0.0.1:{edge_port}/",
            "ROSE_ASH_LOG_LEVEL": "DEBUG",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        })
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            replicas.append(AppServer(base_url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir,
                                      env=env, log_path=tmp / f"{name}.log"))
        replicas[0].cli("database", "upgrade", "--no-prompt")
        replicas[0].cli("users", "create", "--username", "ada", "--email", "ada@example.org",
                        "--password", PASSWORD, "--admin")
        workers: list[subprocess.Popen[bytes]] = []
        logs = [tmp / "worker-1.log", tmp / "worker-2.log"]
        try:
            for replica in replicas:
                replica.start(timeout=60)
            with varnish_in_front([r.port for r in replicas], tmp, port=edge_port) as edge:
                for path in logs:
                    with path.open("ab") as log:
                        workers.append(subprocess.Popen([ROSE_ASH, "worker"], env=env, cwd=REPO_ROOT, stdout=log,
                                                        stderr=subprocess.STDOUT, start_new_session=True))
                work = tmp / "work"
                work.mkdir()
                (work / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[protocol]\n\tversion = 2\n")
                site = Site(edge=edge, host=f"127.0.0.1:{edge_port}", replicas=replicas, workers=workers,
                            worker_logs=logs, database_url=database_url, work=work)

                async def token(session: AsyncSession) -> str:
                    from domains.account.services import AccountService, TokenService

                    user = await AccountService(session).by_username("ada")
                    assert user is not None
                    return (await TokenService(session).issue(user, "git", ["repo:write", "api"]))[1]

                site.tokens["ada"] = site.db(token)
                yield site
        finally:
            for proc in workers:
                stop(proc)
            for replica in replicas:
                replica.stop()
        for path in logs:  # both workers stopped cleanly and nothing blew up in any process
            assert "Traceback" not in path.read_text(errors="replace"), path.read_text()[-4000:]


def sign_in(browser: httpx.Client) -> None:
    page = browser.get("/account/login")
    assert page.status_code == 200
    done = browser.post("/account/login", data={"login": "ada", "password": PASSWORD, "_csrf_token": csrf(page)})
    assert done.status_code == 303, done.text[:500]


def test_a_session_from_one_replica_acts_on_the_other(site: Site) -> None:
    with site.client(0) as browser:
        sign_in(browser)  # the session (and its CSRF cookie) is made by replica A ...
        cookies = browser.cookies
    with site.client(1) as other:
        other.cookies = cookies
        editor = other.get("/blog/admin/new")  # ... and B knows it: Redis holds the session
        assert editor.status_code == 200 and 'id="editor"' in editor.text, editor.text[:300]
    with site.client(1) as stranger:  # without the cookie B sends the visitor to sign in
        assert stranger.get("/blog/admin/new").status_code in (302, 303)


def test_a_csrf_token_from_a_page_of_a_is_valid_on_a_post_to_b(site: Site) -> None:
    with site.client(0) as browser:
        sign_in(browser)
        editor = browser.get("/blog/admin/new")  # the form and its token come from A
        action = re.search(r'<form id="editor"[^>]* action="([^"]+)"', editor.text)
        assert action
        browser.base_url = httpx.URL(site.replicas[1].base_url)  # the same browser posts it to B
        saved = browser.post(action.group(1), data={"_csrf_token": csrf(editor), "title": "Posted to B",
                                                    "markdown": "Hello.", "type": "post", "action": "save"})
        assert saved.status_code == 303, saved.text[:500]
        forged = browser.post(action.group(1), data={"_csrf_token": "not-the-token", "title": "Forged",
                                                     "markdown": "x", "type": "post", "action": "save"})
        assert forged.status_code == 403


def test_a_push_through_a_is_cloned_through_b(site: Site) -> None:
    created = httpx.post(f"{site.replicas[0].base_url}/api/v1/user/repos", json={"name": "shared"},
                         headers={"Authorization": f"token {site.tokens['ada']}", "Host": site.host}, timeout=30)
    assert created.status_code == 201, created.text
    source = site.work / "source"
    site.git("clone", "-q", site.repo_url(0, "shared.git"), str(source))
    (source / "README.md").write_text("pushed through A\n")
    site.git("add", "README.md", cwd=source)
    site.git("commit", "-q", "-m", "through A", cwd=source)
    site.git("push", "-q", "origin", "main", cwd=source)
    head = site.git("rev-parse", "HEAD", cwd=source).stdout.strip()

    copy = site.work / "copy"
    site.git("clone", "-q", site.repo_url(1, "shared.git"), str(copy))
    assert site.git("rev-parse", "HEAD", cwd=copy).stdout.strip() == head
    assert (copy / "README.md").read_text() == "pushed through A\n"


def test_jobs_are_claimed_exactly_once_across_two_workers(site: Site) -> None:
    from app.jobs import DONE, Job, enqueue
    from domains.blog.schemas import PublishScheduled
    from domains.blog.services import PUBLISH_SCHEDULED

    count = 120

    async def add(session: AsyncSession) -> set[str]:
        jobs = [await enqueue(session, PUBLISH_SCHEDULED, PublishScheduled(post_id=uuid.uuid4(),
                                                                           scheduled_for=datetime.now(UTC)))
                for _ in range(count)]
        return {str(job.id) for job in jobs}

    wanted = site.db(add)

    async def left(session: AsyncSession) -> list[Row[Any]]:
        rows = await session.execute(select(Job.id, Job.state, Job.attempts).where(Job.kind == PUBLISH_SCHEDULED))
        return [row for row in rows if str(row.id) in wanted]

    deadline = datetime.now(UTC).timestamp() + 120
    while True:
        rows = site.db(left)
        if all(row.state == DONE for row in rows):
            break
        assert all(proc.poll() is None for proc in site.workers)
        assert datetime.now(UTC).timestamp() < deadline, "the workers did not finish the jobs"
        asyncio.run(asyncio.sleep(0.2))
    assert len(rows) == count and {row.attempts for row in rows} == {1}

    # Each worker logs the jobs it ran: every job ran once, in one of the two, and both took part.
    ran: list[list[str]] = [[m.group(1) for m in JOB_DONE.finditer(path.read_text()) if m.group(1) in wanted]
                            for path in site.worker_logs]
    together = [job for jobs in ran for job in jobs]
    assert sorted(together) == sorted(wanted), "a job ran twice or not at all"
    assert all(ran), f"one worker ran nothing: {[len(jobs) for jobs in ran]}"


def test_rate_limits_are_counted_across_both_replicas(site: Site) -> None:
    address = "203.0.113.77"  # one client, alternating between the replicas
    statuses: list[int] = []
    for attempt in range(AUTH_LIMIT + 2):
        with site.client(attempt % 2, address=address) as browser:
            page = browser.get("/account/login")
            statuses.append(browser.post("/account/login", data={
                "login": "ada", "password": "wrong", "_csrf_token": csrf(page)}).status_code)
    # Each replica alone would allow AUTH_LIMIT; together they allow AUTH_LIMIT, then refuse.
    assert 429 not in statuses[:AUTH_LIMIT], statuses
    assert statuses[AUTH_LIMIT:] == [429, 429], statuses
    with site.client(1, address="203.0.113.78") as other:  # another address still has its own count
        page = other.get("/account/login")
        assert other.post("/account/login", data={"login": "ada", "password": "wrong",
                                                  "_csrf_token": csrf(page)}).status_code != 429


def test_round_robin_reaches_both_replicas(site: Site) -> None:
    served: set[str | None] = set()
    for _ in range(6):
        with site.client() as browser:  # private pages pass the cache: each reaches a replica
            served.add(browser.get("/account/login").headers.get("x-rose-ash-served-by"))
    assert served == {"app0", "app1"}


def test_an_edit_on_either_replica_purges_the_page_cached_from_the_other(site: Site) -> None:
    with site.client(1) as admin:
        sign_in(admin)
        editor = admin.get("/blog/admin/new")
        action = re.search(r'<form id="editor"[^>]* action="([^"]+)"', editor.text)
        assert action
        published = admin.post(action.group(1), data={"_csrf_token": csrf(editor), "title": "Edge one",
                                                      "markdown": "First.", "type": "post", "action": "publish"})
        assert published.status_code == 303, published.text[:500]
        edit_url = published.headers["location"]

        for n, (reader, writer) in enumerate([(0, 1), (1, 0)]):
            title = f"Edge edit {n}"
            with site.client() as anon:
                pin = {"X-Rose-Ash-Backend": str(reader)}
                first = anon.get("/blog/", headers=pin)  # cached from a fetch through the reader
                assert first.status_code == 200 and first.headers["x-rose-ash-served-by"] == f"app{reader}"
                # After the previous round's soft purge the first fetch may be served stale while
                # Varnish refreshes in the background: wait (bounded) for the fresh copy to be a hit.
                for _ in range(50):
                    cached = anon.get("/blog/", headers=pin)
                    if cached.headers["x-cache"] == "HIT":
                        break
                    time.sleep(0.1)
                assert cached.headers["x-cache"] == "HIT" and title not in cached.text

                admin.base_url = httpx.URL(site.replicas[writer].base_url)
                page = admin.get(edit_url)
                assert page.status_code == 200, page.text[:300]
                form = re.search(r'<form id="editor"[^>]* action="([^"]+)"', page.text)
                assert form
                saved = admin.post(form.group(1), data={"_csrf_token": csrf(page), "title": title,
                                                        "markdown": "Edited.", "type": "post", "action": "publish"})
                assert saved.status_code == 303, saved.text[:500]

                # A worker sends the purge to the edge, and the edit shows through it. (These reads go
                # to the writer, so the copy the next round starts from was filled by its reader.)
                deadline = datetime.now(UTC).timestamp() + 60
                writer_pin = {"X-Rose-Ash-Backend": str(writer)}
                while title not in (fresh := anon.get("/blog/", headers=writer_pin)).text:
                    assert datetime.now(UTC).timestamp() < deadline, fresh.headers
                    asyncio.run(asyncio.sleep(0.2))
                assert fresh.headers["x-rose-ash-served-by"] == f"app{writer}"
