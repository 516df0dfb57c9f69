"""Benchmark: one newsletter issue to N subscribers (default 10,000) through the real path, beside
a plain aiosmtplib loop over one connection in the same run, both against aiosmtpd on loopback.

Real path (in a child process, so its peak RSS is the worker's alone): a list with N confirmed
subscribers in SQLite (or PostgreSQL with ``--postgres``), ``NewsletterService.start`` writes the
recipients and one ``newsletter.send-batch`` job per 100, and a ``Worker`` (concurrency 4) runs
them: claim, build (kernel ``build_message``; bodies rendered once per batch), send, record.
``ROSE_ASH_MAIL_RATE`` is 0 (no pacing) for the measurement.

Baseline: the same number of messages, built with ``email.message`` and sent one after another
over one ``aiosmtplib`` connection, nothing else.

    .venv/bin/python bench/newsletter_campaign.py [--subscribers 10000] [--postgres URL]

Prints messages/s of each, the ratio (goal >= 0.5) and the worker's peak RSS (goal <= 200 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def baseline(url_host: str, port: int, count: int) -> float:
    import aiosmtplib

    started = time.perf_counter()
    smtp = aiosmtplib.SMTP(hostname=url_host, port=port, start_tls=False)
    await smtp.connect()
    for n in range(count):
        message = EmailMessage()
        message["From"] = "bench@127.0.0.1"
        message["To"] = f"plain{n}@example.org"
        message["Subject"] = "Baseline issue"
        message.set_content("Hello co-op.\n\n" + "Some words of the issue. " * 40)
        await smtp.send_message(message)
    await smtp.quit()
    return count / (time.perf_counter() - started)


async def real_path(database_url: str, smtp_url: str, count: int, data_dir: str) -> tuple[float, int]:
    import msgspec
    from advanced_alchemy.base import metadata_registry
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import async_sessionmaker

    import app.models  # noqa: F401  (every table)
    from app.db import make_engine
    from app.jobs import Worker
    from app.mail import sending  # noqa: F401  (registers mail.send)
    from app.settings import Settings
    from domains.account.newsletters import jobs  # noqa: F401  (registers newsletter.send-batch)
    from domains.account.newsletters.models import CONFIRMED, Campaign, NewsletterList, Subscription
    from domains.account.newsletters.services import NewsletterService

    settings = Settings.from_env({}, data_dir=Path(data_dir), database_url=database_url,
                                 secret_key="bench-secret-key-0123456789abcdef0123456789", smtp_url=smtp_url,
                                 worker_in_process=False)
    settings = msgspec.structs.replace(settings, mail_rate=0)
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata_registry.get(None).create_all)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        lst = NewsletterList(name="Bench news", slug="bench", sender_name="Bench")
        session.add(lst)
        await session.flush()
        rows = [{"list_id": lst.id, "email": f"reader{n}@example.org", "name": f"Reader {n}", "status": CONFIRMED}
                for n in range(count)]
        for start in range(0, count, 1000):
            await session.execute(insert(Subscription), rows[start:start + 1000])
        campaign = Campaign(list_id=lst.id, subject="Bench issue", markdown="Hello *co-op*.\n\n" + "Words. " * 200)
        session.add(campaign)
        await session.flush()
        await NewsletterService(session).start(campaign, settings.base_url, 0)
    started = time.perf_counter()
    await Worker(maker, settings=settings, concurrency=4).run_once()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return count / elapsed, count


def child(args: argparse.Namespace) -> None:
    rate, _ = asyncio.run(real_path(args.database_url, args.smtp_url, args.subscribers, args.data_dir))
    print(f"{rate:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--postgres", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from tests.helpers.smtp import SMTPServer

    with tempfile.TemporaryDirectory() as tmp, SMTPServer() as server:
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
        plain = asyncio.run(baseline(host, port, args.subscribers))
        server.clear()
        database_url = args.postgres or f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        out = subprocess.run([sys.executable, __file__, "--child", "--subscribers", str(args.subscribers),
                              "--database-url", database_url, "--smtp-url", server.url, "--data-dir", tmp],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"the worker run failed:\n{out.stderr[-4000:]}")
        ours = float(out.stdout.strip().splitlines()[-1])
        received = len(server.received)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"subscribers: {args.subscribers} ({'PostgreSQL' if args.postgres else 'SQLite'}); "
          f"received by the server: {received}")
    print(f"plain aiosmtplib loop, one connection: {plain:8.1f} messages/s")
    print(f"newsletter worker (real path):         {ours:8.1f} messages/s")
    print(f"ratio: {ours / plain:.2f} (goal >= 0.5)")
    print(f"worker peak RSS: {peak_mb:.0f} MB (goal <= 200 MB)")


if __name__ == "__main__":
    main()
