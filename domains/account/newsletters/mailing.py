"""The newsletter mails: an issue to one recipient, a test send, the double opt-in confirmation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.mail import BatchTemplate, OutgoingMail, RawMessage
from domains.account.newsletters.models import Campaign, NewsletterList
from domains.account.newsletters.services import html_to_text, mail_host, unsubscribe_headers, unsubscribe_token

__all__ = ["confirm_mail", "issue_copy", "issue_mail", "issue_message_id", "issue_template", "unsubscribe_url"]

# The token of a test send: it names no subscription, so its link unsubscribes nobody.
TEST_SUBSCRIPTION = UUID(int=0)
# Stands for the recipient's unsubscribe URL in bodies rendered once per batch (URL-safe characters
# only, so HTML escaping leaves it as it is).
UNSUBSCRIBE_MARKER = "https://unsubscribe.invalid/MARKER-7f3a9c"


def unsubscribe_url(settings: Any, subscription_id: UUID) -> str:
    base = str(settings.base_url).rstrip("/")
    return f"{base}/newsletters/unsubscribe/{unsubscribe_token(settings.secret_key, subscription_id)}"


def issue_message_id(settings: Any, recipient_id: UUID) -> str:
    """One Message-ID per recipient and campaign (RFC 5322 §3.6.4), the same on every try."""
    return f"<{recipient_id}@{mail_host(str(settings.base_url))}>"


def issue_template(settings: Any, campaign: Campaign, lst: NewsletterList) -> BatchTemplate:
    """The issue prepared once per batch (bodies rendered, shared headers folded, parts encoded), with
    a marker where each recipient's own unsubscribe URL goes: in List-Unsubscribe and in both bodies,
    the only things besides To, Date and Message-ID that differ between their copies."""
    mail = issue_mail(settings, campaign, lst, "marker@example.org", "", None, url=UNSUBSCRIBE_MARKER)
    return BatchTemplate(mail, settings, markers=(UNSUBSCRIBE_MARKER,))


def issue_copy(template: BatchTemplate, settings: Any, email: str, name: str, subscription_id: UUID,
               recipient_id: UUID) -> RawMessage:
    """One recipient's copy of the issue (``ValueError`` for an address or name the kernel refuses)."""
    return template.render(email, name, values={UNSUBSCRIBE_MARKER: unsubscribe_url(settings, subscription_id)},
                           message_id=issue_message_id(settings, recipient_id))


def issue_mail(settings: Any, campaign: Campaign, lst: NewsletterList, email: str, name: str,
               subscription_id: UUID | None, *, test: bool = False, url: str | None = None) -> OutgoingMail:
    """One recipient's copy of ``campaign`` (its content frozen in ``campaign.body_html`` once
    sending starts; the caller sets it for previews and tests)."""
    sid = subscription_id or TEST_SUBSCRIPTION
    base = str(settings.base_url).rstrip("/")
    url = url or unsubscribe_url(settings, sid)
    headers = unsubscribe_headers(url, lst, base)
    subject = f"[Test] {campaign.subject}" if test else campaign.subject
    return OutgoingMail(
        to=email, to_name=name, subject=subject, template="newsletter/issue",
        context={
            "list_name": lst.name, "subject": campaign.subject, "html": campaign.body_html,
            "text": html_to_text(campaign.body_html), "web_url": campaign.source_url,
            "unsubscribe_url": url, "test": test, "site_url": base,
        },
        headers=headers, from_name=lst.sender_name or lst.name, tag="newsletter",
    )


def confirm_mail(settings: Any, lst: NewsletterList, email: str, name: str, token: str) -> OutgoingMail:
    base = str(settings.base_url).rstrip("/")
    return OutgoingMail(
        to=email, to_name=name, subject=f"Confirm your subscription to {lst.name}",
        template="newsletter/confirm",
        context={"list_name": lst.name, "confirm_url": f"{base}/newsletters/confirm/{token}", "site_url": base,
                 "description": lst.description},
        from_name=lst.sender_name or lst.name, tag="newsletter-confirm",
    )
