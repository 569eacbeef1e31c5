"""Thresholds of the tracking detectors, taken from the settings in one place."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.settings import Settings


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """Detector thresholds in milliseconds and metres."""

    off_route_m: float = 150.0
    off_route_resolve_m: float = 100.0
    off_route_min_ms: int = 15_000
    off_route_min_fixes: int = 3
    off_route_resolve_ms: int = 20_000
    behind_schedule_ms: int = 600_000
    behind_schedule_resolve_ms: int = 300_000
    stale_after_ms: int = 120_000

    @classmethod
    def from_settings(cls, s: Settings) -> TrackingConfig:
        """The configuration the settings describe."""
        return cls(
            off_route_m=s.off_route_m,
            off_route_resolve_m=s.off_route_resolve_m,
            off_route_min_ms=int(s.off_route_min_s * 1000),
            off_route_min_fixes=s.off_route_min_fixes,
            off_route_resolve_ms=int(s.off_route_resolve_s * 1000),
            behind_schedule_ms=int(s.behind_schedule_s * 1000),
            behind_schedule_resolve_ms=int(s.behind_schedule_resolve_s * 1000),
            stale_after_ms=int(s.stale_after_s * 1000),
        )
