"""Pure forge rules: ref names, push policy, access decisions, request bodies, the limiter."""

from __future__ import annotations

import gzip
import io
import uuid
from typing import Any

import pytest

from app.security import AuthInfo
from forge.access import decide_access
from forge.policy import ZERO_OID, Command, Protection, PushPolicy, check_ref_format, decide, parse_commands
from forge.runtime import Limiter
from forge.smart_http import GIT_PROTOCOL, BodyError, pkt_line, read_body, split_repo

A, B = "a" * 40, "b" * 40


@pytest.mark.parametrize("name, ok", [
    ("refs/heads/main", True), ("refs/heads/feature/x-1", True), ("refs/tags/v1.0", True),
    ("refs/heads/a..b", False), ("refs/heads/.hidden", False), ("refs/heads/x.lock", False),
    ("refs/heads/x/", False), ("refs/heads//x", False), ("refs/heads/a b", False), ("refs/heads/a~1", False),
    ("refs/heads/a^", False), ("refs/heads/a:b", False), ("refs/heads/a?", False), ("refs/heads/a*", False),
    ("refs/heads/a[", False), ("refs/heads/a\\b", False), ("refs/heads/a@{1}", False), ("@", False),
    ("refs/heads/x.", False), ("main", False), ("refs/heads/\x01", False),
])
def test_check_ref_format(name: str, ok: bool) -> None:
    assert check_ref_format(name) is ok


def run(commands: list[Command], policy: PushPolicy | None = None, ancestor: bool = True) -> list[str]:
    decision = decide(commands, policy or PushPolicy(), lambda old, new: ancestor)
    return [r.reason for r in decision.rejections]


def test_only_heads_and_tags() -> None:
    assert run([Command(ZERO_OID, A, "refs/heads/x"), Command(ZERO_OID, A, "refs/tags/v1")]) == []
    assert "only refs/heads/*" in run([Command(ZERO_OID, A, "refs/notes/x")])[0]
    assert "only refs/heads/*" in run([Command(ZERO_OID, A, "refs/pull/1/head")])[0]
    assert "funny refname" in run([Command(ZERO_OID, A, "refs/heads/a..b")])[0]


def test_fast_forward_rules() -> None:
    update = [Command(A, B, "refs/heads/topic")]
    assert run(update, ancestor=True) == []
    assert "non-fast-forward" in run(update, ancestor=False)[0]
    assert run(update, PushPolicy(allow_force_push=True), ancestor=False) == []
    protected = PushPolicy(allow_force_push=True, protected=(Protection("top*"),))
    assert "protected branch 'topic'" in run(update, protected, ancestor=False)[0]
    assert run(update, protected, ancestor=True) == []


def test_deletion_rules() -> None:
    assert run([Command(A, ZERO_OID, "refs/heads/topic")]) == []
    assert "default branch" in run([Command(A, ZERO_OID, "refs/heads/main")])[0]
    policy = PushPolicy(protected=(Protection("release/*"),))
    assert "cannot be deleted" in run([Command(A, ZERO_OID, "refs/heads/release/1")], policy)[0]
    policy = PushPolicy(protected=(Protection("release/*", allow_deletion=True),))
    assert run([Command(A, ZERO_OID, "refs/heads/release/1")], policy) == []


def test_tags_are_immutable() -> None:
    assert run([Command(ZERO_OID, A, "refs/tags/v1")]) == []
    assert "cannot be moved" in run([Command(A, B, "refs/tags/v1")])[0]
    assert "cannot be deleted" in run([Command(A, ZERO_OID, "refs/tags/v1")])[0]
    assert run([Command(A, B, "refs/tags/v1")], PushPolicy(tags_immutable=False)) == []


def test_policy_json_round_trip_and_command_parsing() -> None:
    policy = PushPolicy("trunk", True, (Protection("main"), Protection("rel/*", True)), False)
    assert PushPolicy.from_json(policy.to_json()) == policy
    assert PushPolicy.from_json("") == PushPolicy()
    assert parse_commands([f"{A} {B} refs/heads/x\n", "garbage"]) == [Command(A, B, "refs/heads/x")]


