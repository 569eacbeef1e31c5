"""Spatial queries and zone supply over the live read model the worker writes (real Redis)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid

import h3
import msgspec
import pytest

from fleet.clock import now_ms
from fleet.live import LiveReader, zone_key
from fleet.records import Ping
from fleet.settings import PROJECT_ROOT
from fleet.topics import PINGS
from tests.conftest import produce, wait_until

pytestmark = pytest.mark.integration
enc = msgspec.json.Encoder()
M_PER_DEG = 111_195.0


def _place(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    import math

    return lat + north_m / M_PER_DEG, lon + east_m / (M_PER_DEG * math.cos(math.radians(lat)))


@pytest.fixture
def scattered(fleet_env, worker):
    """Drivers at known offsets around a random, private spot on the globe."""
    worker(fleet_env)
    rng = random.Random()
    lat0, lon0 = rng.uniform(-50, 50), rng.uniform(-170, 170)
    run = uuid.uuid4().hex[:6]
    offsets = {f"q-{run}-{i}": (i * 100.0, 0.0) for i in range(10)}  # 0, 100, ..., 900 m north
    ts = now_ms() - 1000
    msgs = []
    for d, (n, e) in offsets.items():
        lat, lon = _place(lat0, lon0, n, e)
        msgs.append((d.encode(), enc.encode(Ping(driver_id=d, ts_ms=ts, lat=lat, lon=lon, seq=1))))
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), msgs)
    reader = LiveReader.from_url(fleet_env["FLEET_REDIS_URL"])
    assert wait_until(lambda: all(reader.driver(d) for d in offsets), 60)
    return reader, (lat0, lon0), offsets


def test_near_returns_drivers_within_radius_nearest_first(scattered):
    reader, (lat0, lon0), offsets = scattered
    rows = reader.near(lat0, lon0, 450)
    assert [r.driver_id for r in rows] == list(offsets)[:5]  # 0..400 m
    assert rows[0].distance_m is not None and rows[0].distance_m < 5
    assert 390 < (rows[-1].distance_m or 0) < 410


def d_in(rows: list) -> set[str]:
    return {r.driver_id for r in rows}


def test_in_cell_matches_h3_of_each_position(scattered):
    reader, _, offsets = scattered
    some = reader.driver(next(iter(offsets)))
    cell9 = some["h3"]
    expected = {d for d in offsets if reader.driver(d)["h3"] == cell9}
    assert {r.driver_id for r in reader.in_cell(cell9)} == expected
    # A coarser cell, taken from a position, not as the parent of cell9: H3's hierarchy does
    # not nest exactly (a point of a child cell can lie outside its parent's hexagon).
    parent = h3.latlng_to_cell(float(some["lat"]), float(some["lon"]), 6)
    fields = {d: reader.driver(d) for d in offsets}
    in_parent = {
        d for d, f in fields.items()
        if h3.latlng_to_cell(float(f["lat"]), float(f["lon"]), 6) == parent
    }  # fmt: skip
    assert d_in(reader.in_cell(parent)) == in_parent
    assert next(iter(offsets)) in in_parent


def test_within_polygon_uses_exact_geometry(scattered, tmp_path):
    reader, (lat0, lon0), offsets = scattered
    # A box from 250 m to 650 m north: drivers 3, 4, 5, 6.
    (s, w), (n, e) = _place(lat0, lon0, 250, -50), _place(lat0, lon0, 650, 50)
    area = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[w, s], [e, s], [e, n], [w, n], [w, s]]]}}  # fmt: skip
    inside = {r.driver_id for r in reader.within(area)}
    assert inside == set(list(offsets)[3:7])
    # The same through the CLI, as a dispatcher would run it.
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(area))
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "drivers", "within", str(path), "--format", "json"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, check=True,
    )  # fmt: skip
    assert {json.loads(line)["driver_id"] for line in out.stdout.splitlines()} == inside


def test_zone_supply_counts_follow_drivers(scattered):
    reader, _, offsets = scattered
    zones: dict[str, int] = {}
    for d in offsets:
        z = reader.driver(d)["zone"]
        zones[z] = zones.get(z, 0) + 1
    counts = reader.zone_counts(now_ms() - 600_000)
    for z, n in zones.items():
        assert counts[z] == n
        assert reader.r.zcard(zone_key(z)) == n


def test_driver_moving_to_another_zone_leaves_the_old_one(fleet_env, worker):
    worker(fleet_env)
    d = f"mv-{uuid.uuid4().hex[:6]}"
    lat0, lon0 = random.uniform(-50, 50), random.uniform(-170, 170)
    far = _place(lat0, lon0, 20_000, 0)  # 20 km: another res-7 zone
    t = now_ms() - 3_600_000
    msgs = [
        (d.encode(), enc.encode(Ping(driver_id=d, ts_ms=t, lat=lat0, lon=lon0, seq=1))),
        (
            d.encode(),
            enc.encode(Ping(driver_id=d, ts_ms=t + 1_800_000, lat=far[0], lon=far[1], seq=2)),
        ),
    ]
    reader = LiveReader.from_url(fleet_env["FLEET_REDIS_URL"])
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), msgs[:1])
    assert wait_until(lambda: reader.driver(d).get("seq") == "1", 60)
    old_zone = reader.driver(d)["zone"]
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), msgs[1:])
    assert wait_until(lambda: reader.driver(d).get("seq") == "2", 60)
    new_zone = reader.driver(d)["zone"]
    assert new_zone != old_zone
    assert reader.r.zscore(zone_key(old_zone), d) is None
    assert reader.r.zscore(zone_key(new_zone), d) is not None


def test_stale_markers_expire_from_geo_set_and_zones(fleet_env, worker):
    worker(fleet_env, FLEET_POSITION_TTL_S=5, FLEET_ZONE_TTL_S=5, FLEET_SWEEP_INTERVAL_S=1)
    d = f"exp-{uuid.uuid4().hex[:6]}"
    lat0, lon0 = random.uniform(-50, 50), random.uniform(-170, 170)
    ping = Ping(driver_id=d, ts_ms=now_ms(), lat=lat0, lon=lon0, seq=1)
    produce(
        fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), [(d.encode(), enc.encode(ping))]
    )
    reader = LiveReader.from_url(fleet_env["FLEET_REDIS_URL"])
    assert wait_until(lambda: reader.r.zscore("fleet:pos", d) is not None, 60)
    zone = reader.driver(d)["zone"]
    time.sleep(5)
    assert wait_until(lambda: reader.r.zscore("fleet:pos", d) is None, 30)
    assert reader.r.zscore(zone_key(zone), d) is None
    assert wait_until(lambda: not reader.r.exists(f"fleet:driver:{d}"), 30)
