"""After an order is placed: staff hand lines over, refund, and unpaid online orders lapse.

Kept apart from ``services.py`` (lines, totals, checkout) and built on its state moves
(``CartService._move``: ``app.fsm.transition``, one conditional UPDATE, recorded in
``OrderTransition`` with who and when). Events that do not change the state (a partial hand-over
of an order already partially fulfilled, a partial refund) are recorded in the same history with
``from_state == to_state``, so staff read one list.

- :meth:`OrderDesk.fulfil_lines`: hand over some units of some lines; each line's
  ``fulfilled_quantity`` moves by a conditional UPDATE that cannot pass its ``quantity``; the order
  goes to ``partially_fulfilled`` or, with every unit handed over, ``fulfilled``.
- :meth:`OrderDesk.refund`: give back part or all of what was paid, through the provider's
  ``refund`` (SumUp) or recorded as handed back at the counter (pay on collection). More than is
  left to refund is refused before anything is asked or written; ``refunded_minor`` moves by a
  conditional UPDATE bounded by ``paid_minor`` (and a CHECK constraint); all of it refunded moves
  the order to ``refunded``, releasing stock not yet handed over.
- :meth:`OrderDesk.retry_payment`: a new checkout for an order still waiting for its online
  payment (SumUp refuses a ``checkout_reference`` twice, so attempt *n* pays as ``<number>-<n>``;
  ``SumUpProvider.create`` lists by reference before retrying after a timeout or a 409).
- :func:`expire_unpaid`: orders in ``payment_pending`` longer than ``ROSE_ASH_CART_PAYMENT_MINUTES``
  are asked of the provider once more (``cancel``: retrieve, and deactivate when unpaid); paid ones
  are marked paid, the others cancelled with their stock released and the payer mailed.

Network calls to a provider are made while the caller holds no lock: the order is read, the
provider asked, then the answer written in one short transaction (or savepoint).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from app.forms import InputProblems
from app.fsm import TransitionLost
from app.money import format_minor, parse_major
from app.settings import Settings
from domains.cart import notices
from domains.cart.models import (
    CANCELLED,
    FULFILLED,
    NEEDS_ATTENTION,
    PAID,
    PARTIALLY_FULFILLED,
    PAYMENT_PENDING,
    REFUNDED,
    Order,
    OrderLine,
    OrderTransition,
)
from domains.cart.services import CartService, utcnow
from domains.payments.registry import available_providers
from domains.payments.schemas import PaymentError, PaymentRecord, PaymentStatus
from domains.payments.services import webhook_url

__all__ = ["REFUNDABLE_STATES", "OrderDesk", "expire_unpaid", "pay_by"]

log = logging.getLogger("rose_ash.cart.fulfilment")

COLLECTION: Final = "collection"
REFUNDABLE_STATES: Final = (PAID, PARTIALLY_FULFILLED, FULFILLED, CANCELLED, NEEDS_ATTENTION)
MONEY_ARRIVED: Final = (PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


def pay_by(order: Order, settings: Settings) -> datetime | None:
    """Until when an order paid online may wait for its payment."""
    return order.placed_at + timedelta(minutes=settings.cart_payment_minutes) if order.placed_at else None


def _conflict(message: str) -> InputProblems:
    return InputProblems({"order": message}, status=409)


class OrderDesk:
    """Staff's and the payer's moves on a placed order, on ``db`` (the caller commits)."""

    def __init__(self, db: AsyncSession, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.cart = CartService(db, settings)

    async def reload(self, order: Order) -> Order:
        fresh = await self.cart._load(Order.id == order.id)
        assert fresh is not None
        return fresh

    async def _record(self, order: Order, *, actor: str, actor_id: UUID | None, note: str) -> UUID:
        """A history entry that is not a move (the state stays as it is)."""
        entry = OrderTransition(id=uuid7(), order_id=order.id, from_state=order.state, to_state=order.state,
                                actor=actor[:64], actor_id=actor_id, note=note)
        self.db.add(entry)
        await self.db.flush()
        return entry.id

    # -- fulfilment ----------------------------------------------------------------------------------

    async def fulfil_lines(self, order: Order, quantities: Mapping[str, object], *, actor: str,
                           actor_id: UUID | None = None) -> Order:
        """Hand over ``{line id: units}`` (blank or 0: none of that line). Every quantity is checked
        before anything is written; a line id not in this order is refused (404). The order's row
        is locked first and the lines read afresh: a refund running meanwhile either finished (the
        order is ``refunded``: refused here) or waits for this hand-over and then sees it."""
        if order.state in (PAID, PARTIALLY_FULFILLED):
            order = await self.cart.lock(order)
        if order.state not in (PAID, PARTIALLY_FULFILLED):
            raise _conflict(f"Order {order.number} is {order.state.replace('_', ' ')}: "
                            "only a paid order is handed over.")
        lines = {str(line.id): line for line in order.lines}
        stray = [key for key in quantities if key not in lines]
        if stray:
            raise InputProblems({"line": "That line is not in this order."}, status=404)
        give: list[tuple[OrderLine, int]] = []
        errors: dict[str, str] = {}
        for key, line in lines.items():
            text = str(quantities.get(key, "") or "").strip()
            if not text:
                continue
            left = line.quantity - line.fulfilled_quantity
            if not text.isascii() or not text.isdigit() or len(text) > 6:
                errors[f"line-{key}"] = f"{line.title}: give a whole number of units from 0 to {left}."
                continue
            units = int(text)
            if units > left:
                errors[f"line-{key}"] = (f"{line.title}: only {left} of {line.quantity} left to hand over, "
                                         f"not {units}.")
            elif units:
                give.append((line, units))
        if errors:
            raise InputProblems(errors)
        if not give:
            raise InputProblems({"line": "Give how many units of at least one line are handed over."})
        summary = ", ".join(f"{units} \N{MULTIPLICATION SIGN} {line.title} ({line.sku})" for line, units in give)
        try:
            async with self.db.begin_nested():
                for line, units in give:
                    # Bounded by the line's quantity: a concurrent hand-over of the same units loses
                    # here; and only while the order is still paid (never units of a refunded order).
                    result = await self.db.execute(
                        update(OrderLine)
                        .where(OrderLine.id == line.id, OrderLine.order_id == order.id,
                               OrderLine.fulfilled_quantity + units <= OrderLine.quantity,
                               OrderLine.order_id.in_(select(Order.id).where(
                                   Order.id == order.id, Order.state.in_((PAID, PARTIALLY_FULFILLED)))))
                        .values(fulfilled_quantity=OrderLine.fulfilled_quantity + units)
                        .execution_options(synchronize_session=False))
                    if int(result.rowcount) != 1:  # type: ignore[attr-defined]
                        raise _conflict(f"{line.title} was handed over meanwhile: reload the order.")
                undone = (await self.db.execute(select(OrderLine.id).where(
                    OrderLine.order_id == order.id, OrderLine.fulfilled_quantity < OrderLine.quantity))).first()
                target = PARTIALLY_FULFILLED if undone is not None else FULFILLED
                if target != order.state:
                    await self.cart._move(order, order.state, target, actor=actor, actor_id=actor_id,
                                          note=f"handed over {summary}")
                else:
                    await self._record(order, actor=actor, actor_id=actor_id, note=f"handed over {summary}")
        except TransitionLost as exc:
            raise _conflict("This order changed meanwhile: reload it.") from exc
        return await self.reload(order)

    # -- cancelling ----------------------------------------------------------------------------------

    async def cancel(self, order: Order, *, actor: str, actor_id: UUID | None = None, reason: str = "") -> Order:
        """Cancel before anything was handed over, returning the stock (``CartService.cancel``:
        conditional UPDATEs in the market) and mailing the customer; a clear 409 otherwise."""
        if order.state in (PARTIALLY_FULFILLED, FULFILLED) or any(line.fulfilled_quantity for line in order.lines):
            raise _conflict(f"Order {order.number} was handed over (in part or in full): it can no longer be "
                            "cancelled; refund it instead.")
        if order.state not in (PAYMENT_PENDING, PAID, NEEDS_ATTENTION):
            raise _conflict(f"Order {order.number} is {order.state.replace('_', ' ')}: nothing to cancel.")
        if not await self.cart.cancel(order, actor=actor, actor_id=actor_id, note=reason.strip()[:500]):
            raise _conflict("This order changed meanwhile: reload it.")
        return await self.reload(order)

    # -- refunds ---------------------------------------------------------------------------------------

    def _amount(self, order: Order, text: str) -> int:
        remaining = order.paid_minor - order.refunded_minor
        if order.state == REFUNDED or (order.paid_minor and remaining <= 0):
            raise _conflict(f"Order {order.number} was refunded in full already.")
        if order.state not in REFUNDABLE_STATES or order.paid_minor <= 0:
            raise _conflict(f"Nothing was paid for order {order.number}, so there is nothing to refund.")
        if not text.strip():
            return remaining
        try:
            amount = parse_major(text, order.currency)
        except ValueError as exc:
            raise InputProblems({"amount": "Give the amount to refund as a number, e.g. 12.50."}) from exc
        money = format_minor
        if amount <= 0:
            raise InputProblems({"amount": "A refund must be more than zero."})
        if amount > remaining:
            already = (f" ({money(order.refunded_minor, order.currency)} refunded already)"
                       if order.refunded_minor else "")
            raise InputProblems({"amount": (
                f"Cannot refund {money(amount, order.currency)}: only {money(remaining, order.currency)} of the "
                f"{money(order.paid_minor, order.currency)} paid is left to refund{already}.")})
        return amount

    async def refund(self, order: Order, amount_text: str = "", *, actor: str, actor_id: UUID | None = None,
                     note: str = "") -> Order:
        """Refund ``amount_text`` (major units as typed; blank: all that is left). Nothing is written
        (and no provider asked) when the amount is wrong; a provider's refusal writes nothing either."""
        amount = self._amount(order, amount_text)
        if order.payment_provider == COLLECTION:
            # No provider to wait for: lock now and check the amount against the fresh row.
            order = await self.cart.lock(order)
            amount = self._amount(order, amount_text)
            before = order.refunded_minor
            how = "handed back at the counter"
            # Conditional: two staff refunding at once cannot together pass what was paid.
            result = await self.db.execute(
                update(Order).where(Order.id == order.id, Order.refunded_minor == before,
                                    Order.refunded_minor + amount <= Order.paid_minor)
                .values(refunded_minor=Order.refunded_minor + amount).execution_options(synchronize_session=False))
            if int(result.rowcount) != 1:  # type: ignore[attr-defined]
                raise _conflict("This order was refunded meanwhile: reload it and check what is left.")
        else:
            provider = available_providers(self.settings, http=self.http).get(order.payment_provider)
            if provider is None or not order.payment_id:
                raise _conflict(f"{order.payment_provider or 'The payment provider'} is not configured here: "
                                "refund in its own dashboard.")
            try:
                record = await provider.refund(order.payment_id, amount)
            except PaymentError as exc:
                raise InputProblems({"amount": str(exc)}, status=503 if exc.retryable else 409) from exc
            how = f"through {provider.label}"
            # Locked only after the provider answered (no lock is held over the network); the
            # lines and state are read afresh, so a hand-over committed meanwhile is counted.
            order = await self.cart.lock(order)
            before = order.refunded_minor
            # The provider's count is the truth (a refund made in its dashboard counts too), but
            # never less than what we know, nor more than was paid.
            after = min(order.paid_minor, max(before + amount, record.refunded_minor))
            await self.db.execute(
                update(Order).where(Order.id == order.id, Order.refunded_minor <= after)
                .values(refunded_minor=after).execution_options(synchronize_session=False))
        await self.db.refresh(order, attribute_names=["refunded_minor", "paid_minor", "state"])
        text = f"refunded {format_minor(amount, order.currency)} {how}" + (f": {note.strip()[:300]}" if note.strip()
                                                                            else "")
        try:
            if order.refunded_minor >= order.paid_minor and order.state != REFUNDED:
                # The goods not handed over stay: their allocation goes back on sale, if the order
                # holds one (not after a lapse; still after an amount mismatch).
                held = await self.cart.holds_stock(order)
                event = await self._move_recorded(order, REFUNDED, actor=actor, actor_id=actor_id, note=text)
                if held:
                    await self.cart.release_held(order)
            else:
                event = await self._record(order, actor=actor, actor_id=actor_id, note=text)
        except TransitionLost as exc:
            raise _conflict("This order changed meanwhile: reload it.") from exc
        await notices.refunded(self.db, self.settings, order, amount_minor=amount, event=str(event))
        return await self.reload(order)

    async def _move_recorded(self, order: Order, to: str, *, actor: str, actor_id: UUID | None, note: str) -> UUID:
        await self.cart._move(order, order.state, to, actor=actor, actor_id=actor_id, note=note)
        last = (await self.db.execute(select(OrderTransition.id).where(OrderTransition.order_id == order.id)
                                      .order_by(OrderTransition.id.desc()).limit(1))).scalar_one()
        return last

    # -- paying again ----------------------------------------------------------------------------------

    async def retry_payment(self, order: Order) -> str | None:
        """Where to send the payer for another try: the same hosted page while its checkout is
        still open, a new checkout (a new reference) after it failed or expired; ``None`` when the
        payment arrived meanwhile (the order was moved)."""
        if order.state != PAYMENT_PENDING or order.payment_provider == COLLECTION or order.number is None:
            raise _conflict("This order is not waiting for an online payment.")
        deadline = pay_by(order, self.settings)
        if deadline is not None and utcnow() > deadline:
            raise _conflict("The time to pay this order has passed; it is about to be cancelled.")
        provider = available_providers(self.settings, http=self.http).get(order.payment_provider)
        if provider is None:
            raise _conflict("Online payment is not available at the moment.")
        try:
            if order.payment_id:
                current = await provider.fetch(order.payment_id)
                if current.status in MONEY_ARRIVED:
                    await self.cart.apply_payment(current)
                    return None
                if current.status is PaymentStatus.PENDING and current.payment_url:
                    return current.payment_url
            attempt = order.payment_attempt + 1
            base = self.settings.base_url.rstrip("/")
            record = await provider.create(
                reference=f"{order.number}-{attempt}", amount_minor=order.total_minor, currency=order.currency,
                description=f"Order {order.number}", return_url=f"{base}/cart/order/{order.token}/return",
                webhook_url=webhook_url(self.settings, provider.name))
        except PaymentError as exc:
            raise InputProblems({"payment": str(exc)}, status=503 if exc.retryable else 409) from exc
        result = await self.db.execute(
            update(Order).where(Order.id == order.id, Order.state == PAYMENT_PENDING,
                                Order.payment_attempt == order.payment_attempt)
            .values(payment_attempt=attempt, payment_id=record.provider_id[:128],
                    payment_url=(record.payment_url or "")[:2048]).execution_options(synchronize_session=False))
        if int(result.rowcount) != 1:  # type: ignore[attr-defined]
            # Another click made attempt n first; SumUp answered it the same checkout (same reference).
            fresh = await self.reload(order)
            return fresh.payment_url or None if fresh.state == PAYMENT_PENDING else None
        await self._record(order, actor="customer", actor_id=None,
                           note=f"payment attempt {attempt} ({record.provider_id})")
        await self.db.refresh(order, attribute_names=["payment_attempt", "payment_id", "payment_url"])
        return record.payment_url


