"""The driver gateway with the real services: real HTTP, real Mosquitto and paho-mqtt, real
Kafka (and a real worker writing Redis). OsmAnd requests are the strings of Traccar's own
OsmAndProtocolDecoderTest; OwnTracks payloads are those of its documentation."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from fleet.clock import now_ms
from fleet.decode import decode_ping
from fleet.errors import InvalidPing
from fleet.topics import DLQ, ETAS, EVENTS, PINGS, ROUTE_UPDATES
from tests.conftest import FleetEnv, consume_all, produce, wait_until
from tests.integration.gateway_clients import MqttListener, SseReader, gateway_fixture, http

pytestmark = pytest.mark.integration
_ = gateway_fixture  # the `gateway` fixture

KNOT = 0.514444


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def pings_of(env: FleetEnv, expect: int) -> dict[str, list[dict[str, Any]]]:
    """The pings on the run's topic, by driver (key)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, value in consume_all(env["FLEET_KAFKA_BOOTSTRAP"], env.topic(PINGS), expect=expect):
        ping = json.loads(value or b"{}")
        assert key is not None and key.decode() == ping["driver_id"]
        out.setdefault(ping["driver_id"], []).append(ping)
    return out


# Traccar's OsmAndProtocolDecoderTest.testDecodeQuery requests that carry a position.
TRACCAR_QUERIES = [
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0&altitude=224.0&speed=0.0",
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0&speed=0.0",
    "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0&id=353861053849681",
    "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0",
    "/?lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456",
    "/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87",
    "/?id=123456&timestamp=1377177267&location=60.0,30.0",
    "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24",
]  # fmt: skip
# ... and testDecodeJson (Traccar Client 9's JSON body).
TRACCAR_JSON = [
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},"activity":{"type":"still"},"extras":{},"_":"&id=48241179&lat=37.4219983&lon=-122.084&timestamp=2025-06-15T13:45:12.862Z&"},"device_id":"48241179"}',
    '{"location":{"event":"motionchange","is_moving":false,"uuid":"0e9a2473-a9a7-4c00-997b-fb97d2154e75","timestamp":"2021-07-21T08:06:34.444Z","odometer":0,"coords":{"latitude":-6.1148096,"longitude":106.6837015,"accuracy":3.8,"speed":18.67,"speed_accuracy":0.26,"heading":63,"heading_accuracy":0.28,"altitude":35.7,"altitude_accuracy":3.8},"activity":{"type":"still","confidence":100},"battery":{"is_charging":false,"level":0.79},"extras":{}},"device_id":"8737767034"}',
]  # fmt: skip


