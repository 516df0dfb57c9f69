"""ForgeFed (issue 19 item 6) against a real server and a real Fedify peer (tests/interop/fedify/peer.mjs,
a Fedify 2.3.6 server: actor, keys, WebFinger and inbox are Fedify's), on SQLite and PostgreSQL.

What the peer shows:
- Fedify verifies the signatures of the Repository's ``Accept`` and ``Push``, the pusher's
  ``Create{Note}`` and the companion Service's ``Announce`` (its ``verifyRequest`` fetches our key
  documents over HTTP), and its own inbox accepts the Accept, the Create and the Announce;
- Fedify's own inbox answers **400** to the ``Push``: its vocabulary has no ForgeFed types
  ("Invalid type: https://forgefed.org/ns#Push"). The peer answers 202 itself for a verified Push,
  as a Fedify app that handles ForgeFed would; the test asserts both.
- Stars in Forgejo's wire form (``Like``/``Undo{Like}`` with ``startTime`` and no ``id``), signed by
  Fedify, count in the repository's ``likes``.
Private repositories are absent everywhere (404) and a push to one sends nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import IN_CI, require_tool
from tests.forge.forge_fixtures import DB_KINDS, Forge, _make_forge
from tests.helpers.server import free_port

AS2 = "application/activity+json"
PEER_DIR = Path(__file__).resolve().parents[1] / "interop" / "fedify"
ENV = {
    "ROSE_ASH_WORKER_IN_PROCESS": "true",
    "ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true",
    "ROSE_ASH_FEDERATION_RETRY_SCALE": "0.01",
}
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


@pytest.fixture(scope="module", params=DB_KINDS)
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    yield from _make_forge(tmp_path_factory.mktemp("forgefed"), str(request.param), ENV)


class Peer:
    def __init__(self, port: int, proc: subprocess.Popen[str]) -> None:
        self.port, self.proc = port, proc
        self.base = f"http://127.0.0.1:{port}"
        self.actor = f"{self.base}/users/peer"

    def received(self, origin: str) -> list[dict[str, Any]]:
        """What arrived from ``origin`` (one peer serves the module's servers, one per database)."""
        data: list[dict[str, Any]] = httpx.get(f"{self.base}/_control/received", timeout=30).json()
        return [r for r in data if str((r["json"] or {}).get("actor", "")).startswith(origin + "/")]

    def send(self, inbox: str, activity: dict[str, Any]) -> int:
        """POST ``activity`` to ``inbox``, signed by Fedify with the peer's key; the HTTP status."""
        answer = httpx.post(f"{self.base}/_control/send", json={"inbox": inbox, "body": activity}, timeout=60).json()
        status: int = answer["status"]
        return status


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    node = require_tool("node")
    if not (PEER_DIR / "node_modules" / "@fedify" / "fedify").exists():
        if IN_CI:
            pytest.fail("run `npm install --no-package-lock` in tests/interop/fedify")
        pytest.skip("Fedify is not installed (npm install --no-package-lock in tests/interop/fedify)")
    port = free_port()
    proc = subprocess.Popen([node, "peer.mjs", str(port)], cwd=PEER_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening"), line + proc.stdout.read()[-2000:]
        yield Peer(port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def eventually(check: Callable[[], Any], what: str, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


def as2(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, headers={"Accept": AS2}, timeout=30, **kwargs)


def host(forge: Forge) -> str:
    return forge.base.removeprefix("http://")


def webfinger(forge: Forge, resource: str) -> httpx.Response:
    return httpx.get(f"{forge.base}/.well-known/webfinger", params={"resource": resource}, timeout=30)


def repo_uri(forge: Forge, owner: str, name: str) -> str:
    return f"{forge.base}/ap/repos/{forge.repo_uuid(owner, name)}"


def push_commits(forge: Forge, owner: str, name: str, messages: list[str]) -> tuple[str, str, list[str]]:
    work = forge.new_clone(owner, name, owner)
    before = forge.git("rev-parse", "--verify", "-q", "HEAD", cwd=work, check=False).stdout.strip()
    made = [forge.commit(work, m) for m in messages]
    forge.git("push", "-q", "origin", "HEAD:main", cwd=work)
    return before, made[-1], made


def wait_for_push_jobs(forge: Forge) -> None:
    """Until every push so far has been federated (its job done), so what it sent is known."""
    from app.jobs import QUEUED, RUNNING, Job

    def federated() -> bool:
        async def work(session: Any) -> bool:
            pending = await session.scalar(select(func.count()).select_from(Job).where(
                Job.kind == "forge.push.forgefed.federate_push", Job.state.in_((QUEUED, RUNNING))))
            done = await session.scalar(select(func.count()).select_from(Job).where(
                Job.kind == "forge.push.forgefed.federate_push"))
            return bool(done) and not pending

        return bool(forge.db(work))

    eventually(federated, "the push jobs")


def inbox_settled(forge: Forge) -> None:
    """Until every activity the server's inbox took has been applied."""
    from federation.activitypub.models import Activity

    async def work(session: Any) -> bool:
        return not await session.scalar(select(func.count()).select_from(Activity).where(
            Activity.direction == "in", Activity.state == "received"))

    eventually(lambda: forge.db(work), "the inbox to be applied")


def follow(peer: Peer, target: str, inbox: str) -> str:
    fid = f"{peer.base}/follows/{uuid.uuid4()}"
    assert peer.send(inbox, {"@context": "https://www.w3.org/ns/activitystreams", "id": fid, "type": "Follow",
                             "actor": peer.actor, "object": target}) == 202
    return fid


def test_repository_actor_webfinger_and_privacy(forge: Forge) -> None:
    forge.create_repo("alice", "ffdemo")
    forge.create_repo("alice", "ffsecret", private=True)
    uri, secret = repo_uri(forge, "alice", "ffdemo"), repo_uri(forge, "alice", "ffsecret")
    web = f"{forge.base}/forge/alice/ffdemo"
    # WebFinger: Forgejo's repository form, the companion Service's acct, and the URLs
    for resource, href in ((f"acct:@ffdemo@alice@{host(forge)}", uri), (f"acct:ffdemo@alice@{host(forge)}", uri),
                           (f"acct:alice.ffdemo@{host(forge)}", f"{uri}/service"), (web, uri), (uri, uri),
                           (f"{uri}/service", f"{uri}/service")):
        jrd = webfinger(forge, resource)
        assert jrd.status_code == 200, (resource, jrd.text)
        assert jrd.json()["links"][0] == {"rel": "self", "type": AS2, "href": href}, resource
    assert webfinger(forge, f"acct:alice.ffdemo@{host(forge)}").json()["subject"] == \
        f"acct:alice.ffdemo@{host(forge)}"
    assert webfinger(forge, f"acct:alice@{host(forge)}").json()["links"][0]["href"] == f"{forge.base}/@alice"
    # the Repository actor
    doc = as2(uri).json()
    assert doc["type"] == "Repository" and doc["id"] == uri and doc["name"] == "alice/ffdemo"
    assert "https://forgefed.org/ns" in doc["@context"]
    assert doc["cloneUri"] == f"{web}.git" and doc["url"] == web
    assert {doc[k] for k in ("inbox", "outbox", "followers", "likes", "forks")} == {
        f"{uri}/{k}" for k in ("inbox", "outbox", "followers", "likes", "forks")}
    assert doc["publicKey"]["id"] == f"{uri}/main-key" and doc["publicKey"]["owner"] == uri
    key = as2(f"{uri}/main-key").json()
    assert (key["type"], key["owner"]) == ("CryptographicKey", uri)
    assert key["publicKeyPem"] == doc["publicKey"]["publicKeyPem"]
    assert as2(f"{uri}/likes").json()["totalItems"] == 0
    assert forge.git("ls-remote", doc["cloneUri"]).returncode == 0
    # the companion Service, followable from Mastodon
    service = as2(f"{uri}/service").json()
    assert service["type"] == "Service" and service["preferredUsername"] == "alice.ffdemo"
    assert service["publicKey"]["id"] == f"{uri}/service/main-key" and service["url"] == web
    # a browser is sent to the repository's page
    page = httpx.get(uri, timeout=30)
    assert page.status_code in (301, 302, 303, 307, 308) and page.headers["location"].endswith("/forge/alice/ffdemo")
    # private looks absent, everywhere
    for path in ("", "/service", "/main-key", "/followers", "/likes", "/outbox", "/service/followers",
                 "/branches/main"):
        assert as2(secret + path).status_code == 404, path
    for resource in (f"acct:@ffsecret@alice@{host(forge)}", f"acct:alice.ffsecret@{host(forge)}",
                     f"{forge.base}/forge/alice/ffsecret", secret, f"acct:@nosuch@alice@{host(forge)}"):
        assert webfinger(forge, resource).status_code == 404, resource
    refused = httpx.post(f"{secret}/inbox", content=b"{}", headers={"Content-Type": AS2}, timeout=30)
    assert refused.status_code == 404
    assert as2(f"{forge.base}/ap/repos/{uuid.uuid4()}").status_code == 404
    assert as2(f"{uri}/commits/{'0' * 40}").status_code == 404
    assert as2(f"{uri}/commits/not-a-hash").status_code == 404
    assert as2(f"{uri}/nonsense").status_code == 404
    # an unsigned activity is refused before anything is stored
    unsigned = httpx.post(f"{uri}/inbox", json={"id": "http://127.0.0.1:1/x", "type": "Follow",
                                                "actor": "http://127.0.0.1:1/a", "object": uri}, timeout=30)
    assert unsigned.status_code == 401


def test_push_reaches_fedify_followers_of_repository_pusher_and_service(forge: Forge, peer: Peer) -> None:
    forge.create_repo("alice", "ffpush")
    first_before, first, _ = push_commits(forge, "alice", "ffpush", ["Initial"])  # nobody follows yet
    wait_for_push_jobs(forge)
    uri = repo_uri(forge, "alice", "ffpush")
    alice = f"{forge.base}/@alice"
    follow(peer, uri, f"{uri}/inbox")
    follow(peer, alice, f"{alice}/inbox")
    follow(peer, f"{uri}/service", f"{uri}/service/inbox")

    def accepts() -> list[dict[str, Any]]:
        found = [r for r in peer.received(forge.base) if (r["json"] or {}).get("type") == "Accept"]
        return found if len(found) == 3 else []

    got = eventually(accepts, "three Accepts at the Fedify peer")
    # Fedify verified every Accept (our key documents) and its inbox took them
    assert sorted(r["keyId"] for r in got) == sorted([f"{uri}/main-key", f"{alice}#main-key",
                                                        f"{uri}/service/main-key"])
    assert {r["status"] for r in got} == {202}
    assert as2(f"{uri}/followers?page=1").json()["orderedItems"] == [peer.actor]
    assert as2(f"{uri}/service/followers?page=1").json()["orderedItems"] == [peer.actor]

    before, after, made = push_commits(forge, "alice", "ffpush", ["Second change", "Third change", "Fourth <b>"])
    assert before == first and first_before == ""

    def of_type(kind: str) -> list[dict[str, Any]]:
        return [r for r in peer.received(forge.base) if (r["json"] or {}).get("type") == kind]

    push = eventually(lambda: of_type("Push"), "the Push at the Fedify peer")
    assert len(push) == 1
    record = push[0]
    assert record["keyId"] == f"{uri}/main-key"  # Fedify verified the Repository's signature
    assert record["status"] == 400  # ...and its own inbox refuses Push: no ForgeFed in its vocabulary
    doc = record["json"]
    assert doc["actor"] == uri and doc["attributedTo"] == alice and doc["context"] == uri
    assert doc["target"] == {"id": f"{uri}/branches/main", "type": "Branch", "context": uri, "name": "main",
                             "ref": "refs/heads/main"}
    assert (doc["hashBefore"], doc["hashAfter"]) == (before, after)
    assert doc["object"]["type"] == "OrderedCollection" and doc["object"]["totalItems"] == 3
    commits = doc["object"]["orderedItems"]
    assert [c["hash"] for c in commits] == made[::-1]  # newest first
    assert [c["summary"] for c in commits] == ["Fourth &lt;b&gt;", "Third change", "Second change"]
    assert commits[0]["type"] == "Commit" and commits[0]["attributedTo"] == "mailto:forge@example.org"
    assert f"{uri}/followers" in doc["to"] and f"{alice}/followers" in doc["to"]
    # the Commit and Branch ids and the Push itself are dereferenceable
    served = as2(commits[0]["id"]).json()
    assert served["hash"] == after and served["type"] == "Commit" and served["summary"] == "Fourth &lt;b&gt;"
    assert as2(f"{uri}/branches/main").json()["ref"] == "refs/heads/main"
    assert as2(f"{uri}/branches/nosuch").status_code == 404
    assert as2(doc["id"]).json()["type"] == "Push"
    assert as2(f"{uri}/outbox").json()["totalItems"] == 2  # the first push went out too, to nobody

    create = eventually(lambda: of_type("Create"), "the pusher's Create at the Fedify peer")
    assert len(create) == 1 and create[0]["keyId"] == f"{alice}#main-key" and create[0]["status"] == 202
    note = create[0]["json"]["object"]
    assert note["type"] == "Note" and note["attributedTo"] == alice and PUBLIC in note["to"]
    assert "pushed" in note["content"] and "3 commits" in note["content"] and "alice/ffpush:main" in note["content"]
    assert note["url"] == f"{forge.base}/forge/alice/ffpush/compare/{before}...{after}"
    announce = eventually(lambda: of_type("Announce"), "the Service's Announce at the Fedify peer")
    assert announce[0]["keyId"] == f"{uri}/service/main-key" and announce[0]["status"] == 202
    assert announce[0]["json"]["object"] == note["id"] and announce[0]["json"]["actor"] == f"{uri}/service"

    # Unfollowing the repository: the next push reaches the pusher's and Service's followers only
    follow_id = next(r for r in peer.received(forge.base) if r["keyId"] == f"{uri}/main-key" and
                     (r["json"] or {}).get("type") == "Accept")["json"]["object"]["id"]
    assert peer.send(f"{uri}/inbox", {"@context": "https://www.w3.org/ns/activitystreams",
                                      "id": f"{peer.base}/undo/{uuid.uuid4()}", "type": "Undo", "actor": peer.actor,
                                      "object": {"id": follow_id, "type": "Follow", "actor": peer.actor,
                                                 "object": uri}}) == 202
    eventually(lambda: as2(f"{uri}/followers").json()["totalItems"] == 0, "the Undo{Follow}")
    push_commits(forge, "alice", "ffpush", ["Fifth"])
    eventually(lambda: len(of_type("Create")) == 2, "the second Create")
    eventually(lambda: len(of_type("Announce")) == 2, "the second Announce")
    assert len(of_type("Push")) == 1


def test_stars_in_forgejo_form(forge: Forge, peer: Peer) -> None:
    forge.create_repo("alice", "ffstar")
    uri = repo_uri(forge, "alice", "ffstar")
    like = {"@context": "https://www.w3.org/ns/activitystreams", "type": "Like", "actor": peer.actor, "object": uri,
            "startTime": "2026-01-01T00:00:00Z"}  # Forgejo: a startTime, no id
    assert peer.send(f"{uri}/inbox", like) == 202
    eventually(lambda: as2(f"{uri}/likes").json()["totalItems"] == 1, "the star")
    assert peer.send(f"{uri}/inbox", like) == 202  # a redelivery
    assert peer.send(f"{uri}/inbox", {**like, "startTime": "2026-01-01T00:00:01Z"}) == 202  # starred again
    inbox_settled(forge)  # the inbox applies activities concurrently: the Undo must come after these
    page = as2(f"{uri}/likes?page=1").json()
    assert page["orderedItems"] == [{"type": "Like", "actor": peer.actor, "object": uri}]
    undo = {"@context": "https://www.w3.org/ns/activitystreams", "type": "Undo", "actor": peer.actor,
            "startTime": "2026-01-01T00:00:02Z", "object": {"type": "Like", "actor": peer.actor, "object": uri}}
    assert peer.send(f"{uri}/inbox", undo) == 202
    eventually(lambda: as2(f"{uri}/likes").json()["totalItems"] == 0, "the unstar")
    # an id-less activity that is no Forgejo star is still refused
    assert peer.send(f"{uri}/inbox", {"type": "Follow", "actor": peer.actor, "object": uri}) == 400
    assert peer.send(f"{uri}/inbox", {**like, "startTime": 5}) == 400


def test_push_to_a_private_repository_sends_nothing(forge: Forge, peer: Peer) -> None:
    forge.create_repo("alice", "ffhidden")
    uri = repo_uri(forge, "alice", "ffhidden")
    follow(peer, uri, f"{uri}/inbox")
    eventually(lambda: as2(f"{uri}/followers").json()["totalItems"] == 1, "the follow")
    made = httpx.patch(f"{forge.base}/api/v1/repos/alice/ffhidden", json={"private": True},
                       headers={"Authorization": f"token {forge.tokens['alice']}"}, timeout=30)
    assert made.status_code == 200, made.text
    assert as2(uri).status_code == 404
    push_commits(forge, "alice", "ffhidden", ["Secret work"])

    from federation.activitypub.models import Activity

    wait_for_push_jobs(forge)

    async def sent(session: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(Activity).where(
            Activity.actor_uri == uri, Activity.type == "Push")) or 0)

    assert forge.db(sent) == 0
    assert not [r for r in peer.received(forge.base) if "ffhidden" in json.dumps(r["json"])
                and (r["json"] or {}).get("type") in ("Push", "Create")]
