"""Inbound verification, whichever spec the request uses."""

from __future__ import annotations

from datetime import UTC, datetime

from federation.activitypub.signatures.cavage import cavage_verify_with, parse_cavage, parse_cavage_request
from federation.activitypub.signatures.messages import SignatureError, SignedMessage, Spec
from federation.activitypub.signatures.public_keys import KeyResolver, VerifiedSignature
from federation.activitypub.signatures.rfc9421 import parse_rfc9421, parse_rfc9421_request, rfc9421_verify_with


def signature_key_id(msg: SignedMessage) -> str:
    """The keyId a request claims to be signed with (RFC 9421 ``keyid`` parameter, §2.3, or the
    draft-cavage ``keyId``), unverified; "" when there is none. For cheap refusals (domain
    blocks) before any key is fetched."""
    if "signature-input" in msg.headers:
        try:
            return parse_rfc9421(msg).key_id
        except SignatureError:
            return ""
    return parse_cavage(msg.headers.get("signature") or "").get("keyId", "")


async def verify_request(msg: SignedMessage, resolve: KeyResolver, *, now: datetime | None = None) -> VerifiedSignature:
    """Verify an inbound request or raise :class:`SignatureError` (status 401).

    design/federation.md §3: ``Signature-Input`` selects RFC 9421 (§3.2), else draft-cavage-12
    (§2.5); time window, coverage and body digest are checked before the key is resolved, and a
    failed verification asks the resolver once more with ``refresh=True``.
    """
    now = now or datetime.now(UTC)
    spec: Spec = "rfc9421" if "signature-input" in msg.headers else "cavage"
    key_id: str
    if spec == "cavage":
        cparsed = parse_cavage_request(msg, now)
        key_id = cparsed.key_id
    else:
        if "signature" not in msg.headers:
            raise SignatureError("Signature-Input without Signature")
        rparsed = parse_rfc9421_request(msg, now)
        key_id = rparsed.key_id

    for refresh in (False, True):
        found = await resolve(key_id, refresh)
        if found is None:
            if refresh:
                raise SignatureError("Could not resolve the signing key", key_id=key_id)
            continue
        try:
            if spec == "cavage":
                ok = cavage_verify_with(cparsed, msg, found.public_pem)
                algorithm, covered = cparsed.algorithm, tuple(cparsed.names)
            else:
                ok, algorithm, covered = rfc9421_verify_with(rparsed, msg, found.public_pem)
        except ValueError:
            ok, algorithm, covered = False, "", ()
        if ok:
            return VerifiedSignature(spec=spec, key_id=key_id, owner=found.owner, algorithm=algorithm, covered=covered)
    raise SignatureError("Verification failed", key_id=key_id)
