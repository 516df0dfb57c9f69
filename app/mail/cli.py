"""``rose-ash mail test --to ADDRESS``: send one mail through the configured transport, now.

Not a queued job: the operator checking ROSE_ASH_SMTP_URL wants the server's answer (or the
.eml file's path) on the terminal, and a non-zero exit when it fails.
"""

from __future__ import annotations

import asyncio

import click

from app.commands import fail, settings_from

__all__ = ["mail_group"]


@click.group(name="mail")
def mail_group() -> None:
    """Outbound mail."""


@mail_group.command(name="test")
@click.option("--to", "to", required=True, help="The address to send the test mail to.")
@click.pass_context
def mail_test(ctx: click.Context, to: str) -> None:
    """Send a test mail (templates/mail/test.txt) through ROSE_ASH_SMTP_URL, or write an .eml file."""
    from app.mail.message import OutgoingMail, build_message, valid_address
    from app.mail.transport import FileTransport, MailPermanentError, MailTemporaryError, open_transport

    settings = settings_from(ctx)
    address = valid_address(to)
    if address is None:
        fail({"to": f"{to!r} is not a mail address"})

    async def send() -> str:
        async with open_transport(settings) as transport:
            mail = OutgoingMail(to=address, subject="Rose Ash test mail", template="test",
                                context={"transport": transport.description}, tag="test")
            message = build_message(mail, settings)
            if isinstance(transport, FileTransport):
                path = await asyncio.to_thread(transport.write, message)
                return f"no ROSE_ASH_SMTP_URL: wrote {path}"
            await transport.send(message)
            return f"sent {message['Message-ID']} to {address} through {transport.description}"

    try:
        click.echo(asyncio.run(send()))
    except (MailPermanentError, MailTemporaryError) as exc:
        kind = "refused" if isinstance(exc, MailPermanentError) else "not sent (temporary)"
        fail({"mail": f"{kind}: {exc}"})
