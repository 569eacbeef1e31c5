"""Order checks beyond the record's types: coordinates, windows, amounts."""

from __future__ import annotations

import math

from decision.errors import InvalidOrder
from fleet.records import Order


def validate_order(order: Order) -> Order:
    """The order, or InvalidOrder naming the field and value."""
    if not math.isfinite(order.lat) or not -90 <= order.lat <= 90:
        raise InvalidOrder("lat_out_of_range", f"lat={order.lat} outside [-90, 90]")
    if not math.isfinite(order.lon) or not -180 <= order.lon <= 180:
        raise InvalidOrder("lon_out_of_range", f"lon={order.lon} outside [-180, 180]")
    start, end = order.window_start_ms, order.window_end_ms
    if start is not None and end is not None and end < start:
        raise InvalidOrder("window_reversed", f"window_end_ms={end} before window_start_ms={start}")
    if not math.isfinite(order.service_s) or order.service_s < 0:
        raise InvalidOrder("service_negative", f"service_s={order.service_s} must be >= 0")
    if order.demand < 0:
        raise InvalidOrder("demand_negative", f"demand={order.demand} must be >= 0")
    return order
