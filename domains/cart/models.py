"""Cart tables: the cart is a draft order (design/domains.md §2).

An :class:`Order` starts in ``cart`` (lines added and removed), moves to ``checkout`` when the
visitor starts checking out (its stock is then reserved for a while: :class:`Reservation` rows,
counted by the market's availability through ``register_reserved``), and is placed into
``payment_pending`` by converting those reservations into allocations in one transaction. Every
move goes through ``app.fsm.transition`` (one conditional UPDATE) and is recorded as an
:class:`OrderTransition` with who and when. Money is integer minor units plus a currency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.fsm import state_machine

__all__ = [
    "CANCELLED", "CART", "CHECKOUT", "FULFILLED", "NEEDS_ATTENTION", "ORDER_STATE", "PAID",
    "PARTIALLY_FULFILLED", "PAYMENT_PENDING", "PLACED_STATES", "REFUNDED", "STATES",
    "IdempotencyKey", "Order", "OrderCounter", "OrderLine", "OrderTransition", "Reservation",
]

CART: Final = "cart"
CHECKOUT: Final = "checkout"
PAYMENT_PENDING: Final = "payment_pending"
PAID: Final = "paid"
PARTIALLY_FULFILLED: Final = "partially_fulfilled"
FULFILLED: Final = "fulfilled"
CANCELLED: Final = "cancelled"
REFUNDED: Final = "refunded"
NEEDS_ATTENTION: Final = "needs_attention"
STATES: Final = (CART, CHECKOUT, PAYMENT_PENDING, PAID, PARTIALLY_FULFILLED, FULFILLED, CANCELLED, REFUNDED,
                 NEEDS_ATTENTION)
# States of an order that was placed (it has a number; its stock is allocated).
PLACED_STATES: Final = (PAYMENT_PENDING, PAID, PARTIALLY_FULFILLED, FULFILLED, CANCELLED, REFUNDED, NEEDS_ATTENTION)

COLLECTION: Final = "collection"
DELIVERY: Final = "delivery"


class Order(UUIDv7AuditBase):
    """A cart (state ``cart``/``checkout``) or a placed order: one row, one life."""

    __tablename__ = "cart_order"
    __table_args__ = (
        CheckConstraint("state IN ('cart', 'checkout', 'payment_pending', 'paid', 'partially_fulfilled', "
                        "'fulfilled', 'cancelled', 'refunded', 'needs_attention')", name="state_known"),
        CheckConstraint("subtotal_minor >= 0 AND shipping_minor >= 0 AND total_minor >= 0", name="totals_nonneg"),
        # Never more given back than came in (the refund's conditional UPDATE relies on it too).
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= paid_minor", name="refund_within_paid"),
        CheckConstraint("tax_minor >= 0 AND tax_minor <= total_minor", name="tax_within_total"),
    )

    state: Mapped[str] = mapped_column(String(24), default=CART, index=True)
    # "RA-2026-000123", given when the order is placed.
    number: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    # The secret naming an anonymous cart (kept in the visitor's session, or sent as X-Cart-Token).
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"), default=None,
                                                 index=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(Integer, default=0)
    shipping_minor: Mapped[int] = mapped_column(Integer, default=0)
    total_minor: Mapped[int] = mapped_column(Integer, default=0)
    # VAT included in total_minor (domains/cart/money.py), and the rate the delivery was taxed at
    # (basis points: 2000 = 20%); the per-rate split is recomputed from the lines' rates.
    tax_minor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    shipping_rate_bp: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    weight_grams: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fulfilment: Mapped[str] = mapped_column(String(16), default=COLLECTION)
    # Collection: where and in which weekly slot (ROSE_ASH_CART_COLLECTION_SLOTS), as chosen.
    collection_location: Mapped[str] = mapped_column(String(120), default="", server_default="")
    collection_slot: Mapped[str] = mapped_column(String(40), default="", server_default="")
    address: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    payment_provider: Mapped[str] = mapped_column(String(32), default="")
    payment_id: Mapped[str] = mapped_column(String(128), default="")
    payment_url: Mapped[str] = mapped_column(String(2048), default="")
    reserved_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    placed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    # What the customer paid (set when the order is marked paid) and what was given back since
    # (domains/cart/fulfilment.py); minor units of ``currency``.
    paid_minor: Mapped[int] = mapped_column(Integer, default=0)
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0)
    # The online checkout attempt: 1, then 2, 3... when the payer retries (SumUp refuses a
    # checkout_reference twice, so attempt n > 1 pays under "<number>-<n>").
    payment_attempt: Mapped[int] = mapped_column(Integer, default=1)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", lazy="raise", order_by="OrderLine.created_at")

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)


class OrderLine(UUIDv7AuditBase):
    """One variant in an order, with what it was called and cost when it was added."""

    __tablename__ = "cart_order_line"
    __table_args__ = (
        UniqueConstraint("order_id", "variant_id", name="uq_cart_order_line_variant"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_minor >= 0", name="price_nonneg"),
    )

    order_id: Mapped[UUID] = mapped_column(ForeignKey("cart_order.id", ondelete="CASCADE"), index=True)
    # The item's id in its line source (domains/cart/sources.py): market's variant, events' ticket
    # type (no FK: the source owns its table). Ids are UUIDv7, so they never collide across sources.
    variant_id: Mapped[UUID] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(16), default="market", server_default="market")
    sku: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    unit_price_minor: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    fulfilled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    # Snapshots taken when added and again at placement (the rate then in force is the one charged):
    # the product's VAT class, its rate in basis points, and one unit's weight (0: not given).
    tax_class: Mapped[str] = mapped_column(String(32), default="", server_default="")
    tax_rate_bp: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unit_weight_grams: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the source asked the buyer for this line, as the source checked it (events: one
    # {"name", "dietary"} per ticket under "attendees", and "answer"); handed back at payment.
    details: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict, server_default="{}")

    order: Mapped[Order] = relationship(back_populates="lines", lazy="raise")

    @property
    def line_total_minor(self) -> int:
        # Imported here: importing the models (Alembic, app.models) loads no logic module.
        from domains.cart.money import line_total

        return line_total(self.unit_price_minor, self.quantity)


class Reservation(UUIDv7AuditBase):
    """Units of a variant held for an order in checkout until ``expires_at``."""

    __tablename__ = "cart_reservation"
    __table_args__ = (
        UniqueConstraint("order_id", "variant_id", name="uq_cart_reservation"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    order_id: Mapped[UUID] = mapped_column(ForeignKey("cart_order.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[UUID] = mapped_column(index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class OrderTransition(UUIDv7AuditBase):
    """One move of an order's state: from, to, by whom (a member, or a system actor) and when."""

    __tablename__ = "cart_order_transition"

    order_id: Mapped[UUID] = mapped_column(ForeignKey("cart_order.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"), default=None)
    actor: Mapped[str] = mapped_column(String(64), default="")  # "customer", "payments", "sweeper", a username
    note: Mapped[str] = mapped_column(Text, default="")


