"""``kill -USR2 <worker pid>`` logs where every asyncio task of the worker is waiting.

mode's own SIGUSR1 dump stops at the first async generator (every Faust agent is one), so
it cannot say on what an agent waits; this follows each task's await chain through
coroutines and async generators down to the innermost frame (docs/operations: a stuck agent).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``file:line function`` of each frame the task waits in, outermost first."""
    out: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(200):  # an await chain is finite; a cycle must not hang the dump
        frame: FrameType | None = (
            getattr(obj, "cr_frame", None)
            or getattr(obj, "ag_frame", None)
            or getattr(obj, "gi_frame", None)
        )
        if frame is not None:
            code = frame.f_code
            out.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        nxt = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "ag_await", None)
            or getattr(obj, "gi_yieldfrom", None)
        )
        if nxt is None:
            break
        obj = nxt
    return out


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        chain = await_chain(task)
        log.warning("task %s waits in:\n  %s", task.get_name(), "\n  ".join(chain) or "?")
    try:
        dump_input_positions()
    except Exception:  # private state of Faust and aiokafka: a dump must never fail the worker
        log.exception("input positions not available")


def dump_input_positions() -> None:
    """Per input partition: aiokafka's fetch position, Faust's read and committed offsets,
    whether Faust pauses it (a partition read past but never committed shows here)."""
    from streams.app import app

    consumer: Any = app.consumer
    inputs = app.topics.acking_topics
    assignment = consumer._thread._consumer._subscription.subscription.assignment
    for tp in sorted(assignment.tps):
        if tp.topic not in inputs:
            continue
        state = assignment.state_value(tp)
        log.warning(
            "input %s[%d]: position %s, read %s, committed %s, paused %s",
            tp.topic, tp.partition, state._position if state.has_valid_position else None,
            consumer._read_offset.get(tp), consumer._committed_offset.get(tp),
            tp in consumer._paused_partitions,
        )  # fmt: skip


def install() -> None:
    """Dump the tasks on SIGUSR2 (call from within the running loop)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
