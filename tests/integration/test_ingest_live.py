"""End to end through real Kafka, a real `fleet worker` and real Redis: the live read model."""

from __future__ import annotations

import json
import random
import time
import uuid

import msgspec
import pytest
import redis

from fleet.clock import now_ms
from fleet.records import Ping
from fleet.topics import DLQ, PINGS
from load_tests.harness import metric_totals
from tests.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

enc = msgspec.json.Encoder()


def _redis(env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(env["FLEET_REDIS_URL"], decode_responses=True)


def _live(r: redis.Redis, driver: str) -> dict[str, str]:
    return r.hgetall(f"fleet:driver:{driver}")  # type: ignore[return-value]


def test_pings_reach_driver_hash_and_geo_set(fleet_env, worker):
    """Each driver's latest ping is in fleet:driver:{id} (lat, lon, ts_ms, h3) and fleet:pos."""
    worker(fleet_env)
    run = uuid.uuid4().hex[:6]
    t0 = now_ms() - 60_000
    drivers = [f"it-{run}-{i}" for i in range(5)]
    messages = []
    for i, d in enumerate(drivers):
        for k in range(4):
            p = Ping(
                driver_id=d,
                ts_ms=t0 + k * 1000,
                lat=52.5 + i * 0.01 + k * 0.0001,
                lon=13.4 + k * 0.0001,
                seq=k + 1,
            )
            messages.append((d.encode(), enc.encode(p)))
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), messages)
    r = _redis(fleet_env)
    assert wait_until(lambda: all(_live(r, d).get("seq") == "4" for d in drivers), 60)
    for i, d in enumerate(drivers):
        row = _live(r, d)
        assert float(row["lat"]) == pytest.approx(52.5 + i * 0.01 + 0.0003)
        assert float(row["lon"]) == pytest.approx(13.4 + 0.0003)
        assert int(row["ts_ms"]) == t0 + 3000
        assert len(row["h3"]) == 15 and row["h3"].startswith("89")
        ((lon, lat),) = r.geopos("fleet:pos", d)
        assert lat == pytest.approx(52.5 + i * 0.01 + 0.0003, abs=1e-5)
        assert lon == pytest.approx(13.4 + 0.0003, abs=1e-5)


BROKEN = {
    "lat_out_of_range": b'{"driver_id":"bad-1","ts_ms":1763720103250,"lat":123.4,"lon":13.4}',
    "lon_out_of_range": b'{"driver_id":"bad-2","ts_ms":1763720103250,"lat":52.4,"lon":-181}',
    "missing_field": b'{"driver_id":"bad-3","ts_ms":1763720103250,"lat":52.4}',
    "wrong_type": b'{"driver_id":"bad-4","ts_ms":1763720103250,"lat":true,"lon":13.4}',
    "invalid_json": b'{"driver_id":"bad-5",',
    "not_an_object": b"[52.4, 13.4]",
    "invalid_utf8": b'\xff\xfe{"driver_id": 1}',
    "invalid_identifier": b'{"driver_id":"bad driver","ts_ms":1763720103250,"lat":1,"lon":1}',
    "too_large": b'{"driver_id":"bad-9","pad":"' + b"x" * 70_000 + b'","ts_ms":1,"lat":1,"lon":1}',
    "empty": b"",
}


def test_invalid_pings_are_dead_lettered_with_reason(fleet_env, worker):
    """Every broken message lands on fleet.pings.dlq with its reason and original bytes."""
    worker(fleet_env)
    future = json.dumps(
        {"driver_id": "bad-10", "ts_ms": now_ms() + 3_600_000, "lat": 1, "lon": 1}
    ).encode()
    cases = {**BROKEN, "ts_in_future": future}
    messages: list[tuple[bytes | None, bytes | None]] = [
        (reason.encode(), raw) for reason, raw in cases.items()
    ]
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), messages)
    letters = consume_all(
        fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(DLQ), 60, expect=len(cases)
    )
    got = {key.decode(): json.loads(value) for key, value in letters if key and value}
    assert set(got) == set(cases)
    for expected_reason, letter in got.items():
        assert letter["reason"] == expected_reason
        assert letter["source_topic"] == fleet_env.topic(PINGS)
        assert letter["detail"]
        raw = cases[expected_reason]
        if letter["raw_encoding"] == "utf-8":
            kept = letter["raw"].encode()
        else:
            import base64

            kept = base64.b64decode(letter["raw"])
        if letter.get("raw_bytes") is None:
            assert kept == raw
        else:  # a large input keeps a bounded prefix, its length and its hash
            import hashlib

            assert len(kept) <= 4096 and raw.startswith(kept)
            assert letter["raw_bytes"] == len(raw)
            assert letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert got["too_large"]["raw_bytes"] == len(BROKEN["too_large"])


