"""Account rules: sign-up, sign-in, profile and password changes, personal access tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio.to_thread
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.forms import InputProblems
from domains.account import hooks, keys
from domains.account.guards import lockout_problem
from domains.account.models import AccessToken, User
from domains.account.passwords import hash_password, needs_rehash, verify_password
from domains.account.schemas import (
    SCOPES,
    SignupInput,
    email_problem,
    normalise_email,
    normalise_username,
    password_problem,
    username_problem,
)
from fragments.purge import emit_purge

TOKEN_PREFIX = "rat_"
# The roles `rose-ash users grant-role` (and AccountService.grant_role) know, by name.
GRANTABLE_ROLES = ("admin", "editor", "author", "producer")
# Not an argon2 hash, so no password ever verifies against it (the member must reset it).
LOCKED_PASSWORD_HASH = "!locked"


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User


class TokenRepository(SQLAlchemyAsyncRepository[AccessToken]):
    model_type = AccessToken


# Control characters and every line break str.splitlines() knows: a name reaches mail headers (the
# "To" display name), where any of them would start a new header line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def display_name_problem(name: str) -> str | None:
    if _CONTROL.search(name):
        return "Use letters, digits, spaces and punctuation only: no line breaks or control characters."
    return None


@dataclass
class EmailTaken(InputProblems):
    """Sign-up with an address that already has an account (``owner``)."""

    owner: User | None = None


class AccountService(SQLAlchemyAsyncRepositoryService[User, UserRepository]):
    repository_type = UserRepository

    def __init__(self, session: AsyncSession, **kwargs: Any) -> None:
        super().__init__(session=session, **kwargs)
        self.db = session

    async def get_active(self, user_id: UUID | str) -> User | None:
        try:
            uid = user_id if isinstance(user_id, UUID) else UUID(str(user_id))
        except ValueError:
            return None
        user = await self.repository.get_one_or_none(id=uid)
        return user if user is not None and user.is_active else None

    async def by_username(self, username: str) -> User | None:
        return await self.repository.get_one_or_none(username=normalise_username(username))

    async def signup(self, data: SignupInput, *, is_admin: bool = False) -> User:
        """Validate and create a user; raises InputProblems and writes nothing on bad input.

        An address another account uses raises :class:`EmailTaken` (an InputProblems with the
        owner): the sign-up page says so (409) and mails the owner a notice; the CLI shows the error."""
        username = normalise_username(data.username)
        email = normalise_email(data.email)
        errors: dict[str, str] = {}
        if problem := username_problem(username):
            errors["username"] = problem
        if problem := email_problem(email):
            errors["email"] = problem
        if problem := password_problem(data.password, username=username, email=email):
            errors["password"] = problem
        if len(data.display_name) > 100:
            errors["display_name"] = "Use 100 characters at most."
        elif problem := display_name_problem(data.display_name):
            errors["display_name"] = problem
        if errors:
            raise InputProblems(errors)
        taken = (await self.db.execute(
            select(User).where(or_(User.username == username, func.lower(User.email) == email))
        )).scalars().all()
        # Usernames are public (profiles at /@name): a taken one is said so. An address is not.
        if any(row.username == username for row in taken):
            raise InputProblems({"username": "That username is taken."}, status=409)
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
        owner = next((row for row in taken if row.email.lower() == email), None)
        if owner is not None:  # after hashing, so both answers take the same time
            raise EmailTaken({"email": "An account with that email already exists. Try signing in."}, 409, owner)
        user = User(
            username=username,
            email=email,
            display_name=data.display_name.strip(),
            password_hash=password_hash,
            is_admin=is_admin,
        )
        user = await self.repository.add(user)
        await hooks.user_saved(self.db, user)
        await hooks.user_created(self.db, user)
        await emit_purge(self.db, [keys.MEMBERS])
        return user

    async def authenticate(self, login: str, password: str) -> User | None:
        login = login.strip().lower()
        column = User.email if "@" in login else User.username
        user = (await self.db.execute(select(User).where(column == login))).scalar_one_or_none()
        ok = await anyio.to_thread.run_sync(verify_password, user.password_hash if user else None, password)
        if not ok or user is None or not user.is_active:
            return None
        if needs_rehash(user.password_hash):
            user.password_hash = await anyio.to_thread.run_sync(hash_password, password)
        return user

    async def change_password(self, user: User, current: str, new: str) -> None:
        errors: dict[str, str] = {}
        if not await anyio.to_thread.run_sync(verify_password, user.password_hash, current):
            errors["current_password"] = "That isn't your current password."
        elif problem := password_problem(new, username=user.username, email=user.email):
            errors["new_password"] = problem
        if errors:
            raise InputProblems(errors)
        user.password_hash = await anyio.to_thread.run_sync(hash_password, new)
        user.session_epoch += 1
        await self.repository.update(user)

    async def by_ids(self, ids: Iterable[UUID], *, active_only: bool = False) -> dict[UUID, User]:
        """Users by id, for other domains that show owners or members (one query)."""
        wanted = set(ids)
        if not wanted:
            return {}
        stmt = select(User).where(User.id.in_(wanted))
        if active_only:
            stmt = stmt.where(User.is_active.is_(True))
        return {user.id: user for user in (await self.db.execute(stmt)).scalars()}

    async def search(self, query: str = "", limit: int = 200) -> Sequence[User]:
        stmt = select(User).order_by(User.username).limit(limit)
        if query.strip():
            like = f"%{query.strip().lower()}%"
            stmt = stmt.where(or_(User.username.like(like), User.email.like(like)))
        return (await self.db.execute(stmt)).scalars().all()

    async def set_flags(self, actor: User, member: User, *, is_admin: bool, is_active: bool,
                        is_author: bool | None = None, is_editor: bool | None = None,
                        is_producer: bool | None = None) -> User:
        """Change roles; an administrator cannot demote or suspend themself (no lock-out).

        The change and its audit-log entry are written in the caller's transaction.
        """
        if problem := lockout_problem(actor, member, is_admin=is_admin, is_active=is_active):
            raise InputProblems({"form": problem})
        before = member.role_names
        if member.is_active and not is_active:
            member.session_epoch += 1  # a suspended member is signed out everywhere
        member.is_admin = is_admin
        member.is_active = is_active
        if is_author is not None:
            member.is_author = is_author
        if is_editor is not None:
            member.is_editor = is_editor
        if is_producer is not None:
            member.is_producer = is_producer
        member = await self.repository.update(member)
        await self._audit_roles(actor, member, before)
        await emit_purge(self.db, [keys.MEMBERS])  # a suspension leaves the member listings
        return member

    async def set_author(self, member: User, is_author: bool = True, *, actor: User | None = None) -> User:
        """Grant or remove the author role (may write and publish their own posts on the blog)."""
        before = member.role_names
        member.is_author = is_author
        member = await self.repository.update(member)
        await self._audit_roles(actor, member, before)
        return member

    async def set_editor(self, member: User, is_editor: bool = True, *, actor: User | None = None) -> User:
        """Grant or remove the editor role (may edit and publish every post and assign authors)."""
        before = member.role_names
        member.is_editor = is_editor
        member = await self.repository.update(member)
        await self._audit_roles(actor, member, before)
        return member

    async def set_producer(self, member: User, is_producer: bool = True, *, actor: User | None = None) -> User:
        """Grant or remove the producer role (may list goods on the market for their producers)."""
        before = member.role_names
        member.is_producer = is_producer
        member = await self.repository.update(member)
        await self._audit_roles(actor, member, before)
        return member

    async def grant_role(self, member: User, role: str, *, on: bool = True, actor: User | None = None) -> User:
        """Grant (or with ``on=False`` remove) one of :data:`GRANTABLE_ROLES` by name."""
        if role not in GRANTABLE_ROLES:
            raise InputProblems({"role": f"unknown role {role!r}: choose one of {', '.join(GRANTABLE_ROLES)}"})
        if role == "admin":
            before = member.role_names
            member.is_admin = on
            member = await self.repository.update(member)
            await self._audit_roles(actor, member, before)
            return member
        setter = {"author": self.set_author, "editor": self.set_editor, "producer": self.set_producer}[role]
        return await setter(member, on, actor=actor)

    async def _audit_roles(self, actor: User | None, member: User, before: list[str]) -> None:
        """Record a role change and tell the member's listeners (an author page appears or goes)."""
        after = member.role_names
        if after == before:
            return
        await audit.record(self.db, actor, "account.roles", f"@{member.username}",
                           f"{', '.join(before) or 'member'} → {', '.join(after) or 'member'}", subject_id=member.id)
        await hooks.user_saved(self.db, member)

    async def by_email(self, email: str) -> User | None:
        return await self.repository.get_one_or_none(email=normalise_email(email))

    async def create_imported_author(self, *, username: str, email: str, display_name: str = "",
                                     bio: str = "") -> User:
        """An author brought in by an import (e.g. Ghost): created locked, with no usable password.

        Ghost's rule: unmatched users are created and must reset their password. The username is
        made valid and free (suffixes ``-2``, ``-3`` ...); the email must be unused.
        """
        email = normalise_email(email)
        if email_problem(email):
            raise InputProblems({"email": f"not a usable email address: {email!r}"})
        base = re.sub(r"[^a-z0-9_-]+", "-", normalise_username(username)).strip("-_")[:36] or "author"
        if username_problem(base):
            base = f"{base}-author"[:36].strip("-_")
        candidate, n = base, 1
        while username_problem(candidate) or await self.repository.exists(username=candidate):
            n += 1
            candidate = f"{base}-{n}"
        user = User(username=candidate, email=email, display_name=_CONTROL.sub(" ", display_name).strip()[:100],
                    bio=bio.strip()[:2000], password_hash=LOCKED_PASSWORD_HASH, is_author=True)
        user = await self.repository.add(user)
        await emit_purge(self.db, [keys.MEMBERS])
        return user

    async def update_profile(self, user: User, display_name: str, bio: str) -> User:
        errors: dict[str, str] = {}
        if len(display_name.strip()) > 100:
            errors["display_name"] = "Use 100 characters at most."
        elif problem := display_name_problem(display_name):
            errors["display_name"] = problem
        if len(bio) > 2000:
            errors["bio"] = "Use 2,000 characters at most."
        if errors:
            raise InputProblems(errors)
        user.display_name = display_name.strip()
        user.bio = bio.strip()
        user = await self.repository.update(user)
        await hooks.user_saved(self.db, user)
        await emit_purge(self.db, [keys.MEMBERS])
        return user


