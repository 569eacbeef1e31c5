"""The agents' error policy (streams/dead_letters.py) without services: a transient failure
retries the same message, a bug dead-letters it, a failing dead-letter send never raises."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from fleet.errors import InvalidMessage
from fleet.retry import RetryPolicy
from streams import dead_letters, resilience


def _event(value: bytes | None = b"{}") -> Any:
    return SimpleNamespace(key=b"drv-1", value=value, message=SimpleNamespace(offset=7))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Dead letters sent (decoded); retries without waiting."""
    out: list[dict[str, Any]] = []

    async def send(key: bytes | None, value: bytes) -> None:
        out.append(msgspec.json.decode(value))

    monkeypatch.setattr(dead_letters.dlq_topic, "send", send)
    monkeypatch.setattr(resilience, "EFFECTS_POLICY", RetryPolicy(initial_s=0.001, max_s=0.001))
    return out


def test_a_transient_failure_retries_the_same_message_never_skips_it(sent) -> None:
    calls: list[Any] = []

    async def handle(event: Any) -> None:
        calls.append(event)
        if len(calls) < 3:
            raise RedisConnectionError("redis is restarting")

    event = _event()
    asyncio.run(dead_letters.handle_or_dead_letter("fleet.events", event, handle))
    assert calls == [event, event, event]
    assert sent == []


def test_a_bug_is_dead_lettered_processing_error_and_invalid_keeps_its_reason(sent) -> None:
    async def bug(event: Any) -> None:
        raise KeyError("oops")

    async def invalid(event: Any) -> None:
        raise InvalidMessage("key_mismatch", "key b'x' is not driver_id 'drv-1'")

    asyncio.run(dead_letters.handle_or_dead_letter("fleet.events", _event(), bug))
    asyncio.run(dead_letters.handle_or_dead_letter("fleet.events", _event(), invalid))
    assert [letter["reason"] for letter in sent] == ["processing_error", "key_mismatch"]


def test_a_failing_dead_letter_send_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(key: bytes | None, value: bytes) -> None:
        raise ValueError("MessageSizeTooLargeError-like refusal")

    monkeypatch.setattr(dead_letters.dlq_topic, "send", broken)

    async def bug(event: Any) -> None:
        raise RuntimeError("bug")

    big = bytes(range(1, 32)) * 7000  # ~200 KB of control bytes
    asyncio.run(dead_letters.handle_or_dead_letter("fleet.pings", _event(big), bug))
