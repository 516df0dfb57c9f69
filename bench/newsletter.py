"""Benchmark: one newsletter issue to many recipients through Rose Ash's mail transport, beside a
plain ``aiosmtplib`` loop over one connection, in the same run against the same aiosmtpd server.

- server: aiosmtpd on 127.0.0.1 in its own process (so it does not share the senders' GIL),
  answering 250 to every message and counting them;
- baseline: one ``aiosmtplib.SMTP`` connection, ``sendmail`` of the same pre-built bytes to each
  recipient (transport cost only: nothing rendered or built per recipient);
- rose-ash: what a newsletter batch job does per recipient (:func:`send_issue`, the one place to
  switch to the real batch job once it exists): render the issue's text and HTML with that
  recipient's unsubscribe link, ``build_message`` with RFC 8058 ``List-Unsubscribe`` headers and
  ``List-Id``, then ``MailTransport.send`` over the one connection ``open_transport`` opened.

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
TEXT = """Hello {{ name }},

{{ body }}

Unsubscribe: {{ unsubscribe }}
"""
HTML = """<!DOCTYPE html><html><body style="font-family:Georgia,serif">
<p>Hello {{ name }},</p>
{{ body_html }}
<p style="font-size:13px"><a href="{{ unsubscribe }}">Unsubscribe</a></p>
</body></html>
"""


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


async def send_issue(settings: Any, to: list[tuple[str, str]], body: tuple[str, str]) -> None:
    """What a newsletter batch does: per recipient render, build, send over one connection."""
    import jinja2
    from markupsafe import Markup

    from app.mail import OutgoingMail, build_message, open_transport

    env = jinja2.Environment(autoescape=False)  # the text part: not HTML
    text_t, html_t = env.from_string(TEXT), jinja2.Environment(autoescape=True).from_string(HTML)
    text_body, html_body = body
    async with open_transport(settings) as transport:
        for address, name in to:
            unsubscribe = f"{settings.base_url}/newsletter/unsubscribe/{address.split('@')[0]}-token"
            mail = OutgoingMail(
                to=address, to_name=name, subject="Rose Ash news: the spring market", template="test",
                from_name="Rose Ash News", tag="newsletter",
                headers={
                    "List-Unsubscribe": f"<{unsubscribe}>, <mailto:unsubscribe@coop.example?subject={address}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "List-Id": "Rose Ash News <news.coop.example>",
                },
            )
            context = {"name": name, "body": text_body, "unsubscribe": unsubscribe}
            bodies = (text_t.render(context),
                      html_t.render({**context, "body_html": Markup(html_body)}))
            await transport.send(build_message(mail, settings, bodies=bodies))


async def send_plain(port: int, to: list[tuple[str, str]], data: bytes) -> None:
    import aiosmtplib

    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    for address, _name in to:
        await smtp.sendmail(SENDER, [address], data)
    await smtp.quit()


def run_sender(which: str, port: int, n: int, kb: int, data_dir: str, out: Any) -> None:
    import aiosmtplib  # noqa: F401  (imports before the clock starts, for both senders)

    import app.mail  # noqa: F401
    from app.settings import Settings

    settings = Settings.from_env({}, data_dir=Path(data_dir), base_url="https://coop.example",
                                 secret_key="bench-" + "k" * 40, smtp_url=f"smtp://127.0.0.1:{port}")
    to, body = recipients(n), issue_body(kb)
    if which == "baseline":
        from app.mail import OutgoingMail, build_message

        one = build_message(OutgoingMail(to="member@example.org", subject="Rose Ash news", template="test"),
                            settings, bodies=body).as_bytes()
        start, cpu = time.perf_counter(), time.process_time()
        asyncio.run(send_plain(port, to, one))
    else:
        start, cpu = time.perf_counter(), time.process_time()
        asyncio.run(send_issue(settings, to, body))
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
    for label, which in (("plain aiosmtplib loop (1 conn)", "baseline"), ("rose-ash send_issue (1 conn)", "rose-ash")):
        elapsed, cpu, rss = best[which]
        rate = args.recipients / elapsed
        print(f"{label:<34} {rate:>9.0f} {elapsed:>9.1f} {cpu / args.recipients * 1000:>11.2f} {rss:>12.1f} "
              f"{rate / base_rate:>7.2f}")
    peak = max(rss for _, _, rss in runs["rose-ash"])
    print(f"goal: ratio >= 0.5 ({'met' if ratio >= 0.5 else 'NOT met'}: {ratio:.2f}), "
          f"peak RSS of the rose-ash sender <= 200 MB ({'met' if peak <= 200 else 'NOT met'}: {peak:.0f} MB)")


if __name__ == "__main__":
    main()
