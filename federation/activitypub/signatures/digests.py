"""Body digests: cavage's ``Digest`` (RFC 3230) and RFC 9421's ``Content-Digest`` (RFC 9530),
made for outbound requests and checked against the raw body of inbound ones."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from federation.activitypub.signatures.messages import SignatureError


def digest_header(body: bytes) -> str:
    """``Digest: SHA-256=<b64>`` (RFC 3230 §4.3.2; covered as ``digest`` by draft-cavage-12 §2.3)."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def content_digest(body: bytes) -> str:
    """``Content-Digest: sha-256=:<b64>:`` (RFC 9530 §2; signed as the ``content-digest`` component)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


_DIGEST_ALGS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda b: hashlib.sha256(b).digest(),
    "sha-512": lambda b: hashlib.sha512(b).digest(),
}


def check_digest(value: str | None, body: bytes) -> None:
    """Check a cavage ``Digest`` header (``SHA-256=...[, SHA-512=...]``, RFC 3230 §4.3.2) against the
    raw body, before any JSON parsing (design/federation.md §3 step 6)."""
    if not value:
        raise SignatureError("Digest header missing")
    seen = False
    for part in value.split(","):
        name, sep, b64 = part.strip().partition("=")
        fn = _DIGEST_ALGS.get(name.strip().lower())
        if not sep or fn is None:
            continue
        seen = True
        try:
            expected = base64.b64decode(b64.strip(), validate=True)
        except ValueError:
            raise SignatureError("Digest header is not valid base64") from None
        if expected != fn(body):
            raise SignatureError("Digest does not match the body")
    if not seen:
        raise SignatureError("Digest header uses no supported algorithm")


def check_content_digest(value: str | None, body: bytes) -> None:
    """Check an RFC 9530 §2 ``Content-Digest`` (``sha-256=:b64:``, ``sha-512``) against the raw body,
    before any JSON parsing (design/federation.md §3 step 6)."""
    if not value:
        raise SignatureError("Content-Digest header missing")
    seen = False
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        fn = _DIGEST_ALGS.get(name.strip().lower())
        raw = raw.strip()
        if not sep or fn is None:
            continue
        if not (raw.startswith(":") and raw.endswith(":") and len(raw) >= 2):
            raise SignatureError("Content-Digest member is not a byte sequence")
        seen = True
        try:
            expected = base64.b64decode(raw[1:-1], validate=True)
        except ValueError:
            raise SignatureError("Content-Digest is not valid base64") from None
        if expected != fn(body):
            raise SignatureError("Content-Digest does not match the body")
    if not seen:
        raise SignatureError("Content-Digest uses no supported algorithm")
