"""Database work for the authorization server (async; authlib's sync hooks call it through a portal).

The request's session holds what a successful response creates (codes, tokens, consents) and is
committed by the usual ``autocommit_include_redirects`` handler only if the answer is 2xx/3xx.
Security side effects that must stick even when the answer is an error (revoking a token
family after a replayed code or a reused refresh token) run in their own short transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domains.account.models import User
from federation.oauth.models import (
    OAuthAuthorizationCode,
    OAuthClient,
    OAuthConsent,
    OAuthServerSetting,
    OAuthToken,
)

ACCESS_PREFIX = "roa_"
REFRESH_PREFIX = "ror_"
SECRET_PREFIX = "ros_"

CODE_TTL = timedelta(seconds=120)
ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=30)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    return stored_hash is not None and hmac.compare_digest(digest(secret), stored_hash)


def new_access_token() -> str:
    return ACCESS_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FoundToken:
    row: OAuthToken
    client: OAuthClient
    matched: Literal["access", "refresh"]


class OAuthStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- side transactions --------------------------------------------------------------

    async def _revoke_family_now(self, family_id: UUID) -> None:
        """Revoke every token of a family in a transaction of its own, committed at once."""
        maker = async_sessionmaker(self.session.bind, expire_on_commit=False)
        async with maker() as side, side.begin():
            await side.execute(
                update(OAuthToken)
                .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
                .values(revoked_at=now())
            )

    # --- clients -------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 64:
            return None
        row = (await self.session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id))).scalar()
        return None if row is None or row.is_disabled else row

    async def client_by_pk(self, pk: UUID) -> OAuthClient | None:
        return await self.session.get(OAuthClient, pk)

    async def create_client(
        self,
        *,
        name: str,
        redirect_uris: Sequence[str],
        public: bool = False,
        scope: str = "openid profile email",
        grant_types: Sequence[str] | None = None,
        first_party: bool = False,
        post_logout_redirect_uris: Sequence[str] = (),
        id_token_alg: str = "RS256",  # noqa: S107
        dynamic: bool = False,
        created_by: UUID | None = None,
        frontchannel_logout_uri: str | None = None,
    ) -> tuple[OAuthClient, str | None]:
        """Register a client; returns it with its secret (None for public clients), shown once."""
        secret = None if public else SECRET_PREFIX + secrets.token_urlsafe(32)
        if grant_types is None:
            grant_types = ["authorization_code", "refresh_token"]
            if not public:
                grant_types.append("client_credentials")
        client = OAuthClient(
            client_id=secrets.token_urlsafe(18),
            name=name,
            secret_hash=digest(secret) if secret else None,
            token_endpoint_auth_method="none" if public else "client_secret_basic",
            redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(post_logout_redirect_uris),
            grant_types=[g for g in grant_types if not (public and g == "client_credentials")],
            scope=scope,
            is_first_party=first_party,
            id_token_signed_response_alg=id_token_alg,
            is_dynamic=dynamic,
            created_by_id=created_by,
            frontchannel_logout_uri=frontchannel_logout_uri,
        )
        self.session.add(client)
        await self.session.flush()
        return client, secret

    async def reset_secret(self, client: OAuthClient) -> str:
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        client.secret_hash = digest(secret)
        await self.session.flush()
        return secret

    async def list_clients(self) -> Sequence[OAuthClient]:
        return (await self.session.execute(select(OAuthClient).order_by(OAuthClient.created_at))).scalars().all()

    # --- users ---------------------------------------------------------------------------

    async def get_user(self, user_id: UUID | None) -> User | None:
        if user_id is None:
            return None
        user = await self.session.get(User, user_id)
        return user if user is not None and user.is_active else None

    # --- authorization codes ---------------------------------------------------------------

    async def save_code(
        self,
        *,
        code: str,
        client: OAuthClient,
        user: User,
        redirect_uri: str,
        scope: str,
        nonce: str | None,
        code_challenge: str,
        code_challenge_method: str,
        auth_time: int,
        sid: str | None,
    ) -> None:
        self.session.add(
            OAuthAuthorizationCode(
                code_hash=digest(code),
                client_pk=client.id,
                user_id=user.id,
                redirect_uri=redirect_uri,
                scope=scope,
                nonce=nonce,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                auth_time=auth_time,
                sid=sid,
                expires_at=now() + CODE_TTL,
            )
        )
        await self.session.flush()

    async def find_code(self, code: str, client: OAuthClient) -> OAuthAuthorizationCode | None:
        """The code if it may be exchanged now. A replayed code revokes what it issued (RFC 6749 §4.1.2)."""
        if not code or len(code) > 200:
            return None
        row = (
            await self.session.execute(
                select(OAuthAuthorizationCode).where(OAuthAuthorizationCode.code_hash == digest(code))
            )
        ).scalar()
        if row is None or row.client_pk != client.id:
            return None
        if row.used_at is not None:
            if row.family_id is not None:
                await self._revoke_family_now(row.family_id)
            return None
        if row.expires_at <= now():
            return None
        return row

    async def claim_code(self, code: OAuthAuthorizationCode, family_id: UUID) -> bool:
        """Mark the code used, atomically: of two concurrent exchanges only one wins."""
        result = await self.session.execute(
            update(OAuthAuthorizationCode)
            .where(OAuthAuthorizationCode.id == code.id, OAuthAuthorizationCode.used_at.is_(None))
            .values(used_at=now(), family_id=family_id)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def nonce_used(self, client_id: str, nonce: str) -> bool:
        client = await self.get_client(client_id)
        if client is None:
            return False
        found = await self.session.execute(
            select(OAuthAuthorizationCode.id).where(
                OAuthAuthorizationCode.client_pk == client.id, OAuthAuthorizationCode.nonce == nonce
            ).limit(1)
        )
        return found.first() is not None

    # --- tokens ----------------------------------------------------------------------------

    async def save_token(
        self,
        *,
        client: OAuthClient,
        user: User | None,
        family_id: UUID,
        access_token: str,
        refresh_token: str | None,
        scope: str,
        expires_in: int,
    ) -> OAuthToken:
        issued = now()
        row = OAuthToken(
            client_pk=client.id,
            user_id=user.id if user is not None else None,
            family_id=family_id,
            access_token_hash=digest(access_token),
            refresh_token_hash=digest(refresh_token) if refresh_token else None,
            scope=scope,
            issued_at=issued,
            access_expires_at=issued + timedelta(seconds=expires_in),
            refresh_expires_at=issued + REFRESH_TTL if refresh_token else None,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def find_token(self, token: str, hint: str | None = None) -> FoundToken | None:
        """An access or refresh token by its value (whatever its state)."""
        if not token or len(token) > 200:
            return None
        kinds: list[Literal["access", "refresh"]] = ["access", "refresh"]
        if hint == "refresh_token" or token.startswith(REFRESH_PREFIX):
            kinds.reverse()
        for kind in kinds:
            column = OAuthToken.access_token_hash if kind == "access" else OAuthToken.refresh_token_hash
            found = (
                await self.session.execute(
                    select(OAuthToken, OAuthClient)
                    .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
                    .where(column == digest(token))
                )
            ).first()
            if found is not None:
                return FoundToken(found[0], found[1], kind)
        return None

    async def find_refresh_token(self, token: str) -> FoundToken | None:
        """A refresh token that may be used now. Presenting a rotated one revokes its family."""
        found = await self.find_token(token, "refresh_token")
        if found is None or found.matched != "refresh":
            return None
        row = found.row
        if row.refreshed_at is not None:
            await self._revoke_family_now(row.family_id)
            return None
        if row.revoked_at is not None or (row.refresh_expires_at is not None and row.refresh_expires_at <= now()):
            return None
        return found

    async def mark_refreshed(self, row: OAuthToken) -> bool:
        result = await self.session.execute(
            update(OAuthToken)
            .where(OAuthToken.id == row.id, OAuthToken.refreshed_at.is_(None), OAuthToken.revoked_at.is_(None))
            .values(refreshed_at=now())
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def revoke(self, found: FoundToken) -> None:
        """RFC 7009: revoking a refresh token ends its whole grant; an access token only itself."""
        if found.matched == "refresh":
            await self.session.execute(
                update(OAuthToken)
                .where(OAuthToken.family_id == found.row.family_id, OAuthToken.revoked_at.is_(None))
                .values(revoked_at=now())
                .execution_options(synchronize_session=False)
            )
        else:
            await self.session.execute(
                update(OAuthToken)
                .where(OAuthToken.id == found.row.id, OAuthToken.revoked_at.is_(None))
                .values(revoked_at=now())
                .execution_options(synchronize_session=False)
            )

    async def authenticate_access_token(self, token: str) -> tuple[OAuthToken, OAuthClient, User | None] | None:
        """A live access token, its client and user (None for client credentials)."""
        if not token or len(token) > 200:
            return None
        # One statement with the member: every API request authenticates here first, so a second
        # round trip for the user would be paid on each of them.
        found = (
            await self.session.execute(
                select(OAuthToken, OAuthClient, User)
                .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
                .outerjoin(User, User.id == OAuthToken.user_id)
                .where(OAuthToken.access_token_hash == digest(token))
            )
        ).first()
        if found is None:
            return None
        row, client, user = found
        moment = now()
        if row.revoked_at is not None or row.access_expires_at <= moment or client.is_disabled:
            return None
        if row.user_id is not None and (user is None or not user.is_active):
            return None
        if row.last_used_at is None or (moment - row.last_used_at).total_seconds() > 60:
            row.last_used_at = moment
        return row, client, user

    # --- consents ----------------------------------------------------------------------------

    async def consent(self, user: User, client: OAuthClient) -> OAuthConsent | None:
        return (
            await self.session.execute(
                select(OAuthConsent).where(OAuthConsent.user_id == user.id, OAuthConsent.client_pk == client.id)
            )
        ).scalar()

    async def grant_consent(self, user: User, client: OAuthClient, scopes: Sequence[str]) -> None:
        existing = await self.consent(user, client)
        if existing is None:
            self.session.add(OAuthConsent(user_id=user.id, client_pk=client.id, scopes=sorted(set(scopes))))
        else:
            existing.scopes = sorted(set(existing.scopes) | set(scopes))
        await self.session.flush()

    async def authorised_apps(self, user: User) -> list[tuple[OAuthClient, list[str], datetime, int]]:
        """(client, scopes, since, live tokens) for every app the user authorised or holds tokens for."""
        consents = (
            await self.session.execute(
                select(OAuthConsent, OAuthClient)
                .join(OAuthClient, OAuthClient.id == OAuthConsent.client_pk)
                .where(OAuthConsent.user_id == user.id)
            )
        ).all()
        tokens = (
            await self.session.execute(
                select(OAuthToken, OAuthClient)
                .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
                .where(OAuthToken.user_id == user.id, OAuthToken.revoked_at.is_(None))
            )
        ).all()
        apps: dict[UUID, tuple[OAuthClient, set[str], datetime, int]] = {}
        for consent, client in consents:
            apps[client.id] = (client, set(consent.scopes), consent.created_at, 0)
        moment = now()
        for token, client in tokens:
            live = token.access_expires_at > moment or (
                token.refresh_token_hash is not None
                and token.refreshed_at is None
                and token.refresh_expires_at is not None
                and token.refresh_expires_at > moment
            )
            if not live:
                continue
            entry = apps.get(client.id) or (client, set(), token.issued_at, 0)
            apps[client.id] = (entry[0], entry[1] | set(token.scope.split()), min(entry[2], token.issued_at),
                               entry[3] + 1)
        return [(c, sorted(s), since, n) for c, s, since, n in sorted(apps.values(), key=lambda a: a[0].name)]

    async def revoke_app(self, user: User, client_pk: UUID) -> bool:
        """Forget the consent and revoke every token the app holds for the user."""
        gone = await self.session.execute(
            delete(OAuthConsent).where(OAuthConsent.user_id == user.id, OAuthConsent.client_pk == client_pk)
        )
        revoked = await self.session.execute(
            update(OAuthToken)
            .where(OAuthToken.user_id == user.id, OAuthToken.client_pk == client_pk, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now())
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(gone, "rowcount", 0) or getattr(revoked, "rowcount", 0))

    # --- housekeeping ------------------------------------------------------------------------------

    async def prune(self, grace: timedelta = timedelta(days=1)) -> tuple[int, int]:
        """Delete codes and tokens that can no longer be used (rotated refresh tokens are kept until
        they expire, so reuse detection keeps working). Returns (codes, tokens) deleted."""
        cutoff = now() - grace
        codes = await self.session.execute(
            delete(OAuthAuthorizationCode).where(OAuthAuthorizationCode.expires_at < cutoff)
        )
        tokens = await self.session.execute(
            delete(OAuthToken).where(
                OAuthToken.access_expires_at < cutoff,
                or_(OAuthToken.refresh_expires_at.is_(None), OAuthToken.refresh_expires_at < cutoff),
            )
        )
        return int(getattr(codes, "rowcount", 0) or 0), int(getattr(tokens, "rowcount", 0) or 0)

    # --- server settings ---------------------------------------------------------------------

    async def get_setting(self, name: str) -> str | None:
        row = (await self.session.execute(select(OAuthServerSetting).where(OAuthServerSetting.name == name))).scalar()
        return None if row is None else row.value

    async def set_setting(self, name: str, value: str) -> None:
        row = (await self.session.execute(select(OAuthServerSetting).where(OAuthServerSetting.name == name))).scalar()
        if row is None:
            self.session.add(OAuthServerSetting(name=name, value=value))
        else:
            row.value = value
        await self.session.flush()


def new_family() -> UUID:
    return uuid.uuid4()
