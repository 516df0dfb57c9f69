"""SumUp Online Payments, Hosted Checkout (design/domains.md §5): no card data touches the server.

Wire format (SumUp's OpenAPI in ``sumup/sumup-py``, PyPI ``sumup`` 0.4.0), ``Authorization:
Bearer <key>`` on every call:

- ``POST /v0.1/checkouts`` ``{checkout_reference, amount (float, major units), currency,
  merchant_code, description, return_url, redirect_url, hosted_checkout: {enabled: true}}``
  → 201 with ``hosted_checkout_url``. SumUp's ``return_url`` is **the webhook target**; its
  ``redirect_url`` is where the payer comes back to (our ``return_url``).
- ``GET /v0.1/checkouts/{id}``; ``GET /v0.1/checkouts?checkout_reference=…`` (an array);
  ``DELETE /v0.1/checkouts/{id}`` (deactivate: ``EXPIRED``; 409 ``CHECKOUT_PROCESSED`` once paid).
- ``POST /v1.0/merchants/{merchant_code}/payments/{transaction_id}/refunds`` with an optional
  ``{"amount": 5.0}`` (a partial refund); ``GET /v2.1/merchants/{merchant_code}/transactions?id=…``
  tells how much was refunded (its ``transaction_events`` of type ``REFUND``).

**Exactly one checkout per reference.** A create that times out, fails with a 5xx or answers
409 ``DUPLICATED_CHECKOUT`` may have been made anyway, so the provider lists by
``checkout_reference`` before it tries again, and answers the checkout it finds. A refund is
never blindly retried: after a timeout the refunded amount is re-read to learn what happened.

Statuses: ``PAID`` (or a ``SUCCESSFUL`` transaction, as SumUp's own Vendure plugin does) → paid,
then refunded or partially refunded by the refund events; ``PENDING`` → pending; ``FAILED`` →
failed; ``EXPIRED`` → expired (a checkout we deactivated reads ``EXPIRED`` too: :meth:`cancel`
answers ``CANCELLED``, a later :meth:`fetch` ``EXPIRED``; an order treats both as "not paid").

Outbound calls go through :func:`app.safe_http.guarded_transport`: the API URL is the operator's
setting, and a loopback one (the fake, for local click-through) is the only private address allowed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from app.money import CURRENCY_EXPONENTS, format_minor
from app.safe_http import guarded_transport
from domains.payments.schemas import PaymentError, PaymentRecord, PaymentStatus

__all__ = ["DEFAULT_API_URL", "SUMUP", "SumUpProvider", "checkout_id_from_webhook", "to_major", "to_minor"]

log = logging.getLogger("rose_ash.payments.sumup")

SUMUP = "sumup"
DEFAULT_API_URL = "https://api.sumup.com"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MAX_REFERENCE = 64  # SumUp's schema allows 90 now; older accounts refuse more than 64
MAX_WEBHOOK_BYTES = 64 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

_STATUS = {
    "PAID": PaymentStatus.PAID,
    "PENDING": PaymentStatus.PENDING,
    "FAILED": PaymentStatus.FAILED,
    "EXPIRED": PaymentStatus.EXPIRED,
}
_PAID_TRANSACTION = {"SUCCESSFUL", "REFUNDED"}
_COUNTED_REFUND = {"SUCCESSFUL", "PENDING", "REFUNDED", "SCHEDULED", "RECONCILED", "PAID_OUT"}


def to_major(amount_minor: int, currency: str) -> float:
    """``1010, "EUR"`` → ``10.1``: SumUp's amounts are floats in major units."""
    return float(Decimal(amount_minor).scaleb(-CURRENCY_EXPONENTS.get(currency, 2)))


def to_minor(amount: Any, currency: str) -> int:
    """SumUp's float back to integer minor units, rounded half up (``10.1`` → ``1010``)."""
    value = Decimal(str(amount)).scaleb(CURRENCY_EXPONENTS.get(currency, 2))
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def checkout_id_from_webhook(body: bytes) -> str | None:
    """The checkout id in either of SumUp's webhook envelopes, or ``None``.

    - sent to the checkout's ``return_url``: ``{"event_type": "CHECKOUT_STATUS_CHANGED", "id": "<checkout id>"}``;
    - registered in the dashboard: ``{"id", "event_type": "checkout.status.updated",
      "payload": {"checkout_id", "reference", "status"}, "timestamp"}``.

    Unknown event types, other shapes and anything that does not decode are ``None`` (ignored).
    """
    if len(body) > MAX_WEBHOOK_BYTES:
        return None
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    event = data.get("event_type")
    found: object = None
    if event == "CHECKOUT_STATUS_CHANGED":
        found = data.get("id")
    elif event == "checkout.status.updated":
        payload = data.get("payload")
        found = payload.get("checkout_id") if isinstance(payload, dict) else None
    return found if isinstance(found, str) and _ID.match(found) else None


