"""A generated benchmark function: 10 modules, a few hundred statements, ~0.3 ms a call.

Deterministic: the same source every time, so runs compare. Each call
validates, prices and summarises an order of 40 items through every module,
taking branches that depend on the event.
"""

from __future__ import annotations

import json
from pathlib import Path

MODULES = 10

_MODULE = """
from __future__ import annotations

RATE_{n} = {n} + 1


def check_{n}(item):
    if not isinstance(item, dict):
        raise ValueError("item")
    quantity = item.get("quantity", 1)
    if quantity > 10:
        quantity = 10
    elif quantity < 1:
        quantity = 1
    return {{"sku": str(item.get("sku", "")), "quantity": quantity}}


def price_{n}(item, coupon):
    base = (len(item["sku"]) * 37 + RATE_{n}) % 500 + 100
    total = base * item["quantity"]
    if coupon and coupon.startswith("P{n}"):
        total -= total // 10
    for step in range(3):
        if total % (step + 2) == 0:
            total += step
    return total


def summarise_{n}(items, coupon):
    lines = [check_{n}(item) for item in items]
    totals = [price_{n}(line, coupon) for line in lines]
    best = max(totals) if totals else 0
    kinds = sorted({{line["sku"][:2] for line in lines}})
    return {{"module": {n}, "total": sum(totals), "best": best, "kinds": kinds}}
"""

_HANDLER = """
from __future__ import annotations

import json

{imports}

STAGES = [{stages}]


def handler(event, context):
    order = json.loads(event["body"])
    items = order.get("items", [])
    coupon = order.get("coupon")
    if not items:
        return {{"statusCode": 400, "body": "no items"}}
    results = [stage(items, coupon) for stage in STAGES]
    total = sum(result["total"] for result in results)
    return {{"statusCode": 200, "body": json.dumps({{"total": total, "parts": len(results)}})}}
"""


def events() -> list[dict[str, object]]:
    """Varied orders: coupons, quantities out of range, an empty order."""
    out: list[dict[str, object]] = []
    for variant in range(6):
        items = [
            {"sku": f"sku-{variant}-{i}", "quantity": (i * variant) % 13 - 1} for i in range(40)
        ]
        body = {
            "items": items if variant != 5 else [],
            "coupon": f"P{variant}" if variant % 2 else None,
        }
        out.append({"httpMethod": "POST", "path": "/orders", "body": json.dumps(body)})
    return out


def write_workload(directory: Path) -> Path:
    """Write the function's modules and events.json into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(MODULES):
        (directory / f"part{n}.py").write_text(_MODULE.format(n=n), encoding="utf-8")
    imports = "\n".join(f"import part{n}" for n in range(MODULES))
    stages = ", ".join(f"part{n}.summarise_{n}" for n in range(MODULES))
    (directory / "app.py").write_text(_HANDLER.format(imports=imports, stages=stages), "utf-8")
    (directory / "events.json").write_text(json.dumps(events()), encoding="utf-8")
    return directory
