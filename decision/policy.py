"""When to re-plan: the gain margin, and a per-route debounce and cooldown (clock passed in)."""

from __future__ import annotations

from dataclasses import dataclass, field

from decision.errors import InvalidParams


@dataclass(frozen=True)
class ReplanPolicy:
    """A re-plan is issued only when it gains at least ``max(margin, margin_ratio x before)``.

    ``debounce_s``: triggers of one route arriving within this time are solved once;
    ``cooldown_s``: after a route was re-planned, automatic triggers wait this long.
    """

    margin: float = 60.0
    margin_ratio: float = 0.02
    debounce_s: float = 2.0
    cooldown_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("margin", "margin_ratio", "debounce_s", "cooldown_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise InvalidParams(f"ReplanPolicy.{name}={value!r} must be a number >= 0")

    def required_gain(self, objective_before: float) -> float:
        """The gain a re-plan needs to be issued."""
        return max(self.margin, self.margin_ratio * abs(objective_before))

    def worth_issuing(self, objective_before: float, objective_after: float) -> bool:
        """Whether a re-plan gains enough to disturb the driver."""
        return objective_before - objective_after >= self.required_gain(objective_before)


@dataclass
class TriggerGate:
    """Coalesces triggers per route: due after the debounce, never inside the cooldown.

    ``offer`` records a trigger; ``due`` hands back the routes to solve now (and forgets
    their pending triggers); ``issued`` starts a route's cooldown. ``held`` mutes one
    trigger kind of a route whose re-plan came out below the margin: the same kind is not
    solved again for that route until its plan changes (``issued``) or the cooldown passes.
    """

    policy: ReplanPolicy
    pending: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    last_issued: dict[str, int] = field(default_factory=dict)
    muted: dict[tuple[str, str], int] = field(default_factory=dict)

    def offer(self, route_id: str, cause: str, now_ms: int) -> None:
        """A trigger for a route (several causes coalesce; the first one leads); ignored
        while its kind is muted for the route."""
        if self.is_muted(route_id, cause.split(" ", 1)[0], now_ms):
            return
        first, causes = self.pending.get(route_id, (now_ms, []))
        if cause not in causes:
            causes.append(cause)
        self.pending[route_id] = (first, causes)

    def due(self, now_ms: int) -> list[tuple[str, list[str]]]:
        """Routes whose debounce passed and whose cooldown is over, with their causes."""
        out = []
        while (item := self.pop_due(now_ms)) is not None:
            out.append(item)
        return out

    def pop_due(self, now_ms: int) -> tuple[str, list[str]] | None:
        """The first due route with its causes (taken off the queue), or None."""
        for route_id, (first, causes) in sorted(self.pending.items()):
            if now_ms - first < self.policy.debounce_s * 1000:
                continue
            last = self.last_issued.get(route_id)
            if last is not None and now_ms - last < self.policy.cooldown_s * 1000:
                continue
            del self.pending[route_id]
            return route_id, causes
        return None

    def next_due_ms(self) -> int | None:
        """The earliest moment a pending trigger can become due."""
        times = []
        for route_id, (first, _) in self.pending.items():
            at = first + int(self.policy.debounce_s * 1000)
            last = self.last_issued.get(route_id)
            if last is not None:
                at = max(at, last + int(self.policy.cooldown_s * 1000))
            times.append(at)
        return min(times) if times else None

    def issued(self, route_id: str, now_ms: int) -> None:
        """The route's plan changed now (a re-plan, an edit, an assignment): its cooldown
        starts and its muted trigger kinds are heard again."""
        self.last_issued[route_id] = now_ms
        for key in [key for key in self.muted if key[0] == route_id]:
            del self.muted[key]

    def held(self, route_id: str, kind: str, now_ms: int) -> None:
        """A re-plan of the route for this trigger kind issued nothing (below the margin)."""
        self.muted[(route_id, kind)] = now_ms

    def is_muted(self, route_id: str, kind: str, now_ms: int) -> bool:
        """Whether triggers of this kind are ignored for the route now."""
        since = self.muted.get((route_id, kind))
        if since is None:
            return False
        if now_ms - since >= self.policy.cooldown_s * 1000:
            del self.muted[(route_id, kind)]
            return False
        return True
