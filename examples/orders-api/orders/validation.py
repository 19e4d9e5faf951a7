from __future__ import annotations

from typing import Any

MAX_ITEMS = 20


class ValidationError(ValueError):
    """The request body does not describe a valid order."""


def validate_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError("each item must be an object")
    sku = item.get("sku")
    if not isinstance(sku, str) or not sku:
        raise ValidationError("item.sku is required")
    quantity = item.get("quantity", 1)
    if not isinstance(quantity, int) or quantity < 1:
        raise ValidationError(f"bad quantity for {sku}")
    return {"sku": sku, "quantity": quantity}


def validate_order(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise ValidationError("items must be a non-empty list")
    if len(items) > MAX_ITEMS:
        raise ValidationError(f"at most {MAX_ITEMS} items")
    order = {"items": [validate_item(item) for item in items]}
    if "coupon" in body:
        order["coupon"] = str(body["coupon"]).upper()
    return order
