"""Property-based: any input is either a valid ping or a dead letter with a known reason."""

from __future__ import annotations

import base64
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.decode import REASONS, decode_ping_batch
from fleet.ingest import IngestConfig, Ingestor
from fleet.records import EPOCH_MS_MIN

NOW = 1_763_720_000_000
LIMITS = {"source_topic": "fleet.pings", "now_ms": NOW, "max_future_ms": 300_000,
          "max_bytes": 65_536}  # fmt: skip

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=70)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
ident = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
field_value = {
    "driver_id": st.one_of(ident, json_values),
    "ts_ms": st.one_of(st.integers(min_value=0, max_value=NOW + 10**9), json_values),
    "lat": st.one_of(st.floats(min_value=-100, max_value=100), json_values),
    "lon": st.one_of(st.floats(min_value=-200, max_value=200), json_values),
    "seq": st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), json_values),
    "accuracy_m": st.one_of(st.none(), st.floats(min_value=0, max_value=1e4), json_values),
    "route_id": st.one_of(st.none(), ident, json_values),
}
ping_like = st.fixed_dictionaries({}, optional=field_value).map(lambda d: json.dumps(d).encode())


def _check_outcome(messages: list[bytes]) -> None:
    batch = decode_ping_batch([(None, m) for m in messages], **LIMITS)
    assert len(batch.pings) + len(batch.dead_letters) == len(messages)
    for _, letter in batch.dead_letters:
        assert letter.reason in REASONS
        assert letter.detail
        raw = (
            letter.raw.encode() if letter.raw_encoding == "utf-8" else base64.b64decode(letter.raw)
        )
        assert raw in messages
    for p in batch.pings:
        assert -90 <= p.lat <= 90 and -180 <= p.lon <= 180
        assert math.isfinite(p.lat) and math.isfinite(p.lon)
        assert EPOCH_MS_MIN <= p.ts_ms <= NOW + 300_000
        assert not isinstance(p.lat, bool) and not isinstance(p.ts_ms, bool)
    # The core downstream of decoding accepts whatever decoding let through.
    Ingestor(IngestConfig()).ingest(batch.pings)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_any_bytes_are_accepted_or_dead_lettered(messages):
    _check_outcome(messages)


@settings(max_examples=600, deadline=None)
@given(st.lists(ping_like, min_size=1, max_size=20))
def test_any_json_object_is_accepted_or_dead_lettered(messages):
    _check_outcome(messages)


@settings(max_examples=300, deadline=None)
@given(
    ident,
    st.integers(min_value=0, max_value=NOW + 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_validity_matches_the_contract_rules(driver, ts, lat, lon):
    """Accepted exactly when the contract says the ping is valid."""
    raw = json.dumps({"driver_id": driver, "ts_ms": ts, "lat": lat, "lon": lon}).encode()
    batch = decode_ping_batch([(None, raw)], **LIMITS)
    valid = (
        math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
        and EPOCH_MS_MIN <= ts <= NOW + 300_000
    )  # fmt: skip
    assert (len(batch.pings) == 1) == valid
    if not valid:
        reason = batch.dead_letters[0][1].reason
        assert reason in {"invalid_json", "not_finite", "lat_out_of_range", "lon_out_of_range",
                          "ts_in_future", "out_of_range"}  # fmt: skip


def test_boolean_is_not_a_number():
    raw = b'{"driver_id":"d","ts_ms":true,"lat":1,"lon":1}'
    (_, letter), = decode_ping_batch([(None, raw)], **LIMITS).dead_letters  # fmt: skip
    assert letter.reason == "wrong_type" and "ts_ms" in letter.detail


def test_message_over_64_kib_is_too_large_even_if_valid_json():
    pad = "x" * 65_536
    raw = json.dumps({"driver_id": "d", "ts_ms": 1, "lat": 1, "lon": 1, "pad": pad}).encode()
    (_, letter), = decode_ping_batch([(None, raw)], **LIMITS).dead_letters  # fmt: skip
    assert letter.reason == "too_large"


def test_unknown_fields_and_nulls_in_optional_fields_are_accepted():
    raw = (
        b'{"driver_id":"d","ts_ms":1763720000000,"lat":1,"lon":1,"seq":null,"speed_mps":null,'
        b'"new":{"a":1}}'
    )
    assert len(decode_ping_batch([(None, raw)], **LIMITS).pings) == 1


def test_non_utf8_raw_bytes_are_kept_as_base64():
    raw = b'\xff{"driver_id":"d"}'
    (_, letter), = decode_ping_batch([(None, raw)], **LIMITS).dead_letters  # fmt: skip
    assert letter.reason == "invalid_utf8" and letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == raw
