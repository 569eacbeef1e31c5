"""Dispatch identity: a command applies only when its issued_by signed exactly these bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.errors import ConfigError, InvalidCommand
from fleet.identity import (
    ISSUER_HEADER,
    SIGNATURE_HEADER,
    IssuerKeys,
    new_key,
    signed_headers,
)

AMIRA, BOSS = new_key(), new_key()
KEYS = IssuerKeys({"dispatcher:amira": AMIRA, "dispatcher:boss": BOSS})
VALUE = b'{"command_id":"cmd-1","issued_by":"dispatcher:amira"}'


def test_a_command_signed_by_its_issuer_passes() -> None:
    KEYS.check("dispatcher:amira", VALUE, signed_headers("dispatcher:amira", AMIRA, VALUE))
    KEYS.check("dispatcher:amira", VALUE, dict(signed_headers("dispatcher:amira", AMIRA, VALUE)))


@pytest.mark.parametrize(
    ("issued_by", "headers", "why"),
    [
        ("dispatcher:amira", None, "header"),
        ("dispatcher:boss", signed_headers("dispatcher:amira", AMIRA, VALUE), "header"),
        ("dispatcher:boss", signed_headers("dispatcher:boss", AMIRA, VALUE), "does not check"),
        ("dispatcher:eve", signed_headers("dispatcher:eve", AMIRA, VALUE), "no dispatch key"),
        ("dispatcher:amira", [(ISSUER_HEADER, b"dispatcher:amira")], "does not check"),
    ],
)
def test_a_forged_or_unsigned_command_is_unauthorized(
    issued_by: str, headers: list[tuple[str, bytes]] | None, why: str
) -> None:
    with pytest.raises(InvalidCommand, match=why) as caught:
        KEYS.check(issued_by, VALUE, headers)
    assert caught.value.reason == "unauthorized"


@given(st.binary(min_size=1))
def test_any_change_to_a_signed_command_breaks_its_signature(suffix: bytes) -> None:
    headers = signed_headers("dispatcher:amira", AMIRA, VALUE)
    with pytest.raises(InvalidCommand):
        KEYS.check("dispatcher:amira", VALUE + suffix, headers)


def test_a_garbled_signature_header_is_unauthorized_not_a_crash() -> None:
    headers = [(ISSUER_HEADER, b"dispatcher:amira"), (SIGNATURE_HEADER, b"\xff\xfe")]
    with pytest.raises(InvalidCommand, match="does not check"):
        KEYS.check("dispatcher:amira", VALUE, headers)


def test_the_keys_file_is_read_and_a_bad_one_is_a_config_error(tmp_path: Path) -> None:
    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"dispatcher:amira": AMIRA}))
    assert IssuerKeys.from_file(good).keys == {"dispatcher:amira": AMIRA}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        IssuerKeys.from_file(bad)