def test_osmand_and_traccar_requests_land_in_kafka_in_contract_units(fleet_env, gateway):
    """Every position request of Traccar's own OsmAnd tests (GET, POST form, Traccar Client 9
    JSON) is answered 200 after Kafka has it, as a Ping keyed by the device's driver: epoch s,
    epoch ms, ISO 8601 and 'yyyy-MM-dd HH:mm:ss' times, knots to m/s, extra attributes kept."""
    gw = gateway()
    before = now_ms()
    for query in TRACCAR_QUERIES:
        assert http("GET", gw.url + query)[0] == 200, query
    form = TRACCAR_QUERIES[7][2:].replace("id=123456789012345", "id=form-device")
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http("POST", gw.url + "/", form.encode(), form_headers)[0] == 200
    for body in TRACCAR_JSON:
        status, _, _ = http(
            "POST", gw.url + "/", body.encode(), {"Content-Type": "application/json"}
        )
        assert status == 200
    after = now_ms()

    got = pings_of(fleet_env, expect=len(TRACCAR_QUERIES) + 1 + len(TRACCAR_JSON))
    iso, ms, spaced = got["902064"][0], got["902064"][1], got["353861053849681"][0]
    assert iso["ts_ms"] == iso_ms("2016-01-27T18:55:47") and ms["ts_ms"] == 1442068686579
    assert spaced["ts_ms"] == iso_ms("2014-06-04T09:10:11")
    assert iso["altitude_m"] == 224.0 and iso["attributes"] == {"hdop": 6.0}
    assert (iso["lat"], iso["lon"]) == (42.06288, -88.23412)
    by_seconds, no_time, by_location = got["123456"]
    assert by_seconds["ts_ms"] == 1377177267 * 1000 and by_seconds["heading_deg"] == 0.0
    assert before <= no_time["ts_ms"] <= after  # no timestamp: the time of receipt
    assert no_time["attributes"] == {"vacc": 0.0, "hacc": 0.0}
    assert (by_location["lat"], by_location["lon"]) == (60.0, 30.0)
    assert got["861001000719969"][0]["battery_pct"] == 87.0
    (fuel,) = got["123456789012345"]
    assert fuel["speed_mps"] == pytest.approx(40 * KNOT)
    assert fuel["heading_deg"] == pytest.approx(7.19889788244)
    assert fuel["attributes"] == {"ignition": True, "rpm": 933.0, "fuel": 24.0}
    (posted,) = got["form-device"]
    assert posted["speed_mps"] == fuel["speed_mps"] and posted["ts_ms"] == 1504763810000
    (still,) = got["48241179"]
    assert still["ts_ms"] == iso_ms("2025-06-15T13:45:12.862") and "heading_deg" not in still
    assert still["battery_pct"] == 100.0 and still["accuracy_m"] == 5.0
    (moving,) = got["8737767034"]
    assert moving["speed_mps"] == 18.67 and moving["heading_deg"] == 63.0  # JSON speed is m/s
    assert moving["altitude_m"] == 35.7 and moving["battery_pct"] == pytest.approx(79.0)


OWNTRACKS_LOCATION = {  # the example of OwnTracks' JSON documentation, times made current
    "_type": "location", "acc": 13, "alt": 37, "batt": 85, "bs": 1, "conn": "w", "lat": 52.5219,
    "lon": 13.4132, "t": "u", "tid": "jj", "vac": 4, "vel": 36, "cog": 271,
}  # fmt: skip


def test_owntracks_over_http_and_mqtt(fleet_env, gateway):
    """OwnTracks locations over HTTP (answered []) and MQTT become Pings of '<user>.<device>':
    tst s -> ms, vel km/h -> m/s, acc and cog kept; other message types are ignored."""
    gw = gateway()
    tst = int(time.time()) - 30
    payload = json.dumps({**OWNTRACKS_LOCATION, "tst": tst}).encode()
    status, _headers, body = http("POST", gw.url + "/owntracks", payload,
                                 {"Content-Type": "application/json", "X-Limit-U": "jane",
                                  "X-Limit-D": "phone"})  # fmt: skip
    assert (status, json.loads(body)) == (200, [])
    transition = {"_type": "transition", "event": "enter", "tst": tst, "wtst": tst, "lat": 1.0,
                  "lon": 1.0, "acc": 5, "tid": "jj", "t": "c", "desc": "depot"}  # fmt: skip
    status, _, body = http("POST", gw.url + "/owntracks?u=jane&d=phone",
                           json.dumps(transition).encode())  # fmt: skip
    assert (status, json.loads(body)) == (200, [])

    app = MqttListener(f"app-{uuid.uuid4().hex[:8]}")
    app.publish(f"{fleet_env.prefix}owntracks/jane/tablet", payload)
    app.publish(f"{fleet_env.prefix}owntracks/jane/tablet", b'{"_type":"lwt","tst":1}')
    app.close()

    got = pings_of(fleet_env, expect=2)
    for device in ("jane.phone", "jane.tablet"):
        (ping,) = got[device]
        assert ping["ts_ms"] == tst * 1000 and (ping["lat"], ping["lon"]) == (52.5219, 13.4132)
        assert ping["speed_mps"] == pytest.approx(10.0)  # 36 km/h
        assert ping["accuracy_m"] == 13.0 and ping["heading_deg"] == 271.0
        assert ping["altitude_m"] == 37.0 and ping["battery_pct"] == 85.0
        assert ping["attributes"]["tid"] == "jj"


