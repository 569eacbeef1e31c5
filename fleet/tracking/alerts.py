"""Alert lifecycle: deterministic ids, open once, resolve once."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from fleet.records import Alert, AlertKind
from fleet.tracking.changes import Change


def alert_id(driver_id: str, key: str, basis_ms: int) -> str:
    """Id derived from driver, alert key and the opening's basis time.

    A replay after a restart recomputes the same id, so the same alert is never opened twice.
    """
    digest = hashlib.blake2b(f"{driver_id}|{key}|{basis_ms}".encode(), digest_size=10)
    return f"al-{digest.hexdigest()}"


class OpenAlert(msgspec.Struct, frozen=True):
    """An alert that is open, as kept in the driver's state."""

    alert_id: str
    kind: AlertKind
    opened_ms: int
    route_id: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)


def apply_change(
    open_alerts: dict[str, OpenAlert],
    driver_id: str,
    route_id: str | None,
    key: str,
    kind: AlertKind,
    change: Change,
) -> Alert | None:
    """Update ``open_alerts`` in place; return the Alert message of a real change of state."""
    if change.action == "open":
        if key in open_alerts:
            return None
        aid = alert_id(driver_id, key, change.basis_ms)
        current = OpenAlert(aid, kind, change.at_ms, route_id, dict(change.details))
        open_alerts[key] = current
        return to_alert(driver_id, current, "open", change.at_ms)
    closed = open_alerts.pop(key, None)
    if closed is None:
        return None
    details = {**closed.details, **change.details}
    return to_alert(
        driver_id, msgspec.structs.replace(closed, details=details), "resolved", change.at_ms
    )


def to_alert(driver_id: str, alert: OpenAlert, state: str, changed_ms: int) -> Alert:
    """The contract message of an alert in ``state``."""
    return Alert(
        alert_id=alert.alert_id,
        kind=alert.kind,
        state=state,  # type: ignore[arg-type]
        driver_id=driver_id,
        opened_ms=alert.opened_ms,
        changed_ms=changed_ms,
        severity="warning",
        route_id=alert.route_id,
        details=alert.details,
    )
