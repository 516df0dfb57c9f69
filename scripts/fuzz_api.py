"""The long schemathesis run against /api/ (CI runs a bounded one: tests/app/test_api_fuzz.py).

    .venv/bin/python scripts/fuzz_api.py --examples 500                 # own server, SQLite
    .venv/bin/python scripts/fuzz_api.py --database-url postgresql+asyncpg://...  # own server, PG
    .venv/bin/python scripts/fuzz_api.py --base-url http://127.0.0.1:8000 --token T --reader-token R

With its own server it migrates a fresh database in a temporary directory, creates alice (the
owner of the tokens) and bob, and serves on 127.0.0.1. Exits 1 on any finding (a 5xx, or a
non-JSON error from /api/), printing each with a curl command that reproduces it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.api_fuzz import FuzzReport, fuzz_api, fuzz_api_stateful  # noqa: E402
from tests.helpers.server import app_server  # noqa: E402

PASSWORD = "correct horse battery staple"


def _both(base_url: str, tokens: dict[str, str], examples: int) -> FuzzReport:
    """Every operation on its own, then the stateful sequences; one report."""
    report = fuzz_api(base_url, tokens, max_examples=examples, log=print)
    stateful = fuzz_api_stateful(base_url, tokens["owner"], max_examples=examples, log=print)
    report.cases += stateful.cases
    report.seconds += stateful.seconds
    report.findings += stateful.findings
    for code, count in stateful.statuses.items():
        report.statuses[code] = report.statuses.get(code, 0) + count
    return report


def _own_server(examples: int, database_url: str | None) -> FuzzReport:
    with tempfile.TemporaryDirectory(prefix="rose-ash-fuzz-") as tmp, \
            app_server(Path(tmp), name="fuzz", database_url=database_url) as server:
        for user in ("alice", "bob"):
            server.cli("users", "create", "--username", user, "--email", f"{user}@example.org", "--password", PASSWORD)
        owner = server.cli("tokens", "create", "--username", "alice", "--scope", "repo:write", "--scope", "api")
        reader = server.cli("tokens", "create", "--username", "alice", "--scope", "repo:read")
        tokens = {"owner": owner.stdout.strip().splitlines()[-1], "reader": reader.stdout.strip().splitlines()[-1]}
        report = _both(server.base_url, tokens, examples)
        if report.findings:
            print(server.log_tail(6000))
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="cases per operation and generation mode")
    parser.add_argument("--database-url", help="PostgreSQL URL for the script's own server (default SQLite)")
    parser.add_argument("--base-url", help="fuzz a running server instead (127.0.0.1 only)")
    parser.add_argument("--token", help="with --base-url: a token of alice with repo:write and api")
    parser.add_argument("--reader-token", help="with --base-url: a token of alice with repo:read")
    args = parser.parse_args()
    if args.base_url:
        if not (args.token and args.reader_token):
            parser.error("--base-url needs --token and --reader-token")
        report = _both(args.base_url, {"owner": args.token, "reader": args.reader_token}, args.examples)
    else:
        report = _own_server(args.examples, args.database_url)
    print(report.summary())
    for finding in report.findings:
        print(f"\n{finding.method} {finding.path} -> {finding.status}: {finding.detail}\n{finding.curl}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