class IdempotencyKey(UUIDv7AuditBase):
    """A place-order request already answered: the same key again returns the same order."""

    __tablename__ = "cart_idempotency_key"

    key: Mapped[str] = mapped_column(String(100), unique=True)
    order_id: Mapped[UUID] = mapped_column(ForeignKey("cart_order.id", ondelete="CASCADE"), index=True)


class OrderCounter(UUIDv7AuditBase):
    """The last order number given in a year (``RA-<year>-<n>``), moved by one conditional UPDATE."""

    __tablename__ = "cart_order_counter"

    year: Mapped[int] = mapped_column(Integer, unique=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


ORDER_STATE = state_machine(Order, "state", {
    CART: {CHECKOUT, CANCELLED},
    CHECKOUT: {CART, PAYMENT_PENDING, CANCELLED},
    PAYMENT_PENDING: {PAID, CANCELLED, NEEDS_ATTENTION},
    PAID: {PARTIALLY_FULFILLED, FULFILLED, REFUNDED, CANCELLED},
    PARTIALLY_FULFILLED: {FULFILLED, REFUNDED},
    FULFILLED: {REFUNDED},
    NEEDS_ATTENTION: {PAID, FULFILLED, REFUNDED, CANCELLED},
    # Money that arrives for a cancelled order never revives it: staff decide (CartService.mark_paid).
    CANCELLED: {REFUNDED, NEEDS_ATTENTION},
})
