"""Run the real app as a separate process (``rose-ash run``, as ``make run`` does) for e2e tests."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx

from tests.helpers import pg

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

BIN = Path(sys.executable).parent
ROSE_ASH = str(BIN / "rose-ash") if (BIN / "rose-ash").exists() else shutil.which("rose-ash") or "rose-ash"
REPO_ROOT = Path(__file__).resolve().parents[2]


# Ports a server is told to use are picked here, then bound by the server a few seconds later.
# A kernel-chosen ephemeral port could meanwhile be handed to another test process (xdist
# workers, a server's own outbound connections), so each test process draws from its own block
# below the ephemeral range (Linux: 32768-60999) and never hands the same port out twice.
_PORT_BLOCK = 2000
_PORT_BASE = 12000
_handed_out: set[int] = set()
_port_lock = threading.Lock()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … under pytest-xdist
    return int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0


def free_port() -> int:
    """A port free now, in this test process's own block, not handed out before in this process."""
    low = _PORT_BASE + (_worker_index() % 10) * _PORT_BLOCK
    with _port_lock:
        for _ in range(500):
            port = random.randrange(low, low + _PORT_BLOCK)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{low + _PORT_BLOCK}")


# One migrated database per test process, copied for each server: `rose-ash database upgrade`
# costs seconds per server, and the migrations themselves are checked by tests/app/test_migrations.py.
_template_lock = threading.Lock()
_sqlite_template: Path | None = None
_pg_template: str | None = None


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env["ROSE_ASH_PASSWORD_HASH_COST"] = os.environ.get("ROSE_ASH_PASSWORD_HASH_COST", "test")
    return env


def _migrate(database_url: str | None, data_dir: Path) -> None:
    env = _base_env() | {"ROSE_ASH_DATA_DIR": str(data_dir), "ROSE_ASH_SECRET_KEY": "template-0123456789abcdef-xyz"}
    if database_url:
        env["ROSE_ASH_DATABASE_URL"] = database_url
    done = subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"migrating the template failed:\n{done.stdout}{done.stderr}")


def _migrated_sqlite_file() -> Path:
    global _sqlite_template
    with _template_lock:
        if _sqlite_template is None:
            data_dir = Path(tempfile.mkdtemp(prefix="rose-ash-migrated-"))
            atexit.register(shutil.rmtree, data_dir, True)
            _migrate(None, data_dir)
            path = data_dir / "rose-ash.sqlite3"
            assert not path.with_name(path.name + "-wal").exists(), "the migration left a WAL behind"
            _sqlite_template = path
        return _sqlite_template


def _migrated_pg_database() -> str:
    global _pg_template
    with _template_lock:
        if _pg_template is None:
            name = pg.create_database("migrated")
            atexit.register(pg.drop_database, name)
            _migrate(pg.url_for(name), Path(tempfile.mkdtemp(prefix="rose-ash-migrated-pg-")))
            _pg_template = name
        return _pg_template


def _prepare_database(database_url: str | None, data_dir: Path) -> bool:
    """Give a new server a copy of the migrated template; False if it must migrate itself."""
    if database_url is None:
        target = data_dir / "rose-ash.sqlite3"
        if target.exists():
            return False
        shutil.copyfile(_migrated_sqlite_file(), target)
        return True
    if database_url.startswith("postgresql") and pg.is_throwaway_and_empty(database_url):
        pg.recreate_from_template(database_url, _migrated_pg_database())
        return True
    return False


_domains_loaded = False


def _load_every_domain(settings: object) -> None:
    """Build the app once in this process, as the ``rose-ash`` command does before any command:
    domains register their listeners (a member's actor and key, blog author pages) on import."""
    global _domains_loaded
    if not _domains_loaded:
        from app import create_app

        create_app(settings)  # type: ignore[arg-type]
        _domains_loaded = True


@dataclass
class AppServer:
    base_url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``rose-ash`` with this server's settings (same database and data dir)."""
        return subprocess.run([ROSE_ASH, *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True,
                              check=check, timeout=120)

    def create_user(self, username: str, password: str, *, email: str | None = None, admin: bool = False,
                    author: bool = False) -> None:
        """What ``rose-ash users create`` (and ``blog grant-author``) do, in this process: through the
        account service with the server's settings, without booting the app in a new process."""
        from domains.account.schemas import SignupInput
        from domains.account.services import AccountService

        async def work(session: AsyncSession) -> None:
            accounts = AccountService(session)
            user = await accounts.signup(SignupInput(username=username, email=email or f"{username}@example.org",
                                                     password=password, display_name=""), is_admin=admin)
            if author:
                await accounts.set_author(user, True)

        self.in_process(work)

    def in_process(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction on this server's database, with its settings, in this
        process (on a thread of its own, so async tests may call it too)."""
        from app.commands import with_session
        from app.settings import Settings

        settings = Settings.from_env(self.env)
        _load_every_domain(settings)
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(with_session, settings, work).result()

    def start(self, timeout: float = 90.0) -> None:
        # A deadline to give up, not a speed check: a cold start on a loaded 2-core runner took >30 s.
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [ROSE_ASH, "run", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def app_server(tmp_path: Path, *, name: str = "app", database_url: str | None = None,
               extra_env: dict[str, str] | None = None, port: int | None = None) -> Iterator[AppServer]:
    """Migrate a fresh database (a copy of one migrated per test process) and serve the app on
    127.0.0.1 until the block ends."""
    port = port or free_port()
    data_dir = tmp_path / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _base_env()
    env.update({
        "ROSE_ASH_DATA_DIR": str(data_dir),
        "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{port}",
        "ROSE_ASH_SECRET_KEY": f"e2e-secret-{name}-0123456789abcdef",
        "ROSE_ASH_WORKER_IN_PROCESS": "true",
        "ROSE_ASH_LOG_LEVEL": "INFO",
        "ROSE_ASH_AUTH_RATE_LIMIT": "1000",
        "PYTHONUNBUFFERED": "1",
    })
    if database_url:
        env["ROSE_ASH_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    server = AppServer(base_url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir, env=env,
                       log_path=tmp_path / f"{name}.log")
    if not _prepare_database(database_url, data_dir):
        server.cli("database", "upgrade", "--no-prompt")
    server.start()
    try:
        yield server
    finally:
        server.stop()
