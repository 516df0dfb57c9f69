"""Liveness/readiness: 200 once the database answers."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.exceptions import HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app import access


class Health(msgspec.Struct):
    status: str
    database: str


@get("/healthz", cache_control=None, opt={"exclude_from_auth": True, **access.public()}, name="healthz")
async def healthz(db_session: AsyncSession) -> Health:
    try:
        await db_session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"
        raise HTTPException(status_code=503, detail="database unavailable") from exc
    return Health(status="ok", database="ok")