def _digest(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is safe (GitHub and Gitea do the same).
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService(SQLAlchemyAsyncRepositoryService[AccessToken, TokenRepository]):
    repository_type = TokenRepository

    def __init__(self, session: AsyncSession, **kwargs: Any) -> None:
        super().__init__(session=session, **kwargs)
        self.db = session

    async def issue(self, user: User, name: str, scopes: Sequence[str]) -> tuple[AccessToken, str]:
        """Create a token; returns the row and the secret, which is never retrievable again."""
        errors: dict[str, str] = {}
        name = name.strip()
        if not name:
            errors["name"] = "Give the token a name so you can recognise it later."
        elif len(name) > 100:
            errors["name"] = "Use 100 characters at most."
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            errors["scopes"] = f"Unknown scope: {', '.join(unknown)}."
        elif not scopes:
            errors["scopes"] = "Choose at least one scope."
        if errors:
            raise InputProblems(errors)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = AccessToken(
            user_id=user.id,
            name=name,
            token_hash=_digest(secret),
            token_hint=secret[: len(TOKEN_PREFIX) + 6],
            scopes=sorted(set(scopes)),
        )
        return await self.repository.add(token), secret

    async def for_user(self, user: User) -> Sequence[AccessToken]:
        result = await self.db.execute(
            select(AccessToken).where(AccessToken.user_id == user.id).order_by(AccessToken.created_at.desc())
        )
        return result.scalars().all()

    async def revoke(self, user: User, token_id: UUID) -> bool:
        result = await self.db.execute(
            update(AccessToken)
            .where(AccessToken.id == token_id, AccessToken.user_id == user.id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return bool(getattr(result, "rowcount", 0))

    async def authenticate(self, secret: str) -> tuple[User, AccessToken] | None:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        row = (
            await self.db.execute(
                select(AccessToken, User)
                .join(User, User.id == AccessToken.user_id)
                .where(AccessToken.token_hash == _digest(secret))
            )
        ).first()
        if row is None:
            return None
        token, user = row
        now = datetime.now(UTC)
        if token.revoked_at is not None or not user.is_active:
            return None
        if token.expires_at is not None and token.expires_at <= now:
            return None
        # Record use at most once a minute, so a git clone doesn't write on every request.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            token.last_used_at = now
        return user, token
