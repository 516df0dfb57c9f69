"""Benchmark: one newsletter issue to many recipients through Rose Ash's mail transport, beside a
plain ``aiosmtplib`` loop over one connection, in the same run against the same aiosmtpd server.

- server: aiosmtpd on 127.0.0.1 in its own process (so it does not share the senders' GIL),
  answering 250 to every message and counting them;
- baseline: one ``aiosmtplib.SMTP`` connection, ``sendmail`` of the same pre-built bytes to each
  recipient (transport cost only: nothing rendered or built per recipient);
- rose-ash: what a ``newsletter.send-batch`` job does, minus its database writes (those are in
  bench/newsletter_campaign.py): the issue prepared once (``issue_template``: the issue templates
  rendered, shared header fields folded and the parts encoded, with a marker for the unsubscribe
  URL), then per recipient its copy (``issue_copy``: To, Date, Message-ID, its own unsubscribe URL
  in ``List-Unsubscribe`` and both bodies, RFC 8058 ``List-Unsubscribe-Post``, ``List-Id``) sent
  with ``MailTransport.send_raw`` over the one connection ``open_transport`` opened.

Each sender runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own. Prints
messages/s for both, the ratio (goal >= 0.5) and the peak RSS of the Rose Ash sender (goal <= 200 MB).

    .venv/bin/python bench/newsletter.py [--recipients 10000] [--body-kb 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENDER = "news@coop.example"


def issue_body(kb: int) -> tuple[str, str]:
    paragraph = ("The co-op's members met on Thursday to plan the spring market; the bakery will "
                 "open a second stall, and the forge has a new place for its repositories. ") * 3
    count = max(1, kb * 1024 // len(paragraph))
    return "\n\n".join([paragraph] * count), "".join(f"<p>{paragraph}</p>\n" for _ in range(count))


def recipients(n: int) -> list[tuple[str, str]]:
    return [(f"member{i:05d}@example.org", f"Member Nº {i}") for i in range(n)]


# --- The server ---------------------------------------------------------------------------------


def serve(port: int, received: Any, ready: Any, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with received.get_lock():
                received.value += 1
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


# --- The senders --------------------------------------------------------------------------------


def prepare(settings: Any, body_html: str) -> Any:
    """The batch's template, from an issue and a list as the job reads them (not stored here)."""
    from domains.account.newsletters.mailing import issue_template
    from domains.account.newsletters.models import Campaign, NewsletterList

    lst = NewsletterList(name="Rose Ash News", slug="news", sender_name="Rose Ash News", description="")
    campaign = Campaign(subject="Rose Ash news: the spring market", body_html=body_html,
                        source_url=f"{settings.base_url}/blog/spring-market")
    return issue_template(settings, campaign, lst)


async def send_issue(settings: Any, to: list[tuple[str, str]], body_html: str) -> None:
    """What a newsletter batch does: prepare the issue once, then per recipient write its copy and
    send it over one connection."""
    from uuid import uuid4

    from app.mail import open_transport
    from domains.account.newsletters.mailing import issue_copy

    template = prepare(settings, body_html)
    async with open_transport(settings) as transport:
        for address, name in to:
            await transport.send_raw(*issue_copy(template, settings, address, name, uuid4(), uuid4()))


async def send_plain(port: int, to: list[tuple[str, str]], data: bytes) -> None:
    import aiosmtplib

    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    for address, _name in to:
        await smtp.sendmail(SENDER, [address], data)
    await smtp.quit()


def run_sender(which: str, port: int, n: int, kb: int, data_dir: str, out: Any) -> None:
    import aiosmtplib  # noqa: F401  (imports before the clock starts, for both senders)

    import app.mail
    import app.models  # noqa: F401  (every mapped class: the models' relationships need them)
    import domains.account.newsletters.mailing  # noqa: F401
    from app.settings import Settings

    settings = Settings.from_env({}, data_dir=Path(data_dir), base_url="https://coop.example",
                                 secret_key="bench-" + "k" * 40, smtp_url=f"smtp://127.0.0.1:{port}")
    to, body = recipients(n), issue_body(kb)
    if which == "baseline":
        from uuid import uuid4

        from domains.account.newsletters.mailing import issue_copy

        # One copy of the same issue, the same size as each of the rose-ash sender's.
        one = issue_copy(prepare(settings, body[1]), settings, "member@example.org", "Member", uuid4(), uuid4()).data
        start, cpu = time.perf_counter(), time.process_time()
        asyncio.run(send_plain(port, to, one))
    else:
        start, cpu = time.perf_counter(), time.process_time()
        asyncio.run(send_issue(settings, to, body[1]))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    out.put((which, elapsed, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(which: str, port: int, n: int, kb: int, data_dir: str) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=run_sender, args=(which, port, n, kb, data_dir, out))
    proc.start()
    while True:
        try:
            _, elapsed, cpu, rss = out.get(timeout=1)
            break
        except Exception:  # queue.Empty: is the sender still alive?
            if not proc.is_alive():
                raise SystemExit(f"the {which} sender failed (exit code {proc.exitcode})") from None
    proc.join()
    return elapsed, cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--body-kb", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate the two senders this many times each; the best round of each counts")
    args = parser.parse_args()
    from tests.helpers.smtp import _free_port

    ctx = mp.get_context("spawn")
    received, ready, stop = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    port = _free_port()
    server = ctx.Process(target=serve, args=(port, received, ready, stop))
    server.start()
    ready.wait(30)
    runs: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "rose-ash": []}
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            for _ in range(args.rounds):
                for which in runs:
                    before = received.value
                    result = measure(which, port, args.recipients, args.body_kb, data_dir)
                    runs[which].append(result)
                    got = received.value - before
                    if got != args.recipients:
                        print(f"warning: {which}: the server received {got} of {args.recipients}", flush=True)
                    print(f"  {which}: {args.recipients / result[0]:.0f} msg/s, "
                          f"{result[1] / args.recipients * 1000:.2f} ms CPU/msg", flush=True)
    finally:
        stop.set()
        server.join()
    best = {which: min(results) for which, results in runs.items()}  # the least disturbed round
    base_rate = args.recipients / best["baseline"][0]
    ours_rate = args.recipients / best["rose-ash"][0]
    ratio = ours_rate / base_rate
    load = os.getloadavg()[0]
    print(f"\n{args.recipients} recipients, ~{args.body_kb} KB issue, aiosmtpd on loopback (own process), "
          f"best of {args.rounds} rounds; load average {load:.2f}")
    print(f"{'sender':<34} {'msg/s':>9} {'seconds':>9} {'CPU ms/msg':>11} {'peak RSS MB':>12} {'ratio':>7}")
    for label, which in (("plain aiosmtplib loop (1 conn)", "baseline"), ("rose-ash issue batch (1 conn)", "rose-ash")):
        elapsed, cpu, rss = best[which]
        rate = args.recipients / elapsed
        print(f"{label:<34} {rate:>9.0f} {elapsed:>9.1f} {cpu / args.recipients * 1000:>11.2f} {rss:>12.1f} "
              f"{rate / base_rate:>7.2f}")
    peak = max(rss for _, _, rss in runs["rose-ash"])
    print(f"goal: ratio >= 0.5 ({'met' if ratio >= 0.5 else 'NOT met'}: {ratio:.2f}), "
          f"peak RSS of the rose-ash sender <= 200 MB ({'met' if peak <= 200 else 'NOT met'}: {peak:.0f} MB)")


if __name__ == "__main__":
    main()
