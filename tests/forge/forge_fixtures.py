"""Fixtures for forge tests (import ``forge`` into a test module to use it).

A real ``rose-ash run`` server per module and per database, users, tokens, repositories,
and a ``git`` runner with a clean configuration."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers.pg import PG_URL, pg_database
from tests.helpers.server import AppServer, app_server

T = TypeVar("T")
DB_KINDS = ["sqlite", *(["postgresql"] if PG_URL else [])]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> None:
    if shutil.which(name):
        return
    if IN_CI:
        pytest.fail(f"{name} is required in CI but is not installed")
    pytest.skip(f"{name} is not installed")
PASSWORD = "correct horse battery staple"


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ROSE_ASH_"))}
    env.update({
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Forge Test", "GIT_AUTHOR_EMAIL": "forge@example.org",
        "GIT_COMMITTER_NAME": "Forge Test", "GIT_COMMITTER_EMAIL": "forge@example.org",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    })
    return env


@dataclass
class Forge:
    """A running server plus the people, tokens and helpers the tests use."""

    server: AppServer
    work: Path
    tokens: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    @property
    def base(self) -> str:
        return self.server.base_url

    def url(self, owner: str, repo: str, user: str | None = None, *, suffix: str = ".git") -> str:
        host = self.base.removeprefix("http://")
        cred = f"{user}:{self.tokens[user]}@" if user else ""
        return f"http://{cred}{host}/forge/{owner}/{repo}{suffix}"

    def tmp(self, name: str) -> Path:
        self._counter += 1
        path = self.work / f"{self._counter:04d}-{name}"
        path.mkdir(parents=True)
        return path

    def git(self, *args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        full_env = git_env(self.work)
        full_env.update(env or {})
        result = subprocess.run(["git", *args], cwd=cwd or self.work, env=full_env, capture_output=True,
                                text=True, timeout=300, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}\n--- server log ---\n{self.server.log_tail(3000)}")
        return result

    def create_repo(self, owner: str, name: str, *, private: bool = False,
                    default_branch: str = "main") -> dict[str, Any]:
        response = httpx.post(f"{self.base}/api/v1/user/repos", json={
            "name": name, "private": private, "default_branch": default_branch,
        }, headers={"Authorization": f"token {self.tokens[owner]}"}, timeout=30)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        # ``id`` is Gitea's integer; the tests address the bare repository by our UUID.
        data["uuid"] = self.repo_uuid(owner, name)
        return data

    def repo_uuid(self, owner: str, name: str) -> str:
        from forge.models import ForgeRepo

        async def work(session: Any) -> str:
            from domains.account.models import User

            owner_id = select(User.id).where(User.username == owner).scalar_subquery()
            return str(await session.scalar(select(ForgeRepo.id).where(ForgeRepo.owner_id == owner_id,
                                                                        ForgeRepo.name == name)))

        return self.db(work)

    def new_clone(self, owner: str, repo: str, user: str | None = None, *args: str) -> Path:
        dest = self.tmp(f"clone-{repo}")
        self.git("clone", "-q", *args, self.url(owner, repo, user), str(dest))
        return dest

    def commit(self, work: Path, message: str, files: dict[str, str] | None = None) -> str:
        for name, content in (files or {message.replace(" ", "_") + ".txt": message + "\n"}).items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            self.git("add", name, cwd=work)
        self.git("commit", "-q", "-m", message, cwd=work)
        return self.rev(work, "HEAD")

    def rev(self, work: Path, what: str) -> str:
        return self.git("rev-parse", what, cwd=work).stdout.strip()

    def bare_path(self, repo_id: str) -> Path:
        import uuid

        rid = uuid.UUID(repo_id)
        return self.server.data_dir / "repos" / rid.hex[-2:] / f"{rid}.git"

    def db(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction against the server's database (in this process)."""
        from app.db import make_engine

        url = self.server.env.get("ROSE_ASH_DATABASE_URL") or \
            f"sqlite+aiosqlite:///{self.server.data_dir / 'rose-ash.sqlite3'}"

        async def run() -> T:
            engine = make_engine(url)
            try:
                async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def service_call(self, fn: Callable[..., Awaitable[T]]) -> T:
        """``fn(service, session)`` with a RepoService bound to the server's data directory."""
        from forge.config import ForgeConfig
        from forge.services import RepoService
        from forge.storage import RepoStore

        store = RepoStore(self.server.data_dir / "repos", ForgeConfig(state_dir=self.work / "forge-state"))

        async def work(session: AsyncSession) -> T:
            return await fn(RepoService(session, store), session)

        return self.db(work)


def _make_forge(tmp: Path, db_kind: str, extra_env: dict[str, str] | None = None) -> Iterator[Forge]:
    require_tool("git")

    def run(url: str | None) -> Iterator[Forge]:
        env = {"ROSE_ASH_WORKER_IN_PROCESS": "false", **(extra_env or {})}
        with app_server(tmp, name="forge", database_url=url, extra_env=env) as server:
            forge = Forge(server=server, work=tmp / "work")
            forge.work.mkdir()
            (forge.work / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[protocol]\n\tversion = 2\n")
            for user in ("alice", "bob", "carol"):
                server.create_user(user, PASSWORD)
            # Tokens in-process (each ``rose-ash`` call boots the whole app: seconds on a busy host).
            wanted = {"alice": ["repo:write", "api"], "bob": ["repo:write", "api"], "carol": ["repo:write", "api"],
                      "alice-ro": ["repo:read"]}

            async def make_tokens(session: AsyncSession) -> dict[str, str]:
                from domains.account.services import AccountService, TokenService

                made = {}
                for key, scopes in wanted.items():
                    user = await AccountService(session).by_username(key.split("-")[0])
                    assert user is not None
                    _token, secret = await TokenService(session).issue(user, key, scopes)
                    made[key] = secret
                return made

            forge.tokens.update(forge.db(make_tokens))
            yield forge

    if db_kind == "postgresql":
        with pg_database("forge") as url:
            yield from run(url)
    else:
        yield from run(None)


@pytest.fixture(scope="module", params=DB_KINDS)
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    """One server per test module and database kind; tests use distinct repository names."""
    yield from _make_forge(tmp_path_factory.mktemp("forge"), str(request.param))
