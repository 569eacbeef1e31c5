"""The decision agent's configuration, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from decision.params import SolveParams
from decision.policy import ReplanPolicy
from decision.travel import HaversineTravel
from fleet.settings import Settings


@dataclass(frozen=True)
class DecisionConfig:
    """Solver parameters, the re-plan policy, which triggers are on, and their limits."""

    params: SolveParams
    policy: ReplanPolicy
    propose: bool
    triggers: frozenset[str]  # alert kinds that start a re-plan ("stale" = reassign_stale)
    retry_after_s: float
    stale_reassign_s: float
    critical_within_s: float
    neighbours: int
    order_candidates: int
    order_batch_size: int
    order_batch_s: float
    travel: HaversineTravel


def decision_config(settings: Settings) -> DecisionConfig:
    """The configuration of FLEET_DECISION_* settings."""
    toggles = {
        "failed_delivery": settings.decision_on_failed_delivery,
        "behind_schedule": settings.decision_on_behind_schedule,
        "eta_window_risk": settings.decision_on_eta_window_risk,
        "off_route": settings.decision_on_off_route,
        "stale": settings.decision_on_stale,
    }
    return DecisionConfig(
        params=SolveParams(
            time_limit_s=settings.decision_time_limit_s,
            seed=settings.decision_seed,
            settle_s=settings.decision_settle_s or None,
        ),
        policy=ReplanPolicy(
            margin=settings.decision_margin_s,
            margin_ratio=settings.decision_margin_ratio,
            debounce_s=settings.decision_debounce_s,
            cooldown_s=settings.decision_cooldown_s,
        ),
        propose=settings.decision_apply == "propose",
        triggers=frozenset(kind for kind, on in toggles.items() if on),
        retry_after_s=settings.decision_retry_after_s,
        stale_reassign_s=settings.decision_stale_reassign_s,
        critical_within_s=settings.decision_critical_within_s,
        neighbours=settings.decision_neighbours,
        order_candidates=settings.decision_order_candidates,
        order_batch_size=settings.decision_order_batch_size,
        order_batch_s=settings.decision_order_batch_s,
        travel=HaversineTravel(speed_mps=settings.decision_speed_mps),
    )