class _Checkout(msgspec.Struct, frozen=True):
    record: PaymentRecord
    transaction_id: str | None


class SumUpProvider:
    """:class:`~domains.payments.provider.PaymentProvider` for SumUp Hosted Checkout."""

    name = SUMUP
    label = "Card or wallet (SumUp)"

    def __init__(
        self,
        *,
        api_key: str,
        merchant_code: str,
        api_url: str = DEFAULT_API_URL,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        attempts: int = 3,
    ) -> None:
        self.api_key = api_key
        self.merchant_code = merchant_code
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._http = http
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.attempts = max(1, attempts)

    def __repr__(self) -> str:  # never the key
        return f"<SumUpProvider {self.merchant_code} at {self.api_url}>"

    # The PaymentProvider protocol ---------------------------------------------------------------

    async def create(
        self, *, reference: str, amount_minor: int, currency: str, description: str, return_url: str, webhook_url: str
    ) -> PaymentRecord:
        if not reference or len(reference) > MAX_REFERENCE:
            raise PaymentError(f"A payment reference must be 1 to {MAX_REFERENCE} characters long.")
        if currency not in CURRENCY_EXPONENTS:
            raise PaymentError(f"{currency!r} is not a currency SumUp can take.")
        if amount_minor <= 0:
            raise PaymentError("The amount to pay must be more than zero.")
        body = {
            "checkout_reference": reference,
            "amount": to_major(amount_minor, currency),
            "currency": currency,
            "merchant_code": self.merchant_code,
            "description": description[:255],
            "return_url": webhook_url,  # SumUp posts its webhook here
            "redirect_url": return_url,  # where the payer lands after the hosted page
            "hosted_checkout": {"enabled": True},
        }
        last: PaymentError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._call("POST", "/v0.1/checkouts", json=body)
            except PaymentError as exc:  # a timeout or a dropped connection: it may exist anyway
                last = exc
            else:
                if response.status_code in (200, 201):
                    return self._checkout(response).record
                if response.status_code != 409 and response.status_code < 500 and response.status_code != 429:
                    raise self._error(response, "create the checkout")
                last = self._error(response, "create the checkout")
            # Before trying again (or answering a 409), see whether the checkout was made after all.
            try:
                existing = await self._by_reference(reference)
            except PaymentError as exc:
                if not exc.retryable:
                    raise
                existing, last = None, exc
            if existing is not None:
                return self._same_checkout(existing, amount_minor, currency)
            if last.code == "DUPLICATED_CHECKOUT":
                raise PaymentError(
                    "SumUp says a checkout with this reference exists but does not list it; try again in a minute.",
                    retryable=True,
                    status=409,
                    code=last.code,
                )
            log.warning("SumUp create for %s failed (attempt %d of %d): %s", reference, attempt, self.attempts, last)
        assert last is not None
        raise last

    async def fetch(self, provider_id: str) -> PaymentRecord:
        return (await self._fetch(provider_id)).record

    async def cancel(self, provider_id: str) -> PaymentRecord:
        """Retrieve; if still pending, deactivate (SumUp's Vendure plugin does the same)."""
        current = await self._fetch(provider_id)
        if current.record.status is not PaymentStatus.PENDING:
            return current.record
        response = await self._call("DELETE", f"/v0.1/checkouts/{_segment(provider_id)}")
        if response.status_code == 409:  # CHECKOUT_PROCESSED: paid in the meantime
            return await self.fetch(provider_id)
        if response.status_code not in (200, 204):
            raise self._error(response, "cancel the checkout", provider_id)
        record = self._checkout(response).record if response.status_code == 200 else current.record
        if record.status in (PaymentStatus.EXPIRED, PaymentStatus.PENDING):
            return msgspec.structs.replace(record, status=PaymentStatus.CANCELLED)
        return record

    async def refund(self, provider_id: str, amount_minor: int | None = None) -> PaymentRecord:
        current = await self._fetch(provider_id)
        record = current.record
        if (
            record.status not in (PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED)
            or current.transaction_id is None
        ):
            if record.status is PaymentStatus.REFUNDED:
                raise PaymentError("This payment has already been refunded in full.")
            raise PaymentError("This checkout was not paid, so there is nothing to refund.")
        remaining = record.amount_minor - record.refunded_minor
        amount = remaining if amount_minor is None else amount_minor
        money = format_minor
        if amount <= 0:
            raise PaymentError("A refund must be more than zero.")
        if amount > remaining:
            already = (
                f" ({money(record.refunded_minor, record.currency)} already refunded)" if record.refunded_minor else ""
            )
            raise PaymentError(
                f"Cannot refund {money(amount, record.currency)}: only {money(remaining, record.currency)} "
                f"of the {money(record.amount_minor, record.currency)} paid is left to refund{already}."
            )
        whole = amount == record.amount_minor and not record.refunded_minor
        path = f"/v1.0/merchants/{_segment(self.merchant_code)}/payments/{_segment(current.transaction_id)}/refunds"
        try:
            response = await self._call(
                "POST", path, json=None if whole else {"amount": to_major(amount, record.currency)}
            )
        except PaymentError:
            # Never refund twice: learn whether this one went through before saying anything.
            after = await self.fetch(provider_id)
            if after.refunded_minor >= record.refunded_minor + amount:
                return after
            raise
        if response.status_code not in (200, 201, 204):
            raise self._error(response, "refund the payment", provider_id)
        return await self.fetch(provider_id)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return checkout_id_from_webhook(body)

    # Wire ---------------------------------------------------------------------------------------

    async def _fetch(self, provider_id: str) -> _Checkout:
        if not _ID.match(provider_id):
            raise PaymentError("SumUp has no such checkout.", status=404, code="NOT_FOUND")
        response = await self._call("GET", f"/v0.1/checkouts/{_segment(provider_id)}")
        if response.status_code != 200:
            raise self._error(response, "read the checkout", provider_id)
        checkout = self._checkout(response)
        record = checkout.record
        if record.status in (PaymentStatus.PAID, PaymentStatus.REFUNDED) and checkout.transaction_id:
            refunded = await self._refunded(checkout.transaction_id, record.currency)
            if record.status is PaymentStatus.REFUNDED and not refunded:
                refunded = record.amount_minor  # the transaction says REFUNDED without listing the events
            if refunded:
                full = refunded >= record.amount_minor
                status = PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED
                record = msgspec.structs.replace(record, refunded_minor=refunded, status=status)
            checkout = _Checkout(record=record, transaction_id=checkout.transaction_id)
        return checkout

    async def _refunded(self, transaction_id: str, currency: str) -> int:
        """Minor units refunded on a transaction: its ``transaction_events`` of type ``REFUND`` that did not fail."""
        response = await self._call(
            "GET", f"/v2.1/merchants/{_segment(self.merchant_code)}/transactions", params={"id": transaction_id}
        )
        if response.status_code != 200:
            raise self._error(response, "read the payment's refunds")
        data = _json(response)
        events = data.get("transaction_events") if isinstance(data, dict) else None
        total = 0
        for event in events if isinstance(events, list) else ():
            if (
                isinstance(event, dict)
                and event.get("event_type") == "REFUND"
                and event.get("status") in _COUNTED_REFUND
                and isinstance(event.get("amount"), int | float)
            ):
                total += to_minor(abs(event["amount"]), currency)
        return total

    async def _by_reference(self, reference: str) -> _Checkout | None:
        response = await self._call("GET", "/v0.1/checkouts", params={"checkout_reference": reference})
        if response.status_code != 200:
            raise self._error(response, "look the checkout up")
        items = _json(response)
        if not isinstance(items, list):
            raise PaymentError("SumUp answered the checkout list with something else.", retryable=True)
        ours = [item for item in items if isinstance(item, dict) and item.get("checkout_reference") == reference]
        if not ours:
            return None
        if len(ours) > 1:
            log.error("SumUp lists %d checkouts for reference %s; answering the newest", len(ours), reference)
        newest = max(ours, key=lambda item: str(item.get("date") or ""))
        return self._parse(newest)

    def _same_checkout(self, existing: _Checkout, amount_minor: int, currency: str) -> PaymentRecord:
        record = existing.record
        if record.amount_minor != amount_minor or record.currency != currency:
            raise PaymentError(
                f"A SumUp checkout with this reference already exists for "
                f"{format_minor(record.amount_minor, record.currency)}, not "
                f"{format_minor(amount_minor, currency)}.",
                status=409,
                code="DUPLICATED_CHECKOUT",
            )
        return record

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        url = self.api_url + path
        try:
            if self._http is not None:
                return await self._http.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout, follow_redirects=False
                )
            async with httpx.AsyncClient(
                transport=guarded_transport(allow_private=self._loopback), timeout=self.timeout
            ) as client:
                return await client.request(
                    method, url, json=json, params=params, headers=headers, follow_redirects=False
                )
        except httpx.TimeoutException as exc:
            raise PaymentError("SumUp did not answer in time; try again in a minute.", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise PaymentError("SumUp could not be reached; try again in a minute.", retryable=True) from exc

    @property
    def _loopback(self) -> bool:
        return (urlsplit(self.api_url).hostname or "") in _LOOPBACK

    def _checkout(self, response: httpx.Response) -> _Checkout:
        data = _json(response)
        if not isinstance(data, dict):
            raise PaymentError("SumUp answered with something that is not a checkout.", retryable=True)
        return self._parse(data)

    def _parse(self, data: dict[str, Any]) -> _Checkout:
        try:
            currency = str(data["currency"])
            amount = to_minor(data["amount"], currency)
            checkout_id = str(data["id"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PaymentError("SumUp answered with a checkout we cannot read.", retryable=True) from exc
        transactions = [t for t in data.get("transactions") or () if isinstance(t, dict)]
        paid = [t for t in transactions if t.get("status") in _PAID_TRANSACTION]
        status = _STATUS.get(str(data.get("status")), PaymentStatus.PENDING)
        if paid:
            status = PaymentStatus.PAID
        transaction_id = (paid[-1].get("id") if paid else None) or data.get("transaction_id")
        if status is PaymentStatus.PAID and paid and paid[-1].get("status") == "REFUNDED":
            status = PaymentStatus.REFUNDED  # refined by _refunded() when the events say partial
        url = data.get("hosted_checkout_url")
        record = PaymentRecord(
            provider=SUMUP,
            provider_id=checkout_id,
            reference=str(data.get("checkout_reference") or ""),
            status=status,
            amount_minor=amount,
            currency=currency,
            payment_url=url if isinstance(url, str) else None,
        )
        return _Checkout(record=record, transaction_id=str(transaction_id) if transaction_id else None)

    def _error(self, response: httpx.Response, doing: str, provider_id: str | None = None) -> PaymentError:
        status = response.status_code
        data = _json(response, strict=False)
        detail = data if isinstance(data, dict) else {}
        code = detail.get("error_code")
        said = detail.get("message") or detail.get("detail") or detail.get("error_message") or detail.get("title")
        said_text = f" (SumUp: {said})" if isinstance(said, str) and said else ""
        code_text = code if isinstance(code, str) else None
        if status == 404:
            return PaymentError(
                f"SumUp has no checkout {provider_id or ''}".rstrip() + ".", status=404, code=code_text or "NOT_FOUND"
            )
        if status in (401, 403):
            return PaymentError(
                f"SumUp refused to {doing}: check ROSE_ASH_SUMUP_API_KEY and ROSE_ASH_SUMUP_MERCHANT_CODE{said_text}.",
                status=status,
                code=code_text,
            )
        if status == 429 or status >= 500:
            return PaymentError(
                f"SumUp could not {doing} right now (HTTP {status}); try again in a minute.",
                retryable=True,
                status=status,
                code=code_text,
            )
        param = detail.get("param")
        param_text = f" [{param}]" if isinstance(param, str) else ""
        return PaymentError(f"SumUp would not {doing}{said_text}{param_text}.", status=status, code=code_text)


def _json(response: httpx.Response, *, strict: bool = True) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        if not strict:
            return None
        raise PaymentError(
            f"SumUp answered HTTP {response.status_code} with a body that is not JSON.",
            retryable=response.status_code >= 500,
        ) from exc


def _segment(value: str) -> str:
    return quote(value, safe="")
