"""The one dead-letter path of the agents, and the error policy it serves.

Policy per input kind (pings, events, routes, commands alike):

* invalid input (``InvalidMessage``: undecodable, out of range, a command that cannot
  apply) -> a dead letter with the validation reason;
* a bug while processing a message (any other exception) -> logged with its traceback,
  counted in ``fleet_processing_errors_total{source}``, and the message dead-lettered with
  reason ``processing_error``;
* a transient failure of a service (``streams.resilience.is_transient``: Redis or Kafka
  down, a send refused for now) -> the same message is retried with backoff, never skipped;
* either way the stream goes on with the next message.

Every dead letter is bounded in size (``fleet.decode.dead_letter``), sent with the effects
retry policy and counted in ``fleet_dead_letters_total{source,reason}`` (``source`` is the
contract topic name, without the test prefix). A dead letter that cannot be sent at all is
logged and counted in ``fleet_dead_letter_failures_total{source}``; it never raises into
the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from faust.types import EventT
from prometheus_client import Counter

from fleet.clock import now_ms
from fleet.decode import dead_letter
from fleet.errors import InvalidMessage
from fleet.records import DeadLetter, encode
from fleet.topics import topic_name
from streams.app import settings
from streams.resilience import retry_transient
from streams.topics import dlq_topic

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "fleet_dead_letters_total", "Inputs sent to the dead-letter topic", ["source", "reason"]
)
DEAD_LETTER_FAILURES = Counter(
    "fleet_dead_letter_failures_total", "Dead letters that could not be sent (logged)", ["source"]
)
PROCESSING_ERRORS = Counter(
    "fleet_processing_errors_total", "Inputs an agent failed on (a bug; logged)", ["source"]
)


async def send_letter(source: str, key: bytes | None, letter: DeadLetter) -> None:
    """Send a built dead letter of contract topic ``source``; never raises."""
    DEAD_LETTERS.labels(source, letter.reason).inc()
    try:
        await retry_transient("dlq", partial(dlq_topic.send, key=key, value=encode(letter)))
    except Exception:
        DEAD_LETTER_FAILURES.labels(source).inc()
        log.exception("dead letter of %s (reason %s) could not be sent", source, letter.reason)


async def send_dead_letter(
    source: str, key: bytes | None, raw: bytes | None, error: InvalidMessage
) -> None:
    """Dead-letter the raw input ``raw`` of contract topic ``source`` with ``error``'s reason."""
    letter = dead_letter(topic_name(settings, source), raw, error, now_ms())
    await send_letter(source, key, letter)


def processing_error(exc: Exception) -> InvalidMessage:
    """The dead-letter reason of a bug: ``processing_error`` with the exception."""
    return InvalidMessage("processing_error", f"{type(exc).__name__}: {exc}")


async def on_processing_error(source: str, event: EventT, exc: Exception) -> None:
    """A bug on one message: log it, count it, dead-letter the message."""
    log.exception("%s message at offset %s failed", source, event.message.offset)
    PROCESSING_ERRORS.labels(source).inc()
    await send_dead_letter(source, event.key, event.value, processing_error(exc))


async def handle_or_dead_letter(
    source: str, event: EventT, handle: Callable[[EventT], Awaitable[None]]
) -> None:
    """Apply the error policy around ``handle(event)``; never raises (the stream goes on).

    A transient failure retries ``handle(event)`` (handlers are safe to repeat); invalid
    input and bugs end as dead letters."""
    try:
        await retry_transient(f"{source}_message", partial(handle, event))
    except InvalidMessage as exc:
        await send_dead_letter(source, event.key, event.value, exc)
    except Exception as exc:
        await on_processing_error(source, event, exc)
