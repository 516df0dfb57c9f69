"""Account pages: sign-up, sign-in/out, "forgot password" and the links mailed to members, dashboard,
settings, tokens, and public profiles."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.response import Redirect, Template
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.caching import ANONYMOUS_OPT
from app.forms import InputProblems, confirm_page, done, form_page, parse_form, safe_next, see_other
from app.limits import ACCOUNT_MAIL, AUTH_FORMS, app_limiter, limited
from app.responses import PRIVATE
from app.security import SESSION_EPOCH_KEY, SESSION_USER_KEY
from app.sessions import rotate_session_id
from app.settings import Settings
from domains.account import hooks, mailflows
from domains.account import tokens as links
from domains.account.deps import dependencies
from domains.account.guards import check_visible_profile
from domains.account.models import User
from domains.account.schemas import (
    SCOPES,
    EmailChangeForm,
    ForgotForm,
    LoginForm,
    PasswordForm,
    ProfileForm,
    ResetForm,
    SignupInput,
    TokenForm,
    email_problem,
    normalise_email,
)
from domains.account.services import AccountService, EmailTaken, TokenService
from fragments.registry import Fragment, close_fragment_session, registry, render_fragment
from fragments.site import owner_installed

# A page reached through a mailed link carries its secret in the URL: no Referer may take it along.
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
# Why a link does nothing, as a status: never issued (or altered) is absent; used or expired is gone.
LINK_STATUS = {links.LinkProblem.UNKNOWN: 404, links.LinkProblem.USED: 410, links.LinkProblem.EXPIRED: 410}
MAIL_LIMIT_MESSAGE = "Too many links were asked for this address. Please wait an hour and try again."


def link_invalid(problem: links.LinkProblem, *, kind: str) -> Template:
    """The page for a link that does nothing (``kind``: reset, verify, email): it says why and what next."""
    return Template("account/link_invalid.html", status_code=LINK_STATUS[problem], headers=NO_REFERRER,
                    context={"problem": problem.value, "kind": kind})


async def address_allowed(request: Request[Any, Any, Any], email: str) -> bool:
    """Count one account mail for ``email`` (digested: no address is kept in the limiter's store)."""
    return await app_limiter(request).hit(ACCOUNT_MAIL, links.digest(normalise_email(email)))


def signup_welcome(name: str) -> str:
    return f"Welcome to Rose Ash, {name}! Check your inbox: we sent a message to the address you gave."


async def _sign_in(request: Request[Any, Any, Any], user: User, db: AsyncSession) -> None:
    # Other domains see the anonymous session first (the cart merges its cart): hooks.on_sign_in.
    old = request.scope.get("session")
    carried = await hooks.signing_in(db, user, old if isinstance(old, dict) else {})
    # A fresh session id on sign-in defeats session fixation.
    rotate_session_id(request)
    request.set_session({**carried, SESSION_USER_KEY: str(user.id), SESSION_EPOCH_KEY: user.session_epoch})


class AuthController(Controller):
    path = "/account"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/signup", name="account:signup")
    async def signup_form(self, settings: Settings, next: str | None = None) -> Template:
        return Template("account/signup.html", context={"values": {}, "errors": {}, "open": settings.signup_open,
                                                        "next": safe_next(next, default="")})

    @post("/signup", status_code=303, guards=[limited(AUTH_FORMS)])
    async def signup(self, request: Request[Any, Any, Any], accounts: AccountService,
                     settings: Settings) -> Template | Redirect:
        if not settings.signup_open:
            raise PermissionDeniedException("Sign-up is closed on this site.")
        values = await parse_form(request, SignupInput)
        shown = {"username": values.username, "email": values.email, "display_name": values.display_name}
        back = safe_next(values.next, default="")  # only a same-site path (no open redirect)
        try:
            user = await accounts.signup(values)
        except EmailTaken as exc:
            # Said plainly, as GitHub and Mastodon do: a 303 that pretends otherwise still leaves
            # the prober signed out where a new member is signed in (an oracle either way), and
            # someone who forgot they have an account needs to hear it. The owner is told of the
            # attempt (within the address's mail limit); sign-up POSTs are rate limited per client.
            if exc.owner is not None and await address_allowed(request, exc.owner.email):
                await mailflows.mail_address_in_use(accounts.db, settings.base_url, exc.owner, "signup")
                await accounts.db.commit()  # a 409 is rolled back by the session handler: keep the notice
            return form_page("account/signup.html", {"values": shown, "open": True, "next": back}, {
                "email": "An account already uses this address: sign in, or reset your password if you "
                         "forgot it."}, 409)
        except InputProblems as exc:
            return form_page("account/signup.html", {"values": shown, "open": True, "next": back}, exc.errors,
                             exc.status)
        # In the sign-up's transaction: the mail goes out exactly when the account exists.
        await mailflows.mail_verification(accounts.db, settings.base_url, user)
        await address_allowed(request, user.email)  # counts against the address's resend budget
        await _sign_in(request, user, accounts.db)
        if back:
            # The page signed up from is often public and cached (an event, the home page): it never
            # reads the session, so a flash would wait there unseen (and, without JavaScript, the page
            # still offers "Sign up"). A private welcome page says it and links on to ``next``.
            return Redirect(path=f"/account/welcome?next={quote(back, safe='/')}", status_code=303)
        return see_other("/account", request, signup_welcome(user.name))

    @get("/login", name="account:login")
    async def login_form(self, next: str | None = None) -> Template:
        return Template("account/login.html", context={"values": {}, "errors": {}, "next": safe_next(next)})

    @post("/login", status_code=303, guards=[limited(AUTH_FORMS)])
    async def login(self, request: Request[Any, Any, Any], accounts: AccountService) -> Template | Redirect:
        form = await parse_form(request, LoginForm)
        login = form.login.strip()
        destination = safe_next(form.next)
        user = await accounts.authenticate(login, form.password)
        if user is None:
            return form_page(
                "account/login.html",
                {"values": {"login": login}, "next": destination},
                {"form": "That username or email and password don't match an account."},
                401,
            )
        await _sign_in(request, user, accounts.db)
        return see_other(destination, request, f"Signed in as {user.username}.")

    @get("/password/forgot", name="account:forgot")
    async def forgot_form(self) -> Template:
        return Template("account/forgot.html", context={"values": {}, "errors": {}})

    @post("/password/forgot", status_code=303, guards=[limited(AUTH_FORMS)])
    async def forgot(self, request: Request[Any, Any, Any], accounts: AccountService) -> Template | Redirect:
        """The same answer for every well-formed address, whether an account uses it or not (no
        account enumeration): a 303 to the same page, after enqueueing the same job."""
        form = await parse_form(request, ForgotForm)
        email = normalise_email(form.email)
        if problem := email_problem(email):
            return form_page("account/forgot.html", {"values": {"email": form.email}}, {"email": problem}, 422)
        if not await address_allowed(request, email):
            return Template("account/forgot.html", status_code=429, context={
                "values": {"email": email}, "errors": {"email": MAIL_LIMIT_MESSAGE}},
                headers={"Retry-After": app_limiter(request).retry_after(ACCOUNT_MAIL)})
        await mailflows.forgot_password(accounts.db, email)
        return see_other("/account/password/forgot/sent")

    @get("/password/forgot/sent")
    async def forgot_sent(self) -> Template:
        return Template("account/forgot_sent.html")

    @get("/password/reset/{secret:str}", name="account:reset")
    async def reset_form(self, accounts: AccountService, secret: str) -> Template:
        found = await links.look(accounts.db, secret, (links.Purpose.RESET, links.Purpose.INVITE))
        if isinstance(found, links.LinkProblem):
            return link_invalid(found, kind="reset")
        return self._reset_page(secret, found.token.purpose, {}, 200)

    @staticmethod
    def _reset_page(secret: str, purpose: str, errors: dict[str, str], status: int) -> Template:
        return Template("account/reset.html", status_code=status, headers=NO_REFERRER, context={
            "secret": secret, "invite": purpose == links.Purpose.INVITE, "errors": errors})

    @post("/password/reset/{secret:str}", status_code=303, guards=[limited(AUTH_FORMS)])
    async def reset(self, request: Request[Any, Any, Any], accounts: AccountService,
                    secret: str) -> Template | Redirect:
        form = await parse_form(request, ResetForm)
        seen = await links.look(accounts.db, secret, (links.Purpose.RESET, links.Purpose.INVITE))
        if isinstance(seen, links.LinkProblem):
            return link_invalid(seen, kind="reset")
        if form.password != form.confirm_password:
            return self._reset_page(secret, seen.token.purpose, {"confirm_password": "The two passwords differ."}, 422)
        try:
            done_for = await mailflows.set_password_from_link(accounts.db, secret, form.password)
        except InputProblems as exc:
            return self._reset_page(secret, seen.token.purpose, exc.errors, exc.status)
        if isinstance(done_for, links.LinkProblem):
            return link_invalid(done_for, kind="reset")
        await _sign_in(request, done_for, accounts.db)  # this browser is signed in; every other session has ended
        return see_other("/account", request, "Your new password is set. Any other sessions were signed out.")

    @get("/verify/{secret:str}", name="account:verify")
    async def verify(self, accounts: AccountService, secret: str) -> Template:
        """Following the link is the confirmation (one click). It changes nothing but a date, so
        a mail scanner fetching it first does no harm: the mail did reach that mailbox."""
        done_for = await mailflows.verify_address(accounts.db, secret)
        if isinstance(done_for, links.LinkProblem):
            return link_invalid(done_for, kind="verify")
        return Template("account/verified.html", headers=NO_REFERRER, context={"email": done_for.email})

    @get("/email/confirm/{secret:str}", name="account:email-confirm")
    async def email_confirm_form(self, accounts: AccountService, secret: str) -> Template:
        """A button, not a change on GET: a mail scanner at a mistyped address (a stranger's) must
        not move the account there by fetching the link."""
        found = await mailflows.look_email_change(accounts.db, secret)
        if isinstance(found, links.LinkProblem):
            return link_invalid(found, kind="email")
        return Template("account/email_confirm.html", headers=NO_REFERRER, context={
            "secret": secret, "new_email": found.token.new_email, "username": found.user.username, "errors": {}})

    @post("/email/confirm/{secret:str}", status_code=303)
    async def email_confirm(self, request: Request[Any, Any, Any], accounts: AccountService,
                            secret: str) -> Template | Redirect:
        try:
            done_for = await mailflows.confirm_email_change(accounts.db, secret)
        except InputProblems as exc:
            return Template("account/email_confirm.html", status_code=exc.status, headers=NO_REFERRER,
                            context={"secret": secret, "new_email": "", "username": "", "errors": exc.errors})
        if isinstance(done_for, links.LinkProblem):
            return link_invalid(done_for, kind="email")
        return see_other("/account/settings/email", request, f"Your email address is now {done_for.email}.")

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        # Drop everything but keep a (new, empty) session to carry the "signed out" message.
        request.set_session({})
        rotate_session_id(request)
        return see_other("/account/login", request, "You are signed out.")


# The dashboard's panels: personal fragments named ``me.dashboard-<what>``, each registered by the
# domain that owns the data (its fragments.py), so an uninstalled domain adds no panel. This order
# first; any other domain's panel after them, by name.
DASHBOARD_PREFIX = "me.dashboard-"
DASHBOARD_ORDER = ("bookings", "notifications", "orders", "drafts", "repositories", "newsletters")


def _domain_installed(spec: Fragment) -> bool:
    """Whether the domain whose setup registered ``spec`` is part of this app (a module imported by
    a test or another app in the same process must not add a panel here)."""
    return owner_installed(getattr(spec.build, "__module__", ""))


def dashboard_specs() -> list[Fragment]:
    found = [s for s in registry if s.name.startswith(DASHBOARD_PREFIX) and _domain_installed(s)]

    def rank(spec: Fragment) -> tuple[int, str]:
        what = spec.name.removeprefix(DASHBOARD_PREFIX)
        return (DASHBOARD_ORDER.index(what) if what in DASHBOARD_ORDER else len(DASHBOARD_ORDER), what)

    return sorted(found, key=rank)


async def dashboard_panels(request: Request[User, Any, Any]) -> list[dict[str, Any]]:
    """Each dashboard fragment rendered inline, one after another on the request's session; one that
    fails or is slow shows its fallback (a plain link to the domain's page), never an error page."""
    panels = []
    try:
        for spec in dashboard_specs():
            rendered = await render_fragment(request, spec, {}, inline=True)
            if not rendered.html.strip():  # a domain with nothing for this member (drafts, for a non-author)
                continue
            panels.append({"name": spec.name.removeprefix(DASHBOARD_PREFIX), "url": spec.url,
                           "html": Markup(rendered.html), "ok": rendered.ok})  # noqa: S704 (rendered, autoescaped)
    finally:
        await close_fragment_session(request)
    return panels


class AccountController(Controller):
    # Members only: declared where the account router mounts it (app/access.py), checked app-wide.
    path = "/account"
    dependencies = dependencies
    cache_control = PRIVATE

    @get("/", name="account:dashboard")
    async def dashboard(self, request: Request[User, Any, Any], tokens: TokenService) -> Template:
        owned = await tokens.for_user(request.user)
        active = sum(1 for t in owned if t.revoked_at is None)
        # The panels are the installed domains' personal fragments, rendered here for the signed-in
        # member (no JavaScript needed); this page is private, no-store, so nothing personal is shared.
        panels = await dashboard_panels(request)
        return Template("account/dashboard.html", context={"active_tokens": active, "panels": panels})

    @get("/welcome", name="account:welcome")
    async def welcome(self, request: Request[User, Any, Any], next: str | None = None) -> Template:
        """After sign-up from a page: the welcome, the confirmation mail's address, and a link back
        to that page (only a same-site path: ``safe_next``). Members only and private, no-store."""
        return Template("account/welcome.html", context={"next": safe_next(next, default="/account")})

    @get("/settings", name="account:settings")
    async def settings_index(self) -> Redirect:
        return Redirect("/account/settings/profile")

    @get("/settings/profile")
    async def profile_form(self, request: Request[User, Any, Any]) -> Template:
        user = request.user
        return Template("account/settings_profile.html", context={
            "values": {"display_name": user.display_name, "bio": user.bio}, "errors": {}})

    @post("/settings/profile", status_code=303)
    async def profile_save(self, request: Request[User, Any, Any], accounts: AccountService) -> Template | Redirect:
        form = await parse_form(request, ProfileForm)
        try:
            await accounts.update_profile(request.user, form.display_name, form.bio)
        except InputProblems as exc:
            return form_page("account/settings_profile.html",
                             {"values": {"display_name": form.display_name, "bio": form.bio}}, exc.errors, exc.status)
        return see_other("/account/settings/profile", request, "Profile saved.")

    @get("/settings/password")
    async def password_form(self) -> Template:
        return Template("account/settings_password.html", context={"errors": {}})

    @post("/settings/password", status_code=303)
    async def password_save(self, request: Request[User, Any, Any], accounts: AccountService) -> Template | Redirect:
        form = await parse_form(request, PasswordForm)
        if form.new_password != form.confirm_password:
            return form_page("account/settings_password.html", {},
                             {"confirm_password": "The two new passwords differ."}, 422)
        try:
            await accounts.change_password(request.user, form.current_password, form.new_password)
        except InputProblems as exc:
            return form_page("account/settings_password.html", {}, exc.errors, exc.status)
        await _sign_in(request, request.user, accounts.db)  # other sessions end; this one carries the new epoch
        return see_other("/account/settings/password", request, "Password changed. Other sessions were signed out.")

    @get("/settings/email")
    async def email_form(self, request: Request[User, Any, Any]) -> Template:
        return Template("account/settings_email.html", context={"values": {}, "errors": {}})

    @post("/settings/email", status_code=303)
    async def email_save(self, request: Request[User, Any, Any], accounts: AccountService,
                         settings: Settings) -> Template | Redirect:
        form = await parse_form(request, EmailChangeForm)
        try:
            change = await mailflows.request_email_change(accounts.db, settings.base_url, request.user, form.email,
                                                          form.password)
        except InputProblems as exc:
            return form_page("account/settings_email.html", {"values": {"email": form.email}}, exc.errors, exc.status)
        # An address another account uses: the same answer (no enumeration), its owner is told.
        if change.owner is not None and await address_allowed(request, change.owner.email):
            await mailflows.mail_address_in_use(accounts.db, settings.base_url, change.owner, "email_change")
        return see_other("/account/settings/email", request,
                         f"We sent a link to {change.email}. Your address changes when you follow it.")

    @post("/settings/email/resend", status_code=303, guards=[limited(AUTH_FORMS)])
    async def resend_verification(self, request: Request[User, Any, Any], accounts: AccountService,
                                  settings: Settings) -> Response[Any]:
        user = request.user
        if user.email_verified_at is not None:
            return see_other("/account", request, "Your email address is already confirmed.")
        if not await address_allowed(request, user.email):
            return see_other("/account", request, MAIL_LIMIT_MESSAGE, "error")
        await mailflows.mail_verification(accounts.db, settings.base_url, user)
        return see_other("/account", request, f"We sent a new link to {user.email}.")

    @get("/settings/tokens")
    async def tokens(self, request: Request[User, Any, Any], tokens: TokenService) -> Template:
        return await self._tokens_page(request, tokens)

    async def _tokens_page(self, request: Request[User, Any, Any], tokens: TokenService, *,
                           errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                           status: int = 200) -> Template:
        owned = await tokens.for_user(request.user)
        # The new secret is shown exactly once: it travels in the session and is popped here.
        new_secret = request.session.pop("new_token", None) if request.session else None
        return Template("account/settings_tokens.html", status_code=status, context={
            "tokens": owned, "scopes": SCOPES, "new_secret": new_secret,
            "errors": errors or {}, "values": values or {"scopes": []},
        })

    @post("/settings/tokens", status_code=303)
    async def token_create(self, request: Request[User, Any, Any], tokens: TokenService) -> Template | Redirect:
        form = await parse_form(request, TokenForm)
        try:
            _token, secret = await tokens.issue(request.user, form.name, form.scopes)
        except InputProblems as exc:
            return await self._tokens_page(request, tokens, errors=exc.errors,
                                           values={"name": form.name, "scopes": form.scopes}, status=exc.status)
        # One message for one action: the page shows the new secret in the toast region itself, so
        # no flash is queued beside it (there used to be two: a flash and the secret's own box).
        request.session["new_token"] = secret
        return see_other("/account/settings/tokens")

    @get("/settings/tokens/{token_id:uuid}/revoke", opt=access.session(owner="token"))
    async def token_revoke_confirm(self, request: Request[User, Any, Any], tokens: TokenService,
                                   token_id: UUID) -> Template:
        """Without JavaScript the Revoke button opens this page; with it, ``hx-confirm`` asks."""
        token = next((t for t in await tokens.for_user(request.user)
                      if t.id == token_id and t.revoked_at is None), None)
        if token is None:
            raise NotFoundException("No such active token.")
        return confirm_page(question=f"Revoke the token “{token.name}”?", button="Revoke",
                            detail="Programs using it stop working at once. This cannot be undone.",
                            action=f"/account/settings/tokens/{token.id}/revoke", cancel="/account/settings/tokens")

    @post("/settings/tokens/{token_id:uuid}/revoke", status_code=303, opt=access.session(owner="token"))
    async def token_revoke(self, request: Request[User, Any, Any], tokens: TokenService,
                           token_id: UUID) -> Response[None]:
        if not await tokens.revoke(request.user, token_id):
            raise NotFoundException("No such active token.")
        return done("/account/settings/tokens", request, "Token revoked.")


# Browsers revalidate (max-age=0) so a member sees their own profile edit at once (issue 14).
@get("/{handle:str}", name="account:profile",
     cache_control=CacheControlHeader(public=True, max_age=0, must_revalidate=True),
     opt=dict(ANONYMOUS_OPT), dependencies=dependencies)
async def profile(handle: str, request: Request[Any, Any, Any], db_session: AsyncSession, accounts: AccountService,
                  settings: Settings) -> Template | Response[bytes]:
    """``/@<username>``. Litestar parameters span whole segments, so the ``@`` is checked here;
    every other single-segment path that no route claims is a 404 from this handler."""
    if not handle.startswith("@") or len(handle) < 2:
        raise NotFoundException()
    username = handle[1:]
    user = check_visible_profile(await accounts.by_username(username), username)
    # Content negotiation: the same URL is the member's ActivityPub actor (design/federation.md §5).
    from federation.activitypub.core import wants_as2

    if wants_as2(request.headers.get("accept")):
        from federation.activitypub.routes import person_response

        return await person_response(db_session, settings, user, request)
    # Their posts live in the social hub (members only: a visitor is asked to sign in first);
    # this page is cached for everybody, so it links there rather than listing them.
    hub = f"/social/accounts/{user.username}@{urlsplit(settings.base_url).netloc}"
    return Template("account/profile.html", context={"member": user, "hub_path": hub}, headers={"Vary": "Accept"})
