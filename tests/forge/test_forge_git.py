# ruff: noqa: F811  (the ``forge`` fixture is imported from forge_fixtures)
"""Stock ``git`` against a real server on 127.0.0.1 (design/forge.md §2 checklist)."""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.forge.forge_fixtures import Forge, forge  # noqa: F401

pytestmark = pytest.mark.e2e
ZERO = "0" * 40


def ls_remote(forge: Forge, url: str, *args: str) -> dict[str, str]:
    out = forge.git("ls-remote", *args, url).stdout
    return {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines() if "\t" in line}


def jobs_for(forge: Forge, repo_id: str) -> list[dict[str, Any]]:
    from app.jobs import Job

    async def work(session: Any) -> list[dict[str, Any]]:
        rows = (await session.execute(select(Job).where(Job.kind == "forge.push").order_by(Job.created_at))).scalars()
        return [j.payload for j in rows if j.payload.get("repo_id") == repo_id]

    return forge.db(work)


def mirror(forge: Forge, repo_id: str) -> dict[str, str]:
    from forge.models import ForgeRepoRef

    async def work(session: Any) -> dict[str, str]:
        import uuid

        rows = await session.execute(select(ForgeRepoRef.name, ForgeRepoRef.oid)
                                     .where(ForgeRepoRef.repo_id == uuid.UUID(repo_id)))
        return {name: oid for name, oid in rows}

    return forge.db(work)


def for_each_ref(forge: Forge, repo_id: str) -> dict[str, str]:
    out = forge.git("--git-dir", str(forge.bare_path(repo_id)), "for-each-ref",
                    "--format=%(objectname) %(refname)", "refs/heads", "refs/tags").stdout
    return {line.split(" ")[1]: line.split(" ")[0] for line in out.splitlines()}


def fsck(forge: Forge, repo_id: str) -> None:
    forge.git("--git-dir", str(forge.bare_path(repo_id)), "fsck", "--strict", "--no-dangling")


# -- round trips ---------------------------------------------------------------------------------
def test_clone_empty_push_clone_fetch(forge: Forge) -> None:
    repo = forge.create_repo("alice", "roundtrip")
    work = forge.tmp("rt")
    result = forge.git("clone", forge.url("alice", "roundtrip"), str(work))
    assert "empty repository" in result.stderr
    first = forge.commit(work, "first")
    forge.git("push", forge.url("alice", "roundtrip", "alice"), "main", cwd=work)
    other = forge.new_clone("alice", "roundtrip")
    assert forge.rev(other, "HEAD") == first
    assert forge.git("symbolic-ref", "HEAD", cwd=other).stdout.strip() == "refs/heads/main"
    second = forge.commit(work, "second")
    forge.git("tag", "-a", "v2", "-m", "v2", cwd=work)
    forge.git("push", forge.url("alice", "roundtrip", "alice"), "main", "v2", cwd=work)
    forge.git("fetch", "-q", "origin", cwd=other)
    assert forge.rev(other, "origin/main") == second
    assert forge.rev(other, "v2^{}") == second  # tag following on fetch
    forge.git("fsck", "--strict", cwd=other)
    assert mirror(forge, repo["uuid"]) == for_each_ref(forge, repo["uuid"])
    events = jobs_for(forge, repo["uuid"])
    assert [[c["ref"] for c in e["changes"]] for e in events] == [
        ["refs/heads/main"], ["refs/heads/main", "refs/tags/v2"]]
    assert events[0]["source"] == "push" and events[0]["changes"][0]["old"] == ZERO


def test_trailing_slash_and_no_dot_git(forge: Forge) -> None:
    forge.create_repo("alice", "slashy")
    work = forge.tmp("slashy")
    forge.git("clone", "-q", forge.url("alice", "slashy") + "/", str(work))
    forge.commit(work, "one")
    forge.git("push", "-q", forge.url("alice", "slashy", "alice", suffix=""), "main", cwd=work)
    refs = ls_remote(forge, forge.url("alice", "slashy", suffix="/"))
    assert refs["refs/heads/main"] == forge.rev(work, "HEAD")


