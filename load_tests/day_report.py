"""The demo's report: an HTML page with a PNG fleet map, the exception log with the decisions
taken, orders, completion by zone and by window, and ETA accuracy (plus story.json)."""

from __future__ import annotations

import html
import json
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h3

from fleet.geo import haversine_m
from fleet.records import Order, RoutePlan
from load_tests.day import Day
from load_tests.day_story import AlertRecord, Story, describe_alert, describe_decision

STATUS_COLOURS = {
    "on_schedule": "#2ca02c",
    "behind_schedule": "#ff7f0e",
    "off_route": "#d62728",
    "stale": "#9467bd",
    "idle": "#1f77b4",
}
EXCEPTION_HEADERS = ("opened", "kind", "driver", "route", "detail", "resolved", "decision")
EXCEPTION_TITLES = ("opened", "kind", "driver / order", "route", "detail", "resolved",
                    "decision taken")  # fmt: skip
COMPLETION_HEADERS = ["name", "stops", "delivered", "failed", "pending", "completion"]
STYLE = (
    "body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f0f0f0}"
    "img{max-width:100%}.k{font-size:15px}"
)
OUTCOME_COLOURS = {"delivered": "#2ca02c", "failed": "#d62728", "pending": "#9e9e9e"}


@dataclass
class FleetState:
    """Where the day ended: each route's latest plan and stop outcomes, each driver's fix."""

    plans: dict[str, RoutePlan]  # route_id -> latest plan the driver followed
    outcomes: dict[str, dict[str, str]]  # route_id -> stop_id -> delivered/failed
    positions: dict[str, tuple[float, float, str]]  # driver_id -> (lat, lon, status)


def _t(ms: int | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) if ms else ""


def completion_rows(
    day: Day, state: FleetState, zone_resolution: int
) -> dict[str, list[dict[str, Any]]]:
    """Completion per zone (H3 cell of the stop) and per delivery window of the day."""
    zones: dict[str, Counter[str]] = {}
    windows: dict[int, Counter[str]] = {}
    for route_id, plan in state.plans.items():
        done = state.outcomes.get(route_id, {})
        for stop in plan.stops:
            outcome = done.get(stop.stop_id, "pending")
            zone = h3.latlng_to_cell(stop.lat, stop.lon, zone_resolution)
            zones.setdefault(zone, Counter())[outcome] += 1
            slot = day.window_of(stop.window_start_ms or stop.planned_arrival_ms)
            if slot is not None:
                windows.setdefault(slot, Counter())[outcome] += 1

    def row(name: str, c: Counter[str]) -> dict[str, Any]:
        total = sum(c.values())
        return {
            "name": name,
            "stops": total,
            "delivered": c["delivered"],
            "failed": c["failed"],
            "pending": c["pending"],
            "pct": 100.0 * c["delivered"] / total if total else 0.0,
        }

    zone_rows = sorted((row(z, c) for z, c in zones.items()), key=lambda r: -r["stops"])
    window_rows = []
    for slot in sorted(windows):
        start, end = day.windows[slot]
        window_rows.append(row(f"{slot + 1}: {_t(start)}-{_t(end)}", windows[slot]))
    return {"zones": zone_rows, "windows": window_rows}


