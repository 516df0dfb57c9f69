"""Security headers on every response, with values per route class (ARCHITECTURE.md "Security").

One ``before_send`` hook rather than an app middleware: Litestar answers an unknown path (404)
or method (405) from the router, outside every middleware, and those pages must refuse
framing too. The hook sees each response's final headers after all middleware.

Route classes come from ``app.caching`` (the handler's ``cache_policy`` opt):

- embeds (``/embed/…``) may be framed by any site: ``frame-ancestors *``, no ``X-Frame-Options``;
- every other response refuses framing: ``frame-ancestors 'none'`` plus ``X-Frame-Options: DENY``
  for browsers that predate CSP level 2;
- pages that are not publicly cacheable (private, personal, actions, and routes that declare
  no class) also get ``Cross-Origin-Opener-Policy: same-origin``.

HTML gets the document policy; other content types (JSON, feeds, CSS, JS) get
``default-src 'none'``, since nothing in them should ever load anything. A response without a
content type (a 304, a redirect) gets the document policy: a browser merges a 304's headers
into the stored 200 (RFC 9111 §4.3.4), so it must carry what the page would.

A header the handler set deliberately is kept. For ``Content-Security-Policy`` the handler's
directives win and ours fill in the ones it did not name, so ``frame-ancestors *`` from an
embed handler or ``frame-ancestors 'none'`` from the OAuth pages survive beside ``script-src``.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import Message, Scope

from app.caching import CACHEABLE, CachePolicy, policy_of
from app.settings import Settings

__all__ = [
    "PERMISSIONS_POLICY",
    "REFERRER_POLICY",
    "SecurityHeaders",
    "document_csp",
    "merge_csp",
    "parse_csp",
    "resource_csp",
]

REFERRER_POLICY = "strict-origin-when-cross-origin"
# Powerful features no page of ours uses: a script that got in anyway cannot reach them, and
# neither can a frame we embed. interest-cohort (FLoC) and browsing-topics (its successor) opt
# the site out of Chrome's ad-topic APIs.
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "ambient-light-sensor", "autoplay", "bluetooth", "browsing-topics", "camera",
    "display-capture", "geolocation", "gyroscope", "hid", "interest-cohort", "magnetometer",
    "microphone", "midi", "payment", "serial", "usb", "xr-spatial-tracking",
))
HSTS = "max-age=31536000"  # a year; no includeSubDomains: sibling hosts are not ours to pin
DOCUMENT_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml")


def _document_directives(*, allow_http: bool, frame_ancestors: str) -> dict[str, str]:
    # Images, media and frames in user content (Ghost imports, fediverse avatars, YouTube cards
    # the sanitiser keeps) come from other sites; scripts, styles, fonts and fetches never do.
    remote = "https: http:" if allow_http else "https:"
    return {
        "default-src": "'self'",
        "script-src": "'self'",
        # No <style> elements (htmx's indicator style is off: includeIndicatorStyles in base.html);
        # style attributes stay, because sanitised Markdown tables align cells with
        # style="text-align:…" and nothing else (domains/blog/renderer.py).
        "style-src": "'self'",
        "style-src-attr": "'unsafe-inline'",
        "img-src": f"'self' data: {remote}",
        "media-src": f"'self' {remote}",
        # Front-channel logout iframes (OIDC Front-Channel Logout 1.0 §3) and Ghost embed cards.
        "frame-src": f"'self' {remote}",
        "object-src": "'none'",
        "base-uri": "'self'",
        # No form-action: the OAuth consent form's POST redirects to the client's redirect URI,
        # and browsers apply form-action to that redirect (CSP3 §6.3.1 form-action).
        "frame-ancestors": frame_ancestors,
    }


def document_csp(*, allow_http: bool = False, embed: bool = False) -> str:
    return _serialise(_document_directives(allow_http=allow_http, frame_ancestors="*" if embed else "'none'"))


def resource_csp(*, embed: bool = False) -> str:
    return _serialise({"default-src": "'none'", "frame-ancestors": "*" if embed else "'none'"})


def parse_csp(value: str) -> dict[str, str]:
    """Directive name (lower case) → its source list, in order (CSP3 §2.2.1 parsing, simplified)."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        name, _, sources = part.strip().partition(" ")
        if name and name.lower() not in out:  # the first occurrence wins, as in the spec
            out[name.lower()] = sources.strip()
    return out


