"""Benchmark: git over Rose Ash's forge versus ``git http-backend``, same repository, same run.

The repository is generated deterministically with ``git fast-import`` (3,000 commits over 240
files in 12 directories, an annotated tag every 100 commits: about 25,000 objects), repacked
with a bitmap as ``git maintenance`` would leave it. Both servers serve that one directory on
127.0.0.1, each as one uvicorn process:

- rose-ash: the real app (``rose-ash run``; SQLite; access log on), ``/forge/<owner>/<repo>.git``;
- http-backend: ``git http-backend`` (CGI) behind a minimal stdlib-only ASGI CGI bridge run by
  uvicorn (below), as a reverse proxy in front of http-backend would run it;
- threaded: ``git http-backend`` behind a threaded stdlib HTTP server (``bench/threaded_cgi.py``:
  ThreadingHTTPServer, HTTP/1.1, the body streamed to the CGI child's stdin, its stdout relayed as
  it comes), the second, independent harness of issue 19.

Rose Ash runs as ``make run`` runs it: ``rose-ash run`` (uvicorn, the real app) with
``WEB_CONCURRENCY`` web processes, one per core and at most 4 unless ``--web-concurrency`` says.

Timed (wall clock, stock ``git`` client, protocol v2; runs interleaved, medians):
full bare clone; incremental fetch (50 commits and a tag behind); 4 concurrent bare clones.
Prints the figures and the ratios rose-ash / http-backend and rose-ash / threaded for each
(target: <= 1.10): every round's as it completes (with the load average: the host is shared),
the ratio of the medians, and the median of the per-round ratios.

    .venv/bin/python bench/forge_clone.py [--runs 5] [--concurrent-runs 3] [--web-concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

# FORGE_BENCH_APP_ROOT=<another checkout> (with PYTHONPATH set to it too) serves Rose Ash and the
# baselines from that checkout's code while this script measures: before/after with one harness.
ROOT = Path(os.environ.get("FORGE_BENCH_APP_ROOT") or Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(ROOT))

from tests.helpers.server import free_port  # noqa: E402

COMMITS = 3000
DIRS = 12
FILES_PER_DIR = 20
BEHIND = 50


# -- the deterministic repository ----------------------------------------------------------------
def _lines(seed: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
        out.append(f"{i:04d} {digest} {digest[:24]}")
    return out


def fast_import_stream() -> Iterator[bytes]:
    """Commits that each rewrite a few lines of 3 files; every file starts at ~2 KiB of text."""
    files: dict[str, list[str]] = {}
    for d in range(DIRS):
        for f in range(FILES_PER_DIR):
            files[f"dir{d:02d}/file{f:02d}.txt"] = _lines(f"{d}/{f}", 24)
    names = sorted(files)
    epoch = 1_600_000_000
    for n in range(COMMITS):
        touched = [names[(n * 7 + k * 37) % len(names)] for k in range(3)] if n else names
        out = [b"commit refs/heads/main\n", f"mark :{n + 1}\n".encode()]
        when = f"{epoch + n * 3600} +0000"
        out.append(f"author Bench <bench@example.org> {when}\ncommitter Bench <bench@example.org> {when}\n".encode())
        msg = f"commit {n}\n".encode()
        out.append(f"data {len(msg)}\n".encode() + msg)
        if n:
            out.append(f"from :{n}\n".encode())
        for name in touched:
            lines = files[name]
            if n:
                k = (n * 13) % len(lines)
                lines[k] = f"{k:04d} {hashlib.sha256(f'{name}:{n}'.encode()).hexdigest()} edited at {n}"
                if n % 5 == 0:
                    lines.append(f"{len(lines):04d} appended at {n}")
            body = ("\n".join(lines) + "\n").encode()
            out.append(f"M 100644 inline {name}\ndata {len(body)}\n".encode() + body)
        out.append(b"\n")
        if n % 100 == 99:
            tag = f"tag v{n // 100}\nfrom :{n + 1}\ntagger Bench <bench@example.org> {when}\n"
            tmsg = f"release {n // 100}\n".encode()
            out.append(tag.encode() + f"data {len(tmsg)}\n".encode() + tmsg + b"\n")
        yield b"".join(out)


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        input: bytes | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def build_repo(path: Path) -> int:
    """Fill the (already initialised) bare repository at ``path``; returns its object count."""
    proc = subprocess.Popen(["git", "--git-dir", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for chunk in fast_import_stream():
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("fast-import failed")
    git("--git-dir", str(path), "repack", "-a", "-d", "-b", "-q", "--window=50")
    git("--git-dir", str(path), "symbolic-ref", "HEAD", "refs/heads/main")
    count = git("--git-dir", str(path), "count-objects", "-v")
    return sum(int(line.split()[1]) for line in count.splitlines() if line.startswith(("count:", "in-pack:")))


# -- http-backend behind a minimal ASGI CGI bridge ----------------------------------------------------
def cgi_app(project_root: str) -> Callable[..., Any]:
    """An ASGI app that runs ``git http-backend`` per request (RFC 3875 CGI), streaming stdout."""

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": project_root, "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1", "HOME": project_root,
            "REQUEST_METHOD": scope["method"], "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode(), "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1", "GATEWAY_INTERFACE": "CGI/1.1",
        }
        for name in ("git-protocol", "content-encoding"):
            if name in headers:
                env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None

        async def feed() -> None:
            assert proc.stdin is not None
            proc.stdin.write(bytes(body))
            await proc.stdin.drain()
            proc.stdin.close()

        feeder = asyncio.create_task(feed())
        status, out_headers = 200, []
        while (line := (await proc.stdout.readline()).rstrip(b"\r\n")):
            key, _, value = line.decode().partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                out_headers.append((key.strip().lower().encode(), value.strip().encode()))
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        while chunk := await proc.stdout.read(65536):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await feeder
        await proc.wait()

    return app


@contextmanager
def serve_http_backend(project_root: Path, port: int, log: Path) -> Iterator[tuple[str, int]]:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import uvicorn; "
            f"from bench.forge_clone import cgi_app; "
            f"uvicorn.run(cgi_app({str(project_root)!r}), host='127.0.0.1', port={port}, log_level='warning')")
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def serve_threaded(project_root: Path, port: int, log: Path) -> Iterator[tuple[str, int]]:
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "threaded_cgi.py"), str(project_root),
                                 str(port)], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


# -- Rose Ash --------------------------------------------------------------------------------
@contextmanager
def serve_rose_ash(tmp: Path, web_concurrency: int) -> Iterator[tuple[str, Path, int]]:
    """Migrate, create user ``bench`` and repository ``big`` in-process, build it, serve the app."""
    from tests.helpers.server import AppServer, app_server

    # Three processes importing the whole app on a host loaded by others can take longer than the
    # test helper's 30 s to answer /healthz: give it two minutes here.
    AppServer.start.__defaults__ = (120.0,)
    extra = {"ROSE_ASH_WORKER_IN_PROCESS": "false", "WEB_CONCURRENCY": str(web_concurrency)}
    with app_server(tmp, name="rose-ash", extra_env=extra) as server:
        server.cli("users", "create", "--username", "bench", "--email", "bench@example.org",
                   "--password", "correct horse battery staple")

        async def create() -> Path:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            from app.db import make_engine
            from domains.account.services import AccountService
            from forge.config import ForgeConfig
            from forge.services import RepoService
            from forge.storage import RepoStore

            engine = make_engine(f"sqlite+aiosqlite:///{server.data_dir / 'rose-ash.sqlite3'}")
            store = RepoStore(server.data_dir / "repos", ForgeConfig(state_dir=server.data_dir / "forge"))
            try:
                async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                    owner = await AccountService(session).by_username("bench")
                    assert owner is not None
                    repo = await RepoService(session, store).create(owner, "big")
                    path = store.locate(repo.id)
                    build_repo(path)
                    await RepoService(session, store).sync_refs(repo.id, emit=False)
                    return path
            finally:
                await engine.dispose()

        path = asyncio.run(create())
        assert server.proc is not None
        yield f"{server.base_url}/forge/bench/big.git", path, server.proc.pid


# -- measurements ----------------------------------------------------------------------------
def client_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    return env


def session_cpu(sid: int) -> float:
    """CPU seconds used so far by the processes of session ``sid`` (each server was started in a
    session of its own) and by their children that they have reaped (git, pack-objects)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6 of proc(5): session
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def timed(fn: Callable[[], None], sid: int | None = None, cpu: list[float] | None = None) -> float:
    before = session_cpu(sid) if sid is not None else 0.0
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    if sid is not None and cpu is not None:
        cpu.append(session_cpu(sid) - before)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent-runs", type=int, default=3)
    parser.add_argument("--web-concurrency", type=int, default=min(os.cpu_count() or 1, 4),
                        help="Rose Ash web processes (default as make run: one per core, at most 4)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-"))
    home = tmp / "home"
    home.mkdir()
    env = client_env(home)
    try:
        with serve_rose_ash(tmp, args.web_concurrency) as (rose_url, repo_path, rose_sid):
            objects = git("--git-dir", str(repo_path), "rev-list", "--objects", "--all").count("\n")
            # http-backend serves the very same directory
            root = tmp / "cgi-root"
            root.mkdir()
            (root / "bench").mkdir()
            os.symlink(repo_path, root / "bench" / "big.git")
            with serve_http_backend(root, free_port(), tmp / "http-backend.log") as (cgi_base, cgi_sid), \
                    serve_threaded(root, free_port(), tmp / "threaded.log") as (threaded_base, threaded_sid):
                urls = {"rose-ash": rose_url, "http-backend": f"{cgi_base}/bench/big.git",
                        "threaded": f"{threaded_base}/bench/big.git"}
                sids = {"rose-ash": rose_sid, "http-backend": cgi_sid, "threaded": threaded_sid}
                cpu: dict[str, dict[str, list[float]]] = {k: {} for k in urls}
                # the "behind" repository: main 50 commits back, the newest tag missing
                behind = tmp / "behind.git"
                git("clone", "-q", "--bare", "--no-local", str(repo_path), str(behind), env=env)
                git("--git-dir", str(behind), "update-ref", "refs/heads/main", f"main~{BEHIND}", env=env)
                newest = sorted(git("--git-dir", str(behind), "tag").split(), key=lambda t: int(t[1:]))[-1]
                git("--git-dir", str(behind), "tag", "-d", newest, env=env)
                git("--git-dir", str(behind), "gc", "-q", "--prune=now", env=env)
                tags = len(git("--git-dir", str(repo_path), "tag").split())
                pack_mb = sum(p.stat().st_size for p in (repo_path / "objects" / "pack").glob("*.pack")) / 1e6
                print(f"repository: {objects} objects, {tags} tags, pack {pack_mb:.1f} MB", flush=True)

                def clone(url: str) -> Callable[[], None]:
                    def run() -> None:
                        dest = Path(tempfile.mkdtemp(dir=tmp))
                        git("clone", "-q", "--bare", url, str(dest / "c.git"), env=env)
                        shutil.rmtree(dest)
                    return run

                def fetch_runner(url: str) -> tuple[Callable[[], None], Callable[[], None]]:
                    work = tmp / "fetch.git"

                    def prepare() -> None:
                        shutil.rmtree(work, ignore_errors=True)
                        shutil.copytree(behind, work, symlinks=True)

                    def run() -> None:
                        git("--git-dir", str(work), "fetch", "-q", url, "+refs/heads/*:refs/heads/*",
                            "+refs/tags/*:refs/tags/*", env=env)
                    return prepare, run

                def concurrent(url: str) -> Callable[[], None]:
                    def run() -> None:
                        with ThreadPoolExecutor(4) as pool:
                            list(pool.map(lambda _: clone(url)(), range(4)))
                    return run

                results: dict[str, dict[str, list[float]]] = {k: {} for k in urls}
                for url in urls.values():  # warm both (page cache, imports)
                    clone(url)()
                names = list(urls.items())
                # Each round runs every server once, back to back in a rotating order, so the
                # round's ratios compare servers under the same background load; they are printed
                # as they come, with the 1-minute load average, and their medians reported too.
                paired: dict[str, list[tuple[float, float]]] = {}

                def round_done(op: str, i: int) -> None:
                    a, b, c = (results[k][op][-1] for k in ("rose-ash", "http-backend", "threaded"))
                    paired.setdefault(op, []).append((a / b, a / c))
                    load1 = Path("/proc/loadavg").read_text().split()[0]
                    print(f"  round {i + 1} {op:<20} rose-ash {a:.3f}s  /http-backend {a / b:.2f}x  "
                          f"/threaded {a / c:.2f}x  load {load1}", flush=True)

                for i in range(args.runs):
                    order = names[i % 3:] + names[:i % 3]
                    for name, url in order:
                        results[name].setdefault("full clone", []).append(
                            timed(clone(url), sids[name], cpu[name].setdefault("full clone", [])))
                    round_done("full clone", i)
                    for name, url in order:
                        prepare, run = fetch_runner(url)
                        prepare()
                        results[name].setdefault("incremental fetch", []).append(
                            timed(run, sids[name], cpu[name].setdefault("incremental fetch", [])))
                    round_done("incremental fetch", i)
                for i in range(args.concurrent_runs):
                    order = names[i % 3:] + names[:i % 3]
                    for name, url in order:
                        results[name].setdefault("4 concurrent clones", []).append(
                            timed(concurrent(url), sids[name], cpu[name].setdefault("4 concurrent clones", [])))
                    round_done("4 concurrent clones", i)

                print(f"\n{'operation':<22}{'rose-ash':>10}{'http-backend':>14}{'threaded':>10}"
                      f"{'/http-backend':>15}{'/threaded':>11}")
                worst = 0.0
                for op in ("full clone", "incremental fetch", "4 concurrent clones"):
                    a, b, c = (statistics.median(results[k][op]) for k in ("rose-ash", "http-backend", "threaded"))
                    worst = max(worst, a / b, a / c)
                    print(f"{op:<22}{a:>9.3f}s{b:>13.3f}s{c:>9.3f}s{a / b:>14.2f}x{a / c:>10.2f}x")
                print("median of the per-round ratios (each round's servers ran under the same load):")
                for op in ("full clone", "incremental fetch", "4 concurrent clones"):
                    rb, rc = (statistics.median(r[j] for r in paired[op]) for j in (0, 1))
                    print(f"  {op:<20}{'':>34}{rb:>14.2f}x{rc:>10.2f}x")
                # /proc counts CPU in clock ticks (10 ms at USER_HZ 100), as coarse as a fetch's whole
                # cost: the mean over the rounds resolves what one round's median cannot.
                print("server CPU, mean per operation (the server's processes and the git children they "
                      "reaped; less load-sensitive):")
                for op in ("full clone", "incremental fetch", "4 concurrent clones"):
                    a, b, c = (statistics.fmean(cpu[k][op]) for k in ("rose-ash", "http-backend", "threaded"))
                    print(f"  {op:<20}{a:>9.3f}s{b:>13.3f}s{c:>9.3f}s{a / max(b, 0.01):>14.2f}x"
                          f"{a / max(c, 0.01):>10.2f}x")
                load = Path("/proc/loadavg").read_text().strip()
                print(f"\nRose Ash served from {ROOT}")
                print(f"worst ratio {worst:.2f}x (target <= 1.10); medians of {args.runs} runs "
                      f"({args.concurrent_runs} for the concurrent clones), rose-ash with "
                      f"{args.web_concurrency} web process(es); load average {load}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
