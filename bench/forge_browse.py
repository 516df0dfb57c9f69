"""Benchmark: the code browser's tree, blob and commit pages on a 20,000-commit repository, uncached,
beside the same information read by ``git cat-file`` in a bare script (issue 19, item 1).

All in one invocation on this machine:

- the repository: 20,000 commits over 40 directories of 25 files, written in one ``git fast-import``
  stream (a few seconds), pushed to the forge over smart HTTP;
- the app: ``rose-ash run --web-concurrency N`` (SQLite by default, ``--database-url`` for
  PostgreSQL); each page measured with ``wrk`` for ``--duration`` seconds at ``--connections``,
  every request with a fresh ``?n=<counter>`` query so the whole-page cache never answers
  (fragments/page_cache.py keys on the query), and no ``If-None-Match`` (no 304s);
- the baseline: a bare Python script with one long-lived ``git cat-file --batch`` per worker
  thread (``--connections`` threads), fetching what each page shows: for the tree page the
  commit, the root and directory trees, and the last commit per entry with the same bounded
  ``git log --name-only`` the page runs; for the blob page the commit, the trees on the path and
  the blob; for the commit page the commit and ``git diff-tree -p`` against its parent. No HTTP,
  no HTML, no highlighting: the floor under what any server must do.

Prints p50, p99 and req/s per page for both and the ratios (app/baseline), like bench/pages.py.

    .venv/bin/python bench/forge_browse.py [--commits 20000] [--duration 10] [--connections 4] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pages import ROSE_ASH, run_wrk, serve_app  # noqa: E402

DIRS = 40
FILES = 25
PASSWORD = "correct horse battery staple"
LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. "?n=" .. counter .. "-" .. math.random(1, 1000000000))
end
"""


def file_body(d: int, f: int, version: int) -> bytes:
    lines = [f"# dir{d:02d}/file{f:02d}.py, version {version}", "", f"def function_{f}(value):",
             f"    '''Return the value scaled by {version}.'''", f"    return value * {version}", ""]
    lines += [f"CONSTANT_{i} = {i * version}  # padding line {i}" for i in range(60)]
    return ("\n".join(lines) + "\n").encode()


