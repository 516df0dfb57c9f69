"""The account's mails and what following their links does: "forgot password" and reset, the
invitation to set a first password, address verification, and changing the address.

Every mail is enqueued with ``app.mail.send_mail`` in the caller's transaction, so a mail goes out
exactly when the change that caused it commits (a rolled-back sign-up sends nothing).

"Forgot password" is itself a durable job (``account.forgot-password``): the request only enqueues
the address, and the job decides whether an account uses it. The answer to the form therefore does
the same work, writes the same row and takes the same time for a known and an unknown address (no
account enumeration through timing either).
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio.to_thread
import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.jobs import JobContext, enqueue, job_handler
from app.mail import OutgoingMail, send_mail
from domains.account import hooks, tokens
from domains.account.models import User
from domains.account.passwords import hash_password, verify_password
from domains.account.schemas import email_problem, normalise_email, password_problem
from domains.account.tokens import Link, Purpose

__all__ = [
    "FORGOT_PASSWORD", "EmailChange", "ForgotPassword", "confirm_email_change", "forgot_password",
    "mail_address_in_use", "mail_password_link",
    "mail_verification", "request_email_change", "set_password_from_link", "verify_address",
]

FORGOT_PASSWORD = "account.forgot-password"
TAG = "account"


class ForgotPassword(msgspec.Struct, frozen=True):
    email: str  # normalised; may belong to nobody


def _url(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{path}"


def _expiry_words(purpose: Purpose) -> str:
    lifetime = tokens.LIFETIMES[purpose]
    hours = int(lifetime.total_seconds() // 3600)
    if hours % 24 == 0 and hours >= 48:
        return f"{hours // 24} days"
    return "1 hour" if hours == 1 else f"{hours} hours"


async def mail_password_link(db: AsyncSession, base_url: str, user: User, purpose: Purpose = Purpose.RESET) -> None:
    """A reset link ("forgot password") or an invitation to set a first password (same page)."""
    secret = await tokens.issue(db, user, purpose)
    invite = purpose is Purpose.INVITE
    await send_mail(db, OutgoingMail(
        to=user.email, to_name=user.name,
        subject="Set your password" if invite else "Reset your password",
        template="account/invite" if invite else "account/reset",
        context={"name": user.name, "username": user.username,
                 "url": _url(base_url, f"/account/password/reset/{secret}"), "expires": _expiry_words(purpose)},
        tag=TAG,
    ))


async def mail_verification(db: AsyncSession, base_url: str, user: User) -> None:
    """Ask the member to confirm the address they signed up with."""
    secret = await tokens.issue(db, user, Purpose.VERIFY)
    await send_mail(db, OutgoingMail(
        to=user.email, to_name=user.name, subject="Confirm your email address", template="account/verify",
        context={"name": user.name, "username": user.username, "url": _url(base_url, f"/account/verify/{secret}"),
                 "expires": _expiry_words(Purpose.VERIFY)},
        tag=TAG,
    ))


async def forgot_password(db: AsyncSession, email: str) -> None:
    """What the form does: enqueue the address, whoever it belongs to (the job looks it up)."""
    await enqueue(db, forgot_password_job, ForgotPassword(email=normalise_email(email)))


@job_handler(FORGOT_PASSWORD, payload_type=ForgotPassword, max_attempts=3)
async def forgot_password_job(ctx: JobContext, payload: ForgotPassword) -> None:
    """Mail a reset link if an active member uses the address; for anybody else, nothing."""
    base_url = str(getattr(ctx.settings, "base_url", "") or "")
    async with ctx.sessionmaker() as session, session.begin():
        user = (await session.execute(select(User).where(User.email == payload.email))).scalar_one_or_none()
        if user is None or not user.is_active:
            return
        await mail_password_link(session, base_url, user, Purpose.RESET)


async def set_password_from_link(db: AsyncSession, secret: str, new_password: str) -> User | tokens.LinkProblem:
    """Spend a reset or invitation link and set the password.

    The password is checked before the link is spent, so a too-short password leaves the link
    working. Raises InputProblems for the password; returns why the link does not work, or the
    member (whose other sessions end: ``session_epoch`` moves on).
    """
    purposes = (Purpose.RESET, Purpose.INVITE)
    seen = await tokens.look(db, secret, purposes)
    if isinstance(seen, tokens.LinkProblem):
        return seen
    user = seen.user
    if problem := password_problem(new_password, username=user.username, email=user.email):
        raise InputProblems({"password": problem})
    spent = await tokens.spend(db, secret, purposes)
    if isinstance(spent, tokens.LinkProblem):
        return spent
    user = spent.user
    user.password_hash = await anyio.to_thread.run_sync(hash_password, new_password)
    user.session_epoch += 1
    # The link reached this address (and an address change retires every older link): confirmed.
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
        await db.flush()
        await hooks.user_verified(db, user)
    await db.flush()
    return user


async def verify_address(db: AsyncSession, secret: str) -> User | tokens.LinkProblem:
    """Spend a verification link: the member's address is confirmed."""
    spent = await tokens.spend(db, secret, (Purpose.VERIFY,))
    if isinstance(spent, tokens.LinkProblem):
        return spent
    user = spent.user
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
        await db.flush()
        await hooks.user_verified(db, user)
    await db.flush()
    return user


