"""Listing import: read a product from another shop's page and propose a draft (issue 16 item 7).

The producer pastes a URL; :func:`fetch_proposal` fetches it through the kernel's SSRF-safe client
(:class:`app.safe_http.SafeClient`: the federation address policy, redirects re-checked, a streamed
size cap, timeouts) and :func:`propose` reads schema.org ``Product``/``ProductGroup`` from JSON-LD,
microdata and RDFa, and Open Graph's ``og:*``/``product:*`` tags, with ``extruct``. Nothing is
written: the proposal prefills the review form (``/market/admin/import``), and only what the
producer then submits is saved, through the catalogue's own rules (:func:`save_proposal`).

Everything read from the page is untrusted: titles and names are reduced to plain text, the
description is cleaned by nh3 against a small allowlist and turned into Markdown (the catalogue's
renderer sanitises it again), image URLs must be http(s) (fetched later through the same client
and validated by the media service), prices must parse as finite, non-negative decimals within
:data:`MAX_PRICE_MINOR`, and currencies must be ISO 4217 codes. A page with no product is
refused with :class:`ImportRefused`, as is every fetch failure, each with a message for people.

Sources, in order of preference (the first that names a product wins; Open Graph fills gaps):
schema.org Product — https://schema.org/Product, ProductGroup/hasVariant/variesBy —
https://schema.org/ProductGroup (what Shopify's ``structured_data`` filter prints), Offer and
AggregateOffer — https://schema.org/Offer; Open Graph — https://ogp.me/ and Facebook's product
tags (``product:price:amount``, ``product:price:currency``, ``product:retailer_item_id``).
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgspec
import nh3
from markdownify import ATX, MarkdownConverter

from app.money import CURRENCY_EXPONENTS
from app.safe_http import HTML_TYPES, IMAGE_TYPES, MAX_HTML_BYTES, MAX_IMAGE_BYTES, FetchError, SafeClient

__all__ = [
    "FETCH_DEADLINE",
    "ImportRefused",
    "Proposal",
    "ProposedVariant",
    "fetch_image",
    "fetch_proposal",
    "minor_units",
    "propose",
]

log = logging.getLogger("rose_ash.market.import")

# Seconds for the whole page fetch, redirects included ("slow" is a refusal, not a hung request).
FETCH_DEADLINE = 15.0
MAX_TITLE = 200
MAX_DESCRIPTION = 20_000
MAX_IMAGES = 10
MAX_VARIANTS = 100
MAX_SKU = 64
# 100 million in major units: beyond any co-op's product, and far inside int64 minor units.
MAX_PRICE_MINOR = 10_000_000_000
_HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9"
_IMAGE_ACCEPT = "image/webp, image/png, image/jpeg;q=0.9"

# What a description may keep: structure and emphasis, links (http(s)/mailto only). Everything
# else, <script>/<style> with their content, goes.
_DESCRIPTION_TAGS = {"p", "br", "ul", "ol", "li", "strong", "b", "em", "i", "a", "h2", "h3", "h4", "blockquote"}
_SCHEMA_PREFIX = re.compile(r"^https?://schema\.org/")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OPTION_PROPS = ("size", "color", "material", "pattern", "suggestedAge", "suggestedGender")


class ImportRefused(Exception):
    """The URL or the page cannot be imported; ``str(exc)`` is the message for the producer."""


class ProposedVariant(msgspec.Struct, kw_only=True):
    options: dict[str, str] = {}
    sku: str = ""
    gtin: str = ""
    price: int | None = None  # minor units of ``currency``
    currency: str = ""
    compare_at: int | None = None
    in_stock: bool | None = None


class Proposal(msgspec.Struct, kw_only=True):
    """A draft read from a page: what the review form starts from. Never saved as it is."""

    source_url: str
    title: str = ""
    description: str = ""  # Markdown, from sanitised HTML
    brand: str = ""
    images: list[str] = []  # absolute http(s) URLs, fetched (guarded) only when the draft is saved
    variants: list[ProposedVariant] = []
    found_in: str = ""  # "json-ld", "microdata", "rdfa" or "opengraph"
    warnings: list[str] = []


# --- fetching ---------------------------------------------------------------------------------

def _refusal(exc: FetchError, url: str) -> ImportRefused:
    """A fetch failure in the producer's words (the technical detail goes to the log)."""
    text = str(exc)
    log.info("listing import of %s refused: %s", url, text)
    if "scheme" in text:
        return ImportRefused("Only http:// and https:// addresses can be imported.")
    if "not public" in text or "refused" in text or "credentials" in text:
        return ImportRefused("That address is not on the public internet (or redirects somewhere that is not), "
                             "so it cannot be imported.")
    if "exceeds" in text:
        return ImportRefused(f"That page is larger than {MAX_HTML_BYTES // 1_000_000} MB, too large to import.")
    if "timed out" in text or "Timeout" in text:
        return ImportRefused("That site took too long to answer. Try again later.")
    if ", not " in text:
        return ImportRefused("That address is not a web page (HTML), so it cannot be imported.")
    if "invalid URL" in text or "no host" in text:
        return ImportRefused("That is not a web address. Paste the full address, starting with https://.")
    if "redirect" in text:
        return ImportRefused("That address redirects too many times.")
    if "answered" in text:
        return ImportRefused(f"That site answered with an error ({exc.status}).")
    return ImportRefused("That page could not be fetched. Check the address and try again.")