def test_duplicates_late_and_offline_bursts_keep_latest_valid_position(fleet_env, worker):
    """>=10% duplicates, late pings, offline replays and invalid noise: Redis ends at each
    driver's newest valid fix, and every invalid message is on the DLQ."""
    worker(fleet_env)
    rng = random.Random(5)
    run = uuid.uuid4().hex[:6]
    t0 = now_ms() - 3_600_000
    drivers = [f"mix-{run}-{i}" for i in range(20)]
    stream: list[tuple[bytes | None, bytes | None]] = []
    newest: dict[str, tuple[int, float, float]] = {}
    invalid = 0
    for i, d in enumerate(drivers):
        fixes = []
        for k in range(60):  # 1 Hz along a street, ~10 m/s
            ts = t0 + k * 1000
            lat, lon = 52.4 + i * 0.01 + k * 0.00009, 13.3 + k * 0.00001
            fixes.append(Ping(driver_id=d, ts_ms=ts, lat=lat, lon=lon, seq=k + 1))
        newest[d] = (fixes[-1].ts_ms, fixes[-1].lat, fixes[-1].lon)
        live, offline = fixes[:40], fixes[40:]
        ordered = list(live)
        # Late pings: a few old fixes re-sent after newer ones.
        ordered += rng.sample(live[:30], 4)
        # An offline burst: the queue of the last 20 fixes replayed in order, after a gap.
        ordered += offline
        # Duplicates: ~20% of the messages sent again at random places.
        for p in rng.sample(ordered, 12):
            ordered.insert(rng.randrange(len(ordered)), p)
        for p in ordered:
            stream.append((d.encode(), enc.encode(p)))
        # Invalid noise for this driver.
        stream.append((d.encode(), b'{"driver_id":"%s","ts_ms":1,"lat":99,"lon":1}' % d.encode()))
        invalid += 1
    produce(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS), stream)
    r = _redis(fleet_env)

    def settled() -> bool:
        return all(_live(r, d).get("ts_ms") == str(newest[d][0]) for d in drivers)

    assert wait_until(settled, 90), {d: _live(r, d).get("ts_ms") for d in drivers[:3]}
    for d in drivers:
        ts, lat, lon = newest[d]
        row = _live(r, d)
        assert (int(row["ts_ms"]), float(row["lat"]), float(row["lon"])) == (ts, lat, lon)
    letters = consume_all(
        fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(DLQ), 60, expect=invalid
    )
    assert len(letters) == invalid
    assert all(json.loads(v)["reason"] == "lat_out_of_range" for _, v in letters if v)


def test_restarted_worker_resumes_driver_state_from_the_changelog(fleet_env, worker):
    """After a SIGKILL, the new worker still knows each live fix: redelivered and late pings
    never move the marker back, newer ones do."""
    first = worker(fleet_env, FLEET_STATE_FLUSH_S=0.5)
    run = uuid.uuid4().hex[:6]
    drivers = [f"rs-{run}-{i}" for i in range(6)]
    t0 = now_ms() - 120_000
    bootstrap, topic = fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(PINGS)

    def pings(k: int) -> list[tuple[bytes | None, bytes | None]]:
        return [
            (
                d.encode(),
                enc.encode(
                    Ping(driver_id=d, ts_ms=t0 + k * 1000, lat=48.1, lon=11.5 + k * 1e-4, seq=k)
                ),
            )
            for d in drivers
        ]

    produce(bootstrap, topic, pings(5))
    r = _redis(fleet_env)
    assert wait_until(lambda: all(_live(r, d).get("seq") == "5" for d in drivers), 60)
    time.sleep(2)  # let the worker commit offsets and save states (every 0.5 s here)
    first.kill()
    r.delete(*[f"fleet:driver:{d}" for d in drivers])  # the read model is rebuildable
    produce(bootstrap, topic, pings(5) + pings(3))  # a redelivery and a late ping
    worker(fleet_env)
    produce(bootstrap, topic, pings(6))
    assert wait_until(lambda: all(_live(r, d).get("seq") == "6" for d in drivers), 60)
    # The redelivered fix 5 and late fix 3 did not write the (deleted) hash back first:
    # had the state been lost, fix 3 would have been accepted as a first fix.
    metrics = _metrics(fleet_env)
    assert metrics.get("fleet_pings_duplicate_total", 0) + metrics.get(
        "fleet_pings_late_total", 0
    ) >= 2 * len(drivers)
    assert metrics.get("fleet_pings_accepted_total", 0) == 2 * len(drivers)  # fix 3 and fix 6


def _metrics(env: dict[str, str]) -> dict[str, float]:
    return metric_totals(int(env["FLEET_METRICS_PORT"]))


def test_rejections_are_counted_by_reason_in_prometheus(fleet_env, worker):
    worker(fleet_env)
    produce(
        fleet_env["FLEET_KAFKA_BOOTSTRAP"],
        fleet_env.topic(PINGS),
        [(None, BROKEN["lat_out_of_range"])] * 3 + [(None, BROKEN["invalid_json"])],
    )
    from urllib.request import urlopen

    def counted() -> bool:
        with urlopen(f"http://127.0.0.1:{fleet_env['FLEET_METRICS_PORT']}/metrics") as resp:
            text = resp.read().decode()
        return (
            'fleet_pings_rejected_total{reason="lat_out_of_range"} 3.0' in text
            and 'fleet_pings_rejected_total{reason="invalid_json"} 1.0' in text
        )

    assert wait_until(counted, 60)