def _serialise(directives: Mapping[str, str]) -> str:
    return "; ".join(f"{name} {sources}".strip() for name, sources in directives.items())


def merge_csp(ours: str, theirs: str) -> str:
    """The handler's directives where it named them, ours for the rest."""
    handler = parse_csp(theirs)
    merged = {name: handler.get(name, sources) for name, sources in parse_csp(ours).items()}
    merged.update({name: sources for name, sources in handler.items() if name not in merged})
    return _serialise(merged)


class SecurityHeaders:
    """The ``before_send`` hook; built once per app from its settings."""

    def __init__(self, settings: Settings) -> None:
        self.hsts = settings.base_url.startswith("https://")
        allow_http = not self.hsts  # an http deployment (dev, tests) serves its own http images
        self.csp = {
            (False, False): resource_csp(),
            (False, True): resource_csp(embed=True),
            (True, False): document_csp(allow_http=allow_http),
            (True, True): document_csp(allow_http=allow_http, embed=True),
        }
        # What ``apply`` adds to a response that set none of these names itself (nearly every one),
        # encoded once: (document, embed, opener policy) -> the raw header pairs, in apply's order.
        self.added: dict[tuple[bool, bool, bool], tuple[tuple[bytes, bytes], ...]] = {}
        for (document, embed), csp in self.csp.items():
            for opener in (False, True):
                pairs = [("content-security-policy", csp)]
                if parse_csp(csp).get("frame-ancestors") == "'none'":
                    pairs.append(("x-frame-options", "DENY"))
                pairs += [("x-content-type-options", "nosniff"), ("referrer-policy", REFERRER_POLICY)]
                if document:
                    pairs.append(("permissions-policy", PERMISSIONS_POLICY))
                    if opener:
                        pairs.append(("cross-origin-opener-policy", "same-origin"))
                if self.hsts:
                    pairs.append(("strict-transport-security", HSTS))
                self.added[document, embed, opener] = tuple((k.encode(), v.encode("latin-1")) for k, v in pairs)

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
            return
        raw = message.get("headers")
        if isinstance(raw, list):
            # One pass over the response's own headers instead of a decoding scan per name; a
            # response that set any of ours (a handler's CSP, an embed's framing) takes the
            # general path, which merges rather than appends.
            content_type: str | None = None
            for name, value in raw:
                lowered = name.lower()
                if lowered in _OURS:
                    break
                if lowered == b"content-type" and content_type is None:
                    content_type = value.decode("latin-1")
            else:
                policy = policy_of(scope)
                embed = policy is CachePolicy.EMBED
                document = _is_document(content_type or "")
                raw.extend(self.added[document, embed, document and not embed and policy not in CACHEABLE])
                return
        headers = MutableScopeHeaders.from_message(message)  # type: ignore[arg-type]
        self.apply(headers, scope)

    def apply(self, headers: MutableScopeHeaders, scope: Scope) -> None:
        policy = policy_of(scope)  # None when the router matched no route (404, 405)
        embed = policy is CachePolicy.EMBED
        document = _is_document(headers.get("content-type", ""))

        csp = self.csp[(document, embed)]
        if "content-security-policy" in headers:
            csp = merge_csp(csp, headers["content-security-policy"])
        headers["content-security-policy"] = csp
        if parse_csp(csp).get("frame-ancestors") == "'none'":
            _default(headers, "x-frame-options", "DENY")
        _default(headers, "x-content-type-options", "nosniff")
        _default(headers, "referrer-policy", REFERRER_POLICY)
        if document:
            _default(headers, "permissions-policy", PERMISSIONS_POLICY)
            if not embed and policy not in CACHEABLE:
                _default(headers, "cross-origin-opener-policy", "same-origin")
        if self.hsts:
            _default(headers, "strict-transport-security", HSTS)


# Every name SecurityHeaders may set or merge: a response carrying any of them takes the general path.
_OURS = frozenset({b"content-security-policy", b"x-frame-options", b"x-content-type-options", b"referrer-policy",
                   b"permissions-policy", b"cross-origin-opener-policy", b"strict-transport-security"})


def _is_document(content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip().lower()
    return not media_type or media_type in DOCUMENT_TYPES


def _default(headers: MutableScopeHeaders, name: str, value: str) -> None:
    if name not in headers:
        headers[name] = value

