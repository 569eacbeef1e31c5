"""The decision agent's state: proposals, locks, orders seen (global tables), trigger gate.

Tables are global (every worker holds them whole), so any worker can accept a proposal or
see a lock. The trigger gate and the stale watch are this worker's memory: triggers come
from the tracking hooks of the drivers this worker owns.
"""

from __future__ import annotations

import asyncio

import msgspec

from decision.policy import TriggerGate
from fleet.records import RoutePlan
from streams.app import global_bytes_table, settings, table_get
from streams.decision.config import decision_config

CONFIG = decision_config(settings)

proposals_table = global_bytes_table("decision-proposals")  # proposal_id -> Proposal
locks_table = global_bytes_table("decision-locks")  # stop_id -> route_id, or "*" (pinned)
orders_table = global_bytes_table("decision-orders")  # order_id -> route_id, "" = unassigned

PINNED = "*"  # a stop a dispatcher placed by hand: automatic re-plans keep its place

gate = TriggerGate(CONFIG.policy)
stale_since: dict[str, tuple[str, int]] = {}  # route_id -> (alert_id, opened_ms) of open stale
solve_lock = asyncio.Lock()  # one decision at a time: plans are read, solved, published


class Proposal(msgspec.Struct, frozen=True):
    """A re-plan waiting for a dispatcher: the plans and the versions they were made from."""

    proposal_id: str
    cause: str
    caused_by: str | None
    plans: list[RoutePlan]
    base_versions: dict[str, int]
    rationale: dict[str, object]
    issued_ms: int
    accepted_by: str | None = None


_PROPOSAL = msgspec.msgpack.Decoder(Proposal)
_ENCODER = msgspec.msgpack.Encoder()


def load_proposal(proposal_id: str) -> Proposal | None:
    """A stored proposal."""
    raw = proposals_table.get(proposal_id.encode())
    return None if raw is None else _PROPOSAL.decode(raw)


def save_proposal(proposal: Proposal) -> None:
    """Store (or update) a proposal."""
    proposals_table[proposal.proposal_id.encode()] = _ENCODER.encode(proposal)


def locks_of(stop_ids: list[str], route_id: str, *, pinned: bool) -> frozenset[str]:
    """Stops of a route locked there by ``lock_stop`` (and pinned by hand, when asked).

    Asked for every stop of every active route per decision: the table is walked instead
    when it holds fewer locks than the route has stops (usually none at all)."""
    if len(locks_table) < len(stop_ids):
        wanted = {stop_id.encode() for stop_id in stop_ids}
        locked = [(key, value) for key, value in locks_table.items() if key in wanted]
    else:
        locked = []
        for stop_id in stop_ids:
            key = stop_id.encode()
            value = table_get(locks_table, key)
            if value is not None:
                locked.append((key, value))
    out = set()
    for key, value in locked:
        owner = value.decode()
        if owner == route_id or (pinned and owner == PINNED):
            out.add(key.decode())
    return frozenset(out)


def set_lock(stop_id: str, owner: str | None) -> None:
    """Lock a stop to a route (``PINNED``: wherever it is), or unlock it (None)."""
    key = stop_id.encode()
    if owner is None:
        if key in locks_table:
            del locks_table[key]
    else:
        locks_table[key] = owner.encode()


def order_seen(order_id: str) -> bool:
    """Whether an order was already assigned or reported unassigned."""
    return order_id.encode() in orders_table


def remember_order(order_id: str, route_id: str | None) -> None:
    """Record the outcome of an order (None: unassigned)."""
    orders_table[order_id.encode()] = (route_id or "").encode()
