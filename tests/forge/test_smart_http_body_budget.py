"""The budget of bytes held by fetch bodies not yet admitted (forge/smart_http.py BodyBuffer,
forge/runtime.py BodyBudget), against a real server on SQLite and PostgreSQL, through both the
lean path and the full one (``?x=1``: a query the lean path never takes).

The server gets a 1 MiB budget and spills bodies past 64 KiB to a file. What the budget counts
is read from ``/metrics`` (``rose_ash_git_buffered_body_bytes``), which must be back at 0 after
every request, however it ended: refused, served, or abandoned by its client mid-body.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.forge.forge_fixtures import DB_KINDS, Forge, _make_forge

BUDGET = 1 << 20
SPILL = 64 << 10
UPLOAD = {"Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"}
PATHS = ["", "?x=1"]  # the lean path, the full path
GAUGE = re.compile(r"^rose_ash_git_buffered_body_bytes (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module", params=DB_KINDS)
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    yield from _make_forge(tmp_path_factory.mktemp("forge-budget"), str(request.param), extra_env={
        "ROSE_ASH_FORGE_MAX_BUFFERED_BODY_BYTES": str(BUDGET),
        "ROSE_ASH_FORGE_BODY_SPILL_BYTES": str(SPILL),
    })


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def ls_refs(size: int) -> bytes:
    """A protocol v2 ls-refs request of about ``size`` bytes: one ``ref-prefix`` argument repeated."""
    arg = pkt(b"ref-prefix refs/heads/\n")
    return pkt(b"command=ls-refs\n") + b"0001" + arg * max(1, size // len(arg)) + b"0000"


def buffered(forge: Forge) -> float:
    match = GAUGE.search(httpx.get(forge.base + "/metrics", timeout=30).text)
    assert match is not None, "the gauge is exported"
    return float(match.group(1))


def wait_for(forge: Forge, want: str, test: object) -> float:
    """Poll the gauge until ``test`` holds (the server releases after the response is sent)."""
    assert callable(test)
    deadline = time.monotonic() + 20
    value = buffered(forge)
    while not test(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = buffered(forge)
    assert test(value), f"gauge {value}, wanted {want}"
    return value


def spill_files(forge: Forge) -> list[str]:
    """Open files in the spill directory, in any process (unnamed: TemporaryFile unlinks them)."""
    tmp = str(forge.server.data_dir / "forge" / "tmp") + "/"
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [str(Path(fd).readlink()) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        found += [link for link in links if link.startswith(tmp) and "/push-" not in link]
    return found


def repo_with_commit(forge: Forge, name: str) -> str:
    forge.create_repo("alice", name)
    work = forge.new_clone("alice", name, "alice")
    forge.commit(work, "one")
    forge.git("push", "-q", "origin", "main", cwd=work)
    return forge.rev(work, "HEAD")


@pytest.mark.parametrize("query", PATHS)
def test_a_body_larger_than_the_whole_budget_is_413_and_nothing_stays_counted(forge: Forge, query: str) -> None:
    """It would never fit, so no Retry-After: the budget caps a single body below
    ``max_fetch_body_bytes`` (256 MiB here) as well."""
    name = f"budget-over{'-full' if query else ''}"
    tip = repo_with_commit(forge, name)
    response = httpx.post(f"{forge.base}/forge/alice/{name}.git/git-upload-pack{query}",
                          content=ls_refs(BUDGET + 256 * 1024), headers=UPLOAD, timeout=30)
    assert response.status_code == 413
    assert "retry-after" not in response.headers
    assert f"exceeds {BUDGET} bytes" in response.text
    wait_for(forge, "0", lambda v: v == 0)
    # the same request under the budget is served, from a spilled file (it is past 64 KiB)
    response = httpx.post(f"{forge.base}/forge/alice/{name}.git/git-upload-pack{query}",
                          content=ls_refs(BUDGET // 2), headers=UPLOAD, timeout=30)
    assert response.status_code == 200
    assert f"{tip} refs/heads/main".encode() in response.content
    assert response.content.endswith(b"0000")
    wait_for(forge, "0", lambda v: v == 0)
    assert spill_files(forge) == []


@pytest.mark.parametrize("query", PATHS)
def test_bodies_arriving_together_share_the_budget(forge: Forge, query: str) -> None:
    """A body still arriving holds its bytes: a second one that would pass the budget with it is
    refused; once the first is in (and admitted) the budget is free again."""
    name = f"budget-share{'-full' if query else ''}"
    tip = repo_with_commit(forge, name)
    body = ls_refs(BUDGET * 6 // 10)
    half = len(body) - 100  # all but its last bytes: 0.6 of the budget held
    first_half_sent = threading.Event()
    go_on = threading.Event()
    first: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:half]
        first_half_sent.set()
        go_on.wait(30)
        yield body[half:]

    def send_slowly() -> None:
        first.append(httpx.post(f"{forge.base}/forge/alice/{name}.git/git-upload-pack{query}",
                                content=slow_body(), headers=UPLOAD, timeout=60))

    thread = threading.Thread(target=send_slowly)
    thread.start()
    try:
        assert first_half_sent.wait(30)
        wait_for(forge, f">= {half}", lambda v: v >= half)
        second = httpx.post(f"{forge.base}/forge/alice/{name}.git/git-upload-pack{query}",
                            content=body, headers=UPLOAD, timeout=30)
        assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert "bodies are being received at once" in second.text
        # the refused body gave back what it took; the first still holds its half
        assert wait_for(forge, f"== {half}", lambda v: v <= half) == half
    finally:
        go_on.set()
        thread.join(60)
    assert first[0].status_code == 200
    assert f"{tip} refs/heads/main".encode() in first[0].content
    wait_for(forge, "0", lambda v: v == 0)
    # and an ordinary clone is unaffected
    clone = forge.new_clone("alice", name)
    assert forge.rev(clone, "HEAD") == tip


@pytest.mark.parametrize("query", PATHS)
def test_a_client_gone_mid_body_gives_its_bytes_back(forge: Forge, query: str) -> None:
    name = f"budget-gone{'-full' if query else ''}"
    repo_with_commit(forge, name)
    body = ls_refs(BUDGET * 8 // 10)
    sent = len(body) // 2
    host = forge.base.removeprefix("http://")
    address, port = host.split(":")
    head = (f"POST /forge/alice/{name}.git/git-upload-pack{query} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/x-git-upload-pack-request\r\nGit-Protocol: version=2\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((address, int(port)), timeout=30) as sock:
        sock.sendall(head + body[:sent])
        # held while the rest is awaited, and spilled to a file (past 64 KiB)
        wait_for(forge, f">= {sent}", lambda v: v >= sent)
        assert spill_files(forge)
    wait_for(forge, "0", lambda v: v == 0)
    deadline = time.monotonic() + 20
    while spill_files(forge) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spill_files(forge) == []
    # the server goes on serving
    clone = forge.new_clone("alice", name)
    assert (clone / ".git").is_dir()
