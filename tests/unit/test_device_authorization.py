"""The HTTP Authorization header of a device: Basic or Bearer device:token, nothing else."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.devices import DeviceRefused, parse_authorization

DEVICE = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=80)


@given(DEVICE, TOKEN)
def test_basic_and_bearer_carry_the_same_device_and_token(device: str, token: str) -> None:
    basic = "Basic " + base64.b64encode(f"{device}:{token}".encode()).decode()
    assert parse_authorization(basic) == (device, token)
    assert parse_authorization(f"Bearer {device}:{token}") == (device, token)


@given(st.text(max_size=200))
def test_any_header_is_parsed_or_refused_never_a_crash(header: str) -> None:
    try:
        device, token = parse_authorization(header)
    except DeviceRefused:
        return
    assert device and token


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer token-only", "Basic %%%", "Digest a:b", "Bearer bad id:tok"],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(DeviceRefused):
        parse_authorization(header)
