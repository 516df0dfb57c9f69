"""Newsletter rules: lists, double opt-in, signed unsubscribe tokens, imports and campaigns.

Other domains call in through this module (the blog's Ghost importer hands over an export's
members with :func:`import_ghost_members`; whatever deletes a member calls :func:`forget_member`).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import math
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import urlsplit
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, CursorResult, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.csvsafe import csv_cell
from app.forms import InputProblems
from domains.account.models import User
from domains.account.newsletters.models import (
    CLAIMED,
    CONFIRMED,
    DELIVERED,
    DRAFT,
    FAILED,
    MEMBERS,
    PAUSED,
    PENDING,
    PUBLIC,
    QUEUED,
    SENDING,
    SENT,
    UNSUBSCRIBED,
    VISIBILITIES,
    Campaign,
    NewsletterList,
    Recipient,
    Subscription,
)
from domains.account.newsletters.schemas import (
    SLUG_RE_TEXT,
    CampaignForm,
    GhostMembersData,
    GhostMembersReport,
    ImportResult,
    ImportRow,
    ListForm,
    Progress,
)
from domains.account.schemas import EMAIL_RE, normalise_email

__all__ = [
    "BATCH_SIZE",
    "NewsletterService",
    "forget_member",
    "ghost_members",
    "header_problem",
    "import_ghost_members",
    "read_unsubscribe_token",
    "subscribe_new_member",
    "unsubscribe_token",
]

BATCH_SIZE = 100  # recipients per durable job: one SMTP connection each
RESEND_AFTER = timedelta(minutes=10)
CONFIRM_WITHIN = timedelta(days=7)  # how long a confirmation link works
PER_PAGE = 50
SLUG_RE = re.compile(SLUG_RE_TEXT)
# /newsletters/confirm/<token> and /newsletters/unsubscribe/<token> share the list pages' prefix.
RESERVED_SLUGS = frozenset({"confirm", "unsubscribe"})
# Anything that could end a header line or hide in one: C0/C1 controls, DEL, and the Unicode line
# and paragraph separators (RFC 5322 §2.2: a header field is one line; §3.2.2 folding is ours).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- Header safety -----------------------------------------------------------------------------

def header_problem(value: str, what: str = "This field") -> str | None:
    """Why ``value`` may not go into a mail header (names, subjects): a line break or another
    control character would start a new header (header injection). Refused, never cleaned."""
    if _CONTROL.search(value):
        return f"{what} may not contain line breaks or control characters."
    return None


def header_safe(value: str) -> str:
    """For imported data (Ghost, CSV names) that we keep rather than refuse: controls become spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def email_ok(email: str) -> bool:
    """An address the mail kernel will send to (and the account domain's rule as well)."""
    from app.mail import valid_address

    return bool(EMAIL_RE.match(email)) and valid_address(email) == email


# --- Signed unsubscribe tokens (RFC 8058 §3.1: the URL alone must identify the subscription) --

_HKDF_SALT = b"rose-ash/newsletter/unsubscribe/salt/v1"
_HKDF_INFO = b"rose-ash newsletter unsubscribe v1"
_MAC_BYTES = 16


@lru_cache(maxsize=8)
def _unsubscribe_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return hkdf.derive(secret_key.encode("utf-8"))


def _mac(secret_key: str, subscription_id: UUID) -> bytes:
    return hmac.new(_unsubscribe_key(secret_key), b"unsubscribe:" + subscription_id.bytes,
                    hashlib.sha256).digest()[:_MAC_BYTES]


def unsubscribe_token(secret_key: str, subscription_id: UUID) -> str:
    """``base64url(subscription id ‖ HMAC-SHA256(key, id)[:16])``: bound to one subscription,
    unforgeable without SECRET_KEY, and never expiring (a mail may be read years later)."""
    raw = subscription_id.bytes + _mac(secret_key, subscription_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_unsubscribe_token(secret_key: str, token: str) -> UUID | None:
    """The subscription id an unaltered token names, else None."""
    if len(token) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    if len(raw) != 16 + _MAC_BYTES:
        return None
    sid = UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _mac(secret_key, sid)):
        return None
    # Only the canonical spelling: the last character's spare bits could otherwise vary.
    return sid if hmac.compare_digest(token, unsubscribe_token(secret_key, sid)) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- Text part of an HTML issue ---------------------------------------------------------------

