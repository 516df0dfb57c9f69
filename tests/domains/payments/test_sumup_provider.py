"""The SumUp provider against the fake SumUp over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import re

import httpx
import msgspec
import pytest

from domains.payments.provider import PaymentProvider
from domains.payments.schemas import PaymentError, PaymentStatus
from domains.payments.sumup import SumUpProvider, checkout_id_from_webhook, to_major, to_minor
from tests.fakes.sumup import MERCHANT_CODE, FakeSumUp

pytestmark = pytest.mark.anyio

RETURN = "http://127.0.0.1:8000/cart/orders/RA-2026-000042/return"
HOOK = "http://127.0.0.1:8000/payments/webhook/sumup"


async def make(sumup: SumUpProvider, reference: str = "RA-2026-000042", amount: int = 1010):  # type: ignore[no-untyped-def]
    return await sumup.create(
        reference=reference,
        amount_minor=amount,
        currency="EUR",
        description="Two loaves",
        return_url=RETURN,
        webhook_url=HOOK,
    )


async def click(fake: FakeSumUp, checkout_id: str, action: str) -> httpx.Response:
    """A payer pressing a button on the hosted page (a plain form post, no JavaScript)."""
    async with httpx.AsyncClient() as browser:
        return await browser.post(f"{fake.public_url}/pay/{checkout_id}", data={"action": action})


def test_money_conversion_is_exact() -> None:
    assert to_major(1010, "EUR") == 10.1 and to_minor(10.1, "EUR") == 1010
    assert to_major(500, "JPY") == 500.0 and to_minor(500, "JPY") == 500
    assert to_major(1234, "KWD") == 1.234 and to_minor(1.234, "KWD") == 1234
    assert all(to_minor(to_major(n, "EUR"), "EUR") == n for n in range(0, 100_000, 7))


async def test_create_opens_a_hosted_checkout(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    assert isinstance(sumup, PaymentProvider)
    record = await make(sumup)
    assert record.provider == "sumup" and record.reference == "RA-2026-000042"
    assert (record.status, record.amount_minor, record.currency) == (PaymentStatus.PENDING, 1010, "EUR")
    assert record.payment_url == f"{sumup_fake.public_url}/pay/{record.provider_id}"
    stored = sumup_fake.checkouts[record.provider_id]
    # SumUp's return_url is its webhook target; redirect_url is where the payer comes back.
    assert (stored["return_url"], stored["redirect_url"], stored["amount"]) == (HOOK, RETURN, 10.1)
    assert stored["merchant_code"] == MERCHANT_CODE
    assert await sumup.fetch(record.provider_id) == record


async def test_create_again_answers_the_same_checkout(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    first = await make(sumup)
    again = await make(sumup)  # a double submit: SumUp answers 409, the provider lists by reference
    assert again == first and len(sumup_fake.checkouts) == 1
    with pytest.raises(PaymentError, match=re.escape("already exists for €10.10, not €12.00")) as caught:
        await make(sumup, amount=1200)
    assert caught.value.retryable is False and len(sumup_fake.checkouts) == 1


async def test_pay_on_the_hosted_page_then_fetch(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    record = await make(sumup)
    page = await click(sumup_fake, record.provider_id, "pay")
    assert page.status_code == 303 and page.headers["location"] == RETURN
    paid = await sumup.fetch(record.provider_id)
    assert (paid.status, paid.refunded_minor, paid.amount_minor) == (PaymentStatus.PAID, 0, 1010)


async def test_fail_and_abandon(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    failed = await make(sumup, reference="RA-F")
    await click(sumup_fake, failed.provider_id, "fail")
    assert (await sumup.fetch(failed.provider_id)).status is PaymentStatus.FAILED
    left = await make(sumup, reference="RA-A")
    response = await click(sumup_fake, left.provider_id, "abandon")  # the payer closes the tab
    assert response.status_code == 303 and (await sumup.fetch(left.provider_id)).status is PaymentStatus.PENDING


async def test_refund_in_parts_and_never_more_than_paid(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    record = await make(sumup)
    with pytest.raises(PaymentError, match="not paid, so there is nothing to refund"):
        await sumup.refund(record.provider_id)
    await click(sumup_fake, record.provider_id, "pay")
    part = await sumup.refund(record.provider_id, 400)
    assert (part.status, part.refunded_minor) == (PaymentStatus.PARTIALLY_REFUNDED, 400)
    with pytest.raises(PaymentError) as caught:
        await sumup.refund(record.provider_id, 611)
    assert str(caught.value) == (
        "Cannot refund €6.11: only €6.10 of the €10.10 paid is left to refund (€4.00 already refunded)."
    )
    assert caught.value.retryable is False
    with pytest.raises(PaymentError, match="more than zero"):
        await sumup.refund(record.provider_id, 0)
    txn = next(iter(sumup_fake.transactions.values()))
    assert [e["amount"] for e in txn["transaction_events"]] == [4.0]  # the refused ones reached nobody
    rest = await sumup.refund(record.provider_id)  # everything left
    assert (rest.status, rest.refunded_minor) == (PaymentStatus.REFUNDED, 1010)
    assert (await sumup.fetch(record.provider_id)) == rest
    with pytest.raises(PaymentError, match="already been refunded in full"):
        await sumup.refund(record.provider_id, 1)


async def test_refund_larger_than_paid_in_one_go(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    record = await make(sumup, amount=250)
    await click(sumup_fake, record.provider_id, "pay")
    with pytest.raises(PaymentError) as caught:
        await sumup.refund(record.provider_id, 251)
    assert str(caught.value) == "Cannot refund €2.51: only €2.50 of the €2.50 paid is left to refund."
    assert ("refund", next(iter(sumup_fake.transactions))) not in sumup_fake.calls
    assert (await sumup.fetch(record.provider_id)).status is PaymentStatus.PAID


@pytest.mark.parametrize("made", [True, False], ids=["made-then-500", "500-before-making"])
async def test_500_on_create_lists_by_reference_before_retrying(
    sumup: SumUpProvider, sumup_fake: FakeSumUp, made: bool
) -> None:
    sumup_fake.fail_next("create", status=500, commit=made)
    record = await make(sumup)
    assert len(sumup_fake.checkouts) == 1 and record.provider_id in sumup_fake.checkouts
    ops = [op for op, _ in sumup_fake.calls]
    assert ops == (["create", "list"] if made else ["create", "list", "create"])


@pytest.mark.parametrize("made", [True, False], ids=["made-then-silent", "silent-before-making"])
async def test_timeout_on_create_lists_by_reference_before_retrying(
    sumup: SumUpProvider, sumup_fake: FakeSumUp, made: bool
) -> None:
    sumup_fake.hang_next("create", commit=made)
    record = await make(sumup)
    assert len(sumup_fake.checkouts) == 1 and record.provider_id in sumup_fake.checkouts
    assert record.payment_url == f"{sumup_fake.public_url}/pay/{record.provider_id}"
    assert [op for op, _ in sumup_fake.calls] == (["create", "list"] if made else ["create", "list", "create"])


async def test_sumup_down_is_a_retryable_error_and_no_checkout(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    for _ in range(sumup.attempts):
        sumup_fake.fail_next("create", status=503, commit=False)
    with pytest.raises(PaymentError) as caught:
        await make(sumup)
    assert caught.value.retryable is True and caught.value.status == 503
    assert str(caught.value) == "SumUp could not create the checkout right now (HTTP 503); try again in a minute."
    assert sumup_fake.checkouts == {}


async def test_unreachable_sumup_is_retryable() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = SumUpProvider(api_key="k", merchant_code="M", api_url=f"http://127.0.0.1:{port}", attempts=1)
    with pytest.raises(PaymentError, match="could not be reached") as caught:
        await provider.fetch("abc")
    assert caught.value.retryable is True


async def test_bad_credentials_and_unknown_checkout(sumup_fake: FakeSumUp, sumup: SumUpProvider) -> None:
    wrong = SumUpProvider(api_key="sup_sk_wrong", merchant_code=MERCHANT_CODE, api_url=sumup_fake.public_url)
    with pytest.raises(PaymentError, match="check ROSE_ASH_SUMUP_API_KEY") as caught:
        await make(wrong)
    assert (caught.value.retryable, caught.value.status) == (False, 401)
    other = SumUpProvider(api_key="sup_sk_fake", merchant_code="SOMEONE", api_url=sumup_fake.public_url)
    with pytest.raises(PaymentError) as caught:
        await make(other)
    assert caught.value.status == 403 and "checkout_payments_not_allowed" in str(caught.value)
    with pytest.raises(PaymentError, match="SumUp has no checkout") as caught:
        await sumup.fetch("00000000-0000-0000-0000-000000000000")
    assert caught.value.not_found and not caught.value.retryable
    with pytest.raises(PaymentError) as caught:
        await sumup.fetch("../../v0.1/checkouts")  # never a path of our choosing
    assert caught.value.not_found
    for bad in ("", "x" * 65):
        with pytest.raises(PaymentError, match="1 to 64 characters"):
            await make(sumup, reference=bad)
    with pytest.raises(PaymentError, match="more than zero"):
        await make(sumup, amount=0)
    assert sumup_fake.checkouts == {}


async def test_cancel(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    pending = await make(sumup, reference="RA-C1")
    cancelled = await sumup.cancel(pending.provider_id)
    assert (
        cancelled.status is PaymentStatus.CANCELLED and sumup_fake.checkouts[pending.provider_id]["status"] == "EXPIRED"
    )
    assert (await sumup.fetch(pending.provider_id)).status is PaymentStatus.EXPIRED
    paid = await make(sumup, reference="RA-C2")
    await click(sumup_fake, paid.provider_id, "pay")
    assert (await sumup.cancel(paid.provider_id)).status is PaymentStatus.PAID  # paid stays paid


def test_parse_webhook_both_envelopes() -> None:
    checkout = b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"4e425463-3e1b-431d-83fa-1e51c2925e99"}'
    assert checkout_id_from_webhook(checkout) == "4e425463-3e1b-431d-83fa-1e51c2925e99"
    dashboard = msgspec.json.encode(
        {
            "id": "evt_1",
            "event_type": "checkout.status.updated",
            "timestamp": "x",
            "payload": {"checkout_id": "c-1", "reference": "RA-1", "status": "PAID"},
        }
    )
    assert checkout_id_from_webhook(dashboard) == "c-1"
    for junk in (
        b"",
        b"[]",
        b"null",
        b"{",
        b'{"event_type":"PAYOUT","id":"c-1"}',
        b'{"id":"c-1"}',
        b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":5}',
        b'{"event_type":"checkout.status.updated"}',
        b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"../admin"}',
        b"\xff\xfe",
        b"[" * 10_000,
        b'{"event_type":"CHECKOUT_STATUS_CHANGED","id":"' + b"a" * 200_000 + b'"}',
    ):
        assert checkout_id_from_webhook(junk) is None, junk[:40]


@pytest.mark.parametrize("made", [True, False], ids=["refunded-then-silent", "silent-before-refunding"])
async def test_refund_timeout_is_never_a_second_refund(sumup: SumUpProvider, sumup_fake: FakeSumUp, made: bool) -> None:
    record = await make(sumup)
    sumup_fake.pay(record.provider_id)
    sumup_fake.hang_next("refund", commit=made)
    if made:  # the refund went through: the provider learns it from SumUp instead of refunding again
        after = await sumup.refund(record.provider_id, 300)
        assert (after.status, after.refunded_minor) == (PaymentStatus.PARTIALLY_REFUNDED, 300)
    else:
        with pytest.raises(PaymentError, match="did not answer in time") as caught:
            await sumup.refund(record.provider_id, 300)
        assert caught.value.retryable is True
        assert (await sumup.fetch(record.provider_id)).refunded_minor == 0
    assert [op for op, _ in sumup_fake.calls].count("refund") == 1


async def test_cancel_while_the_payer_pays(sumup: SumUpProvider, sumup_fake: FakeSumUp) -> None:
    record = await make(sumup)
    # Read as pending, paid on the hosted page before the DELETE arrives: SumUp answers 409
    # CHECKOUT_PROCESSED, and the provider re-fetches and reports the payment.
    sumup_fake.on_call = lambda op, key: sumup_fake.pay(key) if op == "delete" else None
    assert (await sumup.cancel(record.provider_id)).status is PaymentStatus.PAID
    assert ("delete", record.provider_id) in sumup_fake.calls
    assert sumup_fake.checkouts[record.provider_id]["status"] == "PAID"
