"""The solver process: a dead child is replaced, the decision retried; ticks never overlap."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from streams.decision import agents
from streams.decision.pool import SolverPool


def _pid() -> int:
    return os.getpid()


def _double(x: int) -> int:
    return 2 * x


def _die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def test_a_killed_solver_process_is_replaced_and_the_decision_runs() -> None:
    async def scenario() -> tuple[int, int, int, int]:
        pool = SolverPool()
        await pool.on_start()
        try:
            first = await pool.run(_pid)
            os.kill(first, signal.SIGKILL)
            await asyncio.sleep(0.2)  # the executor notices its child died
            answer = await pool.run(_double, 21)
            second = await pool.run(_pid)
            return first, second, answer, pool.restarts
        finally:
            await pool.on_stop()

    first, second, answer, restarts = asyncio.run(scenario())
    assert answer == 42
    assert second != first
    assert restarts == 1


def test_a_decision_that_kills_its_process_is_retried_once_then_fails() -> None:
    from concurrent.futures.process import BrokenProcessPool

    async def scenario() -> int:
        pool = SolverPool()
        await pool.on_start()
        try:
            with pytest.raises(BrokenProcessPool):
                await pool.run(_die)
            return await pool.run(_double, 4)
        finally:
            await pool.on_stop()

    assert asyncio.run(scenario()) == 8


def test_a_timer_tick_is_skipped_while_the_previous_one_decides(monkeypatch) -> None:
    ran: list[str] = []

    async def slow() -> None:
        ran.append("start")
        await asyncio.sleep(0.2)
        ran.append("end")

    monkeypatch.setattr(agents, "_decide_due", slow)

    async def scenario() -> list[bool]:
        first = asyncio.create_task(agents.decision_tick())
        await asyncio.sleep(0.05)
        overlapping = await agents.decision_tick()  # returns at once
        ran.append("skipped")
        done = await first
        after = await agents.decision_tick()  # the next tick after it ended runs
        return [done, overlapping, after]

    assert asyncio.run(scenario()) == [True, False, True]
    assert ran == ["start", "skipped", "end", "start", "end"]


def test_the_timer_starts_no_replan_while_an_order_batch_waits(monkeypatch) -> None:
    called: list[str] = []

    async def replan(route_id: str, kind: str, caused_by: str | None) -> None:
        called.append(route_id)

    monkeypatch.setattr(agents, "replan_route", replan)
    monkeypatch.setattr(agents, "orders_waiting", [1])
    agents.gate.offer("rt-prio", "off_route alert:a1", 0)
    try:
        asyncio.run(agents._decide_due())
        assert called == [] and "rt-prio" in agents.gate.pending  # kept for the next tick
        agents.orders_waiting[0] = 0
        asyncio.run(agents._decide_due())
        assert called == ["rt-prio"] and "rt-prio" not in agents.gate.pending
    finally:
        agents.gate.pending.pop("rt-prio", None)