async def fetch_proposal(client: SafeClient, url: str) -> Proposal:
    """Fetch ``url`` (guarded) and propose a draft, or raise :class:`ImportRefused`."""
    url = url.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise ImportRefused("Only http:// and https:// addresses can be imported.")
    try:
        page = await client.get_document(url, types=HTML_TYPES, accept=_HTML_ACCEPT, max_bytes=MAX_HTML_BYTES,
                                         deadline=FETCH_DEADLINE)
    except FetchError as exc:
        raise _refusal(exc, url) from None
    return propose(_decode(page.body, page.charset), page.url)


async def fetch_image(client: SafeClient, url: str) -> tuple[bytes, str]:
    """One product photo's bytes and media type (guarded; the media service validates the bytes)."""
    try:
        got = await client.get_document(url, types=IMAGE_TYPES, accept=_IMAGE_ACCEPT, max_bytes=MAX_IMAGE_BYTES,
                                        deadline=FETCH_DEADLINE)
    except FetchError as exc:
        text = str(exc)
        if "exceeds" in text:
            raise ImportRefused(f"The image {url} is larger than {MAX_IMAGE_BYTES // 1_000_000} MB.") from None
        if ", not " in text:
            raise ImportRefused(f"{url} is not a JPEG, PNG or WebP image.") from None
        raise ImportRefused(f"The image {url} could not be fetched: {_refusal(exc, url)}") from None
    return got.body, got.content_type


def _decode(body: bytes, charset: str) -> str:
    for encoding in (charset, "utf-8"):
        if encoding:
            try:
                return body.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
    return body.decode("utf-8", errors="replace")


# --- reading ----------------------------------------------------------------------------------

def propose(document: str, url: str) -> Proposal:
    """The draft a page describes, or :class:`ImportRefused` when it describes no product."""
    import extruct

    try:
        data = extruct.extract(document, base_url=url, syntaxes=["json-ld", "microdata", "rdfa", "opengraph"],
                               uniform=True, errors="ignore")
    except (ValueError, TypeError, RecursionError) as exc:  # lxml refusing the document outright
        log.info("extruct failed on %s: %s", url, exc)
        raise ImportRefused("That page could not be read as HTML.") from None
    proposal = Proposal(source_url=url)
    for syntax in ("json-ld", "microdata", "rdfa"):
        items = data.get(syntax) or []
        if syntax == "rdfa":
            items = _from_rdfa(items)
        product = _find_product(items)
        if product is not None:
            proposal.found_in = syntax
            _read_product(proposal, product, url)
            break
    og = _opengraph(data.get("opengraph") or [], data.get("rdfa") or [])
    if not proposal.found_in and og.get("og:type", "").lower() in {"product", "og:product", "product.item"}:
        proposal.found_in = "opengraph"
    if not proposal.found_in:
        raise ImportRefused("No product was found on that page (it has no schema.org Product or Open Graph "
                            "product tags). Add the product by hand instead.")
    _fill_from_opengraph(proposal, og, url)
    if not proposal.title:
        raise ImportRefused("The product on that page has no name, so it cannot be imported.")
    return proposal