def test_non_fast_forward_rejected_then_recovered(forge: Forge) -> None:
    forge.create_repo("alice", "nonff")
    a = forge.tmp("nonff-a")
    forge.git("clone", "-q", forge.url("alice", "nonff", "alice"), str(a))
    forge.commit(a, "base")
    forge.git("push", "-q", "origin", "main", cwd=a)
    b = forge.new_clone("alice", "nonff", "alice")
    forge.commit(a, "from a")
    forge.git("push", "-q", "origin", "main", cwd=a)
    forge.commit(b, "from b")
    rejected = forge.git("push", "origin", "main", cwd=b, check=False)
    assert rejected.returncode != 0 and "rejected" in rejected.stderr
    forced = forge.git("push", "--force", "origin", "main", cwd=b, check=False)
    assert forced.returncode != 0
    assert "remote: error: refs/heads/main: non-fast-forward" in forced.stderr
    assert "[remote rejected] main -> main" in forced.stderr
    forge.git("pull", "-q", "--no-rebase", "--no-edit", "origin", "main", cwd=b)
    forge.git("push", "-q", "origin", "main", cwd=b)
    assert ls_remote(forge, forge.url("alice", "nonff"))["refs/heads/main"] == forge.rev(b, "HEAD")


def test_force_push_allowed_by_owner_but_not_on_protected_branch(forge: Forge) -> None:
    repo = forge.create_repo("alice", "forcy")
    work = forge.tmp("forcy")
    forge.git("clone", "-q", forge.url("alice", "forcy", "alice"), str(work))
    forge.commit(work, "one")
    forge.git("push", "-q", "origin", "main", "main:topic", cwd=work)

    async def allow(service: Any, session: Any) -> None:
        import uuid

        row = await service.get(uuid.UUID(repo["uuid"]))
        await service.update_settings(row, allow_force_push=True)
        await service.protect_branch(row, "main")

    forge.service_call(allow)
    forge.git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    forge.git("push", "-q", "--force", "origin", "HEAD:topic", cwd=work)  # unprotected: allowed
    refused = forge.git("push", "--force", "origin", "HEAD:main", cwd=work, check=False)
    assert refused.returncode != 0 and "protected branch 'main'" in refused.stderr
    refused = forge.git("push", "origin", ":main", cwd=work, check=False)
    assert refused.returncode != 0 and "default branch 'main' cannot be deleted" in refused.stderr


def test_branch_create_and_delete(forge: Forge) -> None:
    repo = forge.create_repo("alice", "branches")
    work = forge.tmp("branches")
    forge.git("clone", "-q", forge.url("alice", "branches", "alice"), str(work))
    forge.commit(work, "one")
    forge.git("push", "-q", "origin", "main", "main:feature/x", cwd=work)
    assert "refs/heads/feature/x" in ls_remote(forge, forge.url("alice", "branches"))
    forge.git("push", "-q", "origin", "--delete", "feature/x", cwd=work)
    refs = ls_remote(forge, forge.url("alice", "branches"))
    assert "refs/heads/feature/x" not in refs and "refs/heads/main" in refs
    assert mirror(forge, repo["uuid"]) == for_each_ref(forge, repo["uuid"])
    # Only heads and tags may be pushed; check-ref-format applies.
    other = forge.git("push", "origin", "main:refs/notes/x", cwd=work, check=False)
    assert other.returncode != 0 and "only refs/heads/* and refs/tags/*" in other.stderr


