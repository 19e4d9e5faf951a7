"""An orders API behind API Gateway: the function lambdacov's demo and tests measure."""

from __future__ import annotations

import json
from typing import Any

from orders import pricing, store
from orders.validation import ValidationError, validate_order

ROUTES = {}


def route(method: str, path: str):  # type: ignore[no-untyped-def]
    def register(handler):  # type: ignore[no-untyped-def]
        ROUTES[(method, path)] = handler
        return handler

    return register


def respond(status: int, body: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, sort_keys=True),
    }


@route("POST", "/orders")
def create_order(event: dict[str, Any]) -> dict[str, Any]:
    order = validate_order(json.loads(event.get("body") or "{}"))
    order["total"] = pricing.total(order["items"], order.get("coupon"))
    order_id = store.save(order)
    return respond(201, {"id": order_id, "total": order["total"]})


@route("GET", "/orders")
def get_order(event: dict[str, Any]) -> dict[str, Any]:
    order_id = (event.get("queryStringParameters") or {}).get("id", "")
    order = store.load(order_id)
    if order is None:
        return respond(404, {"error": f"no order {order_id}"})
    return respond(200, order)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("action") == "crash":
        raise RuntimeError("crash requested by the event")
    target = ROUTES.get((event.get("httpMethod", "GET"), event.get("path", "/")))
    if target is None:
        return respond(404, {"error": "no such route"})
    try:
        return target(event)
    except ValidationError as error:
        return respond(400, {"error": str(error)})
