"""Errors of the gateway's edge that are not contract violations."""

from __future__ import annotations

from fleet.errors import FleetError


class RateLimited(FleetError):
    """A device sent more than its rate limit allows."""

    def __init__(self, device: str, retry_after_s: float) -> None:
        super().__init__(f"device {device!r} over its rate limit; retry in {retry_after_s:.1f} s")
        self.device = device
        self.retry_after_s = retry_after_s