def generate(path: Path, commits: int) -> None:
    """A bare repository with ``commits`` commits, each changing 1 to 3 files (fast-import, one stream)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    proc = subprocess.Popen(["git", "--git-dir", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    out = proc.stdin
    when = 1_600_000_000
    for n in range(commits):
        message = f"Change {n}: touch a few files".encode()
        out.write(b"commit refs/heads/main\n")
        out.write(f"committer Bench <bench@example.org> {when + n * 60} +0000\n".encode())
        out.write(b"data %d\n%s\n" % (len(message), message))
        if n == 0:
            for d in range(DIRS):
                for f in range(FILES):
                    body = file_body(d, f, 0)
                    out.write(f"M 100644 inline dir{d:02d}/file{f:02d}.py\n".encode())
                    out.write(b"data %d\n%s\n" % (len(body), body))
            readme = b"# Bench\n\nA generated repository.\n"
            out.write(b"M 100644 inline README.md\ndata %d\n%s\n" % (len(readme), readme))
        else:
            for k in range(1 + n % 3):
                d, f = (n * 7 + k * 13) % DIRS, (n * 11 + k * 5) % FILES
                body = file_body(d, f, n)
                out.write(f"M 100644 inline dir{d:02d}/file{f:02d}.py\n".encode())
                out.write(b"data %d\n%s\n" % (len(body), body))
        out.write(b"\n")
    out.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "--git-dir", str(path), "repack", "-adq"], check=True)


class CatFile:
    """One long-lived ``git cat-file --batch`` (the baseline's reader)."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.proc = subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, name: str) -> tuple[str, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        size = int(header[2])
        data = self.proc.stdout.read(size + 1)[:-1]
        return header[1].decode(), data

    def tree_entry(self, tree: str, name: bytes) -> str:
        _kind, data = self.read(tree)
        pos = 0
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            if data[space + 1:nul] == name:
                return data[nul + 1:nul + 21].hex()
            pos = nul + 21
        raise KeyError(name)

    def commit_tree(self, commit: str) -> str:
        _kind, data = self.read(commit)
        return data.split(b"\n", 1)[0].split()[1].decode()


def baseline_tree(cat: CatFile, head: str, directory: str) -> None:
    root = cat.commit_tree(head)
    sub = cat.tree_entry(root, directory.encode())
    _kind, data = cat.read(sub)
    names: set[bytes] = set()
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        names.add(data[space + 1:nul])
        pos = nul + 21
    # The last commit per entry: the same bounded, early-stopped `git log` the page runs.
    proc = subprocess.Popen(["git", "--git-dir", str(cat.git_dir), "--literal-pathspecs", "log", "-z", "--name-only",
                             "--no-renames", "--max-count=5000", "--format=%x01%H %ct %s", head, "--", directory + "/"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    found: set[bytes] = set()
    buffer = b""
    while len(found) < len(names):
        chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]  # a BufferedReader
        if not chunk:
            break
        buffer += chunk
        *items, buffer = buffer.split(b"\0")
        for item in items:
            item = item.lstrip(b"\n")
            if item.startswith(directory.encode() + b"/"):
                found.add(item[len(directory) + 1:].split(b"/", 1)[0])
    proc.kill()
    proc.wait()


def baseline_blob(cat: CatFile, head: str, path: str) -> None:
    tree = cat.commit_tree(head)
    parts = path.split("/")
    for part in parts[:-1]:
        tree = cat.tree_entry(tree, part.encode())
    cat.read(cat.tree_entry(tree, parts[-1].encode()))


def baseline_commit(cat: CatFile, sha: str) -> None:
    _kind, data = cat.read(sha)
    parent = next(line.split()[1].decode() for line in data.split(b"\n") if line.startswith(b"parent "))
    subprocess.run(["git", "--git-dir", str(cat.git_dir), "diff-tree", "--no-commit-id", "-r", "-M", "-z", "--raw",
                    parent, sha], capture_output=True, check=True)
    subprocess.run(["git", "--git-dir", str(cat.git_dir), "diff-tree", "--no-commit-id", "-r", "-M", "-p",
                    "--full-index", parent, sha], capture_output=True, check=True)


def run_baseline(git_dir: Path, work: str, duration: float, threads: int, **kw: str) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, ops/s) of ``work`` run by ``threads`` threads for ``duration`` seconds."""
    timings: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def loop() -> None:
        cat = CatFile(git_dir)
        local: list[float] = []
        works: dict[str, Callable[..., None]] = {"tree": baseline_tree, "blob": baseline_blob,
                                                  "commit": baseline_commit}
        fn = works[work]
        while time.monotonic() < stop:
            started = time.perf_counter()
            fn(cat, *kw.values())
            local.append((time.perf_counter() - started) * 1000)
        cat.proc.kill()
        with lock:
            timings.extend(local)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    began = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - began
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.99))], len(timings) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forge-browse-bench-") as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "source.git"
        started = time.monotonic()
        generate(source, args.commits)
        count = subprocess.run(["git", "--git-dir", str(source), "rev-list", "--count", "main"], capture_output=True,
                               text=True, check=True).stdout.strip()
        print(f"generated {count} commits in {time.monotonic() - started:.1f}s", flush=True)
        head = subprocess.run(["git", "--git-dir", str(source), "rev-parse", "main"], capture_output=True, text=True,
                              check=True).stdout.strip()
        mid = subprocess.run(["git", "--git-dir", str(source), "rev-parse", f"main~{args.commits // 2}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        migrate_env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
        migrate_env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT),
                            **({"ROSE_ASH_DATABASE_URL": args.database_url} if args.database_url else {})})
        subprocess.run([ROSE_ASH, "database", "upgrade", "--no-prompt"], env=migrate_env, cwd=ROOT,
                       check=True, capture_output=True)
        with serve_app(tmp_path, args.database_url, args.workers) as server:
            done = server.cli("users", "create", "--username", "bench", "--email", "bench@example.org",
                              "--password", PASSWORD, check=False)
            if done.returncode:
                raise SystemExit(done.stdout + done.stderr)
            token = server.cli("tokens", "create", "--username", "bench", "--scope", "repo:write",
                               "--scope", "api").stdout.strip().splitlines()[-1]
            made = httpx.post(server.base_url + "/api/v1/user/repos", json={"name": "big"},
                              headers={"Authorization": f"token {token}"})
            if made.status_code != 201:
                raise SystemExit(f"creating the repository: {made.status_code} {made.text}")
            remote = server.base_url.replace("http://", f"http://bench:{token}@") + "/forge/bench/big.git"
            subprocess.run(["git", "--git-dir", str(source), "push", "-q", remote, "main"], check=True,
                           capture_output=True)
            base = server.base_url + "/forge/bench/big"
            pages = {
                "tree (dir07, 25 entries + last commits)": (f"{base}/src/branch/main/dir07", "tree",
                                                            {"head": head, "directory": "dir07"}),
                "blob (dir07/file03.py, highlighted)": (f"{base}/src/branch/main/dir07/file03.py", "blob",
                                                        {"head": head, "path": "dir07/file03.py"}),
                "commit (mid-history, diff)": (f"{base}/commit/{mid}", "commit", {"sha": mid}),
            }
            for url, _work, _kw in pages.values():
                response = httpx.get(url, timeout=60)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code}")
            script = tmp_path / "fresh.lua"
            script.write_text(LUA)
            rows = []
            for name, (url, work, kw) in pages.items():
                app_rps, app_p99, app_p50 = run_wrk_full(url, args.duration, args.connections, script)
                b50, b99, brps = run_baseline(source, work, args.duration, args.connections, **kw)
                rows.append((name, app_p50, app_p99, app_rps, b50, b99, brps))
                print(f"  {name}: app {app_rps:.0f} req/s, baseline {brps:.0f} ops/s", flush=True)
            # The app's own floor for a repository page on the same server (no browser code in it).
            floor = run_wrk_full(f"{base}/branches", args.duration, args.connections, script)
    load = os.getloadavg()  # other work on the machine skews every number alike
    print(f"\n{args.commits} commits; wrk -t1 -c{args.connections} -d{args.duration}s, fresh query per request "
          f"(no page cache, no 304); baseline: {args.connections} threads with a cat-file --batch each; "
          f"app workers: {args.workers}; load average {load[0]:.2f}")
    print(f"{'page':<42} {'app p50':>8} {'app p99':>8} {'app r/s':>8} {'git p50':>8} {'git p99':>8} {'git r/s':>8}"
          f" {'p50 x':>6} {'p99 x':>6} {'r/s x':>6}")
    for name, a50, a99, arps, b50, b99, brps in rows:
        print(f"{name:<42} {a50:>8.2f} {a99:>8.2f} {arps:>8.0f} {b50:>8.2f} {b99:>8.2f} {brps:>8.0f}"
              f" {a50 / b50:>6.2f} {a99 / b99:>6.2f} {arps / brps:>6.2f}")
    print(f"{'reference: branches page (1 branch)':<42} {floor[2]:>8.2f} {floor[1]:>8.2f} {floor[0]:>8.0f}"
          "   (the app's per-page floor: session, access check, ref query, template)")


def run_wrk_full(url: str, duration: int, connections: int, script: Path) -> tuple[float, float, float]:
    """(req/s, p99 ms, p50 ms) from wrk with the fresh-query script."""
    import re
    import shutil

    from pages import to_ms

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    subprocess.run([wrk, "-t1", "-c2", "-d2s", "-s", str(script), url], capture_output=True, check=True)  # warm up
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return rps, p99, p50


_ = run_wrk  # bench/pages.py's helper, kept importable for a fixed-URL run

if __name__ == "__main__":
    main()
