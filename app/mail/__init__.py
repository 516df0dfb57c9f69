"""Outbound mail: build with the standard library, send with aiosmtplib, or write .eml files.

A domain describes a mail as an :class:`OutgoingMail` and calls :func:`send_mail` in the
transaction that causes it; a durable ``mail.send`` job builds and sends it (retried with backoff
while the server is unreachable or answers 4xx; a 5xx is recorded in the mail log and not
retried). Batches (newsletters) prepare one :class:`BatchTemplate` and write each copy from it
(:meth:`BatchTemplate.render`, the bytes ``build_message`` would write), sent with
``MailTransport.send_raw`` over one connection from :func:`open_transport`. Settings:
ROSE_ASH_SMTP_URL, ROSE_ASH_MAIL_FROM, ROSE_ASH_MAIL_RATE, ROSE_ASH_SMTP_CA_FILE (README "Mail").
"""

from app.mail.batch import BatchTemplate, RawMessage
from app.mail.message import (
    TAG_HEADER,
    OutgoingMail,
    build_message,
    check_mail,
    new_message_id,
    render_bodies,
    valid_address,
)
from app.mail.models import FAILED, QUEUED, SENT, MailLog
from app.mail.sending import KIND, MailJob, last_failure, send_job, send_mail
from app.mail.transport import (
    FileTransport,
    MailPermanentError,
    MailTemporaryError,
    MailTransport,
    SMTPTransport,
    mail_dir,
    open_transport,
)

__all__ = [
    "FAILED",
    "KIND",
    "QUEUED",
    "SENT",
    "TAG_HEADER",
    "BatchTemplate",
    "FileTransport",
    "MailJob",
    "MailLog",
    "MailPermanentError",
    "MailTemporaryError",
    "MailTransport",
    "OutgoingMail",
    "RawMessage",
    "SMTPTransport",
    "build_message",
    "check_mail",
    "last_failure",
    "mail_dir",
    "new_message_id",
    "open_transport",
    "render_bodies",
    "send_job",
    "send_mail",
    "valid_address",
]