async def expire_unpaid(maker: async_sessionmaker[AsyncSession], settings: Settings, *,
                        http: httpx.AsyncClient | None = None, limit: int = 100) -> dict[str, int]:
    """Orders waiting for an online payment longer than ``cart_payment_minutes``: asked of their
    provider once more (``cancel`` retrieves and deactivates an unpaid checkout, so it cannot be
    paid after we let the stock go); paid → marked paid; otherwise cancelled, stock released, the
    payer mailed. A provider that does not answer is asked again on the next run."""
    cutoff = utcnow() - timedelta(minutes=settings.cart_payment_minutes)
    async with maker() as session:
        rows = (await session.execute(
            select(Order.id, Order.payment_provider, Order.payment_id)
            .where(Order.state == PAYMENT_PENDING, Order.payment_provider != COLLECTION, Order.placed_at < cutoff)
            .order_by(Order.placed_at).limit(limit))).all()
    providers = available_providers(settings, http=http)
    counts = {"paid": 0, "cancelled": 0, "skipped": 0}
    for order_id, name, payment_id in rows:
        provider = providers.get(name)
        record: PaymentRecord | None = None
        if provider is None:
            log.warning("order %s waits for %s, which is not configured: left for staff", order_id, name)
            counts["skipped"] += 1
            continue
        if payment_id:
            try:
                record = await provider.cancel(payment_id)
            except PaymentError as exc:
                if not exc.not_found:
                    log.warning("order %s: %s did not answer (%s); asked again next run", order_id, name, exc)
                    counts["skipped"] += 1
                    continue
        async with maker() as session, session.begin():
            cart = CartService(session, settings)
            order = await cart._load(Order.id == order_id)
            if order is None or order.state != PAYMENT_PENDING or order.payment_id != payment_id:
                continue  # moved (or retried) meanwhile
            if record is not None and record.status in MONEY_ARRIVED:
                await cart.apply_payment(record)
                counts["paid"] += 1
            elif await cart.cancel(order, actor="expiry", note="the payment did not arrive in time"):
                counts["cancelled"] += 1
    return counts
