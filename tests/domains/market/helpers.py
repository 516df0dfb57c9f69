"""Shared market test data: a three-variant product form, its submission, and real photos."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.domains.market.conftest import form_token

__all__ = ["GPS_TAG", "ORIENTATION", "THREE", "photo", "submit"]

GPS_TAG = 0x8825  # EXIF GPSInfo IFD pointer
ORIENTATION = 0x0112

THREE = {
    "title": "Wool socks", "description_md": "Knitted from **our own** sheep.\n\n<script>alert(1)</script>",
    "tags": "wool, winter", "status": "draft", "option_0": "size", "option_1": "colour",
    "v0_sku": "SOCK-S-RED", "v0_o0": "S", "v0_o1": "red", "v0_price": "12.50", "v0_threshold": "2",
    "v1_sku": "SOCK-M-RED", "v1_o0": "M", "v1_o1": "red", "v1_price": "12.50", "v1_compare_at": "15",
    "v2_sku": "SOCK-L-BLUE", "v2_o0": "L", "v2_o1": "blue", "v2_price": "13", "v2_weight": "120",
    "v2_barcode": "4006381333931",
}


async def submit(client: Any, data: dict[str, Any], path: str = "/market/admin/products",
                 page: str = "/market/admin/new") -> Any:
    token = await form_token(client, page)
    return await client.post(path, data={**data, "_csrf_token": token, "action": data.get("action", "save")})


def photo(fmt: str = "JPEG", size: tuple[int, int] = (1600, 1200), *, exif: bool = True,
          colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real image of ``size`` with a camera's EXIF block (GPS position, maker, orientation)."""
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 50):  # some detail, so encoders have something to do
        image.putpixel((x, x % size[1]), (0, 0, 0))
    out = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretCam"  # Make
        data[0x0110] = "Model X"  # Model
        data[ORIENTATION] = 1
        data.get_ifd(GPS_TAG).update({1: "N", 2: (52.0, 22.0, 10.0), 3: "E", 4: (4.0, 53.0, 20.0)})
        kwargs["exif"] = data.tobytes()
    image.save(out, fmt, **kwargs)
    return out.getvalue()
