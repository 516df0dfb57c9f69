"""Producer rules: profiles (name, description, location, contact, logo) and who manages them.

A member with the producer role manages the producers they are a member of; staff manage all.
A producer's name and logo show on its products' pages and cards, all tagged
``market-producer:<id>``, so a profile change purges that key in the same transaction.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.forms import InputProblems
from domains.account.models import User
from domains.account.schemas import normalise_username
from domains.market import keys
from domains.market.guards import check_producer, is_staff
from domains.market.models import Media, Producer, ProducerMember
from domains.market.schemas import RESERVED_SLUGS, SLUG_RE, ProducerInput, ProducerRead, slugify
from fragments.purge import emit_purge

__all__ = ["ProducerService"]

LIMITS = {"name": 200, "description": 5000, "location": 200, "contact": 300}


class ProducerService:
    def __init__(self, db: AsyncSession, *, base_url: str = "") -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")

    def _load(self) -> tuple[object, ...]:
        return (selectinload(Producer.member_links).selectinload(ProducerMember.user), selectinload(Producer.logo))

    async def get(self, producer_id: UUID) -> Producer | None:
        stmt = select(Producer).where(Producer.id == producer_id).options(*self._load())  # type: ignore[arg-type]
        return (await self.db.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def by_slug(self, slug: str) -> Producer | None:
        stmt = select(Producer).where(Producer.slug == slug).options(*self._load())  # type: ignore[arg-type]
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def for_user(self, user: User) -> list[Producer]:
        """The producers ``user`` may manage: every one for staff, their own for a producer."""
        stmt = select(Producer).options(*self._load()).order_by(Producer.name)  # type: ignore[arg-type]
        if not is_staff(user):
            mine = select(ProducerMember.producer_id).where(ProducerMember.user_id == user.id)
            stmt = stmt.where(Producer.id.in_(mine))
        return list((await self.db.execute(stmt)).scalars().all())

    async def all(self) -> list[Producer]:
        stmt = select(Producer).options(selectinload(Producer.logo)).order_by(Producer.name)
        return list((await self.db.execute(stmt)).scalars().all())

    async def own(self, user: User) -> Producer:
        """The producer ``user`` is a member of (the first by name if several, so the choice is one
        they can see in their producers list); only a member of none gets a profile named after
        them (so a new producer can list goods at once and fill the profile in later). An
        administrator who made "Hillside Farm" and joined it sells as Hillside Farm, not as themself."""
        mine = (await self.db.execute(
            select(Producer).join(ProducerMember, ProducerMember.producer_id == Producer.id)
            .where(ProducerMember.user_id == user.id).options(*self._load())  # type: ignore[arg-type]
            .order_by(Producer.name, Producer.id).limit(1))).scalar_one_or_none()
        if mine is not None:
            return mine
        return await self.save(None, ProducerInput(name=user.name), members=[user])

    def read(self, producer: Producer) -> ProducerRead:
        from domains.market.services.catalogue import producer_read

        return producer_read(producer, base_url=self.base_url)

    async def suggest_slug(self, base: str, *, exclude: UUID | None = None) -> str:
        base = base[:180].strip("-") or "producer"
        taken = set((await self.db.execute(
            select(Producer.slug).where(or_(Producer.slug == base, Producer.slug.like(f"{base}-%")),
                                        *([Producer.id != exclude] if exclude else [])))).scalars().all())
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def save(self, editor: User | None, data: ProducerInput, *, producer: Producer | None = None,
                   members: list[User] | None = None) -> Producer:
        """Create or update a profile. ``editor`` None is the system; otherwise not theirs is a 404.

        ``members`` (creation only) become its first members; an editor creating one becomes a member.
        """
        if producer is not None and editor is not None:
            check_producer(editor, producer)
        errors: dict[str, str] = {}
        name = " ".join(data.name.split())
        if not name:
            errors["name"] = "Give the producer a name."
        for field, limit in LIMITS.items():
            if len(getattr(data, field)) > limit:
                errors[field] = f"Use {limit:,} characters at most."
        exclude = producer.id if producer is not None else None
        typed = data.slug.strip()
        if typed:
            slug = slugify(typed, "")
            if not SLUG_RE.match(slug) or slug != typed.lower():
                errors["slug"] = "Use lowercase letters, digits and hyphens."
            elif slug in RESERVED_SLUGS:
                suggestion = await self.suggest_slug(slug + "-producer", exclude=exclude)
                errors["slug"] = f"“{slug}” is reserved. Try “{suggestion}”."
            else:
                owner = (await self.db.execute(select(Producer.id).where(Producer.slug == slug))).scalar_one_or_none()
                if owner is not None and owner != exclude:
                    errors["slug"] = (f"“{slug}” is already another producer's. "
                                      f"Try “{await self.suggest_slug(slug, exclude=exclude)}”.")
        elif producer is not None:
            slug = producer.slug
        else:
            slug = await self.suggest_slug(slugify(name or "producer", "producer"))
        if errors:
            raise InputProblems(errors, 422)
        created = producer is None
        if producer is None:
            producer = Producer(name=name, slug=slug, revision=0)
            producer.member_links = []
            producer.logo = None
            self.db.add(producer)
            await self.db.flush()
            for user in [*(members or []), *([editor] if editor is not None and not is_staff(editor) else [])]:
                if all(link.user_id != user.id for link in producer.member_links):
                    producer.member_links.append(ProducerMember(producer_id=producer.id, user_id=user.id, user=user))
        producer.name = name
        producer.slug = slug
        producer.description = data.description.strip()
        producer.location = " ".join(data.location.split())
        producer.contact = data.contact.strip()
        producer.revision += 1
        await self.db.flush()
        if not created:  # a new profile is on no page yet
            await emit_purge(self.db, [keys.producer(producer.id)])
        return producer

    async def set_logo(self, editor: User | None, producer: Producer, media: Media | None) -> Producer:
        if editor is not None:
            check_producer(editor, producer)
        producer.logo_id = media.id if media is not None else None
        producer.logo = media
        producer.revision += 1
        await self.db.flush()
        await emit_purge(self.db, [keys.producer(producer.id)])
        return producer

    async def add_member(self, producer: Producer, user: User) -> None:
        """Make ``user`` a member (staff's decision; they also need the producer role to act)."""
        if any(link.user_id == user.id for link in producer.member_links):
            return
        producer.member_links.append(ProducerMember(producer_id=producer.id, user_id=user.id, user=user))
        await self.db.flush()

    async def add_member_named(self, producer: Producer, username: str) -> User:
        """Make the member called ``username`` (a leading ``@`` is allowed) a member of ``producer``;
        an unknown name is a 422 naming it, and nothing is written."""
        name = normalise_username(username.strip().removeprefix("@"))
        if not name:
            raise InputProblems({"username": "Give the username of the member to add."}, 422)
        user = (await self.db.execute(select(User).where(User.username == name))).scalar_one_or_none()
        if user is None:
            raise InputProblems({"username": f"No member is called @{name[:40]}."}, 422)
        await self.add_member(producer, user)
        return user

    async def remove_member(self, producer: Producer, user: User) -> None:
        link = next((link for link in producer.member_links if link.user_id == user.id), None)
        if link is not None:
            producer.member_links.remove(link)
            await self.db.flush()
