"""Market guards: producers manage their own producer profiles and products; staff (the admin
role) manage all. Not yours is answered exactly as absent (404), so a producer cannot learn
which other products or drafts exist.

The role itself is declared where the market mounts its admin router (``access.session(
role="producer")``: producers and administrators) and checked by the app-wide guard; here is
what needs the object. Objects must be loaded with their producer's members
(``services.catalogue.with_relations``).
"""

from __future__ import annotations

from litestar.exceptions import NotFoundException

from domains.account.models import User
from domains.market.models import Producer, Product

__all__ = ["can_manage", "can_manage_producer", "check_can_manage", "check_producer", "is_member", "is_staff"]


def is_staff(user: User) -> bool:
    return user.is_active and user.is_admin


def is_member(user: User, producer: Producer) -> bool:
    return any(link.user_id == user.id for link in producer.member_links)


def can_manage_producer(user: User, producer: Producer) -> bool:
    """Staff manage every producer; a member with the producer role manages theirs."""
    return is_staff(user) or (user.can_sell and is_member(user, producer))


def can_manage(user: User, product: Product) -> bool:
    return can_manage_producer(user, product.producer)


def check_producer(user: User, producer: Producer | None) -> Producer:
    if producer is None or not can_manage_producer(user, producer):
        raise NotFoundException("No such producer.")  # not yours: you need not know it exists
    return producer


def check_can_manage(user: User, product: Product | None) -> Product:
    if product is None or not can_manage(user, product):
        raise NotFoundException("No such product.")  # not yours: you need not know it exists
    return product
