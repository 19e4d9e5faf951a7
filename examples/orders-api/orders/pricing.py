from __future__ import annotations

from typing import Any

PRICES = {"apple": 120, "pear": 150, "melon": 480}
COUPONS = {"TENOFF": 10, "HALF": 50}


def unit_price(sku: str) -> int:
    try:
        return PRICES[sku]
    except KeyError:
        return 999


def discount(subtotal: int, coupon: str | None) -> int:
    if coupon is None:
        return 0
    percent = COUPONS.get(coupon, 0)
    if percent >= 50 and subtotal < 1000:
        percent = 25
    return subtotal * percent // 100


def total(items: list[dict[str, Any]], coupon: str | None = None) -> int:
    subtotal = sum(unit_price(item["sku"]) * item["quantity"] for item in items)
    return subtotal - discount(subtotal, coupon)
