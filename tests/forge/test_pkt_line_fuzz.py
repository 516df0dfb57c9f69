# ruff: noqa: F811  (the ``forge`` fixture is imported from forge_fixtures)
"""Hostile pkt-line streams (gitprotocol-common(5)) against git smart HTTP on a real server
(issue 11 item 10). The forge has no pkt-line parser of its own: C git parses the request body
and our Python frames the answer. The property is the whole path's: whatever the body, the
answer is a 200 with git's own in-band error or a 4xx, never a 5xx; no ref moves; the repository
stays sound and the server keeps serving."""

from __future__ import annotations

import gzip

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.forge.forge_fixtures import Forge, forge  # noqa: F401

BOUNDED = settings(max_examples=60, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

oids = st.from_regex(r"[0-9a-f]{40}", fullmatch=True) | st.sampled_from(["0" * 40, "f" * 40, "xyz"])
capabilities = st.lists(st.sampled_from([
    "multi_ack_detailed", "side-band-64k", "thin-pack", "ofs-delta", "no-progress", "report-status",
    "report-status-v2", "atomic", "push-options", "object-format=sha1", "object-format=sha256",
    "agent=git/2.x", "filter", "shallow", "deepen-since", "allow-tip-sha1-in-want",
]), max_size=4).map(" ".join)
commands = st.one_of(
    st.builds(lambda o, c: f"want {o} {c}\n", oids, capabilities),
    st.builds(lambda o: f"want {o}\n", oids),
    st.builds(lambda o: f"have {o}\n", oids),
    st.builds(lambda o: f"shallow {o}\n", oids),
    st.builds(lambda n: f"deepen {n}\n", st.integers(-(2**70), 2**70)),
    st.sampled_from(["done\n", "command=ls-refs\n", "command=fetch\n", "command=object-info\n",
                     "command=bundle-uri\n", "ref-prefix refs/heads/\n", "peel\n", "symrefs\n", "unborn\n",
                     "thin-pack\n", "ofs-delta\n", "filter blob:none\n", "agent=fuzz\n", "object-format=sha1\n",
                     "server-option=x\n", "deepen-relative\n", "wait-for-done\n"]),
    st.builds(lambda a, b, r, c: f"{a} {b} {r}\0{c}\n", oids, oids,
              st.sampled_from(["refs/heads/main", "refs/heads/x", "refs/tags/v1", "HEAD", "refs/../x", ""]),
              capabilities),
    st.text(max_size=40),
)


def pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


@st.composite
def pkt_streams(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["line", "line", "line", "flush", "delim", "end", "bad-length", "raw"]))
        if kind == "line":
            parts.append(pkt(draw(commands).encode("utf-8", "surrogatepass")))
        elif kind == "flush":
            parts.append(b"0000")
        elif kind == "delim":
            parts.append(b"0001")
        elif kind == "end":
            parts.append(b"0002")
        elif kind == "bad-length":  # too short, not hex, longer than what follows, over 65520
            parts.append(draw(st.sampled_from([b"0003", b"0004", b"zzzz", b"ffff", b"fff0abc", b"00", b"-001"])))
        else:
            parts.append(draw(st.binary(max_size=64)))
    return b"".join(parts)


def refs(forge: Forge, repo_id: str) -> str:
    return forge.git("--git-dir", str(forge.bare_path(repo_id)), "for-each-ref").stdout


@BOUNDED
@given(body=pkt_streams(), service=st.sampled_from(["git-upload-pack", "git-receive-pack"]),
       protocol=st.sampled_from([None, "version=2", "version=1", "version=2:object-format=sha1"]),
       gzipped=st.booleans())
def test_hostile_pkt_lines_never_get_a_5xx(forge: Forge, body: bytes, service: str, protocol: str | None,
                                            gzipped: bool) -> None:
    state = _fuzz_repo(forge)
    headers = {"Content-Type": f"application/x-{service}-request"}
    if protocol:
        headers["Git-Protocol"] = protocol
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    response = httpx.post(f"{forge.base}/forge/alice/pktfuzz.git/{service}", content=body, headers=headers,
                          auth=("alice", forge.tokens["alice"]), timeout=60)
    assert response.status_code < 500, (response.status_code, response.text[:300], forge.server.log_tail(2000))
    assert refs(forge, state["id"]) == state["refs"]


_STATE: dict[str, dict[str, str]] = {}


def _fuzz_repo(forge: Forge) -> dict[str, str]:
    """One repository with one pushed commit per server (the fixture is per module and database)."""
    key = forge.base
    if key not in _STATE:
        repo = forge.create_repo("alice", "pktfuzz")
        work = forge.new_clone("alice", "pktfuzz", "alice")
        forge.commit(work, "first")
        forge.git("push", "-q", "origin", "main", cwd=work)
        _STATE[key] = {"id": repo["uuid"], "refs": refs(forge, repo["uuid"])}
    return _STATE[key]


def test_after_the_fuzz_the_repository_is_sound_and_served(forge: Forge) -> None:
    state = _fuzz_repo(forge)
    forge.git("--git-dir", str(forge.bare_path(state["id"])), "fsck", "--strict", "--no-dangling")
    clone = forge.new_clone("alice", "pktfuzz", "alice")
    assert forge.rev(clone, "HEAD") in state["refs"]
