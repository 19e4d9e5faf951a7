from __future__ import annotations

import hashlib
import json
from typing import Any

_ORDERS: dict[str, dict[str, Any]] = {}


def save(order: dict[str, Any]) -> str:
    order_id = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()[:12]
    _ORDERS[order_id] = order
    return order_id


def load(order_id: str) -> dict[str, Any] | None:
    if not order_id:
        return None
    return _ORDERS.get(order_id)
