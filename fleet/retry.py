"""The one retry policy of the project: exponential backoff around an action until it succeeds.

Every retry loop (history writes, the history consumer, effects on Redis and Kafka in
streams/) goes through a ``RetryPolicy``: the caller says which errors are transient (those
wait and retry; any other is raised at once) and is told of every retry with its delay, to
log and count it. There is no attempt limit on purpose: a transient failure of a store is
waited out (that wait is the backpressure), never turned into a dropped message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fleet.errors import ConfigError, FleetError

if TYPE_CHECKING:
    from fleet.settings import Settings

T = TypeVar("T")
IsTransient = Callable[[BaseException], bool]  # error -> wait and retry (else raise)
OnRetry = Callable[[BaseException, float], None]  # error, delay before the next attempt
Wait = Callable[[float], bool]  # waits the delay; False = give up (the work is no longer ours)


class RetryAbandoned(FleetError, RuntimeError):
    """A blocking retry was given up by its ``wait`` (revoked, stopping) before any success."""


def every_error(exc: BaseException) -> bool:
    """The transient test that retries every ``Exception`` (not cancellation or exit)."""
    return isinstance(exc, Exception)


def _ignore(exc: BaseException, delay: float) -> None:
    pass


def _sleep(delay: float) -> bool:
    time.sleep(delay)
    return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``initial_s``, times ``factor`` per failure, capped at ``max_s``."""

    initial_s: float
    max_s: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ConfigError(f"retry initial_s={self.initial_s} must be > 0")
        if self.max_s < self.initial_s:
            raise ConfigError(f"retry max_s={self.max_s} below initial_s={self.initial_s}")
        if self.factor < 1:
            raise ConfigError(f"retry factor={self.factor} must be >= 1")

    @classmethod
    def for_history(cls, settings: Settings) -> RetryPolicy:
        """The policy of history writes (``FLEET_HISTORY_RETRY_INITIAL_S`` / ``_MAX_S``)."""
        return cls(settings.history_retry_initial_s, settings.history_retry_max_s)

    def delays(self) -> Iterator[float]:
        """The waits before the 1st, 2nd, ... retry (endless)."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)

    async def run(
        self,
        action: Callable[[], Awaitable[T]],
        is_transient: IsTransient = every_error,
        on_retry: OnRetry = _ignore,
    ) -> T:
        """Await ``action()`` until it succeeds; a non-transient error is raised at once."""
        delays = self.delays()
        while True:
            try:
                return await action()
            except BaseException as exc:
                if not is_transient(exc):
                    raise
                delay = next(delays)
                on_retry(exc, delay)
                await asyncio.sleep(delay)

    def run_blocking(
        self,
        action: Callable[[], T],
        is_transient: IsTransient = every_error,
        on_retry: OnRetry = _ignore,
        wait: Wait = _sleep,
    ) -> T:
        """``run`` for a thread: ``wait`` spends each delay (polling, say) and may give up.

        Raises ``RetryAbandoned`` when ``wait`` returns False.
        """
        delays = self.delays()
        while True:
            try:
                return action()
            except BaseException as exc:
                if not is_transient(exc):
                    raise
                delay = next(delays)
                on_retry(exc, delay)
                if not wait(delay):
                    raise RetryAbandoned(f"gave up after {exc!r}") from exc