def test_hook_module_reports_and_rejects(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from forge.hooks import pre_receive

    report = tmp_path / "report.json"
    env = {"ROSE_ASH_POLICY": PushPolicy().to_json(), "ROSE_ASH_HOOK_REPORT": str(report),
           "GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "a b", "GIT_PUSH_OPTION_1": '"c"'}
    assert pre_receive.run([f"{ZERO_OID} {A} refs/heads/x"], env) == 0
    assert '"push_options": ["a b", "\\"c\\""]' in report.read_text()
    report.unlink()
    assert pre_receive.run([f"{A} {B} refs/tags/v1"], env) == 1
    assert "refs/tags/v1: tags cannot be moved" in capsys.readouterr().err
    assert not report.exists()


def test_hook_imports_no_web_stack() -> None:
    """git starts the hook once per push: it must not pay for Litestar, SQLAlchemy or the settings.

    (``forge/__init__.py`` declares the package with ``app.kit.Domain``, which imports only the
    standard library, so ``app`` and ``app.kit`` may be loaded.)"""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys, forge.hooks.pre_receive; "
             "print(sorted(m for m in ('litestar', 'sqlalchemy', 'app.settings', 'app.db') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-s", "-c", probe], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


def test_forge_limits_come_from_the_one_settings_loader(tmp_path: Any) -> None:
    from app.settings import Settings
    from forge.config import ForgeConfig

    env = {"ROSE_ASH_DATA_DIR": str(tmp_path), "ROSE_ASH_FORGE_MAX_PUSH_BYTES": "1000",
           "ROSE_ASH_FORGE_MAX_FETCH_BODY_BYTES": "2000", "ROSE_ASH_FORGE_MAX_CONCURRENT": "3",
           "ROSE_ASH_FORGE_MAX_PER_REPO": "2", "ROSE_ASH_FORGE_TIMEOUT": "60", "ROSE_ASH_FORGE_IDLE_TIMEOUT": "30"}
    config = ForgeConfig.from_settings(Settings.from_env(env), state_dir=tmp_path / "forge")
    assert (config.max_push_bytes, config.max_fetch_body_bytes, config.max_concurrent, config.max_per_repo,
            config.timeout, config.idle_timeout) == (1000, 2000, 3, 2, 60.0, 30.0)
    defaults = ForgeConfig.from_settings(Settings.from_env({"ROSE_ASH_DATA_DIR": str(tmp_path)}))
    assert defaults == ForgeConfig()


# -- access --------------------------------------------------------------------------------------
TOKEN_RO = AuthInfo("token", frozenset({"repo:read"}))
TOKEN_RW = AuthInfo("token", frozenset({"repo:write"}))
SESSION = AuthInfo("session")


@pytest.mark.parametrize("private, signed_in, permission, auth, action, expected", [
    (False, False, "read", None, "read", None),
    (False, False, "read", None, "write", 401),
    (False, True, "read", AuthInfo("token", frozenset({"api"})), "read", 403),  # the token still needs its scope
    (False, True, "read", TOKEN_RO, "read", None),
    (False, True, "read", TOKEN_RW, "write", 403),
    (False, True, "write", TOKEN_RO, "write", 403),
    (False, True, "write", TOKEN_RW, "write", None),
    (True, False, "none", None, "read", 401),
    (True, True, "none", TOKEN_RW, "read", 404),
    (True, True, "none", TOKEN_RW, "write", 404),
    (True, True, "read", TOKEN_RO, "read", None),
    (True, True, "read", TOKEN_RO, "write", 403),
    # A token without repo:read does not see private repositories at all: absent to it (404).
    (True, True, "admin", AuthInfo("token", frozenset({"api"})), "read", 404),
    (True, True, "admin", AuthInfo("token", frozenset({"api"})), "write", 404),
    (True, False, "none", None, "write", 401),
    (True, True, "admin", SESSION, "write", None),
])
def test_access_decisions(private: bool, signed_in: bool, permission: Any, auth: AuthInfo | None, action: Any,
                          expected: int | None) -> None:
    denied = decide_access(private, signed_in, permission, auth, action)
    assert (denied.status if denied else None) == expected
    if denied is not None and denied.status == 401:
        assert denied.headers["WWW-Authenticate"].startswith("Basic realm=")


# -- HTTP pieces -----------------------------------------------------------------------------------
def test_names_and_headers() -> None:
    assert split_repo("alice", "repo.git") == ("alice", "repo")
    assert split_repo("alice", "repo") == ("alice", "repo")
    for owner, repo in (("..", "x"), ("alice", ".."), ("alice", ".git"), ("alice", "a..b"), ("", "x")):
        assert split_repo(owner, repo) is None
    assert GIT_PROTOCOL.fullmatch("version=2") and GIT_PROTOCOL.fullmatch("version=2:foo=bar")
    for bad in ("version=2;x", "version 2", "version=2\n", "=2", "version=2:"):
        assert not GIT_PROTOCOL.fullmatch(bad)
    assert pkt_line("# service=git-upload-pack\n") == b"001e# service=git-upload-pack\n"


class FakeRequest:
    def __init__(self, chunks: list[bytes], encoding: str = "") -> None:
        self.chunks = chunks
        self.headers = {"content-encoding": encoding} if encoding else {}

    async def stream(self) -> Any:
        for chunk in self.chunks:
            yield chunk


@pytest.mark.anyio
async def test_read_body_plain_gzip_and_limits() -> None:
    payload = b"0032want " + b"a" * 40 + b"\n" * 1000
    sink = io.BytesIO()
    assert await read_body(FakeRequest([payload[:10], payload[10:]]), sink, 10_000) == len(payload)  # type: ignore[arg-type]
    assert sink.getvalue() == payload
    packed = gzip.compress(payload)
    sink = io.BytesIO()
    await read_body(FakeRequest([packed[i:i + 7] for i in range(0, len(packed), 7)], "gzip"), sink, 10_000)  # type: ignore[arg-type]
    assert sink.getvalue() == payload
    with pytest.raises(BodyError) as exc:
        await read_body(FakeRequest([packed[:-5]], "gzip"), io.BytesIO(), 10_000)  # type: ignore[arg-type]
    assert exc.value.status == 400
    with pytest.raises(BodyError) as exc:
        await read_body(FakeRequest([b"not gzip at all"], "gzip"), io.BytesIO(), 10_000)  # type: ignore[arg-type]
    assert exc.value.status == 400
    bomb = gzip.compress(b"\0" * 5_000_000)
    with pytest.raises(BodyError) as exc:
        await read_body(FakeRequest([bomb], "gzip"), io.BytesIO(), 100_000)  # type: ignore[arg-type]
    assert exc.value.status == 413
    with pytest.raises(BodyError) as exc:
        await read_body(FakeRequest([b"x" * 11]), io.BytesIO(), 10)  # type: ignore[arg-type]
    assert exc.value.status == 413
    with pytest.raises(BodyError) as exc:
        await read_body(FakeRequest([b"x"], "br"), io.BytesIO(), 10)  # type: ignore[arg-type]
    assert exc.value.status == 415


def test_limiter_per_repo_and_total() -> None:
    limiter = Limiter(total=3, per_repo=2)
    r1, r2 = uuid.uuid4(), uuid.uuid4()
    a, b = limiter.try_acquire(r1), limiter.try_acquire(r1)
    assert a and b and limiter.try_acquire(r1) is None
    c = limiter.try_acquire(r2)
    assert c and limiter.try_acquire(r2) is None  # total reached
    a.release()
    a.release()  # idempotent
    assert limiter.running == 2
    d = limiter.try_acquire(r1)
    assert d is not None
    for slot in (b, c, d):
        slot.release()
    assert limiter.running == 0 and limiter.by_repo == {}