def test_tags_follow_and_cannot_move(forge: Forge) -> None:
    forge.create_repo("alice", "tags")
    work = forge.tmp("tags")
    forge.git("clone", "-q", forge.url("alice", "tags", "alice"), str(work))
    one = forge.commit(work, "one")
    forge.git("tag", "-a", "v1", "-m", "v1", cwd=work)
    forge.git("tag", "light", cwd=work)
    forge.git("push", "-q", "origin", "main", "--tags", cwd=work)
    for version in ("0", "2"):
        clone = forge.tmp(f"tags-v{version}")
        forge.git("-c", f"protocol.version={version}", "clone", "-q", forge.url("alice", "tags"), str(clone))
        assert forge.rev(clone, "v1^{}") == one and forge.rev(clone, "light") == one
    forge.commit(work, "two")
    forge.git("tag", "-f", "-a", "v1", "-m", "moved", cwd=work)
    moved = forge.git("push", "--force", "origin", "refs/tags/v1", cwd=work, check=False)
    assert moved.returncode != 0 and "tags cannot be moved" in moved.stderr
    deleted = forge.git("push", "origin", ":refs/tags/light", cwd=work, check=False)
    assert deleted.returncode != 0 and "tags cannot be deleted" in deleted.stderr
    # tag following on fetch (include-tag): a new tag on a fetched commit arrives with it
    forge.git("tag", "-a", "v2", "-m", "v2", cwd=work)
    forge.git("push", "-q", "origin", "main", "v2", cwd=work)
    for version in ("0", "1", "2"):
        clone = forge.tmp(f"follow-{version}")
        forge.git("clone", "-q", "--single-branch", "--no-tags", forge.url("alice", "tags"), str(clone))
        forge.git("-c", f"protocol.version={version}", "fetch", "-q", "origin", cwd=clone)
        assert "v2" not in forge.git("tag", cwd=clone).stdout  # --no-tags sticks
        forge.git("config", "remote.origin.tagOpt", "--tags", cwd=clone)  # not needed for auto-follow
        forge.git("config", "--unset", "remote.origin.tagOpt", cwd=clone)
        forge.git("-c", f"protocol.version={version}", "fetch", "-q", "--tags", "origin", cwd=clone)
        assert "v2" in forge.git("tag", cwd=clone).stdout


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_protocol_versions(forge: Forge, version: str) -> None:
    name = f"proto{version}"
    forge.create_repo("alice", name)
    work = forge.tmp(name)
    forge.git("-c", f"protocol.version={version}", "clone", "-q", forge.url("alice", name, "alice"), str(work))
    tip = forge.commit(work, "one")
    forge.git("-c", f"protocol.version={version}", "push", "-q", "origin", "main", cwd=work)
    trace = forge.git("-c", f"protocol.version={version}", "ls-remote", forge.url("alice", name),
                      env={"GIT_TRACE_PACKET": "1"})
    assert f"{tip}\tHEAD" in trace.stdout
    if version == "2":
        assert "< version 2" in trace.stderr and "ls-refs" in trace.stderr
    elif version == "1":
        assert "< version 1" in trace.stderr
    clone = forge.tmp(f"{name}-clone")
    forge.git("-c", f"protocol.version={version}", "clone", "-q", forge.url("alice", name), str(clone))
    assert forge.rev(clone, "HEAD") == tip


def test_v2_advertisement_and_receive_pack_answers_v0(forge: Forge) -> None:
    forge.create_repo("alice", "adv")
    r = httpx.get(f"{forge.base}/forge/alice/adv.git/info/refs", params={"service": "git-upload-pack"},
                  headers={"Git-Protocol": "version=2"})
    assert r.status_code == 200 and r.content.startswith(b"000eversion 2\n")
    for cap in (b"ls-refs=unborn", b"fetch=shallow wait-for-done filter", b"server-option", b"object-format=sha1"):
        assert cap in r.content
    r = httpx.get(f"{forge.base}/forge/alice/adv.git/info/refs", params={"service": "git-receive-pack"},
                  headers={"Git-Protocol": "version=2"}, auth=("x", forge.tokens["alice"]))
    assert r.status_code == 200 and r.content.startswith(b"001f# service=git-receive-pack\n0000")
    assert r.headers["content-type"] == "application/x-git-receive-pack-advertisement"
    for cap in (b"report-status", b"report-status-v2", b"delete-refs", b"side-band-64k", b"atomic", b"push-options"):
        assert cap in r.content


