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

COUNTS_PREFIX = "fleet:completion:n:"  # + zone:{cell} / window:{hour}: total/delivered/failed

# Keeps the summaries right under replays: members are set, never counted up blindly; the
# counts of a detail hash (COUNTS_PREFIX) move only when a member's state really changes,
# so a repeated write changes nothing. Counting the detail hash on every write instead (its
# HVALS) cost O(stops in the hour) per event: at 20,000 routes one hour's hash held 100,000
# stops and Redis spent 13 ms per call (the 10x load test). Counts missing (first write, an
# upgrade, an expired pair) are taken from the hash once.
# Fenced by plan version: a write made from an older plan version of the route than one
# already filed is dropped, so a step that ran on the old plan while a new version removed
# stops (a race, or a replay after a crash) cannot file a removed stop again.
COMPLETION_LUA = """
local ttl = tonumber(ARGV[1])
local touched = {}
local function bump(counts, state, by)
  if state == 'delivered' or state == 'failed' then redis.call('HINCRBY', counts, state, by) end
end
local i = 2
while i <= #ARGV do
  local key, summary, field, member, state = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local vkey, version = ARGV[i+5], tonumber(ARGV[i+6])
  local filed = tonumber(redis.call('GET', vkey) or '-1')
  if version >= filed then
    if version > filed then redis.call('SET', vkey, version) end
    redis.call('EXPIRE', vkey, ttl)
    local counts = string.gsub(key, '^fleet:completion:', 'fleet:completion:n:', 1)
    if redis.call('EXISTS', counts) == 0 or redis.call('EXISTS', key) == 0 then
      local total, delivered, failed = 0, 0, 0
      for _, v in ipairs(redis.call('HVALS', key)) do
        total = total + 1
        if v == 'delivered' then delivered = delivered + 1
        elseif v == 'failed' then failed = failed + 1 end
      end
      redis.call('HSET', counts, 'total', total, 'delivered', delivered, 'failed', failed)
    end
    local old = redis.call('HGET', key, member)
    if state == '' then
      if old then
        redis.call('HDEL', key, member)
        redis.call('HINCRBY', counts, 'total', -1)
        bump(counts, old, -1)
      end
    elseif old ~= state then
      redis.call('HSET', key, member, state)
      if old then bump(counts, old, -1) else redis.call('HINCRBY', counts, 'total', 1) end
      bump(counts, state, 1)
    end
    redis.call('EXPIRE', key, ttl)
    redis.call('EXPIRE', counts, ttl)
    touched[counts] = {summary, field}
  end
  i = i + 7
end
for counts, target in pairs(touched) do
  local n = redis.call('HMGET', counts, 'total', 'delivered', 'failed')
  local total, delivered, failed = tonumber(n[1]), tonumber(n[2]), tonumber(n[3])
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
