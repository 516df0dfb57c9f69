"""Mails about an order after it was placed (issue 17 item 6), each queued as a durable
``mail.send`` job in the caller's transaction (``app.mail.sending.send_mail``), as the receipt is:
it goes if and only if the change it tells about commits, and a ``unique_key`` per event keeps a
replayed webhook or a retried job from telling twice.

- ``payment_failed``: the online payment failed; the order waits (until ``paid_by``) for another try.
- ``cancelled``: the order was cancelled and its stock returned (``reason`` says why).
- ``refunded``: money went back (the amount, and whether it was the whole payment).
- ``staff_paid_after_cancel``: money arrived for a cancelled order (it now needs attention).
- ``staff_new_order``: a new order, to ``ROSE_ASH_CART_STAFF_EMAIL`` or, unset, to every active admin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.mail.message import OutgoingMail, valid_address
from app.mail.sending import send_mail
from app.money import format_minor
from app.settings import Settings
from domains.account.models import User
from domains.cart.models import Order

__all__ = ["cancelled", "payment_failed", "refunded", "staff_addresses", "staff_new_order",
           "staff_paid_after_cancel"]


def _context(order: Order, settings: Settings, **extra: Any) -> dict[str, Any]:
    base = settings.base_url.rstrip("/")
    return {"number": order.number or "", "total": format_minor(order.total_minor, order.currency),
            "order_url": f"{base}/cart/order/{order.token}", **extra}


async def payment_failed(db: AsyncSession, settings: Settings, order: Order, *, checkout_id: str,
                         paid_by: datetime | None) -> None:
    context = _context(order, settings, paid_by=paid_by.strftime("%Y-%m-%d %H:%M UTC") if paid_by else "")
    await send_mail(db, OutgoingMail(to=order.email, subject=f"Payment for order {order.number} did not go through",
                                     template="cart/payment_failed", context=context, tag="order"),
                    unique_key=f"cart-payment-failed:{order.id}:{checkout_id}")


async def cancelled(db: AsyncSession, settings: Settings, order: Order, *, reason: str) -> None:
    await send_mail(db, OutgoingMail(to=order.email, subject=f"Your order {order.number} was cancelled",
                                     template="cart/cancelled", context=_context(order, settings, reason=reason),
                                     tag="order"),
                    unique_key=f"cart-cancelled:{order.id}")


async def refunded(db: AsyncSession, settings: Settings, order: Order, *, amount_minor: int, event: str) -> None:
    """``event`` names this refund (its history row) so two equal partial refunds are two mails."""
    context = _context(order, settings, amount=format_minor(amount_minor, order.currency),
                       refunded=format_minor(order.refunded_minor, order.currency),
                       paid=format_minor(order.paid_minor, order.currency),
                       full=order.refunded_minor >= order.paid_minor,
                       manual=order.payment_provider == "collection")
    await send_mail(db, OutgoingMail(to=order.email, subject=f"Refund for your order {order.number}",
                                     template="cart/refunded", context=context, tag="order"),
                    unique_key=f"cart-refunded:{event}")


async def staff_addresses(db: AsyncSession, settings: Settings) -> list[str]:
    configured = valid_address(settings.cart_staff_email) if settings.cart_staff_email else None
    if configured:
        return [configured]
    rows = (await db.execute(select(User.email).where(User.is_admin.is_(True), User.is_active.is_(True))
                             .order_by(User.email))).scalars()
    return [address for address in (valid_address(email) for email in rows) if address]


async def staff_new_order(db: AsyncSession, settings: Settings, order: Order, lines: list[dict[str, Any]]) -> None:
    base = settings.base_url.rstrip("/")
    context = _context(order, settings, email=order.email, fulfilment=order.fulfilment, address=order.address,
                       notes=order.notes, payment=order.payment_provider, lines=lines,
                       ships=any(line.get("ships", True) for line in lines),
                       admin_url=f"{base}/cart/admin/orders/{order.number}")
    for address in await staff_addresses(db, settings):
        await send_mail(db, OutgoingMail(to=address, subject=f"New order {order.number} ({context['total']})",
                                         template="cart/staff_new_order", context=context, tag="order"),
                        unique_key=f"cart-staff-new:{order.id}:{address}")


async def staff_paid_after_cancel(db: AsyncSession, settings: Settings, order: Order, *, amount_minor: int,
                                  checkout_id: str) -> None:
    """The provider took money for an order that was cancelled: staff refund it or sort it out."""
    base = settings.base_url.rstrip("/")
    context = _context(order, settings, email=order.email, amount=format_minor(amount_minor, order.currency),
                       payment=order.payment_provider, checkout_id=checkout_id,
                       admin_url=f"{base}/cart/admin/orders/{order.number}")
    for address in await staff_addresses(db, settings):
        await send_mail(db, OutgoingMail(to=address, subject=f"Order {order.number} was paid after it was cancelled",
                                         template="cart/staff_paid_after_cancel", context=context, tag="order"),
                        unique_key=f"cart-staff-paid-cancelled:{order.id}:{checkout_id}:{address}")
