"""Bundled JSON-LD contexts and a document loader that never touches the network.

We parse activities as plain JSON (design/federation.md §8); the loader exists for any JSON-LD
processing (e.g. a later LD-signature check) and refuses every URL it does not bundle.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["AS2", "SECURITY_V1", "ContextNotBundled", "bundled_contexts", "document_loader", "emitted_context",
           "event_context"]

AS2 = "https://www.w3.org/ns/activitystreams"
SECURITY_V1 = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
_DIR = Path(__file__).parent / "contexts"


class ContextNotBundled(LookupError):
    """A JSON-LD context we do not bundle was asked for; we never fetch one."""


@cache
def bundled_contexts() -> dict[str, Any]:
    index: dict[str, str] = json.loads((_DIR / "index.json").read_text())
    return {url: json.loads((_DIR / name).read_text()) for url, name in index.items()}


def _normalise(url: str) -> str:
    url = url.split("#")[0].rstrip("/")
    if url.endswith(".jsonld"):
        url = url[: -len(".jsonld")]
    return url.replace("http://www.w3.org/", "https://www.w3.org/")


def document_loader(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """pyld-compatible loader: bundled contexts only."""
    docs = bundled_contexts()
    wanted = _normalise(url)
    for known, doc in docs.items():
        if _normalise(known) == wanted:
            return {"contextUrl": None, "documentUrl": known, "document": doc}
    raise ContextNotBundled(f"JSON-LD context {url!r} is not bundled; refusing to fetch it")


def emitted_context() -> list[Any]:
    """The @context of every document we serve."""
    return [AS2, SECURITY_V1, {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "sensitive": "as:sensitive",
        "Hashtag": "as:Hashtag",
        "toot": "http://joinmastodon.org/ns#",
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
    }]


def event_context() -> list[Any]:
    """The @context of our ``Event`` documents: ours plus Mobilizon's terms (framasoft/mobilizon
    docs/contribute/activity_pub.md: ``mz:`` for joinMode/timezone, schema.org for capacities and
    the address, the W3C iCal vocabulary for ``ical:status``), so a JSON-LD reader expands them."""
    base = emitted_context()
    return [*base[:2], {
        **base[2],
        "mz": "https://joinmobilizon.org/ns#",
        "sc": "http://schema.org#",
        "ical": "http://www.w3.org/2002/12/cal/ical#",
        "joinMode": {"@id": "mz:joinMode", "@type": "mz:joinModeType"},
        "timezone": {"@id": "mz:timezone", "@type": "sc:Text"},
        "isOnline": {"@id": "mz:isOnline", "@type": "sc:Boolean"},
        "anonymousParticipationEnabled": {"@id": "mz:anonymousParticipationEnabled", "@type": "sc:Boolean"},
        "commentsEnabled": {"@id": "pt:commentsEnabled", "@type": "sc:Boolean"},
        "pt": "https://joinpeertube.org/ns#",
        "repliesModerationOption": {"@id": "mz:repliesModerationOption", "@type": "mz:repliesModerationOptionType"},
        "participantCount": {"@id": "mz:participantCount", "@type": "sc:Integer"},
        "maximumAttendeeCapacity": "sc:maximumAttendeeCapacity",
        "remainingAttendeeCapacity": "sc:remainingAttendeeCapacity",
        "category": "sc:category",
        "PostalAddress": "sc:PostalAddress",
        "address": {"@id": "sc:address", "@type": "sc:PostalAddress"},
        "streetAddress": "sc:streetAddress",
        "addressLocality": "sc:addressLocality",
        "postalCode": "sc:postalCode",
        "addressCountry": "sc:addressCountry",
    }]