BROKEN = {
    "lat_out_of_range": b'{"driver_id":"bad-1","ts_ms":1763720103250,"lat":123.4,"lon":13.4}',
    "missing_field": b'{"driver_id":"bad-3","ts_ms":1763720103250,"lat":52.4}',
    "wrong_type": b'{"driver_id":"bad-4","ts_ms":1763720103250,"lat":true,"lon":13.4}',
    "invalid_json": b'{"driver_id":"bad-5",',
    "invalid_identifier": b'{"driver_id":"bad driver","ts_ms":1763720103250,"lat":1,"lon":1}',
    "too_large": b'{"driver_id":"bad-9","pad":"' + b"x" * 70_000 + b'","ts_ms":1,"lat":1,"lon":1}',
}


def ingest_reason(raw: bytes) -> str:
    """The reason Kafka ingest gives the same bytes."""
    try:
        decode_ping(raw, now_ms(), 300_000, 65_536)
    except InvalidPing as exc:
        return exc.reason
    return "valid"


def test_invalid_input_is_answered_400_and_dead_lettered_with_ingest_reason(fleet_env, gateway):
    """Each broken Ping gets 400 with the reason Kafka ingest gives the same bytes, and lands
    on the dead-letter topic with it; valid items of a batch still go through."""
    gw = gateway()
    for expected, raw in BROKEN.items():
        status, _, body = http("POST", gw.url + "/v1/pings", raw)
        assert status == 400 and json.loads(body)["error"] == expected == ingest_reason(raw)
    status, _, body = http("GET", gw.url + "/?id=osm-bad&lat=123.4&lon=13.4")
    assert status == 400 and json.loads(body)["error"] == "lat_out_of_range"
    good = json.dumps({"driver_id": "batch-ok", "ts_ms": now_ms(), "lat": 52.5, "lon": 13.4})
    status, _, body = http("POST", gw.url + "/v1/pings", f'[{good}, {{"lat": 1}}]'.encode())
    answer = json.loads(body)
    assert status == 400 and answer["accepted"] == 1
    assert answer["rejected"] == [{"index": 1, "reason": "missing_field",
                                   "detail": "required field 'driver_id' is missing"}]  # fmt: skip

    letters = consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(DLQ), expect=8)
    reasons = sorted(json.loads(v or b"{}")["reason"] for _, v in letters)
    assert reasons == sorted([*BROKEN, "lat_out_of_range", "missing_field"])
    assert {json.loads(v or b"{}")["source_topic"] for _, v in letters} == {fleet_env.topic(PINGS)}
    assert list(pings_of(fleet_env, expect=1)) == ["batch-ok"]


def test_contract_batches_over_http_and_mqtt(fleet_env, gateway):
    """An offline queue (JSON array) of Pings and DeliveryEvents over HTTP and over MQTT
    fleet/<driver>/{pings,events} is written whole; an item for another driver than its
    MQTT topic is dead-lettered."""
    gw = gateway()
    t0 = now_ms() - 60_000
    pings = [{"driver_id": "drv-q", "ts_ms": t0 + i * 1000, "lat": 52.5, "lon": 13.4 + i * 1e-4,
              "seq": i} for i in range(5)]  # fmt: skip
    event = {"event_id": f"ev-{uuid.uuid4().hex[:6]}", "driver_id": "drv-q", "type": "arrived",
             "ts_ms": t0, "stop_id": "st-1"}  # fmt: skip
    status, _, body = http("POST", gw.url + "/v1/pings", json.dumps(pings[:3]).encode())
    assert (status, json.loads(body)["accepted"]) == (200, 3)
    assert http("POST", gw.url + "/v1/events", json.dumps(event).encode())[0] == 200

    app = MqttListener(f"app-{uuid.uuid4().hex[:8]}")
    app.publish(f"{fleet_env.prefix}fleet/drv-q/pings", json.dumps(pings[3:]).encode())
    app.publish(f"{fleet_env.prefix}fleet/drv-q/events", json.dumps(event).encode())
    app.publish(f"{fleet_env.prefix}fleet/other/pings", json.dumps(pings[0]).encode())
    app.close()

    seqs = sorted(p["seq"] for p in pings_of(fleet_env, expect=5)["drv-q"])
    assert seqs == [0, 1, 2, 3, 4]
    events = consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(EVENTS), expect=2)
    assert [json.loads(v or b"{}")["event_id"] for _, v in events] == [event["event_id"]] * 2
    (letter,) = consume_all(fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(DLQ), expect=1)
    assert letter[0] == b"other" and json.loads(letter[1] or b"{}")["reason"] == "invalid_value"


