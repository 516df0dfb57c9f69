"""The newsletter mails: an issue to one recipient, a test send, the double opt-in confirmation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.mail import OutgoingMail
from domains.account.newsletters.models import Campaign, NewsletterList
from domains.account.newsletters.services import html_to_text, mail_host, unsubscribe_headers, unsubscribe_token

__all__ = ["confirm_mail", "issue_mail", "unsubscribe_url"]

# The token of a test send: it names no subscription, so its link unsubscribes nobody.
TEST_SUBSCRIPTION = UUID(int=0)


def unsubscribe_url(settings: Any, subscription_id: UUID) -> str:
    base = str(settings.base_url).rstrip("/")
    return f"{base}/newsletters/unsubscribe/{unsubscribe_token(settings.secret_key, subscription_id)}"


def issue_mail(settings: Any, campaign: Campaign, lst: NewsletterList, recipient_id: UUID | None, email: str,
               name: str, subscription_id: UUID | None, *, test: bool = False) -> OutgoingMail:
    """One recipient's copy of ``campaign`` (its content frozen in ``campaign.body_html`` once
    sending starts; the caller sets it for previews and tests)."""
    sid = subscription_id or TEST_SUBSCRIPTION
    base = str(settings.base_url).rstrip("/")
    url = unsubscribe_url(settings, sid)
    headers = unsubscribe_headers(url, str(getattr(settings, "mail_from", "") or ""),
                                  unsubscribe_token(settings.secret_key, sid), lst, base)
    if recipient_id is not None:
        # One Message-ID per recipient and campaign (RFC 5322 §3.6.4): a copy sent again after
        # an ambiguous SMTP failure is recognisably the same message.
        headers["Message-ID"] = f"<{recipient_id}@{mail_host(base)}>"
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
