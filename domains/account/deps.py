"""The account services as Litestar dependencies: a handler names ``accounts`` or ``tokens``.

Both are built on the request's ``db_session``, so whatever they write commits (or rolls back)
with the rest of the request.
"""

from __future__ import annotations

from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.services import AccountService, TokenService


def provide_accounts(db_session: AsyncSession) -> AccountService:
    return AccountService(db_session)


def provide_tokens(db_session: AsyncSession) -> TokenService:
    return TokenService(db_session)


dependencies: dict[str, Provide] = {
    "accounts": Provide(provide_accounts, sync_to_thread=False),
    "tokens": Provide(provide_tokens, sync_to_thread=False),
}