def test_rate_and_size_limits(fleet_env, gateway):
    """Over its burst a device gets 429 with Retry-After; a body over the limit gets 413."""
    gw = gateway(FLEET_GATEWAY_RATE_PER_S=0.5, FLEET_GATEWAY_RATE_BURST=3,
                 FLEET_GATEWAY_MAX_BODY_BYTES=4096)  # fmt: skip
    answers = [http("GET", gw.url + f"/?id=limited&lat=52.5&lon=13.4&timestamp={now_ms()}")
               for _ in range(4)]  # fmt: skip
    assert [a[0] for a in answers] == [200, 200, 200, 429]
    assert int(answers[3][1]["Retry-After"]) >= 1
    assert json.loads(answers[3][2])["error"] == "rate_limited"
    assert http("GET", gw.url + "/?id=other&lat=52.5&lon=13.4")[0] == 200  # per device
    status, _, body = http("POST", gw.url + "/v1/pings", b"[" + b" " * 5000 + b"]")
    assert status == 413 and json.loads(body)["error"] == "too_large"


def route_update(driver: str, route: str, version: int) -> bytes:
    plan = {"route_id": route, "driver_id": driver, "version": version,
            "stops": [{"stop_id": f"st-{version}", "lat": 52.5, "lon": 13.4}]}  # fmt: skip
    return json.dumps({"route_id": route, "driver_id": driver, "version": version,
                       "cause": "dispatch:add_stop", "caused_by": "cmd:test",
                       "issued_ms": now_ms(), "plan": plan}).encode()  # fmt: skip


def test_route_edit_reaches_mqtt_and_sse_and_reconnects_get_the_latest_plan(fleet_env, gateway):
    """A RouteUpdate on Kafka reaches the driver's MQTT subscriber (retained) and SSE stream,
    only that driver's, and so do its ETAs; a reconnecting SSE client (Last-Event-ID) and a
    new MQTT subscriber get the latest plan first, also after a gateway restart."""
    bootstrap, topic = fleet_env["FLEET_KAFKA_BOOTSTRAP"], fleet_env.topic(ROUTE_UPDATES)
    run = uuid.uuid4().hex[:6]
    me, other = f"drv-{run}", f"oth-{run}"
    produce(bootstrap, topic, [(me.encode(), route_update(me, "rt-a", 1))])
    gw = gateway()
    route_topic = f"{fleet_env.prefix}fleet/{me}/route"
    sse = SseReader(f"{gw.url}/v1/drivers/{me}/route-updates")
    first = sse.next()
    assert (first[0], first[1], first[2]["version"]) == ("1", "route-update", 1)
    app = MqttListener(f"app-{run}", route_topic, f"{fleet_env.prefix}fleet/{other}/route")
    retained = app.next()
    assert retained[0] == route_topic and retained[2] and json.loads(retained[1])["version"] == 1

    produce(bootstrap, topic, [(other.encode(), route_update(other, "rt-b", 7)),
                               (me.encode(), route_update(me, "rt-a", 2))])  # fmt: skip
    event_id, event, update = sse.next()
    assert (event_id, event, update["driver_id"], update["version"]) == ("2", "route-update", me, 2)
    pushed = {app.next()[0]: None for _ in range(2)}
    assert set(pushed) == {route_topic, f"{fleet_env.prefix}fleet/{other}/route"}
    t = now_ms()
    eta = {"route_id": "rt-a", "driver_id": me, "model_version": "eta-1", "computed_ms": t,
           "stops": [{"stop_id": "st-2", "p10_ms": t + 60_000, "p50_ms": t + 90_000,
                      "p90_ms": t + 150_000}]}  # fmt: skip
    produce(bootstrap, fleet_env.topic(ETAS), [(b"rt-a", json.dumps(eta).encode())])
    event_id, event, pushed_eta = sse.next()
    assert (event_id, event, pushed_eta["stops"]) == (None, "eta", eta["stops"])
    sse.close()
    app.close()

    again = SseReader(f"{gw.url}/v1/drivers/{me}/route-updates", last_event_id="1")
    assert again.next()[2]["version"] == 2
    again.close()
    gw.stop()
    gw.start()  # a restarted gateway re-reads the topic: the latest plan is still served
    resumed = SseReader(f"{gw.url}/v1/drivers/{me}/route-updates", last_event_id="1")
    assert resumed.next()[2]["version"] == 2
    resumed.close()
    late = MqttListener(f"late-{run}", route_topic)
    _topic_name, payload, was_retained = late.next()
    assert was_retained and json.loads(payload)["version"] == 2
    late.close()


