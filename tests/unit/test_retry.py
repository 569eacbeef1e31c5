"""The one retry policy: its delays, async and blocking runs, transient vs permanent errors."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.errors import ConfigError
from fleet.retry import RetryAbandoned, RetryPolicy
from fleet.settings import Settings


def test_backoff_multiplies_up_to_its_cap() -> None:
    assert list(itertools.islice(RetryPolicy(0.5, 3.0).delays(), 6)) == [
        0.5, 1.0, 2.0, 3.0, 3.0, 3.0,
    ]  # fmt: skip
    assert list(itertools.islice(RetryPolicy(1.0, 10.0, factor=3.0).delays(), 4)) == [
        1.0, 3.0, 9.0, 10.0,
    ]  # fmt: skip


@given(st.floats(1e-3, 10.0), st.floats(0.0, 100.0), st.floats(1.0, 5.0), st.integers(1, 60))
def test_delays_never_shrink_and_stay_within_bounds(
    initial: float, extra: float, factor: float, n: int
) -> None:
    policy = RetryPolicy(initial, initial + extra, factor)
    delays = list(itertools.islice(policy.delays(), n))
    assert delays[0] == initial
    assert all(initial <= d <= policy.max_s for d in delays)
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("initial", "cap", "factor", "named"),
    [(0.0, 1.0, 2.0, "initial_s=0.0"), (2.0, 1.0, 2.0, "max_s=1.0"), (1.0, 2.0, 0.5, "factor")],
)
def test_unusable_policies_are_refused_naming_the_value(
    initial: float, cap: float, factor: float, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        RetryPolicy(initial, cap, factor)


def test_history_policy_comes_from_its_settings() -> None:
    settings = Settings(history_retry_initial_s=0.3, history_retry_max_s=7.0)
    assert RetryPolicy.for_history(settings) == RetryPolicy(0.3, 7.0)


def test_run_retries_transient_errors_until_success_reporting_each_delay() -> None:
    calls: list[int] = []
    retries: list[tuple[str, float]] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError(f"down {len(calls)}")
        return "stored"

    result = asyncio.run(
        RetryPolicy(0.001, 0.002).run(
            flaky,
            is_transient=lambda e: isinstance(e, ConnectionError),
            on_retry=lambda e, d: retries.append((str(e), d)),
        )
    )
    assert result == "stored"
    assert retries == [("down 1", 0.001), ("down 2", 0.002), ("down 3", 0.002)]


def test_run_raises_a_permanent_error_at_once() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(
            RetryPolicy(0.001, 0.002).run(
                broken, is_transient=lambda e: isinstance(e, ConnectionError)
            )
        )
    assert len(calls) == 1


def test_run_does_not_swallow_cancellation() -> None:
    async def scenario() -> None:
        async def forever() -> None:
            await asyncio.sleep(3600)

        task = asyncio.create_task(RetryPolicy(0.001, 0.002).run(forever))
        await asyncio.sleep(0)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())


def test_run_blocking_spends_delays_in_its_wait_and_returns_the_result() -> None:
    attempts = iter([OSError("a"), OSError("b"), None])
    waited: list[float] = []

    def action() -> int:
        error = next(attempts)
        if error is not None:
            raise error
        return 42

    def wait(delay: float) -> bool:
        waited.append(delay)
        return True

    assert RetryPolicy(0.5, 0.75).run_blocking(action, wait=wait) == 42
    assert waited == [0.5, 0.75]


def test_run_blocking_is_abandoned_when_its_wait_gives_up() -> None:
    def down() -> None:
        raise ConnectionError("store down")

    with pytest.raises(RetryAbandoned) as raised:
        RetryPolicy(0.1, 1.0).run_blocking(down, wait=lambda delay: False)
    assert isinstance(raised.value.__cause__, ConnectionError)