class _Text(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote",
                        "pre", "tr", "figure", "hr", "ul", "ol", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._href: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        if tag in self.BLOCKS:
            self.out.append("\n\n" if tag not in ("br", "li", "tr") else "\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if tag == "a" and self._href and self._href.startswith(("http://", "https://")):
            self.out.append(f" <{self._href}>")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- Account hooks ----------------------------------------------------------------------------

async def subscribe_new_member(session: AsyncSession, user: User) -> None:
    """When a member's address is confirmed (sign-up verification, a reset or invitation link, an
    address change): adopt that address's bare subscriptions and put the member on every
    ``subscribe_on_signup`` list they have no subscription to yet. Never at sign-up itself: an
    unverified address may be someone else's, and subscribing it would bypass double opt-in."""
    if user.email_verified_at is None:
        return
    service = NewsletterService(session)
    lists = (await session.scalars(select(NewsletterList).where(NewsletterList.subscribe_on_signup.is_(True)))).all()
    for lst in lists:
        sub = await service._member_sub(user, lst)
        # An earlier "unsubscribe" of this member or address stands; a pending one is now confirmed.
        if sub is None or sub.status != UNSUBSCRIBED:
            await service.member_subscribe(user, lst)


async def forget_member(session: AsyncSession, user_id: UUID) -> int:
    """Delete a member's subscriptions and what the campaigns kept of their address (issue 15
    item 5). Account deletion calls this in its transaction (the foreign keys cascade too)."""
    subs = select(Subscription.id).where(Subscription.user_id == user_id).scalar_subquery()
    await session.execute(delete(Recipient).where(Recipient.subscription_id.in_(subs)))
    res = await session.execute(delete(Subscription).where(Subscription.user_id == user_id))
    return cast("CursorResult[Any]", res).rowcount


# --- The service ------------------------------------------------------------------------------

class NewsletterService:
    def __init__(self, session: AsyncSession) -> None:
        self.db = session

    # Lists ---------------------------------------------------------------------------------

    async def lists(self, *, visibility: str | None = None) -> list[NewsletterList]:
        query = select(NewsletterList).order_by(NewsletterList.name)
        if visibility is not None:
            query = query.where(NewsletterList.visibility == visibility)
        return list((await self.db.scalars(query)).all())

    async def get_list(self, list_id: UUID) -> NewsletterList | None:
        return await self.db.get(NewsletterList, list_id)

    async def public_list(self, slug: str) -> NewsletterList | None:
        lst = await self.db.scalar(select(NewsletterList).where(NewsletterList.slug == slug))
        return lst if lst is not None and lst.visibility == PUBLIC else None

    def _list_problems(self, form: ListForm) -> dict[str, str]:
        errors: dict[str, str] = {}
        name, sender = form.name.strip(), form.sender_name.strip()
        if not name or len(name) > 100:
            errors["name"] = "Give the list a name (100 characters at most)."
        elif problem := header_problem(form.name, "The name"):
            errors["name"] = problem
        if len(sender) > 100:
            errors["sender_name"] = "Use 100 characters at most."
        elif problem := header_problem(form.sender_name, "The sender name"):
            errors["sender_name"] = problem
        if not SLUG_RE.match(form.slug.strip()):
            errors["slug"] = "Use lowercase letters, digits and '-' (60 at most)."
        elif form.slug.strip() in RESERVED_SLUGS:
            errors["slug"] = "That slug is taken by the site's own pages."
        if form.visibility not in VISIBILITIES:
            errors["visibility"] = "Choose public or members."
        if len(form.description) > 2000:
            errors["description"] = "Use 2000 characters at most."
        return errors

    async def save_list(self, form: ListForm, lst: NewsletterList | None = None) -> NewsletterList:
        errors = self._list_problems(form)
        slug = form.slug.strip()
        if not errors:
            owner = await self.db.scalar(select(NewsletterList.id).where(NewsletterList.slug == slug))
            if owner is not None and (lst is None or owner != lst.id):
                errors["slug"] = "Another list has that slug."
        if errors:
            raise InputProblems(errors)
        if lst is None:
            lst = NewsletterList(slug=slug, name="")
            self.db.add(lst)
        lst.name, lst.slug = form.name.strip(), slug
        lst.description, lst.sender_name = form.description.strip(), form.sender_name.strip()
        lst.visibility, lst.subscribe_on_signup = form.visibility, form.subscribe_on_signup is not None
        await self.db.flush()
        return lst

    async def delete_list(self, lst: NewsletterList) -> None:
        await self.db.delete(lst)
        await self.db.flush()

    async def counts(self) -> dict[UUID, int]:
        rows = await self.db.execute(select(Subscription.list_id, func.count()).where(
            Subscription.status == CONFIRMED).group_by(Subscription.list_id))
        return {r[0]: r[1] for r in rows}

    # Subscribing ---------------------------------------------------------------------------

    async def subscribe_public(self, lst: NewsletterList, email: str,
                               name: str) -> tuple[Subscription | None, str | None]:
        """Double opt-in: a pending subscription and a fresh confirmation token to mail, or
        ``(sub, None)`` when the address is already confirmed (nothing to mail: the caller shows
        the same page either way, so the form tells nobody who is subscribed)."""
        email = normalise_email(email)
        errors: dict[str, str] = {}
        if not email_ok(email):
            errors["email"] = "That doesn't look like an email address."
        if len(name) > 100:
            errors["name"] = "Use 100 characters at most."
        elif problem := header_problem(name, "Your name"):
            errors["name"] = problem
        if errors:
            raise InputProblems(errors)
        sub = await self.db.scalar(select(Subscription).where(
            Subscription.list_id == lst.id, Subscription.email == email))
        if sub is not None and sub.status == CONFIRMED:
            return sub, None
        if sub is not None and sub.status == PENDING and sub.updated_at > utcnow() - RESEND_AFTER:
            return sub, None  # one confirmation mail per address per RESEND_AFTER: the form is no mail cannon
        token = secrets.token_urlsafe(32)
        if sub is None:
            sub = Subscription(list_id=lst.id, email=email, name=name.strip(), status=PENDING)
            self.db.add(sub)
        sub.status, sub.token_hash = PENDING, _token_hash(token)
        if name.strip():
            sub.name = name.strip()
        await self.db.flush()
        return sub, token

    async def confirm(self, token: str) -> tuple[Subscription, NewsletterList] | None:
        """Confirm the subscription ``token`` names; None for an unknown, spent or expired token."""
        if not token or len(token) > 100:
            return None
        digest, cutoff = _token_hash(token), utcnow() - CONFIRM_WITHIN
        # A token is good once, and only for CONFIRM_WITHIN after it was mailed (issuing one touches
        # ``updated_at``): an old mail found later in a mailbox must not subscribe anyone.
        fresh = (Subscription.token_hash == digest, Subscription.status == PENDING, Subscription.updated_at > cutoff)
        sub = await self.db.scalar(select(Subscription).where(*fresh))
        if sub is None:
            return None
        res = await self.db.execute(update(Subscription).where(Subscription.id == sub.id, *fresh).values(
            status=CONFIRMED, confirmed_at=utcnow(), unsubscribed_at=None, token_hash=None))
        if cast("CursorResult[Any]", res).rowcount != 1:
            return None  # another request spent it meanwhile
        await self.db.refresh(sub)
        lst = await self.db.get(NewsletterList, sub.list_id)
        assert lst is not None
        return sub, lst

    def _mine(self, user: User) -> ColumnElement[bool]:
        """The member's subscriptions: by account, and by address only once the address is
        verified (until then it may be someone else's, whose subscriptions are none of theirs)."""
        if user.email_verified_at is None:
            return Subscription.user_id == user.id
        return or_(Subscription.user_id == user.id, Subscription.email == user.email)

    async def member_lists(self, user: User) -> list[tuple[NewsletterList, Subscription | None]]:
        """Every list a member may join (public and members-only), with their subscription."""
        lists = await self.lists()
        subs = {s.list_id: s for s in (await self.db.scalars(select(Subscription).where(self._mine(user)))).all()}
        return [(lst, subs.get(lst.id)) for lst in lists]

    async def _member_sub(self, user: User, lst: NewsletterList) -> Subscription | None:
        found: Subscription | None = await self.db.scalar(select(Subscription).where(
            Subscription.list_id == lst.id, self._mine(user)))
        return found

    async def member_subscribe(self, user: User, lst: NewsletterList) -> Subscription:
        """A signed-in member with a verified address joins at once (their own address), or takes
        over the bare-address subscription that already has it. Raises InputProblems while the
        address is unverified: joining then would subscribe a mailbox that never opted in."""
        if user.email_verified_at is None:
            raise InputProblems({"form": "Confirm your email address first: follow the link we mailed you."},
                                status=409)
        sub = await self._member_sub(user, lst)
        if sub is None:
            sub = Subscription(list_id=lst.id, email=user.email, name=header_safe(user.name)[:100], status=PENDING)
            self.db.add(sub)
        sub.user_id, sub.email = user.id, user.email
        if sub.status != CONFIRMED:
            sub.status, sub.confirmed_at, sub.unsubscribed_at = CONFIRMED, utcnow(), None
        sub.token_hash = None
        await self.db.flush()
        return sub

    async def member_unsubscribe(self, user: User, lst: NewsletterList) -> bool:
        sub = await self._member_sub(user, lst)
        return sub is not None and await self.unsubscribe(sub.id)

    async def unsubscribe(self, subscription_id: UUID) -> bool:
        """Idempotent: True if this call unsubscribed. Queued mails to the address are dropped."""
        res = await self.db.execute(update(Subscription).where(
            Subscription.id == subscription_id, Subscription.status != UNSUBSCRIBED,
        ).values(status=UNSUBSCRIBED, unsubscribed_at=utcnow()))
        await self.db.execute(update(Recipient).where(
            Recipient.subscription_id == subscription_id, Recipient.status == QUEUED).values(status=UNSUBSCRIBED))
        return cast("CursorResult[Any]", res).rowcount == 1

    async def subscription(self, subscription_id: UUID) -> tuple[Subscription, NewsletterList] | None:
        sub = await self.db.get(Subscription, subscription_id)
        if sub is None:
            return None
        lst = await self.db.get(NewsletterList, sub.list_id)
        return (sub, lst) if lst is not None else None

    # Administration -----------------------------------------------------------------------

    async def subscribers(self, lst: NewsletterList, q: str = "", page: int = 1) -> tuple[list[Subscription], int]:
        cond = [Subscription.list_id == lst.id]
        if q.strip():
            like = f"%{q.strip().lower().replace('%', '').replace('_', '')}%"
            cond.append(or_(func.lower(Subscription.email).like(like), func.lower(Subscription.name).like(like)))
        total = await self.db.scalar(select(func.count()).select_from(Subscription).where(*cond)) or 0
        rows = (await self.db.scalars(select(Subscription).where(*cond).order_by(Subscription.email)
                                      .limit(PER_PAGE).offset((page - 1) * PER_PAGE))).all()
        return list(rows), int(total)

    @staticmethod
    def pages(total: int) -> int:
        return max(1, math.ceil(total / PER_PAGE))

    async def remove_subscriber(self, lst: NewsletterList, subscription_id: UUID) -> bool:
        await self.db.execute(delete(Recipient).where(Recipient.subscription_id == subscription_id,
                                                      Recipient.status == QUEUED))
        res = await self.db.execute(delete(Subscription).where(
            Subscription.id == subscription_id, Subscription.list_id == lst.id))
        return cast("CursorResult[Any]", res).rowcount == 1

    async def import_csv(self, lst: NewsletterList, text: str) -> ImportResult:
        """``email,name`` rows (a header line is recognised and skipped). Valid new addresses are
        subscribed (confirmed: the administrator vouches for them); every row gets an outcome."""
        existing = {e for (e,) in (await self.db.execute(
            select(Subscription.email).where(Subscription.list_id == lst.id))).all()}
        rows: list[ImportRow] = []
        seen: set[str] = set()
        new: list[dict[str, Any]] = []
        now = utcnow()
        try:
            records = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputProblems({"csv": f"The file could not be read as CSV: {exc}."}) from None
        for number, record in enumerate(records, start=1):
            if not record or not "".join(record).strip():
                continue
            raw_email = record[0].strip()
            if number == 1 and raw_email.lower() in ("email", "e-mail", "email address"):
                continue
            email = normalise_email(raw_email)
            name = record[1].strip() if len(record) > 1 else ""
            if not email_ok(email):
                rows.append(ImportRow(line=number, email=raw_email[:254], outcome="malformed",
                                      detail="not an email address"))
            elif len(name) > 100 or header_problem(name):
                rows.append(ImportRow(line=number, email=email, outcome="malformed",
                                      detail="the name is too long or holds control characters"))
            elif email in seen:
                rows.append(ImportRow(line=number, email=email, outcome="duplicate",
                                      detail="an earlier line has this address"))
            elif email in existing:
                seen.add(email)
                rows.append(ImportRow(line=number, email=email, outcome="exists", detail="already on the list"))
            else:
                seen.add(email)
                new.append({"list_id": lst.id, "email": email, "name": name, "status": CONFIRMED,
                            "confirmed_at": now})
                rows.append(ImportRow(line=number, email=email, outcome="added"))
        if len(rows) > 100_000:
            raise InputProblems({"csv": "Import at most 100,000 rows at a time."})
        await self._insert_subscriptions(new)
        return ImportResult(rows=rows)

    async def _insert_subscriptions(self, values: list[dict[str, Any]]) -> None:
        for start in range(0, len(values), 1000):
            await self.db.execute(insert(Subscription), values[start:start + 1000])

    async def export_csv(self, lst: NewsletterList) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["email", "name", "status", "created_at", "confirmed_at", "unsubscribed_at"])
        rows = await self.db.execute(
            select(Subscription, User.email).outerjoin(User, User.id == Subscription.user_id)
            .where(Subscription.list_id == lst.id).order_by(Subscription.email))
        for sub, member_email in rows:
            writer.writerow([csv_cell(member_email or sub.email), csv_cell(sub.name), sub.status,
                             _iso(sub.created_at), _iso(sub.confirmed_at), _iso(sub.unsubscribed_at)])
        return out.getvalue()

    # Campaigns ------------------------------------------------------------------------------

    async def campaigns(self, user: User) -> list[tuple[Campaign, NewsletterList]]:
        query = select(Campaign, NewsletterList).join(NewsletterList, NewsletterList.id == Campaign.list_id)
        if not user.can_edit_all_posts:
            query = query.where(Campaign.author_id == user.id)
        return [(c, lst) for c, lst in (await self.db.execute(query.order_by(Campaign.created_at.desc()))).all()]

    async def campaign_for(self, user: User, campaign_id: UUID) -> tuple[Campaign, NewsletterList] | None:
        """The campaign if ``user`` may see it (its author, editors and administrators); else None (404)."""
        row = (await self.db.execute(select(Campaign, NewsletterList).join(
            NewsletterList, NewsletterList.id == Campaign.list_id).where(Campaign.id == campaign_id))).first()
        if row is None:
            return None
        campaign, lst = row
        if not user.can_edit_all_posts and campaign.author_id != user.id:
            return None
        return campaign, lst

    async def create_campaign(self, author: User, form: CampaignForm, base_url: str) -> Campaign:
        errors: dict[str, str] = {}
        subject = form.subject.strip()
        if not subject or len(subject) > 200:
            errors["subject"] = "Give the issue a subject (200 characters at most)."
        elif problem := header_problem(form.subject, "The subject"):
            errors["subject"] = problem
        lst = None
        with contextlib.suppress(ValueError):
            lst = await self.get_list(UUID(form.list_id))
        if lst is None:
            errors["list_id"] = "Choose a list."
        post_id: UUID | None = None
        if form.post_id:
            try:
                post_id = UUID(form.post_id)
            except ValueError:
                errors["post_id"] = "Choose a published post."
            else:
                if await self._post_for(author, post_id, base_url) is None:
                    errors["post_id"] = "Choose a published post."
        elif not form.markdown.strip():
            errors["markdown"] = "Pick a published post or write the issue in Markdown."
        if len(form.markdown) > 200_000:
            errors["markdown"] = "That issue is too long."
        if errors:
            raise InputProblems(errors)
        assert lst is not None
        campaign = Campaign(list_id=lst.id, author_id=author.id, subject=subject, post_id=post_id,
                            markdown="" if post_id else form.markdown, status=DRAFT)
        self.db.add(campaign)
        await self.db.flush()
        return campaign

    async def _post_for(self, user: User, post_id: UUID, base_url: str) -> Any:
        from domains.blog.services import BlogService

        post = await BlogService(self.db, base_url=base_url).get_published(post_id)
        if post is None or post.type != "post":
            return None
        if not user.can_edit_all_posts and user.username not in {a.username for a in post.authors}:
            return None
        return post

    async def publishable_posts(self, user: User, base_url: str) -> list[Any]:
        """Published posts this user may send: their own, or every one for editors and admins."""
        from domains.blog.services import BlogService

        blog = BlogService(self.db, base_url=base_url)
        posts, _ = await blog.list_public(page=1, per_page=50, author=None if user.can_edit_all_posts else user)
        return list(posts)

    async def content(self, campaign: Campaign, base_url: str) -> tuple[str, str]:
        """``(html, web URL)`` of the issue: the frozen copy once sending started, else rendered now."""
        if campaign.status != DRAFT and campaign.body_html:
            return campaign.body_html, campaign.source_url
        if campaign.post_id is not None:
            from domains.blog.services import BlogService

            post = await BlogService(self.db, base_url=base_url).get_published(campaign.post_id)
            if post is None:
                raise InputProblems({"form": "The post is no longer published."})
            return post.html, post.url
        from domains.blog.services import render_markdown

        return render_markdown(campaign.markdown), ""

    async def start(self, campaign: Campaign, base_url: str, rate: int) -> int:
        """Draft → sending: freeze the content, write one recipient row per distinct confirmed
        address and one durable job per batch, paced by ``rate`` mails per minute; all in the
        caller's transaction, so either everything is queued or nothing is."""
        html, url = await self.content(campaign, base_url)
        res = await self.db.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status == DRAFT)
                                    .values(status=SENDING, body_html=html, source_url=url, started_at=utcnow()))
        if cast("CursorResult[Any]", res).rowcount != 1:
            raise InputProblems({"form": "This issue is already being sent."}, status=409)
        rows = await self.db.execute(
            select(Subscription.id, Subscription.email, Subscription.name, User.email)
            .outerjoin(User, User.id == Subscription.user_id)
            .where(Subscription.list_id == campaign.list_id, Subscription.status == CONFIRMED)
            .order_by(Subscription.id))
        seen: set[str] = set()
        values: list[dict[str, Any]] = []
        for sid, email, name, member_email in rows:
            address = normalise_email(member_email or email)
            if address in seen:
                continue
            seen.add(address)
            values.append({"campaign_id": campaign.id, "subscription_id": sid, "email": address,
                           "name": name, "batch": len(values) // BATCH_SIZE, "status": QUEUED})
        for start in range(0, len(values), 1000):
            await self.db.execute(insert(Recipient), values[start:start + 1000])
        batches = math.ceil(len(values) / BATCH_SIZE)
        await self.db.execute(update(Campaign).where(Campaign.id == campaign.id).values(batches=batches))
        if batches == 0:
            await self.db.execute(update(Campaign).where(Campaign.id == campaign.id)
                                  .values(status=SENT, finished_at=utcnow()))
        await self._enqueue(campaign.id, range(batches), rate)
        await self.db.refresh(campaign)
        return len(values)

    async def _enqueue(self, campaign_id: UUID, batches: Sequence[int], rate: int) -> None:
        from domains.account.newsletters.jobs import send_batch
        from domains.account.newsletters.schemas import SendBatch

        # Batch n may start n·BATCH_SIZE/rate minutes from now; each paces itself inside too.
        spacing = BATCH_SIZE * 60.0 / rate if rate > 0 else 0.0
        now = utcnow()
        for n, batch in enumerate(batches):
            await send_batch.enqueue(self.db, SendBatch(campaign_id=campaign_id, batch=batch),
                                     run_at=now + timedelta(seconds=n * spacing),
                                     unique_key=f"newsletter:{campaign_id}:{batch}")

    async def pause(self, campaign: Campaign) -> bool:
        res = await self.db.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status == SENDING)
                                    .values(status=PAUSED))
        return cast("CursorResult[Any]", res).rowcount == 1

    async def resume(self, campaign: Campaign, rate: int) -> bool:
        """Paused (or a sending campaign whose jobs gave up) → sending: a job again for every
        batch with queued recipients (a live job for a batch is kept, by its unique key)."""
        res = await self.db.execute(update(Campaign).where(
            Campaign.id == campaign.id, Campaign.status.in_((PAUSED, SENDING))).values(status=SENDING))
        if cast("CursorResult[Any]", res).rowcount != 1:
            return False
        batches = sorted({b for (b,) in (await self.db.execute(select(Recipient.batch).where(
            Recipient.campaign_id == campaign.id, Recipient.status == QUEUED).distinct())).all()})
        await self._enqueue(campaign.id, batches, rate)
        await self.db.refresh(campaign)
        return True

    async def progress(self, campaign_id: UUID) -> Progress:
        rows = await self.db.execute(select(Recipient.status, func.count()).where(
            Recipient.campaign_id == campaign_id).group_by(Recipient.status))
        counts = {status: n for status, n in rows}
        return Progress(queued=counts.get(QUEUED, 0), sending=counts.get(CLAIMED, 0),
                        sent=counts.get(DELIVERED, 0), failed=counts.get(FAILED, 0),
                        unsubscribed=counts.get(UNSUBSCRIBED, 0))

    async def failures(self, campaign_id: UUID, limit: int = 50) -> list[Recipient]:
        return list((await self.db.scalars(select(Recipient).where(
            Recipient.campaign_id == campaign_id, Recipient.status == FAILED).order_by(Recipient.email)
            .limit(limit))).all())


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