def _walk(items: list[Any], depth: int = 0) -> list[dict[str, Any]]:
    """Every node of the documents, ``@graph`` flattened (Yoast and WooCommerce use it), bounded."""
    found: list[dict[str, Any]] = []
    for item in items[:200]:
        if isinstance(item, dict):
            found.append(item)
            if depth < 3 and isinstance(item.get("@graph"), list):
                found.extend(_walk(item["@graph"], depth + 1))
    return found


def _types(node: dict[str, Any]) -> set[str]:
    value = node.get("@type")
    names = value if isinstance(value, list) else [value]
    return {re.split(r"[/#]", n)[-1] for n in names if isinstance(n, str)}


def _find_product(items: list[Any]) -> dict[str, Any] | None:
    nodes = _walk(items)
    for wanted in ("ProductGroup", "Product", "IndividualProduct", "ProductModel"):
        for node in nodes:
            if wanted in _types(node):
                return node
    return None


def _from_rdfa(items: list[Any]) -> list[dict[str, Any]]:
    """RDFa as extruct gives it (expanded JSON-LD: IRIs as keys, values in lists of ``@value``)
    in the compact shape the JSON-LD reader takes; references by ``@id`` are resolved two deep."""
    by_id = {str(n.get("@id")): n for n in items if isinstance(n, dict) and n.get("@id")}

    def compact(node: dict[str, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"@type": node.get("@type")}
        for key, values in node.items():
            if key.startswith("@") or not isinstance(values, list):
                continue
            name = _SCHEMA_PREFIX.sub("", key)
            if name == key:  # not schema.org (Open Graph, XHTML roles): the OG reader covers them
                continue
            converted: list[Any] = []
            for value in values[:50]:
                if not isinstance(value, dict):
                    continue
                if "@value" in value:
                    converted.append(value["@value"])
                elif "@id" in value:
                    ref = by_id.get(str(value["@id"]))
                    converted.append(compact(ref, depth + 1) if ref is not None and depth < 2 else value["@id"])
            out[name] = converted[0] if len(converted) == 1 else converted
        return out

    return [compact(n, 0) for n in items if isinstance(n, dict)]


def _opengraph(items: list[Any], rdfa: list[Any]) -> dict[str, str]:
    """Open Graph as a flat dict (first value wins), plus every ``og:image`` newline-separated
    (extruct's Open Graph reader keeps one value per property; its RDFa reader keeps them all)."""
    flat: dict[str, str] = {}
    images: list[str] = []
    for node in rdfa:
        values = node.get("http://ogp.me/ns#image") if isinstance(node, dict) else None
        if isinstance(values, list):
            images.extend(str(v["@value"]) for v in values[:50] if isinstance(v, dict) and "@value" in v)
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("@type"), str):
            flat.setdefault("og:type", item["@type"])
        for key, value in item.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, str):
                    continue
                if key in {"og:image", "og:image:url", "og:image:secure_url"}:
                    images.append(v)
                else:
                    flat.setdefault(key, v)
    flat["og:image"] = "\n".join(images)
    return flat


def _text(value: Any) -> str:
    """A plain-text value: the first string (or ``name``) of ``value``, tags and controls removed."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str | dict)), "")
    if isinstance(value, dict):
        value = value.get("name") or value.get("@value") or ""
    if not isinstance(value, str | int | float):
        return ""
    text = nh3.clean(str(value)[:MAX_DESCRIPTION], tags=set(), clean_content_tags={"script", "style"})
    text = _CONTROL.sub("", html_lib.unescape(html_lib.unescape(text)))
    return " ".join(unicodedata.normalize("NFC", text).split())


class _DescriptionConverter(MarkdownConverter):
    def escape(self, text: str, parent_tags: set[str]) -> str:
        # Brackets and angles in text stay text in the Markdown (not links or HTML).
        escaped: str = super().escape(re.sub(r"([\\`\[\]<>])", r"\\\1", text), parent_tags)  # type: ignore[misc]
        return escaped


_CONVERTER = _DescriptionConverter(heading_style=ATX, bullets="-", strong_em_symbol="*")


def description_markdown(value: Any) -> str:
    """A description from the page as Markdown: nh3 first (script, style, iframes, handlers,
    ``javascript:`` links go), then markdownify. Plain text keeps its paragraphs."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), "")
    if not isinstance(value, str):
        return ""
    value = _CONTROL.sub("", value[: MAX_DESCRIPTION * 2])
    if "<" in value:
        cleaned = nh3.clean(value, tags=_DESCRIPTION_TAGS, attributes={"a": {"href"}},
                            url_schemes={"http", "https", "mailto"}, clean_content_tags={"script", "style"},
                            link_rel="nofollow noopener noreferrer")
        # Paragraph breaks written as blank lines in text that also carries a few tags (Shopify).
        cleaned = "".join(f"<p>{part}</p>" if not part.lstrip().startswith("<") else part
                          for part in re.split(r"\n\s*\n", cleaned))
        text: str = _CONVERTER.convert(cleaned)
    else:
        text = "\n\n".join(_CONVERTER.escape(" ".join(p.split()), set()) for p in re.split(r"\n\s*\n", value))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text[:MAX_DESCRIPTION]


