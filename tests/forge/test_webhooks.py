"""Webhooks (issue 19 item 3) against a real server, on SQLite and PostgreSQL: a loopback receiver
checks Gitea's headers and both signatures on push/create/delete/status events from a real
``git push``; private addresses are refused at creation; a failing or redirecting target is
retried and logged, never followed, and the push itself only enqueued; the settings page shows the
delivery log and redelivers.

The server runs without an in-process worker; the test runs its durable jobs itself
(``Worker.run_once``), so every delivery is deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.forge.forge_fixtures import DB_KINDS, PASSWORD, Forge, _make_forge

SECRET = "s3cret-hook-key"


@pytest.fixture(scope="module", params=DB_KINDS)
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    yield from _make_forge(tmp_path_factory.mktemp("hooks"), str(request.param),
                           {"ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"})


class Receiver:
    """A loopback HTTP server: ``/ok`` answers 200, ``/fail`` 500, ``/moved`` a redirect to a private address."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path.startswith("/fail"):
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"receiver exploded")
                elif self.path.startswith("/moved"):
                    self.send_response(302)
                    self.send_header("Location", "http://10.1.2.3/internal")
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"thanks")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self, path: str = "/ok") -> list[tuple[str, dict[str, Any]]]:
        return [(h["x-gitea-event"], json.loads(b)) for p, h, b in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def api(forge: Forge, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"token {forge.tokens[user]}"} if user else {}
    return httpx.request(method, f"{forge.base}/api/v1{path}", headers=headers, timeout=60, **kwargs)


def _database_url(forge: Forge) -> str:
    return forge.server.env.get("ROSE_ASH_DATABASE_URL") or \
        f"sqlite+aiosqlite:///{forge.server.data_dir / 'rose-ash.sqlite3'}"


def run_jobs(forge: Forge, *, make_due: bool = False) -> int:
    """Run every due job of the server here, as its worker would (``make_due``: retries too, now)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import make_engine
    from app.jobs import QUEUED, Job, Worker
    from app.settings import Settings

    importlib.import_module("forge.webhooks")  # registers forge.webhook.deliver and the push subscriber
    settings = Settings.from_env(forge.server.env)

    async def go() -> int:
        engine = make_engine(settings.database_url)
        try:
            maker = async_sessionmaker(engine, expire_on_commit=False)
            if make_due:
                async with maker() as session, session.begin():
                    await session.execute(update(Job).where(Job.state == QUEUED, Job.kind == "forge.webhook.deliver")
                                          .values(next_run_at=datetime.now(UTC)))
            return await Worker(maker, settings=settings, concurrency=2).run_once()
        finally:
            await engine.dispose()

    return asyncio.run(go())


def deliveries(forge: Forge) -> list[Any]:
    from forge.gitea_models import ForgeWebhookDelivery

    async def work(session: Any) -> list[Any]:
        rows = (await session.execute(select(ForgeWebhookDelivery).order_by(ForgeWebhookDelivery.created_at)))
        return list(rows.scalars().all())

    return forge.db(work)


def check_signatures(headers: dict[str, str], body: bytes) -> None:
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-gitea-signature"], expected)
    assert hmac.compare_digest(headers["x-hub-signature-256"], f"sha256={expected}")
    assert headers["x-hub-signature"] == "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()


def test_refused_addresses(forge: Forge) -> None:
    api(forge, "POST", "/user/repos", json={"name": "refuse", "auto_init": True})
    for url in ("http://10.0.0.5/hook", "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data",
                "http://[fd00::1]/x", "http://[::ffff:10.0.0.1]/x", "ftp://example.org/x", "http://u:p@example.org/",
                "not a url", ""):
        made = api(forge, "POST", "/repos/alice/refuse/hooks",
                   json={"type": "gitea", "config": {"url": url, "content_type": "json"}, "active": True})
        assert made.status_code == 422, (url, made.text)
        assert made.json()["message"]
    bad_event = api(forge, "POST", "/repos/alice/refuse/hooks", json={
        "type": "gitea", "config": {"url": "http://127.0.0.1:9/x", "content_type": "json"}, "events": ["explode"]})
    assert bad_event.status_code == 422
    assert api(forge, "GET", "/repos/alice/refuse/hooks").json() == []  # nothing written
    # Only the owner (admin) manages hooks.
    assert api(forge, "GET", "/repos/alice/refuse/hooks", "bob").status_code == 403
    assert api(forge, "GET", "/repos/alice/refuse/hooks", None).status_code == 401


def test_push_create_delete_and_status_events(forge: Forge, receiver: Receiver) -> None:
    api(forge, "POST", "/user/repos", json={"name": "hooked", "auto_init": True})
    run_jobs(forge)  # the auto_init commit's push event, before the hook exists
    made = api(forge, "POST", "/repos/alice/hooked/hooks", json={
        "type": "gitea", "config": {"url": f"{receiver.url}/ok", "content_type": "json", "secret": SECRET},
        "events": ["push", "create", "delete", "status"], "active": True})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert isinstance(hook["id"], int) and hook["config"]["url"] == f"{receiver.url}/ok"
    assert "secret" not in hook["config"]
    assert api(forge, "GET", f"/repos/alice/hooked/hooks/{hook['id']}").json()["events"] == [
        "push", "create", "delete", "status"]
    assert receiver.received == []

    work = forge.new_clone("alice", "hooked", "alice")
    before = forge.rev(work, "HEAD")
    forge.commit(work, "First change", {"a.txt": "a\n"})
    after = forge.commit(work, "Second change", {"b/c.txt": "c\n"})
    forge.git("push", "-q", "origin", "main", cwd=work)
    forge.git("push", "-q", "origin", "main:feature", cwd=work)
    assert receiver.received == []  # the push only enqueued
    run_jobs(forge)
    events = receiver.events()
    kinds = sorted(e for e, _ in events)
    assert kinds == ["create", "push", "push"], kinds
    push = next(p for e, p in events if e == "push" and p["ref"] == "refs/heads/main")
    assert push["before"] == before and push["after"] == after and push["total_commits"] == 2
    assert [c["message"] for c in push["commits"]] == ["Second change\n", "First change\n"]
    assert push["head_commit"]["id"] == after and push["commits"][0]["added"] == ["b/c.txt"]
    assert push["compare_url"].endswith(f"/compare/{before}...{after}")
    assert push["repository"]["full_name"] == "alice/hooked" and isinstance(push["repository"]["id"], int)
    assert push["pusher"]["login"] == "alice" and push["sender"]["login"] == "alice"
    create = next(p for e, p in events if e == "create")
    assert create == {**create, "ref": "feature", "ref_type": "branch", "sha": after}
    for _path, headers, body in receiver.received:
        check_signatures(headers, body)
        assert headers["x-github-event"] == headers["x-gitea-event"]
        assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-gitea-delivery"])
        assert headers["content-type"] == "application/json"

    forge.git("push", "-q", "origin", ":feature", cwd=work)
    run_jobs(forge)
    deleted = [p for e, p in receiver.events() if e == "delete"]
    assert deleted and deleted[0]["ref"] == "feature" and deleted[0]["ref_type"] == "branch"

    posted = api(forge, "POST", f"/repos/alice/hooked/statuses/{after}", json={
        "state": "success", "context": "ci/build", "target_url": "https://ci.example.org/1"})
    assert posted.status_code == 201
    run_jobs(forge)
    status = [p for e, p in receiver.events() if e == "status"]
    assert status and status[0]["sha"] == after and status[0]["state"] == "success"
    assert status[0]["context"] == "ci/build" and status[0]["commit"]["id"] == after

    # A test delivery (POST /hooks/{id}/tests) goes to this hook only.
    count = len(receiver.received)
    assert api(forge, "POST", f"/repos/alice/hooked/hooks/{hook['id']}/tests").status_code == 204
    run_jobs(forge)
    assert len(receiver.received) == count + 1 and receiver.events()[-1][1]["after"] == after

    # Every delivery is logged with the answer.
    logged = [d for d in deliveries(forge) if d.succeeded]
    assert len(logged) >= 6 and all(d.response_status == 200 and d.response_body == "thanks" for d in logged)
    assert all(d.duration_ms is not None and d.finished for d in logged)

    # Edit and delete through the API.
    edited = api(forge, "PATCH", f"/repos/alice/hooked/hooks/{hook['id']}", json={"active": False})
    assert edited.status_code == 200 and edited.json()["active"] is False
    forge.commit(work, "Unseen", {"d.txt": "d\n"})
    forge.git("push", "-q", "origin", "main", cwd=work)
    count = len(receiver.received)
    run_jobs(forge)
    assert len(receiver.received) == count  # an inactive hook gets nothing
    assert api(forge, "DELETE", f"/repos/alice/hooked/hooks/{hook['id']}").status_code == 204
    assert api(forge, "GET", f"/repos/alice/hooked/hooks/{hook['id']}").status_code == 404


def test_first_push_to_an_empty_repository_counts_its_commits(forge: Forge, receiver: Receiver) -> None:
    """The first push of the default branch brings in every commit it names (HEAD already points
    at that branch, so counting "what no other ref had" must not count HEAD as another ref)."""
    assert api(forge, "POST", "/user/repos", json={"name": "empty"}).status_code == 201
    assert api(forge, "POST", "/repos/alice/empty/hooks", json={
        "type": "gitea", "config": {"url": f"{receiver.url}/ok", "content_type": "json"},
        "events": ["push"], "active": True}).status_code == 201
    work = forge.new_clone("alice", "empty", "alice")
    forge.git("checkout", "-q", "-b", "main", cwd=work)
    forge.commit(work, "One", {"1.txt": "1\n"})
    forge.commit(work, "Two", {"2.txt": "2\n"})
    head = forge.commit(work, "Three", {"3.txt": "3\n"})
    forge.git("push", "-q", "origin", "main", cwd=work)
    run_jobs(forge)
    push = next(p for e, p in receiver.events() if e == "push")
    assert push["after"] == head and push["total_commits"] == 3
    assert [c["message"] for c in push["commits"]] == ["Three\n", "Two\n", "One\n"]


def test_failing_targets_are_retried_and_logged(forge: Forge, receiver: Receiver) -> None:
    api(forge, "POST", "/user/repos", json={"name": "flaky", "auto_init": True})
    run_jobs(forge)
    for path in ("/fail", "/moved"):
        made = api(forge, "POST", "/repos/alice/flaky/hooks", json={
            "type": "gitea", "config": {"url": f"{receiver.url}{path}", "content_type": "json", "secret": SECRET},
            "events": ["push"], "active": True})
        assert made.status_code == 201
    work = forge.new_clone("alice", "flaky", "alice")
    forge.commit(work, "Change", {"x.txt": "x\n"})
    pushed = forge.git("push", "origin", "main", cwd=work)
    assert pushed.returncode == 0  # the push does not wait for any receiver
    run_jobs(forge)
    logged = [d for d in deliveries(forge) if d.attempts]
    failing = [d for d in logged if d.response_status == 500]
    moved = [d for d in logged if d.response_status == 302]
    assert len(failing) == 1 and failing[0].error == "HTTP 500" and failing[0].response_body == "receiver exploded"
    assert not failing[0].finished and failing[0].attempts == 1
    assert len(moved) == 1 and "redirects are not followed" in moved[0].error
    # Retried (the queue's backoff, made due now) and logged again; the redirect is never followed.
    run_jobs(forge, make_due=True)
    again = {d.id: d for d in deliveries(forge)}
    assert again[failing[0].id].attempts == 2 and again[moved[0].id].attempts == 2
    assert [p for p, _h, _b in receiver.received if p.startswith("/fail")] == ["/fail", "/fail"]
    assert not any(p == "/internal" for p, _h, _b in receiver.received)


def _login(forge: Forge, username: str) -> httpx.Client:
    client = httpx.Client(base_url=forge.base, follow_redirects=False, timeout=30)
    page = client.get("/account/login")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    done = client.post("/account/login", data={"login": username, "password": PASSWORD,
                                               "_csrf_token": token.group(1)})
    assert done.status_code == 303, done.text[:500]
    return client


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_settings_page_log_and_redeliver(forge: Forge, receiver: Receiver) -> None:
    api(forge, "POST", "/user/repos", json={"name": "pages", "auto_init": True})
    run_jobs(forge)
    alice = _login(forge, "alice")
    base = "/forge/alice/pages/settings/hooks"
    page = alice.get(base)
    assert page.status_code == 200 and "Add a webhook" in page.text
    refused = alice.post(base, data={"url": "http://10.9.9.9/x", "content_type": "json", "events": ["push"],
                                     "active": "on", "_csrf_token": _csrf(page)})
    assert refused.status_code == 422 and "not allowed" in refused.text
    made = alice.post(base, data={"url": f"{receiver.url}/ok", "secret": SECRET, "content_type": "json",
                                  "events": ["push", "create"], "active": "on", "_csrf_token": _csrf(page)})
    assert made.status_code == 303
    hook_page_url = made.headers["location"]
    work = forge.new_clone("alice", "pages", "alice")
    forge.commit(work, "Logged", {"l.txt": "l\n"})
    forge.git("push", "-q", "origin", "main", cwd=work)
    run_jobs(forge)
    hook_page = alice.get(hook_page_url)
    assert hook_page.status_code == 200
    assert "X-Gitea-Signature" in hook_page.text and "HTTP 200" in hook_page.text and "thanks" in hook_page.text
    delivery = re.search(r'action="([^"]+/redeliver)"', hook_page.text)
    assert delivery
    count = len(receiver.received)
    again = alice.post(delivery.group(1), data={"_csrf_token": _csrf(hook_page)})
    assert again.status_code == 303
    run_jobs(forge)
    assert len(receiver.received) == count + 1
    first, second = receiver.received[-2], receiver.received[-1]
    assert first[2] == second[2] and first[1]["x-gitea-delivery"] != second[1]["x-gitea-delivery"]
    check_signatures(second[1], second[2])
    # Owner only: bob gets 404 for alice's private repository page and 403 on her public one.
    bob = _login(forge, "bob")
    assert bob.get(base).status_code in (403, 404)
    assert httpx.get(f"{forge.base}{base}", follow_redirects=False).status_code in (303, 401)


def test_repository_deleted_event_outlives_its_hooks(forge: Forge, receiver: Receiver) -> None:
    api(forge, "POST", "/user/repos", json={"name": "doomed", "auto_init": True})
    run_jobs(forge)
    for events in (["repository"], ["push"]):
        made = api(forge, "POST", "/repos/alice/doomed/hooks", json={
            "type": "gitea", "config": {"url": f"{receiver.url}/ok", "content_type": "json", "secret": SECRET},
            "events": events, "active": True})
        assert made.status_code == 201
    assert api(forge, "DELETE", "/repos/alice/doomed").status_code == 204
    run_jobs(forge)
    got = receiver.events()
    assert [e for e, _p in got] == ["repository"]  # only the hook that asked for it
    assert got[0][1]["action"] == "deleted" and got[0][1]["repository"]["full_name"] == "alice/doomed"
    check_signatures(receiver.received[0][1], receiver.received[0][2])
