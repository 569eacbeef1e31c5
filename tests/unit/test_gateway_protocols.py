"""The tracker protocol parsers: units, time encodings, and bad input as reasons, never crashes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.decode import REASONS
from fleet.errors import InvalidMessage, InvalidPing
from gateway.ingest import ping_bytes, split_batch
from gateway.limits import RateLimiter
from gateway.protocols import (
    KMH_MPS,
    KNOT_MPS,
    Fix,
    parse_osmand,
    parse_owntracks,
    parse_timestamp,
    parse_traccar_json,
)

NOW = 1_763_720_103_250
lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
seconds = st.integers(1_000_000_000, 2_000_000_000)
reasons = set(REASONS) | {"unknown_device"}


@given(seconds)
def test_timestamp_encodings_agree(ts):
    """Epoch seconds, epoch milliseconds and ISO 8601 of one instant are the same ms."""
    iso = datetime.fromtimestamp(ts, UTC).isoformat()
    naive = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert parse_timestamp(str(ts)) == parse_timestamp(str(ts * 1000)) == ts * 1000
    assert parse_timestamp(iso) == parse_timestamp(iso.replace("+00:00", "Z")) == ts * 1000
    assert parse_timestamp(naive) == ts * 1000  # no zone: UTC


@given(lats, lons, st.floats(0, 200), st.floats(0, 359.9), seconds, st.booleans())
def test_osmand_query_maps_units(lat, lon, knots, course, ts, as_location):
    """Speed in knots becomes m/s; lat/lon or location=lat,lon; bearing is the heading."""
    params = {"id": "dev-1", "timestamp": str(ts), "speed": repr(knots), "bearing": repr(course)}
    params |= (
        {"location": f"{lat!r},{lon!r}"} if as_location else {"lat": repr(lat), "lon": repr(lon)}
    )
    fix = parse_osmand(params, NOW)
    assert (fix.lat, fix.lon, fix.ts_ms) == (lat, lon, ts * 1000)
    assert fix.speed_mps == pytest.approx(knots * KNOT_MPS)
    assert fix.heading_deg == course


@given(st.dictionaries(st.sampled_from(["id", "deviceid", "lat", "lon", "location", "timestamp",
                                        "speed", "bearing", "altitude", "batt", "x"]),
                       st.text(max_size=12)))  # fmt: skip
def test_osmand_never_crashes(params):
    """Any parameters give a Fix or an InvalidPing with a known reason."""
    try:
        fix = parse_osmand(params, NOW)
    except InvalidPing as exc:
        assert exc.reason in reasons and exc.detail
    else:
        assert fix.device_id


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_traccar_json_and_owntracks_never_crash(raw):
    """Arbitrary bytes are a fix, nothing (OwnTracks non-location) or InvalidPing with a reason."""
    for parse in (lambda: parse_traccar_json(raw, NOW), lambda: parse_owntracks(raw, "u.d")):
        try:
            parse()
        except InvalidPing as exc:
            assert exc.reason in reasons


@given(lats, lons, seconds, st.floats(0, 250), st.integers(0, 359), st.integers(0, 100))
def test_owntracks_units(lat, lon, tst, vel, cog, batt):
    """tst s -> ms, vel km/h -> m/s, cog degrees, batt percent."""
    raw = json.dumps({"_type": "location", "lat": lat, "lon": lon, "tst": tst, "vel": vel,
                      "cog": cog, "batt": batt, "tid": "jj"}).encode()  # fmt: skip
    fix = parse_owntracks(raw, "u.d")
    assert fix is not None and (fix.lat, fix.lon, fix.ts_ms) == (lat, lon, tst * 1000)
    assert fix.speed_mps == pytest.approx(vel * KMH_MPS) and fix.heading_deg == cog
    assert fix.battery_pct == batt and fix.attributes == {"tid": "jj"}


@pytest.mark.parametrize("kind", ["waypoint", "transition", "lwt", "card", "cmd"])
def test_owntracks_non_location_is_ignored(kind):
    assert parse_owntracks(json.dumps({"_type": kind, "tst": 1}).encode(), "u.d") is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"_type":"location","lat":"52","lon":13,"tst":1}', "wrong_type"),
        (b'{"_type":"location","lat":true,"lon":13,"tst":1}', "wrong_type"),
        (b'{"_type":"location","lon":13,"tst":1}', "missing_field"),
        (b'{"_type":"location","lat":1,"lon":13}', "missing_field"),
        (b"[1,2]", "not_an_object"),
        (b"{", "invalid_json"),
    ],
)
def test_owntracks_bad_payloads_have_reasons(raw, reason):
    with pytest.raises(InvalidPing) as caught:
        parse_owntracks(raw, "u.d")
    assert caught.value.reason == reason


@given(lats, lons, seconds, st.floats(0, 60))
def test_traccar_client_json_speed_is_mps(lat, lon, ts, speed):
    """Traccar Client 9 reports m/s (no knots), -1 heading is unknown, battery is a fraction."""
    when = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    body = {"device_id": "d9", "location": {"timestamp": when, "coords": {
        "latitude": lat, "longitude": lon, "speed": speed, "heading": -1, "accuracy": 5},
        "battery": {"level": 0.5}}}  # fmt: skip
    (fix,) = parse_traccar_json(json.dumps(body).encode(), NOW)
    assert (fix.lat, fix.lon, fix.ts_ms, fix.speed_mps) == (lat, lon, ts * 1000, speed)
    assert fix.heading_deg is None and fix.battery_pct == 50.0


@given(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)
)
def test_mapped_ping_validated_like_ingest(lat, lon):
    """A fix becomes Ping bytes only when fleet.decode's checks pass, else a reason."""
    fix = Fix("dev-1", NOW, lat, lon)
    try:
        raw = ping_bytes(fix, "drv-1", NOW, 300_000)
    except InvalidMessage as exc:
        assert exc.reason in ("not_finite", "lat_out_of_range", "lon_out_of_range")
        assert not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
                    and -180 <= lon <= 180)  # fmt: skip
    else:
        ping = json.loads(raw)
        assert (ping["driver_id"], ping["lat"], ping["lon"]) == ("drv-1", lat, lon)


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=5))
def test_split_batch_keeps_items(items):
    """A JSON array is split into its items' bytes; a single object stays one item."""
    assert [json.loads(b) for b in split_batch(json.dumps(items).encode())] == items
    assert split_batch(b'{"a": 1}') == [b'{"a": 1}']


def test_rate_limiter_allows_burst_then_rate():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("d", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("d", now=0.0) == pytest.approx(0.5)
    assert limiter.take("d", now=0.5) == 0.0 and limiter.take("other", now=0.5) == 0.0


def test_osmand_form_encoding_round_trip():
    """A form-encoded body ('+' for the space of 'yyyy-MM-dd HH:mm:ss') reads as the query."""
    params = {"id": "x1", "lat": "52.5", "lon": "13.4", "timestamp": "2014-06-04 09:10:11"}
    form = dict(parse_qsl(urlencode(params)))
    assert "+" in urlencode(params) and parse_osmand(form, NOW) == parse_osmand(params, NOW)
    expected = datetime(2014, 6, 4, 9, 10, 11, tzinfo=UTC).timestamp() * 1000
    assert parse_osmand(form, NOW).ts_ms == expected