def test_shallow_clones(forge: Forge) -> None:
    forge.create_repo("alice", "shallow")
    work = forge.tmp("shallow")
    forge.git("clone", "-q", forge.url("alice", "shallow", "alice"), str(work))
    dates = ["2023-01-01T00:00:00Z", "2023-06-01T00:00:00Z", "2024-03-01T00:00:00Z", "2024-06-01T00:00:00Z"]
    for i, date in enumerate(dates):
        (work / "f.txt").write_text(f"{i}\n")
        forge.git("add", "f.txt", cwd=work)
        forge.git("commit", "-q", "-m", f"c{i}", cwd=work,
                  env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
        if i == 1:
            forge.git("tag", "old", cwd=work)
    forge.git("push", "-q", "origin", "main", "old", cwd=work)
    url = forge.url("alice", "shallow")

    def count(path: Any) -> int:
        return int(forge.git("rev-list", "--count", "HEAD", cwd=path).stdout)

    for version in ("0", "2"):
        c = forge.tmp(f"depth{version}")
        forge.git("-c", f"protocol.version={version}", "clone", "-q", "--depth", "1", url, str(c))
        assert count(c) == 1
        forge.git("-c", f"protocol.version={version}", "fetch", "-q", "--deepen", "1", cwd=c)
        assert count(c) == 2
        forge.git("-c", f"protocol.version={version}", "fetch", "-q", "--unshallow", cwd=c)
        assert count(c) == 4
        c = forge.tmp(f"since{version}")
        forge.git("-c", f"protocol.version={version}", "clone", "-q", "--shallow-since=2024-01-01", url, str(c))
        assert count(c) == 2
        c = forge.tmp(f"exclude{version}")
        forge.git("-c", f"protocol.version={version}", "clone", "-q", "--shallow-exclude=old", url, str(c))
        assert count(c) == 2
        forge.git("fsck", cwd=c)
    # push from a shallow clone
    c = forge.tmp("shallow-push")
    forge.git("clone", "-q", "--depth", "1", forge.url("alice", "shallow", "alice"), str(c))
    tip = forge.commit(c, "from shallow")
    forge.git("push", "-q", "origin", "main", cwd=c)
    assert ls_remote(forge, url)["refs/heads/main"] == tip


def test_partial_clones(forge: Forge) -> None:
    forge.create_repo("alice", "partial")
    work = forge.tmp("partial")
    forge.git("clone", "-q", forge.url("alice", "partial", "alice"), str(work))
    forge.commit(work, "one", {"small.txt": "small\n", "dir/big.bin": "x" * 5000 + "\n"})
    forge.commit(work, "two", {"dir/big.bin": "y" * 5000 + "\n"})
    forge.git("push", "-q", "origin", "main", cwd=work)
    url = forge.url("alice", "partial")
    for spec in ("blob:none", "tree:0", "blob:limit=1k"):
        for version in ("0", "2"):
            c = forge.tmp(f"partial-{spec.replace(':', '-')}-{version}")
            forge.git("-c", f"protocol.version={version}", "clone", "-q", "--no-checkout", f"--filter={spec}",
                      url, str(c))
            missing = forge.git("rev-list", "--objects", "--all", "--missing=print", cwd=c).stdout
            assert any(line.startswith("?") for line in missing.splitlines()), spec
            forge.git("-c", f"protocol.version={version}", "checkout", "-q", "main", cwd=c)  # lazy fetch
            assert (c / "dir" / "big.bin").read_text().startswith("y")
            forge.git("fsck", cwd=c)


def test_chunked_push_and_gzip_fetch(forge: Forge) -> None:
    forge.create_repo("alice", "chunky")
    work = forge.tmp("chunky")
    forge.git("clone", "-q", forge.url("alice", "chunky", "alice"), str(work))
    import os

    forge.commit(work, "blob", {"random.bin": os.urandom(200_000).hex()})
    for i in range(100):
        forge.git("tag", "-a", "-m", f"t{i}", f"t{i:04d}", cwd=work)
    pushed = forge.git("-c", "http.postBuffer=1024", "push", "origin", "main", "--tags", cwd=work,
                       env={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"})
    assert "Transfer-Encoding: chunked" in pushed.stderr
    # 100 annotated tags are 100 wants: git gzips an upload-pack request over 1 KiB (v0 and v2),
    # and sends it chunked when it exceeds http.postBuffer.
    # (git 2.39 itself refuses http.postBuffer below 64 KiB under v2, hence v0 for the chunked case)
    for version, post_buffer, header in (("0", "1048576", "Content-Encoding: gzip"),
                                         ("2", "1048576", "Content-Encoding: gzip"),
                                         ("0", "1024", "Transfer-Encoding: chunked")):
        c = forge.tmp("chunky-clone")
        cloned = forge.git("-c", f"protocol.version={version}", "-c", f"http.postBuffer={post_buffer}", "clone",
                           forge.url("alice", "chunky"), str(c),
                           env={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"})
        assert header in cloned.stderr, (version, post_buffer)
        assert len(forge.git("tag", cwd=c).stdout.split()) == 100
        forge.git("fsck", cwd=c)


def test_push_options_reach_the_event(forge: Forge) -> None:
    repo = forge.create_repo("alice", "options")
    work = forge.tmp("options")
    forge.git("clone", "-q", forge.url("alice", "options", "alice"), str(work))
    forge.commit(work, "one")
    forge.git("push", "-q", "-o", "ci.skip", "-o", 'b "c" d', "origin", "main", cwd=work)
    events = jobs_for(forge, repo["uuid"])
    assert events[-1]["push_options"] == ["ci.skip", 'b "c" d']


def test_atomic_push_with_one_bad_ref_applies_nothing(forge: Forge) -> None:
    repo = forge.create_repo("alice", "atomic")
    work = forge.tmp("atomic")
    forge.git("clone", "-q", forge.url("alice", "atomic", "alice"), str(work))
    forge.commit(work, "one")
    forge.git("tag", "v1", cwd=work)
    forge.git("push", "-q", "origin", "main", "v1", cwd=work)
    before = for_each_ref(forge, repo["uuid"])
    forge.commit(work, "two")
    forge.git("tag", "-f", "v1", cwd=work)
    result = forge.git("push", "--atomic", "--force", "origin", "main", "main:newbranch", "refs/tags/v1",
                       cwd=work, check=False)
    assert result.returncode != 0
    assert "tags cannot be moved" in result.stderr
    assert for_each_ref(forge, repo["uuid"]) == before
    # without the hook's objection, git's own atomic transaction still refuses a stale ref for all
    forge.git("tag", "-d", "v1", cwd=work)
    result = forge.git("push", "--atomic", "--force-with-lease=main:" + "1" * 40, "origin", "main",
                       "main:other", cwd=work, check=False)
    assert result.returncode != 0 and "atomic" in result.stderr
    assert for_each_ref(forge, repo["uuid"]) == before


# -- raw request bodies ---------------------------------------------------------------------------
def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def pack_of(forge: Forge, work: Any, *oids: str) -> bytes:
    return subprocess.run(["git", "pack-objects", "--stdout"], input="\n".join(oids).encode() + b"\n", cwd=work,
                          capture_output=True, check=True).stdout


def receive_pack(forge: Forge, owner: str, repo: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{forge.base}/forge/{owner}/{repo}.git/git-receive-pack", content=body,
                      headers={"Content-Type": "application/x-git-receive-pack-request"},
                      auth=("x", forge.tokens["alice"]), timeout=60)


def test_raw_push_missing_objects_rejected_and_nothing_left(forge: Forge) -> None:
    repo = forge.create_repo("alice", "closure")
    work = forge.tmp("closure")
    forge.git("clone", "-q", forge.url("alice", "closure", "alice"), str(work))
    forge.commit(work, "base")
    forge.git("push", "-q", "origin", "main", cwd=work)
    parent = forge.commit(work, "never pushed", {"secret.txt": "parent only\n"})
    child = forge.commit(work, "child", {"child.txt": "child\n"})
    tree = forge.rev(work, "HEAD^{tree}")
    blob = forge.rev(work, "HEAD:child.txt")
    bare = forge.bare_path(repo["uuid"])
    before = for_each_ref(forge, repo["uuid"])

    def nothing_left() -> None:
        assert for_each_ref(forge, repo["uuid"]) == before
        for oid in (child, parent, tree, blob):
            assert forge.git("--git-dir", str(bare), "cat-file", "-e", oid, check=False).returncode != 0
        assert not list((bare / "objects").glob("tmp_objdir-incoming-*"))
        fsck(forge, repo["uuid"])

    # 1. The pack has the child commit, its tree and blob, but not the parent: the strict object
    #    check (transfer.fsckObjects) refuses the broken link before anything is written.
    body = pkt(f"{ZERO} {child} refs/heads/new\0report-status\n".encode()) + b"0000" + \
        pack_of(forge, work, child, tree, blob)
    r = receive_pack(forge, "alice", "closure", body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-git-receive-pack-result"
    assert b"ng refs/heads/new" in r.content and b"ok refs/heads/new" not in r.content, r.content
    nothing_left()
    # 2. The pack is valid but does not contain the new tip at all: the connectivity check
    #    (t5410 "receive-pack missing objects fails connectivity check") refuses the ref.
    body = pkt(f"{ZERO} {child} refs/heads/new\0report-status\n".encode()) + b"0000" + \
        pack_of(forge, work, blob)
    r = receive_pack(forge, "alice", "closure", body)
    assert b"ng refs/heads/new missing necessary objects" in r.content, r.content
    assert b"ok refs/heads/new" not in r.content
    nothing_left()


def test_raw_push_with_stale_old_value_is_never_acknowledged(forge: Forge) -> None:
    repo = forge.create_repo("alice", "stale")
    work = forge.tmp("stale")
    forge.git("clone", "-q", forge.url("alice", "stale", "alice"), str(work))
    c1 = forge.commit(work, "c1")
    forge.git("push", "-q", "origin", "main", cwd=work)
    c2 = forge.commit(work, "c2")
    forge.git("reset", "-q", "--hard", c1, cwd=work)
    c3 = forge.commit(work, "c3")
    forge.git("push", "-q", "origin", "main", cwd=work)  # the server is at c3 now
    pack = pack_of(forge, work, c2, forge.rev(work, f"{c2}^{{tree}}"), forge.rev(work, f"{c2}:c2.txt"))
    body = pkt(f"{c1} {c2} refs/heads/main\0report-status side-band-64k\n".encode()) + b"0000" + pack
    r = receive_pack(forge, "alice", "stale", body)
    assert r.status_code == 200
    assert b"ng refs/heads/main" in r.content, r.content
    assert b"ok refs/heads/main" not in r.content
    assert for_each_ref(forge, repo["uuid"])["refs/heads/main"] == c3
    fsck(forge, repo["uuid"])


# -- scale and concurrency ------------------------------------------------------------------------
def test_two_thousand_tags_pushed_and_cloned(forge: Forge) -> None:
    repo = forge.create_repo("alice", "manytags")
    work = forge.tmp("manytags")
    forge.git("clone", "-q", forge.url("alice", "manytags", "alice"), str(work))
    forge.commit(work, "one")
    tip = forge.rev(work, "HEAD")
    refs = "".join(f"create refs/tags/tag-{i:04d} {tip}\n" for i in range(2000))
    forge.git("update-ref", "--stdin", cwd=work, input=refs)
    forge.git("push", "-q", "origin", "main", "--tags", cwd=work)
    c = forge.tmp("manytags-clone")
    forge.git("clone", "-q", forge.url("alice", "manytags"), str(c))
    assert len(forge.git("tag", cwd=c).stdout.split()) == 2000
    assert len(mirror(forge, repo["uuid"])) == 2001
    # an incremental fetch with 2,000 haves (t5551 "enormous ref negotiation")
    forge.commit(work, "two")
    forge.git("push", "-q", "origin", "main", cwd=work)
    forge.git("fetch", "-q", "origin", cwd=c)
    assert forge.rev(c, "origin/main") == forge.rev(work, "HEAD")


def test_concurrent_pushes_to_one_branch(forge: Forge) -> None:
    repo = forge.create_repo("alice", "race")
    seed = forge.tmp("race-seed")
    forge.git("clone", "-q", forge.url("alice", "race", "alice"), str(seed))
    forge.commit(seed, "seed")
    forge.git("push", "-q", "origin", "main", cwd=seed)
    clones = [forge.new_clone("alice", "race", "alice") for _ in range(4)]
    for round_ in range(3):
        for i, c in enumerate(clones):
            forge.git("fetch", "-q", "origin", cwd=c)
            forge.git("reset", "-q", "--hard", "origin/main", cwd=c)
            forge.commit(c, f"round {round_} writer {i}")
        results: list[int] = [0] * len(clones)
        barrier = threading.Barrier(len(clones))

        def push(i: int, c: Any, results: list[int] = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            results[i] = forge.git("push", "-q", "origin", "main", cwd=c, check=False).returncode

        threads = [threading.Thread(target=push, args=(i, c)) for i, c in enumerate(clones)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(0) == 1, results
        winner = clones[results.index(0)]
        assert for_each_ref(forge, repo["uuid"])["refs/heads/main"] == forge.rev(winner, "HEAD")
    fsck(forge, repo["uuid"])
    assert mirror(forge, repo["uuid"]) == for_each_ref(forge, repo["uuid"])


# -- access ------------------------------------------------------------------------------------
def test_private_repository_access(forge: Forge) -> None:
    repo = forge.create_repo("alice", "secret", private=True)

    async def add_carol(service: Any, session: Any) -> None:
        import uuid

        from domains.account.services import AccountService

        row = await service.get(uuid.UUID(repo["uuid"]))
        carol = await AccountService(session).by_username("carol")
        await service.add_collaborator(row, carol, "read")

    forge.service_call(add_carol)
    work = forge.tmp("secret")
    forge.git("clone", "-q", forge.url("alice", "secret", "alice"), str(work))
    tip = forge.commit(work, "classified")
    forge.git("push", "-q", "origin", "main", cwd=work)
    refs = f"{forge.base}/forge/alice/secret.git/info/refs"
    up = {"service": "git-upload-pack"}
    anon = httpx.get(refs, params=up)
    assert anon.status_code == 401 and anon.headers["www-authenticate"].startswith("Basic")
    assert anon.headers["content-type"] == "text/plain; charset=utf-8"
    assert httpx.get(refs, params=up, auth=("x", forge.tokens["bob"])).status_code == 404
    assert httpx.get(refs, params=up, auth=("x", "rat_wrong")).status_code == 401
    assert httpx.get(refs, params=up, auth=("x", forge.tokens["carol"])).status_code == 200
    rp = {"service": "git-receive-pack"}
    assert httpx.get(refs, params=rp, auth=("x", forge.tokens["carol"])).status_code == 403
    assert httpx.get(refs, params=rp, auth=("x", forge.tokens["alice-ro"])).status_code == 403
    assert httpx.get(refs, params=rp).status_code == 401
    # git itself: anonymous clone fails on authentication, carol clones, carol cannot push
    result = forge.git("clone", forge.url("alice", "secret"), str(forge.tmp("anon") / "x"), check=False)
    assert result.returncode != 0 and ("Authentication failed" in result.stderr
                                       or "could not read Username" in result.stderr)
    result = forge.git("clone", forge.url("alice", "secret", "bob"), str(forge.tmp("bob") / "x"), check=False)
    assert result.returncode != 0 and "not found" in result.stderr
    result = forge.git("clone", forge.url("alice", "secret", "alice") .replace(forge.tokens["alice"], "rat_bad"),
                       str(forge.tmp("bad") / "x"), check=False)
    assert result.returncode != 0 and "Authentication failed" in result.stderr
    carol = forge.tmp("carol") / "x"
    forge.git("clone", "-q", forge.url("alice", "secret", "carol"), str(carol))
    assert forge.rev(carol, "HEAD") == tip
    forge.commit(carol, "carol was here")
    result = forge.git("push", "origin", "main", cwd=carol, check=False)
    assert result.returncode != 0 and "403" in result.stderr
    # a token header instead of credentials in the URL (http.extraHeader)
    c = forge.tmp("extraheader") / "x"
    forge.git("-c", f"http.extraHeader=Authorization: token {forge.tokens['alice-ro']}", "clone", "-q",
              forge.url("alice", "secret"), str(c))
    # public repository: anonymous push is always 401
    forge.create_repo("alice", "public-push")
    assert httpx.get(f"{forge.base}/forge/alice/public-push.git/info/refs", params=rp).status_code == 401
    assert httpx.get(f"{forge.base}/forge/alice/public-push.git/info/refs", params=rp,
                     auth=("x", forge.tokens["bob"])).status_code == 403


def raw_get(forge: Forge, path: str) -> int:
    """A GET with the path exactly as given (httpx would normalise dot segments)."""
    import socket

    with socket.create_connection(("127.0.0.1", forge.server.port), timeout=10) as sock:
        host = f"127.0.0.1:{forge.server.port}"  # the app answers only its configured host
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_http_edges(forge: Forge) -> None:
    forge.create_repo("alice", "edges")
    base = f"{forge.base}/forge/alice/edges.git"
    r = httpx.get(f"{base}/info/refs", params={"service": "git-upload-pack"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache, max-age=0, must-revalidate"
    assert r.headers["pragma"] == "no-cache" and r.headers["expires"].endswith("1980 00:00:00 GMT")
    assert r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert r.content.startswith(b"001e# service=git-upload-pack\n0000")
    assert httpx.get(f"{base}/info/refs", params={"service": "git-frobnicate"}).status_code == 403
    assert httpx.get(f"{base}/info/refs").status_code == 403
    # Absent answers as private does: a challenge, so git prompts (tests/forge/test_private_is_absent.py).
    assert httpx.get(f"{forge.base}/forge/alice/nope.git/info/refs",
                     params={"service": "git-upload-pack"}).status_code == 401
    assert httpx.get(f"{forge.base}/forge/nobody/nope.git/info/refs",
                     params={"service": "git-upload-pack"}).status_code == 401
    assert httpx.get(f"{forge.base}/forge/nobody/nope.git/info/refs", params={"service": "git-upload-pack"},
                     auth=("x", forge.tokens["bob"])).status_code == 404
    bad = httpx.post(f"{base}/git-upload-pack", content=b"0000", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400
    for value in ("version=2\r\nX-Evil: 1", "version=2; rm", "../../x", "version=2:", "a" * 300):
        r = httpx.get(f"{base}/info/refs", params={"service": "git-upload-pack"}, headers={"Git-Protocol": value}) \
            if "\r" not in value else None
        if r is not None:
            assert r.status_code == 400, value
    assert raw_get(forge, "/forge/alice/edges.git/info/refs?service=git-upload-pack") == 200
    for path in ("/forge/alice/..%2F..%2Fedges.git/info/refs", "/forge/../alice/edges.git/info/refs",
                 "/forge/alice/%2e%2e/info/refs", "/forge/alice/.edges.git/info/refs",
                 "/forge//edges.git/info/refs", "/forge/alice/edges.git/./info/refs",
                 "/forge/alice//edges.git/info/refs", "/forge/alice/edges.git/../edges.git/info/refs",
                 "/forge/alice/%2E%2E%2Fedges.git/info/refs"):
        assert raw_get(forge, path + "?service=git-upload-pack") in {400, 404}, path
    # gzip: a valid gzipped upload-pack request works; a truncated one is a clean 400
    import gzip

    body = b"0000"
    ok = httpx.post(f"{base}/git-upload-pack", content=gzip.compress(body), headers={
        "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"})
    assert ok.status_code == 200
    truncated = httpx.post(f"{base}/git-upload-pack", content=gzip.compress(b"0032want " + b"a" * 40)[:-6], headers={
        "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"})
    assert truncated.status_code == 400


def test_ref_mirror_reconciles_drift(forge: Forge) -> None:
    repo = forge.create_repo("alice", "drift")
    work = forge.tmp("drift")
    forge.git("clone", "-q", forge.url("alice", "drift", "alice"), str(work))
    one = forge.commit(work, "one")
    forge.git("push", "-q", "origin", "main", "main:gone", cwd=work)
    bare = forge.bare_path(repo["uuid"])
    # change refs behind the app's back (as a crash between git and the database would)
    forge.git("--git-dir", str(bare), "update-ref", "refs/heads/extra", one)
    forge.git("--git-dir", str(bare), "update-ref", "-d", "refs/heads/gone")
    assert mirror(forge, repo["uuid"]) != for_each_ref(forge, repo["uuid"])

    async def reconcile(service: Any, session: Any) -> list[Any]:
        import uuid

        return await service.sync_refs(uuid.UUID(repo["uuid"]))

    changes = forge.service_call(reconcile)
    assert {c.ref for c in changes} == {"refs/heads/extra", "refs/heads/gone"}
    assert mirror(forge, repo["uuid"]) == for_each_ref(forge, repo["uuid"])
    assert jobs_for(forge, repo["uuid"])[-1]["source"] == "reconcile"
    assert forge.service_call(reconcile) == []


def test_one_job_per_accepted_push(forge: Forge) -> None:
    repo = forge.create_repo("alice", "jobs")
    work = forge.tmp("jobs")
    forge.git("clone", "-q", forge.url("alice", "jobs", "alice"), str(work))
    for i in range(3):
        forge.commit(work, f"c{i}")
        forge.git("push", "-q", "origin", "main", cwd=work)
    forge.git("tag", "v1", cwd=work)
    forge.git("push", "-q", "origin", "v1", cwd=work)
    forge.git("push", "--force", "origin", "HEAD~1:main", cwd=work, check=False)  # refused: no job

    from app.jobs import Job

    async def count(session: Any) -> int:
        return int((await session.execute(select(func.count()).select_from(Job)
                                          .where(Job.kind == "forge.push"))).scalar_one())

    assert len(jobs_for(forge, repo["uuid"])) == 4
    assert forge.db(count) >= 4


def git_processes_in(path: Any) -> list[int]:
    """Processes whose working directory or command line is the bare repository."""
    import os
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cwd == str(path) or str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_client_disconnect_kills_git(forge: Forge) -> None:
    import os
    import time

    repo = forge.create_repo("alice", "bigblob")
    work = forge.tmp("bigblob")
    forge.git("clone", "-q", forge.url("alice", "bigblob", "alice"), str(work))
    (work / "random.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    forge.git("add", "random.bin", cwd=work)
    forge.git("commit", "-q", "-m", "big", cwd=work)
    forge.git("push", "-q", "origin", "main", cwd=work)
    tip = forge.rev(work, "HEAD")
    bare = forge.bare_path(repo["uuid"])
    body = pkt(f"want {tip} side-band-64k ofs-delta\n".encode()) + b"0000" + pkt(b"done\n")
    # A fixed, small receive buffer turns off the kernel's autotuning, which on loopback may grow
    # to tcp_rmem's maximum (32 MiB here) and swallow the whole pack before we look for git.
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    with httpx.Client(timeout=30, transport=transport) as client, client.stream(
            "POST", f"{forge.base}/forge/alice/bigblob.git/git-upload-pack", content=body,
            headers={"Content-Type": "application/x-git-upload-pack-request"}) as response:
        assert response.status_code == 200
        # Keep the iterator: a dropped generator closes the connection, which is the very
        # disconnect this test makes on purpose only after looking for git.
        chunks = response.iter_raw(65536)
        assert next(chunks)
        assert git_processes_in(bare), "git should be streaming the pack"
    # the client went away after the first chunk: the server kills upload-pack and pack-objects
    deadline = time.monotonic() + 15
    while git_processes_in(bare) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert git_processes_in(bare) == []
    # and the repository still serves normally
    assert ls_remote(forge, forge.url("alice", "bigblob"))["refs/heads/main"] == tip