# --- Ghost import (called by the blog's importer, in its transaction) -------------------------

def ghost_members(raw: bytes) -> GhostMembersData:
    """The newsletters and members of a Ghost export the blog's importer has already validated."""
    import msgspec

    from domains.account.newsletters.schemas import ghost_data

    try:
        return ghost_data(msgspec.json.decode(raw))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InputProblems({"members": f"The export's members or newsletters are malformed: {exc}"}) from None


async def import_ghost_members(session: AsyncSession, data: GhostMembersData, *,
                               dry_run: bool = False) -> GhostMembersReport:
    """Ghost's ``newsletters`` become lists (matched by Ghost id, then slug) and its ``members``
    their confirmed subscribers, per ``members_newsletters`` (Ghost 5+) or, in older exports, the
    member's ``subscribed`` flag on the one newsletter. Unsubscribed addresses stay unsubscribed."""
    report = GhostMembersReport()
    lists: dict[str, NewsletterList] = {}
    for gn in data.newsletters:
        gid = str(gn.id)
        if (gn.status or "active") != "active":
            report.skipped.append(f"newsletter {gn.slug or gid}: archived")
            continue
        slug = (gn.slug or "").strip().lower()
        if not SLUG_RE.match(slug):
            slug = re.sub(r"[^a-z0-9-]+", "-", (gn.name or gid).lower()).strip("-")[:60] or f"newsletter-{gid}"[:60]
        lst = await session.scalar(select(NewsletterList).where(
            or_(NewsletterList.ghost_id == gid, NewsletterList.slug == slug)))
        if lst is None:
            lst = NewsletterList(slug=slug, name="", ghost_id=gid)
            report.lists_created += 1
            if not dry_run:
                session.add(lst)
        else:
            report.lists_updated += 1
        lst.ghost_id = gid
        lst.name = header_safe(gn.name or slug)[:100]
        lst.description = (gn.description or "")[:2000]
        lst.sender_name = header_safe(gn.sender_name or "")[:100]
        lst.visibility = MEMBERS if (gn.visibility or "") == "paid" else PUBLIC
        lst.subscribe_on_signup = bool(gn.subscribe_on_signup)
        lists[gid] = lst
    if not dry_run:
        await session.flush()
    wanted: dict[str, list[str]] = {}
    for rel in data.members_newsletters:
        wanted.setdefault(str(rel.member_id), []).append(str(rel.newsletter_id))
    if not data.newsletters and any(m.subscribed for m in data.members):  # Ghost ≤ 4: one newsletter
        legacy = await session.scalar(select(NewsletterList).where(NewsletterList.slug == "newsletter"))
        if legacy is None:
            legacy = NewsletterList(slug="newsletter", name="Newsletter", visibility=PUBLIC)
            report.lists_created += 1
            if not dry_run:
                session.add(legacy)
                await session.flush()
        lists["legacy"] = legacy
        for m in data.members:
            if m.subscribed:
                wanted.setdefault(str(m.id), []).append("legacy")
    members = {str(m.id): m for m in data.members}
    seen: set[tuple[str, str]] = set()
    for mid, gids in wanted.items():
        member = members.get(mid)
        if member is None:
            report.skipped.append(f"members_newsletters: member {mid} is not in the file")
            continue
        email = normalise_email(member.email or "")
        if not email_ok(email):
            report.skipped.append(f"member {mid}: {email or 'no address'} is not an email address")
            continue
        for gid in gids:
            lst = lists.get(gid)
            if lst is None:
                report.skipped.append(f"member {mid}: newsletter {gid} is not imported")
                continue
            if (gid, email) in seen:
                continue
            seen.add((gid, email))
            existing = None if lst.id is None else await session.scalar(select(Subscription.id).where(
                Subscription.list_id == lst.id, Subscription.email == email))
            if existing is not None:
                report.subscriptions_kept += 1
                continue
            report.subscriptions_added += 1
            if not dry_run:
                session.add(Subscription(list_id=lst.id, email=email, name=header_safe(member.name or "")[:100],
                                         status=CONFIRMED, confirmed_at=utcnow()))
    if not dry_run:
        await session.flush()
    return report


def mail_host(base_url: str) -> str:
    return urlsplit(base_url).hostname or "localhost"


def list_id_header(lst: NewsletterList, base_url: str) -> str:
    """RFC 2919 §2: ``List-Id: <list-label.host>``; the slug is [a-z0-9-], so always a dot-atom."""
    return f"<{lst.slug}.{mail_host(base_url)}>"


def unsubscribe_headers(unsubscribe_url: str, lst: NewsletterList, base_url: str) -> dict[str, str]:
    """RFC 8058 §3.1: the https URL a mail client POSTs ``List-Unsubscribe=One-Click`` to; RFC 2919 List-Id.

    No ``mailto:`` alternative (RFC 2369 §3.2 allows one): nothing here reads inbound mail, so an
    unsubscribe request mailed to that address would be lost while the reader believes it done.
    """
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": list_id_header(lst, base_url),
    }
