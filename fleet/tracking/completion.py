"""Completion reporting: each stop's outcome filed under its H3 zone and time window of day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import h3

from fleet.records import RoutePlan, Stop

ZONE_KEY = "fleet:completion:zone:{}"  # hash route_id:stop_id -> pending|delivered|failed
WINDOW_KEY = "fleet:completion:window:{}"  # same, per hour of the day (UTC) of the stop
ZONES_SUMMARY_KEY = "fleet:completion:zones"  # hash cell -> {"total","delivered","failed","pct"}
WINDOWS_SUMMARY_KEY = "fleet:completion:windows"  # hash YYYY-MM-DDTHH -> the same JSON
VERSION_KEY = "fleet:completion:version:{}"  # route_id -> newest plan version filed

# Keeps the summaries right under replays: members are set, never counted up, and each
# summary is recomputed from its detail hash in the same atomic step.
# Fenced by plan version: a write made from an older plan version of the route than one
# already filed is dropped, so a step that ran on the old plan while a new version removed
# stops (a race, or a replay after a crash) cannot file a removed stop again.
COMPLETION_LUA = """
local ttl = tonumber(ARGV[1])
local touched = {}
local i = 2
while i <= #ARGV do
  local key, summary, field, member, state = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local vkey, version = ARGV[i+5], tonumber(ARGV[i+6])
  local filed = tonumber(redis.call('GET', vkey) or '-1')
  if version >= filed then
    if version > filed then redis.call('SET', vkey, version) end
    redis.call('EXPIRE', vkey, ttl)
    if state == '' then
      redis.call('HDEL', key, member)
    else
      redis.call('HSET', key, member, state)
    end
    redis.call('EXPIRE', key, ttl)
    touched[key] = {summary, field}
  end
  i = i + 7
end
for key, target in pairs(touched) do
  local values = redis.call('HVALS', key)
  local total, delivered, failed = #values, 0, 0
  for _, v in ipairs(values) do
    if v == 'delivered' then delivered = delivered + 1
    elseif v == 'failed' then failed = failed + 1 end
  end
  if total == 0 then
    redis.call('HDEL', target[1], target[2])
  else
    local pct = math.floor(10000 * (delivered + failed) / total) / 100
    redis.call('HSET', target[1], target[2], cjson.encode(
      {total = total, delivered = delivered, failed = failed, pct = pct}))
  end
  redis.call('EXPIRE', target[1], ttl)
end
return 1
"""


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """One stop's state filed under a zone and a window ('' state removes it), from the
    route's plan ``version``."""

    zone: str
    window: str
    member: str
    state: str
    route_id: str
    version: int


def stop_window(stop: Stop, plan: RoutePlan) -> str:
    """Hour of the day (UTC) the stop belongs to: planned arrival, else window, else shift."""
    ts = stop.planned_arrival_ms or stop.window_start_ms or plan.shift_start_ms or 0
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H")


def stop_outcomes(
    plan: RoutePlan,
    done: dict[str, str],
    zone_resolution: int,
    removed: bool = False,
    version: int | None = None,
) -> list[StopOutcome]:
    """Every stop of ``plan`` with its outcome (or its removal when ``removed``), filed as
    of plan ``version`` (``plan``'s own by default; a removal carries the new version)."""
    version = plan.version if version is None else version
    return [
        StopOutcome(
            h3.latlng_to_cell(s.lat, s.lon, zone_resolution),
            stop_window(s, plan),
            f"{plan.route_id}:{s.stop_id}",
            "" if removed else done.get(s.stop_id, "pending"),
            plan.route_id,
            version,
        )
        for s in plan.stops
    ]


def completion_args(outcomes: list[StopOutcome], ttl_s: int) -> list[str | int]:
    """ARGV of COMPLETION_LUA: each outcome into its zone and its window."""
    args: list[str | int] = [ttl_s]
    for o in outcomes:
        fence: list[str | int] = [VERSION_KEY.format(o.route_id), o.version]
        args += [ZONE_KEY.format(o.zone), ZONES_SUMMARY_KEY, o.zone, o.member, o.state, *fence]
        args += [WINDOW_KEY.format(o.window), WINDOWS_SUMMARY_KEY, o.window, o.member, o.state]
        args += fence
    return args
