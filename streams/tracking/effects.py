"""Effects of tracking steps: read-model writes, alert messages, then the hooks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter

from fleet.live import ALERTS_OPEN_KEY, driver_key
from fleet.records import Alert, encode
from fleet.tracking.completion import COMPLETION_LUA, StopOutcome, completion_args
from fleet.tracking.read_model import (
    DriverFields,
    completion_changes,
    driver_fields,
    new_outcomes,
)
from fleet.tracking.tracker import DriverTrack, PlanGeometry
from streams import hooks
from streams.app import app, settings
from streams.resilience import retry_transient
from streams.resources import redis
from streams.topics import alerts_topic
from streams.tracking.sent_alerts import SentAlerts
from streams.tracking.state import load_record, written_fields

COMPLETION_TTL_S = 2 * 86_400
SENT_ALERTS = SentAlerts(settings)
ALERTS_NOT_REPEATED = Counter(
    "fleet_alert_changes_not_repeated_total",
    "Alert changes a replay recomputed that were already on fleet.alerts (not sent again)",
)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def read_alerts_back_later(app: object, *args: object, **kwargs: object) -> None:
    """Partitions move: what their previous owner sent is read back before the next send."""
    SENT_ALERTS.invalidate()


@dataclass(slots=True)
class Effects:
    """Alerts, read-model writes and stop outcomes of one step, flushed together."""

    alerts: list[Alert] = field(default_factory=list)
    driver_fields: dict[str, DriverFields] = field(default_factory=dict)
    completion: list[StopOutcome] = field(default_factory=list)
    stops_done: list[hooks.StopOutcome] = field(default_factory=list)

    def add(
        self,
        before: DriverTrack,
        after: DriverTrack,
        geo: PlanGeometry | None,
        alerts: Iterable[Alert],
        now: int,
    ) -> None:
        self.alerts.extend(alerts)
        fields = driver_fields(after, geo, now)
        # Most batches change nothing a dashboard shows: skip writing what Redis already has.
        if written_fields.get(after.driver_id) != fields:
            self.driver_fields[after.driver_id] = fields
        if (before.route_id, before.plan_version, before.done) == (
            after.route_id,
            after.plan_version,
            after.done,
        ):
            return  # the common case: no outcome or plan change to file
        plan = geo.plan if geo is not None else None
        previous = load_record(before.route_id) if before.route_id == after.route_id else None
        self.completion.extend(
            completion_changes(
                before, after, plan, previous.plan if previous else None, settings.zone_resolution
            )
        )
        if after.route_id is not None and after.done != before.done:
            self.stops_done.extend(
                hooks.StopOutcome(after.driver_id, after.route_id, stop_id, how, now)  # type: ignore[arg-type]
                for stop_id, how in new_outcomes(before, after)
            )

    async def flush(self) -> None:
        """Read model first, then alert messages (both safe to repeat on a replay), then the
        hooks of the stops that got an outcome and the alerts that changed."""
        if not (self.alerts or self.driver_fields or self.completion):
            return
        client = redis.client
        pipe = client.pipeline(transaction=False)
        for driver_id, fields in self.driver_fields.items():
            pipe.hset(driver_key(driver_id), mapping=fields)  # type: ignore[arg-type]
        for alert in self.alerts:
            if alert.state == "open":
                pipe.hset(ALERTS_OPEN_KEY, alert.alert_id, encode(alert))
            else:
                pipe.hdel(ALERTS_OPEN_KEY, alert.alert_id)
        await retry_transient("redis_tracking", pipe.execute)
        written_fields.update(self.driver_fields)
        if self.completion:
            args = completion_args(self.completion, COMPLETION_TTL_S)
            write_completion = redis.script(COMPLETION_LUA)
            await retry_transient("redis_completion", lambda: write_completion(args=args))
        if self.alerts:
            await SENT_ALERTS.ensure_loaded()
        for alert in self.alerts:
            if SENT_ALERTS.already_sent(alert):
                ALERTS_NOT_REPEATED.inc()  # a replay after a crash: already on the topic
                continue
            await alerts_topic.send(key=alert.driver_id.encode(), value=encode(alert))
            SENT_ALERTS.mark_sent(alert)
        for done in self.stops_done:
            await hooks.stop_completed.fire(done)
        for alert in self.alerts:
            await hooks.alert_changed.fire(alert)
