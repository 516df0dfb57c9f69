"""Market rules: the catalogue (products, variants, images, stock), producers, media.

Callers (other domains too: the cart, federation) import from ``domains.market.services``; the
modules behind it are an internal split.
"""

from domains.market.services.catalogue import CatalogueService, SkuTaken, SlugTaken, producer_read, with_relations
from domains.market.services.media import (
    CONTENT_TYPES,
    ImageRefused,
    MediaService,
    image_read,
    media_file,
    media_url,
    process_image,
    srcset,
)
from domains.market.services.producers import ProducerService
from domains.market.services.stock import (
    DEFAULT_LOCATION,
    ReservedTerm,
    StockRefused,
    VariantOffer,
    allocate,
    availability,
    available_expr,
    change_on_hand,
    default_location,
    location_named,
    lock_stock,
    offers,
    register_reserved,
    release,
    unregister_reserved,
)

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_LOCATION",
    "CatalogueService",
    "ImageRefused",
    "MediaService",
    "ProducerService",
    "ReservedTerm",
    "SkuTaken",
    "SlugTaken",
    "StockRefused",
    "VariantOffer",
    "allocate",
    "availability",
    "available_expr",
    "change_on_hand",
    "default_location",
    "image_read",
    "location_named",
    "lock_stock",
    "media_file",
    "media_url",
    "offers",
    "process_image",
    "producer_read",
    "register_reserved",
    "release",
    "srcset",
    "unregister_reserved",
    "with_relations",
]