def test_pings_through_the_gateway_reach_the_live_read_model(fleet_env, gateway, worker):
    """OsmAnd (epoch s, epoch ms, ISO 8601, knots) and OwnTracks pings sent to the gateway
    are the drivers' live positions in Redis, with their speeds in m/s."""
    worker(fleet_env)
    gw = gateway()
    run = uuid.uuid4().hex[:6]
    now_s = int(time.time()) - 20
    iso = datetime.fromtimestamp(now_s + 1, UTC).strftime("%Y-%m-%dT%H%%3A%M%%3A%SZ")
    sent = {
        f"osm-s-{run}": f"/?id=osm-s-{run}&timestamp={now_s}&lat=60.0&lon=30.0&speed=10.0&bearing=90.0",  # noqa: E501
        f"osm-ms-{run}": f"/?id=osm-ms-{run}&lat=42.06288&lon=-88.23412&timestamp={now_s * 1000}&hdop=6.0&altitude=224.0&speed=20.0",  # noqa: E501
        f"osm-iso-{run}": f"/?id=osm-iso-{run}&lat=42.06288&lon=-88.23412&timestamp={iso}&hdop=6.0&altitude=224.0&speed=0.0",  # noqa: E501
    }  # fmt: skip
    for query in sent.values():
        assert http("GET", gw.url + query)[0] == 200
    owntracks = json.dumps({**OWNTRACKS_LOCATION, "tst": now_s}).encode()
    assert http("POST", f"{gw.url}/owntracks?u=ot{run}&d=phone", owntracks)[0] == 200
    r = redis.Redis.from_url(fleet_env["FLEET_REDIS_URL"], decode_responses=True)
    drivers = [*sent, f"ot{run}.phone"]
    rows = wait_until(lambda: (h := [r.hgetall(f"fleet:driver:{d}") for d in drivers])
                      and all(h) and h, 90)  # fmt: skip
    assert rows, "live positions did not appear"
    s, ms, iso_row, ot = rows
    assert int(s["ts_ms"]) == now_s * 1000 and float(s["lat"]) == 60.0
    assert int(ms["ts_ms"]) == now_s * 1000 and int(iso_row["ts_ms"]) == (now_s + 1) * 1000
    assert float(ot["lat"]) == pytest.approx(52.5219) and int(ot["ts_ms"]) == now_s * 1000
    assert float(s["speed_mps"]) == pytest.approx(10 * KNOT, rel=1e-3)
    assert float(ms["speed_mps"]) == pytest.approx(20 * KNOT, rel=1e-3)
    assert float(ot["speed_mps"]) == pytest.approx(10.0, rel=1e-3)