def _image_urls(value: Any, base: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    urls: list[str] = []
    for v in values[:50]:
        if isinstance(v, dict):
            v = v.get("url") or v.get("contentUrl") or v.get("@id")
        if not isinstance(v, str) or not v.strip():
            continue
        absolute = urljoin(base, v.strip())
        if urlsplit(absolute).scheme in {"http", "https"} and len(absolute) <= 2000 and absolute not in urls:
            urls.append(absolute)
    return urls


def minor_units(price: Any, currency: str) -> int:
    """``"4.50"``, ``"GBP"`` → ``450``: a finite, non-negative decimal within :data:`MAX_PRICE_MINOR`,
    rounded half up to the currency's minor unit. Raises ``ValueError`` with the reason."""
    if currency not in CURRENCY_EXPONENTS:
        raise ValueError(f"{currency or 'no currency'!s} is not an ISO 4217 currency code")
    if isinstance(price, bool) or not isinstance(price, str | int | float):
        raise ValueError("the price is not a number")
    text = str(price).strip().replace(",", "") if isinstance(price, str) else repr(price)
    if len(text) > 32:
        raise ValueError("the price is not a sensible number")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"the price {text!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError("the price is not a finite number")
    if amount < 0:
        raise ValueError("the price is negative")
    if amount.adjusted() > 12:
        raise ValueError("the price is absurdly large")
    minor = int((amount * (10 ** CURRENCY_EXPONENTS[currency])).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if minor > MAX_PRICE_MINOR:
        raise ValueError("the price is absurdly large")
    return minor


def _code(value: Any, limit: int = MAX_SKU) -> str:
    """A SKU or GTIN: plain text without spaces at the ends; an overlong one is dropped."""
    text = _text(value)
    return text if len(text) <= limit else ""


def _offers(value: Any) -> list[dict[str, Any]]:
    values = value if isinstance(value, list) else [value]
    found: list[dict[str, Any]] = []
    for v in values[: MAX_VARIANTS * 2]:
        if not isinstance(v, dict):
            continue
        if "AggregateOffer" in _types(v) and v.get("offers"):
            found.extend(_offers(v["offers"]))
        elif "AggregateOffer" in _types(v):  # only a range: its low price stands for the product
            found.append({**v, "price": v.get("lowPrice", v.get("price"))})
        else:
            found.append(v)
    return found


def _variant_from_offer(proposal: Proposal, offer: dict[str, Any], *, sku: str = "", gtin: str = "",
                        options: dict[str, str] | None = None) -> ProposedVariant | None:
    spec = offer.get("priceSpecification")
    price = offer.get("price")
    currency = _text(offer.get("priceCurrency")).upper()
    if price is None and isinstance(spec, dict):
        price, currency = spec.get("price"), _text(spec.get("priceCurrency")).upper()
    label = _code(offer.get("sku")) or sku or "an offer"
    variant = ProposedVariant(options=dict(options or {}), sku=_code(offer.get("sku")) or sku,
                              gtin=gtin or _code(offer.get("gtin13") or offer.get("gtin") or offer.get("gtin12")),
                              currency=currency)
    if price is not None:
        try:
            variant.price = minor_units(price, currency)
        except ValueError as exc:
            proposal.warnings.append(f"Skipped {label}: {exc}.")
            return None
    availability = _text(offer.get("availability")).rsplit("/", 1)[-1].lower()
    if availability:
        variant.in_stock = availability in {"instock", "in stock", "limitedavailability", "onlineonly", "presale"}
    return variant


def _read_product(proposal: Proposal, product: dict[str, Any], url: str) -> None:
    proposal.title = _text(product.get("name"))[:MAX_TITLE]
    proposal.description = description_markdown(product.get("description"))
    proposal.brand = _text(product.get("brand") or product.get("manufacturer"))[:MAX_TITLE]
    images = _image_urls(product.get("image"), url)
    variants: list[ProposedVariant] = []
    group_sku = _code(product.get("sku"))
    group_gtin = _code(product.get("gtin13") or product.get("gtin") or product.get("gtin12"))
    members = product.get("hasVariant")
    if isinstance(members, dict):
        members = [members]
    if isinstance(members, list) and members:
        varies = product.get("variesBy")
        varies_list = varies if isinstance(varies, list) else [varies]
        props = [_SCHEMA_PREFIX.sub("", v) for v in varies_list if isinstance(v, str)] or list(_OPTION_PROPS)
        for member in members[: MAX_VARIANTS * 2]:
            if not isinstance(member, dict):
                continue
            options = {p: _text(member.get(p))[:100] for p in props if _text(member.get(p))}
            if not options:
                name = _text(member.get("name"))
                suffix = name[len(proposal.title):].lstrip(" -\u2013") if name.startswith(proposal.title) else name
                if suffix:
                    options = {"variant": suffix[:100]}
            images += [u for u in _image_urls(member.get("image"), url) if u not in images]
            offers = _offers(member.get("offers")) or [{}]
            made = _variant_from_offer(proposal, offers[0], sku=_code(member.get("sku")),
                                       gtin=_code(member.get("gtin13") or member.get("gtin") or member.get("gtin12")),
                                       options=options)
            if made is not None:
                variants.append(made)
    else:
        offers = _offers(product.get("offers"))
        for index, offer in enumerate(offers):
            options = {}
            if len(offers) > 1:
                label = _text(offer.get("name"))[:100] or _code(offer.get("sku")) or f"Option {index + 1}"
                options = {"variant": label}
            made = _variant_from_offer(proposal, offer, sku=group_sku if len(offers) == 1 else "",
                                       gtin=group_gtin if len(offers) == 1 else "", options=options)
            if made is not None:
                variants.append(made)
        if not offers:
            variants.append(ProposedVariant(sku=group_sku, gtin=group_gtin))
    if len(variants) > MAX_VARIANTS:
        proposal.warnings.append(f"The page lists {len(variants)} variants; the first {MAX_VARIANTS} were kept.")
        variants = variants[:MAX_VARIANTS]
    proposal.variants = _distinct(proposal, variants)
    proposal.images = images[:MAX_IMAGES]


def _distinct(proposal: Proposal, variants: list[ProposedVariant]) -> list[ProposedVariant]:
    """Drop repeated SKUs and repeated option combinations (the catalogue refuses both)."""
    seen_skus: set[str] = set()
    seen_options: set[tuple[tuple[str, str], ...]] = set()
    kept: list[ProposedVariant] = []
    for v in variants:
        combo = tuple(sorted(v.options.items()))
        if (v.sku and v.sku in seen_skus) or combo in seen_options:
            proposal.warnings.append(f"Skipped a repeated variant{f' ({v.sku})' if v.sku else ''}.")
            continue
        seen_skus.add(v.sku)
        seen_options.add(combo)
        kept.append(v)
    return kept


def _fill_from_opengraph(proposal: Proposal, og: dict[str, str], url: str) -> None:
    if not proposal.title:
        proposal.title = _text(og.get("og:title"))[:MAX_TITLE]
    if not proposal.description:
        proposal.description = description_markdown(og.get("og:description", ""))
    if not proposal.brand:
        proposal.brand = _text(og.get("product:brand") or og.get("og:brand"))[:MAX_TITLE]
    for image in _image_urls(og.get("og:image", "").split("\n"), url):
        if image not in proposal.images and len(proposal.images) < MAX_IMAGES:
            proposal.images.append(image)
    if not proposal.variants:
        amount = og.get("product:price:amount") or og.get("og:price:amount")
        currency = _text(og.get("product:price:currency") or og.get("og:price:currency")).upper()
        offer = {"price": amount, "priceCurrency": currency, "sku": og.get("product:retailer_item_id", ""),
                 "availability": og.get("product:availability", "")}
        made = _variant_from_offer(proposal, offer if amount else {"sku": offer["sku"]})
        if made is not None:
            proposal.variants = [made]
