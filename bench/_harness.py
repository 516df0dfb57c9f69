"""What the PostgreSQL page benchmarks share (bench/market.py, bench/events.py, bench/checkout.py).

A migrated scratch database, the bare Litestar page of bench/pages.py served beside the app, wrk
with its latency percentiles and timeouts, the CPU the server and the database spent, and wrk
scripts that give every request a fresh query string so the in-process page cache
(fragments/page_cache.py) never answers.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pages import free_port, scratch_database, to_ms, wait_ok  # noqa: E402
from tests.helpers.server import ROSE_ASH  # noqa: E402

__all__ = ["ROOT", "WrkResult", "bare_page", "database_cpu", "migrated_scratch", "require_postgresql",
           "rotating_script", "run_wrk", "session_cpu", "solo_times"]


def require_postgresql(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        raise SystemExit("--database-url must be a PostgreSQL URL (the benchmark is on PostgreSQL)")


@contextmanager
def migrated_scratch(database_url: str) -> Iterator[tuple[str, Path]]:
    """``(url, tmp_path)``: a scratch PostgreSQL database beside ``database_url``, migrated to head
    by ``rose-ash database upgrade``, and a temporary directory (``tmp_path / "data"`` is the
    DATA_DIR the migration ran with); both removed afterwards."""
    with scratch_database(database_url) as url, tempfile.TemporaryDirectory(prefix="rose-ash-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_DATABASE_URL": url,
                    "PYTHONPATH": str(ROOT)})
        subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        yield url, tmp_path


@contextmanager
def bare_page(tmp_path: Path, html: str) -> Iterator[tuple[str, int]]:
    """``(url, pid)`` of the bare Litestar page (bench/pages.py ``--serve-bare``: one route, one
    Jinja template) answering ``html``, the app's own page, so both send the same bytes. The pid
    leads its own session, for :func:`session_cpu`."""
    templates = tmp_path / "bare-templates"
    templates.mkdir(exist_ok=True)
    (templates / "page.html").write_text(html.replace("<title>", "<title>{{ title }}", 1))
    port = free_port()
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "pages.py"), "--serve-bare", str(port),
                             str(templates)], env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_ok(url)
        yield url, bare.pid
    finally:
        bare.terminate()
        bare.wait(timeout=10)


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of session ``sid`` (a server
    started with ``start_new_session``: its workers included), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[3]) == sid:
            total += int(rest[11]) + int(rest[12])
    return total / ticks


def database_cpu(database: str) -> float:
    """CPU seconds used so far by the live PostgreSQL backends serving ``database`` (found by their
    process title, ``postgres: USER DATABASE HOST(PORT) STATE``), from /proc: the database's half of
    a request's cost, which the web processes' CPU leaves out."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not title.startswith("postgres: ") or f" {database} " not in title:
                continue
            rest = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(rest[11]) + int(rest[12])
    return total / ticks


class WrkResult(NamedTuple):
    rps: float
    p50: float  # ms
    p99: float  # ms
    timeouts: int  # requests wrk gave up on (its 2 s timeout): not in its percentiles
    cpu_ms: float  # server CPU ms per request (0 without ``cpu_session``)
    db_cpu_ms: float  # PostgreSQL backends' CPU ms per request (0 without ``cpu_database``)


def run_wrk(url: str, duration: int, connections: int, threads: int, script: Path | None = None, *,
            cpu_session: int = 0, cpu_database: str = "") -> WrkResult:
    """A 2 s warm-up, then the measured run. A saturated server's p50/p99 read low without the
    timeouts beside them; any non-2xx/3xx answer is an error. CPU is counted over the measured run
    only: the processes of session ``cpu_session`` and the backends of database ``cpu_database``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    extra = ["-s", str(script)] if script else []
    subprocess.run([wrk, "-t1", "-c4", "-d2s", *extra, url], capture_output=True, check=True)  # warm up
    cpu_before = session_cpu(cpu_session) if cpu_session else 0.0
    db_before = database_cpu(cpu_database) if cpu_database else 0.0
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    cpu = session_cpu(cpu_session) - cpu_before if cpu_session else 0.0
    db_cpu = database_cpu(cpu_database) - db_before if cpu_database else 0.0
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    return WrkResult(rps, p50, p99, int(timeouts.group(1)) if timeouts else 0, cpu * 1000 / max(done, 1),
                     db_cpu * 1000 / max(done, 1))


def rotating_script(path: Path, targets: Sequence[str]) -> Path:
    """A wrk script sending the ``targets`` in turn, each with a fresh ``n=<file>-<run>-<thread>-<counter>``
    added to its query string: the page cache keys on the query string, so it never answers and
    every request runs the route (uncached). ``targets`` are paths, already URL-encoded."""
    if not targets or any('"' in t or "\\" in t for t in targets):
        raise ValueError("targets: one or more URL-encoded paths")
    listed = ", ".join(f'"{t}{"&" if "?" in t else "?"}n="' for t in targets)
    # ``n`` must differ across wrk's threads and runs too, not only within a thread: each thread
    # has its own Lua state whose counter starts at 0 and whose math.random is never seeded (the
    # same sequence in every thread and every run). Threads then sent each other's URLs, and a
    # run repeated the warm-up's (a paced run the saturated run's), which the page cache answered.
    # ``setup`` runs in wrk's main state once per thread of each run: it hands every thread a tag
    # of the script file, the run (os.time: a run starts after the 2 s warm-up ends) and the thread.
    path.write_text(f"local paths = {{{listed}}}\nlocal i = 0\nlocal counter = 0\nlocal made = 0\n"
                    f"local file = \"{secrets.token_hex(4)}\"\n"
                    "setup = function(thread)\n  made = made + 1\n"
                    "  thread:set(\"tag\", file .. \"-\" .. os.time() .. \"-\" .. made .. \"-\")\nend\n"
                    "request = function()\n  i = i % #paths + 1\n  counter = counter + 1\n"
                    "  return wrk.format(\"GET\", paths[i] .. tag .. counter)\n"
                    "end\n")
    return path


def solo_times(client: httpx.Client, url: str, count: int, tag: str = "") -> list[float]:
    """``count`` GETs of ``url`` one after another through ``client``, each with a fresh ``n=``
    (the page cache never answers): their wall times in ms. One client for all of them:
    ``httpx.get`` makes a client per call, and each builds a TLS context (certifi's roots, 20-40
    ms of CPU on the cores the server uses, even for http://) that the median would count."""
    import time

    times = []
    sep = "&" if "?" in url else "?"
    for n in range(count):
        sent = time.perf_counter()
        got = client.get(f"{url}{sep}n={tag}{n}-{secrets.token_hex(4)}")
        times.append((time.perf_counter() - sent) * 1000)
        if got.status_code != 200:
            raise RuntimeError(f"{url} answered {got.status_code}")
    return times
