"""Hostile input: bounded dead letters, numbers the stores can hold, identifiers matched whole."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.decode import (
    RAW_PREFIX_BYTES,
    REASONS,
    dead_letter,
    decode_ping_batch,
    decode_struct,
)
from fleet.errors import InvalidMessage
from fleet.history import rows
from fleet.records import (
    EPOCH_MS_MAX,
    EPOCH_MS_MIN,
    Alert,
    DeadLetter,
    DeliveryEvent,
    DispatchCommand,
    EtaUpdate,
    Order,
    RoutePlan,
    RouteUpdate,
    encode,
)

NOW = 1_763_720_000_000
LIMITS = {"source_topic": "fleet.pings", "now_ms": NOW, "max_future_ms": 300_000,
          "max_bytes": 65_536}  # fmt: skip
KAFKA_MAX_MESSAGE = 1_048_576
DEAD_LETTER_MAX = 8 * 1024
RECORDS: dict[type[msgspec.Struct], Any] = {
    DeliveryEvent: rows.event_rows,
    Alert: rows.alert_rows,
    EtaUpdate: rows.eta_rows,
    RoutePlan: rows.route_plan_rows,
    DeadLetter: rows.dead_letter_rows,
    DispatchCommand: None,
    Order: None,
    RouteUpdate: None,
}
DECODERS = {t: msgspec.json.Decoder(t) for t in RECORDS}


def ping(**fields: Any) -> bytes:
    return json.dumps(
        {"driver_id": "drv-1", "ts_ms": NOW, "lat": 52.5, "lon": 13.4, **fields}
    ).encode()


def rejected(raw: bytes) -> DeadLetter:
    (_key, letter), = decode_ping_batch([(b"k", raw)], **LIMITS).dead_letters  # fmt: skip
    return letter


def raw_of(letter: DeadLetter) -> bytes:
    if letter.raw_encoding == "base64":
        return base64.b64decode(letter.raw)
    return letter.raw.encode()


# --- 1. bounded dead letters ---------------------------------------------------------------
def test_a_200_kb_message_of_control_bytes_gives_a_small_dead_letter_with_length_and_hash() -> None:
    data = bytes(range(1, 32)) * (200_000 // 31)
    letter = rejected(data)
    size = len(encode(letter))
    assert letter.reason == "too_large"
    assert size < DEAD_LETTER_MAX < KAFKA_MAX_MESSAGE
    assert letter.raw_bytes == len(data)
    assert letter.raw_sha256 == hashlib.sha256(data).hexdigest()
    prefix = raw_of(letter)
    assert len(prefix) <= RAW_PREFIX_BYTES and data.startswith(prefix)


def test_a_large_utf8_input_keeps_a_text_prefix_cut_on_a_character_boundary() -> None:
    data = b"a" + "é".encode() * 40_000  # 2-byte characters after one odd byte
    letter = dead_letter("t", data, InvalidMessage("too_large", "big"), NOW)
    assert letter.raw_encoding == "utf-8"
    prefix = letter.raw.encode()
    assert RAW_PREFIX_BYTES - 1 <= len(prefix) <= RAW_PREFIX_BYTES
    assert data.startswith(prefix) and letter.raw.endswith("é")
    assert letter.raw_bytes == len(data)


def test_a_large_non_utf8_input_keeps_a_base64_prefix() -> None:
    data = b"\xff\xfe" * 10_000
    letter = dead_letter("t", data, InvalidMessage("invalid_utf8", "x"), NOW)
    assert letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == data[:RAW_PREFIX_BYTES]
    assert letter.raw_sha256 == hashlib.sha256(data).hexdigest()


def test_a_small_input_is_kept_whole_without_truncation_fields() -> None:
    data = ping(lat=123.4)
    letter = rejected(data)
    assert letter.raw == data.decode() and letter.raw_bytes is None and letter.raw_sha256 is None


def test_a_long_detail_is_cut() -> None:
    letter = dead_letter("t", b"x", InvalidMessage("invalid_value", "v" * 10_000), NOW)
    assert len(letter.detail) <= 300 and letter.detail.endswith("…")


# --- 2. numbers bounded to what the stores hold ---------------------------------------------
@pytest.mark.parametrize("seq", [2**63, 2**64, 10**30, -(2**63) - 1])
def test_a_seq_beyond_int64_is_out_of_range_naming_field_and_value(seq: int) -> None:
    letter = rejected(ping(seq=seq))
    assert letter.reason == "out_of_range"
    assert "seq" in letter.detail and str(seq) in letter.detail


def test_int64_limits_themselves_are_valid() -> None:
    batch = decode_ping_batch([(None, ping(seq=2**63 - 1)), (None, ping(seq=-(2**63)))], **LIMITS)
    assert [p.seq for p in batch.pings] == [2**63 - 1, -(2**63)]
    rows.ping_rows(batch.pings, NOW)  # and they convert


def test_a_ping_before_2000_is_out_of_range_but_a_years_old_one_is_valid() -> None:
    assert rejected(ping(ts_ms=0)).reason == "out_of_range"
    assert rejected(ping(ts_ms=EPOCH_MS_MIN - 1)).reason == "out_of_range"
    years_old = 1_450_000_000_000  # December 2015: late, beyond retention, still a real time
    assert len(decode_ping_batch([(None, ping(ts_ms=years_old))], **LIMITS).pings) == 1


def test_the_contract_checks_come_before_the_time_window() -> None:
    assert rejected(ping(ts_ms=1, lat=123.4)).reason == "lat_out_of_range"


PLAN = {"route_id": "rt-1", "driver_id": "drv-1", "version": 3,
        "stops": [{"stop_id": "st-1", "lat": 52.5, "lon": 13.4}]}  # fmt: skip
EVENT = {"event_id": "ev-1", "driver_id": "drv-1", "type": "delivered", "ts_ms": NOW}


@pytest.mark.parametrize(
    ("record_type", "message", "field"),
    [
        (RoutePlan, {**PLAN, "version": 2**63}, "version"),
        (RoutePlan, {**PLAN, "capacity": 2**70}, "capacity"),
        (RoutePlan, {**PLAN, "shift_start_ms": 2**63}, "shift_start_ms"),
        (RoutePlan, {**PLAN, "stops": [{**PLAN["stops"][0], "demand": -(2**64)}]}, "demand"),
        (RoutePlan, {**PLAN, "stops": [{**PLAN["stops"][0], "priority": 2**63}]}, "priority"),
        (RoutePlan, {**PLAN, "stops": [{**PLAN["stops"][0], "window_end_ms": 10**15}]},
         "window_end_ms"),
        (DeliveryEvent, {**EVENT, "ts_ms": 2**63}, "ts_ms"),
        (DeliveryEvent, {**EVENT, "ts_ms": 5}, "ts_ms"),
        (Alert, {"alert_id": "al-1", "kind": "stale", "state": "open", "driver_id": "d",
                 "opened_ms": NOW, "changed_ms": -1}, "changed_ms"),
        (EtaUpdate, {"route_id": "r", "driver_id": "d", "model_version": "m", "computed_ms": NOW,
                     "stops": [{"stop_id": "s", "p10_ms": NOW, "p50_ms": 2**64, "p90_ms": NOW}]},
         "p50_ms"),
    ],
)  # fmt: skip
def test_record_numbers_beyond_the_stores_are_out_of_range(
    record_type: type[msgspec.Struct], message: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidMessage) as raised:
        decode_struct(json.dumps(message).encode(), DECODERS[record_type], 65_536)
    assert raised.value.reason == "out_of_range"
    assert field in raised.value.detail


# --- 8. identifiers matched whole -------------------------------------------------------------
COMMAND = {"command_id": "cmd-1", "route_id": "rt-1", "type": "optimize", "issued_ms": NOW}


def test_a_ping_driver_id_with_a_final_newline_is_rejected_even_after_the_clean_id() -> None:
    assert len(decode_ping_batch([(None, ping(driver_id="drv-1"))], **LIMITS).pings) == 1
    assert rejected(ping(driver_id="drv-1\n")).reason == "invalid_identifier"
    assert rejected(ping(route_id="rt-1\n")).reason == "invalid_identifier"


@pytest.mark.parametrize(
    ("record_type", "message"),
    [
        (DeliveryEvent, {**EVENT, "event_id": "ev-1\n"}),
        (DeliveryEvent, {**EVENT, "driver_id": "drv-1\n"}),
        (DeliveryEvent, {**EVENT, "stop_id": "st-1\n"}),
        (RoutePlan, {**PLAN, "route_id": "rt-1\n"}),
        (RoutePlan, {**PLAN, "driver_id": "drv-1\n"}),
        (RoutePlan, {**PLAN, "stops": [{**PLAN["stops"][0], "stop_id": "st-1\n"}]}),
        (DispatchCommand, {**COMMAND, "command_id": "cmd-1\n"}),
        (DispatchCommand, {**COMMAND, "route_id": "rt-1\n"}),
        (DispatchCommand, {**COMMAND, "to_driver_id": "drv-1\n"}),
    ],
)
def test_identifiers_with_a_final_newline_are_rejected_by_the_record_decoders(
    record_type: type[msgspec.Struct], message: dict[str, Any]
) -> None:
    bad = json.dumps(message)
    clean = bad.replace("\\n", "")  # the same message without the newline is valid
    decode_struct(clean.encode(), DECODERS[record_type], 65_536)
    with pytest.raises(InvalidMessage) as raised:
        decode_struct(bad.encode(), DECODERS[record_type], 65_536)
    assert raised.value.reason == "invalid_identifier"


# --- 9. properties over the decoders ---------------------------------------------------------
big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**62)),
    st.integers(min_value=0, max_value=EPOCH_MS_MIN),  # years before 2000, 1970, negative-ish
    st.integers(min_value=EPOCH_MS_MIN, max_value=EPOCH_MS_MAX + 10**12),
)
scalars = st.one_of(
    st.none(), st.booleans(), big_ints, st.floats(), st.text(max_size=70),
    st.text(st.characters(max_codepoint=31), max_size=70),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
ident = st.sampled_from(["drv-1", "rt-1", "st-1", "drv-1\n", "", "x" * 65])
FIELDS = [
    "driver_id", "ts_ms", "lat", "lon", "seq", "route_id", "event_id", "type", "stop_id",
    "version", "stops", "shift_start_ms", "capacity", "alert_id", "kind", "state", "opened_ms",
    "changed_ms", "model_version", "computed_ms", "command_id", "issued_ms", "source_topic",
    "reason", "detail", "received_ms", "raw", "demand", "priority", "window_start_ms",
]  # fmt: skip
objects = st.dictionaries(st.sampled_from(FIELDS), st.one_of(values, ident), max_size=12).map(
    lambda d: json.dumps(d).encode()
)
huge = st.builds(
    lambda chunk, n: (chunk * (n // max(len(chunk), 1) + 1))[:n],
    st.binary(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=300_000),
)
any_bytes = st.one_of(st.binary(max_size=300), huge, objects)


def _assert_bounded(letter: DeadLetter, original: bytes | None) -> None:
    assert letter.reason in REASONS
    assert len(encode(letter)) < DEAD_LETTER_MAX
    data = original or b""
    if letter.raw_bytes is None:
        assert raw_of(letter) == data
    else:
        assert letter.raw_bytes == len(data) > RAW_PREFIX_BYTES
        assert data.startswith(raw_of(letter))
        assert letter.raw_sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_bytes, min_size=1, max_size=5))
def test_any_bytes_give_storable_pings_or_small_dead_letters(messages: list[bytes]) -> None:
    batch = decode_ping_batch([(None, m) for m in messages], **LIMITS)
    assert len(batch.pings) + len(batch.dead_letters) == len(messages)
    dead = [m for i, m in enumerate(messages) if i not in set(batch.positions)]
    for (_key, letter), original in zip(batch.dead_letters, dead, strict=True):
        _assert_bounded(letter, original)
    for p in batch.pings:
        assert EPOCH_MS_MIN <= p.ts_ms <= NOW + 300_000
    rows.ping_rows(batch.pings, NOW)  # whatever decoding lets through converts to Arrow


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(RECORDS, key=lambda t: t.__name__)), any_bytes)
def test_any_bytes_give_a_storable_record_or_a_small_dead_letter(
    record_type: type[msgspec.Struct], raw: bytes
) -> None:
    try:
        record = decode_struct(raw, DECODERS[record_type], 65_536)
    except InvalidMessage as exc:
        _assert_bounded(dead_letter("fleet.x", raw, exc, NOW), raw)
        return
    build = RECORDS[record_type]
    if build is not None:
        build([record], NOW)  # a decoded record converts to its history rows
