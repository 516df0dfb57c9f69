"""Newsletter pages for visitors, members and authors.

- ``/newsletters/<slug>``: a public list's page, cacheable (no session, no CSRF cookie). Its
  "Subscribe" link leads to ``/newsletters/<slug>/subscribe``, a private page with the real form
  and its CSRF token (design/fragments.md §2, "an action on a public page is a link to a private
  GET page"). The confirmation link in the mail is ``/newsletters/confirm/<token>``.
- ``/newsletters/unsubscribe/<token>``: a machine route (its own signed token, no session, no
  CSRF): GET shows a button, POST (RFC 8058 one-click) unsubscribes, idempotently, with 200.
- ``/account/newsletters``: a member's lists; ``/account/newsletters/campaigns``: authors'
  issues (compose, preview, test, send, progress).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems, form_page, parse_form, see_other
from app.limits import AUTH_FORMS, limited
from app.responses import PRIVATE
from app.settings import Settings
from domains.account.models import User
from domains.account.newsletters import keys
from domains.account.newsletters.models import DRAFT, PAUSED, SENDING, Campaign, NewsletterList
from domains.account.newsletters.schemas import CampaignForm, SubscribeForm
from domains.account.newsletters.services import NewsletterService, read_unsubscribe_token
from fragments.pages import public_get, render_page


def _service(db_session: AsyncSession) -> NewsletterService:
    return NewsletterService(db_session)


# --- Public ----------------------------------------------------------------------------------

@public_get("/newsletters/{slug:str}", name="newsletters:list")
async def list_page(request: Request[Any, Any, Any], db_session: AsyncSession, slug: str) -> Response[bytes]:
    lst = await _service(db_session).public_list(slug)
    if lst is None:
        raise NotFoundException("There is no such newsletter.")
    return await render_page(request, "account/newsletters/public.html", {"list": lst}, keys=(keys.list_key(slug),))


class SubscribeController(Controller):
    """The private half of the public form: it carries the CSRF token, so it is never cached."""

    path = "/newsletters"
    cache_control = PRIVATE

    @get("/{slug:str}/subscribe", name="newsletters:subscribe")
    async def form(self, db_session: AsyncSession, slug: str) -> Template:
        lst = await _service(db_session).public_list(slug)
        if lst is None:
            raise NotFoundException("There is no such newsletter.")
        return Template("account/newsletters/subscribe.html", context={"list": lst, "values": {}, "errors": {}})

    @post("/{slug:str}/subscribe", status_code=303, guards=[limited(AUTH_FORMS)])
    async def subscribe(self, request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings,
                        slug: str) -> Template | Redirect:
        from app.mail import send_mail
        from domains.account.newsletters.mailing import confirm_mail

        service = _service(db_session)
        lst = await service.public_list(slug)
        if lst is None:
            raise NotFoundException("There is no such newsletter.")
        form = await parse_form(request, SubscribeForm)
        try:
            sub, token = await service.subscribe_public(lst, form.email, form.name)
        except InputProblems as exc:
            return form_page("account/newsletters/subscribe.html",
                             {"list": lst, "values": {"email": form.email, "name": form.name}}, exc.errors, exc.status)
        if sub is not None and token is not None:
            await send_mail(db_session, confirm_mail(settings, lst, sub.email, sub.name, token))
        # The same answer whether or not the address was on the list already (no enumeration).
        return see_other(f"/newsletters/{slug}/subscribe", request,
                         "Almost there: we sent you a mail with a link to confirm your subscription.")

    @get("/confirm/{token:str}", name="newsletters:confirm")
    async def confirm(self, db_session: AsyncSession, token: str) -> Template:
        found = await _service(db_session).confirm(token)
        if found is None:
            return Template("account/newsletters/message.html", status_code=404, context={
                "heading": "This confirmation link is not valid",
                "text": "It may have been mistyped or replaced by a newer one. Nothing was changed."})
        sub, lst = found
        return Template("account/newsletters/message.html", context={
            "heading": f"You are subscribed to {lst.name}",
            "text": f"{sub.email} will receive it. Every issue has a link to unsubscribe."})


class UnsubscribeController(Controller):
    """Machine routes (declared in the domain's ``machine_routes``): the signed token is the
    credential, so a mail client's one-click POST needs no session and no CSRF token."""

    path = "/newsletters/unsubscribe"
    cache_control = PRIVATE

    @get("/{token:str}", name="newsletters:unsubscribe")
    async def ask(self, db_session: AsyncSession, settings: Settings, token: str) -> Template:
        found = await self._find(db_session, settings, token)
        if found is None:
            return self._invalid()
        sub, lst = found
        return Template("account/newsletters/unsubscribe.html", context={
            "list": lst, "email": sub.email, "token": token, "done": sub.status == "unsubscribed"})

    @post("/{token:str}", status_code=200)
    async def unsubscribe(self, db_session: AsyncSession, settings: Settings, token: str) -> Template:
        """RFC 8058 §3.2: the body is ``List-Unsubscribe=One-Click``; we ignore it (a bare POST
        works as well), never redirect, and answer 200 however often it is sent."""
        sid = read_unsubscribe_token(str(settings.secret_key), token)
        if sid is None:
            return self._invalid()
        service = _service(db_session)
        found = await service.subscription(sid)
        if found is not None:
            await service.unsubscribe(sid)
        heading = f"You are unsubscribed from {found[1].name}" if found else "You are not subscribed"
        return Template("account/newsletters/message.html", context={
            "heading": heading, "text": "You will receive no more issues of it."})

    @staticmethod
    async def _find(db_session: AsyncSession, settings: Settings, token: str) -> Any:
        sid = read_unsubscribe_token(str(settings.secret_key), token)
        return None if sid is None else await _service(db_session).subscription(sid)

    @staticmethod
    def _invalid() -> Template:
        return Template("account/newsletters/message.html", status_code=404, context={
            "heading": "This unsubscribe link is not valid",
            "text": "It may have been cut short by your mail program. Nothing was changed."})


# --- Members ----------------------------------------------------------------------------------

class MemberNewslettersController(Controller):
    path = "/account/newsletters"
    cache_control = PRIVATE

    @get("/", name="account:newsletters")
    async def index(self, request: Request[User, Any, Any], db_session: AsyncSession) -> Template:
        rows = await _service(db_session).member_lists(request.user)
        return Template("account/newsletters/member.html", context={"rows": rows})

    @post("/{list_id:uuid}/subscribe", status_code=303)
    async def subscribe(self, request: Request[User, Any, Any], db_session: AsyncSession, list_id: UUID) -> Redirect:
        service = _service(db_session)
        lst = await service.get_list(list_id)
        if lst is None:
            raise NotFoundException("There is no such newsletter.")
        if request.user.email_verified_at is None:
            # Until the address is confirmed it may be someone else's: no subscription in its name.
            return see_other("/account/newsletters", request,
                             "Confirm your email address first: follow the link we mailed you, then subscribe.")
        await service.member_subscribe(request.user, lst)
        return see_other("/account/newsletters", request, f"You are subscribed to {lst.name}.")

    @post("/{list_id:uuid}/unsubscribe", status_code=303)
    async def unsubscribe(self, request: Request[User, Any, Any], db_session: AsyncSession, list_id: UUID) -> Redirect:
        service = _service(db_session)
        lst = await service.get_list(list_id)
        if lst is None:
            raise NotFoundException("There is no such newsletter.")
        await service.member_unsubscribe(request.user, lst)
        return see_other("/account/newsletters", request, f"You are unsubscribed from {lst.name}.")


# --- Authors: campaigns ----------------------------------------------------------------------

class CampaignController(Controller):
    """Authors (and editors, administrators) compose and send issues. Declared ``role=author``
    where the router mounts it; a campaign that is not yours (unless you edit all posts) is a 404."""

    path = "/account/newsletters/campaigns"
    cache_control = PRIVATE

    @get("/", name="newsletters:campaigns")
    async def index(self, request: Request[User, Any, Any], db_session: AsyncSession) -> Template:
        rows = await _service(db_session).campaigns(request.user)
        return Template("account/newsletters/campaigns.html", context={"rows": rows})

    async def _compose(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                       values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Template:
        service = _service(db_session)
        return Template("account/newsletters/compose.html", status_code=status, context={
            "lists": await service.lists(), "errors": errors, "values": values,
            "posts": await service.publishable_posts(request.user, str(settings.base_url)),
        })

    @get("/new")
    async def new(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                  post_id: str = "", list_id: str = "") -> Template:
        return await self._compose(request, db_session, settings, {"post_id": post_id, "list_id": list_id}, {})

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], db_session: AsyncSession,
                     settings: Settings) -> Template | Redirect:
        form = await parse_form(request, CampaignForm)
        try:
            campaign = await _service(db_session).create_campaign(request.user, form, str(settings.base_url))
        except InputProblems as exc:
            return await self._compose(request, db_session, settings, {
                "list_id": form.list_id, "subject": form.subject, "post_id": form.post_id,
                "markdown": form.markdown}, exc.errors, exc.status)
        return see_other(f"/account/newsletters/campaigns/{campaign.id}", request,
                         "Draft saved: check the preview, send yourself a test, then send it.")

    async def _mine(self, request: Request[User, Any, Any], db_session: AsyncSession,
                    campaign_id: UUID) -> tuple[Campaign, NewsletterList]:
        found = await _service(db_session).campaign_for(request.user, campaign_id)
        if found is None:
            raise NotFoundException("There is no such issue.")
        return found

    @get("/{campaign_id:uuid}", name="newsletters:campaign")
    async def show(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   campaign_id: UUID) -> Template:
        campaign, lst = await self._mine(request, db_session, campaign_id)
        service = _service(db_session)
        problem = ""
        try:
            await service.content(campaign, str(settings.base_url))
        except InputProblems as exc:
            problem = exc.errors.get("form", "")
        return Template("account/newsletters/campaign.html", context={
            "campaign": campaign, "list": lst, "problem": problem,
            "progress": await service.progress(campaign.id), "failures": await service.failures(campaign.id),
            "subscribers": (await service.counts()).get(lst.id, 0),
        })

    @staticmethod
    async def _preview_html(service: NewsletterService, settings: Settings, campaign: Campaign,
                            lst: NewsletterList, user: User) -> str:
        """The exact HTML part a subscriber gets (built by the mail kernel), for a sandboxed iframe."""
        from app.mail import build_message
        from domains.account.newsletters.mailing import issue_mail

        html, url = await service.content(campaign, str(settings.base_url))
        draft = Campaign(list_id=lst.id, subject=campaign.subject, body_html=html, source_url=url, status=DRAFT)
        message = build_message(issue_mail(settings, draft, lst, user.email, user.name, None), settings)
        part = message.get_body(("html",))
        return str(part.get_content()) if part is not None else ""

    @get("/{campaign_id:uuid}/preview")
    async def preview(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                      campaign_id: UUID) -> Response[str]:
        """The mail's exact HTML part, framed by the campaign page. Its own CSP: a sandbox (no
        scripts, no forms, an opaque origin), the mail's inline styles and remote images allowed,
        framed only by this site."""
        campaign, lst = await self._mine(request, db_session, campaign_id)
        try:
            html = await self._preview_html(_service(db_session), settings, campaign, lst, request.user)
        except InputProblems as exc:
            html = f"<p>{exc.errors.get('form', '')}</p>"
        return Response(html, media_type="text/html", headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src https: http: data:; frame-ancestors 'self'",
            "X-Frame-Options": "SAMEORIGIN"})

    @get("/{campaign_id:uuid}/progress")
    async def progress(self, request: Request[User, Any, Any], db_session: AsyncSession,
                       campaign_id: UUID) -> Template:
        """The progress box alone, for htmx polling (``every 2s`` while it sends)."""
        campaign, _lst = await self._mine(request, db_session, campaign_id)
        return Template("account/newsletters/_progress.html", context={
            "campaign": campaign, "progress": await _service(db_session).progress(campaign.id)})

    @post("/{campaign_id:uuid}/test", status_code=303)
    async def test(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   campaign_id: UUID) -> Redirect:
        from app.mail import send_mail
        from domains.account.newsletters.mailing import issue_mail

        campaign, lst = await self._mine(request, db_session, campaign_id)
        html, url = await _service(db_session).content(campaign, str(settings.base_url))
        draft = Campaign(list_id=lst.id, subject=campaign.subject, body_html=html, source_url=url, status=DRAFT)
        await send_mail(db_session, issue_mail(settings, draft, lst, request.user.email, request.user.name, None,
                                               test=True))
        return see_other(f"/account/newsletters/campaigns/{campaign.id}", request,
                         f"A test copy is on its way to {request.user.email}.")

    @post("/{campaign_id:uuid}/send", status_code=303)
    async def send(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                   campaign_id: UUID) -> Redirect:
        campaign, lst = await self._mine(request, db_session, campaign_id)
        here = f"/account/newsletters/campaigns/{campaign.id}"
        try:
            count = await _service(db_session).start(campaign, str(settings.base_url), _rate(settings))
        except InputProblems as exc:
            return see_other(here, request, exc.errors.get("form", "It could not be sent."), "error")
        return see_other(here, request, f"Sending to {count} subscribers of {lst.name}.")

    @post("/{campaign_id:uuid}/pause", status_code=303)
    async def pause(self, request: Request[User, Any, Any], db_session: AsyncSession, campaign_id: UUID) -> Redirect:
        campaign, _ = await self._mine(request, db_session, campaign_id)
        ok = await _service(db_session).pause(campaign)
        return see_other(f"/account/newsletters/campaigns/{campaign.id}", request,
                         "Paused." if ok else "It is not sending.", "success" if ok else "error")

    @post("/{campaign_id:uuid}/resume", status_code=303)
    async def resume(self, request: Request[User, Any, Any], db_session: AsyncSession, settings: Settings,
                     campaign_id: UUID) -> Redirect:
        campaign, _ = await self._mine(request, db_session, campaign_id)
        ok = campaign.status in (PAUSED, SENDING) and await _service(db_session).resume(campaign, _rate(settings))
        return see_other(f"/account/newsletters/campaigns/{campaign.id}", request,
                         "Sending again." if ok else "It is not paused.", "success" if ok else "error")


def _rate(settings: Settings) -> int:
    return int(getattr(settings, "mail_rate", 0) or 0)