def draw_map(day: Day, state: FleetState, path: Path, zone_resolution: int) -> None:
    """The city (hubs, H3 supply zones, drivers by status) and a close-up of each hub's
    rounds (routes, stop outcomes, drivers, H3 resolution-9 cells holding drivers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hubs = day.hubs[:6]
    fig = plt.figure(figsize=(18, 10), dpi=100)
    grid = fig.add_gridspec(2, 5)
    city = fig.add_subplot(grid[:, :2])
    active = [(lat, lon) for lat, lon, status in state.positions.values() if status != "idle"]
    _cells(city, Counter(h3.latlng_to_cell(lat, lon, zone_resolution) for lat, lon in active))
    _fleet(city, day, state, stop_size=2.0, driver_size=14.0)
    city.set_title(f"Fleet at {_t(int(time.time() * 1000))} UTC; shaded: H3 res "
                   f"{zone_resolution} zones by active drivers (count)", fontsize=10)  # fmt: skip
    city.legend(loc="upper left", fontsize=8, framealpha=0.9)
    for k, hub in enumerate(hubs):
        ax = fig.add_subplot(grid[k // 3, 2 + k % 3])
        near = [(lat, lon) for lat, lon in active if haversine_m(lat, lon, *hub) < 2_000]
        _cells(ax, Counter(h3.latlng_to_cell(lat, lon, 9) for lat, lon in near), labels=False)
        _fleet(ax, day, state, stop_size=7.0, driver_size=30.0)
        reach = 700.0 * day.params.scale
        dlat = reach / 111_320.0
        dlon = dlat / max(0.2, math.cos(math.radians(hub[0])))
        ax.set_xlim(hub[1] - dlon, hub[1] + dlon)
        ax.set_ylim(hub[0] - dlat, hub[0] + dlat)
        ax.set_title(f"hub {k + 1}: rounds, stops, drivers (H3 res 9 shaded)", fontsize=9)
        ax.tick_params(labelsize=6)
        ax.ticklabel_format(useOffset=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cells(ax: Any, counts: Counter[str], labels: bool = True) -> None:
    """H3 cells shaded by how many drivers are in each."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    cmap = plt.get_cmap("YlOrRd")
    top = max(counts.values(), default=1)
    for cell, n in counts.items():
        ring = [(lon, lat) for lat, lon in h3.cell_to_boundary(cell)]
        ax.add_patch(Polygon(ring, closed=True, facecolor=cmap(0.15 + 0.7 * n / top),
                             edgecolor="#999999", linewidth=0.5, alpha=0.45, zorder=1))  # fmt: skip
        if labels:
            lat, lon = h3.cell_to_latlng(cell)
            ax.annotate(str(n), (lon, lat), ha="center", va="center", fontsize=7,
                        color="#555555", zorder=2)  # fmt: skip


def _fleet(ax: Any, day: Day, state: FleetState, stop_size: float, driver_size: float) -> None:
    """Routes (hub then stops), stops by outcome, drivers by status, hubs."""
    for plan in state.plans.values():
        depot = plan.depot
        line = ([(depot.lat, depot.lon)] if depot else []) + [(s.lat, s.lon) for s in plan.stops]
        ax.plot([p[1] for p in line], [p[0] for p in line], color="#607d8b", linewidth=0.5,
                alpha=0.6, zorder=3)  # fmt: skip
    for outcome, colour in OUTCOME_COLOURS.items():
        pts = [
            s
            for plan in state.plans.values()
            for s in plan.stops
            if state.outcomes.get(plan.route_id, {}).get(s.stop_id, "pending") == outcome
        ]
        size = stop_size * (3 if outcome == "failed" else 1)
        ax.scatter([s.lon for s in pts], [s.lat for s in pts], s=size, color=colour, zorder=4,
                   linewidths=0, label=f"stop {outcome} ({len(pts)})")  # fmt: skip
    for status, colour in STATUS_COLOURS.items():
        fixes = [(lat, lon) for lat, lon, s in state.positions.values() if s == status]
        ax.scatter([p[1] for p in fixes], [p[0] for p in fixes], s=driver_size, color=colour,
                   edgecolors="black", linewidths=0.4, zorder=6,
                   label=f"driver {status} ({len(fixes)})")  # fmt: skip
    ax.scatter([h[1] for h in day.hubs], [h[0] for h in day.hubs], marker="s", s=60,
               color="black", zorder=7, label="hub")  # fmt: skip
    mid = sum(h[0] for h in day.hubs) / len(day.hubs)
    ax.set_aspect(1 / max(0.2, math.cos(math.radians(mid))))
    ax.grid(alpha=0.2)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary(
    day: Day, story: Story, state: FleetState, orders_sent: list[str], unservable: set[str]
) -> dict[str, Any]:
    """The headline figures (also written to story.json)."""
    by_cause = story.decisions_by_cause()
    assigned = {o for d in story.decisions if d.update.cause == "assign" for o in d.orders}
    unassigned = {
        r.alert.driver_id for r in story.alerts.values() if r.alert.kind == "unassigned_order"
    }
    outcomes = [v for o in state.outcomes.values() for v in o.values()]
    stops = sum(len(p.stops) for p in state.plans.values())
    delivered = outcomes.count("delivered")
    replans = sum(n for c, n in by_cause.items() if c != "assign" and not c.startswith("dispatch:"))
    return {
        "drivers": len(day.routes),
        "duration_s": day.params.duration_s,
        "alerts_opened": dict(story.opened_by_kind()),
        "alerts": len(story.alerts),
        "decisions_by_cause": dict(by_cause),
        "replans": replans,
        "assignments": by_cause.get("assign", 0),
        "orders_sent": len(orders_sent),
        "orders_assigned": sorted(assigned),
        "orders_unassigned": sorted(unassigned),
        "orders_unservable_sent": sorted(unservable),
        "eta_updates": story.eta_updates,
        "eta_models": dict(story.eta_models),
        "eta_accuracy": story.eta_summary(),
        "stops": stops,
        "delivered": delivered,
        "failed": outcomes.count("failed"),
        "completion_pct": 100.0 * delivered / stops if stops else 0.0,
        "dead_letters": dict(story.dead_letters),
    }