async def request_email_change(db: AsyncSession, base_url: str, user: User, new_email: str,
                               password: str) -> EmailChange:
    """Mail a confirmation link to the new address and a notice to the old one; change nothing yet.

    An address another account uses gets no link (it could never be confirmed), but the answer is
    the same (``EmailChange.owner`` says whose it is, for the caller to tell them).

    The current password is asked for: a borrowed session alone must not be able to move the
    account to another mailbox (and then reset the password from there).
    """
    email = normalise_email(new_email)
    errors: dict[str, str] = {}
    if problem := email_problem(email):
        errors["email"] = problem
    elif email == user.email:
        errors["email"] = "That is already your address."
    if not await anyio.to_thread.run_sync(verify_password, user.password_hash, password):
        errors["password"] = "That isn't your current password."
    if errors:
        raise InputProblems(errors)
    owner = await _address_owner(db, email, user)
    if owner is None:
        secret = await tokens.issue(db, user, Purpose.EMAIL_CHANGE, new_email=email)
        await send_mail(db, OutgoingMail(
            to=email, to_name=user.name, subject="Confirm your new email address", template="account/email_change",
            context={"name": user.name, "username": user.username, "new_email": email,
                     "url": _url(base_url, f"/account/email/confirm/{secret}"),
                     "expires": _expiry_words(Purpose.EMAIL_CHANGE)},
            tag=TAG,
        ))
    # The same notice either way: the answer and the member's own mailbox look alike whether or
    # not another account uses the address (the caller tells that account's owner, rate limited).
    await send_mail(db, OutgoingMail(
        to=user.email, to_name=user.name, subject="Your email address is about to change",
        template="account/email_change_notice",
        context={"name": user.name, "username": user.username, "new_email": email,
                 "reset_url": _url(base_url, "/account/password/forgot")},
        tag=TAG,
    ))
    return EmailChange(email=email, owner=owner)


class EmailChange(msgspec.Struct, frozen=True):
    """A requested address change: the new address and, if another account uses it, that account
    (no link was mailed then; :func:`mail_address_in_use` tells its owner)."""

    email: str
    owner: User | None = None


async def mail_address_in_use(db: AsyncSession, base_url: str, owner: User, attempt: str) -> None:
    """Tell ``owner`` that someone tried to sign up with their address (``attempt`` "signup") or to
    move another account to it ("email_change"), and how to get back in if it was them."""
    await send_mail(db, OutgoingMail(
        to=owner.email, to_name=owner.name, subject="Someone tried to use your email address",
        template="account/address_in_use",
        context={"name": owner.name, "username": owner.username, "attempt": attempt,
                 "login_url": _url(base_url, "/account/login"),
                 "reset_url": _url(base_url, "/account/password/forgot")},
        tag=TAG,
    ))


async def _address_owner(db: AsyncSession, email: str, user: User) -> User | None:
    found = await db.execute(select(User).where(func.lower(User.email) == email, User.id != user.id).limit(1))
    return found.scalar_one_or_none()


async def _address_taken(db: AsyncSession, email: str, user: User) -> bool:
    return await _address_owner(db, email, user) is not None


async def look_email_change(db: AsyncSession, secret: str) -> Link | tokens.LinkProblem:
    return await tokens.look(db, secret, (Purpose.EMAIL_CHANGE,))


async def confirm_email_change(db: AsyncSession, secret: str) -> User | tokens.LinkProblem:
    """Spend an address-change link: ``new_email`` becomes the member's (confirmed) address.

    Every other unused link of the member stops working: they were mailed to the old address.
    Raises InputProblems (409) if another account took the address meanwhile.
    """
    spent = await tokens.spend(db, secret, (Purpose.EMAIL_CHANGE,))
    if isinstance(spent, tokens.LinkProblem):
        return spent
    user, email = spent.user, spent.token.new_email or ""
    if email_problem(email) or await _address_taken(db, email, user):
        raise InputProblems({"form": "Another account uses that address now, so yours was not changed."}, status=409)
    user.email = email
    user.email_verified_at = datetime.now(UTC)
    await tokens.retire_all(db, user)
    await db.flush()
    await hooks.user_verified(db, user)
    return user
