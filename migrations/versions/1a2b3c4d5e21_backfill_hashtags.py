"""back-fill ap_hashtag for notes stored before it existed (data only)

The tag timeline and hashtag search read ``ap_hashtag``; notes stored before 1a2b3c4d5e14 have
no rows there, so their tags found nothing. This indexes them as the code indexes a note now
(federation/activitypub/hashtags.py): a received note by its AS2 ``tag`` array, a local note by
its stored ``tag`` array or, written before notes carried one, by the ``#words`` in its text.
Idempotent: only (name, note) pairs not yet indexed are added, so running it again (or after
the app indexed some notes itself) adds nothing. Notes are read in batches by id.

Revision ID: 1a2b3c4d5e21
Revises: 1a2b3c4d5e24
Create Date: 2026-12-07 17:00:00
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "1a2b3c4d5e21"
down_revision: str | None = "1a2b3c4d5e24"
branch_labels = None
depends_on = None

BATCH = 500
NOTE_TYPES = ("Note", "Article", "Page", "Question", "Event")
# The rules of federation/activitypub/hashtags.py as they are at this revision (copied: a
# migration must do the same thing whatever the code later becomes).
MAX_TAG = 100
MAX_TAGS = 30
HASHTAG = re.compile(r"(?<![\w/&#])#(\w{1,100})", re.UNICODE)
TAG_MARKUP = re.compile(r"<[^>]*>")

objects = sa.table(
    "ap_object", sa.column("id", GUID(length=16)), sa.column("type", sa.String()),
    sa.column("local", sa.Boolean()), sa.column("deleted", sa.Boolean()), sa.column("content", sa.Text()),
    sa.column("raw", JsonB))
hashtags = sa.table(
    "ap_hashtag", sa.column("id", GUID(length=16)), sa.column("object_id", GUID(length=16)),
    sa.column("name", sa.String(length=100)), sa.column("created_at", DateTimeUTC(timezone=True)),
    sa.column("updated_at", DateTimeUTC(timezone=True)))


def normalize(raw: str) -> str:
    name = raw.strip().removeprefix("#").lower()
    if not name or len(name) > MAX_TAG or not re.fullmatch(r"\w+", name) or name.isdigit():
        return ""
    return name


def names_of(kind: str, local: bool, content: str | None, raw: Any) -> list[str]:
    """The note's tags, normalised, each once, at most MAX_TAGS."""
    tag = raw.get("tag") if isinstance(raw, dict) else None
    items = tag if isinstance(tag, list) else [tag]
    tagged = [t for t in items if isinstance(t, dict) and t.get("type") == "Hashtag"]
    names = [normalize(t["name"]) for t in tagged if isinstance(t.get("name"), str)]
    if not tagged and local and kind == "Note":
        # Our own note from before notes kept their tags (a note posted since carries a Hashtag
        # for each tag in its text): the tags written in its text, as posting finds them.
        text = html.unescape(TAG_MARKUP.sub(" ", content or ""))
        names = [normalize(m.group(1)) for m in HASHTAG.finditer(text)]
    return list(dict.fromkeys(n for n in names if n))[:MAX_TAGS]


def backfill(conn: sa.Connection) -> int:
    """Index every live note's missing tags; the number of rows added."""
    added = 0
    after: uuid.UUID | None = None
    while True:
        query = sa.select(objects.c.id, objects.c.type, objects.c.local, objects.c.content, objects.c.raw).where(
            objects.c.deleted.is_(False), objects.c.type.in_(NOTE_TYPES)).order_by(objects.c.id).limit(BATCH)
        if after is not None:
            query = query.where(objects.c.id > after)
        rows = conn.execute(query).all()
        if not rows:
            return added
        after = rows[-1][0]
        wanted = {row[0]: names_of(str(row[1]), bool(row[2]), row[3], row[4]) for row in rows}
        wanted = {oid: names for oid, names in wanted.items() if names}
        if not wanted:
            continue
        have = set(conn.execute(sa.select(hashtags.c.object_id, hashtags.c.name).where(
            hashtags.c.object_id.in_(list(wanted)))).tuples().all())
        now = datetime.now(UTC)
        new = [{"id": uuid.uuid4(), "object_id": oid, "name": name, "created_at": now, "updated_at": now}
               for oid, names in wanted.items() for name in names if (oid, name) not in have]
        if new:
            conn.execute(hashtags.insert(), new)
            added += len(new)


def upgrade() -> None:
    backfill(op.get_bind())


def downgrade() -> None:
    # Data only: the rows it added are what the app would have written; they stay.
    pass