def exception_rows(story: Story) -> list[list[str]]:
    """Each alert in order of opening, with how it ended and the decisions it led to; the
    ``eta_window_risk`` alerts a route opens in one second (one prediction) share a row."""
    groups: dict[tuple[str, str, int], list[AlertRecord]] = {}
    for record in sorted(story.alerts.values(), key=lambda r: r.alert.opened_ms):
        a = record.alert
        key = (a.kind, a.alert_id, 0)
        if a.kind == "eta_window_risk":
            key = (a.kind, a.route_id or "", a.opened_ms // 1000)
        groups.setdefault(key, []).append(record)
    rows = []
    for records in groups.values():
        a = records[0].alert
        taken = {id(d): d for r in records for d in story.decisions_for(r)}.values()
        decision = "; ".join(
            f"{d.update.cause} -> {d.update.route_id} v{d.update.version} ({describe_decision(d)})"
            for d in taken
        )
        detail = describe_alert(a)
        if len(records) > 1:
            stops = ", ".join(str(r.alert.details.get("stop_id", "")) for r in records)
            detail = f"{len(records)} stops at risk: {stops}"
        ends = [r.resolved_ms for r in records]
        resolved = "open"
        if all(end is not None for end in ends):
            last = max(end for end in ends if end is not None)
            resolved = f"{(last - a.opened_ms) / 1000:.0f} s later"
            if len(records) == 1 and records[0].resolution:
                resolved += f" ({records[0].resolution})"
        rows.append([_t(a.opened_ms), a.kind, a.driver_id, a.route_id or "", detail, resolved,
                     decision or _no_decision(a.kind)])  # fmt: skip
    return rows


def order_rows(story: Story, orders: list[Order]) -> list[list[str]]:
    """Each new order with the route it went to, or why none could take it."""
    assigned_to = {
        o: d.update.route_id
        for d in story.decisions
        if d.update.cause == "assign"
        for o in d.orders
    }
    unassigned = {
        r.alert.driver_id: describe_alert(r.alert)
        for r in story.alerts.values()
        if r.alert.kind == "unassigned_order"
    }
    rows = []
    for o in orders:
        answer = assigned_to.get(o.order_id) or (
            f"unassigned: {unassigned[o.order_id]}" if o.order_id in unassigned else "no answer"
        )
        window = f"{_t(o.window_start_ms)}-{_t(o.window_end_ms)}"
        rows.append([_t(o.created_ms), o.order_id, f"{o.lat:.5f}, {o.lon:.5f}", window, answer])
    return rows


def write(
    out: Path,
    day: Day,
    story: Story,
    state: FleetState,
    orders: list[Order],
    unservable: set[str],
    decision_metrics: Mapping[str, float],
    worker_env: Mapping[str, str],
    zone_resolution: int = 7,
) -> Path:
    """Write index.html, fleet-map.png and story.json under ``out``; return the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    draw_map(day, state, out / "fleet-map.png", zone_resolution)
    figures = summary(day, story, state, [o.order_id for o in orders], unservable)
    figures["decision_outcomes"] = dict(decision_metrics)
    completion = completion_rows(day, state, zone_resolution)
    figures["completion"] = completion
    exceptions = exception_rows(story)
    figures["exceptions"] = [dict(zip(EXCEPTION_HEADERS, row, strict=True)) for row in exceptions]
    examples: dict[str, list[dict[str, Any]]] = {}
    for record in story.alerts.values():
        kept = examples.setdefault(record.alert.kind, [])
        if len(kept) < 20:
            kept.append({"driver": record.alert.driver_id, "opened_ms": record.alert.opened_ms,
                         "details": record.alert.details})  # fmt: skip
    figures["alert_examples"] = examples
    decisions = [
        [_t(d.update.issued_ms), d.update.cause, d.update.route_id, d.update.driver_id,
         f"v{d.update.version}", d.update.caused_by or "", describe_decision(d),
         "proposal" if d.proposal else "applied"]
        for d in story.decisions
    ]  # fmt: skip
    eta = figures["eta_accuracy"]
    eta_text = "no EtaUpdate reached a stop before its arrival"
    if eta.get("n"):
        eta_text = (
            f"{eta['n']} arrivals judged against their latest prediction: p50 mean absolute "
            f"error {eta['mae_s']:.1f} s, bias {eta['bias_s']:+.1f} s (late positive), "
            f"{100 * eta['coverage']:.0f} % inside p10-p90"
        )
    outcome_rows = [[k, f"{v:.0f}"] for k, v in sorted(decision_metrics.items())]
    z = [
        [r["name"], r["stops"], r["delivered"], r["failed"], r["pending"], f"{r['pct']:.0f} %"]
        for r in completion["zones"]
    ]
    w = [
        [r["name"], r["stops"], r["delivered"], r["failed"], r["pending"], f"{r['pct']:.0f} %"]
        for r in completion["windows"]
    ]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(figures["alerts_opened"].items()))
    causes = ", ".join(f"{k} {n}" for k, n in sorted(figures["decisions_by_cause"].items()))
    models = ", ".join(figures["eta_models"])
    dead = ", ".join(f"{k} {v}" for k, v in story.dead_letters.items())
    end_ms = day.start_ms + int(day.params.duration_s * 1000)
    low, high = day.params.stops
    headline = [
        ("Alerts opened", f"{figures['alerts']} ({kinds or 'none'})"),
        ("Decisions published", f"{len(story.decisions)} ({causes or 'none'}); re-plans "
         f"{figures['replans']}, order assignments {figures['assignments']}"),
        ("Orders", f"{figures['orders_sent']} sent, {len(figures['orders_assigned'])} assigned, "
         f"{len(figures['orders_unassigned'])} unassigned (alerted)"),
        ("ETAs", f"{figures['eta_updates']} EtaUpdates ({models or 'none'}); {eta_text}"),
        ("Completion", f"{figures['delivered']} of {figures['stops']} stops delivered "
         f"({figures['completion_pct']:.0f} %), {figures['failed']} failed attempts"),
        ("Dead letters", f"{sum(story.dead_letters.values())} ({dead or 'none'})"),
    ]  # fmt: skip
    sections = [
        ("Fleet map", '<img src="fleet-map.png" alt="fleet map">'),
        ("Exception log and the decisions taken", _table(list(EXCEPTION_TITLES), exceptions)),
        ("Decisions (RouteUpdates)", _table(
            ["issued", "cause", "route", "driver", "version", "caused by", "what", "mode"],
            decisions)),
        ("Decision outcomes (worker metric fleet_decisions_total)",
         "<p>Triggers that did not lead to a new plan show here (below_margin, unchanged, "
         "...).</p>" + _table(["cause / outcome", "count"], outcome_rows)),
        ("New orders", _table(["created", "order", "position", "window", "assigned to"],
                              order_rows(story, orders))),
        (f"Completion by zone (H3 res {zone_resolution})", _table(COMPLETION_HEADERS, z)),
        ("Completion by delivery window (UTC)", _table(COMPLETION_HEADERS, w)),
        ("Demo worker settings (time thresholds scaled to the short day)",
         _table(["variable", "value"], [[k, v] for k, v in sorted(worker_env.items())])),
    ]  # fmt: skip
    intro = (
        f"{_t(day.start_ms)}-{_t(end_ms)} UTC, real time ({day.params.duration_s:.0f} s). "
        f"Routes from {len(day.hubs)} hubs, {low}-{high} stops each with delivery windows; the "
        "day is compressed in space (dense rounds, short service times) and the worker's time "
        "thresholds are scaled to it (last table)."
    )
    body = "".join(f"<li><b>{k}:</b> {html.escape(v)}</li>" for k, v in headline)
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Fleet demo report</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Fleet demo: a day of {figures['drivers']} drivers</h1><p>{html.escape(intro)}</p>"
        f'<ul class="k">{body}</ul>\n'
        + "".join(f"<h2>{html.escape(title)}</h2>\n{content}\n" for title, content in sections)
        + "</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(page)
    (out / "story.json").write_text(json.dumps(figures, indent=1, default=str))
    return path


def _no_decision(kind: str) -> str:
    return {
        "unassigned_order": "none possible: no route can serve it (dispatcher to call)",
        "eta_window_risk": "no re-plan issued (below margin or cooldown)",
        "off_route": "no re-plan issued (below margin or cooldown)",
        "behind_schedule": "no re-plan issued (below margin or cooldown)",
        "stale": "none yet (stops reassigned after the stale delay)",
        "failed_delivery": "none yet",
    }.get(kind, "none")
